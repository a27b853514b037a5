// The daemon's configuration (SPEC §4): command line and INI file through Boost.Program_options.
//
// Every option is read as text and validated here, not by Program_options' typed values: those
// accept "-1" for an unsigned (it wraps) and cannot say which line of the file was wrong. The
// command line and the file are each turned into an ordered list of settings, each setting
// remembering where it came from, and applied in turn (file first, command line over it), so that
// every error names its option and its place and carries the exit code of that place.
#include "uds_echo/config.hpp"

#include "uds_echo/paths.hpp"

#include <boost/make_shared.hpp>
#include <boost/program_options.hpp>

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <sstream>
#include <string_view>
#include <thread>
#include <type_traits>

namespace uds_echo {
namespace {

namespace po = boost::program_options;

constexpr const char* program_name = "uds-echod";
constexpr std::uint64_t max_threads = 1024;
constexpr std::uint64_t max_connections_limit = 1000000;
constexpr std::uint64_t max_seconds = 365 * 24 * 3600;

struct OptionInfo {
    const char* name;
    char short_name;          // '\0' when there is none
    const char* argument;     // nullptr for a flag
    const char* default_text; // for --help; nullptr when there is no default to show
    const char* description;
    bool in_file;    // may be set in the config file
    bool repeatable; // occurrences accumulate instead of being an error
};

// Help order is table order.
constexpr std::array options_table{
    OptionInfo{"config", 'c', "FILE", nullptr, "read options from FILE (command line only)", false,
               false},
    OptionInfo{"socket", 's', "PATH", "per-user or system path, see uds-echod(8)",
               "socket path; @NAME is a Linux abstract socket", true, false},
    OptionInfo{"socket-mode", '\0', "OCTAL", "0660", "file mode of a socket the daemon creates",
               true, false},
    OptionInfo{"socket-group", '\0', "NAME|GID", "unchanged",
               "group of a socket the daemon creates", true, false},
    OptionInfo{"threads", '\0', "N", "0", "worker threads, 0 = CPUs this process may use (0-1024)",
               true, false},
    OptionInfo{"max-connections", '\0', "N", "10000",
               "stop accepting while N connections are open (1-1000000)", true, false},
    OptionInfo{"max-connections-per-uid", '\0', "N", "1000",
               "close a peer's connection beyond N open for its uid (root exempt), 0 = no cap",
               true, false},
    OptionInfo{"idle-timeout", '\0', "SEC", "0",
               "close a connection that sent nothing for SEC seconds, 0 = never", true, false},
    OptionInfo{"exit-on-idle", '\0', "SEC", "0",
               "socket-activated only: exit after SEC seconds without connections, 0 = never", true,
               false},
    OptionInfo{"shutdown-timeout", '\0', "SEC", "5",
               "on SIGTERM/SIGINT, close sessions still open after SEC seconds", true, false},
    OptionInfo{"buffer-size", '\0', "BYTES", "65536",
               "read buffer per connection, 512 to 64M (K and M suffixes: KiB, MiB)", true, false},
    OptionInfo{"allow-uid", '\0', "LIST", "anyone",
               "users (names or uids, comma-separated) allowed to connect; repeatable", true, true},
    OptionInfo{"allow-gid", '\0', "LIST", "anyone",
               "groups (names or gids, comma-separated) allowed to connect; repeatable", true,
               true},
    OptionInfo{"log-level", '\0', "LEVEL", "info", "trace, debug, info, warning or error", true,
               false},
    OptionInfo{"log-format", '\0', "FMT", "auto", "auto, text, journal or json", true, false},
    OptionInfo{"check-config", '\0', nullptr, nullptr,
               "validate everything, print the effective configuration and exit", false, false},
    OptionInfo{"version", 'V', nullptr, nullptr, "print the version and exit", false, false},
    OptionInfo{"help", 'h', nullptr, nullptr, "print this help and exit", false, false},
};

// Program_options' name for positional arguments, which are all errors here.
constexpr const char* positional_key = "unexpected argument";

const OptionInfo* find_option(const std::string& name) {
    for (const auto& option : options_table)
        if (name == option.name)
            return &option;
    return nullptr;
}

// ---- where a value came from ------------------------------------------------------------------

struct Origin {
    std::string file; // empty for the command line
    int line = 0;
};

struct Setting {
    std::string name;
    std::string value; // empty for a flag
    Origin origin;
};

using Settings = std::vector<Setting>;

std::string quoted(std::string_view text) {
    return '"' + std::string(text) + '"';
}

std::string place(const Origin& origin) {
    return origin.file + ":" + std::to_string(origin.line);
}

// The one shape of every error about a value: `--name: problem` from the command line (64),
// `file:line: name: problem` from the config file (78).
[[noreturn]] void reject(const std::string& name, const Origin& origin,
                         const std::string& problem) {
    if (origin.file.empty())
        throw Failure(ExitCode::usage, "--" + name + ": " + problem);
    throw Failure(ExitCode::config, place(origin) + ": " + name + ": " + problem);
}

[[noreturn]] void reject(const Setting& setting, const std::string& problem) {
    reject(setting.name, setting.origin, problem);
}

// ---- values -----------------------------------------------------------------------------------

std::string_view trimmed(std::string_view text) {
    constexpr std::string_view blanks = " \t\r\n";
    const auto first = text.find_first_not_of(blanks);
    if (first == std::string_view::npos)
        return {};
    const auto last = text.find_last_not_of(blanks);
    return text.substr(first, last - first + 1);
}

bool all_digits(std::string_view text, int base) {
    const char last = static_cast<char>('0' + base - 1);
    return !text.empty() &&
           std::all_of(text.begin(), text.end(), [&](char c) { return c >= '0' && c <= last; });
}

struct Range {
    std::uint64_t min;
    std::uint64_t max;
};

std::string expected(Range range) {
    return "(expected " + std::to_string(range.min) + " to " + std::to_string(range.max) + ")";
}

// A whole number written as plain digits: no sign, no spaces, no base prefix.
std::uint64_t number_in_range(const Setting& setting, std::string_view text, Range range) {
    if (text.size() > 1 && text.front() == '-' && all_digits(text.substr(1), 10))
        reject(setting, quoted(setting.value) + " is negative " + expected(range));
    if (!all_digits(text, 10))
        reject(setting, quoted(setting.value) + " is not a number " + expected(range));
    std::uint64_t value = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc{} || end != text.data() + text.size() || value < range.min ||
        value > range.max)
        reject(setting, quoted(setting.value) + " is out of range " + expected(range));
    return value;
}

std::uint64_t number_in_range(const Setting& setting, Range range) {
    return number_in_range(setting, setting.value, range);
}

std::chrono::seconds seconds(const Setting& setting) {
    return std::chrono::seconds(number_in_range(setting, {0, max_seconds}));
}

mode_t octal_mode(const Setting& setting) {
    const std::string_view text = setting.value;
    if (!all_digits(text, 8))
        reject(setting, quoted(text) + " is not an octal mode (expected 0000 to 0777)");
    unsigned value = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value, 8);
    if (error != std::errc{} || end != text.data() + text.size() || value > 0777)
        reject(setting, quoted(text) + " is out of range (expected 0000 to 0777)");
    return static_cast<mode_t>(value);
}

// Bytes, or KiB/MiB with a K, KiB, M or MiB suffix.
std::size_t buffer_size(const Setting& setting) {
    const std::string expectation = "(expected " + std::to_string(min_buffer_size) + " to " +
                                    std::to_string(max_buffer_size) +
                                    " bytes; K and M suffixes mean KiB and MiB)";
    std::string_view digits = setting.value;
    std::uint64_t unit = 1;
    for (const auto& [suffix, multiplier] :
         {std::pair<std::string_view, std::uint64_t>{"KiB", 1024},
          {"K", 1024},
          {"MiB", 1024 * 1024},
          {"M", 1024 * 1024}}) {
        if (digits.size() > suffix.size() && digits.ends_with(suffix)) {
            digits.remove_suffix(suffix.size());
            unit = multiplier;
            break;
        }
    }
    if (digits.size() > 1 && digits.front() == '-' && all_digits(digits.substr(1), 10))
        reject(setting, quoted(setting.value) + " is negative " + expectation);
    if (!all_digits(digits, 10))
        reject(setting, quoted(setting.value) + " is not a size " + expectation);
    std::uint64_t count = 0;
    const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), count);
    const bool fits = error == std::errc{} && end == digits.data() + digits.size() &&
                      count <= max_buffer_size / unit && count * unit >= min_buffer_size;
    if (!fits)
        reject(setting, quoted(setting.value) + " is out of range " + expectation);
    return static_cast<std::size_t>(count * unit);
}

template <typename Entry>
using LookupByName = int (*)(const char*, Entry*, char*, std::size_t, Entry**);

// getpwnam_r/getgrnam_r with a buffer that grows on ERANGE. nullopt when the name is unknown.
template <typename Entry, typename Id>
std::optional<Id> look_up(const Setting& setting, const std::string& name,
                          LookupByName<Entry> lookup, Id Entry::*id, const char* kind) {
    std::vector<char> buffer(4096);
    for (;;) {
        Entry entry{};
        Entry* found = nullptr;
        const int error = lookup(name.c_str(), &entry, buffer.data(), buffer.size(), &found);
        if (error == ERANGE && buffer.size() < (1u << 20)) {
            buffer.resize(buffer.size() * 2);
            continue;
        }
        // getpwnam_r(3): these mean "not found" on some NSS back ends.
        if (error == 0 || error == ENOENT || error == ESRCH || error == EBADF || error == EPERM) {
            if (found == nullptr)
                return std::nullopt;
            return found->*id;
        }
        reject(setting, std::string("cannot look up ") + kind + " " + quoted(name) + ": " +
                            std::strerror(error));
    }
}

enum class IdKind { user, group };

static_assert(std::is_same_v<uid_t, gid_t>, "uids and gids are handled alike");

// A numeric id or a name. The highest value, (uid_t)-1, means "no id" to chown() and the kernel.
uid_t id_from_text(const Setting& setting, std::string_view text, IdKind kind) {
    const char* kind_name = kind == IdKind::user ? "user" : "group";
    if (all_digits(text, 10))
        return static_cast<uid_t>(number_in_range(setting, text, {0, static_cast<uid_t>(-1) - 1u}));
    const std::string name(text);
    const auto id = kind == IdKind::user
                        ? look_up(setting, name, ::getpwnam_r, &passwd::pw_uid, kind_name)
                        : look_up(setting, name, ::getgrnam_r, &group::gr_gid, kind_name);
    if (!id)
        reject(setting, quoted(text) + " is not a known " + kind_name);
    return *id;
}

std::optional<gid_t> socket_group(const Setting& setting) {
    const auto text = trimmed(setting.value);
    if (text.empty())
        return std::nullopt; // `socket-group =`: leave the group unchanged
    return id_from_text(setting, text, IdKind::group);
}

// Comma-separated names or numbers; an empty value is an empty list.
std::vector<uid_t> id_list(const Setting& setting, IdKind kind) {
    std::vector<uid_t> ids;
    const std::string_view value = setting.value;
    if (trimmed(value).empty())
        return ids;
    std::size_t start = 0;
    for (;;) {
        const auto comma = value.find(',', start);
        const auto item = trimmed(value.substr(start, comma - start));
        if (item.empty())
            reject(setting, quoted(value) + " has an empty entry");
        ids.push_back(id_from_text(setting, item, kind));
        if (comma == std::string_view::npos)
            return ids;
        start = comma + 1;
    }
}

LogLevel log_level(const Setting& setting) {
    if (auto level = parse_log_level(setting.value))
        return *level;
    reject(setting, quoted(setting.value) +
                        " is not a log level (expected trace, debug, info, warning or error)");
}

LogFormat log_format(const Setting& setting) {
    if (auto format = parse_log_format(setting.value))
        return *format;
    reject(setting,
           quoted(setting.value) + " is not a log format (expected auto, text, journal or json)");
}

template <typename T>
void sort_unique(std::vector<T>& values) {
    std::sort(values.begin(), values.end());
    values.erase(std::unique(values.begin(), values.end()), values.end());
}

// ---- applying settings ------------------------------------------------------------------------

// The socket path of one source, kept apart because the environment sits between the two
// sources in SPEC §3's order.
using SocketSetting = std::optional<std::string>;

void validate_socket_setting(const Setting& setting) {
    // An empty `socket =` in the file means "unset" (that is how describe() would say it); an
    // empty --socket is a mistake.
    if (setting.value.empty() && !setting.origin.file.empty())
        return;
    const auto code = setting.origin.file.empty() ? ExitCode::usage : ExitCode::config;
    try {
        validate_socket_path(setting.value, code);
    } catch (const Failure& failure) {
        reject(setting, failure.what());
    }
}

// Applies the settings of one source in order. A repeatable option's first occurrence in a
// source replaces what an earlier source set; further occurrences add to it.
void apply(const Settings& settings, DaemonConfig& config, SocketSetting& socket) {
    std::set<std::string> lists_started;
    const auto list_for = [&](const Setting& setting, auto& list) -> auto& {
        if (lists_started.insert(setting.name).second)
            list.clear();
        return list;
    };
    for (const auto& setting : settings) {
        const auto& name = setting.name;
        if (name == "socket") {
            validate_socket_setting(setting);
            socket = setting.value;
        } else if (name == "socket-mode") {
            config.socket_mode = octal_mode(setting);
        } else if (name == "socket-group") {
            config.socket_group = socket_group(setting);
        } else if (name == "threads") {
            const auto threads = number_in_range(setting, {0, max_threads});
            config.threads = threads == 0 ? available_cpus() : static_cast<unsigned>(threads);
        } else if (name == "max-connections") {
            config.max_connections =
                static_cast<unsigned>(number_in_range(setting, {1, max_connections_limit}));
        } else if (name == "max-connections-per-uid") {
            config.max_connections_per_uid =
                static_cast<unsigned>(number_in_range(setting, {0, max_connections_limit}));
        } else if (name == "idle-timeout") {
            config.idle_timeout = seconds(setting);
        } else if (name == "exit-on-idle") {
            config.exit_on_idle = seconds(setting);
        } else if (name == "shutdown-timeout") {
            config.shutdown_timeout = seconds(setting);
        } else if (name == "buffer-size") {
            config.buffer_size = buffer_size(setting);
        } else if (name == "allow-uid") {
            auto uids = id_list(setting, IdKind::user);
            auto& list = list_for(setting, config.access.allowed_uids);
            list.insert(list.end(), uids.begin(), uids.end());
        } else if (name == "allow-gid") {
            auto gids = id_list(setting, IdKind::group);
            auto& list = list_for(setting, config.access.allowed_gids);
            list.insert(list.end(), gids.begin(), gids.end());
        } else if (name == "log-level") {
            config.log_level = log_level(setting);
        } else if (name == "log-format") {
            config.log_format = log_format(setting);
        } else if (name == "check-config") {
            config.check_config = true;
        }
        // config, help and version were acted on before.
    }
}

// ---- the command line -------------------------------------------------------------------------

po::options_description describe_options(bool file_only) {
    po::options_description description;
    for (const auto& option : options_table) {
        if (file_only && !option.in_file)
            continue;
        std::string names = option.name;
        if (option.short_name != '\0' && !file_only)
            names += std::string(",") + option.short_name;
        const po::value_semantic* semantic =
            option.argument != nullptr
                ? po::value<std::string>()
                : static_cast<po::value_semantic*>(new po::untyped_value(true));
        description.add(boost::make_shared<po::option_description>(names.c_str(), semantic,
                                                                   option.description));
    }
    return description;
}

// Rejects a second occurrence of an option that takes one value.
void check_repetition(const Settings& settings) {
    std::map<std::string, Origin> first_seen;
    for (const auto& setting : settings) {
        const auto* option = find_option(setting.name);
        if (option != nullptr && option->repeatable)
            continue;
        auto [first, inserted] = first_seen.emplace(setting.name, setting.origin);
        if (inserted)
            continue;
        if (setting.origin.file.empty())
            reject(setting, "given more than once");
        reject(setting,
               "given more than once (first on line " + std::to_string(first->second.line) + ")");
    }
}

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
    auto description = describe_options(false);
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

const Setting* last(const Settings& settings, std::string_view name) {
    const Setting* found = nullptr;
    for (const auto& setting : settings)
        if (setting.name == name)
            found = &setting;
    return found;
}

// ---- the config file --------------------------------------------------------------------------

// The whole file, or nullopt when it does not exist and `must_exist` is false.
std::optional<std::string> read_file(const std::string& path, bool must_exist) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT && !must_exist)
            return std::nullopt;
        throw Failure(ExitCode::config, "config file " + path + ": " + std::strerror(errno));
    }
    std::string text;
    char chunk[4096];
    for (;;) {
        const auto count = ::read(fd, chunk, sizeof chunk);
        if (count < 0 && errno == EINTR)
            continue;
        if (count < 0) {
            const int error = errno;
            ::close(fd);
            throw Failure(ExitCode::config, "config file " + path + ": " + std::strerror(error));
        }
        if (count == 0)
            break;
        text.append(chunk, static_cast<std::size_t>(count));
    }
    ::close(fd);
    return text;
}

struct Assignment {
    std::string key;
    int line;
};

// Finds the line of every `key = value` the way Program_options reads the file ('#' starts a
// comment anywhere, blanks around key and value do not count), because Program_options reports
// no line numbers. Syntax errors are reported here, with their line.
std::vector<Assignment> scan_assignments(const std::string& path, const std::string& text) {
    std::vector<Assignment> assignments;
    std::istringstream lines(text);
    std::string raw;
    for (int number = 1; std::getline(lines, raw); ++number) {
        std::string_view line = raw;
        line = line.substr(0, line.find('#'));
        const auto content = trimmed(line);
        if (content.empty())
            continue;
        const Origin origin{path, number};
        if (content.front() == '[' && content.back() == ']')
            throw Failure(ExitCode::config,
                          place(origin) +
                              ": sections are not used in this file: " + quoted(content));
        const auto equals = content.find('=');
        if (equals == std::string_view::npos)
            throw Failure(ExitCode::config,
                          place(origin) + ": expected \"name = value\", got " + quoted(content));
        const auto key = trimmed(content.substr(0, equals));
        if (key.empty())
            throw Failure(ExitCode::config, place(origin) + ": option name missing before '='");
        assignments.push_back({std::string(key), number});
    }
    return assignments;
}

// Reads `text` with Program_options and gives each value the line it came from. Unknown keys are
// errors unless `ignore_unknown`.
Settings parse_config_text(const std::string& path, const std::string& text,
                           const po::options_description& description, bool ignore_unknown) {
    const auto assignments = scan_assignments(path, text);
    std::istringstream stream(text);
    po::parsed_options parsed(&description);
    try {
        parsed = po::parse_config_file(stream, description, true);
    } catch (const po::error& error) {
        throw Failure(ExitCode::config, "config file " + path + ": " + error.what());
    }
    if (parsed.options.size() != assignments.size())
        throw Failure(ExitCode::config, "config file " + path + ": cannot be parsed");
    Settings settings;
    for (std::size_t i = 0; i < assignments.size(); ++i) {
        const auto& option = parsed.options[i];
        const Origin origin{path, assignments[i].line};
        if (option.string_key != assignments[i].key)
            throw Failure(ExitCode::config, place(origin) + ": cannot be parsed");
        if (option.unregistered) {
            if (ignore_unknown)
                continue;
            if (find_option(option.string_key) != nullptr)
                reject(option.string_key, origin, "not allowed in a config file");
            reject(option.string_key, origin, "unknown option");
        }
        const std::string value = option.value.empty() ? std::string() : option.value.front();
        settings.push_back({option.string_key, value, origin});
    }
    check_repetition(settings);
    return settings;
}

struct ConfigFile {
    std::string path;
    Settings settings;
};

std::optional<ConfigFile> load_config_file(const Settings& command_line,
                                           const std::string& default_config_file) {
    const auto* named = last(command_line, "config");
    const std::string path = named != nullptr ? named->value : default_config_file;
    const auto text = read_file(path, named != nullptr);
    if (!text)
        return std::nullopt;
    return ConfigFile{path, parse_config_text(path, *text, describe_options(true), false)};
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

// ---- texts ------------------------------------------------------------------------------------

// Words of `text` in lines of at most `width` columns (a longer word gets a line of its own).
std::vector<std::string> wrapped(const std::string& text, std::size_t width) {
    std::vector<std::string> lines(1);
    std::istringstream words(text);
    std::string word;
    while (words >> word) {
        auto& line = lines.back();
        if (!line.empty() && line.size() + 1 + word.size() > width)
            lines.emplace_back();
        if (!lines.back().empty())
            lines.back() += ' ';
        lines.back() += word;
    }
    return lines;
}

std::string help_text(const std::string& default_config_file) {
    constexpr std::size_t line_width = 79;
    std::vector<std::pair<std::string, std::string>> rows;
    for (const auto& option : options_table) {
        std::string left = option.short_name != '\0' ? std::string("-") + option.short_name + ", "
                                                     : std::string("    ");
        left += std::string("--") + option.name;
        if (option.argument != nullptr)
            left += std::string(" ") + option.argument;
        std::string right = option.description;
        if (std::string_view(option.name) == "config")
            right += " [" + default_config_file + " if it exists]";
        else if (option.default_text != nullptr)
            right += std::string(" [") + option.default_text + "]";
        rows.emplace_back(std::move(left), std::move(right));
    }
    std::size_t left_width = 0;
    for (const auto& row : rows)
        left_width = std::max(left_width, row.first.size());
    const std::size_t indent = 2 + left_width + 2;
    std::string text = std::string("Usage: ") + program_name +
                       " [OPTION]...\n"
                       "Echo daemon on a Unix domain socket: every byte a client sends comes "
                       "back.\n\nOptions:\n";
    for (const auto& [left, right] : rows) {
        std::string prefix = "  " + left + std::string(left_width - left.size() + 2, ' ');
        for (const auto& line : wrapped(right, line_width - indent)) {
            text += prefix + line + "\n";
            prefix.assign(indent, ' ');
        }
    }
    text += '\n';
    for (const auto& line :
         wrapped("Every option but config, check-config, version and help can also be set as "
                 "`name = value` in the config file; the command line wins. UDS_ECHO_SOCKET in "
                 "the environment comes between --socket and the file's socket. Exit codes: 64 "
                 "bad command line, 78 bad config file. See uds-echod(8) and uds-echo.conf(5).",
                 line_width))
        text += line + '\n';
    return text;
}

std::string version_text() {
    return std::string(program_name) + " " + UDS_ECHO_VERSION + "\n";
}

template <typename Id>
std::string join(const std::vector<Id>& ids) {
    std::string text;
    for (const auto id : ids) {
        if (!text.empty())
            text += ',';
        text += std::to_string(id);
    }
    return text;
}

// `name = value`, or `name =` for an empty value, without trailing blanks.
std::string config_line(const char* name, const std::string& value) {
    return std::string(name) + (value.empty() ? " =" : " = " + value) + "\n";
}

} // namespace

// ---- public -----------------------------------------------------------------------------------

ParseResult parse_daemon_config(const std::vector<std::string>& args,
                                const std::string& default_config_file) {
    const auto command_line = read_command_line(args);
    if (has(command_line, "help"))
        return InformationRequest{help_text(default_config_file)};
    if (has(command_line, "version"))
        return InformationRequest{version_text()};

    DaemonConfig config;
    config.threads = available_cpus(); // the default, --threads 0
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

std::string DaemonConfig::describe() const {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(socket_mode));
    std::string text = "# Effective configuration of " + std::string(program_name) + " (" +
                       (config_file.empty() ? "no config file" : "config file " + config_file) +
                       ")\n";
    text += config_line("socket", socket_path);
    text += config_line("socket-mode", mode);
    text += config_line("socket-group", socket_group ? std::to_string(*socket_group) : "");
    text += config_line("threads", std::to_string(threads));
    text += config_line("max-connections", std::to_string(max_connections));
    text += config_line("max-connections-per-uid", std::to_string(max_connections_per_uid));
    text += config_line("idle-timeout", std::to_string(idle_timeout.count()));
    text += config_line("exit-on-idle", std::to_string(exit_on_idle.count()));
    text += config_line("shutdown-timeout", std::to_string(shutdown_timeout.count()));
    text += config_line("buffer-size", std::to_string(buffer_size));
    text += config_line("allow-uid", join(access.allowed_uids));
    text += config_line("allow-gid", join(access.allowed_gids));
    text += config_line("log-level", to_string(log_level));
    text += config_line("log-format", to_string(log_format));
    return text;
}

std::vector<std::string> options_needing_restart(const DaemonConfig& before,
                                                 const DaemonConfig& after) {
    std::vector<std::string> changed;
    const auto note = [&](bool differs, const char* name) {
        if (differs)
            changed.emplace_back(name);
    };
    note(before.socket_path != after.socket_path, "socket");
    note(before.socket_mode != after.socket_mode, "socket-mode");
    note(before.socket_group != after.socket_group, "socket-group");
    note(before.threads != after.threads, "threads");
    note(before.buffer_size != after.buffer_size, "buffer-size");
    return changed;
}

std::vector<std::string> options_changed_at_runtime(const DaemonConfig& before,
                                                    const DaemonConfig& after) {
    std::vector<std::string> changed;
    const auto note = [&](bool differs, const char* name) {
        if (differs)
            changed.emplace_back(name);
    };
    note(before.log_level != after.log_level, "log-level");
    note(before.log_format != after.log_format, "log-format");
    note(before.max_connections != after.max_connections, "max-connections");
    note(before.max_connections_per_uid != after.max_connections_per_uid,
         "max-connections-per-uid");
    note(before.idle_timeout != after.idle_timeout, "idle-timeout");
    note(before.exit_on_idle != after.exit_on_idle, "exit-on-idle");
    note(before.shutdown_timeout != after.shutdown_timeout, "shutdown-timeout");
    note(before.access.allowed_uids != after.access.allowed_uids, "allow-uid");
    note(before.access.allowed_gids != after.access.allowed_gids, "allow-gid");
    return changed;
}

std::optional<std::string> read_socket_from_config_file(const std::string& path) {
    const auto text = read_file(path, false);
    if (!text)
        return std::nullopt;
    po::options_description description;
    description.add_options()("socket", po::value<std::string>());
    const auto settings = parse_config_text(path, *text, description, true);
    const auto* socket = last(settings, "socket");
    if (socket == nullptr || socket->value.empty())
        return std::nullopt;
    validate_socket_setting(*socket);
    return socket->value;
}

unsigned available_cpus() {
    cpu_set_t cpus;
    CPU_ZERO(&cpus);
    if (::sched_getaffinity(0, sizeof cpus, &cpus) == 0 && CPU_COUNT(&cpus) > 0)
        return static_cast<unsigned>(CPU_COUNT(&cpus));
    // More CPUs than a cpu_set_t holds (EINVAL), or no answer: what the hardware has.
    return std::max(1u, std::thread::hardware_concurrency());
}

} // namespace uds_echo
