#include "uds_echo/server.hpp"

#include "uds_echo/access.hpp"
#include "uds_echo/listener.hpp"
#include "uds_echo/logging.hpp"
#include "uds_echo/systemd.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/intrusive/list.hpp>

#include <fcntl.h>
#include <sys/resource.h>

#include <array>
#include <atomic>
#include <csignal>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <pthread.h>
#include <system_error>
#include <thread>
#include <unordered_map>

namespace uds_echo {

namespace asio = boost::asio;
// A worker's coroutines run on its io_context only; naming that executor type (instead of the
// type-erased default) makes every coroutine frame and socket smaller.
using WorkerExecutor = asio::io_context::executor_type;
template <typename T>
using WorkerTask = asio::awaitable<T, WorkerExecutor>;

using WorkerTimer = asio::steady_timer::rebind_executor<WorkerExecutor>::other;

// Sockets bound to their worker's io_context directly: a smaller object than the type-erased
// default executor, in every connection.
using Socket =
    asio::local::stream_protocol::socket::rebind_executor<asio::io_context::executor_type>::other;
using boost::system::error_code;

namespace {

// Every operation is awaited in the coroutine's own frame, without the extra coroutine frame per
// operation that use_awaitable costs; as_tuple turns the expected errors into values.
constexpr auto as_tuple_deferred = asio::as_tuple(asio::deferred);

// The bytes a session reads into its own frame. Messages shorter than this never touch the
// buffer pool; longer ones continue in a pooled buffer. Small, because every idle connection
// carries it: 96 bytes hold the short requests of line protocols and keep an idle connection
// within 1 KiB (docs/architecture.md has the breakdown).
constexpr std::size_t first_read_size = 96;
using FirstRead = std::array<char, first_read_size>;

// The read a session awaits between messages: the bytes it brought, or 0 when the connection
// ended (a stream read that succeeds brings at least one byte). A plain function returning the
// operation, and a single number as its result: the session's frame, which every idle connection
// carries, then holds neither a buffer object nor an error_code.
auto read_some_into(Socket& peer, FirstRead& first) {
    return peer.async_read_some(asio::buffer(first),
                                asio::deferred([](error_code error, std::size_t received) {
                                    return asio::deferred.values(error ? 0 : received);
                                }));
}

// How long the accept loop rests when the process or the system is out of descriptors (or
// memory): the listener stays readable meanwhile, so retrying at once would spin at full CPU.
constexpr auto accept_backoff = std::chrono::milliseconds(100);

// At most this many refused peers are logged per second; the rest are only counted.
constexpr unsigned refused_log_limit_per_second = 10;

// Read buffers lent to sessions only while they move data. An idle session holds none, so the
// memory of an idle connection is its socket and its coroutine frame, and a busy worker reuses
// the same few buffers for every message (no allocation per message).
class BufferPool {
public:
    explicit BufferPool(std::size_t buffer_size)
        : buffer_size_(buffer_size) {}

    class Lease {
    public:
        Lease(BufferPool& pool, std::unique_ptr<char[]> buffer)
            : pool_(pool)
            , buffer_(std::move(buffer)) {}
        Lease(const Lease&) = delete;
        Lease& operator=(const Lease&) = delete;
        ~Lease() { pool_.give_back(std::move(buffer_)); }

        asio::mutable_buffer whole() { return {buffer_.get(), pool_.buffer_size_}; }
        asio::const_buffer first(std::size_t size) const { return {buffer_.get(), size}; }

    private:
        BufferPool& pool_;
        std::unique_ptr<char[]> buffer_;
    };

    Lease borrow() {
        if (free_.empty())
            return Lease(*this, std::make_unique_for_overwrite<char[]>(buffer_size_));
        auto buffer = std::move(free_.back());
        free_.pop_back();
        return Lease(*this, std::move(buffer));
    }

private:
    // Buffers beyond this many go back to the heap: a burst of blocked writers must not pin its
    // peak memory forever.
    static constexpr std::size_t max_free_buffers = 8;

    void give_back(std::unique_ptr<char[]> buffer) {
        if (free_.size() < max_free_buffers)
            free_.push_back(std::move(buffer));
    }

    std::size_t buffer_size_;
    std::vector<std::unique_ptr<char[]>> free_;
};

// One connection: its socket and what the worker knows of it. It is the session's parameter, so
// it lives in the session's coroutine frame (one object: a socket and a second object referring
// to it would make every idle connection bigger). The hook unlinks it from the worker's list
// when the frame ends, so the frame needs no pointer back to the worker for that.
using AutoUnlinkHook =
    boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>>;
struct Connection : AutoUnlinkHook {
    Connection(Socket socket, std::uint64_t now_tick)
        : socket(std::move(socket))
        , last_activity_tick(now_tick) {}

    Socket socket;
    std::uint64_t last_activity_tick;
};

// Credentials are read only when something needs them (allow lists, debug logging): SO_PEERCRED
// is a system call per connection.
std::string describe_peer(std::uint64_t id, const std::optional<PeerCredentials>& peer) {
    auto text = "connection " + std::to_string(id);
    if (peer)
        text += " (pid " + std::to_string(peer->pid) + ", uid " + std::to_string(peer->uid) +
                ", gid " + std::to_string(peer->gid) + ")";
    return text;
}

bool is_resource_exhaustion(const error_code& error) {
    return error == asio::error::no_descriptors ||
           error == std::errc::too_many_files_open_in_system ||
           error == asio::error::no_buffer_space || error == asio::error::no_memory;
}

// Raises the soft descriptor limit to the hard limit: every connection is a descriptor, and the
// default soft limit (1024) is far below --max-connections.
rlim_t raise_descriptor_limit() {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0)
        return 0;
    if (limit.rlim_cur < limit.rlim_max) {
        rlimit raised = limit;
        raised.rlim_cur = limit.rlim_max;
        if (::setrlimit(RLIMIT_NOFILE, &raised) == 0)
            limit = raised;
    }
    return limit.rlim_cur;
}

sigset_t server_signals() {
    sigset_t signals;
    sigemptyset(&signals);
    for (int signal_number : {SIGTERM, SIGINT, SIGHUP, SIGUSR1})
        sigaddset(&signals, signal_number);
    return signals;
}

} // namespace

void block_server_signals() {
    const auto signals = server_signals();
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
}

// What a worker needs to know of the configuration; written on its own thread only (posted by the
// control thread on SIGHUP).
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

// Open connections per peer uid, across all workers, for --max-connections-per-uid. Only uids
// that hold a connection have an entry, so the table is as large as the set of connected users.
class UidCounts {
public:
    // The uid whose connections are not counted: root may stop the daemon anyway, and a cap on it
    // would only get in the way of the administrator.
    static constexpr uid_t exempt = 0;

    // Counts one more connection of `uid` unless it already holds `cap`; false then.
    bool try_add(uid_t uid, unsigned cap) {
        std::lock_guard lock(mutex_);
        auto& count = counts_[uid];
        if (count >= cap) {
            if (count == 0)
                counts_.erase(uid);
            return false;
        }
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

// The connection count all threads share. A worker takes a slot before it accepts, so that
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

// What the workers report to the control thread. The callbacks run on the worker's thread.
struct WorkerEvents {
    std::function<void()> drained;
    std::function<void(std::uint64_t id, PeerCredentials, const char* reason)> refused;
    std::function<void()> session_ended;
};

// State shared by all workers and the control thread; everything in it is thread-safe.
struct SharedState {
    ConnectionSlots slots;
    UidCounts uid_counts;
    std::atomic<unsigned> open{0};             // running sessions
    std::atomic<std::uint64_t> accepted{0};    // also numbers the connections
    std::atomic<bool> out_of_resources{false}; // inside an episode of descriptor exhaustion
};

// One thread, one io_context, its own accept loop on the shared listening socket and the sessions
// it accepted. A connection is accepted, served and closed on one thread: no hand-off between
// event loops, no locks on the data path.
class Worker {
public:
    using Acceptor = asio::local::stream_protocol::acceptor::rebind_executor<WorkerExecutor>::other;

    // `listener` is this worker's own descriptor of the listening socket (-1: none); the worker
    // closes it.
    Worker(std::size_t buffer_size, WorkerSettings settings, int listener, SharedState& shared,
           WorkerEvents events)
        : buffers_(buffer_size)
        , settings_(std::move(settings))
        , shared_(shared)
        , events_(std::move(events))
        , acceptor_(context_)
        , resume_accepting_(context_) {
        if (listener >= 0)
            acceptor_.assign(asio::local::stream_protocol(), listener);
    }

    ~Worker() {
        if (thread_.joinable()) {
            context_.stop();
            thread_.join();
        }
    }
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    asio::io_context& context() { return context_; }
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

    // Accept=yes: serves `socket`, for which the caller took a slot.
    void serve(Socket socket) { admit(std::move(socket)); }

    void apply(WorkerSettings settings) {
        settings_ = std::move(settings);
        resume_accepting_.cancel(); // a raised --max-connections frees slots
    }
    void set_heartbeat(std::uint64_t beat) { heartbeat_.store(beat, std::memory_order_relaxed); }

    // Stops accepting (connections still in the listen backlog stay there: a listening socket
    // passed by systemd keeps them for the next start) and finishes when the last session ends.
    void begin_drain() {
        draining_ = true;
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

private:
    WorkerTask<void> accept_loop() {
        // Accepted into, then moved into the session: a moved-from socket is as if newly
        // constructed, so one object serves every accept. Accepting into a socket object (rather
        // than the overload that returns one) also keeps the accept operation small: the new
        // session's first read reuses its recycled block and holds it while the connection
        // idles.
        Socket socket(context_);
        while (!draining_) {
            if (!shared_.slots.try_take(settings_.max_connections)) {
                co_await wait_for_free_slot();
                continue;
            }
            auto [error] = co_await acceptor_.async_accept(socket, as_tuple_deferred);
            if (error || draining_)
                shared_.slots.give_back();
            if (draining_)
                co_return; // the acceptor was closed, or the connection arrived too late
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
    void admit(Socket socket) {
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
        // The handler lives as long as the session (in co_spawn's frame): it keeps only the
        // number, which the debug line above ties to the peer.
        asio::co_spawn(context_, session(Connection(std::move(socket), tick_)),
                       [id, counted_uid, this](std::exception_ptr failure) {
                           // The one place where a session's unexpected failure is reported.
                           if (failure) {
                               try {
                                   std::rethrow_exception(failure);
                               } catch (const std::exception& error) {
                                   UDS_LOG(error)
                                       << "connection " << id << " failed: " << error.what();
                               }
                           }
                           if (counted_uid)
                               shared_.uid_counts.remove(*counted_uid);
                           shared_.open.fetch_sub(1);
                           shared_.slots.give_back();
                           events_.session_ended();
                           finish_if_drained();
                       });
    }

    // The life of one connection: read what the client sent, write it back, until the client
    // closes. Between messages the session holds no buffer but `first`, a few bytes in its frame.
    // Everything in this function's frame is paid by every idle connection (GCC gives each local
    // and each awaited temporary its own slot), so it keeps one awaited call per message.
    WorkerTask<void> session(Connection connection) {
        connections_.push_back(connection);
        // Writes (and the reads of a burst) are tried directly; only when the kernel says they
        // would block does the session wait through Asio.
        connection.socket.non_blocking(true);
        FirstRead first;
        for (;;) {
            // async_read_some lets Asio try the read at once when epoll has reported data, and
            // costs no epoll_ctl when it must wait: one epoll_wait, one read and one write per
            // small message, like a hand-written epoll loop.
            const std::size_t received = co_await read_some_into(connection.socket, first);
            // End of file: everything received has been echoed, and closing the socket (when
            // the frame ends) sends the client its end of file. Any other error: reset by the
            // client, or closed by the idle sweep or a forced stop.
            if (received == 0)
                co_return;
            connection.last_activity_tick = tick_;
            if (!co_await echo_read(connection.socket, first, received))
                co_return;
        }
    }

    // Echoes what a read put into `first`; a plain function for the same reason as
    // read_some_into. A full `first` means more is probably waiting: that continues in a pooled
    // buffer.
    WorkerTask<bool> echo_read(Socket& peer, const FirstRead& first, std::size_t received) {
        const auto data = asio::buffer(first, received);
        return received == first.size() ? echo_burst(peer, data) : echo(peer, data);
    }

    // Writes `data` back; false when the client is gone. The first write is tried directly; a
    // client that reads slower than it writes makes the session wait for room in its socket
    // buffer, holding `data`: that is the backpressure of SPEC §2, and the only memory a slow
    // client costs.
    WorkerTask<bool> echo(Socket& peer, asio::const_buffer data) {
        error_code error;
        const std::size_t sent = peer.write_some(data, error);
        if (error && error != asio::error::would_block)
            co_return false; // EPIPE, ECONNRESET
        const std::size_t done = error ? 0 : sent;
        if (done < data.size()) {
            auto [write_error, ignored] =
                co_await asio::async_write(peer, data + done, as_tuple_deferred);
            if (write_error)
                co_return false;
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
            if (error || filled < whole.size())
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

    void finish_if_drained() {
        if (!draining_ || !connections_.empty() || finished_)
            return;
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

class Server::Impl {
public:
    Impl(DaemonConfig config, ServerSocket socket, std::vector<std::string> args)
        : config_(std::move(config))
        , args_(std::move(args))
        , socket_(socket)
        , signals_(control_, SIGTERM, SIGINT, SIGHUP)
        , shutdown_deadline_(control_)
        , status_timer_(control_)
        , watchdog_timer_(control_)
        , refused_summary_timer_(control_) {
        signals_.add(SIGUSR1);
        // One connection needs one worker, whatever --threads says.
        const unsigned worker_count = socket_.connected ? 1 : config_.threads;
        WorkerEvents events{
            [this] { asio::post(control_, [this] { on_worker_done(); }); },
            [this](std::uint64_t id, PeerCredentials peer, const char* reason) {
                asio::post(control_, [this, id, peer, reason] { on_refused(id, peer, reason); });
            },
            [this] { on_session_end(); }};
        for (unsigned i = 0; i < worker_count; ++i) {
            // Each worker waits on the listening socket through a descriptor of its own: one
            // socket in several epoll sets, closed by each worker independently at shutdown.
            const int listener = socket_.connected ? -1
                                 : i == 0          ? socket_.fd
                                                   : duplicate(socket_.fd);
            workers_.push_back(std::make_unique<Worker>(config_.buffer_size, worker_settings(),
                                                        listener, shared_, events));
        }
    }

    ExitCode run() {
        const auto descriptors = raise_descriptor_limit();
        for (auto& worker : workers_)
            worker->start();
        if (socket_.connected) {
            UDS_LOG(info) << "serving one connection passed by socket activation";
            serve_passed_connection();
        } else {
            UDS_LOG(info) << "serving with " << workers_.size() << " worker thread(s), up to "
                          << config_.max_connections << " connections (descriptor limit "
                          << descriptors << ")";
            warn_if_anyone_may_connect();
        }
        wait_for_signal();
        // The handlers are installed: a signal that arrived during start-up is delivered now.
        const auto signals = server_signals();
        pthread_sigmask(SIG_UNBLOCK, &signals, nullptr);
        update_status_every_second();
        send_watchdog_pings();
        notifier_.ready();
        control_.run();
        for (auto& worker : workers_)
            worker->join();
        log_statistics("stopped");
        return ExitCode::ok;
    }

private:
    WorkerSettings worker_settings() const {
        return WorkerSettings{config_.idle_timeout, config_.max_connections,
                              config_.max_connections_per_uid, config_.access,
                              config_.log_level >= LogLevel::debug};
    }

    // A socket file's mode and group decide who may connect; an abstract name has neither, so
    // without an allow list every process in the network namespace gets in.
    void warn_if_anyone_may_connect() const {
        if (config_.access.restricts())
            return;
        if (const auto name = abstract_socket_name(socket_.fd))
            UDS_LOG(warning) << "the abstract socket " << *name
                             << " has no file permissions: any process in this network namespace "
                                "may connect; restrict it with allow-uid or allow-gid";
    }

    static int duplicate(int fd) {
        const int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (copy < 0)
            throw std::system_error(errno, std::generic_category(),
                                    "cannot duplicate the listening socket");
        return copy;
    }

    // Accept=yes: the descriptor is the client; the daemon exits when its session ends.
    void serve_passed_connection() {
        auto& worker = *workers_.front();
        Socket socket(worker.context(), asio::local::stream_protocol(), socket_.fd);
        shared_.slots.try_take(1);
        asio::post(worker.context(), [&worker, socket = std::move(socket)]() mutable {
            worker.serve(std::move(socket));
        });
    }

    // Runs on a worker thread.
    void on_session_end() {
        if (socket_.connected)
            asio::post(control_, [this] { begin_shutdown("connection closed"); });
        else
            for (auto& worker : workers_)
                worker->slot_freed();
    }

    void on_refused(std::uint64_t id, const PeerCredentials& peer, const char* reason) {
        log_refused(id, peer, reason);
        if (socket_.connected)
            begin_shutdown("connection refused");
        else
            for (auto& worker : workers_)
                worker->slot_freed();
    }

    // At most refused_log_limit_per_second lines a second; the refusals beyond are counted and
    // reported in one line when their second is over, so a flood cannot fill the log and the
    // operator still sees its size.
    void log_refused(std::uint64_t id, const PeerCredentials& peer, const char* reason) {
        ++refused_;
        const auto now = std::chrono::steady_clock::now();
        if (now - refused_window_start_ >= std::chrono::seconds(1) && refused_unlogged_ == 0) {
            refused_window_start_ = now;
            refused_in_window_ = 0;
        }
        if (++refused_in_window_ <= refused_log_limit_per_second) {
            UDS_LOG(warning) << describe_peer(id, peer) << " refused: " << reason;
            return;
        }
        if (refused_unlogged_++ == 0) {
            refused_summary_timer_.expires_at(refused_window_start_ + std::chrono::seconds(1));
            refused_summary_timer_.async_wait([this](const error_code& error) {
                if (error)
                    return;
                UDS_LOG(warning) << refused_unlogged_
                                 << " more connection(s) refused in the last second";
                refused_unlogged_ = 0;
                refused_window_start_ = std::chrono::steady_clock::now();
                refused_in_window_ = 0;
            });
        }
    }

    void wait_for_signal() {
        signals_.async_wait([this](const error_code& error, int signal_number) {
            if (error)
                return;
            switch (signal_number) {
            case SIGTERM:
            case SIGINT:
                on_stop_signal(signal_number);
                break;
            case SIGHUP:
                reload();
                break;
            case SIGUSR1:
                log_statistics("statistics");
                break;
            }
            if (!finished_)
                wait_for_signal();
        });
    }

    void on_stop_signal(int signal_number) {
        if (stopping_) {
            UDS_LOG(warning) << strsignal(signal_number) << " again: closing all connections now";
            force_close_all();
            return;
        }
        begin_shutdown(strsignal(signal_number));
    }

    // Stops accepting and lets open sessions finish, for at most --shutdown-timeout.
    void begin_shutdown(const std::string& reason) {
        if (stopping_)
            return;
        stopping_ = true;
        notifier_.stopping();
        UDS_LOG(info) << reason << ": no new connections; draining " << shared_.open.load()
                      << " open connection(s) for up to " << config_.shutdown_timeout.count()
                      << " s";
        // A passed listening socket stays open in systemd, which keeps queued clients for the
        // next start; the workers closing their descriptors never unlink or shut down the socket.
        workers_running_ = workers_.size();
        for (auto& worker : workers_)
            asio::post(worker->context(), [&worker = *worker] { worker.begin_drain(); });
        shutdown_deadline_.expires_after(config_.shutdown_timeout);
        shutdown_deadline_.async_wait([this](const error_code& error) {
            if (!error)
                force_close_all();
        });
    }

    void force_close_all() {
        for (auto& worker : workers_)
            asio::post(worker->context(), [&worker = *worker] { worker.force_close(); });
    }

    void on_worker_done() {
        if (--workers_running_ > 0)
            return;
        finished_ = true;
        shutdown_deadline_.cancel();
        status_timer_.cancel();
        watchdog_timer_.cancel();
        refused_summary_timer_.cancel();
        signals_.cancel();
        std::uint64_t cut = 0;
        for (auto& worker : workers_)
            cut += worker->connections_cut();
        if (cut > 0)
            UDS_LOG(warning) << "shutdown timeout: closed " << cut
                             << " connection(s) that were still open";
    }

    // SIGHUP: the new file must be valid as a whole, or nothing of it is applied.
    void reload() {
        UDS_LOG(info) << "SIGHUP: reloading the configuration";
        notifier_.reloading();
        apply_reloaded_configuration();
        notifier_.ready();
    }

    void apply_reloaded_configuration() {
        DaemonConfig next;
        try {
            auto parsed = parse_daemon_config(args_);
            if (!std::holds_alternative<DaemonConfig>(parsed))
                return;
            next = std::get<DaemonConfig>(std::move(parsed));
        } catch (const Failure& failure) {
            UDS_LOG(error) << "reload failed, keeping the current configuration: "
                           << failure.what();
            return;
        }
        for (const auto& name : options_needing_restart(config_, next))
            UDS_LOG(warning) << "option " << name << " changed: it takes effect after a restart";
        const auto changed = options_changed_at_runtime(config_, next);

        // Only what can change at run time is taken over; the rest stays as the daemon started.
        config_.log_level = next.log_level;
        config_.log_format = next.log_format;
        config_.max_connections = next.max_connections;
        config_.max_connections_per_uid = next.max_connections_per_uid;
        config_.idle_timeout = next.idle_timeout;
        config_.exit_on_idle = next.exit_on_idle;
        config_.shutdown_timeout = next.shutdown_timeout;
        config_.access = next.access;
        init_logging(config_.log_level, config_.log_format, "uds-echod");
        for (auto& worker : workers_)
            asio::post(worker->context(), [&worker = *worker, settings = worker_settings()] {
                worker.apply(settings);
            });

        std::string summary;
        for (const auto& name : changed)
            summary += (summary.empty() ? "" : ", ") + name;
        UDS_LOG(info) << "configuration reloaded"
                      << (summary.empty() ? std::string("; nothing changed")
                                          : "; changed: " + summary);
    }

    std::uint64_t bytes_echoed() const {
        std::uint64_t bytes = 0;
        for (const auto& worker : workers_)
            bytes += worker->bytes_echoed();
        return bytes;
    }

    std::string statistics() const {
        return std::to_string(shared_.open.load()) + " open connection(s), " +
               std::to_string(shared_.accepted.load()) + " accepted, " + std::to_string(refused_) +
               " refused, " + std::to_string(bytes_echoed()) + " bytes echoed";
    }

    void log_statistics(const char* what) { UDS_LOG(info) << what << ": " << statistics(); }

    // Once a second: the STATUS= line (sent only when it changed) and the --exit-on-idle clock.
    void update_status_every_second() {
        status_timer_.expires_after(std::chrono::seconds(1));
        status_timer_.async_wait([this](const error_code& error) {
            if (error || finished_)
                return;
            const auto status = statistics();
            if (status != last_status_) {
                notifier_.status(status);
                last_status_ = status;
            }
            check_exit_on_idle();
            update_status_every_second();
        });
    }

    // Only a socket-activated daemon may exit on idle: systemd keeps the listening socket and
    // starts the service again for the next client.
    void check_exit_on_idle() {
        if (!socket_.socket_activated || socket_.connected || config_.exit_on_idle.count() == 0 ||
            stopping_)
            return;
        idle_seconds_ = shared_.open.load() == 0 ? idle_seconds_ + 1 : 0;
        if (idle_seconds_ >= config_.exit_on_idle.count())
            begin_shutdown("idle for " + std::to_string(idle_seconds_) + " s");
    }

    // WATCHDOG=1 proves more than a live control thread: each ping goes out only after every
    // worker's event loop has run the heartbeat posted at the previous ping.
    void send_watchdog_pings() {
        const auto interval = notifier_.watchdog_interval();
        if (!interval)
            return;
        watchdog_timer_.expires_after(*interval);
        watchdog_timer_.async_wait([this](const error_code& error) {
            if (error || finished_)
                return;
            bool healthy = true;
            for (const auto& worker : workers_)
                healthy = healthy && worker->heartbeat() == heartbeat_;
            if (healthy)
                notifier_.watchdog();
            else
                UDS_LOG(warning) << "a worker's event loop is stalled; withholding WATCHDOG=1";
            ++heartbeat_;
            for (auto& worker : workers_)
                asio::post(worker->context(),
                           [&worker = *worker, beat = heartbeat_] { worker.set_heartbeat(beat); });
            send_watchdog_pings();
        });
    }

    DaemonConfig config_;
    std::vector<std::string> args_;
    ServerSocket socket_;
    ServiceNotifier notifier_;
    asio::io_context control_{1};
    asio::signal_set signals_;
    asio::steady_timer shutdown_deadline_;
    asio::steady_timer status_timer_;
    asio::steady_timer watchdog_timer_;
    asio::steady_timer refused_summary_timer_;
    SharedState shared_; // outlives the workers, which use it
    std::vector<std::unique_ptr<Worker>> workers_;
    std::uint64_t refused_ = 0;
    std::chrono::steady_clock::time_point refused_window_start_{};
    unsigned refused_in_window_ = 0;
    unsigned refused_unlogged_ = 0;
    std::size_t workers_running_ = 0;
    std::string last_status_;
    long idle_seconds_ = 0;
    std::uint64_t heartbeat_ = 0;
    bool stopping_ = false;
    bool finished_ = false;
};

Server::Server(DaemonConfig config, ServerSocket socket, std::vector<std::string> args)
    : impl_(std::make_unique<Impl>(std::move(config), socket, std::move(args))) {}

Server::~Server() = default;

ExitCode Server::run() {
    return impl_->run();
}

} // namespace uds_echo
