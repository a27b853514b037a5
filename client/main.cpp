// uds-echo: parse the command line, run the form asked for (one-shot, streaming, interactive,
// ping or bench) and turn its outcome into the exit status.
#include "client/bench/bench.hpp"
#include "client/command_line.hpp"
#include "client/echo.hpp"
#include "client/ping.hpp"
#include "common/exit_codes.hpp"
#include "common/program.hpp"

#include <unistd.h>

#include <csignal>
#include <iostream>
#include <string>
#include <variant>
#include <vector>

namespace {

using namespace uds_echo;
using namespace uds_echo::client;

std::string join_words(const std::vector<std::string>& words) {
    std::string message;
    for (const auto& word : words) {
        if (!message.empty())
            message += ' ';
        message += word;
    }
    return message + '\n';
}

int run_echo(const EchoCommand& command) {
    const auto& options = command.client;
    const auto& words = command.words;
    // Words are sent whatever standard input is; "-" always streams; without either, a terminal
    // gets the line-by-line mode and anything else is streamed.
    if (words.size() == 1 && words.front() == "-")
        return to_int(echo_stream(options, STDIN_FILENO, STDOUT_FILENO));
    if (words.empty() && ::isatty(STDIN_FILENO))
        return to_int(
            echo_lines(options, std::cin, std::cout, options.quiet ? nullptr : &std::cerr));
    if (words.empty())
        return to_int(echo_stream(options, STDIN_FILENO, STDOUT_FILENO));
    return to_int(echo_message(options, join_words(words), std::cout));
}

int run_bench(const BenchCommand& command) {
    const BenchResult result = uds_echo::client::run_bench(command.options, std::cout);
    // A run that never got a connection has nothing to report but its error.
    const bool ran = result.connections_opened > 0 || !result.failure;
    if (command.json)
        print_bench_json(result, std::cout);
    else if (ran)
        print_bench_report(result, std::cout);
    std::cout.flush();
    if (result.failure)
        std::cerr << "uds-echo: bench: " << result.failure->what() << '\n';
    return to_int(result.exit_code());
}

int run(const std::vector<std::string>& args) {
    ClientCommand command;
    try {
        command = parse_client_command_line(args, ::isatty(STDOUT_FILENO) == 1);
    } catch (const Failure& failure) {
        // bench --json answers in JSON whatever happens, a usage error included.
        if (asks_for_bench_json(args)) {
            BenchResult result;
            result.failure = failure;
            print_bench_json(result, std::cout);
        }
        throw;
    }
    if (const auto* answer = std::get_if<TextAnswer>(&command)) {
        std::cout << answer->text;
        return 0;
    }
    if (const auto* echo = std::get_if<EchoCommand>(&command))
        return run_echo(*echo);
    if (const auto* ping = std::get_if<PingOptions>(&command))
        return to_int(run_ping(*ping, std::cout));
    return run_bench(std::get<BenchCommand>(command));
}

} // namespace

int main(int argc, char* argv[]) {
    // Writing the echo to a closed pipe (`uds-echo - < big | head -c1`) must end the run
    // quietly with EPIPE, not kill it: stdout writes do not carry MSG_NOSIGNAL.
    std::signal(SIGPIPE, SIG_IGN);
    const std::vector<std::string> args(argv + 1, argv + argc);
    return run_program("uds-echo", [&] { return run(args); });
}
