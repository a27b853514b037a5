#include "client/command_line.hpp"

#include "client/option_values.hpp"

#include "common/config_file.hpp"
#include "common/config_values.hpp"
#include "common/help_text.hpp"
#include "common/paths.hpp"

#include <boost/program_options.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <span>

namespace uds_echo::client {

namespace {

namespace po = boost::program_options;

// Program_options' name for words that no form takes.
constexpr const char* unexpected_key = "unexpected argument";
constexpr const char* words_key = "words";

enum class Form { echo, ping, bench };

struct OptionRow {
    const char* name;
    char short_name;      // '\0' for none
    const char* argument; // nullptr for a switch
    const char* description;
};

constexpr OptionRow common_table[] = {
    {"socket", 's', "PATH",
     "socket path; @NAME is a Linux abstract socket [per-user, then "
     "system path, see uds-echo(1)]"},
    {"type", '\0', "TYPE",
     "socket type: stream, seqpacket or datagram; each has a default path of its own [stream]"},
    {"timeout", 't', "SEC", "seconds to wait for the connection and for each reply [5]"},
    {"quiet", 'q', nullptr,
     "do not print the echo of a MESSAGE; ping: only the first line and "
     "the summary; bench: no progress display"},
    {"version", 'V', nullptr, "print the version and exit"},
    {"help", 'h', nullptr, "print this help and exit"},
};

constexpr OptionRow ping_table[] = {
    {"count", 'c', "COUNT", "stop after COUNT round trips [until Ctrl-C]"},
    {"interval", 'i', "SEC", "seconds between round trips, 0 for back to back [1]"},
    {"size", '\0', "N", "bytes per message, K/M/G suffixes allowed (-s is the socket) [64]"},
};

constexpr OptionRow bench_table[] = {
    {"connections", 'c', "CONNS", "concurrent connections [10]"},
    {"size", '\0', "N", "bytes per message, K/M/G suffixes allowed [64]"},
    {"pipeline", '\0', "DEPTH", "messages in flight per connection [1]"},
    {"duration", 'd', "SEC", "measure for SEC seconds [5]"},
    {"messages", 'n', "MESSAGES", "measure exactly MESSAGES messages in total instead"},
    {"warmup", '\0', "SEC", "run unmeasured for SEC seconds first [0]"},
    {"threads", '\0', "T", "client threads, one event loop each [1]"},
    {"churn", '\0', nullptr,
     "a new connection per message (connect, echo, close); reports "
     "connections/s"},
    {"json", '\0', nullptr, "print the result as one JSON object, errors included"},
};

std::span<const OptionRow> form_table(Form form) {
    switch (form) {
    case Form::ping:
        return ping_table;
    case Form::bench:
        return bench_table;
    case Form::echo:
        break;
    }
    return {};
}

// ---- help ----

const char* const echo_intro =
    "Usage: uds-echo [OPTION]... MESSAGE...\n"
    "       uds-echo [OPTION]... [-]\n"
    "       uds-echo [OPTION]... ping [PING OPTION]...\n"
    "       uds-echo [OPTION]... bench [BENCH OPTION]...\n"
    "       uds-echo help [ping | bench]\n"
    "Send the MESSAGE words (joined by spaces, plus a newline) to the uds-echo\n"
    "daemon and print the echo. With -, or without words when standard input is not\n"
    "a terminal, stream standard input through the daemon; on a terminal, echo line\n"
    "by line until Ctrl-D.\n";

const char* const echo_outro =
    "Subcommands: ping times round trips like ping(8), bench is a load benchmark;\n"
    "uds-echo help ping (or ping --help) shows their options. A lone word that is a\n"
    "subcommand misspelt (two letters swapped, one missing or extra) is refused; to\n"
    "send such a word or a subcommand's name, put -- before it: uds-echo -- ping\n\n"
    "Exit status: 0 ok, 64 usage, 65 an echo differed or was cut short, 69 no\n"
    "daemon, 71 other OS error, 75 timeout, 77 permission denied. See uds-echo(1).\n";

const char* const ping_intro =
    "Usage: uds-echo ping [-c COUNT] [-i SEC] [--size N] [OPTION]...\n"
    "Send a message of N bytes, wait for its echo and print the round-trip time, once\n"
    "per interval, until COUNT round trips or Ctrl-C; then print the summary (sent,\n"
    "received, loss, min/avg/max/mdev). A round trip that fails is printed and\n"
    "counted as lost, and the next one reconnects.\n";

const char* const ping_outro =
    "Exit status: 0 every echo came back; else the code of the first failure (65\n"
    "differed or cut short, 69 no daemon, 75 timeout); 64 usage. See uds-echo(1).\n";

const char* const bench_intro =
    "Usage: uds-echo bench [-c CONNS] [--size N] [--pipeline DEPTH]\n"
    "                      [-d SEC | -n MESSAGES] [--warmup SEC] [--threads T]\n"
    "                      [--churn] [--json] [OPTION]...\n"
    "Open CONNS connections over T threads, keep DEPTH messages of N bytes in flight\n"
    "on each and check every echoed byte. Report messages/s, MiB/s, the latency of a\n"
    "message (min, mean, p50 to p99.9, max, and its distribution) and the errors.\n"
    "Progress: a line refreshed each second on a terminal, a line every 5 seconds\n"
    "otherwise (none with -q or --json). Ctrl-C ends the run early with the report.\n";

const char* const bench_outro =
    "Exit status: 0 no error; 65 an echo differed or a connection was cut; 69 no\n"
    "daemon; 75 no echo within --timeout; 71 other OS error; 64 usage.\n"
    "See uds-echo(1).\n";

std::string option_rows(const char* title, std::span<const OptionRow> table) {
    std::vector<HelpRow> rows;
    for (const auto& row : table)
        rows.push_back(HelpRow{row.short_name, row.name, row.argument, row.description});
    return std::string(title) + ":\n" + help_table(rows);
}

std::string help_text(Form form) {
    const char* intro = form == Form::ping    ? ping_intro
                        : form == Form::bench ? bench_intro
                                              : echo_intro;
    const char* outro = form == Form::ping    ? ping_outro
                        : form == Form::bench ? bench_outro
                                              : echo_outro;
    std::string text = std::string(intro) + '\n';
    if (form != Form::echo)
        text +=
            option_rows(form == Form::ping ? "Ping options" : "Bench options", form_table(form)) +
            '\n';
    return text + option_rows("Options (before or after a subcommand)", common_table) + '\n' +
           outro;
}

// ---- finding the subcommand ----

bool takes_value(const std::string& argument) {
    const auto matches = [&](const OptionRow& row) {
        if (row.argument == nullptr)
            return false;
        return argument == std::string("--") + row.name ||
               (row.short_name != '\0' && argument.size() == 2 && argument[1] == row.short_name);
    };
    for (const auto table :
         {std::span<const OptionRow>(common_table), std::span<const OptionRow>(ping_table),
          std::span<const OptionRow>(bench_table)})
        if (std::any_of(table.begin(), table.end(), matches))
            return true;
    return false;
}

// The short option letter of a cluster such as -qs that takes a value ("-qs PATH"), if any: the
// first such letter takes the rest of the word, or the next word when it is the last letter.
bool cluster_takes_next_word(const std::string& argument) {
    for (std::size_t k = 1; k < argument.size(); ++k)
        if (takes_value(std::string("-") + argument[k]))
            return k + 1 == argument.size();
    return false;
}

// The index of the first word that is neither an option nor an option's value, if any.
std::optional<std::size_t> first_word(const std::vector<std::string>& args) {
    for (std::size_t i = 0; i < args.size(); ++i) {
        const auto& argument = args[i];
        if (argument == "--")
            return std::nullopt;
        if (argument.rfind("--", 0) == 0) {
            if (argument.find('=') == std::string::npos && takes_value(argument))
                ++i;
        } else if (argument.size() > 1 && argument[0] == '-') {
            if (cluster_takes_next_word(argument))
                ++i;
        } else {
            return i;
        }
    }
    return std::nullopt;
}

// Two neighbouring letters swapped, one letter missing or one extra: the typos of a subcommand
// name. A different letter is not counted, so real words ("pong", "hell") are still sent.
bool misspelt(const std::string& word, const std::string& name) {
    if (word.size() == name.size()) {
        for (std::size_t i = 0; i + 1 < word.size(); ++i)
            if (word[i] != name[i])
                return word[i] == name[i + 1] && word[i + 1] == name[i] &&
                       word.compare(i + 2, std::string::npos, name, i + 2) == 0;
        return false;
    }
    const auto& longer = word.size() > name.size() ? word : name;
    const auto& shorter = word.size() > name.size() ? name : word;
    if (longer.size() != shorter.size() + 1)
        return false;
    for (std::size_t skip = 0; skip < longer.size(); ++skip)
        if (longer.substr(0, skip) + longer.substr(skip + 1) == shorter)
            return true;
    return false;
}

// ---- parsing ----

// Worded as uds-echod words its own: the option first, then what is wrong, one line.
std::string usage_message(const po::error& error) {
    const auto* named = dynamic_cast<const po::error_with_option_name*>(&error);
    const std::string option = named != nullptr ? named->get_option_name() : std::string();
    if (dynamic_cast<const po::unknown_option*>(&error) != nullptr)
        return option + ": unknown option";
    if (dynamic_cast<const po::multiple_occurrences*>(&error) != nullptr)
        return option + ": given more than once";
    if (const auto* syntax = dynamic_cast<const po::invalid_command_line_syntax*>(&error)) {
        if (syntax->kind() == po::invalid_syntax::missing_parameter)
            return option + ": missing value";
        if (syntax->kind() == po::invalid_syntax::extra_parameter)
            return option + ": takes no value";
    }
    return error.what();
}

po::options_description describe(std::span<const OptionRow> table) {
    po::options_description description;
    for (const auto& row : table) {
        const std::string names =
            row.short_name != '\0' ? std::string(row.name) + "," + row.short_name : row.name;
        if (row.argument != nullptr)
            description.add_options()(names.c_str(), po::value<std::string>(), row.description);
        else
            description.add_options()(names.c_str(), po::bool_switch(), row.description);
    }
    return description;
}

po::variables_map parse_form(const std::vector<std::string>& args, Form form) {
    po::options_description description = describe(common_table);
    description.add(describe(form_table(form)));
    const char* positional_key = form == Form::echo ? words_key : unexpected_key;
    description.add_options()(positional_key, po::value<std::vector<std::string>>());
    po::positional_options_description positional;
    positional.add(positional_key, -1);
    // No abbreviations: `--time` must not quietly mean --timeout.
    const int style =
        po::command_line_style::default_style & ~po::command_line_style::allow_guessing;
    po::variables_map values;
    try {
        po::store(po::command_line_parser(args)
                      .options(description)
                      .positional(positional)
                      .style(style)
                      .run(),
                  values);
    } catch (const po::error& error) {
        throw Failure(ExitCode::usage, usage_message(error));
    }
    if (values.count(unexpected_key))
        throw Failure(ExitCode::usage,
                      "unexpected argument \"" +
                          values[unexpected_key].as<std::vector<std::string>>().front() + "\"");
    return values;
}

std::optional<std::string> text_of(const po::variables_map& values, const char* name) {
    if (!values.count(name))
        return std::nullopt;
    return values[name].as<std::string>();
}

std::optional<std::string> socket_from_environment() {
    const char* value = std::getenv(socket_env_variable);
    if (value == nullptr || *value == '\0')
        return std::nullopt;
    return value;
}

SocketType socket_type(const po::variables_map& values) {
    const auto text = text_of(values, "type");
    if (!text)
        return SocketType::stream;
    if (const auto type = socket_type_named(*text))
        return *type;
    throw Failure(ExitCode::usage, "--type: " + quoted(*text) +
                                       " is not a socket type (stream, seqpacket, datagram)");
}

// The config file's path for a type: `socket =` names the stream socket only.
std::optional<std::string> config_file_socket(const ConfigFileSockets& sockets, SocketType type) {
    switch (type) {
    case SocketType::stream:
        return sockets.stream;
    case SocketType::seqpacket:
        return sockets.seqpacket;
    case SocketType::datagram:
        return sockets.datagram;
    }
    return std::nullopt;
}

ClientOptions client_options(const po::variables_map& values) {
    ClientOptions options;
    options.type = socket_type(values);
    // UDS_ECHO_SOCKET, like `socket =`, names the stream socket.
    PathSources sources{text_of(values, "socket"),
                        options.type == SocketType::stream ? socket_from_environment()
                                                           : std::nullopt,
                        std::nullopt};
    // The config file is read only when nothing more important names the socket, so that a
    // broken system file does not stand in the way of an explicit --socket.
    if (!sources.command_line && !sources.environment)
        sources.config_file =
            config_file_socket(read_sockets_from_config_file(system_config_path), options.type);
    options.socket_candidates = client_socket_candidates(sources, current_user(), options.type);
    if (const auto timeout = text_of(values, "timeout"))
        options.timeout = to_milliseconds(parse_seconds(*timeout, "--timeout", false));
    options.quiet = values["quiet"].as<bool>();
    return options;
}

PingOptions ping_command(const po::variables_map& values) {
    // ping(8) spells the size -s; here -s is the socket, whose name is rarely a number.
    if (const auto socket = text_of(values, "socket");
        socket && !socket->empty() &&
        std::all_of(socket->begin(), socket->end(), [](char c) { return c >= '0' && c <= '9'; }))
        throw Failure(ExitCode::usage, "-s " + *socket +
                                           ": -s is the socket path; the message "
                                           "size is --size " +
                                           *socket + " (a socket named so: -s ./" + *socket + ")");
    PingOptions options;
    if (const auto count = text_of(values, "count"))
        options.count = parse_count(*count, "--count", UINT64_MAX);
    if (const auto interval = text_of(values, "interval"))
        options.interval = to_nanoseconds(parse_seconds(*interval, "--interval", true));
    if (const auto size = text_of(values, "size"))
        options.size = parse_size(*size);
    options.client = client_options(values);
    return options;
}

BenchCommand bench_command(const po::variables_map& values, bool stdout_is_terminal) {
    BenchCommand command;
    auto& options = command.options;
    command.json = values["json"].as<bool>();
    if (const auto connections = text_of(values, "connections"))
        options.connections =
            static_cast<unsigned>(parse_count(*connections, "--connections", 100000));
    if (const auto size = text_of(values, "size"))
        options.message_size = parse_size(*size);
    if (const auto pipeline = text_of(values, "pipeline"))
        options.pipeline = static_cast<unsigned>(parse_count(*pipeline, "--pipeline", 65536));
    if (values.count("duration") && values.count("messages"))
        throw Failure(ExitCode::usage, "--duration and --messages exclude each other");
    if (const auto duration = text_of(values, "duration"))
        options.duration = to_nanoseconds(parse_seconds(*duration, "--duration", false));
    if (const auto messages = text_of(values, "messages"))
        options.messages = parse_count(*messages, "--messages", UINT64_MAX);
    if (const auto warmup = text_of(values, "warmup"))
        options.warmup = to_nanoseconds(parse_seconds(*warmup, "--warmup", true));
    if (const auto threads = text_of(values, "threads"))
        options.threads = static_cast<unsigned>(parse_count(*threads, "--threads", 1024));
    options.churn = values["churn"].as<bool>();
    if (options.churn && values.count("pipeline"))
        throw Failure(ExitCode::usage,
                      "--pipeline: does not apply to --churn (one message per connection)");
    const auto client = client_options(values);
    options.socket_candidates = client.socket_candidates;
    options.timeout = client.timeout;
    options.type = client.type;
    if (options.churn && options.type == SocketType::datagram)
        throw Failure(ExitCode::usage,
                      "--churn: datagrams have no connections to open (--type datagram)");
    if (!command.json && !client.quiet)
        options.progress =
            stdout_is_terminal ? BenchOptions::Progress::terminal : BenchOptions::Progress::lines;
    return command;
}

// The subcommand named by `word`, if it names one.
std::optional<Form> subcommand(const std::string& word) {
    if (word == "ping")
        return Form::ping;
    if (word == "bench")
        return Form::bench;
    return std::nullopt;
}

// `uds-echo help [ping | bench]`.
TextAnswer help_command(const std::vector<std::string>& args, std::size_t help_index) {
    const auto rest =
        std::vector<std::string>(args.begin() + static_cast<long>(help_index) + 1, args.end());
    if (rest.empty())
        return {help_text(Form::echo)};
    if (const auto form = subcommand(rest.front()); form && rest.size() == 1)
        return {help_text(*form)};
    throw Failure(ExitCode::usage, "unexpected argument \"" + rest.front() +
                                       "\" (uds-echo help takes ping or bench)");
}

} // namespace

ClientCommand parse_client_command_line(const std::vector<std::string>& args,
                                        bool stdout_is_terminal) {
    Form form = Form::echo;
    std::vector<std::string> rest = args;
    if (const auto index = first_word(args)) {
        const auto& word = args[*index];
        if (word == "help")
            return help_command(args, *index);
        if (const auto named = subcommand(word)) {
            form = *named;
            rest.erase(rest.begin() + static_cast<long>(*index));
        }
    }
    const auto values = parse_form(rest, form);
    if (values["help"].as<bool>())
        return TextAnswer{help_text(form)};
    if (values["version"].as<bool>())
        return TextAnswer{std::string("uds-echo ") + UDS_ECHO_VERSION + "\n"};
    if (form == Form::ping)
        return ping_command(values);
    if (form == Form::bench)
        return bench_command(values, stdout_is_terminal);
    EchoCommand echo{client_options(values), {}};
    if (values.count(words_key))
        echo.words = values[words_key].as<std::vector<std::string>>();
    // Only a lone word is taken for a mistyped subcommand: a sentence is a message.
    if (echo.words.size() == 1 && first_word(args))
        for (const char* name : {"ping", "bench", "help"})
            if (misspelt(echo.words.front(), name))
                throw Failure(ExitCode::usage, "\"" + echo.words.front() +
                                                   "\": unknown subcommand; did you mean " + name +
                                                   "? (to send it as a message: "
                                                   "uds-echo -- " +
                                                   echo.words.front() + ")");
    return echo;
}

bool asks_for_bench_json(const std::vector<std::string>& args) {
    const auto index = first_word(args);
    return index && args[*index] == "bench" &&
           std::find(args.begin(), args.end(), "--json") != args.end();
}

} // namespace uds_echo::client
