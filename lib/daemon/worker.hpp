// A worker: one thread, one io_context, its own accept loop on the listening socket and one
// coroutine session per connection it accepted. Internal to the library (server.cpp drives the
// workers); docs/architecture.md tells the life of a connection.
#pragma once

#include "daemon/access.hpp"
#include "daemon/handover.hpp"

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace uds_echo::daemon {

// What a worker needs to know of the configuration; replaced as a whole on reload.
struct WorkerSettings {
    std::chrono::seconds idle_timeout{0};
    unsigned max_connections = 0;
    unsigned max_connections_per_uid = 0; // 0 = no cap
    AccessPolicy access;
    bool log_peers = false; // debug logging names every peer

    bool needs_credentials() const {
        return access.restricts() || max_connections_per_uid > 0 || log_peers;
    }
};

// The connection count all workers share. A worker takes a slot before it accepts, so that
// however many workers accept at once, no more than --max-connections connections are open.
class ConnectionSlots {
public:
    bool try_take(unsigned limit) {
        auto taken = taken_.load();
        do {
            if (taken >= limit)
                return false;
        } while (!taken_.compare_exchange_weak(taken, taken + 1));
        return true;
    }
    void give_back() { taken_.fetch_sub(1); }
    bool available(unsigned limit) const { return taken_.load() < limit; }

private:
    std::atomic<unsigned> taken_{0}; // open sessions plus accepts in progress
};

// Open connections per peer uid, across all workers, for --max-connections-per-uid. Only uids
// that hold a connection have an entry, so the table is as large as the set of connected users.
class UidCounts {
public:
    // The uid whose connections are not counted: root may stop the daemon anyway, and a cap on it
    // would only get in the way of the administrator.
    static constexpr uid_t exempt = 0;

    // Counts one more connection of `uid` unless it already holds `cap` (at least 1); false then.
    bool try_add(uid_t uid, unsigned cap) {
        std::lock_guard lock(mutex_);
        auto& count = counts_[uid];
        if (count >= cap)
            return false;
        ++count;
        return true;
    }

    void remove(uid_t uid) {
        std::lock_guard lock(mutex_);
        const auto entry = counts_.find(uid);
        if (entry != counts_.end() && --entry->second == 0)
            counts_.erase(entry);
    }

private:
    std::mutex mutex_;
    std::unordered_map<uid_t, unsigned> counts_;
};

// State shared by all workers and the control thread; everything in it is thread-safe.
struct SharedState {
    ConnectionSlots slots;
    UidCounts uid_counts;
    std::atomic<unsigned> open{0};             // running sessions
    std::atomic<std::uint64_t> accepted{0};    // also numbers the connections
    std::atomic<bool> out_of_resources{false}; // inside an episode of descriptor exhaustion
};

// What a worker reports to the control side. The callbacks run on the worker's thread.
struct WorkerEvents {
    // After begin_drain(), the last session has ended; after begin_handover(), the last session
    // has let go of its connection.
    std::function<void()> drained;
    std::function<void(std::uint64_t id, PeerCredentials, const char* reason)> refused;
    std::function<void()> session_ended;
    // The accepting worker offers every connection it accepts: true when the callback gave it to
    // another worker (serve_accepted()), false to serve it here. Runs on the accepting worker.
    std::function<bool(int fd)> hand_out;
};

class Worker {
public:
    // `index` names the worker in the log. `listener` is the listening socket for the accepting
    // worker, which closes it, and -1 for the others. `shared` must outlive the worker.
    Worker(unsigned index, std::size_t buffer_size, WorkerSettings settings, int listener,
           SharedState& shared, WorkerEvents events);
    ~Worker(); // stops the thread if it still runs
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    // Starts the thread and its accept loop.
    void start();
    // Waits until the thread has finished (after the drain).
    void join();

    // Thread-safe; each takes effect on the worker's thread.
    void serve_connected(int fd); // Accept=yes: serves one connection, for which a slot is taken
    // A connection another worker accepted and handed out, with the slot it took.
    void serve_accepted(int fd);
    // Runs `task` on the worker's thread after everything posted to it before.
    void post(std::function<void()> task);
    void apply(WorkerSettings settings);
    void slot_freed(); // a slot was given back: a paused accept loop may go on
    // Stops accepting (connections still in the listen backlog stay there) and reports `drained`
    // when the last session has ended.
    void begin_drain();
    void force_close(); // closes every open connection; they count as cut
    // A restart: stops accepting, as begin_drain(), and makes every session stop reading and let
    // go of its connection with the bytes it could not write back yet (take_handed()). Reports
    // `drained` when the last session has let go; the worker then waits for resume() (the
    // connections the store did not take) and begin_drain().
    void begin_handover();
    // Serves connections handed over by a previous process, or given back after a handover the
    // store refused: their unsent bytes first, then as any session. The caller has taken a slot
    // for each (--max-connections); the allow lists and the per-uid cap apply as to a new
    // connection.
    void resume(std::vector<HandedConnection> connections);
    void post_heartbeat(std::uint64_t beat);

    // Thread-safe readings.
    std::uint64_t bytes_echoed() const;
    std::uint64_t connections_cut() const;
    std::uint64_t heartbeat() const; // the last beat the event loop ran
    unsigned open_sessions() const;
    // The connections the sessions let go of; call after begin_handover() reported `drained`.
    std::vector<HandedConnection> take_handed();

private:
    class Impl;
    std::unique_ptr<Impl> impl_;
};

} // namespace uds_echo::daemon
