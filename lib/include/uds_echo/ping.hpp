// `uds-echo ping` and the interactive line mode (SPEC §5): blocking round trips on one
// connection, each with a deadline.
#pragma once

#include "uds_echo/client.hpp"
#include "uds_echo/exit_codes.hpp"

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>

namespace uds_echo {

// The path of the socket a connected descriptor is connected to ("@name" for an abstract name),
// empty if the kernel does not say.
std::string peer_socket_path(int fd);

// A connection to the daemon for request-and-echo exchanges. Every wait (to send, for the echo)
// is bounded by the timeout.
class EchoConnection {
public:
    // Connects like the one-shot form (throws Failure with SPEC §5's codes).
    explicit EchoConnection(const ClientOptions& options);
    ~EchoConnection();
    EchoConnection(const EchoConnection&) = delete;
    EchoConnection& operator=(const EchoConnection&) = delete;

    // The socket this connection reached.
    const std::string& path() const { return path_; }

    enum class Outcome { echoed, interrupted };

    // Sends `data` and reads as many bytes back into `echo`, concurrently (any size works). Returns
    // interrupted as soon as `interrupt_fd` (when >= 0) turns readable. Throws Failure: 75 when
    // the daemon sends nothing for the timeout, 65 when it closes before the whole echo came back
    // or the echo differs, 71 on other errors.
    Outcome round_trip(std::string_view data, std::string& echo, int interrupt_fd = -1);

private:
    int fd_;
    std::chrono::milliseconds timeout_;
    std::string path_;
};

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

// The interactive form: reads lines from `in`, sends each (with its newline), prints the echo,
// until end of input. Throws Failure like the one-shot form.
ExitCode echo_lines(const ClientOptions& options, std::istream& in, std::ostream& out);

} // namespace uds_echo
