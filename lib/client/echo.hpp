// The echo forms of uds-echo: one message, a stream, and lines typed on a terminal.
#pragma once

#include "client/connect.hpp"
#include "common/exit_codes.hpp"

#include <iosfwd>
#include <string>

namespace uds_echo::client {

// One-shot form: sends `message`, reads the same number of bytes back, writes them to `out`
// (unless quiet). Returns ok if identical; throws Failure(data_error) naming the first differing
// byte offset (or how many bytes came back before the daemon closed), and Failure for connection
// errors and timeouts (see connect_to_daemon()).
ExitCode echo_message(const ClientOptions& options, const std::string& message, std::ostream& out);

// Streaming form: copies `input_fd` to the daemon and the echo to `output_fd` concurrently,
// half-closes at input EOF, returns when the daemon closes. ok if every byte came back identical;
// a difference throws Failure(data_error) as above. A closed output (EPIPE) ends the run early
// with ok. Throws Failure as above.
ExitCode echo_stream(const ClientOptions& options, int input_fd, int output_fd);

// Interactive form: reads lines from `in`, sends each (with its newline), prints the echo, until
// end of input. When `greeting` is given, it first says there where it is connected and how to
// leave. Throws Failure like the one-shot form.
ExitCode echo_lines(const ClientOptions& options, std::istream& in, std::ostream& out,
                    std::ostream* greeting);

} // namespace uds_echo::client
