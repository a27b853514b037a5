// uds-echo: parse the command line, find the socket, run the form asked for: one-shot, streaming,
// interactive, ping or bench.
#include "uds_echo/bench.hpp"
#include "uds_echo/client.hpp"
#include "uds_echo/config.hpp"
#include "uds_echo/exit_codes.hpp"
#include "uds_echo/paths.hpp"
#include "uds_echo/ping.hpp"

#include <boost/program_options.hpp>

#include <unistd.h>

#include <charconv>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace {

namespace po = boost::program_options;
using namespace uds_echo;

// Longer than anyone waits for an echo, short enough that the milliseconds never overflow.
constexpr double max_seconds = 1e6;
// The largest --size: the bench keeps one pattern of this size plus 64 KiB in memory.
constexpr std::size_t max_message_size = std::size_t{1} << 30;

const char* const usage_text =
    R"(Usage: uds-echo [OPTIONS] MESSAGE...   send the words (joined by spaces, plus a newline), print the echo
       uds-echo [OPTIONS] [-]          stream standard input to the daemon and the echo to standard output;
                                       on a terminal (and without -), echo line by line until end of input
       uds-echo [OPTIONS] ping [-c COUNT] [-i INTERVAL] [--size N]
                                       time round trips like ping(8); see uds-echo ping --help
       uds-echo [OPTIONS] bench [-c CONNS] [--size N] [--pipeline DEPTH] [-d SEC | -n MESSAGES] ...
                                       load benchmark; see uds-echo bench --help

To send the word "ping" or "bench" as a message, put -- before it: uds-echo -- ping

Exit status: 0 ok, 64 usage, 65 an echo differed or was cut short, 69 no daemon,
75 timeout, 77 permission denied, 71 other OS error. See uds-echo(1).

)";

const char* const ping_usage_text =
    R"(Usage: uds-echo ping [-c COUNT] [-i INTERVAL] [--size N] [OPTIONS]

Sends a message of N bytes, waits for its echo and prints the round-trip time, once per INTERVAL,
until COUNT round trips or Ctrl-C; then prints the summary (sent, received, loss, min/avg/max/mdev).
A round trip that fails (no echo within --timeout, daemon gone, echo differs) is printed and counted
as lost, and the next one reconnects.

Exit status: 0 every echo came back; else the code of the first failure (65 differed or cut short,
69 no daemon, 75 timeout); 64 usage.

)";

const char* const bench_usage_text =
    R"(Usage: uds-echo bench [-c CONNS] [--size N] [--pipeline DEPTH] [-d SEC | -n MESSAGES]
                     [--warmup SEC] [--threads T] [--churn] [--json] [OPTIONS]

Opens CONNS connections spread over T threads (one event loop each), keeps DEPTH messages of N bytes
in flight on each, and checks every echoed byte. Reports messages/s, MiB/s, the latency of a message
(first byte sent to last byte received) at p50/p90/p99/p99.9/max, and errors. A progress line is
refreshed each second when standard output is a terminal. Ctrl-C ends the run early with the report.
With --churn every message uses a new connection (connect, echo, close) and connections/s is reported.

Exit status: 0 no error; 65 an echo differed or a connection was cut; 69 no daemon; 75 no echo
within --timeout; 71 other OS error; 64 usage.

)";

enum class Command { echo, ping, bench };

struct Common {
    std::optional<std::string> socket;
    std::chrono::milliseconds timeout{5000};
    bool quiet = false;
};

Failure usage_error(const std::string& message, const char* command = nullptr) {
    const std::string help =
        command ? std::string("uds-echo ") + command + " --help" : std::string("uds-echo --help");
    return Failure(ExitCode::usage, message + " (see " + help + ")");
}

// Decimal seconds, e.g. "5" or "0.25"; zero only when `zero_allowed`.
double parse_seconds(const std::string& text, const std::string& option, bool zero_allowed,
                     const char* command) {
    double seconds = 0;
    const auto* end = text.data() + text.size();
    const auto [stop, error] = std::from_chars(text.data(), end, seconds);
    if (text.empty() || error != std::errc() || stop != end || !std::isfinite(seconds) ||
        seconds < 0 || (seconds == 0 && !zero_allowed) || seconds > max_seconds)
        throw usage_error("invalid " + option + " '" + text + "': expected seconds " +
                              (zero_allowed ? "(0 or more)" : "greater than 0") +
                              ", such as 5 or 0.5",
                          command);
    return seconds;
}

std::chrono::milliseconds to_milliseconds(double seconds) {
    return std::chrono::milliseconds(static_cast<long long>(std::ceil(seconds * 1000)));
}

std::chrono::nanoseconds to_nanoseconds(double seconds) {
    return std::chrono::nanoseconds(static_cast<long long>(std::llround(seconds * 1e9)));
}

std::uint64_t parse_count(const std::string& text, const std::string& option, std::uint64_t min,
                          std::uint64_t max, const char* command) {
    std::uint64_t value = 0;
    const auto* end = text.data() + text.size();
    const auto [stop, error] = std::from_chars(text.data(), end, value);
    if (text.empty() || error != std::errc() || stop != end || value < min || value > max)
        throw usage_error("invalid " + option + " '" + text + "': expected a whole number from " +
                              std::to_string(min) + " to " + std::to_string(max),
                          command);
    return value;
}

// Bytes, with an optional K, M or G suffix (powers of 1024; "KiB" and "k" are accepted too).
std::size_t parse_size(const std::string& text, const char* command) {
    std::uint64_t value = 0;
    const auto* end = text.data() + text.size();
    const auto [stop, error] = std::from_chars(text.data(), end, value);
    std::string suffix(stop, end);
    std::uint64_t unit = 1;
    if (suffix == "K" || suffix == "k" || suffix == "KiB")
        unit = 1024;
    else if (suffix == "M" || suffix == "MiB")
        unit = 1024 * 1024;
    else if (suffix == "G" || suffix == "GiB")
        unit = 1024 * 1024 * 1024;
    else if (!suffix.empty())
        unit = 0;
    if (text.empty() || error != std::errc() || unit == 0 || value == 0 ||
        value > max_message_size / unit)
        throw usage_error("invalid --size '" + text +
                              "': expected bytes from 1 to 1G, such as "
                              "64, 4K or 1M",
                          command);
    return static_cast<std::size_t>(value * unit);
}

// ---- finding the subcommand ----

// Options of any form that take a value: the scan for the subcommand word must skip the value.
const std::set<std::string> long_options_with_values = {
    "socket",   "timeout",  "count",    "interval", "size",   "connections",
    "pipeline", "duration", "messages", "warmup",   "threads"};
const std::string short_options_with_values = "stcidn";

// The first word that is neither an option nor an option's value, if it names a subcommand;
// returns its index, or 0 for the plain echo forms.
int find_subcommand(int argc, char* argv[], Command& command) {
    command = Command::echo;
    for (int i = 1; i < argc; ++i) {
        const std::string argument = argv[i];
        if (argument == "--")
            return 0;
        if (argument.rfind("--", 0) == 0) {
            if (argument.find('=') == std::string::npos &&
                long_options_with_values.count(argument.substr(2)) != 0)
                ++i;
            continue;
        }
        if (argument.size() > 1 && argument[0] == '-') {
            // A cluster like -qs PATH: the first letter that takes a value takes the rest of
            // the word, or the next word when it is the last letter.
            for (std::size_t k = 1; k < argument.size(); ++k)
                if (short_options_with_values.find(argument[k]) != std::string::npos) {
                    if (k + 1 == argument.size())
                        ++i;
                    break;
                }
            continue;
        }
        if (argument == "ping")
            command = Command::ping;
        else if (argument == "bench")
            command = Command::bench;
        else
            return 0;
        return i;
    }
    return 0;
}

// ---- option descriptions ----

po::options_description common_options() {
    po::options_description options("Common options (before or after the subcommand)");
    options.add_options() //
        ("socket,s", po::value<std::string>()->value_name("PATH"),
         "socket path, or @name for an abstract socket") //
        ("timeout,t", po::value<std::string>()->value_name("SEC"),
         "seconds to wait for the connection and for each reply [5]") //
        ("quiet,q", po::bool_switch(),
         "do not print the echo of a MESSAGE; ping: only the summary") //
        ("version,V", po::bool_switch(), "print the version and exit") //
        ("help,h", po::bool_switch(), "print this help and exit");
    return options;
}

po::options_description ping_options() {
    po::options_description options("Ping options");
    options.add_options() //
        ("count,c", po::value<std::string>()->value_name("COUNT"),
         "stop after COUNT round trips [until Ctrl-C]") //
        ("interval,i", po::value<std::string>()->value_name("SEC"),
         "seconds between round trips, 0 for back to back [1]") //
        ("size", po::value<std::string>()->value_name("N"),
         "bytes per message, K/M/G suffixes allowed [64]");
    return options;
}

po::options_description bench_options() {
    po::options_description options("Bench options");
    options.add_options() //
        ("connections,c", po::value<std::string>()->value_name("CONNS"),
         "concurrent connections [10]") //
        ("size", po::value<std::string>()->value_name("N"),
         "bytes per message, K/M/G suffixes allowed [64]") //
        ("pipeline", po::value<std::string>()->value_name("DEPTH"),
         "messages in flight per connection [1]") //
        ("duration,d", po::value<std::string>()->value_name("SEC"),
         "measure for SEC seconds [5]") //
        ("messages,n", po::value<std::string>()->value_name("MESSAGES"),
         "measure exactly MESSAGES messages in total instead") //
        ("warmup", po::value<std::string>()->value_name("SEC"),
         "run unmeasured for SEC seconds first [0]") //
        ("threads", po::value<std::string>()->value_name("T"),
         "client threads, one event loop each [1]") //
        ("churn", po::bool_switch(),
         "a new connection per message (connect, echo, close); reports connections/s") //
        ("json", po::bool_switch(), "print the result as one JSON object");
    return options;
}

// ---- the forms ----

std::optional<std::string> socket_from_environment() {
    const char* value = std::getenv(socket_env_variable);
    if (value == nullptr || *value == '\0')
        return std::nullopt;
    return value;
}

// SPEC §3 order. The config file is read only when nothing more important names the socket, so
// that a broken system file does not stand in the way of an explicit --socket.
std::vector<std::string> socket_candidates(const Common& common) {
    PathSources sources{common.socket, socket_from_environment(), std::nullopt};
    if (!sources.command_line && !sources.environment)
        sources.config_file = read_socket_from_config_file(system_config_path);
    return client_socket_candidates(sources, current_user());
}

ClientOptions client_options(const Common& common) {
    return ClientOptions{socket_candidates(common), common.timeout, common.quiet};
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

// Parses the arguments (the subcommand word removed) against `description`; nullopt when --help
// or --version was answered.
std::optional<po::variables_map> parse(const std::vector<std::string>& arguments,
                                       const po::options_description& description,
                                       const po::positional_options_description& positional,
                                       const char* help_text, const char* command) {
    po::variables_map values;
    try {
        po::store(
            po::command_line_parser(arguments).options(description).positional(positional).run(),
            values);
        po::notify(values);
    } catch (const po::error& error) {
        throw usage_error(error.what(), command);
    }
    if (values["help"].as<bool>()) {
        std::cout << help_text << description;
        return std::nullopt;
    }
    if (values["version"].as<bool>()) {
        std::cout << "uds-echo " << UDS_ECHO_VERSION << '\n';
        return std::nullopt;
    }
    return values;
}

Common common_values(const po::variables_map& values, const char* command = nullptr) {
    Common common;
    if (values.count("socket"))
        common.socket = values["socket"].as<std::string>();
    if (values.count("timeout"))
        common.timeout = to_milliseconds(
            parse_seconds(values["timeout"].as<std::string>(), "--timeout", false, command));
    common.quiet = values["quiet"].as<bool>();
    return common;
}

std::optional<std::string> text_of(const po::variables_map& values, const char* name) {
    if (!values.count(name))
        return std::nullopt;
    return values[name].as<std::string>();
}

int run_echo(const std::vector<std::string>& arguments) {
    po::options_description description;
    description.add(common_options());
    po::options_description hidden;
    hidden.add_options()("words", po::value<std::vector<std::string>>());
    po::options_description all;
    all.add(description).add(hidden);
    po::positional_options_description positional;
    positional.add("words", -1);
    po::variables_map values;
    try {
        po::store(po::command_line_parser(arguments).options(all).positional(positional).run(),
                  values);
        po::notify(values);
    } catch (const po::error& error) {
        throw usage_error(error.what());
    }
    if (values["help"].as<bool>()) {
        std::cout << usage_text << description;
        return 0;
    }
    if (values["version"].as<bool>()) {
        std::cout << "uds-echo " << UDS_ECHO_VERSION << '\n';
        return 0;
    }
    const Common common = common_values(values);
    std::vector<std::string> words;
    if (values.count("words"))
        words = values["words"].as<std::vector<std::string>>();
    const ClientOptions options = client_options(common);
    // Words are sent whatever standard input is; "-" always streams; without either, a terminal
    // gets the line-by-line mode and anything else is streamed.
    if (words.size() == 1 && words.front() == "-")
        return to_int(echo_stream(options, STDIN_FILENO, STDOUT_FILENO));
    if (words.empty() && ::isatty(STDIN_FILENO))
        return to_int(echo_lines(options, std::cin, std::cout));
    if (words.empty())
        return to_int(echo_stream(options, STDIN_FILENO, STDOUT_FILENO));
    return to_int(echo_message(options, join_words(words), std::cout));
}

int run_ping_command(const std::vector<std::string>& arguments) {
    po::options_description description;
    description.add(ping_options()).add(common_options());
    const auto values = parse(arguments, description, {}, ping_usage_text, "ping");
    if (!values)
        return 0;
    PingOptions options;
    if (const auto count = text_of(*values, "count"))
        options.count = parse_count(*count, "--count", 1, UINT64_MAX, "ping");
    if (const auto interval = text_of(*values, "interval"))
        options.interval = to_nanoseconds(parse_seconds(*interval, "--interval", true, "ping"));
    if (const auto size = text_of(*values, "size"))
        options.size = parse_size(*size, "ping");
    options.client = client_options(common_values(*values, "ping"));
    return to_int(run_ping(options, std::cout));
}

int run_bench_command(const std::vector<std::string>& arguments) {
    po::options_description description;
    description.add(bench_options()).add(common_options());
    const auto values = parse(arguments, description, {}, bench_usage_text, "bench");
    if (!values)
        return 0;
    BenchOptions options;
    if (const auto connections = text_of(*values, "connections"))
        options.connections =
            static_cast<unsigned>(parse_count(*connections, "--connections", 1, 100000, "bench"));
    if (const auto size = text_of(*values, "size"))
        options.message_size = parse_size(*size, "bench");
    if (const auto pipeline = text_of(*values, "pipeline"))
        options.pipeline =
            static_cast<unsigned>(parse_count(*pipeline, "--pipeline", 1, 65536, "bench"));
    if (values->count("duration") && values->count("messages"))
        throw usage_error("-d/--duration and -n/--messages exclude each other", "bench");
    if (const auto duration = text_of(*values, "duration"))
        options.duration = to_nanoseconds(parse_seconds(*duration, "--duration", false, "bench"));
    if (const auto messages = text_of(*values, "messages"))
        options.messages = parse_count(*messages, "--messages", 1, UINT64_MAX, "bench");
    if (const auto warmup = text_of(*values, "warmup"))
        options.warmup = to_nanoseconds(parse_seconds(*warmup, "--warmup", true, "bench"));
    if (const auto threads = text_of(*values, "threads"))
        options.threads =
            static_cast<unsigned>(parse_count(*threads, "--threads", 1, 1024, "bench"));
    options.churn = (*values)["churn"].as<bool>();
    if (options.churn && options.pipeline > 1)
        throw usage_error("--pipeline does not apply to --churn (one message per connection)",
                          "bench");
    const bool json = (*values)["json"].as<bool>();
    const Common common = common_values(*values, "bench");
    options.socket_candidates = socket_candidates(common);
    options.timeout = common.timeout;
    options.progress = !json && !common.quiet && ::isatty(STDOUT_FILENO);

    const BenchResult result = run_bench(options, std::cout);
    if (json)
        print_bench_json(result, std::cout);
    else
        print_bench_report(result, std::cout);
    std::cout.flush();
    if (result.failure)
        std::cerr << "uds-echo: bench: " << result.failure->what() << '\n';
    return to_int(result.exit_code());
}

int run(int argc, char* argv[]) {
    Command command = Command::echo;
    const int subcommand_index = find_subcommand(argc, argv, command);
    std::vector<std::string> arguments;
    for (int i = 1; i < argc; ++i)
        if (i != subcommand_index)
            arguments.emplace_back(argv[i]);
    switch (command) {
    case Command::ping:
        return run_ping_command(arguments);
    case Command::bench:
        return run_bench_command(arguments);
    case Command::echo:
        break;
    }
    return run_echo(arguments);
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
