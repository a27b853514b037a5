// The pool of workers: the one owner of what lies between the control thread and the workers:
// which worker serves a connection (the hand-out), the count --max-connections limits, the order
// in which drain and handover reach the workers, and the log of refused peers.
//
// Threads: the members whose names end in _on_worker_thread are called by a worker on its own
// thread; the readings under "Any thread" may be called anywhere; every other member runs on the
// control thread, which owns `control`.
#pragma once

#include "daemon/admission.hpp"
#include "daemon/handover.hpp"
#include "daemon/refusal_log.hpp"
#include "daemon/worker.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

namespace uds_echo::daemon {

class WorkerPool {
public:
    // `listeners` are the listening sockets, which the accepting worker (worker 0) takes, or none
    // when the daemon serves one connected socket (Accept=yes, serve_connected()); then
    // `one_connection_over` is called on the control thread, with the reason, once that
    // connection has been refused or has ended.
    WorkerPool(boost::asio::io_context& control, unsigned count, std::size_t buffer_size,
               const WorkerSettings& settings, Listeners listeners,
               std::function<void(const char* why)> one_connection_over);
    WorkerPool(const WorkerPool&) = delete;
    WorkerPool& operator=(const WorkerPool&) = delete;

    void start(); // the worker threads, and the accept loop
    void join();  // waits for the worker threads to end, after drain()
    std::size_t size() const { return workers_.size(); }

    void serve_connected(int fd);
    // Spreads `connections` over the workers; each beyond `limit` connections held is refused
    // (logged) and closed.
    void resume(std::vector<HandedConnection> connections, unsigned limit);
    void apply(const WorkerSettings& settings);
    // A restart: every worker stops accepting and its sessions let go of their connections, which
    // are returned once every worker is done. Sessions let go as soon as their cancelled
    // operations complete; after `timeout` the connections still open are closed (and counted as
    // cut), and the wait goes on until their sessions have ended.
    boost::asio::awaitable<std::vector<HandedConnection>> hand_over(std::chrono::seconds timeout);
    // Every worker stops accepting and ends when its last session has; after `timeout` the
    // connections still open are closed, as above. Returns how many connections were cut in all.
    boost::asio::awaitable<std::uint64_t> drain(std::chrono::seconds timeout);
    void force_close(); // closes every open connection now; they count as cut
    // The watchdog's proof that every event loop runs: each worker posts back the beat it ran.
    bool every_worker_ran(std::uint64_t beat) const;
    void post_heartbeat(std::uint64_t beat);
    std::uint64_t refused() const { return refusals_.count(); }

    // ---- Any thread ----

    unsigned connections_held() const; // open, or on their way to a worker
    std::uint64_t bytes_echoed() const;
    SharedState& shared() { return shared_; }
    std::uint64_t accepted() const { return shared_.accepted.load(); }

    // ---- Called by a worker on its own thread ----

    // The accepting worker offers every connection it accepts: true when another worker, with
    // fewer connections, was given it; false to serve it where it was accepted.
    bool hand_out_on_worker_thread(int fd, SocketType type);
    void refused_on_worker_thread(std::uint64_t id, std::optional<PeerCredentials> peer,
                                  const char* reason);
    void session_ended_on_worker_thread();
    void let_go_on_worker_thread(std::vector<HandedConnection> connections);
    void drained_on_worker_thread();

private:
    template <typename Step>
    void for_each_worker_accepting_first(Step step);
    boost::asio::awaitable<void> wait_for_every_worker(std::chrono::seconds timeout);
    void worker_done(); // a worker reported the end of a handover or a drain

    boost::asio::io_context& control_;
    std::function<void(const char*)> one_connection_over_; // empty unless Accept=yes
    SharedState shared_;
    RefusalLog refusals_;
    boost::asio::steady_timer all_done_; // the deadline of a drain or handover
    std::size_t workers_busy_ = 0;       // not yet done with the drain or handover
    std::vector<HandedConnection> handed_;
    // Last: the workers use everything above until they are destroyed.
    std::vector<std::unique_ptr<Worker>> workers_;
};

} // namespace uds_echo::daemon
