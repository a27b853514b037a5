// The daemon's configuration: command line and INI config file through Boost.Program_options,
// validated completely before anything starts. The options are described in docs/configuration.md
// and uds-echo.conf(5).
#pragma once

#include "common/exit_codes.hpp"
#include "daemon/access.hpp"
#include "daemon/logging.hpp"

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace uds_echo::daemon {

constexpr std::size_t default_buffer_size = 64 * 1024;
constexpr std::size_t min_buffer_size = 512;
constexpr std::size_t max_buffer_size = 64 * 1024 * 1024;

struct DaemonConfig {
    std::string config_file; // the file that was read; empty when none
    std::string socket_path; // resolved (see "Socket path" in docs/configuration.md), validated
    std::string seqpacket_socket_path; // --seqpacket-socket, validated; empty: none
    std::string datagram_socket_path;  // --datagram-socket, validated; empty: none
    mode_t socket_mode = 0660;
    std::optional<gid_t> socket_group; // resolved from a name or a number
    unsigned threads = 1;              // resolved: 0 on input becomes default_worker_count()
    unsigned max_connections = 10000;
    unsigned max_connections_per_uid = 1000; // 0 = no cap; uid 0 is never capped
    std::chrono::seconds idle_timeout{0};    // 0 = never
    std::chrono::seconds exit_on_idle{0};    // 0 = never
    std::chrono::seconds shutdown_timeout{5};
    std::size_t buffer_size = default_buffer_size;
    AccessPolicy access;
    LogLevel log_level = LogLevel::info;
    LogFormat log_format = LogFormat::automatic;
    bool check_config = false;

    // The effective configuration in config file syntax, one `name = value` per line, as printed
    // by --check-config.
    std::string describe() const;
};

// What the command line asked for when it did not ask to run: the text for stdout (--help or
// --version), and exit 0.
struct InformationRequest {
    std::string text;
};

using ParseResult = std::variant<DaemonConfig, InformationRequest>;

// Parses the daemon's arguments (without argv[0]) and the config file they name (or the system
// one, if it exists), with the environment for UDS_ECHO_SOCKET and the default path.
// Throws Failure(ExitCode::usage) for a bad command line and Failure(ExitCode::config) for a bad
// or missing config file; the message names the option, or the file and line.
// `default_config_file` is the file read when --config is absent and it exists.
ParseResult
parse_daemon_config(const std::vector<std::string>& args,
                    const std::string& default_config_file = "/etc/uds-echo/uds-echo.conf");

// What SIGHUP does with a reloaded configuration. Every option is marked in the table of options
// as applied at run time or needing a restart; docs/configuration.md lists which is which.

// Names of the options that differ between `before` and `after` and only take effect after a
// restart, in --help order, for the SIGHUP log.
std::vector<std::string> options_needing_restart(const DaemonConfig& before,
                                                 const DaemonConfig& after);

// Names of the options that differ and are applied at run time, in --help order.
std::vector<std::string> options_changed_at_runtime(const DaemonConfig& before,
                                                    const DaemonConfig& after);

// Copies every option applied at run time from `reloaded` into `running` and leaves the others
// (those needing a restart, the config file's name, check_config) as the daemon started with them.
// Afterwards options_changed_at_runtime(running, reloaded) is empty. Applying the new values to
// the running daemon (the log setup, the workers) is the caller's part.
void take_runtime_options(DaemonConfig& running, const DaemonConfig& reloaded);

// The number of CPUs this process may run on (sched_getaffinity), at least 1.
unsigned available_cpus();

// The workers of --threads 0 (the default): one per two available CPUs, at least one. The clients
// of a Unix-domain socket run on the same machine, and each message costs them the same system
// calls it costs the daemon; a worker per CPU leaves them none (docs/architecture.md, "Threads
// and event loops", has the measurements).
unsigned default_worker_count();

} // namespace uds_echo::daemon
