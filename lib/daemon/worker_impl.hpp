// The inside of a Worker, shared by the two files that implement it: worker.cpp (the thread, the
// accept loop, admission, drain and handover) and session.cpp (the life of one connection).
// Everything declared here runs on the worker's own thread unless its comment says otherwise.
#pragma once

#include "daemon/buffer_pool.hpp"
#include "daemon/worker.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/intrusive/list.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace uds_echo::daemon::worker_detail {

// Every session's coroutine frame is the cost of an idle connection: the choices marked "frame"
// keep it small, and docs/architecture.md ("Memory per connection") has the figures.

namespace asio = boost::asio;
using boost::system::error_code;

// Frame: the io_context's own executor type, smaller than the type-erased default.
using Executor = asio::io_context::executor_type;
template <typename T>
using Task = asio::awaitable<T, Executor>;
using Timer = asio::steady_timer::rebind_executor<Executor>::other;
using Socket = asio::local::stream_protocol::socket::rebind_executor<Executor>::other;
using Acceptor = asio::local::stream_protocol::acceptor::rebind_executor<Executor>::other;

// Frame: operations awaited in the caller's frame (no frame per operation as with
// use_awaitable); as_tuple turns the expected errors into values.
inline constexpr auto as_tuple_deferred = asio::as_tuple(asio::deferred);

// Frame: the bytes a session reads in its own frame. Shorter messages never touch the buffer
// pool; longer ones continue in a pooled buffer.
inline constexpr std::size_t first_read_size = 96;
using FirstRead = std::array<char, first_read_size>;

// One connection: its socket and what the worker knows of it. Frame: it is the session's
// parameter, and its hook unlinks it from the worker's list when the frame ends.
using AutoUnlinkHook =
    boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>>;
struct Connection : AutoUnlinkHook {
    Connection(Socket socket, std::uint64_t now_tick)
        : socket(std::move(socket))
        , last_activity_tick(now_tick) {}

    Socket socket;
    std::uint64_t last_activity_tick;
};

} // namespace uds_echo::daemon::worker_detail

namespace uds_echo::daemon {

class Worker::Impl {
public:
    // As Worker's constructor.
    Impl(unsigned index, std::size_t buffer_size, WorkerSettings settings, int listener,
         SharedState& shared, WorkerEvents events);
    ~Impl();
    Impl(const Impl&) = delete;
    Impl& operator=(const Impl&) = delete;

    // Any thread.
    template <typename Function>
    void post(Function&& function) {
        boost::asio::post(context_, std::forward<Function>(function));
    }
    std::uint64_t bytes_echoed() const { return bytes_echoed_.load(std::memory_order_relaxed); }
    std::uint64_t connections_cut() const { return cut_.load(std::memory_order_relaxed); }
    std::uint64_t heartbeat() const { return heartbeat_.load(std::memory_order_relaxed); }
    unsigned open_sessions() const { return live_sessions_.load(std::memory_order_relaxed); }
    void start();
    void join();
    void slot_freed();

    // The worker's thread (posted by the control thread); Worker's comments say what each does.
    void serve_connected(int fd);
    void serve_accepted(int fd);
    void apply(WorkerSettings settings);
    void set_heartbeat(std::uint64_t beat) { heartbeat_.store(beat, std::memory_order_relaxed); }
    void begin_drain();
    void force_close();
    void begin_handover();
    void resume(std::vector<HandedConnection> connections);
    std::vector<HandedConnection> take_handed() { return std::move(handed_); }

private:
    using Socket = worker_detail::Socket;
    using Connection = worker_detail::Connection;
    template <typename T>
    using Task = worker_detail::Task<T>;

    // The completion handler of a session: reports a failure, gives back what the connection
    // held. Frame: it lives as long as the session.
    struct SessionEnded {
        Impl* worker;
        std::uint64_t id;                 // the number the debug log ties to the peer
        std::optional<uid_t> counted_uid; // whose per-uid count to give back, if any
        void operator()(std::exception_ptr failure) const;
    };

    // worker.cpp: accepting and admitting.
    Task<void> accept_loop();
    Task<void> wait_for_free_slot();
    void admit(Socket socket, std::string unsent = {});
    Task<void> housekeeping();
    void close_idle_connections();
    void finish_if_drained();

    // session.cpp: the life of a connection.
    Task<void> session(Connection connection);
    void write_unsent_then_serve(Socket socket, std::string unsent, SessionEnded ended);
    void end_session(Connection& connection);
    bool let_go(Connection& connection);
    Task<bool> echo_read(Socket& peer, const worker_detail::FirstRead& first, std::size_t received);
    Task<bool> echo(Socket& peer, boost::asio::const_buffer data);
    Task<bool> echo_burst(Socket& peer, boost::asio::const_buffer first);
    void keep_unsent(Socket& peer, boost::asio::const_buffer data);
    void count_echoed(Socket& peer, std::size_t bytes) {
        bytes_echoed_.store(bytes_echoed_.load(std::memory_order_relaxed) + bytes,
                            std::memory_order_relaxed); // only this thread writes it
        if (!logged_.empty())
            count_logged(peer.native_handle(), bytes);
    }

    // Debug level: what the line that ends a connection reports ("connection 7 closed after
    // 2.5 s, 4.0 KiB echoed"), by descriptor. Kept here and not in the session so that an idle
    // connection costs no more, and left empty at the other levels.
    struct LoggedConnection {
        std::uint64_t id;
        std::chrono::steady_clock::time_point since;
        std::uint64_t echoed = 0;
    };
    void count_logged(int fd, std::size_t bytes);
    void log_end(int fd, std::string_view how);
    void close_and_log(Connection& connection, std::string_view why);

    unsigned index_;
    BufferPool buffers_;
    WorkerSettings settings_;
    SharedState& shared_;
    WorkerEvents events_;
    // Not constant-time size: auto-unlinking members cannot update a count.
    boost::intrusive::list<Connection, boost::intrusive::constant_time_size<false>> connections_;
    worker_detail::Timer* housekeeping_timer_ = nullptr;
    std::uint64_t tick_ = 0;
    bool draining_ = false;
    bool finished_ = false;
    // Restart: sessions let go of their connections into handed_ instead of closing them.
    bool handing_over_ = false;
    bool handover_reported_ = false;
    std::unordered_map<int, std::string> unsent_; // by descriptor, during a handover
    std::vector<HandedConnection> handed_;
    std::unordered_map<int, LoggedConnection> logged_;
    std::atomic<std::uint64_t> bytes_echoed_{0};
    std::atomic<std::uint64_t> cut_{0};
    std::atomic<std::uint64_t> heartbeat_{0};
    std::atomic<bool> accept_paused_{false};
    // Spawned and not ended (a spawned session starts later). Written by this thread only; read
    // by the accepting worker to choose where a connection goes.
    std::atomic<unsigned> live_sessions_{0};
    // Declared after everything a session's frame touches: destroying the context destroys any
    // frame still suspended in it, whose cleanup uses the members above.
    boost::asio::io_context context_{1};
    // I/O objects must go before their context.
    worker_detail::Acceptor acceptor_;
    worker_detail::Timer resume_accepting_;
    std::thread thread_;
};

} // namespace uds_echo::daemon
