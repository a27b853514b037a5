// The inside of `uds-echo bench`: what all threads share, one thread's event loop, and the two
// kinds of load it drives (persistent pipelined connections, and churn).
#pragma once

#include "client/bench/bench.hpp"
#include "common/file_descriptor.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <exception>
#include <memory>
#include <mutex>
#include <vector>

namespace uds_echo::client {

using BenchClock = std::chrono::steady_clock;

// The payload: every connection sends an endless pseudo-random byte stream whose byte at stream
// offset i is table[i % period]. Any run of up to `span` bytes starting anywhere is one
// contiguous piece of memory, so messages are sent from and checked against it without copying.
// The period is prime, so a lost, repeated or reordered piece shows up as a difference unless it
// is an exact multiple of 65521 bytes long.
class Pattern {
public:
    static constexpr std::size_t period = 65521;

    explicit Pattern(std::size_t span);

    const char* at(std::uint64_t offset) const { return bytes_.data() + offset % period; }

    // The index of the first byte of `data` that differs from the stream at `offset`, if any.
    std::optional<std::size_t> difference(std::uint64_t offset, const char* data,
                                          std::size_t size) const;

private:
    std::vector<char> bytes_;
};

// What all threads share: the options, the path, the payload, the measurement window, the stop
// requests and the first failure.
class BenchRun {
public:
    BenchRun(const BenchOptions& options, std::string path, BenchClock::time_point start);

    bool measured(BenchClock::time_point sent) const {
        return sent >= measure_start && sent < measure_end;
    }
    void record_failure(const Failure& failure);
    std::optional<Failure> failure();

    const BenchOptions& options;
    const std::string path;
    const Pattern pattern;
    const BenchClock::time_point measure_start;
    const BenchClock::time_point measure_end;
    std::atomic<bool> stop_sending{false};    // SIGINT: finish the messages in flight, then end
    std::atomic<bool> abort_requested{false}; // an error, or a second SIGINT: close everything
    std::atomic<std::uint64_t> errors{0};

private:
    std::mutex failure_mutex_;
    std::optional<Failure> first_failure_;
};

// What one thread measured; read by the main thread through a snapshot taken on the worker's own
// thread, or after the thread ended.
struct WorkerFigures {
    std::uint64_t messages = 0;
    std::uint64_t bytes = 0;
    std::uint64_t connections_opened = 0;
    std::uint64_t connections_measured = 0;
    BenchClock::time_point last_completion{};
    LatencyHistogram latency;
};

class Load;

// One thread: an io_context of its own, the loads it drives and what they measured.
class Worker {
public:
    explicit Worker(BenchRun& run);
    ~Worker();

    boost::asio::io_context& context() { return context_; }
    BenchRun& run() { return run_; }
    WorkerFigures& figures() { return figures_; }

    // A pipelined connection over `fd`, or a churn slot when fd is empty.
    void add_load(FileDescriptor fd, std::uint64_t stream_offset,
                  std::optional<std::uint64_t> quota);

    // Runs the loads on this worker's context until every one has ended.
    boost::asio::awaitable<void> drive_loads();

    // A message whose first byte left at `sent` was echoed completely at `now`.
    void message_done(BenchClock::time_point sent, BenchClock::time_point now, bool new_connection);

private:
    void record_unexpected(std::exception_ptr error);

    BenchRun& run_;
    boost::asio::io_context context_{1};
    std::vector<std::unique_ptr<Load>> loads_;
    std::size_t active_ = 0;
    WorkerFigures figures_;
};

} // namespace uds_echo::client
