// Text for people and for machines, shared by the daemon and the client: JSON strings, durations
// and byte counts worded one way everywhere.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace uds_echo {

// Appends `text` as a JSON string, quotes included: `"`, `\` and control characters escaped.
void append_json_string(std::string& out, std::string_view text);
std::string json_string(std::string_view text);

// A duration as a person typed it: "5 s", "0.25 s" (up to six significant digits).
std::string seconds_text(std::chrono::duration<double> seconds);

// A latency, or any short duration, in the unit that suits it: "36.2 us", "1.25 ms", "2.00 s".
std::string latency_text(std::chrono::nanoseconds latency);

// Bytes in binary units, as ls -h and systemctl status print them: "512 B", "4.0 KiB", "2.5 GiB".
std::string byte_count_text(std::uint64_t bytes);

// A count per second, short: "950", "12.3k", "1.25M".
std::string rate_text(double per_second);

} // namespace uds_echo
