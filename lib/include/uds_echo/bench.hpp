// `uds-echo bench`: a load benchmark over many asynchronous connections (SPEC §5).
#pragma once

#include "uds_echo/exit_codes.hpp"

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

namespace uds_echo {

// Latencies in nanoseconds, counted in log-linear buckets: every power of two is split into
// 2^sub_bucket_bits equal buckets, so a value is known to within 1/128 of itself (0.8 %) in a
// fixed array, whatever the number of samples. Values up to 2^max_exponent ns (~18 min) are
// counted; larger ones land in the last bucket. The maximum is kept exactly.
class LatencyHistogram {
public:
    static constexpr unsigned sub_bucket_bits = 7;
    static constexpr unsigned max_exponent = 40;

    void record(std::uint64_t nanoseconds);
    void merge(const LatencyHistogram& other);

    std::uint64_t count() const { return count_; }
    std::uint64_t max() const { return max_; }
    std::uint64_t min() const { return count_ == 0 ? 0 : min_; }
    double mean() const;
    // The value below which `fraction` (0..1) of the samples lie, as the middle of its bucket
    // (but never above the maximum); 0 without samples.
    std::uint64_t percentile(double fraction) const;

    // Exposed for tests: the bucket of a value and the range of values a bucket holds.
    static std::size_t bucket_of(std::uint64_t value);
    static std::uint64_t bucket_low(std::size_t bucket);
    static std::uint64_t bucket_high(std::size_t bucket);

private:
    static constexpr std::size_t sub_buckets = std::size_t{1} << sub_bucket_bits;
    static constexpr std::size_t bucket_count = sub_buckets * (max_exponent - sub_bucket_bits + 2);

    std::array<std::uint64_t, bucket_count> counts_{};
    std::uint64_t count_ = 0;
    std::uint64_t max_ = 0;
    std::uint64_t min_ = UINT64_MAX;
    long double sum_ = 0;
};

struct BenchOptions {
    std::vector<std::string> socket_candidates; // as for the other forms; the first that answers
    std::chrono::milliseconds timeout{5000};    // connect, and the longest wait for any echo
    unsigned connections = 10;                  // -c
    std::size_t message_size = 64;              // --size
    unsigned pipeline = 1;                      // --pipeline: messages in flight per connection
    std::chrono::nanoseconds duration{std::chrono::seconds(5)}; // -d, when messages is unset
    std::optional<std::uint64_t> messages; // -n: this many measured messages in total
    std::chrono::nanoseconds warmup{0};    // --warmup: run, but do not measure, first
    unsigned threads = 1;                  // --threads: one io_context each
    bool churn = false;                    // --churn: every message on a new connection
    bool progress = false;                 // a one-line display on stdout, refreshed each second
};

struct BenchResult {
    BenchOptions options;
    std::uint64_t messages = 0;     // measured messages whose echo came back complete and right
    std::uint64_t bytes = 0;        // echoed bytes of those messages (one direction)
    std::uint64_t connections = 0;  // connections opened during the measurement (churn)
    std::uint64_t errors = 0;       // connections that failed
    double seconds = 0;             // length of the measurement
    LatencyHistogram latency;       // per message, first byte sent to last byte received
    std::optional<Failure> failure; // the first error, which ended the run
    bool interrupted = false;       // ended early by SIGINT or SIGTERM

    double messages_per_second() const { return seconds > 0 ? messages / seconds : 0; }
    double mebibytes_per_second() const {
        return seconds > 0 ? static_cast<double>(bytes) / (1024.0 * 1024.0) / seconds : 0;
    }
    double connections_per_second() const { return seconds > 0 ? connections / seconds : 0; }
    ExitCode exit_code() const { return failure ? failure->code() : ExitCode::ok; }
};

// Connects (throwing Failure like the other forms when no connection can be made), runs the load
// on options.threads threads until the duration passes, the messages are done, SIGINT/SIGTERM
// arrives or an error happens. Errors during the run are returned in the result, not thrown: the
// report is printed either way. `progress_out` gets the progress line when options.progress.
BenchResult run_bench(const BenchOptions& options, std::ostream& progress_out);

void print_bench_report(const BenchResult& result, std::ostream& out);
void print_bench_json(const BenchResult& result, std::ostream& out);

} // namespace uds_echo
