// The command line of uds-echo: its forms, their options and their help, parsed into what to run.
// One table per form lists its options; the parser, the help and the search for the subcommand
// word are all derived from those tables.
#pragma once

#include "client/bench/bench.hpp"
#include "client/connect.hpp"
#include "client/ping.hpp"

#include <string>
#include <variant>
#include <vector>

namespace uds_echo::client {

// Text to print on standard output before exiting 0: a help or the version.
struct TextAnswer {
    std::string text;
};

// The echo forms: MESSAGE words (one-shot), "-" (stream), or nothing (stream, or lines on a
// terminal).
struct EchoCommand {
    ClientOptions client;
    std::vector<std::string> words;
};

struct BenchCommand {
    BenchOptions options;
    bool json = false;
};

using ClientCommand = std::variant<TextAnswer, EchoCommand, PingOptions, BenchCommand>;

// Parses the arguments (without the program name). The socket candidates come from --socket,
// then $UDS_ECHO_SOCKET, then the system config file, then the defaults. Throws Failure(usage)
// with a one-line message that names the offending word, worded as uds-echod words its own.
// `stdout_is_terminal` decides the bench's progress display.
ClientCommand parse_client_command_line(const std::vector<std::string>& args,
                                        bool stdout_is_terminal);

// True when the arguments ask for `bench --json`: then even a usage error is a JSON object.
bool asks_for_bench_json(const std::vector<std::string>& args);

} // namespace uds_echo::client
