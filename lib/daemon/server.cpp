// The control side of the server: it starts the pool of workers, then runs four coroutines on its
// own thread: the signal handler (stop, reload, statistics), the once-a-second status and idle
// clock, the watchdog, and, when the time comes, the shutdown. The connections live with the
// workers (worker_pool.hpp).
#include "daemon/server.hpp"

#include "common/paths.hpp"
#include "common/text.hpp"
#include "daemon/datagram_echo.hpp"
#include "daemon/listener.hpp"
#include "daemon/logging.hpp"
#include "daemon/service_manager.hpp"
#include "daemon/systemd.hpp"
#include "daemon/worker_pool.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fcntl.h>
#include <pthread.h>
#include <sys/resource.h>

#include <csignal>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <system_error>

namespace uds_echo::daemon {
namespace {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
using boost::system::error_code;

// The control thread's coroutines are few and long-lived: plain use_awaitable is fine here.
constexpr auto as_tuple_awaitable = asio::as_tuple(asio::use_awaitable);

sigset_t server_signals() {
    sigset_t signals;
    sigemptyset(&signals);
    for (int signal_number : {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2})
        sigaddset(&signals, signal_number);
    return signals;
}

// The datagram figures of the status line and the statistics.
std::string datagram_statistics(const DatagramFigures& figures) {
    return std::to_string(figures.answered) + " datagram(s) answered (" +
           std::to_string(figures.bytes) + " bytes), " + std::to_string(figures.refused) +
           " refused, " + std::to_string(figures.reply_dropped) + " replies dropped, " +
           std::to_string(figures.too_long) + " too long, " + std::to_string(figures.unanswerable) +
           " without an abstract sender address";
}

// A coroutine of the control thread that throws is a bug: the exception leaves run() and main()
// reports it and exits, as for any unexpected error.
void rethrow_failure(std::exception_ptr failure) {
    if (failure)
        std::rethrow_exception(failure);
}

} // namespace

void raise_descriptor_limit() {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &limit);
    }
}

void block_server_signals() {
    const auto signals = server_signals();
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
}

class Server::Impl {
public:
    Impl(DaemonConfig config, ServerSocket socket, std::vector<std::string> args)
        : config_(std::move(config))
        , args_(std::move(args))
        , socket_(std::move(socket))
        , signals_(control_, SIGTERM, SIGINT, SIGHUP)
        , status_timer_(control_)
        , watchdog_timer_(control_)
        // One connection needs one worker, whatever --threads says.
        , pool_(control_, socket_.connected ? 1 : config_.threads, config_.buffer_size,
                worker_settings(),
                socket_.connected ? Listeners{} : Listeners{socket_.fd, socket_.seqpacket_fd},
                [this](const char* why) { begin_shutdown(why); }) {
        signals_.add(SIGUSR1);
        signals_.add(SIGUSR2);
        if (socket_.datagram_fd >= 0)
            datagram_.emplace(FileDescriptor(socket_.datagram_fd), config_.buffer_size,
                              config_.access);
    }

    ExitCode run() {
        rlimit descriptors{}; // raised in main, before the passed connections were received
        ::getrlimit(RLIMIT_NOFILE, &descriptors);
        // Before the accept loop, which counts them: resumed connections come first.
        if (!socket_.connected)
            resume_handed_connections();
        if (datagram_) {
            // Logged before any thread starts: the first log line creates the logger, and no
            // other thread may race to create it.
            UDS_LOG(info) << "answering datagrams on "
                          << bound_socket_name(socket_.datagram_fd).value_or("an unnamed socket");
            datagram_->start();
        }
        pool_.start();
        if (socket_.connected) {
            UDS_LOG(info) << "uds-echod " << UDS_ECHO_VERSION
                          << " serving one connection passed by socket activation";
            pool_.serve_connected(socket_.fd);
        } else {
            for (const auto& [fd, type] :
                 {std::pair{socket_.fd, "stream"}, std::pair{socket_.seqpacket_fd, "seqpacket"}})
                if (socket_.socket_activated && fd >= 0)
                    UDS_LOG(info) << "listening on "
                                  << bound_socket_name(fd).value_or("an unnamed socket") << " ("
                                  << type << ", passed by socket activation)";
            UDS_LOG(info) << "uds-echod " << UDS_ECHO_VERSION << " serving with " << pool_.size()
                          << " worker thread(s), up to " << config_.max_connections
                          << " connections (descriptor limit " << descriptors.rlim_cur << ")";
            warn_if_anyone_may_connect();
        }
        asio::co_spawn(control_, handle_signals(), rethrow_failure);
        // The handler waits: a signal that arrived during start-up is delivered now.
        const auto signals = server_signals();
        pthread_sigmask(SIG_UNBLOCK, &signals, nullptr);
        asio::co_spawn(control_, report_status_every_second(), rethrow_failure);
        asio::co_spawn(control_, send_watchdog_pings(), rethrow_failure);
        notifier_.ready();
        control_.run(); // until the shutdown has ended every coroutine
        pool_.join();
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
        for (const int fd : {socket_.fd, socket_.seqpacket_fd, socket_.datagram_fd})
            if (const auto name = bound_socket_name(fd); name && is_abstract(*name))
                UDS_LOG(warning)
                    << "the abstract socket " << *name
                    << " has no file permissions: any process in this network "
                       "namespace may connect; restrict it with allow-uid or allow-gid";
    }

    asio::awaitable<void> handle_signals() {
        for (;;) {
            auto [error, signal_number] = co_await signals_.async_wait(as_tuple_awaitable);
            if (error)
                co_return; // cancelled: the shutdown is over
            switch (signal_number) {
            case SIGTERM:
            case SIGINT:
            case SIGUSR2:
                if (stopping_) {
                    UDS_LOG(warning)
                        << strsignal(signal_number) << " again: closing all connections now";
                    pool_.force_close();
                } else {
                    // Awaited, not blocked on: the watchdog and STATUS= go on meanwhile.
                    begin_shutdown(strsignal(signal_number), co_await stop_intent(signal_number));
                }
                break;
            case SIGHUP:
                reload();
                break;
            case SIGUSR1:
                log_statistics("statistics");
                break;
            }
        }
    }

    // The connections a previous process handed over, spread over the workers.
    void resume_handed_connections() {
        auto& resumed = socket_.resumed;
        if (resumed.empty())
            return;
        UDS_LOG(info) << "resuming " << resumed.size()
                      << " connection(s) handed over by the previous process";
        pool_.resume(std::move(resumed), config_.max_connections);
        resumed.clear();
    }

    // SIGTERM asks systemd whether a restart follows (on the user's bus under a user manager);
    // SIGUSR2 says so itself (uds-echod(8)); SIGINT is always a stop. A handover needs a store to
    // hand over to.
    asio::awaitable<StopIntent> stop_intent(int signal_number) const {
        if (signal_number == SIGINT || socket_.connected)
            co_return StopIntent{};
        if (!notifier_.enabled())
            co_return StopIntent{false, std::nullopt,
                                 "no file descriptor store (NOTIFY_SOCKET unset)"};
        if (signal_number == SIGUSR2)
            co_return StopIntent{true, store_room_from_environment(), "asked for by SIGUSR2"};
        co_return co_await ask_service_manager(manager_bus_from_environment(), question_limit);
    }

    void begin_shutdown(const std::string& reason, StopIntent intent = {}) {
        if (stopping_)
            return;
        stopping_ = true;
        asio::co_spawn(control_, shutdown(reason, std::move(intent)), rethrow_failure);
    }

    // A restart: the sessions let go of their connections, which go to the file descriptor store
    // with their unsent bytes. What the store does not take is given back to the workers, to be
    // drained as at a stop.
    // Returns how many connections were given back to be drained.
    asio::awaitable<std::size_t> hand_over(const std::string& reason, const StopIntent& intent) {
        UDS_LOG(info) << reason << ": restart (" << intent.reason << "); handing "
                      << pool_.connections_held()
                      << " open connection(s) over to the file descriptor store";
        auto handed = co_await pool_.hand_over(config_.shutdown_timeout);
        const auto total = handed.size();
        auto refused = store_connections(std::move(handed), intent.store_room);
        UDS_LOG(info) << "handed over " << total - refused.size()
                      << " connection(s) to the file descriptor store; draining " << refused.size();
        const auto given_back = refused.size();
        // Drained whatever the limit: they were open before, and must not be closed now.
        pool_.resume(std::move(refused), std::numeric_limits<unsigned>::max());
        co_return given_back;
    }

    // Stop accepting, let the open sessions finish for at most --shutdown-timeout, then close what
    // is left; and end every other coroutine of this thread, so that run() returns. At a restart
    // the connections are handed over first, and only those the store does not take are drained.
    asio::awaitable<void> shutdown(std::string reason, StopIntent intent) {
        notifier_.stopping();
        // Datagrams that come from now on wait in the socket: systemd keeps it for the next
        // process, which answers them.
        if (datagram_)
            datagram_->stop();
        std::size_t open = 0;
        if (intent.restart) {
            open = co_await hand_over(reason, intent);
        } else {
            if (!intent.reason.empty())
                UDS_LOG(info) << reason << ": stop (" << intent.reason << ")";
            open = pool_.connections_held();
        }
        if (open == 0)
            UDS_LOG(info) << reason << ": no open connections; exiting";
        else
            UDS_LOG(info) << reason << ": no new connections; draining " << open
                          << " open connection(s) for up to " << config_.shutdown_timeout.count()
                          << " s";
        // A listening socket passed by systemd stays open there, with the clients queued in its
        // backlog, for the next start: the workers close their descriptors and nothing else.
        const auto cut = co_await pool_.drain(config_.shutdown_timeout);
        if (cut > 0)
            UDS_LOG(warning) << "shutdown timeout: closed " << cut
                             << " connection(s) that were still open";
        finished_ = true;
        signals_.cancel();
        status_timer_.cancel();
        watchdog_timer_.cancel();
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
        take_runtime_options(config_, next);
        init_logging(config_.log_level, config_.log_format, "uds-echod");
        pool_.apply(worker_settings());
        if (datagram_)
            datagram_->apply(config_.access);

        std::string summary;
        for (const auto& name : changed)
            summary += (summary.empty() ? "" : ", ") + name;
        UDS_LOG(info) << "configuration reloaded"
                      << (summary.empty() ? std::string("; nothing changed")
                                          : "; changed: " + summary);
    }

    // Byte counts for people ("2.5 GiB"), with the exact number behind them for scripts.
    std::string statistics() const {
        const auto bytes = pool_.bytes_echoed();
        auto text = std::to_string(pool_.connections_held()) + " open connection(s), " +
                    std::to_string(pool_.accepted()) + " accepted, " +
                    std::to_string(pool_.refused()) + " refused, " + byte_count_text(bytes) +
                    " echoed (" + std::to_string(bytes) + " bytes)";
        if (datagram_)
            text += "; " + datagram_statistics(datagram_->figures());
        return text;
    }

    void log_statistics(const char* what) { UDS_LOG(info) << what << ": " << statistics(); }

    // Once a second: the STATUS= line (sent only when it changed) and the --exit-on-idle clock.
    asio::awaitable<void> report_status_every_second() {
        std::string last_status;
        while (!finished_) {
            status_timer_.expires_after(std::chrono::seconds(1));
            auto [cancelled] = co_await status_timer_.async_wait(as_tuple_awaitable);
            if (cancelled)
                co_return;
            if (auto status = statistics(); status != last_status) {
                notifier_.status(status);
                last_status = std::move(status);
            }
            count_idle_second();
        }
    }

    // Only a socket-activated daemon may exit on idle: systemd keeps the listening socket and
    // starts the service again for the next client.
    void count_idle_second() {
        if (!socket_.socket_activated || socket_.connected || config_.exit_on_idle.count() == 0 ||
            stopping_)
            return;
        const auto datagrams = datagram_ ? datagram_->figures().received() : 0;
        const bool idle = pool_.connections_held() == 0 && datagrams == datagrams_at_last_second_;
        datagrams_at_last_second_ = datagrams;
        idle_seconds_ = idle ? idle_seconds_ + 1 : 0;
        if (idle_seconds_ >= config_.exit_on_idle.count())
            begin_shutdown("idle for " + std::to_string(idle_seconds_) + " s");
    }

    // WATCHDOG=1 proves more than a live control thread: each ping goes out only after every
    // worker's event loop has run the heartbeat posted at the previous ping.
    asio::awaitable<void> send_watchdog_pings() {
        const auto interval = notifier_.watchdog_interval();
        if (!interval)
            co_return;
        for (std::uint64_t beat = 0; !finished_; ++beat) {
            watchdog_timer_.expires_after(*interval);
            auto [cancelled] = co_await watchdog_timer_.async_wait(as_tuple_awaitable);
            if (cancelled)
                co_return;
            if (pool_.every_worker_ran(beat))
                notifier_.watchdog();
            else
                UDS_LOG(warning) << "a worker's event loop is stalled; withholding WATCHDOG=1";
            pool_.post_heartbeat(beat + 1);
        }
    }

    DaemonConfig config_;
    std::vector<std::string> args_;
    ServerSocket socket_;
    ServiceNotifier notifier_;
    asio::io_context control_{1};
    asio::signal_set signals_;
    asio::steady_timer status_timer_;
    asio::steady_timer watchdog_timer_;
    WorkerPool pool_;
    std::optional<DatagramEcho> datagram_;
    std::uint64_t datagrams_at_last_second_ = 0;
    long idle_seconds_ = 0;
    bool stopping_ = false;
    bool finished_ = false;
};

Server::Server(DaemonConfig config, ServerSocket socket, std::vector<std::string> args)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(socket), std::move(args))) {}

Server::~Server() = default;

ExitCode Server::run() {
    return impl_->run();
}

} // namespace uds_echo::daemon
