// Client operations of uds-echo (SPEC §5).
#pragma once

#include "uds_echo/exit_codes.hpp"
#include "uds_echo/paths.hpp"

#include <chrono>
#include <iosfwd>
#include <string>
#include <vector>

namespace uds_echo {

struct ClientOptions {
    std::vector<std::string> socket_candidates; // tried in order, see client_socket_candidates()
    std::chrono::milliseconds timeout{5000};    // connect, and each wait for a reply
    bool quiet = false;
};

// Connects to the first candidate that answers and returns the connected descriptor (blocking
// mode, close-on-exec). Retries while the daemon's listen backlog is full until the timeout.
// Throws Failure with SPEC §5's code and message: 69 when no daemon is there (naming every path
// tried, with the `systemctl start uds-echo.socket` hint for a missing socket, or the stale file
// for a refused connection), 77 naming the socket's owner, group and mode, 75 on timeout, 71 for
// any other error.
int connect_to_daemon(const ClientOptions& options);

// One-shot form: sends `message`, reads the same number of bytes back, writes them to `out`.
// Returns ok if identical; throws Failure(data_error) naming the first differing byte offset (or
// how many bytes came back before the daemon closed), and Failure for connection errors and
// timeouts.
ExitCode echo_message(const ClientOptions& options, const std::string& message, std::ostream& out);

// Streaming form: copies `input_fd` to the daemon and the echo to `output_fd` concurrently,
// half-closes at input EOF, returns when the daemon closes. ok if every byte came back identical;
// a difference throws Failure(data_error) as above. A closed output (EPIPE) ends the run early
// with ok. Throws Failure as above.
ExitCode echo_stream(const ClientOptions& options, int input_fd, int output_fd);

} // namespace uds_echo
