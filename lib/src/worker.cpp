// The worker side of the server: accept loop, sessions, read buffers, idle sweep. Everything here
// runs on the worker's own thread; the control side reaches it only through Worker's thread-safe
// members, which post to the worker's io_context.
#include "worker.hpp"

#include "buffer_pool.hpp"

#include "uds_echo/logging.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/intrusive/list.hpp>
#include <boost/version.hpp>

#include <sys/socket.h>

#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace uds_echo {
namespace {

// Every session's coroutine frame is the cost of an idle connection: the choices marked "frame"
// below keep it small, and docs/architecture.md ("Memory per connection") has the figures.

namespace asio = boost::asio;
// Frame: the io_context's own executor type, smaller than the type-erased default.
using WorkerExecutor = asio::io_context::executor_type;
template <typename T>
using WorkerTask = asio::awaitable<T, WorkerExecutor>;

using WorkerTimer = asio::steady_timer::rebind_executor<WorkerExecutor>::other;

using Socket =
    asio::local::stream_protocol::socket::rebind_executor<asio::io_context::executor_type>::other;
using boost::system::error_code;

// Frame: operations awaited in the caller's frame (no frame per operation as with
// use_awaitable); as_tuple turns the expected errors into values.
constexpr auto as_tuple_deferred = asio::as_tuple(asio::deferred);

// Frame: the bytes a session reads in its own frame. Shorter messages never touch the buffer
// pool; longer ones continue in a pooled buffer.
constexpr std::size_t first_read_size = 96;
using FirstRead = std::array<char, first_read_size>;

// The read a session awaits between messages: the bytes it brought, or 0 when the connection
// ended (a successful stream read brings at least one byte). Frame: one number as the result.
auto read_some_into(Socket& peer, FirstRead& first) {
    return peer.async_read_some(asio::buffer(first),
                                asio::deferred([](error_code error, std::size_t received) {
                                    return asio::deferred.values(error ? 0 : received);
                                }));
}

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

bool is_resource_exhaustion(const error_code& error) {
    return error == asio::error::no_descriptors ||
           error == std::errc::too_many_files_open_in_system ||
           error == asio::error::no_buffer_space || error == asio::error::no_memory;
}

} // namespace

class Worker::Impl {
public:
    using Acceptor = asio::local::stream_protocol::acceptor::rebind_executor<WorkerExecutor>::other;

    // `listener` is this worker's own descriptor of the listening socket (-1: none); the worker
    // closes it.
    Impl(std::size_t buffer_size, WorkerSettings settings, int listener, SharedState& shared,
         WorkerEvents events)
        : buffers_(buffer_size)
        , settings_(std::move(settings))
        , shared_(shared)
        , events_(std::move(events))
        , acceptor_(context_)
        , resume_accepting_(context_) {
        if (listener >= 0) {
            acceptor_.assign(asio::local::stream_protocol(), listener);
            // accept4() must never block: a socket passed by systemd is blocking unless the unit
            // says NonBlocking=yes, and another worker may take the connection that woke this one.
            acceptor_.native_non_blocking(true);
        }
    }

    ~Impl() {
        if (thread_.joinable()) {
            context_.stop();
            thread_.join();
        }
    }
    Impl(const Impl&) = delete;
    Impl& operator=(const Impl&) = delete;

    template <typename Function>
    void post(Function&& function) {
        asio::post(context_, std::forward<Function>(function));
    }
    std::uint64_t bytes_echoed() const { return bytes_echoed_.load(std::memory_order_relaxed); }
    std::uint64_t connections_cut() const { return cut_.load(std::memory_order_relaxed); }
    std::uint64_t heartbeat() const { return heartbeat_.load(std::memory_order_relaxed); }

    void start() {
        asio::co_spawn(context_, housekeeping(), asio::detached);
        if (acceptor_.is_open())
            asio::co_spawn(context_, accept_loop(), [](std::exception_ptr failure) {
                if (failure)
                    std::rethrow_exception(failure); // no daemon without its acceptors
            });
        thread_ = std::thread([this] { context_.run(); });
    }

    void join() {
        if (thread_.joinable())
            thread_.join();
    }

    // Called from any thread: a slot was given back, so a paused accept loop may go on.
    void slot_freed() {
        if (accept_paused_.load())
            asio::post(context_, [this] { resume_accepting_.cancel(); });
    }

    // The following run on the worker's thread (posted by the control thread).

    // Accept=yes: the descriptor is the one client to serve.
    void serve_connected(int fd) {
        shared_.slots.try_take(1);
        admit(Socket(context_, asio::local::stream_protocol(), fd));
    }

    void apply(WorkerSettings settings) {
        settings_ = std::move(settings);
        resume_accepting_.cancel(); // a raised --max-connections frees slots
    }
    void set_heartbeat(std::uint64_t beat) { heartbeat_.store(beat, std::memory_order_relaxed); }

    // Stops accepting (connections still in the listen backlog stay there: a listening socket
    // passed by systemd keeps them for the next start) and finishes when the last session ends.
    void begin_drain() {
        draining_ = true;
        handing_over_ = false; // after a handover: what was given back is drained
        error_code ignored;
        acceptor_.close(ignored);
        resume_accepting_.cancel();
        finish_if_drained();
    }

    void force_close() {
        cut_.fetch_add(connections_.size(), std::memory_order_relaxed);
        for (auto& connection : connections_) {
            error_code ignored;
            connection.socket.close(ignored);
        }
    }

    // A restart: no new connections, and every session stops where it is. The cancelled reads
    // end at once; a cancelled write leaves its unwritten bytes with the connection. Each session
    // then lets go of its connection (let_go()).
    void begin_handover() {
        handing_over_ = true;
        draining_ = true;
        error_code ignored;
        acceptor_.close(ignored);
        resume_accepting_.cancel();
        for (auto& connection : connections_)
            connection.socket.cancel(ignored);
        finish_if_drained();
    }

    void resume(std::vector<HandedConnection> connections) {
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

    std::vector<HandedConnection> take_handed() { return std::move(handed_); }

private:
    // Accepts every pending connection with accept4() and waits for the listener to become
    // readable only when there is none: one wake-up can bring many connections, and each costs one
    // accept4() and no other system call before its session starts. Waiting after EAGAIN loses no
    // connection because one thread runs this io_context: epoll is not polled between the accept4()
    // that said EAGAIN and the wait that follows it, so the next arrival's event finds the wait.
    WorkerTask<void> accept_loop() {
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
            const int fd = ::accept4(acceptor_.native_handle(), nullptr, nullptr,
                                     SOCK_NONBLOCK | SOCK_CLOEXEC);
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
                WorkerTimer backoff(context_, accept_backoff);
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
            socket.adopt(fd);
            admit(std::move(socket));
        }
    }

    // At --max-connections the listener is left alone: new clients wait in the kernel's listen
    // backlog (nobody is reset) until a session ends and wakes this wait.
    WorkerTask<void> wait_for_free_slot() {
        accept_paused_.store(true);
        // Re-checked after publishing the flag: a session that ended just before saw no flag.
        if (!shared_.slots.available(settings_.max_connections) && !draining_) {
            resume_accepting_.expires_at(WorkerTimer::time_point::max());
            co_await resume_accepting_.async_wait(as_tuple_deferred);
        }
        accept_paused_.store(false);
    }

    // Checks the peer against the allow lists and starts its session. A refused peer is closed
    // before a byte of it is read.
    void admit(Socket socket, std::string unsent = {}) {
        const auto id = ++shared_.accepted;
        std::optional<PeerCredentials> peer;
        if (settings_.needs_credentials())
            peer = peer_credentials(socket.native_handle()).value_or(PeerCredentials{});
        if (settings_.access.restricts() && !settings_.access.allows(*peer)) {
            shared_.slots.give_back();
            events_.refused(id, *peer, "not in allow-uid or allow-gid");
            return;
        }
        // The uid whose count this connection holds until its session ends, if any.
        std::optional<uid_t> counted_uid;
        if (settings_.max_connections_per_uid > 0 && peer->uid != UidCounts::exempt) {
            if (!shared_.uid_counts.try_add(peer->uid, settings_.max_connections_per_uid)) {
                shared_.slots.give_back();
                events_.refused(id, *peer, "its uid already holds max-connections-per-uid");
                return;
            }
            counted_uid = peer->uid;
        }
        UDS_LOG(debug) << describe_peer(id, peer) << " accepted";
        shared_.open.fetch_add(1);
        ++live_sessions_;
        // Frame: the handler lives as long as the session; it keeps the number the debug line
        // above ties to the peer, and the uid whose count to give back.
        auto ended = [id, counted_uid, this](std::exception_ptr failure) {
            // The one place where a session's unexpected failure is reported.
            if (failure) {
                try {
                    std::rethrow_exception(failure);
                } catch (const std::exception& error) {
                    UDS_LOG(error) << "connection " << id << " failed: " << error.what();
                }
            }
            if (counted_uid)
                shared_.uid_counts.remove(*counted_uid);
            shared_.open.fetch_sub(1);
            --live_sessions_;
            shared_.slots.give_back();
            events_.session_ended();
            finish_if_drained();
        };
        if (unsent.empty())
            asio::co_spawn(context_, session(Connection(std::move(socket), tick_)),
                           std::move(ended));
        else
            write_unsent_then_serve(std::move(socket), std::move(unsent), std::move(ended));
    }

    // The life of one connection: read what the client sent, write it back, until the client
    // closes. Between messages it holds no buffer but `first`. Frame: one awaited call per
    // message (GCC gives each local and each awaited temporary a slot of its own).
    WorkerTask<void> session(Connection connection) {
        connections_.push_back(connection);
        // Writes (and the reads of a burst) are tried directly; only when the kernel says they
        // would block does the session wait through Asio. Sockets from the accept loop are
        // non-blocking already.
        if (!connection.socket.non_blocking())
            connection.socket.non_blocking(true);
        FirstRead first;
        while (!handing_over_) {
            // async_read_some lets Asio try the read at once when epoll has reported data, and
            // costs no epoll_ctl when it must wait: one epoll_wait, one read and one write per
            // small message, like a hand-written epoll loop.
            const std::size_t received = co_await read_some_into(connection.socket, first);
            // End of file: everything received has been echoed, and closing the socket (when
            // the frame ends) sends the client its end of file. Any other error: reset by the
            // client, closed by the idle sweep or a forced stop, or cancelled for a handover.
            if (received == 0)
                break;
            connection.last_activity_tick = tick_;
            if (!co_await echo_read(connection.socket, first, received))
                break;
        }
        let_go(connection);
    }

    // A connection handed over at a restart whose client had not read everything echoed to it:
    // those bytes are written first (a plain completion handler, no coroutine frame), then it is
    // a session like any other. Listed with the sessions meanwhile, so that a drain, a forced
    // close or another handover reaches it. `ended` is the session's completion handler.
    template <typename Ended>
    void write_unsent_then_serve(Socket socket, std::string unsent, Ended ended) {
        auto pending = std::make_unique<Connection>(std::move(socket), tick_);
        connections_.push_back(*pending);
        pending->socket.non_blocking(true);
        auto bytes = std::make_unique<std::string>(std::move(unsent));
        const auto data = asio::buffer(*bytes);
        auto& socket_of_pending = pending->socket; // named before the handler takes `pending`
        asio::async_write(
            socket_of_pending, data,
            [this, pending = std::move(pending), bytes = std::move(bytes),
             ended = std::move(ended)](error_code error, std::size_t written) mutable {
                if (error) {
                    if (handing_over_ && error == asio::error::operation_aborted)
                        keep_unsent(pending->socket, asio::buffer(*bytes) + written);
                    let_go(*pending);
                    pending.reset(); // closes the socket unless it was let go
                    ended(nullptr);
                    return;
                }
                bytes_echoed_.store(bytes_echoed_.load(std::memory_order_relaxed) + written,
                                    std::memory_order_relaxed);
                asio::co_spawn(context_, session(Connection(std::move(pending->socket), tick_)),
                               std::move(ended));
            });
    }

    // At the end of a session during a handover: the connection goes to the handed-over list
    // instead of being closed, unless it is closed already or its client has gone (nothing to
    // resume: everything it sent was echoed).
    void let_go(Connection& connection) {
        if (!handing_over_ || !connection.socket.is_open())
            return;
        std::string unsent;
        if (const auto saved = unsent_.find(connection.socket.native_handle());
            saved != unsent_.end()) {
            unsent = std::move(saved->second);
            unsent_.erase(saved);
        }
        if (unsent.empty() && !peer_still_there(connection.socket.native_handle()))
            return;
        error_code error;
        const int fd = connection.socket.release(error);
        if (!error)
            handed_.push_back(HandedConnection{FileDescriptor(fd), std::move(unsent)});
    }

    // False when the client has closed its side or the connection failed: a non-blocking peek
    // that finds an end of file or an error.
    static bool peer_still_there(int fd) {
        char byte;
        const auto peeked = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
        return peeked > 0 || (peeked < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
    }

    // Echoes what a read put into `first`. A full `first` means more is probably waiting: that
    // continues in a pooled buffer.
    WorkerTask<bool> echo_read(Socket& peer, const FirstRead& first, std::size_t received) {
        const auto data = asio::buffer(first, received);
        return received == first.size() ? echo_burst(peer, data) : echo(peer, data);
    }

    // Writes `data` back; false when the client is gone. The first write is tried directly; a
    // client that reads slower than it writes makes the session wait for room in its socket
    // buffer, holding `data`: that is the backpressure (docs/protocol.md), and the only memory a
    // slow client costs.
    WorkerTask<bool> echo(Socket& peer, asio::const_buffer data) {
        error_code error;
        const std::size_t sent = peer.write_some(data, error);
        if (error && error != asio::error::would_block)
            co_return false; // EPIPE, ECONNRESET
        const std::size_t done = error ? 0 : sent;
        if (done < data.size()) {
            // A handover does not wait for a slow client: the rest goes with the connection.
            if (handing_over_) {
                keep_unsent(peer, data + done);
                co_return false;
            }
            auto [write_error, written] =
                co_await asio::async_write(peer, data + done, as_tuple_deferred);
            if (write_error) {
                if (handing_over_ && write_error == asio::error::operation_aborted)
                    keep_unsent(peer, data + done + written);
                co_return false;
            }
        }
        bytes_echoed_.store(bytes_echoed_.load(std::memory_order_relaxed) + data.size(),
                            std::memory_order_relaxed);
        co_return true;
    }

    // `first` filled up, so more data is probably waiting: borrow a full-size buffer from the
    // worker's pool and echo until a read comes back short or would block. At end of file the
    // data read so far is echoed and the next async_read_some reports the end.
    WorkerTask<bool> echo_burst(Socket& peer, asio::const_buffer first) {
        auto lease = buffers_.borrow();
        const auto whole = lease.whole();
        std::memcpy(whole.data(), first.data(), first.size());
        std::size_t filled = first.size();
        for (;;) {
            error_code error;
            const std::size_t received = peer.read_some(whole + filled, error);
            if (error && error != asio::error::would_block && error != asio::error::eof)
                co_return false;
            filled += error ? 0 : received;
            if (!co_await echo(peer, lease.first(filled)))
                co_return false;
            if (error || filled < whole.size() || handing_over_)
                co_return true;
            filled = 0;
        }
    }

    // Once a second: advances the clock sessions use for their last activity, and closes the
    // connections idle for longer than --idle-timeout. One timer per worker instead of one per
    // connection keeps an idle connection's memory small.
    WorkerTask<void> housekeeping() {
        WorkerTimer timer(context_);
        housekeeping_timer_ = &timer;
        while (!finished_) {
            timer.expires_after(std::chrono::seconds(1));
            co_await timer.async_wait(as_tuple_deferred); // cancelled when the worker finishes
            ++tick_;
            close_idle_connections();
        }
        housekeeping_timer_ = nullptr;
    }

    void close_idle_connections() {
        const auto timeout = static_cast<std::uint64_t>(settings_.idle_timeout.count());
        if (timeout == 0)
            return;
        for (auto& connection : connections_) {
            if (tick_ - connection.last_activity_tick > timeout) {
                error_code ignored;
                connection.socket.close(ignored);
            }
        }
    }

    void keep_unsent(Socket& peer, asio::const_buffer data) {
        unsent_[peer.native_handle()].assign(static_cast<const char*>(data.data()), data.size());
    }

    void finish_if_drained() {
        if (!draining_ || !connections_.empty() || live_sessions_ > 0 || finished_)
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

    BufferPool buffers_;
    WorkerSettings settings_;
    SharedState& shared_;
    WorkerEvents events_;
    // Not constant-time size: auto-unlinking members cannot update a count.
    boost::intrusive::list<Connection, boost::intrusive::constant_time_size<false>> connections_;
    WorkerTimer* housekeeping_timer_ = nullptr;
    std::uint64_t tick_ = 0;
    bool draining_ = false;
    bool finished_ = false;
    // Restart: sessions let go of their connections into handed_ instead of closing them.
    bool handing_over_ = false;
    bool handover_reported_ = false;
    std::size_t live_sessions_ = 0; // spawned and not ended (a spawned session starts later)
    std::unordered_map<int, std::string> unsent_; // by descriptor, during a handover
    std::vector<HandedConnection> handed_;
    std::atomic<std::uint64_t> bytes_echoed_{0};
    std::atomic<std::uint64_t> cut_{0};
    std::atomic<std::uint64_t> heartbeat_{0};
    std::atomic<bool> accept_paused_{false};
    // Declared after everything a session's frame touches: destroying the context destroys any
    // frame still suspended in it, whose cleanup uses the members above.
    asio::io_context context_{1};
    // I/O objects must go before their context.
    Acceptor acceptor_;
    WorkerTimer resume_accepting_;
    std::thread thread_;
};

Worker::Worker(std::size_t buffer_size, WorkerSettings settings, int listener, SharedState& shared,
               WorkerEvents events)
    : impl_(std::make_unique<Impl>(buffer_size, std::move(settings), listener, shared,
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

} // namespace uds_echo
