#include "common/text.hpp"

#include <array>
#include <cstdio>

namespace uds_echo {

void append_json_string(std::string& out, std::string_view text) {
    out += '"';
    for (const unsigned char c : text) {
        switch (c) {
        case '"':
            out += "\\\"";
            break;
        case '\\':
            out += "\\\\";
            break;
        case '\n':
            out += "\\n";
            break;
        case '\t':
            out += "\\t";
            break;
        default:
            if (c < 0x20) {
                char escaped[8];
                std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
                out += escaped;
            } else {
                out += static_cast<char>(c);
            }
        }
    }
    out += '"';
}

std::string json_string(std::string_view text) {
    std::string quoted;
    append_json_string(quoted, text);
    return quoted;
}

std::string seconds_text(std::chrono::duration<double> seconds) {
    char text[32];
    std::snprintf(text, sizeof text, "%g s", seconds.count());
    return text;
}

std::string latency_text(std::chrono::nanoseconds latency) {
    const auto nanoseconds = static_cast<double>(latency.count());
    char text[32];
    if (nanoseconds < 1e6)
        std::snprintf(text, sizeof text, "%.1f us", nanoseconds / 1e3);
    else if (nanoseconds < 1e9)
        std::snprintf(text, sizeof text, "%.2f ms", nanoseconds / 1e6);
    else
        std::snprintf(text, sizeof text, "%.2f s", nanoseconds / 1e9);
    return text;
}

std::string byte_count_text(std::uint64_t bytes) {
    if (bytes < 1024)
        return std::to_string(bytes) + " B";
    constexpr std::array units{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    auto value = static_cast<double>(bytes) / 1024.0;
    std::size_t unit = 0;
    while (value >= 1024.0 && unit + 1 < units.size()) {
        value /= 1024.0;
        ++unit;
    }
    char text[32];
    std::snprintf(text, sizeof text, "%.1f %s", value, units[unit]);
    return text;
}

std::string rate_text(double per_second) {
    char text[32];
    if (per_second >= 1e6)
        std::snprintf(text, sizeof text, "%.2fM", per_second / 1e6);
    else if (per_second >= 1e4)
        std::snprintf(text, sizeof text, "%.1fk", per_second / 1e3);
    else
        std::snprintf(text, sizeof text, "%.0f", per_second);
    return text;
}

} // namespace uds_echo
