#include "uds_echo/server.hpp"

#include "uds_echo/access.hpp"
#include "uds_echo/logging.hpp"
#include "uds_echo/systemd.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/intrusive/list.hpp>

#include <sys/resource.h>

#include <array>
#include <atomic>
#include <csignal>
#include <cstring>
#include <memory>
#include <pthread.h>
#include <thread>

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

constexpr auto as_tuple_awaitable = asio::as_tuple(asio::use_awaitable);
// For the session's operations: awaited in the coroutine's own frame, without the extra
// coroutine frame per operation that use_awaitable costs.
constexpr auto as_tuple_deferred = asio::as_tuple(asio::deferred);

// The bytes a session reads into its own frame. Messages up to this size never touch the buffer
// pool; larger ones continue in a pooled buffer. Small, because every idle connection carries it.
constexpr std::size_t first_read_size = 128;

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

// What a worker knows of one of its connections; it lives in the session's coroutine frame.
struct Connection : boost::intrusive::list_base_hook<> {
    Connection(Socket socket, std::uint64_t now_tick)
        : socket(std::move(socket))
        , last_activity_tick(now_tick) {}

    Socket socket;
    std::uint64_t last_activity_tick;
};

std::string describe_peer(std::uint64_t id, const PeerCredentials& peer) {
    return "connection " + std::to_string(id) + " (pid " + std::to_string(peer.pid) + ", uid " +
           std::to_string(peer.uid) + ", gid " + std::to_string(peer.gid) + ")";
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

// Settings a worker reads on every tick; written on its own thread only (posted by the control
// thread on SIGHUP).
struct WorkerSettings {
    std::chrono::seconds idle_timeout{0};
};

class Worker {
public:
    // Called on the worker's thread when the worker has finished draining.
    using DoneCallback = std::function<void()>;

    Worker(std::size_t buffer_size, WorkerSettings settings, DoneCallback on_done,
           std::function<void()> on_connection_end)
        : buffers_(buffer_size)
        , settings_(settings)
        , on_done_(std::move(on_done))
        , on_connection_end_(std::move(on_connection_end)) {}

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

    void start() {
        asio::co_spawn(context_, housekeeping(), asio::detached);
        thread_ = std::thread([this] { context_.run(); });
    }

    void join() {
        if (thread_.joinable())
            thread_.join();
    }

    void start_session(Socket socket, std::uint64_t id, PeerCredentials peer) {
        asio::co_spawn(
            context_, session(std::move(socket)), [id, peer, this](std::exception_ptr failure) {
                // The one place where a session's unexpected failure is reported.
                if (failure) {
                    try {
                        std::rethrow_exception(failure);
                    } catch (const std::exception& error) {
                        UDS_LOG(error) << describe_peer(id, peer) << " failed: " << error.what();
                    }
                }
                on_connection_end_();
            });
    }

    std::uint64_t heartbeat() const { return heartbeat_.load(std::memory_order_relaxed); }

    // The following run on the worker's thread (posted by the control thread).
    void apply(WorkerSettings settings) { settings_ = settings; }
    void set_heartbeat(std::uint64_t beat) { heartbeat_.store(beat, std::memory_order_relaxed); }

    void begin_drain() {
        draining_ = true;
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
    // The life of one connection: read what the client sent, write it back, until the client
    // closes. Between messages the session holds no buffer but `first`, a few bytes in its frame.
    WorkerTask<void> session(Socket socket) {
        Connection connection(std::move(socket), tick_);
        connections_.push_back(connection);
        struct Unregister {
            Worker& worker;
            Connection& connection;
            ~Unregister() {
                worker.connections_.erase(worker.connections_.iterator_to(connection));
                worker.finish_if_drained();
            }
        } unregister{*this, connection};

        auto& peer = connection.socket;
        // Writes (and the reads of a burst) are tried directly; only when the kernel says they
        // would block does the session wait through Asio.
        peer.non_blocking(true);
        std::array<char, first_read_size> first;
        for (;;) {
            // async_read_some lets Asio try the read at once when epoll has reported data, and
            // costs no epoll_ctl when it must wait: one epoll_wait, one read and one write per
            // small message, like a hand-written epoll loop.
            auto [error, received] =
                co_await peer.async_read_some(asio::buffer(first), as_tuple_deferred);
            if (error == asio::error::eof) {
                // Everything received has been echoed: close our side too.
                peer.shutdown(Socket::shutdown_send, error);
                co_return;
            }
            if (error)
                co_return; // reset by the client, or closed by the idle sweep or a forced stop
            connection.last_activity_tick = tick_;
            const bool more_waiting = received == first.size();
            const bool echoed = more_waiting
                                    ? co_await echo_burst(peer, asio::buffer(first, received))
                                    : co_await echo(peer, asio::buffer(first, received));
            if (!echoed)
                co_return;
        }
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
        on_done_();
    }

    BufferPool buffers_;
    WorkerSettings settings_;
    DoneCallback on_done_;
    std::function<void()> on_connection_end_;
    boost::intrusive::list<Connection, boost::intrusive::constant_time_size<true>> connections_;
    WorkerTimer* housekeeping_timer_ = nullptr;
    std::uint64_t tick_ = 0;
    bool draining_ = false;
    bool finished_ = false;
    std::atomic<std::uint64_t> bytes_echoed_{0};
    std::atomic<std::uint64_t> cut_{0};
    std::atomic<std::uint64_t> heartbeat_{0};
    // Declared after everything a session's frame touches: destroying the context destroys any
    // frame still suspended in it, whose cleanup uses the members above.
    asio::io_context context_{1};
    std::thread thread_;
};

class Server::Impl {
public:
    Impl(DaemonConfig config, ServerSocket socket, std::vector<std::string> args)
        : config_(std::move(config))
        , args_(std::move(args))
        , socket_(socket)
        , acceptor_(control_)
        , signals_(control_, SIGTERM, SIGINT, SIGHUP)
        , resume_accepting_(control_)
        , shutdown_deadline_(control_)
        , status_timer_(control_)
        , watchdog_timer_(control_)
        , refused_summary_timer_(control_) {
        signals_.add(SIGUSR1);
        // One connection needs one worker, whatever --threads says.
        const unsigned worker_count = socket_.connected ? 1 : config_.threads;
        for (unsigned i = 0; i < worker_count; ++i) {
            workers_.push_back(std::make_unique<Worker>(
                config_.buffer_size, worker_settings(),
                [this] { asio::post(control_, [this] { on_worker_done(); }); },
                [this] { on_connection_end(); }));
        }
        if (!socket_.connected)
            acceptor_.assign(asio::local::stream_protocol(), socket_.fd);
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
            asio::co_spawn(control_, accept_loop(), [](std::exception_ptr failure) {
                if (failure)
                    std::rethrow_exception(failure); // no daemon without its acceptor
            });
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
    WorkerSettings worker_settings() const { return WorkerSettings{config_.idle_timeout}; }

    asio::awaitable<void> accept_loop() {
        std::size_t next_worker = 0;
        bool exhausted = false; // inside an episode of descriptor or memory exhaustion
        while (!stopping_) {
            if (active_.load() >= config_.max_connections) {
                co_await wait_for_free_slot();
                continue;
            }
            auto& worker = *workers_[next_worker];
            auto [error, socket] =
                co_await acceptor_.async_accept(worker.context(), as_tuple_awaitable);
            if (error == asio::error::operation_aborted || stopping_)
                co_return;
            if (is_resource_exhaustion(error)) {
                if (!exhausted)
                    UDS_LOG(warning) << "cannot accept connections: " << error.message()
                                     << "; retrying every " << accept_backoff.count() << " ms";
                exhausted = true;
                asio::steady_timer backoff(control_, accept_backoff);
                co_await backoff.async_wait(as_tuple_awaitable);
                continue;
            }
            if (error) {
                // ECONNABORTED and the like concern one client only.
                UDS_LOG(debug) << "accept failed: " << error.message();
                continue;
            }
            if (exhausted) {
                UDS_LOG(info) << "accepting connections again";
                exhausted = false;
            }
            if (admit(std::move(socket), worker))
                next_worker = (next_worker + 1) % workers_.size();
        }
    }

    // Checks the peer against the allow lists and hands it to `worker`. A refused peer is closed
    // before a byte of it is read.
    bool admit(Socket socket, Worker& worker) {
        const auto id = ++total_;
        const auto peer = peer_credentials(socket.native_handle()).value_or(PeerCredentials{});
        if (!config_.access.allows(peer)) {
            log_refused(id, peer);
            return false;
        }
        UDS_LOG(debug) << describe_peer(id, peer) << " accepted";
        active_.fetch_add(1);
        worker.start_session(std::move(socket), id, peer);
        return true;
    }

    // Accept=yes: the descriptor is the client; the daemon exits when its session ends.
    void serve_passed_connection() {
        auto& worker = *workers_.front();
        Socket socket(worker.context(), asio::local::stream_protocol(), socket_.fd);
        if (!admit(std::move(socket), worker))
            asio::post(control_, [this] { begin_shutdown("connection refused"); });
    }

    // At --max-connections the listener is left alone: new clients wait in the kernel's listen
    // backlog (nobody is reset) until a session ends and wakes this wait.
    asio::awaitable<void> wait_for_free_slot() {
        accept_paused_.store(true);
        // Re-checked after publishing the flag: a session that ended just before saw no flag.
        if (active_.load() >= config_.max_connections && !stopping_) {
            resume_accepting_.expires_at(asio::steady_timer::time_point::max());
            co_await resume_accepting_.async_wait(as_tuple_awaitable);
        }
        accept_paused_.store(false);
    }

    // Runs on a worker thread.
    void on_connection_end() {
        active_.fetch_sub(1);
        if (socket_.connected)
            asio::post(control_, [this] { begin_shutdown("connection closed"); });
        else if (accept_paused_.load())
            asio::post(control_, [this] { resume_accepting_.cancel(); });
    }

    // At most refused_log_limit_per_second lines a second; the refusals beyond are counted and
    // reported in one line when their second is over, so a flood cannot fill the log and the
    // operator still sees its size.
    void log_refused(std::uint64_t id, const PeerCredentials& peer) {
        ++refused_;
        const auto now = std::chrono::steady_clock::now();
        if (now - refused_window_start_ >= std::chrono::seconds(1) && refused_unlogged_ == 0) {
            refused_window_start_ = now;
            refused_in_window_ = 0;
        }
        if (++refused_in_window_ <= refused_log_limit_per_second) {
            UDS_LOG(warning) << describe_peer(id, peer)
                             << " refused: not in allow-uid or allow-gid";
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
        UDS_LOG(info) << reason << ": no new connections; draining " << active_.load()
                      << " open connection(s) for up to " << config_.shutdown_timeout.count()
                      << " s";
        // A passed listening socket stays open in systemd, which keeps queued clients for the
        // next start; closing our descriptor never unlinks or shuts down the socket itself.
        error_code ignored;
        acceptor_.close(ignored);
        resume_accepting_.cancel();
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
        config_.idle_timeout = next.idle_timeout;
        config_.exit_on_idle = next.exit_on_idle;
        config_.shutdown_timeout = next.shutdown_timeout;
        config_.access = next.access;
        init_logging(config_.log_level, config_.log_format, "uds-echod");
        for (auto& worker : workers_)
            asio::post(worker->context(), [&worker = *worker, settings = worker_settings()] {
                worker.apply(settings);
            });
        resume_accepting_.cancel(); // a raised max-connections frees slots

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
        return std::to_string(active_.load()) + " open connection(s), " + std::to_string(total_) +
               " accepted, " + std::to_string(refused_) + " refused, " +
               std::to_string(bytes_echoed()) + " bytes echoed";
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
        idle_seconds_ = active_.load() == 0 ? idle_seconds_ + 1 : 0;
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
    asio::local::stream_protocol::acceptor acceptor_;
    asio::signal_set signals_;
    asio::steady_timer resume_accepting_;
    asio::steady_timer shutdown_deadline_;
    asio::steady_timer status_timer_;
    asio::steady_timer watchdog_timer_;
    asio::steady_timer refused_summary_timer_;
    std::vector<std::unique_ptr<Worker>> workers_;
    std::atomic<unsigned> active_{0};
    std::atomic<bool> accept_paused_{false};
    std::uint64_t total_ = 0;
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
