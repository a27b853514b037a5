#include "client/option_values.hpp"

#include <charconv>
#include <cmath>

namespace uds_echo::client {

namespace {

// Longer than anyone waits for an echo, short enough that the milliseconds never overflow.
constexpr double max_seconds = 1e6;
// The largest --size: the bench keeps one pattern of this size plus 64 KiB in memory.
constexpr std::size_t max_message_size = std::size_t{1} << 30;

} // namespace

Failure bad_value(const std::string& option, const std::string& text, const std::string& what) {
    return Failure(ExitCode::usage, option + ": \"" + text + "\" " + what);
}

double parse_seconds(const std::string& text, const std::string& option, bool zero_allowed) {
    double seconds = 0;
    const auto* end = text.data() + text.size();
    const auto [stop, error] = std::from_chars(text.data(), end, seconds);
    if (text.empty() || error != std::errc() || stop != end || !std::isfinite(seconds) ||
        seconds < 0 || (seconds == 0 && !zero_allowed) || seconds > max_seconds)
        throw bad_value(option, text,
                        std::string("is not a number of seconds (expected ") +
                            (zero_allowed ? "0 or more" : "more than 0") + ", such as 5 or 0.5)");
    return seconds;
}

std::uint64_t parse_count(const std::string& text, const std::string& option, std::uint64_t max) {
    std::uint64_t value = 0;
    const auto* end = text.data() + text.size();
    const auto [stop, error] = std::from_chars(text.data(), end, value);
    if (text.empty() || error != std::errc() || stop != end || value < 1 || value > max)
        throw bad_value(option, text,
                        max == UINT64_MAX
                            ? "is not a count (expected 1 or more)"
                            : "is not a count (expected 1 to " + std::to_string(max) + ")");
    return value;
}

std::size_t parse_size(const std::string& text) {
    std::uint64_t value = 0;
    const auto* end = text.data() + text.size();
    const auto [stop, error] = std::from_chars(text.data(), end, value);
    const std::string suffix(stop, end);
    std::uint64_t unit = 0;
    if (suffix.empty())
        unit = 1;
    else if (suffix == "K" || suffix == "k" || suffix == "KiB")
        unit = 1024;
    else if (suffix == "M" || suffix == "MiB")
        unit = 1024 * 1024;
    else if (suffix == "G" || suffix == "GiB")
        unit = 1024 * 1024 * 1024;
    if (text.empty() || error != std::errc() || unit == 0 || value == 0 ||
        value > max_message_size / unit)
        throw bad_value("--size", text,
                        "is not a size (expected 1 to 1G bytes, such as 64, 4K "
                        "or 1M)");
    return static_cast<std::size_t>(value * unit);
}

std::chrono::milliseconds to_milliseconds(double seconds) {
    return std::chrono::milliseconds(static_cast<long long>(std::ceil(seconds * 1000)));
}

std::chrono::nanoseconds to_nanoseconds(double seconds) {
    return std::chrono::nanoseconds(static_cast<long long>(std::llround(seconds * 1e9)));
}

} // namespace uds_echo::client
