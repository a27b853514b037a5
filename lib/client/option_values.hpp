// The client's option values: seconds with decimals ("0.25"), counts, and sizes with K, M and G
// suffixes. Not the daemon's parsers (common/config_values.hpp), whose values are whole seconds
// and plain numbers written in a config file; each error names the option, exit 64.
#pragma once

#include "common/exit_codes.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

namespace uds_echo::client {

Failure bad_value(const std::string& option, const std::string& text, const std::string& what);

// Decimal seconds, e.g. "5" or "0.25"; zero only when `zero_allowed`.
double parse_seconds(const std::string& text, const std::string& option, bool zero_allowed);

// A whole number from 1 to `max`.
std::uint64_t parse_count(const std::string& text, const std::string& option, std::uint64_t max);

// Bytes for --size, with an optional K, M or G suffix (powers of 1024; "KiB" and "k" are
// accepted too), 1 to 1 GiB.
std::size_t parse_size(const std::string& text);

std::chrono::milliseconds to_milliseconds(double seconds);
std::chrono::nanoseconds to_nanoseconds(double seconds);

} // namespace uds_echo::client
