// uds-echo: parse the command line, find the socket, run the one-shot or streaming form.
#include "uds_echo/client.hpp"
#include "uds_echo/config.hpp"
#include "uds_echo/exit_codes.hpp"
#include "uds_echo/paths.hpp"

#include <boost/program_options.hpp>

#include <unistd.h>

#include <charconv>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

namespace {

namespace po = boost::program_options;
using namespace uds_echo;

// Longer than anyone waits for an echo, short enough that the milliseconds never overflow.
constexpr double max_timeout_seconds = 1e6;

const char* const usage_text =
    R"(Usage: uds-echo [OPTIONS] MESSAGE...   send the words (joined by spaces, plus a newline), print the echo
       uds-echo [OPTIONS] [-]          stream standard input to the daemon and the echo to standard output

Exit status: 0 the echo was identical, 64 usage, 65 the echo differed, 69 no daemon,
75 timeout, 77 permission denied, 71 other OS error.

)";

struct CommandLine {
    std::optional<std::string> socket;
    std::chrono::milliseconds timeout{5000};
    bool quiet = false;
    std::vector<std::string> words;
};

// Decimal seconds, > 0, e.g. "5" or "0.25".
std::chrono::milliseconds parse_timeout(const std::string& text) {
    double seconds = 0;
    const auto* end = text.data() + text.size();
    const auto [stop, error] = std::from_chars(text.data(), end, seconds);
    if (text.empty() || error != std::errc() || stop != end || !std::isfinite(seconds) ||
        seconds <= 0 || seconds > max_timeout_seconds)
        throw Failure(ExitCode::usage, "invalid --timeout '" + text +
                                           "': expected seconds greater than 0, such as 5 or "
                                           "0.5 (see uds-echo --help)");
    return std::chrono::milliseconds(static_cast<long long>(std::ceil(seconds * 1000)));
}

po::options_description visible_options() {
    po::options_description options("Options");
    options.add_options() //
        ("socket,s", po::value<std::string>()->value_name("PATH"),
         "socket path, or @name for an abstract socket") //
        ("timeout,t", po::value<std::string>()->value_name("SEC"),
         "seconds to wait for the connection and for each reply [5]")        //
        ("quiet,q", po::bool_switch(), "do not print the echo of a MESSAGE") //
        ("version,V", po::bool_switch(), "print the version and exit")       //
        ("help,h", po::bool_switch(), "print this help and exit");
    return options;
}

// The parsed command line, or nullopt when --help or --version was answered.
std::optional<CommandLine> parse_command_line(int argc, char* argv[]) {
    auto visible = visible_options();
    po::options_description all;
    all.add(visible);
    all.add_options()("words", po::value<std::vector<std::string>>());
    po::positional_options_description positional;
    positional.add("words", -1);

    po::variables_map values;
    try {
        po::store(po::command_line_parser(argc, argv).options(all).positional(positional).run(),
                  values);
        po::notify(values);
    } catch (const po::error& error) {
        throw Failure(ExitCode::usage, std::string(error.what()) + " (see uds-echo --help)");
    }
    if (values["help"].as<bool>()) {
        std::cout << usage_text << visible;
        return std::nullopt;
    }
    if (values["version"].as<bool>()) {
        std::cout << "uds-echo " << UDS_ECHO_VERSION << '\n';
        return std::nullopt;
    }
    CommandLine command;
    if (values.count("socket"))
        command.socket = values["socket"].as<std::string>();
    if (values.count("timeout"))
        command.timeout = parse_timeout(values["timeout"].as<std::string>());
    command.quiet = values["quiet"].as<bool>();
    if (values.count("words"))
        command.words = values["words"].as<std::vector<std::string>>();
    return command;
}

std::optional<std::string> socket_from_environment() {
    const char* value = std::getenv(socket_env_variable);
    if (value == nullptr || *value == '\0')
        return std::nullopt;
    return value;
}

// SPEC §3 order. The config file is read only when nothing more important names the socket, so
// that a broken system file does not stand in the way of an explicit --socket.
std::vector<std::string> socket_candidates(const CommandLine& command) {
    PathSources sources{command.socket, socket_from_environment(), std::nullopt};
    if (!sources.command_line && !sources.environment)
        sources.config_file = read_socket_from_config_file(system_config_path);
    return client_socket_candidates(sources, current_user());
}

std::string join_words(const std::vector<std::string>& words) {
    std::string message;
    for (const auto& word : words) {
        if (!message.empty())
            message += ' ';
        message += word;
    }
    return message + '\n';
}

int run(int argc, char* argv[]) {
    const auto command = parse_command_line(argc, argv);
    if (!command)
        return to_int(ExitCode::ok);
    const ClientOptions options{socket_candidates(*command), command->timeout, command->quiet};

    // A lone "-", or no words at all, streams standard input (a terminal included, until an
    // interactive line mode exists). Words are sent whatever standard input is.
    const bool stream =
        command->words.empty() || (command->words.size() == 1 && command->words.front() == "-");
    if (stream)
        return to_int(echo_stream(options, STDIN_FILENO, STDOUT_FILENO));
    return to_int(echo_message(options, join_words(command->words), std::cout));
}

} // namespace

int main(int argc, char* argv[]) {
    // Writing the echo to a closed pipe (`uds-echo - < big | head -c1`) must end the run
    // quietly with EPIPE, not kill it: stdout writes do not carry MSG_NOSIGNAL.
    std::signal(SIGPIPE, SIG_IGN);
    try {
        return run(argc, argv);
    } catch (const Failure& failure) {
        std::cerr << "uds-echo: " << failure.what() << '\n';
        return to_int(failure.code());
    } catch (const std::exception& error) {
        std::cerr << "uds-echo: " << error.what() << '\n';
        return to_int(ExitCode::os_error);
    }
}
