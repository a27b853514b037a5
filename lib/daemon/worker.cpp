// A worker's thread and its accept loop: admission of each connection (allow lists, per-uid cap),
// the idle sweep, drain and handover. Everything here runs on the worker's own thread; the control
// side reaches it only through Worker's thread-safe members, which post to the worker's
// io_context. session.cpp has the life of a connection once admitted.
#include "daemon/worker_impl.hpp"

#include "common/text.hpp"
#include "daemon/logging.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/version.hpp>

#include <sys/socket.h>

#include <cerrno>
#include <chrono>

namespace uds_echo::daemon {
namespace {

using namespace worker_detail;

// A socket the accept loop made with accept4(SOCK_NONBLOCK | SOCK_CLOEXEC). Asio cannot know what
// this code knows about such a descriptor, and pays two system calls per connection for it: an
// ioctl(FIONBIO) before the first operation that could block, and an EPOLL_CTL_DEL before close,
// because a descriptor it is given with assign() might have duplicates that keep the open file,
// and its epoll registration, alive. This one is non-blocking already and has no duplicate, so
// close() alone removes it from epoll. The flags live in Asio's implementation details, so this
// is done only for the Boost version it was checked against; any other version takes the
// documented path and the two system calls.
class AcceptedSocket : public Socket {
public:
    explicit AcceptedSocket(asio::io_context& context)
        : Socket(context) {}

    void adopt(int fd) {
        assign(asio::local::stream_protocol(), fd);
#if BOOST_VERSION == 108100
        namespace socket_ops = asio::detail::socket_ops;
        auto& state = impl_.get_implementation().state_;
        state = static_cast<socket_ops::state_type>(
            (state | socket_ops::user_set_non_blocking | socket_ops::internal_non_blocking) &
            ~socket_ops::possible_dup);
#else
        non_blocking(true);
#endif
    }
};

// At most this many connections are accepted in a row before the sessions get a turn.
constexpr int accept_batch = 32;

// How long the accept loop rests when the process or the system is out of descriptors (or
// memory): the listener stays readable meanwhile, so retrying at once would spin at full CPU.
constexpr auto accept_backoff = std::chrono::milliseconds(100);

bool is_resource_exhaustion(const error_code& error) {
    return error == asio::error::no_descriptors ||
           error == std::errc::too_many_files_open_in_system ||
           error == asio::error::no_buffer_space || error == asio::error::no_memory;
}

} // namespace

Worker::Impl::Impl(unsigned index, std::size_t buffer_size, WorkerSettings settings, int listener,
                   SharedState& shared, WorkerEvents events)
    : index_(index)
    , buffers_(buffer_size)
    , settings_(std::move(settings))
    , shared_(shared)
    , events_(std::move(events))
    , acceptor_(context_)
    , resume_accepting_(context_) {
    if (listener >= 0) {
        acceptor_.assign(asio::local::stream_protocol(), listener);
        // accept4() must never block: a socket passed by systemd is blocking unless the unit says
        // NonBlocking=yes, and another worker may take the connection that woke this one.
        acceptor_.native_non_blocking(true);
    }
}

Worker::Impl::~Impl() {
    if (thread_.joinable()) {
        context_.stop();
        thread_.join();
    }
}

void Worker::Impl::start() {
    asio::co_spawn(context_, housekeeping(), asio::detached);
    if (acceptor_.is_open())
        asio::co_spawn(context_, accept_loop(), [](std::exception_ptr failure) {
            if (failure)
                std::rethrow_exception(failure); // no daemon without its acceptors
        });
    thread_ = std::thread([this] { context_.run(); });
}

void Worker::Impl::join() {
    if (thread_.joinable())
        thread_.join();
}

// Any thread: a slot was given back, so a paused accept loop may go on.
void Worker::Impl::slot_freed() {
    if (accept_paused_.load())
        asio::post(context_, [this] { resume_accepting_.cancel(); });
}

// Accept=yes: the descriptor is the one client to serve.
void Worker::Impl::serve_connected(int fd) {
    shared_.slots.try_take(1);
    admit(Socket(context_, asio::local::stream_protocol(), fd));
}

void Worker::Impl::serve_accepted(int fd) {
    AcceptedSocket socket(context_);
    socket.adopt(fd);
    admit(std::move(socket));
}

void Worker::Impl::apply(WorkerSettings settings) {
    settings_ = std::move(settings);
    resume_accepting_.cancel(); // a raised --max-connections frees slots
}

// Connections still in the listen backlog stay there: a listening socket passed by systemd keeps
// them for the next start.
void Worker::Impl::begin_drain() {
    draining_ = true;
    handing_over_ = false; // after a handover: what was given back is drained
    error_code ignored;
    acceptor_.close(ignored);
    resume_accepting_.cancel();
    finish_if_drained();
}

void Worker::Impl::force_close() {
    cut_.fetch_add(connections_.size(), std::memory_order_relaxed);
    for (auto& connection : connections_)
        close_and_log(connection, "cut at the shutdown timeout");
}

// A restart: no new connections, and every session stops where it is. The cancelled reads end at
// once; a cancelled write leaves its unwritten bytes with the connection. Each session then lets
// go of its connection (let_go() in session.cpp).
void Worker::Impl::begin_handover() {
    handing_over_ = true;
    draining_ = true;
    error_code ignored;
    acceptor_.close(ignored);
    resume_accepting_.cancel();
    for (auto& connection : connections_)
        connection.socket.cancel(ignored);
    finish_if_drained();
}

void Worker::Impl::resume(std::vector<HandedConnection> connections) {
    // Given back after a handover: the sessions are served here again, until the drain.
    handing_over_ = false;
    handover_reported_ = false;
    for (auto& connection : connections) {
        Socket socket(context_);
        error_code error;
        socket.assign(asio::local::stream_protocol(), connection.fd.get(), error);
        if (error) {
            UDS_LOG(error) << "cannot resume a connection: " << error.message();
            shared_.slots.give_back();
            continue;
        }
        connection.fd.release();
        admit(std::move(socket), std::move(connection.unsent));
    }
}

// Accepts every pending connection with accept4() and waits for the listener to become readable
// only when there is none: one wake-up can bring many connections, and each costs one accept4()
// and no other system call before its session starts. Waiting after EAGAIN loses no connection
// because one thread runs this io_context: epoll is not polled between the accept4() that said
// EAGAIN and the wait that follows it, so the next arrival's event finds the wait.
Worker::Impl::Task<void> Worker::Impl::accept_loop() {
    // Moved into the session after each accept: a moved-from socket is as if newly constructed.
    AcceptedSocket socket(context_);
    int accepted_in_a_row = 0;
    while (!draining_) {
        if (!shared_.slots.try_take(settings_.max_connections)) {
            co_await wait_for_free_slot();
            continue;
        }
        if (++accepted_in_a_row > accept_batch) {
            accepted_in_a_row = 0;
            co_await asio::post(context_, asio::deferred); // let the sessions run
        }
        if (draining_) { // the acceptor was closed while this loop waited
            shared_.slots.give_back();
            co_return;
        }
        const int fd =
            ::accept4(acceptor_.native_handle(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        const error_code error(fd < 0 ? errno : 0, asio::error::get_system_category());
        if (fd < 0)
            shared_.slots.give_back();
        if (error == asio::error::would_block || error == asio::error::try_again) {
            accepted_in_a_row = 0;
            co_await acceptor_.async_wait(asio::socket_base::wait_read, as_tuple_deferred);
            continue;
        }
        if (is_resource_exhaustion(error)) {
            // The pending connection stays in the backlog and the listener stays readable, so
            // retrying at once would spin at full CPU. Logged once per episode, by whichever
            // worker meets it first.
            if (!shared_.out_of_resources.exchange(true))
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
        if (shared_.out_of_resources.exchange(false))
            UDS_LOG(info) << "accepting connections again";
        if (events_.hand_out && events_.hand_out(fd))
            continue;
        socket.adopt(fd);
        admit(std::move(socket));
    }
}

// At --max-connections the listener is left alone: new clients wait in the kernel's listen backlog
// (nobody is reset) until a session ends and wakes this wait.
Worker::Impl::Task<void> Worker::Impl::wait_for_free_slot() {
    accept_paused_.store(true);
    // Re-checked after publishing the flag: a session that ended just before saw no flag.
    if (!shared_.slots.available(settings_.max_connections) && !draining_) {
        resume_accepting_.expires_at(Timer::time_point::max());
        co_await resume_accepting_.async_wait(as_tuple_deferred);
    }
    accept_paused_.store(false);
}

// Checks the peer against the allow lists and the per-uid cap and starts its session. A refused
// peer is closed before a byte of it is read.
void Worker::Impl::admit(Socket socket, std::string unsent) {
    const auto id = ++shared_.accepted;
    std::optional<PeerCredentials> peer;
    if (settings_.needs_credentials())
        peer = peer_credentials(socket.native_handle()).value_or(PeerCredentials{});
    if (settings_.access.restricts() && !settings_.access.allows(*peer)) {
        shared_.slots.give_back();
        events_.refused(id, *peer, "not in allow-uid or allow-gid");
        return;
    }
    SessionEnded ended{this, id, std::nullopt};
    if (settings_.max_connections_per_uid > 0 && peer->uid != UidCounts::exempt) {
        if (!shared_.uid_counts.try_add(peer->uid, settings_.max_connections_per_uid)) {
            shared_.slots.give_back();
            events_.refused(id, *peer, "its uid already holds max-connections-per-uid");
            return;
        }
        ended.counted_uid = peer->uid;
    }
    UDS_LOG(debug) << PeerInLog{id, peer} << " accepted by worker " << index_;
    if (log_enabled(LogLevel::debug))
        logged_[socket.native_handle()] = {id, std::chrono::steady_clock::now()};
    shared_.open.fetch_add(1);
    live_sessions_.fetch_add(1, std::memory_order_relaxed);
    if (unsent.empty())
        asio::co_spawn(context_, session(Connection(std::move(socket), tick_)), ended);
    else
        write_unsent_then_serve(std::move(socket), std::move(unsent), ended);
}

// The one place where a session's unexpected failure is reported.
void Worker::Impl::SessionEnded::operator()(std::exception_ptr failure) const {
    if (failure) {
        try {
            std::rethrow_exception(failure);
        } catch (const std::exception& error) {
            UDS_LOG(error) << "connection " << id << " failed: " << error.what();
        }
    }
    if (counted_uid)
        worker->shared_.uid_counts.remove(*counted_uid);
    worker->shared_.open.fetch_sub(1);
    worker->live_sessions_.fetch_sub(1, std::memory_order_relaxed);
    worker->shared_.slots.give_back();
    worker->events_.session_ended();
    worker->finish_if_drained();
}

// Once a second: advances the clock sessions use for their last activity, and closes the
// connections idle for longer than --idle-timeout. One timer per worker instead of one per
// connection keeps an idle connection's memory small.
Worker::Impl::Task<void> Worker::Impl::housekeeping() {
    Timer timer(context_);
    housekeeping_timer_ = &timer;
    while (!finished_) {
        timer.expires_after(std::chrono::seconds(1));
        co_await timer.async_wait(as_tuple_deferred); // cancelled when the worker finishes
        ++tick_;
        close_idle_connections();
    }
    housekeeping_timer_ = nullptr;
}

void Worker::Impl::close_idle_connections() {
    const auto timeout = static_cast<std::uint64_t>(settings_.idle_timeout.count());
    if (timeout == 0)
        return;
    for (auto& connection : connections_) {
        if (tick_ - connection.last_activity_tick > timeout)
            close_and_log(connection, "closed for idleness");
    }
}

// Closed by the worker rather than by its session: the line says why.
void Worker::Impl::close_and_log(Connection& connection, std::string_view why) {
    if (!logged_.empty())
        log_end(connection.socket.native_handle(), why);
    error_code ignored;
    connection.socket.close(ignored);
}

void Worker::Impl::count_logged(int fd, std::size_t bytes) {
    if (const auto entry = logged_.find(fd); entry != logged_.end())
        entry->second.echoed += bytes;
}

void Worker::Impl::log_end(int fd, std::string_view how) {
    const auto entry = logged_.find(fd);
    if (entry == logged_.end())
        return; // accepted while debug logging was off
    const auto& connection = entry->second;
    UDS_LOG(debug) << LogField{"connection", static_cast<std::int64_t>(connection.id)}
                   << "connection " << connection.id << ' ' << how << " after "
                   << latency_text(std::chrono::steady_clock::now() - connection.since) << ", "
                   << byte_count_text(connection.echoed) << " echoed";
    logged_.erase(entry);
}

void Worker::Impl::finish_if_drained() {
    if (!draining_ || !connections_.empty() || live_sessions_.load(std::memory_order_relaxed) > 0 ||
        finished_)
        return;
    if (handing_over_) {
        if (!std::exchange(handover_reported_, true))
            events_.drained();
        return;
    }
    finished_ = true;
    if (housekeeping_timer_ != nullptr)
        housekeeping_timer_->cancel();
    events_.drained();
}
Worker::Worker(unsigned index, std::size_t buffer_size, WorkerSettings settings, int listener,
               SharedState& shared, WorkerEvents events)
    : impl_(std::make_unique<Impl>(index, buffer_size, std::move(settings), listener, shared,
                                   std::move(events))) {}

Worker::~Worker() = default;

void Worker::start() {
    impl_->start();
}

void Worker::join() {
    impl_->join();
}

void Worker::serve_connected(int fd) {
    impl_->post([this, fd] { impl_->serve_connected(fd); });
}

void Worker::serve_accepted(int fd) {
    impl_->post([this, fd] { impl_->serve_accepted(fd); });
}

void Worker::post(std::function<void()> task) {
    impl_->post(std::move(task));
}

unsigned Worker::open_sessions() const {
    return impl_->open_sessions();
}

void Worker::apply(WorkerSettings settings) {
    impl_->post(
        [this, settings = std::move(settings)]() mutable { impl_->apply(std::move(settings)); });
}

void Worker::slot_freed() {
    impl_->slot_freed();
}

void Worker::begin_drain() {
    impl_->post([this] { impl_->begin_drain(); });
}

void Worker::force_close() {
    impl_->post([this] { impl_->force_close(); });
}

void Worker::begin_handover() {
    impl_->post([this] { impl_->begin_handover(); });
}

void Worker::resume(std::vector<HandedConnection> connections) {
    impl_->post([this, connections = std::move(connections)]() mutable {
        impl_->resume(std::move(connections));
    });
}

std::vector<HandedConnection> Worker::take_handed() {
    return impl_->take_handed();
}

void Worker::post_heartbeat(std::uint64_t beat) {
    impl_->post([this, beat] { impl_->set_heartbeat(beat); });
}

std::uint64_t Worker::bytes_echoed() const {
    return impl_->bytes_echoed();
}

std::uint64_t Worker::connections_cut() const {
    return impl_->connections_cut();
}

std::uint64_t Worker::heartbeat() const {
    return impl_->heartbeat();
}

} // namespace uds_echo::daemon
