// A worker's thread and its accept loop: admission of each connection (admission.hpp), the idle
// sweep, and the phases of its life (worker.hpp). session.cpp has the life of a connection once
// admitted.
#include "daemon/worker.hpp"

#include "common/text.hpp"
#include "daemon/accepted_socket.hpp"
#include "daemon/logging.hpp"
#include "daemon/worker_pool.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include <sys/socket.h>

#include <cerrno>
#include <chrono>

namespace uds_echo::daemon {
namespace {

namespace asio = boost::asio;
using boost::system::error_code;

// At most this many connections are accepted in a row before the sessions get a turn.
constexpr int accept_batch = 32;

// How long the accept loop rests when the process or the system is out of descriptors (or
// memory): the listener stays readable meanwhile, so retrying at once would spin at full CPU.
constexpr auto accept_backoff = std::chrono::milliseconds(100);

// The type of a connection that did not come from this process's accept loop (Accept=yes, or
// handed over by the previous process): SO_TYPE says. Anything but seqpacket is served as a
// stream.
SocketType connection_type(int fd) {
    int kernel_type = SOCK_STREAM;
    socklen_t length = sizeof kernel_type;
    ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &kernel_type, &length);
    return kernel_type == SOCK_SEQPACKET ? SocketType::seqpacket : SocketType::stream;
}

bool is_resource_exhaustion(const error_code& error) {
    return error == asio::error::no_descriptors ||
           error == std::errc::too_many_files_open_in_system ||
           error == asio::error::no_buffer_space || error == asio::error::no_memory;
}

} // namespace

Worker::Worker(unsigned index, std::size_t buffer_size, WorkerSettings settings,
               Listeners listeners, WorkerPool& pool)
    : index_(index)
    , pool_(pool)
    , read_buffer_(buffer_size)
    , buffers_(buffer_size)
    , message_buffers_(message_capacity(buffer_size))
    , settings_(std::move(settings))
    , acceptor_(context_)
    , seqpacket_acceptor_(context_)
    , resume_accepting_(context_) {
    // accept4() must never block: the accept loop calls it until it says EAGAIN, and a socket
    // passed by systemd is blocking unless the unit says NonBlocking=yes. A seqpacket listener
    // is held as a stream acceptor, as its connections are (connection.hpp).
    for (auto [fd, acceptor] : {std::pair{listeners.stream, &acceptor_},
                                std::pair{listeners.seqpacket, &seqpacket_acceptor_}}) {
        if (fd < 0)
            continue;
        acceptor->assign(asio::local::stream_protocol(), fd);
        acceptor->native_non_blocking(true);
    }
    resume_accepting_.expires_at(Timer::time_point::max());
}

Worker::~Worker() {
    if (thread_.joinable()) {
        context_.stop();
        thread_.join();
    }
}

void Worker::start() {
    asio::co_spawn(context_, housekeeping(), asio::detached);
    for (auto [acceptor, type] : {std::pair{&acceptor_, SocketType::stream},
                                  std::pair{&seqpacket_acceptor_, SocketType::seqpacket}})
        if (acceptor->is_open())
            asio::co_spawn(context_, accept_loop(*acceptor, type), [](std::exception_ptr failure) {
                if (failure)
                    std::rethrow_exception(failure); // no daemon without its accept loop
            });
    thread_ = std::thread([this] { context_.run(); });
}

void Worker::join() {
    if (thread_.joinable())
        thread_.join();
}

void Worker::wake_accept_loop() {
    if (accept_loops_paused_.load() > 0)
        asio::post(context_, [this] { resume_accepting_.cancel(); });
}

// Accept=yes: the descriptor is the one client to serve.
void Worker::serve_connected(int fd) {
    admit(StreamSocket(context_, asio::local::stream_protocol(), fd), connection_type(fd));
}

void Worker::serve_accepted(int fd, SocketType type) {
    AcceptedSocket socket(context_);
    socket.adopt(fd);
    admit(std::move(socket), type);
}

void Worker::apply(WorkerSettings settings) {
    settings_ = std::move(settings);
    resume_accepting_.cancel(); // a raised --max-connections makes room
}

// Connections still in the listen backlog stay there: a listening socket passed by systemd keeps
// them for the next start.
void Worker::begin_drain() {
    if (phase_ == Phase::finished)
        return;
    phase_ = Phase::draining;
    error_code ignored;
    acceptor_.close(ignored);
    seqpacket_acceptor_.close(ignored);
    resume_accepting_.cancel();
    report_if_done();
}

void Worker::force_close() {
    cut_.fetch_add(connections_.size(), std::memory_order_relaxed);
    for (auto& connection : connections_)
        close_and_log(connection, "cut at the shutdown timeout");
}

// A restart: no new connections, and every session stops where it is. The cancelled reads end at
// once; a cancelled write hands its unwritten bytes over with the connection. Each session then
// lets go of its connection (end_session() in session.cpp).
void Worker::begin_handover() {
    phase_ = Phase::handing_over;
    error_code ignored;
    acceptor_.close(ignored);
    seqpacket_acceptor_.close(ignored);
    resume_accepting_.cancel();
    for (auto& connection : connections_)
        connection.socket.cancel(ignored);
    report_if_done();
}

void Worker::resume(std::vector<HandedConnection> connections) {
    for (auto& connection : connections) {
        StreamSocket socket(context_);
        error_code error;
        socket.assign(asio::local::stream_protocol(), connection.fd.get(), error);
        if (error) {
            UDS_LOG(error) << "cannot resume a connection: " << error.message();
            held_.fetch_sub(1);
            continue;
        }
        const int fd = connection.fd.release();
        admit(std::move(socket), connection_type(fd), std::move(connection.unsent));
    }
    report_if_done();
}

// Accepts every pending connection with accept4() and waits for the listener to become readable
// only when there is none: one wake-up can bring many connections, and each costs one accept4()
// and no other system call before its session starts. Waiting after EAGAIN loses no connection
// because one thread runs this io_context: epoll is not polled between the accept4() that said
// EAGAIN and the wait that follows it, so the next arrival's event finds the wait.
Task<void> Worker::accept_loop(StreamAcceptor& acceptor, SocketType type) {
    // Moved into the session after each accept: a moved-from socket is as if newly constructed.
    AcceptedSocket socket(context_);
    int accepted_in_a_row = 0;
    while (phase_ == Phase::serving) {
        if (pool_.connections_held() >= settings_.max_connections) {
            co_await wait_for_room();
            continue;
        }
        if (++accepted_in_a_row > accept_batch) {
            accepted_in_a_row = 0;
            co_await asio::post(context_, asio::deferred); // let the sessions run
            continue;                                      // the drain may have begun meanwhile
        }
        const int fd =
            ::accept4(acceptor.native_handle(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        const error_code error(fd < 0 ? errno : 0, asio::error::get_system_category());
        if (error == asio::error::would_block || error == asio::error::try_again) {
            accepted_in_a_row = 0;
            co_await acceptor.async_wait(asio::socket_base::wait_read, as_tuple_deferred);
            continue;
        }
        if (is_resource_exhaustion(error)) {
            // The pending connection stays in the backlog and the listener stays readable, so
            // retrying at once would spin at full CPU. Logged once per episode.
            if (!pool_.shared().out_of_resources.exchange(true))
                UDS_LOG(warning) << "cannot accept connections: " << error.message()
                                 << "; retrying every " << accept_backoff.count() << " ms";
            Timer backoff(context_, accept_backoff);
            co_await backoff.async_wait(as_tuple_deferred);
            continue;
        }
        if (error) {
            // ECONNABORTED and the like concern one client only.
            UDS_LOG(debug) << "accept failed: " << error.message();
            continue;
        }
        if (pool_.shared().out_of_resources.exchange(false))
            UDS_LOG(info) << "accepting connections again";
        if (pool_.hand_out_on_worker_thread(fd, type))
            continue;
        reserve();
        socket.adopt(fd);
        admit(std::move(socket), type);
    }
}

// At --max-connections the listener is left alone: new clients wait in the kernel's listen backlog
// (nobody is reset) until a connection ends and wakes this wait.
Task<void> Worker::wait_for_room() {
    accept_loops_paused_.fetch_add(1);
    // Re-checked after publishing the flag: a connection that ended just before saw no flag.
    if (pool_.connections_held() >= settings_.max_connections && phase_ == Phase::serving) {
        // The expiry stays at the end of time (set once: setting it would cancel the other accept
        // loop's wait); cancel() wakes every loop that waits.
        co_await resume_accepting_.async_wait(as_tuple_deferred);
    }
    accept_loops_paused_.fetch_sub(1);
}

// Admits the peer (allow lists, per-uid cap) and starts its session. A refused peer is closed
// before a byte of it is read.
void Worker::admit(StreamSocket socket, SocketType type, std::string unsent) {
    auto& shared = pool_.shared();
    const auto id = ++shared.accepted;
    const auto admission = admit_peer(socket.native_handle(), settings_, shared.uid_counts);
    if (admission.refusal != nullptr) {
        held_.fetch_sub(1);
        pool_.refused_on_worker_thread(id, admission.peer, admission.refusal);
        report_if_done();
        return;
    }
    UDS_LOG(debug) << PeerInLog{id, admission.peer} << " accepted by worker " << index_;
    std::unique_ptr<ConnectionLog> log;
    if (log_enabled(LogLevel::debug))
        log = std::make_unique<ConnectionLog>(id, std::chrono::steady_clock::now());
    Connection connection(std::move(socket), type, tick_, std::move(log));
    const SessionEnded ended{this, id, admission.counted_uid};
    if (unsent.empty())
        asio::co_spawn(context_, session_of_type(std::move(connection)), ended);
    else
        write_unsent_then_serve(std::move(connection), std::move(unsent), ended);
}

Task<void> Worker::session_of_type(Connection connection) {
    return connection.type == SocketType::seqpacket ? seqpacket_session(std::move(connection))
                                                    : session(std::move(connection));
}

// The one place where a session's unexpected failure is reported.
void Worker::SessionEnded::operator()(std::exception_ptr failure) const {
    if (failure) {
        try {
            std::rethrow_exception(failure);
        } catch (const std::exception& error) {
            UDS_LOG(error) << "connection " << id << " failed: " << error.what();
        }
    }
    if (counted_uid)
        worker->pool_.shared().uid_counts.remove(*counted_uid);
    worker->held_.fetch_sub(1);
    worker->pool_.session_ended_on_worker_thread();
    worker->report_if_done();
}

// Once a second: advances the clock sessions use for their last activity, and closes the
// connections idle for longer than --idle-timeout. One timer per worker instead of one per
// connection keeps an idle connection's memory small.
Task<void> Worker::housekeeping() {
    Timer timer(context_);
    housekeeping_timer_ = &timer;
    while (phase_ != Phase::finished) {
        timer.expires_after(std::chrono::seconds(1));
        co_await timer.async_wait(as_tuple_deferred); // cancelled when the worker finishes
        ++tick_;
        close_idle_connections();
    }
    housekeeping_timer_ = nullptr;
}

void Worker::close_idle_connections() {
    const auto timeout = static_cast<std::uint64_t>(settings_.idle_timeout.count());
    if (timeout == 0)
        return;
    for (auto& connection : connections_) {
        if (tick_ - connection.last_activity_tick > timeout)
            close_and_log(connection, "closed for idleness");
    }
}

// Closed by the worker rather than by its session: the line says why.
void Worker::close_and_log(Connection& connection, std::string_view why) {
    log_end(connection, why);
    error_code ignored;
    connection.socket.close(ignored);
}

// The debug line that ends a connection; once, by whoever ends it first.
void Worker::log_end(Connection& connection, std::string_view how) {
    const auto log = std::move(connection.log);
    if (!log)
        return; // admitted while debug logging was off, or logged already
    UDS_LOG(debug) << LogField{"connection", static_cast<std::int64_t>(log->id)} << "connection "
                   << log->id << ' ' << how << " after "
                   << latency_text(std::chrono::steady_clock::now() - log->since) << ", "
                   << byte_count_text(log->echoed) << " echoed";
}

// When the last connection is gone: a handover reports what the sessions let go of, a drain
// that the worker is done.
void Worker::report_if_done() {
    if (held_.load() > 0)
        return;
    if (phase_ == Phase::handing_over) {
        phase_ = Phase::handed_over;
        pool_.let_go_on_worker_thread(std::exchange(handed_, {}));
    } else if (phase_ == Phase::draining) {
        phase_ = Phase::finished;
        if (housekeeping_timer_ != nullptr)
            housekeeping_timer_->cancel();
        pool_.drained_on_worker_thread();
    }
}

} // namespace uds_echo::daemon
