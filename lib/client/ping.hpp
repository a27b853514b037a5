// `uds-echo ping`: round trips on one connection, timed and summarised like ping(8).
#pragma once

#include "client/connect.hpp"
#include "common/exit_codes.hpp"

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <optional>

namespace uds_echo::client {

struct PingOptions {
    ClientOptions client;
    std::optional<std::uint64_t> count; // stop after this many; none: until SIGINT or SIGTERM
    std::chrono::nanoseconds interval{std::chrono::seconds(1)};
    std::size_t size = 64;
};

// Pings until the count is reached or SIGINT/SIGTERM arrives, printing a line per round trip and
// the summary to `out`. A failed round trip (timeout, lost daemon, wrong echo) is printed and
// counted as lost, and the next one reconnects. Throws Failure only when the daemon cannot be
// reached at the start. Returns ok when every ping came back, else the code of the first failure.
ExitCode run_ping(const PingOptions& options, std::ostream& out);

} // namespace uds_echo::client
