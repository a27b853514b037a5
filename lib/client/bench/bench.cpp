#include "client/bench/bench.hpp"

#include "client/bench/bench_load.hpp"
#include "client/connect.hpp"
#include "client/run_coroutine.hpp"
#include "client/stop_signals.hpp"
#include "client/wakeup.hpp"
#include "common/text.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <cmath>
#include <cstdio>
#include <ostream>
#include <thread>

namespace uds_echo::client {

namespace {

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;
using Clock = BenchClock;
using Workers = std::vector<std::unique_ptr<Worker>>;

// The connections of a pipelined run, all opened before the measurement starts (none for churn),
// and the socket they reached: the first finds the daemon exactly as the other forms do, the
// others go to the same path.
struct Connections {
    std::string path;
    std::vector<FileDescriptor> fds;
};

asio::awaitable<Connections> connect_all(const BenchOptions& options) {
    // A named object, not a temporary in the co_await expression: g++ 12 destroys such
    // temporaries twice.
    const ClientOptions candidates{options.socket_candidates, options.timeout, true, options.type};
    auto first = co_await connect_to_daemon(candidates);
    Connections connections{first.path, {}};
    if (options.churn)
        co_return connections; // the probe only found the path; the load opens its own
    connections.fds.push_back(std::move(first.fd));
    const ClientOptions same_path{{connections.path}, options.timeout, true, options.type};
    while (connections.fds.size() < options.connections) {
        auto next = co_await connect_to_daemon(same_path);
        connections.fds.push_back(std::move(next.fd));
    }
    co_return connections;
}

// Measured messages for load number `index` of `loads`, when -n splits a total between them.
std::optional<std::uint64_t> quota_of(const BenchOptions& options, std::size_t index,
                                      std::size_t loads) {
    if (!options.messages)
        return std::nullopt;
    const std::uint64_t total = *options.messages;
    return total / loads + (index < total % loads ? 1 : 0);
}

// The sum of every worker's figures as last published.
WorkerFigures current_figures(Workers& workers) {
    WorkerFigures total;
    for (auto& worker : workers) {
        const auto figures = worker->published_figures();
        total.messages += figures.messages;
        total.bytes += figures.bytes;
        total.latency.merge(figures.latency);
    }
    return total;
}

// The line that shows a run is alive: elapsed of total time, the rates of the last interval, the
// p99 so far and the errors.
class ProgressDisplay {
public:
    ProgressDisplay(const asio::any_io_executor& executor, BenchRun& run, std::ostream& out)
        : run_(run)
        , timer_(executor)
        , out_(out)
        , in_place_(run.options.progress == BenchOptions::Progress::terminal)
        , interval_(in_place_ ? std::chrono::seconds(1) : std::chrono::seconds(5))
        , last_time_(Clock::now()) {}

    // Until stop(), if the options ask for a progress display at all.
    asio::awaitable<void> show(Workers& workers) {
        if (run_.options.progress == BenchOptions::Progress::none)
            co_return;
        auto next = Clock::now();
        while (!stopped_) {
            next += interval_;
            timer_.expires_at(next);
            co_await timer_.async_wait(asio::as_tuple(asio::use_awaitable));
            if (stopped_)
                break;
            print(Clock::now(), current_figures(workers));
        }
        if (in_place_)
            out_ << "\r\033[K" << std::flush;
    }

    void stop() {
        stopped_ = true;
        timer_.cancel();
    }

private:
    void print(Clock::time_point now, const WorkerFigures& figures) {
        char line[200];
        const double elapsed = std::chrono::duration<double>(now - run_.measure_start).count();
        if (now < run_.measure_start) {
            std::snprintf(line, sizeof line, "warming up, %.0f s left", std::ceil(-elapsed));
        } else {
            const double seconds = std::chrono::duration<double>(now - last_time_).count();
            const auto rate = static_cast<double>(figures.messages - last_messages_) / seconds;
            const auto mebibytes =
                static_cast<double>(figures.bytes - last_bytes_) / (1024.0 * 1024.0) / seconds;
            std::snprintf(
                line, sizeof line, "%s  %s msg/s  %.1f MiB/s  p99 %s  %s errors%s",
                done_text(elapsed, figures.messages).c_str(), rate_text(rate).c_str(), mebibytes,
                figures.latency.count() > 0
                    ? latency_text(std::chrono::nanoseconds(figures.latency.percentile(0.99)))
                          .c_str()
                    : "-",
                std::to_string(run_.errors.load(std::memory_order_relaxed)).c_str(),
                run_.stop_sending.load() ? "  (stopping)" : "");
        }
        if (in_place_)
            out_ << "\r\033[K" << line << std::flush;
        else
            out_ << line << std::endl;
        last_time_ = now;
        last_messages_ = figures.messages;
        last_bytes_ = figures.bytes;
    }

    // How far the run is: "3.0/10.0 s", or "3.0 s  5000/100000 messages" with -n.
    std::string done_text(double elapsed, std::uint64_t messages) const {
        char text[80];
        const auto& options = run_.options;
        if (options.messages)
            std::snprintf(text, sizeof text, "%6.1f s  %llu/%llu messages", elapsed,
                          static_cast<unsigned long long>(messages),
                          static_cast<unsigned long long>(*options.messages));
        else
            std::snprintf(text, sizeof text, "%6.1f/%.1f s  %llu messages", elapsed,
                          std::chrono::duration<double>(options.duration).count(),
                          static_cast<unsigned long long>(messages));
        return text;
    }

    BenchRun& run_;
    asio::steady_timer timer_;
    bool stopped_ = false;
    std::ostream& out_;
    const bool in_place_;
    const std::chrono::seconds interval_;
    Clock::time_point last_time_;
    std::uint64_t last_messages_ = 0;
    std::uint64_t last_bytes_ = 0;
};

// The main thread while the workers run: the end of the last worker, the stop signals (the first
// lets the messages in flight come back, a second one cuts them) and the progress display.
class Supervisor {
public:
    Supervisor(asio::io_context& context, BenchRun& run, Workers& workers, std::ostream& out)
        : run_(run)
        , workers_(workers)
        , signals_(context.get_executor())
        , worker_ended_(context.get_executor())
        , progress_(context.get_executor(), run, out) {}

    // Called on the main thread as each worker ends.
    void worker_ended() {
        ++ended_;
        worker_ended_.notify();
    }

    // The three run at once; the end of the last worker stops the other two the way every part
    // of the client stops (docs/architecture.md, "Stopping"). None throws, so `&&` only joins.
    asio::awaitable<void> supervise() {
        co_await (all_workers_ended() && stop_on_signals() && progress_.show(workers_));
    }

    bool interrupted() const { return signals_.received() > 0; }

private:
    asio::awaitable<void> all_workers_ended() {
        while (ended_ < workers_.size())
            co_await worker_ended_.wait();
        signals_.cancel();
        progress_.stop();
    }

    asio::awaitable<void> stop_on_signals() {
        for (;;) {
            const bool signalled = co_await signals_.wait();
            if (!signalled)
                co_return;
            if (run_.stop_sending.exchange(true))
                run_.abort();
        }
    }

    BenchRun& run_;
    Workers& workers_;
    StopSignals signals_;
    Wakeup worker_ended_;
    std::size_t ended_ = 0;
    ProgressDisplay progress_;
};

void collect(const Workers& workers, BenchRun& run, BenchResult& result) {
    Clock::time_point last_completion{};
    for (const auto& worker : workers) {
        const auto& figures = worker->figures();
        result.latency.merge(figures.latency);
        result.messages += figures.messages;
        result.bytes += figures.bytes;
        result.connections_opened += figures.connections_opened;
        result.connections_measured += figures.connections_measured;
        result.replies_lost += figures.replies_lost;
        last_completion = std::max(last_completion, figures.last_completion);
    }
    if (last_completion > run.measure_start)
        result.seconds = std::chrono::duration<double>(last_completion - run.measure_start).count();
    result.errors = run.errors.load();
    result.failure = run.failure();
}

// The kernel lets at most net.unix.max_dgram_qlen datagrams wait in a socket's receive queue,
// and the daemon drops a reply that finds the client's queue full: more datagrams in flight per
// socket than that would measure the drops, not the daemon.
unsigned datagram_queue_limit() {
    unsigned limit = 10; // the kernel's default
    if (std::FILE* file = std::fopen("/proc/sys/net/unix/max_dgram_qlen", "re")) {
        unsigned value = 0;
        if (std::fscanf(file, "%u", &value) == 1 && value > 0)
            limit = value;
        std::fclose(file);
    }
    return limit;
}

} // namespace

BenchResult run_bench(const BenchOptions& options, std::ostream& progress_out) {
    BenchResult result;
    result.options = options;
    result.options.threads = std::min(options.threads, options.connections);
    if (options.type == SocketType::datagram && options.pipeline > datagram_queue_limit()) {
        result.pipeline_asked = options.pipeline;
        result.options.pipeline = datagram_queue_limit();
    }
    Connections connections;
    try {
        asio::io_context connecting(1);
        connections = run_coroutine(connecting, connect_all(result.options));
    } catch (const Failure& failure) {
        result.failure = failure;
        result.errors = 1;
        return result;
    }

    BenchRun run(result.options, connections.path, Clock::now());
    Workers workers;
    try {
        for (unsigned i = 0; i < result.options.threads; ++i)
            workers.push_back(std::make_unique<Worker>(run));
    } catch (const Failure& failure) {
        result.failure = failure;
        result.errors = 1;
        return result;
    }
    for (std::size_t i = 0; i < options.connections; ++i)
        workers[i % workers.size()]->add_load(options.churn ? FileDescriptor()
                                                            : std::move(connections.fds[i]),
                                              i * 7919, quota_of(options, i, options.connections));

    asio::io_context main_context(1);
    Supervisor supervisor(main_context, run, workers, progress_out);
    std::vector<std::thread> threads;
    for (auto& worker : workers)
        threads.emplace_back([&worker = *worker, &main_context, &supervisor] {
            worker.run_loads();
            asio::post(main_context, [&supervisor] { supervisor.worker_ended(); });
        });
    run_coroutine(main_context, supervisor.supervise());
    for (auto& thread : threads)
        thread.join();

    result.interrupted = supervisor.interrupted();
    collect(workers, run, result);
    return result;
}

std::optional<double> BenchResult::messages_per_second() const {
    if (!seconds || *seconds <= 0)
        return std::nullopt;
    return static_cast<double>(messages) / *seconds;
}

std::optional<double> BenchResult::mebibytes_per_second() const {
    if (!seconds || *seconds <= 0)
        return std::nullopt;
    return static_cast<double>(bytes) / (1024.0 * 1024.0) / *seconds;
}

std::optional<double> BenchResult::connections_per_second() const {
    if (!options.churn || !seconds || *seconds <= 0)
        return std::nullopt;
    return static_cast<double>(connections_measured) / *seconds;
}

} // namespace uds_echo::client
