// The inside of `uds-echo bench`: what all threads share, one thread's event loop, and the two
// kinds of load it drives (persistent pipelined connections, and churn).
//
// A worker thread runs an epoll loop of its own rather than an Asio io_context: with Asio each
// message cost about 5,600 instructions and two recv() calls (a speculative one that finds
// nothing, then the one after epoll), against about 250 instructions and one recv() in a plain
// epoll loop, and the load generator, not the server, set the pace (docs/architecture.md, "The
// client's cost per message").
#pragma once

#include "client/bench/bench.hpp"
#include "common/file_descriptor.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
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

class Worker;

// What all threads share: the options, the path, the payload, the measurement window, the stop
// requests, the first failure and the workers to stop.
class BenchRun {
public:
    BenchRun(const BenchOptions& options, std::string path, BenchClock::time_point start);

    bool measured(BenchClock::time_point sent) const {
        return sent >= measure_start && sent < measure_end;
    }
    // Any thread: the first failure is kept and ends the run (abort()).
    void record_failure(const Failure& failure);
    std::optional<Failure> failure();

    // Any thread, once the workers exist: every worker closes all its loads at once.
    void abort();
    void enlist(Worker& worker) { workers_.push_back(&worker); }

    const BenchOptions& options;
    const std::string path;
    const Pattern pattern;
    const BenchClock::time_point measure_start;
    const BenchClock::time_point measure_end;
    std::atomic<bool> stop_sending{false}; // SIGINT: finish the messages in flight, then end
    std::atomic<std::uint64_t> errors{0};

private:
    std::mutex failure_mutex_;
    std::optional<Failure> first_failure_;
    std::vector<Worker*> workers_; // fixed before the threads start
};

// What one thread measured.
struct WorkerFigures {
    std::uint64_t messages = 0;
    std::uint64_t bytes = 0;
    std::uint64_t connections_opened = 0;
    std::uint64_t connections_measured = 0;
    std::uint64_t replies_lost = 0;
    BenchClock::time_point last_completion{};
    LatencyHistogram latency;
};

class Load;

// One thread: an epoll set of its own, the loads it drives and what they measured.
class Worker {
public:
    explicit Worker(BenchRun& run);
    ~Worker();
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    BenchRun& run() { return run_; }

    // Before run(): a pipelined connection over `fd`, or a churn slot when fd is empty.
    void add_load(FileDescriptor fd, std::uint64_t stream_offset,
                  std::optional<std::uint64_t> quota);

    // On the worker's thread: runs the loads until every one has ended.
    void run_loads();

    // Any thread: ends every load at once (the loop wakes through an eventfd).
    void abort();

    // Any thread: the figures as of at most one tick ago (all of them once run_loads() ended).
    WorkerFigures published_figures();
    // After run_loads() returned, or on the worker's own thread.
    WorkerFigures& figures() { return figures_; }

    // For the loads, on the worker's thread.
    // `count` messages sent at `sent` were echoed completely at `now`.
    void messages_done(BenchClock::time_point sent, BenchClock::time_point now, std::size_t count,
                       bool new_connection);
    // `count` datagrams sent at `sent` will never have a reply.
    void replies_lost(BenchClock::time_point sent, std::size_t count);
    void watch(int fd, Load* load, bool output, bool added);
    void wake_by(BenchClock::time_point when);
    void load_ended() { --active_; }
    char* read_buffer() { return read_buffer_.data(); }
    std::size_t read_buffer_size() const { return read_buffer_.size(); }

private:
    void publish();
    void tick(BenchClock::time_point now);

    BenchRun& run_;
    FileDescriptor epoll_;
    FileDescriptor abort_event_;
    std::vector<std::unique_ptr<Load>> loads_;
    std::size_t active_ = 0;
    std::vector<char> read_buffer_; // one for all loads: each read is checked before the next
    std::optional<BenchClock::time_point> wake_by_;
    WorkerFigures figures_;
    std::mutex published_mutex_;
    WorkerFigures published_;
};

} // namespace uds_echo::client
