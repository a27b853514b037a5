#include "client/ping.hpp"

#include "client/round_trip.hpp"
#include "client/run_coroutine.hpp"
#include "client/stop_signals.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ostream>

namespace uds_echo::client {

namespace {

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;
using Clock = std::chrono::steady_clock;

// Round-trip times in milliseconds, for the summary.
class RoundTripStats {
public:
    void add(double ms) {
        ++count_;
        sum_ += ms;
        sum_of_squares_ += ms * ms;
        min_ = count_ == 1 ? ms : std::min(min_, ms);
        max_ = std::max(max_, ms);
    }
    std::uint64_t count() const { return count_; }
    double min() const { return min_; }
    double max() const { return max_; }
    double mean() const { return count_ ? sum_ / static_cast<double>(count_) : 0; }
    // The standard deviation, as ping(8) calls mdev.
    double deviation() const {
        if (count_ == 0)
            return 0;
        const double mean_value = mean();
        return std::sqrt(
            std::max(0.0, sum_of_squares_ / static_cast<double>(count_) - mean_value * mean_value));
    }

private:
    std::uint64_t count_ = 0;
    double sum_ = 0;
    double sum_of_squares_ = 0;
    double min_ = 0;
    double max_ = 0;
};

// The payload of ping number `sequence`: its number, then filler, exactly `size` bytes.
void fill_payload(std::string& payload, std::size_t size, std::uint64_t sequence) {
    payload.assign(size, '\0');
    const std::string head = "uds-echo ping " + std::to_string(sequence) + "\n";
    for (std::size_t i = 0; i < size; ++i)
        payload[i] = i < head.size() ? head[i] : static_cast<char>('a' + (i + sequence) % 26);
}

// One run of ping: its connection, what it measured, and where it prints.
class Pinger {
public:
    Pinger(const PingOptions& options, DaemonConnection connection, StopSignals& signals,
           std::ostream& out)
        : options_(options)
        , path_(connection.path)
        , unused_connection_(std::move(connection.fd))
        , signals_(signals)
        , interval_(signals.executor())
        , out_(out) {
        // Reconnections go to the socket the first connection found.
        same_socket_ = options.client;
        same_socket_.socket_candidates = {path_};
    }

    // Pings until the count or until stop(); then the wait for a stop signal ends too.
    asio::awaitable<void> run() {
        auto next_send = start_;
        for (std::uint64_t sequence = 1; !options_.count || sequence <= *options_.count;
             ++sequence) {
            const auto failure = co_await ping_once(sequence);
            if (stopping_)
                break; // a ping cut short by Ctrl-C is not counted, as in ping(8)
            ++sent_;
            if (failure)
                lost(sequence, *failure);
            if (options_.count && sequence == *options_.count)
                break;
            next_send += std::chrono::duration_cast<Clock::duration>(options_.interval);
            next_send = std::max(next_send, Clock::now());
            interval_.expires_at(next_send);
            co_await interval_.async_wait(asio::as_tuple(asio::use_awaitable));
            if (stopping_)
                break;
        }
        signals_.cancel();
    }

    // A stop signal came: what run() waits on is cancelled, and it sees `stopping_` after the
    // await (docs/architecture.md, "Stopping"). A reconnection waiting for a full listen
    // backlog is not cut short; it ends within the timeout.
    void stop() {
        stopping_ = true;
        interval_.cancel();
        if (socket_) {
            boost::system::error_code ignored;
            socket_->cancel(ignored);
        }
    }

    void print_header() {
        out_ << "PING " << path_ << ": " << options_.size << " bytes\n" << std::flush;
    }

    void print_summary() {
        const auto elapsed =
            std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start_);
        const double loss = sent_ == 0 ? 0.0
                                       : 100.0 * static_cast<double>(sent_ - stats_.count()) /
                                             static_cast<double>(sent_);
        char line[256];
        out_ << "\n--- " << path_ << " ping statistics ---\n";
        std::snprintf(line, sizeof line, "%llu sent, %llu received, %g%% loss, time %lld ms\n",
                      static_cast<unsigned long long>(sent_),
                      static_cast<unsigned long long>(stats_.count()), loss,
                      static_cast<long long>(elapsed.count()));
        out_ << line;
        if (stats_.count() > 0) {
            std::snprintf(line, sizeof line, "rtt min/avg/max/mdev = %.3f/%.3f/%.3f/%.3f ms\n",
                          stats_.min(), stats_.mean(), stats_.max(), stats_.deviation());
            out_ << line;
        }
        out_.flush();
    }

    ExitCode exit_code() const {
        if (stats_.count() == sent_)
            return ExitCode::ok;
        return first_failure_.value_or(ExitCode::ok);
    }

private:
    // One round trip, reconnecting first when the last one failed; the failure, if any.
    asio::awaitable<std::optional<Failure>> ping_once(std::uint64_t sequence) {
        const auto executor = co_await asio::this_coro::executor;
        if (!socket_) {
            try {
                if (!unused_connection_.valid()) {
                    auto again = co_await connect_to_daemon(same_socket_);
                    unused_connection_ = std::move(again.fd);
                }
                socket_.emplace(executor, asio::local::stream_protocol(),
                                unused_connection_.release());
            } catch (const Failure& failure) {
                co_return failure;
            }
        }
        fill_payload(payload_, options_.size, sequence);
        echo_.resize(payload_.size());
        const auto sent_at = Clock::now();
        auto result = co_await round_trip(*socket_, payload_, echo_, options_.client.timeout);
        if (result.failure)
            co_return result.failure;
        const double ms = std::chrono::duration<double, std::milli>(Clock::now() - sent_at).count();
        stats_.add(ms);
        if (!options_.client.quiet) {
            char line[64];
            std::snprintf(line, sizeof line, ": seq=%llu time=%.3f ms\n",
                          static_cast<unsigned long long>(sequence), ms);
            out_ << options_.size << " bytes from " << path_ << line << std::flush;
        }
        co_return std::nullopt;
    }

    void lost(std::uint64_t sequence, const Failure& failure) {
        if (!first_failure_)
            first_failure_ = failure.code();
        socket_.reset(); // its state is unknown now: the next ping starts afresh
        if (!options_.client.quiet)
            out_ << "seq=" << sequence << ": " << failure.what() << '\n' << std::flush;
    }

    const PingOptions& options_;
    const std::string path_;
    ClientOptions same_socket_;
    FileDescriptor unused_connection_; // connected, not yet used by a ping
    std::optional<Socket> socket_;
    StopSignals& signals_;
    asio::steady_timer interval_;
    bool stopping_ = false;
    std::ostream& out_;
    RoundTripStats stats_;
    std::optional<ExitCode> first_failure_;
    std::uint64_t sent_ = 0;
    std::string payload_;
    std::string echo_;
    const Clock::time_point start_ = Clock::now();
};

asio::awaitable<void> stop_on_signal(Pinger& pinger, StopSignals& signals) {
    // A named result: g++ 12 turned `if (co_await ...)` as the last statement of this coroutine
    // into an illegal instruction (SIGILL).
    const bool signalled = co_await signals.wait();
    if (signalled)
        pinger.stop();
}

// The pings and the wait for a stop signal run at once; whichever ends first stops the other.
// Neither throws, so `&&` only joins them.
asio::awaitable<void> until_stopped(Pinger& pinger, StopSignals& signals) {
    co_await (pinger.run() && stop_on_signal(pinger, signals));
}

} // namespace

ExitCode run_ping(const PingOptions& options, std::ostream& out) {
    asio::io_context context(1);
    StopSignals signals(context.get_executor());
    Pinger pinger(options, run_coroutine(context, connect_to_daemon(options.client)), signals, out);
    pinger.print_header();
    run_coroutine(context, until_stopped(pinger, signals));
    pinger.print_summary();
    return pinger.exit_code();
}

} // namespace uds_echo::client
