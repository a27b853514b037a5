// `uds-echo bench`: a load benchmark over many asynchronous connections, and its report.
#pragma once

#include "client/bench/latency_histogram.hpp"
#include "common/exit_codes.hpp"
#include "common/socket_type.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

namespace uds_echo::client {

struct BenchOptions {
    // How the run shows that it is alive: nothing, one line refreshed in place each second (a
    // terminal), or a line every few seconds (a log file, a CI job).
    enum class Progress { none, terminal, lines };

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
    SocketType type = SocketType::stream;  // --type
    Progress progress = Progress::none;
};

struct BenchResult {
    BenchOptions options;
    std::uint64_t messages = 0; // measured messages whose echo came back complete and right
    std::uint64_t bytes = 0;    // echoed bytes of those messages (one direction)
    std::uint64_t connections_opened = 0;   // every connection the load opened, in any mode
    std::uint64_t connections_measured = 0; // churn: the connections of measured messages
    std::uint64_t errors = 0;               // connections that failed
    // Datagrams: measured messages whose reply never came (the daemon drops a reply that would
    // block). Each is known lost when a later reply came first, or after the timeout.
    std::uint64_t replies_lost = 0;
    // Datagrams: the --pipeline asked for when it was lowered to the receive queue's limit.
    std::optional<unsigned> pipeline_asked;
    std::optional<double> seconds;  // the measurement's length; none if nothing came back
    LatencyHistogram latency;       // per message, first byte sent to last byte received
    std::optional<Failure> failure; // the first error, which ended the run
    bool interrupted = false;       // ended early by SIGINT or SIGTERM

    std::optional<double> messages_per_second() const;
    std::optional<double> mebibytes_per_second() const;
    std::optional<double> connections_per_second() const; // churn only
    ExitCode exit_code() const { return failure ? failure->code() : ExitCode::ok; }
};

// Connects, runs the load on options.threads threads until the duration passes, the messages
// are done, SIGINT/SIGTERM arrives or an error happens. Every error, a daemon that cannot be
// reached included, is returned in the result, not thrown: the report is printed either way.
// `progress_out` gets the progress display that options.progress asks for.
BenchResult run_bench(const BenchOptions& options, std::ostream& progress_out);

// The report for people: the figures, then the latency distribution.
void print_bench_report(const BenchResult& result, std::ostream& out);
// Exactly one JSON object on one line; null for what was not measured.
void print_bench_json(const BenchResult& result, std::ostream& out);

} // namespace uds_echo::client
