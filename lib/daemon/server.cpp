// The control side of the server: it starts the workers, then runs four coroutines on its own
// thread: the signal handler (stop, reload, statistics), the once-a-second status and idle clock,
// the watchdog, and, when the time comes, the shutdown. The connections live in worker.cpp.
#include "daemon/server.hpp"

#include "common/paths.hpp"
#include "common/text.hpp"
#include "daemon/access.hpp"
#include "daemon/listener.hpp"
#include "daemon/logging.hpp"
#include "daemon/refusal_log.hpp"
#include "daemon/service_manager.hpp"
#include "daemon/systemd.hpp"
#include "daemon/worker.hpp"

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
        , all_drained_(control_)
        , status_timer_(control_)
        , watchdog_timer_(control_)
        , refusals_(control_) {
        signals_.add(SIGUSR1);
        signals_.add(SIGUSR2);
        // One connection needs one worker, whatever --threads says.
        const unsigned worker_count = socket_.connected ? 1 : config_.threads;
        WorkerEvents events{
            [this] { asio::post(control_, [this] { on_worker_drained(); }); },
            [this](std::uint64_t id, PeerCredentials peer, const char* reason) {
                asio::post(control_, [this, id, peer, reason] { on_refused(id, peer, reason); });
            },
            [this] { on_session_end(); }, nullptr};
        if (worker_count > 1)
            events.hand_out = [this](int fd) { return hand_out(fd); };
        for (unsigned i = 0; i < worker_count; ++i) {
            const int listener = socket_.connected || i > 0 ? -1 : socket_.fd;
            workers_.push_back(std::make_unique<Worker>(i, config_.buffer_size, worker_settings(),
                                                        listener, shared_, events));
        }
    }

    ExitCode run() {
        rlimit descriptors{}; // raised in main, before the passed connections were received
        ::getrlimit(RLIMIT_NOFILE, &descriptors);
        // Before the accept loops, which take slots too: resumed connections come first.
        if (!socket_.connected)
            resume_handed_connections();
        for (auto& worker : workers_)
            worker->start();
        if (socket_.connected) {
            UDS_LOG(info) << "uds-echod " << UDS_ECHO_VERSION
                          << " serving one connection passed by socket activation";
            workers_.front()->serve_connected(socket_.fd);
        } else {
            if (socket_.socket_activated)
                UDS_LOG(info) << "listening on "
                              << bound_socket_name(socket_.fd).value_or("an unnamed socket")
                              << " (passed by socket activation)";
            UDS_LOG(info) << "uds-echod " << UDS_ECHO_VERSION << " serving with " << workers_.size()
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
        if (const auto name = bound_socket_name(socket_.fd); name && is_abstract(*name))
            UDS_LOG(warning) << "the abstract socket " << *name
                             << " has no file permissions: any process in this network namespace "
                                "may connect; restrict it with allow-uid or allow-gid";
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
                    force_close_all();
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
        give_to_workers(std::move(resumed), config_.max_connections);
        resumed.clear();
    }

    // Each connection takes a slot here, up to `limit`; one beyond it is closed and logged.
    void give_to_workers(std::vector<HandedConnection> connections, unsigned limit) {
        std::vector<std::vector<HandedConnection>> shares(workers_.size());
        std::size_t next = 0;
        for (auto& connection : connections) {
            if (!shared_.slots.try_take(limit)) {
                refusals_.add(++shared_.accepted,
                              peer_credentials(connection.fd.get()).value_or(PeerCredentials{}),
                              "resumed beyond max-connections");
                continue;
            }
            shares[next++ % shares.size()].push_back(std::move(connection));
        }
        for (std::size_t i = 0; i < workers_.size(); ++i)
            if (!shares[i].empty())
                workers_[i]->resume(std::move(shares[i]));
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
                      << shared_.open.load()
                      << " open connection(s) over to the file descriptor store";
        workers_draining_ = workers_.size();
        for_each_worker_accepting_first([](Worker& worker) { worker.begin_handover(); });
        // Sessions let go as soon as their cancelled operations complete; the deadline only
        // guards against a session that does not, whose connection is then closed (and counted
        // as cut).
        co_await wait_for_workers();
        std::vector<HandedConnection> handed;
        for (auto& worker : workers_)
            for (auto& connection : worker->take_handed())
                handed.push_back(std::move(connection));
        const auto total = handed.size();
        auto refused = store_connections(std::move(handed), intent.store_room);
        UDS_LOG(info) << "handed over " << total - refused.size()
                      << " connection(s) to the file descriptor store; draining " << refused.size();
        const auto given_back = refused.size();
        // Drained whatever the limit: they were open before, and must not be closed now.
        give_to_workers(std::move(refused), std::numeric_limits<unsigned>::max());
        co_return given_back;
    }

    // Stop accepting, let the open sessions finish for at most --shutdown-timeout, then close what
    // is left; and end every other coroutine of this thread, so that run() returns. At a restart
    // the connections are handed over first, and only those the store does not take are drained.
    asio::awaitable<void> shutdown(std::string reason, StopIntent intent) {
        notifier_.stopping();
        std::size_t open = 0;
        if (intent.restart) {
            open = co_await hand_over(reason, intent);
        } else {
            if (!intent.reason.empty())
                UDS_LOG(info) << reason << ": stop (" << intent.reason << ")";
            open = shared_.open.load();
        }
        if (open == 0)
            UDS_LOG(info) << reason << ": no open connections; exiting";
        else
            UDS_LOG(info) << reason << ": no new connections; draining " << open
                          << " open connection(s) for up to " << config_.shutdown_timeout.count()
                          << " s";
        // A listening socket passed by systemd stays open there, with the clients queued in its
        // backlog, for the next start: the workers close their descriptors and nothing else.
        workers_draining_ = workers_.size();
        for_each_worker_accepting_first([](Worker& worker) { worker.begin_drain(); });
        co_await wait_for_workers();
        std::uint64_t cut = 0;
        for (const auto& worker : workers_)
            cut += worker->connections_cut();
        if (cut > 0)
            UDS_LOG(warning) << "shutdown timeout: closed " << cut
                             << " connection(s) that were still open";
        finished_ = true;
        signals_.cancel();
        status_timer_.cancel();
        watchdog_timer_.cancel();
        refusals_.stop();
    }

    // Until every worker has reported `drained`, for at most --shutdown-timeout; then the
    // connections still open are closed, and the wait goes on until their sessions have ended.
    // on_worker_drained() cancels the wait when the last worker is done.
    asio::awaitable<void> wait_for_workers() {
        all_drained_.expires_after(config_.shutdown_timeout);
        co_await all_drained_.async_wait(as_tuple_awaitable);
        if (workers_draining_ > 0) {
            force_close_all();
            all_drained_.expires_at(Clock::time_point::max());
            co_await all_drained_.async_wait(as_tuple_awaitable);
        }
    }

    void force_close_all() {
        for (auto& worker : workers_)
            worker->force_close();
    }

    void on_worker_drained() {
        if (--workers_draining_ == 0)
            all_drained_.cancel();
    }

    // Runs on the accepting worker (the first), for each connection it accepts: the connection goes
    // to the worker with the fewest open sessions if that has fewer than the accepting worker, and
    // otherwise stays where it is, at no cost. A worker's count can be a moment old; the balance
    // only needs to be rough.
    bool hand_out(int fd) {
        Worker* least = workers_.front().get();
        unsigned least_open = least->open_sessions();
        for (const auto& worker : workers_) {
            if (const auto open = worker->open_sessions(); open < least_open) {
                least = worker.get();
                least_open = open;
            }
        }
        if (least == workers_.front().get())
            return false;
        least->serve_accepted(fd);
        return true;
    }

    // `task` for every worker, the accepting worker first: the others get it only after every
    // connection it handed out before it ran `task`.
    // (Posted as one task: the accepting worker's thread ends once it has drained, and would never
    // run a second one.)
    void for_each_worker_accepting_first(const std::function<void(Worker&)>& task) {
        workers_.front()->post([this, task] {
            for (auto& worker : workers_)
                task(*worker);
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
        refusals_.add(id, peer, reason);
        if (socket_.connected)
            begin_shutdown("connection refused");
        else
            for (auto& worker : workers_)
                worker->slot_freed();
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
        for (auto& worker : workers_)
            worker->apply(worker_settings());

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

    // Byte counts for people ("2.5 GiB"), with the exact number behind them for scripts.
    std::string statistics() const {
        const auto bytes = bytes_echoed();
        return std::to_string(shared_.open.load()) + " open connection(s), " +
               std::to_string(shared_.accepted.load()) + " accepted, " +
               std::to_string(refusals_.count()) + " refused, " + byte_count_text(bytes) +
               " echoed (" + std::to_string(bytes) + " bytes)";
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
        idle_seconds_ = shared_.open.load() == 0 ? idle_seconds_ + 1 : 0;
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
            bool healthy = true;
            for (const auto& worker : workers_)
                healthy = healthy && worker->heartbeat() == beat;
            if (healthy)
                notifier_.watchdog();
            else
                UDS_LOG(warning) << "a worker's event loop is stalled; withholding WATCHDOG=1";
            for (auto& worker : workers_)
                worker->post_heartbeat(beat + 1);
        }
    }

    DaemonConfig config_;
    std::vector<std::string> args_;
    ServerSocket socket_;
    ServiceNotifier notifier_;
    asio::io_context control_{1};
    asio::signal_set signals_;
    asio::steady_timer all_drained_; // the shutdown's deadline, cancelled when all have drained
    asio::steady_timer status_timer_;
    asio::steady_timer watchdog_timer_;
    SharedState shared_; // outlives the workers, which use it
    std::vector<std::unique_ptr<Worker>> workers_;
    RefusalLog refusals_;
    std::size_t workers_draining_ = 0;
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
