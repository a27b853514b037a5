// The daemon's configuration: the command line through Boost.Program_options, the config file it
// names, and the order in which they combine (see docs/configuration.md).
//
// Every option is read as text and validated by the table in config_options.cpp, not by
// Program_options' typed values: those accept "-1" for an unsigned (it wraps) and cannot say which
// line of the file was wrong. The command line and the file are each turned into an ordered list
// of settings, each setting remembering where it came from, and applied in turn (file first,
// command line over it), so that every error names its option and its place and carries the exit
// code of that place.
#include "daemon/config.hpp"

#include "common/config_file.hpp"
#include "common/config_values.hpp"
#include "common/help_text.hpp"
#include "common/paths.hpp"
#include "daemon/config_options.hpp"

#include <boost/program_options/errors.hpp>
#include <boost/program_options/parsers.hpp>
#include <boost/program_options/positional_options.hpp>
#include <boost/program_options/value_semantic.hpp>

#include <sched.h>

#include <algorithm>
#include <cstdlib>
#include <string_view>
#include <thread>

namespace uds_echo::daemon {
namespace {

namespace po = boost::program_options;
using namespace config_detail;

constexpr const char* program_name = "uds-echod";

// Program_options' name for positional arguments, which are all errors here.
constexpr const char* positional_key = "unexpected argument";

// ---- the command line -------------------------------------------------------------------------

std::string command_line_error(const po::error& error) {
    const auto* named = dynamic_cast<const po::error_with_option_name*>(&error);
    const std::string option = named != nullptr ? named->get_option_name() : std::string();
    if (dynamic_cast<const po::unknown_option*>(&error) != nullptr)
        return option + ": unknown option";
    if (const auto* syntax = dynamic_cast<const po::invalid_command_line_syntax*>(&error)) {
        switch (syntax->kind()) {
        case po::invalid_syntax::missing_parameter:
            return option + ": missing value";
        case po::invalid_syntax::extra_parameter:
            return option + ": takes no value";
        default:
            break;
        }
    }
    return error.what();
}

Settings read_command_line(const std::vector<std::string>& args) {
    auto description = program_options(OptionsFor::command_line);
    description.add_options()(positional_key, po::value<std::string>());
    po::positional_options_description positional;
    positional.add(positional_key, -1);
    // No abbreviations: `--thread` must not quietly mean --threads.
    const int style =
        po::command_line_style::default_style & ~po::command_line_style::allow_guessing;
    po::parsed_options parsed(&description);
    try {
        parsed = po::command_line_parser(args)
                     .options(description)
                     .positional(positional)
                     .style(style)
                     .run();
    } catch (const po::error& error) {
        throw Failure(ExitCode::usage, command_line_error(error));
    }
    Settings settings;
    for (const auto& option : parsed.options) {
        const std::string value = option.value.empty() ? std::string() : option.value.front();
        if (option.string_key == positional_key)
            throw Failure(ExitCode::usage, "unexpected argument " + quoted(value));
        settings.push_back({option.string_key, value, {}});
    }
    check_repetition(settings);
    return settings;
}

bool has(const Settings& settings, std::string_view name) {
    return std::any_of(settings.begin(), settings.end(),
                       [&](const Setting& setting) { return setting.name == name; });
}

// ---- the config file --------------------------------------------------------------------------

struct ConfigFile {
    std::string path;
    Settings settings;
};

std::optional<ConfigFile> load_config_file(const Settings& command_line,
                                           const std::string& default_config_file) {
    const auto* named = last(command_line, "config");
    const std::string path = named != nullptr ? named->value : default_config_file;
    const auto text = read_config_text(path, named != nullptr);
    if (!text)
        return std::nullopt;
    auto settings = parse_config_text(path, *text, program_options(OptionsFor::config_file),
                                      [](const std::string& name, const Origin& origin) {
                                          if (find_option(name) != nullptr)
                                              reject(name, origin, "not allowed in a config file");
                                          reject(name, origin, "unknown option");
                                      });
    check_repetition(settings);
    return ConfigFile{path, std::move(settings)};
}

// ---- the socket path --------------------------------------------------------------------------

std::string resolve_socket(const SocketSetting& command_line, const SocketSetting& config_file) {
    const char* env = std::getenv(socket_env_variable);
    const PathSources sources{
        command_line, env != nullptr ? std::optional<std::string>(env) : std::nullopt, config_file};
    const auto path = resolve_socket_path(sources, current_user());
    // The sources were validated where they were read; what is left to check comes from the
    // environment, which counts as the command line.
    if (!command_line && sources.environment && !sources.environment->empty()) {
        try {
            validate_socket_path(path, ExitCode::usage);
        } catch (const Failure& failure) {
            throw Failure(ExitCode::usage,
                          std::string(socket_env_variable) + ": " + failure.what());
        }
    } else if (!explicit_socket_path(sources)) {
        try {
            validate_socket_path(path, ExitCode::usage);
        } catch (const Failure& failure) {
            throw Failure(ExitCode::usage, std::string("default socket path: ") + failure.what() +
                                               "; choose a shorter one with --socket");
        }
    }
    return path;
}

template <typename T>
void sort_unique(std::vector<T>& values) {
    std::sort(values.begin(), values.end());
    values.erase(std::unique(values.begin(), values.end()), values.end());
}

// ---- texts ------------------------------------------------------------------------------------

// "a, b, c and d".
std::string enumeration(const std::vector<std::string>& names) {
    std::string text;
    for (std::size_t i = 0; i < names.size(); ++i) {
        if (i > 0)
            text += i + 1 == names.size() ? " and " : ", ";
        text += names[i];
    }
    return text;
}

std::string command_line_only_names() {
    std::vector<std::string> names;
    for (const auto& option : all_options())
        if (!option.in_file)
            names.emplace_back(option.name);
    return enumeration(names);
}

std::string help_text(const std::string& default_config_file) {
    std::vector<HelpRow> rows;
    for (const auto& option : all_options()) {
        std::string description = option.help;
        if (std::string_view(option.name) == "config")
            description += " [" + default_config_file + " if it exists]";
        else if (option.default_text != nullptr)
            description += std::string(" [") + option.default_text + "]";
        rows.push_back(
            HelpRow{option.short_name, option.name, option.argument, std::move(description)});
    }
    std::string text = std::string("Usage: ") + program_name +
                       " [OPTION]...\n"
                       "Echo daemon on a Unix domain socket: every byte a client sends comes "
                       "back.\n\nOptions:\n" +
                       help_table(rows);
    text += '\n';
    for (const auto& line :
         wrapped("Every option but " + command_line_only_names() +
                 " can also be set as `name = value` in the config file; the command line "
                 "wins. UDS_ECHO_SOCKET in the environment comes between --socket and the "
                 "file's socket. Exit codes: 64 bad command line, 78 bad config file. See "
                 "uds-echod(8) and uds-echo.conf(5)."))
        text += line + '\n';
    return text;
}

std::string version_text() {
    return std::string(program_name) + " " + UDS_ECHO_VERSION + "\n";
}

} // namespace

ParseResult parse_daemon_config(const std::vector<std::string>& args,
                                const std::string& default_config_file) {
    const auto command_line = read_command_line(args);
    if (has(command_line, "help"))
        return InformationRequest{help_text(default_config_file)};
    if (has(command_line, "version"))
        return InformationRequest{version_text()};

    DaemonConfig config;
    config.threads = default_worker_count(); // --threads 0
    SocketSetting file_socket;
    SocketSetting command_line_socket;
    if (auto file = load_config_file(command_line, default_config_file)) {
        config.config_file = file->path;
        apply(file->settings, config, file_socket);
    }
    apply(command_line, config, command_line_socket);
    config.socket_path = resolve_socket(command_line_socket, file_socket);
    sort_unique(config.access.allowed_uids);
    sort_unique(config.access.allowed_gids);
    return config;
}

unsigned available_cpus() {
    cpu_set_t cpus;
    CPU_ZERO(&cpus);
    if (::sched_getaffinity(0, sizeof cpus, &cpus) == 0 && CPU_COUNT(&cpus) > 0)
        return static_cast<unsigned>(CPU_COUNT(&cpus));
    // More CPUs than a cpu_set_t holds (EINVAL), or no answer: what the hardware has.
    return std::max(1u, std::thread::hardware_concurrency());
}

unsigned default_worker_count() {
    return std::max(1u, available_cpus() / 2);
}

} // namespace uds_echo::daemon
