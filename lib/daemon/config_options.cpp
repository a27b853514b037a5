// The table of the daemon's options, and what is derived from it: applying settings, the
// Program_options descriptions, --check-config's description and the SIGHUP differences.
//
// Adding an option: a DaemonConfig field and one row in `options_table`. The help, both parsers,
// describe(), the two difference lists and take_runtime_options() follow from the row.
#include "daemon/config_options.hpp"

#include "common/config_values.hpp"
#include "common/paths.hpp"

#include <boost/make_shared.hpp>
#include <boost/program_options/value_semantic.hpp>

#include <algorithm>
#include <array>
#include <cstdio>
#include <map>
#include <set>

namespace uds_echo::daemon::config_detail {

struct SourceState {
    DaemonConfig& config;
    SocketSetting& socket;
    std::set<std::string> lists_started; // repeatable options seen in this source
};

namespace {

constexpr std::uint64_t max_threads = 1024;
constexpr std::uint64_t max_connections_limit = 1000000;

// ---- fields -----------------------------------------------------------------------------------
// A row names its field by the member pointers that lead to it from a DaemonConfig (one, or two
// for a field of a member); the Field's four functions are generated from that path, with `read`
// (text to value) and `write` (value to config file text).

template <auto member, auto... rest>
auto& field_of(auto& object) {
    if constexpr (sizeof...(rest) == 0)
        return object.*member;
    else
        return field_of<rest...>(object.*member);
}

template <auto... path>
bool field_differs(const DaemonConfig& before, const DaemonConfig& after) {
    return field_of<path...>(before) != field_of<path...>(after);
}

template <auto... path>
void copy_field(DaemonConfig& to, const DaemonConfig& from) {
    field_of<path...>(to) = field_of<path...>(from);
}

template <auto write, auto... path>
std::string print_field(const DaemonConfig& config) {
    return write(field_of<path...>(config));
}

// A value read whole from one setting.
template <auto read, auto write, auto... path>
constexpr Field value_field() {
    return {[](const Setting& setting, SourceState& state) {
                try {
                    field_of<path...>(state.config) = read(setting.value);
                } catch (const InvalidValue& invalid) {
                    reject(setting, invalid.what());
                }
            },
            print_field<write, path...>, field_differs<path...>, copy_field<path...>};
}

// A list that settings of one source add to; the first one in a source replaces the list of the
// source before.
template <IdKind kind, auto write, auto... path>
constexpr Field id_list_field() {
    return {[](const Setting& setting, SourceState& state) {
                try {
                    const auto ids = parse_id_list(setting.value, kind);
                    auto& list = field_of<path...>(state.config);
                    if (state.lists_started.insert(setting.name).second)
                        list.clear();
                    list.insert(list.end(), ids.begin(), ids.end());
                } catch (const InvalidValue& invalid) {
                    reject(setting, invalid.what());
                }
            },
            print_field<write, path...>, field_differs<path...>, copy_field<path...>};
}

std::string path_text(const std::string& path) {
    return path;
}

// The socket path is not stored directly: each source's path waits for the environment's, which
// ranks between them, and is resolved when both sources are read.
constexpr Field socket_field{[](const Setting& setting, SourceState& state) {
                                 validate_socket_setting(setting);
                                 state.socket = setting.value;
                             },
                             print_field<path_text, &DaemonConfig::socket_path>,
                             field_differs<&DaemonConfig::socket_path>,
                             copy_field<&DaemonConfig::socket_path>};

// A path of the seqpacket or datagram socket, stored as written: the environment does not name
// these, so there is nothing to resolve. Empty: none.
template <auto path>
constexpr Field message_socket_field() {
    return {[](const Setting& setting, SourceState& state) {
                validate_socket_setting(setting);
                state.config.*path = setting.value;
            },
            print_field<path_text, path>, field_differs<path>, copy_field<path>};
}

constexpr Field check_config_field{
    [](const Setting&, SourceState& state) { state.config.check_config = true; }};

// ---- values: text to field and back ------------------------------------------------------------

template <std::uint64_t min, std::uint64_t max>
unsigned count(std::string_view text) {
    return static_cast<unsigned>(parse_number(text, {min, max}));
}

unsigned thread_count(std::string_view text) {
    const auto requested = parse_number(text, {0, max_threads});
    return requested == 0 ? default_worker_count() : static_cast<unsigned>(requested);
}

std::size_t buffer_bytes(std::string_view text) {
    return static_cast<std::size_t>(parse_size(text, {min_buffer_size, max_buffer_size}));
}

// `socket-group =`: leave the group unchanged.
std::optional<gid_t> optional_group(std::string_view text) {
    if (trim_blanks(text).empty())
        return std::nullopt;
    return parse_id(text, IdKind::group);
}

LogLevel read_log_level(std::string_view text) {
    if (auto level = parse_log_level(std::string(text)))
        return *level;
    throw InvalidValue(quoted(text) +
                       " is not a log level (expected trace, debug, info, warning or error)");
}

LogFormat read_log_format(std::string_view text) {
    if (auto format = parse_log_format(std::string(text)))
        return *format;
    throw InvalidValue(quoted(text) +
                       " is not a log format (expected auto, text, journal or json)");
}

std::string number_text(std::uint64_t number) {
    return std::to_string(number);
}

std::string seconds_text(std::chrono::seconds seconds) {
    return std::to_string(seconds.count());
}

std::string mode_text(mode_t mode) {
    char text[8];
    std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode));
    return text;
}

std::string group_text(const std::optional<gid_t>& group) {
    return group ? std::to_string(*group) : std::string();
}

std::string ids_text(const std::vector<uid_t>& ids) {
    std::string text;
    for (const auto id : ids) {
        if (!text.empty())
            text += ',';
        text += std::to_string(id);
    }
    return text;
}

template <typename Enum>
std::string name_text(Enum value) {
    return to_string(value);
}

// ---- the table --------------------------------------------------------------------------------

constexpr auto run_time = Change::at_run_time;
constexpr auto restart = Change::after_restart;

constexpr std::array options_table{
    Option{.name = "config",
           .short_name = 'c',
           .argument = "FILE",
           .help = "read options from FILE (command line only)"},
    Option{.name = "socket",
           .short_name = 's',
           .argument = "PATH",
           .default_text = "per-user or system path, see uds-echod(8)",
           .help = "socket path; @NAME is a Linux abstract socket",
           .in_file = true,
           .change = restart,
           .field = socket_field},
    Option{.name = "seqpacket-socket",
           .argument = "PATH",
           .default_text = "none",
           .help = "also serve a SOCK_SEQPACKET socket at PATH; @NAME is abstract",
           .in_file = true,
           .change = restart,
           .field = message_socket_field<&DaemonConfig::seqpacket_socket_path>()},
    Option{.name = "datagram-socket",
           .argument = "PATH",
           .default_text = "none",
           .help = "also serve a SOCK_DGRAM socket at PATH; @NAME is abstract",
           .in_file = true,
           .change = restart,
           .field = message_socket_field<&DaemonConfig::datagram_socket_path>()},
    Option{.name = "socket-mode",
           .argument = "OCTAL",
           .default_text = "0660",
           .help = "file mode of a socket the daemon creates",
           .in_file = true,
           .change = restart,
           .field = value_field<parse_octal_mode, mode_text, &DaemonConfig::socket_mode>()},
    Option{.name = "socket-group",
           .argument = "NAME|GID",
           .default_text = "unchanged",
           .help = "group of a socket the daemon creates",
           .in_file = true,
           .change = restart,
           .field = value_field<optional_group, group_text, &DaemonConfig::socket_group>()},
    Option{.name = "threads",
           .argument = "N",
           .default_text = "0",
           .help = "worker threads, 0 = one per two CPUs this process may use (0-1024)",
           .in_file = true,
           .change = restart,
           .field = value_field<thread_count, number_text, &DaemonConfig::threads>()},
    Option{.name = "max-connections",
           .argument = "N",
           .default_text = "10000",
           .help = "stop accepting while N connections are open (1-1000000)",
           .in_file = true,
           .change = run_time,
           .field = value_field<count<1, max_connections_limit>, number_text,
                                &DaemonConfig::max_connections>()},
    Option{.name = "max-connections-per-uid",
           .argument = "N",
           .default_text = "1000",
           .help = "close a peer's connection beyond N open for its uid (root exempt), 0 = no cap",
           .in_file = true,
           .change = run_time,
           .field = value_field<count<0, max_connections_limit>, number_text,
                                &DaemonConfig::max_connections_per_uid>()},
    Option{.name = "idle-timeout",
           .argument = "SEC",
           .default_text = "0",
           .help = "close a connection that sent nothing for SEC seconds, 0 = never",
           .in_file = true,
           .change = run_time,
           .field = value_field<parse_seconds, seconds_text, &DaemonConfig::idle_timeout>()},
    Option{.name = "exit-on-idle",
           .argument = "SEC",
           .default_text = "0",
           .help = "socket-activated only: exit after SEC seconds without connections, 0 = never",
           .in_file = true,
           .change = run_time,
           .field = value_field<parse_seconds, seconds_text, &DaemonConfig::exit_on_idle>()},
    Option{.name = "shutdown-timeout",
           .argument = "SEC",
           .default_text = "5",
           .help = "on SIGTERM/SIGINT, close sessions still open after SEC seconds",
           .in_file = true,
           .change = run_time,
           .field = value_field<parse_seconds, seconds_text, &DaemonConfig::shutdown_timeout>()},
    Option{.name = "buffer-size",
           .argument = "BYTES",
           .default_text = "65536",
           .help = "read buffer per connection, 512 to 64M (K and M suffixes: KiB, MiB)",
           .in_file = true,
           .change = restart,
           .field = value_field<buffer_bytes, number_text, &DaemonConfig::buffer_size>()},
    Option{.name = "allow-uid",
           .argument = "LIST",
           .default_text = "anyone",
           .help = "users (names or uids, comma-separated) allowed to connect; repeatable",
           .in_file = true,
           .repeatable = true,
           .change = run_time,
           .field = id_list_field<IdKind::user, ids_text, &DaemonConfig::access,
                                  &AccessPolicy::allowed_uids>()},
    Option{.name = "allow-gid",
           .argument = "LIST",
           .default_text = "anyone",
           .help = "groups (names or gids, comma-separated) allowed to connect; repeatable",
           .in_file = true,
           .repeatable = true,
           .change = run_time,
           .field = id_list_field<IdKind::group, ids_text, &DaemonConfig::access,
                                  &AccessPolicy::allowed_gids>()},
    Option{.name = "log-level",
           .argument = "LEVEL",
           .default_text = "info",
           .help = "trace, debug, info, warning or error",
           .in_file = true,
           .change = run_time,
           .field = value_field<read_log_level, name_text<LogLevel>, &DaemonConfig::log_level>()},
    Option{.name = "log-format",
           .argument = "FMT",
           .default_text = "auto",
           .help = "auto, text, journal or json",
           .in_file = true,
           .change = run_time,
           .field =
               value_field<read_log_format, name_text<LogFormat>, &DaemonConfig::log_format>()},
    Option{.name = "check-config",
           .help = "validate everything, print the effective configuration and exit",
           .field = check_config_field},
    Option{.name = "version", .short_name = 'V', .help = "print the version and exit"},
    Option{.name = "help", .short_name = 'h', .help = "print this help and exit"},
};

// What can be written in the config file is exactly what SIGHUP applies or reports: the settings,
// each with a field made by one of the builders above. The rest are actions.
constexpr bool is_setting_iff_in_file(const Option& option) {
    return option.in_file == (option.change != Change::never);
}

static_assert(std::all_of(options_table.begin(), options_table.end(), is_setting_iff_in_file),
              "an option in the config file must say whether SIGHUP applies it, and only then");

// `name = value`, or `name =` for an empty value, without trailing blanks.
std::string config_line(const char* name, const std::string& value) {
    return std::string(name) + (value.empty() ? " =" : " = " + value) + "\n";
}

// The names of the options of `change` whose fields differ, in table order.
std::vector<std::string> differences(const DaemonConfig& before, const DaemonConfig& after,
                                     Change change) {
    std::vector<std::string> changed;
    for (const auto& option : options_table)
        if (option.change == change && option.field.differs(before, after))
            changed.emplace_back(option.name);
    return changed;
}

} // namespace

std::span<const Option> all_options() {
    return options_table;
}

const Option* find_option(std::string_view name) {
    for (const auto& option : options_table)
        if (name == option.name)
            return &option;
    return nullptr;
}

boost::program_options::options_description program_options(OptionsFor use) {
    namespace po = boost::program_options;
    po::options_description description;
    for (const auto& option : options_table) {
        if (use == OptionsFor::config_file && !option.in_file)
            continue;
        std::string names = option.name;
        if (option.short_name != '\0' && use == OptionsFor::command_line)
            names += std::string(",") + option.short_name;
        const po::value_semantic* semantic =
            option.argument != nullptr
                ? po::value<std::string>()
                : static_cast<po::value_semantic*>(new po::untyped_value(true));
        description.add(
            boost::make_shared<po::option_description>(names.c_str(), semantic, option.help));
    }
    return description;
}

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

void apply(const Settings& settings, DaemonConfig& config, SocketSetting& socket) {
    SourceState state{config, socket, {}};
    for (const auto& setting : settings) {
        // config, help and version have no field: they were acted on before.
        const auto* option = find_option(setting.name);
        if (option != nullptr && option->field.parse != nullptr)
            option->field.parse(setting, state);
    }
}

} // namespace uds_echo::daemon::config_detail

namespace uds_echo::daemon {

using config_detail::Change;
using config_detail::options_table;

std::string DaemonConfig::describe() const {
    std::string text = "# Effective configuration of uds-echod (" +
                       (config_file.empty() ? "no config file" : "config file " + config_file) +
                       ")\n";
    for (const auto& option : options_table)
        if (option.field.print != nullptr)
            text += config_detail::config_line(option.name, option.field.print(*this));
    return text;
}

std::vector<std::string> options_needing_restart(const DaemonConfig& before,
                                                 const DaemonConfig& after) {
    return config_detail::differences(before, after, Change::after_restart);
}

std::vector<std::string> options_changed_at_runtime(const DaemonConfig& before,
                                                    const DaemonConfig& after) {
    return config_detail::differences(before, after, Change::at_run_time);
}

void take_runtime_options(DaemonConfig& running, const DaemonConfig& reloaded) {
    for (const auto& option : options_table)
        if (option.change == Change::at_run_time)
            option.field.copy(running, reloaded);
}

} // namespace uds_echo::daemon
