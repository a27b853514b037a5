// The report of `uds-echo bench`, for people and for machines.
#include "client/bench/bench.hpp"

#include "common/text.hpp"

#include <cmath>
#include <cstdio>
#include <ostream>

namespace uds_echo::client {

namespace {

std::string latency_of(std::uint64_t nanoseconds) {
    return latency_text(std::chrono::nanoseconds(nanoseconds));
}

// "%.Nf" of a figure, or null when it was not measured.
std::string json_number(std::optional<double> value, int decimals) {
    if (!value)
        return "null";
    char text[64];
    std::snprintf(text, sizeof text, "%.*f", decimals, *value);
    return text;
}

std::string json_latency(const LatencyHistogram& latency, std::uint64_t nanoseconds) {
    if (latency.count() == 0)
        return "null";
    return json_number(static_cast<double>(nanoseconds) / 1e3, 3);
}

std::string header(const BenchResult& result) {
    const auto& options = result.options;
    char line[256];
    std::snprintf(line, sizeof line, "%s: %s, %u %s%s on %u thread%s, %zu-byte messages",
                  options.churn ? "churn" : "bench", std::string(to_string(options.type)).c_str(),
                  options.connections,
                  options.type == SocketType::datagram ? "socket" : "connection",
                  options.connections == 1 ? "" : "s", options.threads,
                  options.threads == 1 ? "" : "s", options.message_size);
    std::string text = line;
    if (!options.churn)
        text += ", pipeline " + std::to_string(options.pipeline);
    if (result.pipeline_asked)
        text += " (not " + std::to_string(*result.pipeline_asked) +
                ": net.unix.max_dgram_qlen replies at most wait per socket)";
    if (result.seconds) {
        std::snprintf(line, sizeof line, ", %.2f s measured", *result.seconds);
        text += line;
    } else {
        text += ", nothing measured";
    }
    if (result.interrupted)
        text += " (interrupted)";
    return text + '\n';
}

// As redis-benchmark prints it: the latency at which 50 %, 75 %, 87.5 %, ... of the messages
// were done, halving what is left each step until it is less than one message, then the maximum.
void print_distribution(const LatencyHistogram& latency, std::ostream& out) {
    out << "\nlatency distribution (messages done within):\n";
    char line[128];
    const auto row = [&](double fraction, std::uint64_t nanoseconds) {
        std::snprintf(line, sizeof line, "  %8.4f%%  <= %-10s  (%llu messages)\n", fraction * 100.0,
                      latency_of(nanoseconds).c_str(),
                      static_cast<unsigned long long>(latency.count_at_or_below(nanoseconds)));
        out << line;
    };
    row(0.0, latency.min());
    const auto count = static_cast<double>(latency.count());
    for (double left = 0.5; left * count >= 1.0 && left >= 1.0 / 16384; left /= 2) {
        const auto value = latency.percentile(1.0 - left);
        if (value >= latency.max())
            break;
        row(1.0 - left, value);
    }
    row(1.0, latency.max());
}

} // namespace

void print_bench_report(const BenchResult& result, std::ostream& out) {
    out << header(result);
    char line[256];
    const auto per_second = result.messages_per_second();
    if (per_second)
        std::snprintf(line, sizeof line, "messages    %llu  (%.0f msg/s, %.2f MiB/s echoed)\n",
                      static_cast<unsigned long long>(result.messages), *per_second,
                      *result.mebibytes_per_second());
    else
        std::snprintf(line, sizeof line, "messages    %llu\n",
                      static_cast<unsigned long long>(result.messages));
    out << line;
    if (const auto connections = result.connections_per_second()) {
        std::snprintf(line, sizeof line, "connections %llu  (%.0f connections/s)\n",
                      static_cast<unsigned long long>(result.connections_measured), *connections);
        out << line;
    }
    const auto& latency = result.latency;
    if (latency.count() > 0)
        out << "latency     min " << latency_of(latency.min()) << "  mean "
            << latency_text(std::chrono::nanoseconds(std::llround(latency.mean()))) << "  p50 "
            << latency_of(latency.percentile(0.50)) << "  p90 "
            << latency_of(latency.percentile(0.90)) << "  p99 "
            << latency_of(latency.percentile(0.99)) << "  p99.9 "
            << latency_of(latency.percentile(0.999)) << "  max " << latency_of(latency.max())
            << '\n';
    else
        out << "latency     none measured\n";
    if (result.options.type == SocketType::datagram)
        out << "lost        " << result.replies_lost
            << " replies never came (dropped by the daemon or the kernel)\n";
    out << "errors      " << result.errors << '\n';
    if (latency.count() > 0)
        print_distribution(latency, out);
}

void print_bench_json(const BenchResult& result, std::ostream& out) {
    const auto& options = result.options;
    const auto& latency = result.latency;
    std::string json = "{\"mode\":\"";
    json += options.churn ? "churn" : "pipelined";
    json += "\",\"type\":\"" + std::string(to_string(options.type));
    json += "\",\"connections\":" + std::to_string(options.connections);
    json += ",\"threads\":" + std::to_string(options.threads);
    json += ",\"size\":" + std::to_string(options.message_size);
    json += ",\"pipeline\":" + (options.churn ? "null" : std::to_string(options.pipeline));
    json += ",\"messages\":" + std::to_string(result.messages);
    json += ",\"bytes\":" + std::to_string(result.bytes);
    json += ",\"connections_opened\":" + std::to_string(result.connections_opened);
    json += ",\"errors\":" + std::to_string(result.errors);
    json += ",\"replies_lost\":" + (options.type == SocketType::datagram
                                        ? std::to_string(result.replies_lost)
                                        : std::string("null"));
    json += ",\"pipeline_asked\":" +
            (result.pipeline_asked ? std::to_string(*result.pipeline_asked) : std::string("null"));
    json += std::string(",\"interrupted\":") + (result.interrupted ? "true" : "false");
    json += ",\"seconds\":" + json_number(result.seconds, 6);
    json += ",\"messages_per_second\":" + json_number(result.messages_per_second(), 1);
    json += ",\"mib_per_second\":" + json_number(result.mebibytes_per_second(), 3);
    json += ",\"connections_per_second\":" + json_number(result.connections_per_second(), 1);
    json += ",\"latency_us\":{\"min\":" + json_latency(latency, latency.min());
    json += ",\"mean\":" +
            (latency.count() > 0 ? json_number(latency.mean() / 1e3, 3) : std::string("null"));
    json += ",\"p50\":" + json_latency(latency, latency.percentile(0.50));
    json += ",\"p90\":" + json_latency(latency, latency.percentile(0.90));
    json += ",\"p99\":" + json_latency(latency, latency.percentile(0.99));
    json += ",\"p99_9\":" + json_latency(latency, latency.percentile(0.999));
    json += ",\"max\":" + json_latency(latency, latency.max());
    json += "},\"exit_code\":" + std::to_string(to_int(result.exit_code()));
    json += ",\"error\":" + (result.failure ? json_string(result.failure->what()) : "null");
    out << json << "}\n";
}

} // namespace uds_echo::client
