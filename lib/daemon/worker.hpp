// A worker: one thread, one io_context, and one coroutine session per connection it serves. The
// accepting worker (worker 0, the only one given the listening socket) also runs the accept loop
// and gives each connection it accepts to the pool, which may send it to another worker.
// worker.cpp has the thread, the accept loop, admission, the idle sweep, drain and handover;
// session.cpp the life of one connection. docs/architecture.md tells the whole story.
//
// Threads: the members under "Any thread" may be called from any thread. Every other member runs
// on the worker's own thread: WorkerPool posts to it (post()), and the worker's coroutines and
// handlers call it there.
#pragma once

#include "daemon/admission.hpp"
#include "daemon/buffer_pool.hpp"
#include "daemon/connection.hpp"
#include "daemon/handover.hpp"

#include <boost/asio/post.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace uds_echo::daemon {

class WorkerPool;

// The listening sockets the accepting worker takes (and closes); -1: none of that type.
struct Listeners {
    int stream = -1;
    int seqpacket = -1;
};

class Worker {
public:
    // A worker's life. A stop: serving, draining, finished. A restart: serving, handing_over,
    // handed_over (its connections are with the pool; it serves those given back), draining,
    // finished.
    enum class Phase {
        serving,      // the accepting worker accepts; every worker serves its sessions
        handing_over, // no accepting; every session stops where it is and lets go of its connection
        handed_over,  // every session has let go, which the pool was told
        draining,     // no accepting; the pool is told when the last session has ended
        finished,     // nothing left: the thread's event loop runs out of work and ends
    };

    // `index` names the worker in the log. `listener` is the listening socket for the accepting
    // worker, which closes it, and -1 for the others. `pool` must outlive the worker.
    Worker(unsigned index, std::size_t buffer_size, WorkerSettings settings, Listeners listeners,
           WorkerPool& pool);
    ~Worker(); // stops the thread if it still runs
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    // ---- Any thread ----

    void start(); // starts the thread and, on the accepting worker, the accept loop
    void join();  // waits until the thread has finished (after the drain)
    template <typename Function>
    void post(Function&& function) {
        boost::asio::post(context_, std::forward<Function>(function));
    }
    // Counts a connection given to this worker (accepted here, or posted to serve_accepted(),
    // serve_connected() or resume()) before it is admitted; a refusal or the session's end takes
    // it off again.
    void reserve() { held_.fetch_add(1); }
    // Connections held or on their way: what --max-connections limits (summed over the pool) and
    // what the hand-out balances. The one count of this worker's connections.
    unsigned held() const { return held_.load(); }
    // A connection ended somewhere: a paused accept loop may go on.
    void wake_accept_loop();
    std::uint64_t bytes_echoed() const { return bytes_echoed_.load(std::memory_order_relaxed); }
    std::uint64_t connections_cut() const { return cut_.load(std::memory_order_relaxed); }
    std::uint64_t heartbeat() const { return heartbeat_.load(std::memory_order_relaxed); }

    // ---- The worker's thread ----

    void serve_connected(int fd); // Accept=yes: the one connection to serve, of either type
    void serve_accepted(int fd, SocketType type); // from accept4() on the accepting worker
    void apply(WorkerSettings settings);
    void set_heartbeat(std::uint64_t beat) { heartbeat_.store(beat, std::memory_order_relaxed); }
    // Stops accepting (connections still in the listen backlog stay there); the pool is told when
    // the last session has ended.
    void begin_drain();
    void force_close(); // closes every open connection; they count as cut
    // A restart: stops accepting, and makes every session stop reading and let go of its
    // connection with the bytes it could not write back yet. The pool is given them when the last
    // session has let go; the worker then waits for resume() and begin_drain().
    void begin_handover();
    // Connections handed over by a previous process, or given back after a handover the store
    // refused: their unsent bytes first, then as any session. Each was reserve()d; the allow
    // lists and the per-uid cap apply as to a new connection.
    void resume(std::vector<HandedConnection> connections);

private:
    // The completion handler of a session: reports a failure, gives back what admission took.
    // Frame: it lives in co_spawn's frame as long as the session.
    struct SessionEnded {
        Worker* worker;
        std::uint64_t id;                 // the number the log ties to the peer
        std::optional<uid_t> counted_uid; // whose per-uid count to give back, if any
        void operator()(std::exception_ptr failure) const;
    };

    // worker.cpp: accepting and admitting, on any kind of connection.
    Task<void> accept_loop(StreamAcceptor& acceptor, SocketType type);
    Task<void> wait_for_room();
    void admit(StreamSocket socket, SocketType type, std::string unsent = {});
    // The session of a connection of its type.
    Task<void> session_of_type(Connection connection);
    void connection_done(); // a reserved connection was refused or its session ended
    Task<void> housekeeping();
    void close_idle_connections();
    void close_and_log(Connection& connection, std::string_view why);
    void log_end(Connection& connection, std::string_view how);
    void report_if_done();

    // session.cpp: the life of a stream connection.
    Task<void> session(Connection connection);
    std::optional<std::size_t> read_now(StreamSocket& socket);
    auto wait_readable(StreamSocket& socket);
    Task<bool> echo(Connection& connection, boost::asio::const_buffer data);
    void write_unsent_then_serve(Connection connection, std::string unsent, SessionEnded ended);
    void end_session(Connection& connection);
    void let_go(Connection& connection, boost::asio::const_buffer unsent);

    // seqpacket_session.cpp: the life of a seqpacket connection.
    Task<void> seqpacket_session(Connection connection);
    Task<bool> echo_messages(Connection& connection);
    void count_echoed(Connection& connection, std::size_t bytes) {
        bytes_echoed_.store(bytes_echoed_.load(std::memory_order_relaxed) + bytes,
                            std::memory_order_relaxed); // only this thread writes it
        if (connection.log)
            connection.log->echoed += bytes;
    }

    unsigned index_;
    WorkerPool& pool_;
    // Every stream session on the worker reads into this one buffer and writes back what it read
    // before another read runs (session.cpp): an idle connection holds no buffer.
    std::vector<char> read_buffer_;
    // What a stream session must hold while its client is slow to read is copied into one of
    // these.
    BufferPool buffers_;
    // A seqpacket message is received whole into one of these (message_capacity()), never into
    // a session's frame: an idle seqpacket connection holds no buffer either.
    BufferPool message_buffers_;
    WorkerSettings settings_;
    ConnectionList connections_;
    Timer* housekeeping_timer_ = nullptr;
    std::uint64_t tick_ = 0;
    Phase phase_ = Phase::serving;
    // A restart: the connections the sessions let go of, given to the pool in one piece.
    std::vector<HandedConnection> handed_;
    std::atomic<unsigned> held_{0};
    std::atomic<std::uint64_t> bytes_echoed_{0};
    std::atomic<std::uint64_t> cut_{0};
    std::atomic<std::uint64_t> heartbeat_{0};
    std::atomic<unsigned> accept_loops_paused_{0}; // waiting in wait_for_room()
    // Declared after everything a session's frame touches: destroying the context destroys any
    // frame still suspended in it, whose cleanup uses the members above.
    boost::asio::io_context context_{1};
    // I/O objects must go before their context.
    StreamAcceptor acceptor_;
    StreamAcceptor seqpacket_acceptor_;
    Timer resume_accepting_;
    std::thread thread_;
};

} // namespace uds_echo::daemon
