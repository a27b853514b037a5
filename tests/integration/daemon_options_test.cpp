// uds-echod's command line and config file (docs/configuration.md): bad input is refused with one
// line and the right exit code before anything starts; good input is applied with the documented
// precedence.
#define BOOST_TEST_MODULE integration_daemon_options
#include <boost/test/unit_test.hpp>

#include "process.hpp"

#include <unistd.h>

#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

using namespace uds_echo::test;

namespace {

// Runs uds-echod to completion in a clean environment. When the arguments name no config file,
// an empty one is added so that /etc/uds-echo/uds-echo.conf never plays a part; when they name no
// socket, one in `dir` is added so that a daemon that wrongly starts touches nothing outside it.
RunResult run_daemon(const TempDir& dir, std::vector<std::string> args,
                     const Environment& extra_environment = {}) {
    ProcessOptions options;
    options.argv = {daemon_binary()};
    auto mentions = [&](const std::string& long_name, const std::string& short_name) {
        for (const auto& arg : args)
            if (arg == long_name || arg == short_name || arg.starts_with(long_name + "="))
                return true;
        return false;
    };
    if (!mentions("--config", "-c")) {
        options.argv.push_back("--config");
        options.argv.push_back(dir.write_file("empty.conf", ""));
    }
    if (!mentions("--socket", "-s") && !extra_environment.contains("UDS_ECHO_SOCKET")) {
        options.argv.push_back("--socket");
        options.argv.push_back(dir.file("s.sock"));
    }
    options.argv.insert(options.argv.end(), args.begin(), args.end());
    options.environment = clean_daemon_environment();
    for (const auto& [name, value] : extra_environment)
        options.environment[name] = value;
    return run(options, 10s);
}

// Exit code `code`, exactly one line on stderr, nothing on stdout, and no socket created.
void check_refused(const TempDir& dir, const RunResult& result, int code) {
    BOOST_TEST(result.status == (ExitStatus{false, code}), "stderr: " << result.err);
    BOOST_TEST(non_empty_lines(result.err).size() == 1u, "stderr: " << result.err);
    BOOST_TEST(result.err.ends_with("\n"), "stderr: " << result.err);
    BOOST_TEST(result.out.empty(), "stdout: " << result.out);
    BOOST_TEST(!path_exists(dir.file("s.sock")));
}

} // namespace

// ---- the command line ----

BOOST_AUTO_TEST_CASE(unknown_option_is_a_usage_error) {
    TempDir dir;
    RunResult result = run_daemon(dir, {"--frobnicate"});
    check_refused(dir, result, exit_usage);
    BOOST_TEST(contains(result.err, "frobnicate"), "stderr: " << result.err);
}

BOOST_AUTO_TEST_CASE(non_numeric_threads_is_a_usage_error) {
    TempDir dir;
    RunResult result = run_daemon(dir, {"--threads", "abc"});
    check_refused(dir, result, exit_usage);
    BOOST_TEST(contains(result.err, "threads"), "stderr: " << result.err);
}

BOOST_AUTO_TEST_CASE(negative_threads_is_a_usage_error) {
    TempDir dir;
    RunResult result = run_daemon(dir, {"--threads", "-1"});
    check_refused(dir, result, exit_usage);
    BOOST_TEST(contains(result.err, "threads"), "stderr: " << result.err);
}

BOOST_AUTO_TEST_CASE(positional_argument_is_a_usage_error) {
    TempDir dir;
    RunResult result = run_daemon(dir, {"extra"});
    check_refused(dir, result, exit_usage);
}

BOOST_AUTO_TEST_CASE(unknown_log_level_is_a_usage_error) {
    TempDir dir;
    RunResult result = run_daemon(dir, {"--log-level", "loud"});
    check_refused(dir, result, exit_usage);
    BOOST_TEST(contains(result.err, "log-level"), "stderr: " << result.err);
}

BOOST_AUTO_TEST_CASE(bad_socket_mode_is_a_usage_error) {
    TempDir dir;
    RunResult result = run_daemon(dir, {"--socket-mode", "0999"});
    check_refused(dir, result, exit_usage);
}

BOOST_AUTO_TEST_CASE(option_without_its_value_is_a_usage_error) {
    TempDir dir;
    RunResult result = run_daemon(dir, {"--threads"});
    check_refused(dir, result, exit_usage);
}

// ---- the config file ----

BOOST_AUTO_TEST_CASE(missing_named_config_file_is_a_config_error) {
    TempDir dir;
    std::string missing = dir.file("missing.conf");
    RunResult result = run_daemon(dir, {"--config", missing});
    check_refused(dir, result, exit_config);
    BOOST_TEST(contains(result.err, missing), "stderr: " << result.err);
}

BOOST_AUTO_TEST_CASE(unknown_key_is_a_config_error_with_file_and_line) {
    TempDir dir;
    std::string config = dir.write_file("bad.conf", "# comment\nthreads = 1\ncolour = blue\n");
    RunResult result = run_daemon(dir, {"--config", config});
    check_refused(dir, result, exit_config);
    BOOST_TEST(contains(result.err, config + ":3"), "stderr: " << result.err);
    BOOST_TEST(contains(result.err, "colour"), "stderr: " << result.err);
}

BOOST_AUTO_TEST_CASE(bad_value_is_a_config_error_with_file_and_line) {
    TempDir dir;
    std::string config = dir.write_file("bad.conf", "log-level = info\n\nthreads = many\n");
    RunResult result = run_daemon(dir, {"--config", config});
    check_refused(dir, result, exit_config);
    BOOST_TEST(contains(result.err, config + ":3"), "stderr: " << result.err);
    BOOST_TEST(contains(result.err, "threads"), "stderr: " << result.err);
}

BOOST_AUTO_TEST_CASE(garbage_line_is_a_config_error) {
    TempDir dir;
    std::string config = dir.write_file("bad.conf", "threads = 1\nthis is not ini at all\n");
    RunResult result = run_daemon(dir, {"--config", config});
    check_refused(dir, result, exit_config);
    BOOST_TEST(contains(result.err, config), "stderr: " << result.err);
}

BOOST_AUTO_TEST_CASE(
    bad_value_in_the_file_is_refused_even_when_the_command_line_overrides_another) {
    // Nothing starts half-configured: a bad file is bad whatever the command line says.
    TempDir dir;
    std::string config = dir.write_file("bad.conf", "log-level = loud\n");
    RunResult result = run_daemon(dir, {"--config", config, "--threads", "1"});
    check_refused(dir, result, exit_config);
    BOOST_TEST(contains(result.err, config + ":1"), "stderr: " << result.err);
}

// ---- information requests ----

BOOST_AUTO_TEST_CASE(check_config_prints_the_effective_configuration_and_creates_nothing) {
    TempDir dir;
    std::string socket = dir.file("s.sock");
    RunResult result = run_daemon(dir, {"--check-config", "--threads", "3"});
    BOOST_TEST(result.status == (ExitStatus{false, 0}), "stderr: " << result.err);
    BOOST_TEST(contains(result.out, "threads = 3"), "stdout: " << result.out);
    BOOST_TEST(contains(result.out, socket), "stdout: " << result.out);
    BOOST_TEST(contains(result.out, "socket-mode = "), "stdout: " << result.out);
    BOOST_TEST(!path_exists(socket));
}

BOOST_AUTO_TEST_CASE(check_config_reports_a_bad_file) {
    TempDir dir;
    std::string config = dir.write_file("bad.conf", "threads = many\n");
    RunResult result = run_daemon(dir, {"--check-config", "--config", config});
    check_refused(dir, result, exit_config);
}

BOOST_AUTO_TEST_CASE(version_and_help_print_to_stdout) {
    TempDir dir;
    for (const std::string option : {"--version", "-V"}) {
        RunResult result = run_daemon(dir, {option});
        BOOST_TEST(result.status == (ExitStatus{false, 0}), option << " stderr: " << result.err);
        BOOST_TEST(contains(result.out, "0."), option << " stdout: " << result.out);
        BOOST_TEST(result.err.empty(), option << " stderr: " << result.err);
    }
    for (const std::string option : {"--help", "-h"}) {
        RunResult result = run_daemon(dir, {option});
        BOOST_TEST(result.status == (ExitStatus{false, 0}), option << " stderr: " << result.err);
        for (const char* documented : {"--socket", "--threads", "--shutdown-timeout", "--config"})
            BOOST_TEST(contains(result.out, documented), option << " stdout: " << result.out);
        BOOST_TEST(result.err.empty(), option << " stderr: " << result.err);
    }
    BOOST_TEST(!path_exists(dir.file("s.sock")));
}

// ---- precedence (docs/protocol.md, "Where the socket is") ----

BOOST_AUTO_TEST_CASE(command_line_wins_over_the_file) {
    TempDir dir;
    std::string config = dir.write_file("c.conf", "socket = " + dir.file("from-file.sock") +
                                                      "\nthreads = 2\nshutdown-timeout = 7\n");
    RunResult result = run_daemon(dir, {"--config", config, "--check-config", "--socket",
                                        dir.file("from-cli.sock"), "--shutdown-timeout", "3"});
    BOOST_TEST(result.status == (ExitStatus{false, 0}), "stderr: " << result.err);
    BOOST_TEST(contains(result.out, dir.file("from-cli.sock")), "stdout: " << result.out);
    BOOST_TEST(!contains(result.out, "from-file.sock"), "stdout: " << result.out);
    BOOST_TEST(contains(result.out, "shutdown-timeout = 3"), "stdout: " << result.out);
    // What the command line does not mention comes from the file.
    BOOST_TEST(contains(result.out, "threads = 2"), "stdout: " << result.out);
}

BOOST_AUTO_TEST_CASE(a_running_daemon_uses_the_command_line_socket_over_the_file) {
    TempDir dir;
    std::string config = dir.write_file("c.conf", "socket = " + dir.file("from-file.sock") + "\n");
    Daemon daemon =
        start_daemon(dir, DaemonOptions::at(dir.file("from-cli.sock"), {"--config", config}));
    BOOST_TEST(echo_through(daemon.socket, "x") == "x");
    BOOST_TEST(!path_exists(dir.file("from-file.sock")));
    BOOST_TEST(stop_daemon(daemon).exited_with(0));
}

BOOST_AUTO_TEST_CASE(config_file_socket_is_used) {
    TempDir dir;
    std::string config = dir.write_file("c.conf", "socket = " + dir.file("from-file.sock") + "\n");
    DaemonOptions options = DaemonOptions::at(dir.file("from-file.sock"), {"--config", config});
    options.pass_socket = false;
    Daemon daemon = start_daemon(dir, options);
    BOOST_TEST(echo_through(daemon.socket, "y") == "y");
    BOOST_TEST(stop_daemon(daemon).exited_with(0));
}

BOOST_AUTO_TEST_CASE(environment_socket_is_used_without_the_option) {
    TempDir dir;
    std::string socket = dir.file("from-env.sock");
    std::string config = dir.write_file("c.conf", "socket = " + dir.file("from-file.sock") + "\n");
    DaemonOptions options = DaemonOptions::at(socket, {"--config", config});
    options.pass_socket = false;
    options.environment["UDS_ECHO_SOCKET"] = socket;
    Daemon daemon = start_daemon(dir, options);
    BOOST_TEST(echo_through(socket, "z") == "z");
    // The environment comes before the config file.
    BOOST_TEST(!path_exists(dir.file("from-file.sock")));
    BOOST_TEST(stop_daemon(daemon).exited_with(0));
}

BOOST_AUTO_TEST_CASE(socket_option_wins_over_the_environment) {
    TempDir dir;
    RunResult result = run_daemon(dir, {"--check-config", "--socket", dir.file("from-cli.sock")},
                                  {{"UDS_ECHO_SOCKET", dir.file("from-env.sock")}});
    BOOST_TEST(result.status == (ExitStatus{false, 0}), "stderr: " << result.err);
    BOOST_TEST(contains(result.out, dir.file("from-cli.sock")), "stdout: " << result.out);
    BOOST_TEST(!contains(result.out, "from-env.sock"), "stdout: " << result.out);
}

// ---- the log ----

namespace {

// The line of `log` that contains every one of `parts`, or "" when none does.
std::string line_with(const std::string& log, std::initializer_list<std::string_view> parts) {
    for (const auto& line : non_empty_lines(log)) {
        bool all = true;
        for (const auto part : parts)
            all = all && contains(line, part);
        if (all)
            return line;
    }
    return {};
}

} // namespace

BOOST_AUTO_TEST_CASE(json_log_has_the_peer_as_fields_and_each_connection_s_end) {
    TempDir dir;
    Daemon daemon =
        start_daemon(dir, DaemonOptions::with_args({"--log-level", "debug", "--log-format", "json",
                                                    "--idle-timeout", "1"}));
    {
        FileDescriptor client = connect_unix(daemon.socket);
        write_all(client.get(), "0123456789");
        BOOST_TEST(read_exact(client.get(), 10) == "0123456789");
    }
    FileDescriptor idle = connect_unix(daemon.socket);
    BOOST_TEST(wait_until([&] { return contains(daemon.process.stderr_text(), "idleness"); }, 10s),
               "stderr: " << daemon.process.stderr_text());
    BOOST_TEST(stop_daemon(daemon).exited_with(0));
    const std::string log = daemon.process.stderr_text();

    for (const auto& line : non_empty_lines(log))
        BOOST_TEST((line.starts_with("{\"time\":\"") && line.ends_with("}")), "line: " << line);
    // The connection that sent 10 bytes: its end, with what it echoed, then its start with the
    // peer's credentials as numbers of their own.
    const std::string closed = line_with(log, {" closed after ", ", 10 B echoed\""});
    BOOST_REQUIRE_MESSAGE(!closed.empty(), "stderr: " << log);
    const auto at = closed.find("\"connection\":");
    BOOST_REQUIRE(at != std::string::npos);
    const std::string id = closed.substr(at, closed.find_first_of(",}", at) - at);
    const std::string accepted = line_with(log, {" accepted by worker ", id + ","});
    BOOST_TEST(!accepted.empty(), "stderr: " << log);
    BOOST_TEST(contains(accepted, "\"pid\":" + std::to_string(::getpid())), accepted);
    BOOST_TEST(contains(accepted, "\"uid\":" + std::to_string(::getuid())), accepted);
    BOOST_TEST(contains(accepted, "\"gid\":" + std::to_string(::getgid())), accepted);
    BOOST_TEST(!line_with(log, {" closed for idleness after "}).empty(), "stderr: " << log);
}
