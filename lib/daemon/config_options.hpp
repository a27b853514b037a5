// Inside the configuration: the table of the daemon's options, and the settings read from the
// command line and the config file on their way into a DaemonConfig.
#pragma once

#include "common/config_file.hpp"
#include "daemon/config.hpp"

#include <boost/program_options/options_description.hpp>

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace uds_echo::daemon::config_detail {

// The settings as the config file reader gives them (common/config_file.hpp).
using uds_echo::config_detail::last;
using uds_echo::config_detail::Origin;
using uds_echo::config_detail::parse_config_text;
using uds_echo::config_detail::place;
using uds_echo::config_detail::read_config_text;
using uds_echo::config_detail::reject;
using uds_echo::config_detail::Setting;
using uds_echo::config_detail::Settings;
using uds_echo::config_detail::validate_socket_setting;

// When a changed value takes effect.
enum class Change {
    at_run_time,   // SIGHUP applies it
    after_restart, // SIGHUP logs that it needs a restart
    never,         // an action (--help, --check-config), not a setting
};

// What the settings of one source (the command line or the file) write into.
struct SourceState;

// How an option reaches its DaemonConfig field and back. Any of these is null for an option that
// has no field (--config, --help, --version) or no value to print (--check-config).
struct Field {
    void (*parse)(const Setting&, SourceState&) = nullptr; // the value text into the field
    std::string (*print)(const DaemonConfig&) = nullptr;   // the field as config file text
    bool (*differs)(const DaemonConfig&, const DaemonConfig&) = nullptr;
    void (*copy)(DaemonConfig& to, const DaemonConfig& from) = nullptr;
};

// One row of the table: everything the help, the parsers, --check-config and SIGHUP know about
// an option.
struct Option {
    const char* name;
    char short_name = '\0';
    const char* argument = nullptr;     // nullptr for a flag
    const char* default_text = nullptr; // for --help; nullptr when there is no default to show
    const char* help = "";
    bool in_file = false;    // may be set in the config file, not only on the command line
    bool repeatable = false; // occurrences accumulate instead of being an error
    Change change = Change::never;
    Field field = {};
};

// The table, in the order of --help and --check-config.
std::span<const Option> all_options();

const Option* find_option(std::string_view name);

// The options as Program_options knows them: all of them with their short names for the command
// line, or only those allowed in the config file.
enum class OptionsFor { command_line, config_file };
boost::program_options::options_description program_options(OptionsFor use);

// Rejects a second occurrence of an option that takes one value.
void check_repetition(const Settings& settings);

// The socket path of one source, kept apart because the environment sits between the command
// line and the file in the order of precedence.
using SocketSetting = std::optional<std::string>;

// Parses the settings of one source, in order, into `config` (and the socket path into `socket`).
// A repeatable option's first occurrence in a source replaces what an earlier source set; further
// occurrences add to it.
void apply(const Settings& settings, DaemonConfig& config, SocketSetting& socket);

} // namespace uds_echo::daemon::config_detail
