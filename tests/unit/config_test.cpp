// The daemon's configuration (docs/configuration.md): command line, config file, precedence,
// validation, exit codes and messages, describe(), the SIGHUP differences and what a reload takes
// over, and the option value parsers.
#define BOOST_TEST_MODULE config
#include <boost/test/unit_test.hpp>

#include "process.hpp"

#include "common/config_file.hpp"
#include "common/config_values.hpp"
#include "common/paths.hpp"
#include "daemon/config.hpp"

#include <sched.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string_view>

using namespace uds_echo;
using namespace uds_echo::daemon;
using uds_echo::test::contains;
using Args = std::vector<std::string>;

namespace uds_echo {
// How Boost.Test prints these in a failed check.
std::ostream& boost_test_print_type(std::ostream& out, ExitCode code) {
    return out << to_int(code);
}
} // namespace uds_echo

namespace uds_echo::daemon {
std::ostream& boost_test_print_type(std::ostream& out, LogLevel level) {
    return out << to_string(level);
}
std::ostream& boost_test_print_type(std::ostream& out, LogFormat format) {
    return out << to_string(format);
}
} // namespace uds_echo::daemon

namespace {

const std::string no_default_file = "/nonexistent/uds-echo.conf";

// The shipped file, found from this source file: tests/unit/ -> config/.
const std::string shipped_config_file =
    (std::filesystem::path(__FILE__).parent_path() / "../../config/uds-echo.conf").string();

// The tests decide the socket path themselves.
struct CleanEnvironment {
    CleanEnvironment() { ::unsetenv(socket_env_variable); }
};
BOOST_TEST_GLOBAL_FIXTURE(CleanEnvironment);

struct TempDir {
    std::string path;
    TempDir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "config-test-XXXXXX");
        BOOST_REQUIRE(::mkdtemp(pattern.data()) != nullptr);
        path = pattern;
    }
    ~TempDir() { std::filesystem::remove_all(path); }

    std::string write(const std::string& name, const std::string& text) const {
        const std::string file = path + "/" + name;
        std::ofstream(file) << text;
        return file;
    }
};

DaemonConfig parse(const Args& args, const std::string& default_file = no_default_file) {
    auto result = parse_daemon_config(args, default_file);
    BOOST_REQUIRE(std::holds_alternative<DaemonConfig>(result));
    return std::get<DaemonConfig>(std::move(result));
}

std::string information(const Args& args) {
    auto result = parse_daemon_config(args, no_default_file);
    BOOST_REQUIRE(std::holds_alternative<InformationRequest>(result));
    return std::get<InformationRequest>(result).text;
}

struct Refusal {
    ExitCode code = ExitCode::ok;
    std::string message;
};

Refusal refusal(const Args& args, const std::string& default_file = no_default_file) {
    try {
        parse_daemon_config(args, default_file);
    } catch (const Failure& failure) {
        return {failure.code(), failure.what()};
    }
    BOOST_FAIL("the arguments were accepted");
    return {};
}

// How the client's reading of `file` fails.
Refusal client_refusal(const std::string& file) {
    try {
        read_sockets_from_config_file(file).stream;
    } catch (const Failure& failure) {
        return {failure.code(), failure.what()};
    }
    BOOST_FAIL("the file was accepted");
    return {};
}

void check_usage_error(const Args& args, const std::string& expected_part) {
    const auto result = refusal(args);
    BOOST_TEST(result.code == ExitCode::usage, "exit code for " << args.back());
    BOOST_TEST(contains(result.message, expected_part),
               "message \"" << result.message << "\" should contain \"" << expected_part << "\"");
    BOOST_TEST(result.message.find('\n') == std::string::npos);
    BOOST_TEST(!contains(result.message, "uds-echod:"));
}

void check_file_error(const std::string& file_text, const std::string& expected_part) {
    TempDir temp;
    const auto file = temp.write("bad.conf", file_text);
    const auto result = refusal({"--config", file});
    BOOST_TEST(result.code == ExitCode::config, "exit code for " << file_text);
    const auto expected = file + ":" + expected_part;
    BOOST_TEST(contains(result.message, expected),
               "message \"" << result.message << "\" should contain \"" << expected << "\"");
    BOOST_TEST(result.message.find('\n') == std::string::npos);
}

// describe() without its first line, which names the file that was read.
std::string settings_of(const DaemonConfig& config) {
    const auto text = config.describe();
    return text.substr(text.find('\n') + 1);
}

// The option names in describe()'s output.
std::vector<std::string> described_names(const DaemonConfig& config) {
    std::vector<std::string> names;
    std::istringstream lines(settings_of(config));
    for (std::string line; std::getline(lines, line);)
        names.push_back(line.substr(0, line.find(' ')));
    return names;
}

// Every file option with a value other than its default, in the --name=value form.
Args every_option_changed() {
    Args args{"--socket=/tmp/other.sock",
              "--seqpacket-socket=/tmp/other-seqpacket.sock",
              "--datagram-socket=@other-datagram",
              "--socket-mode=0600",
              "--socket-group=0",
              "--max-connections=5",
              "--max-connections-per-uid=4",
              "--idle-timeout=1",
              "--exit-on-idle=2",
              "--shutdown-timeout=3",
              "--buffer-size=1024",
              "--allow-uid=0,1",
              "--allow-gid=0",
              "--log-level=error",
              "--log-format=json"};
    args.push_back("--threads=" + std::to_string(available_cpus() + 1));
    return args;
}

} // namespace

BOOST_AUTO_TEST_SUITE(defaults_and_command_line)

BOOST_AUTO_TEST_CASE(defaults) {
    const auto config = parse({});
    BOOST_TEST(config.config_file == "");
    BOOST_TEST(config.socket_path == default_socket_path(current_user()));
    BOOST_TEST(config.socket_mode == 0660u);
    BOOST_TEST(!config.socket_group.has_value());
    BOOST_TEST(config.threads == default_worker_count());
    BOOST_TEST(config.max_connections == 10000u);
    BOOST_TEST(config.max_connections_per_uid == 1000u);
    BOOST_TEST(config.idle_timeout.count() == 0);
    BOOST_TEST(config.exit_on_idle.count() == 0);
    BOOST_TEST(config.shutdown_timeout.count() == 5);
    BOOST_TEST(config.buffer_size == default_buffer_size);
    BOOST_TEST(!config.access.restricts());
    BOOST_TEST(config.log_level == LogLevel::info);
    BOOST_TEST(config.log_format == LogFormat::automatic);
    BOOST_TEST(!config.check_config);
}

BOOST_AUTO_TEST_CASE(every_option_on_the_command_line) {
    const auto config = parse(
        {"--socket",       "/tmp/x.sock", "--socket-mode",      "0600", "--socket-group", "0",
         "--threads",      "3",           "--max-connections",  "7",    "--idle-timeout", "30",
         "--exit-on-idle", "60",          "--shutdown-timeout", "9",    "--buffer-size",  "4096",
         "--allow-uid",    "0,1",         "--allow-gid",        "2",    "--log-level",    "debug",
         "--log-format",   "json",        "--check-config"});
    BOOST_TEST(config.socket_path == "/tmp/x.sock");
    BOOST_TEST(config.socket_mode == 0600u);
    BOOST_TEST(config.socket_group.value_or(99) == 0u);
    BOOST_TEST(config.threads == 3u);
    BOOST_TEST(config.max_connections == 7u);
    BOOST_TEST(config.idle_timeout.count() == 30);
    BOOST_TEST(config.exit_on_idle.count() == 60);
    BOOST_TEST(config.shutdown_timeout.count() == 9);
    BOOST_TEST(config.buffer_size == 4096u);
    BOOST_TEST(config.access.allowed_uids == (std::vector<uid_t>{0, 1}),
               boost::test_tools::per_element());
    BOOST_TEST(config.access.allowed_gids == (std::vector<gid_t>{2}),
               boost::test_tools::per_element());
    BOOST_TEST(config.log_level == LogLevel::debug);
    BOOST_TEST(config.log_format == LogFormat::json);
    BOOST_TEST(config.check_config);
}

BOOST_AUTO_TEST_CASE(short_options_and_adjacent_values) {
    BOOST_TEST(parse({"-s", "/tmp/a.sock"}).socket_path == "/tmp/a.sock");
    BOOST_TEST(parse({"-s/tmp/b.sock"}).socket_path == "/tmp/b.sock");
    BOOST_TEST(parse({"--socket=/tmp/c.sock"}).socket_path == "/tmp/c.sock");
    BOOST_TEST(parse({"--threads=2"}).threads == 2u);
}

BOOST_AUTO_TEST_CASE(help_and_version) {
    const auto help = information({"--help"});
    BOOST_TEST(help == information({"-h"}));
    BOOST_TEST(contains(help, "Usage: uds-echod"));
    for (const char* name : {"--config",
                             "--socket",
                             "--socket-mode",
                             "--socket-group",
                             "--threads",
                             "--max-connections",
                             "--idle-timeout",
                             "--exit-on-idle",
                             "--shutdown-timeout",
                             "--buffer-size",
                             "--allow-uid",
                             "--allow-gid",
                             "--log-level",
                             "--log-format",
                             "--check-config",
                             "--version",
                             "--help",
                             "-c,",
                             "-s,",
                             "-V,",
                             "-h,"})
        BOOST_TEST(contains(help, name), name);
    BOOST_TEST(contains(help, "[10000]"));
    BOOST_TEST(information({"--version"}) == std::string("uds-echod ") + UDS_ECHO_VERSION + "\n");
    BOOST_TEST(information({"-V"}) == information({"--version"}));
}

BOOST_AUTO_TEST_CASE(threads_zero_means_one_worker_per_two_cpus_of_the_affinity_mask) {
    cpu_set_t cpus;
    BOOST_REQUIRE(::sched_getaffinity(0, sizeof cpus, &cpus) == 0);
    BOOST_TEST(available_cpus() == static_cast<unsigned>(CPU_COUNT(&cpus)));
    BOOST_TEST(available_cpus() >= 1u);
    BOOST_TEST(default_worker_count() == std::max(1u, available_cpus() / 2));
    BOOST_TEST(parse({"--threads", "0"}).threads == default_worker_count());
    BOOST_TEST(parse({"--threads", "1024"}).threads == 1024u);
}

BOOST_AUTO_TEST_CASE(socket_mode_forms) {
    BOOST_TEST(parse({"--socket-mode", "660"}).socket_mode == 0660u);
    BOOST_TEST(parse({"--socket-mode", "0777"}).socket_mode == 0777u);
    BOOST_TEST(parse({"--socket-mode", "0"}).socket_mode == 0u);
}

BOOST_AUTO_TEST_CASE(buffer_size_suffixes_are_binary) {
    BOOST_TEST(parse({"--buffer-size", "64K"}).buffer_size == 65536u);
    BOOST_TEST(parse({"--buffer-size", "64KiB"}).buffer_size == 65536u);
    BOOST_TEST(parse({"--buffer-size", "1M"}).buffer_size == 1048576u);
    BOOST_TEST(parse({"--buffer-size", "64MiB"}).buffer_size == max_buffer_size);
    BOOST_TEST(parse({"--buffer-size", "512"}).buffer_size == min_buffer_size);
}

BOOST_AUTO_TEST_CASE(ids_by_name_and_number) {
    const auto config = parse({"--socket-group", "root", "--allow-uid", "root, 5", "--allow-gid",
                               "root", "--allow-uid", "3,5"});
    BOOST_TEST(config.socket_group.value_or(99) == 0u);
    // Sorted and without duplicates, so that SIGHUP diffs do not depend on the order written.
    BOOST_TEST(config.access.allowed_uids == (std::vector<uid_t>{0, 3, 5}),
               boost::test_tools::per_element());
    BOOST_TEST(config.access.allowed_gids == (std::vector<gid_t>{0}),
               boost::test_tools::per_element());
    BOOST_TEST(!parse({"--socket-group", ""}).socket_group.has_value());
    BOOST_TEST(!parse({"--allow-uid", ""}).access.restricts());
}

BOOST_AUTO_TEST_CASE(bad_numbers_are_usage_errors_naming_the_option) {
    check_usage_error({"--threads", "abc"}, "--threads: \"abc\" is not a number");
    check_usage_error({"--threads", "1025"}, "--threads: \"1025\" is out of range");
    check_usage_error({"--threads", "2x"}, "--threads: \"2x\" is not a number");
    check_usage_error({"--threads", " 2"}, "--threads");
    check_usage_error({"--threads", ""}, "--threads: \"\" is not a number");
    check_usage_error({"--threads", "99999999999999999999999"}, "is out of range");
    check_usage_error({"--max-connections", "0"}, "--max-connections: \"0\" is out of range");
    check_usage_error({"--max-connections", "1000001"}, "--max-connections");
    check_usage_error({"--idle-timeout", "1.5"}, "--idle-timeout: \"1.5\" is not a number");
    check_usage_error({"--exit-on-idle", "31536001"}, "--exit-on-idle");
    check_usage_error({"--shutdown-timeout", "soon"}, "--shutdown-timeout");
    check_usage_error({"--buffer-size", "511"}, "--buffer-size: \"511\" is out of range");
    check_usage_error({"--buffer-size", "65M"}, "--buffer-size: \"65M\" is out of range");
    check_usage_error({"--buffer-size", "4G"}, "--buffer-size: \"4G\" is not a size");
    check_usage_error({"--buffer-size", "-1K"}, "--buffer-size: \"-1K\" is negative");
    check_usage_error({"--buffer-size", "99999999999999999999999M"}, "is out of range");
    check_usage_error({"--buffer-size", "K"}, "--buffer-size");
}

BOOST_AUTO_TEST_CASE(negative_numbers_are_refused) {
    check_usage_error({"--threads", "-1"}, "--threads: \"-1\" is negative");
    check_usage_error({"--threads=-1"}, "--threads: \"-1\" is negative");
    check_usage_error({"--max-connections", "-5"}, "--max-connections");
    check_usage_error({"--idle-timeout", "-1"}, "--idle-timeout");
    check_usage_error({"--shutdown-timeout", "-1"}, "--shutdown-timeout");
    check_usage_error({"--buffer-size", "-1024"}, "--buffer-size");
    check_usage_error({"--allow-uid", "-1"}, "--allow-uid");
    check_usage_error({"--socket-group", "-1"}, "--socket-group");
}

BOOST_AUTO_TEST_CASE(bad_words_are_usage_errors_naming_the_option) {
    check_usage_error({"--socket-mode", "0778"}, "--socket-mode: \"0778\" is not an octal mode");
    check_usage_error({"--socket-mode", "1777"}, "--socket-mode: \"1777\" is out of range");
    check_usage_error({"--socket-mode", "rw"}, "--socket-mode");
    check_usage_error({"--socket-group", "no-such-group-here"},
                      "--socket-group: \"no-such-group-here\" is not a known group");
    check_usage_error({"--allow-uid", "no-such-user-here"},
                      "--allow-uid: \"no-such-user-here\" is not a known user");
    check_usage_error({"--allow-gid", "0,no-such-group-here"}, "--allow-gid");
    check_usage_error({"--allow-uid", "1,,2"}, "--allow-uid: \"1,,2\" has an empty entry");
    check_usage_error({"--allow-uid", "4294967295"}, "--allow-uid: \"4294967295\" is out of range");
    check_usage_error({"--log-level", "verbose"}, "--log-level: \"verbose\" is not a log level");
    check_usage_error({"--log-format", "xml"}, "--log-format: \"xml\" is not a log format");
}

BOOST_AUTO_TEST_CASE(command_line_syntax_errors) {
    check_usage_error({"--frobnicate"}, "--frobnicate: unknown option");
    check_usage_error({"-x"}, "-x: unknown option");
    check_usage_error({"--thread", "2"}, "--thread: unknown option"); // no abbreviations
    check_usage_error({"--threads"}, "--threads: missing value");
    check_usage_error({"-c"}, "--config: missing value");
    check_usage_error({"--check-config=yes"}, "--check-config: takes no value");
    check_usage_error({"stray"}, "unexpected argument \"stray\"");
    check_usage_error({"--threads", "2", "--", "--threads"}, "unexpected argument \"--threads\"");
    check_usage_error({"--threads", "1", "--threads", "2"}, "--threads: given more than once");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(socket_path)

BOOST_AUTO_TEST_CASE(command_line_then_environment_then_file) {
    TempDir temp;
    const auto file = temp.write("c.conf", "socket = /tmp/file.sock\n");
    BOOST_TEST(parse({"-c", file}).socket_path == "/tmp/file.sock");
    ::setenv(socket_env_variable, "/tmp/env.sock", 1);
    BOOST_TEST(parse({"-c", file}).socket_path == "/tmp/env.sock");
    BOOST_TEST(parse({"-c", file, "-s", "/tmp/cli.sock"}).socket_path == "/tmp/cli.sock");
    ::setenv(socket_env_variable, "", 1);
    BOOST_TEST(parse({"-c", file}).socket_path == "/tmp/file.sock");
    ::unsetenv(socket_env_variable);
}

BOOST_AUTO_TEST_CASE(too_long_path_exit_code_depends_on_where_it_came_from) {
    const std::string too_long = "/" + std::string(107, 'x');
    const std::string just_right = "/" + std::string(106, 'x');
    BOOST_TEST(parse({"--socket", just_right}).socket_path == just_right);

    check_usage_error({"--socket", too_long}, "--socket: socket path \"" + too_long +
                                                  "\" is 108 bytes long; the limit is 107");
    check_usage_error({"--socket", ""}, "--socket: socket path is empty");

    ::setenv(socket_env_variable, too_long.c_str(), 1);
    const auto from_environment = refusal({});
    ::unsetenv(socket_env_variable);
    BOOST_TEST(from_environment.code == ExitCode::usage);
    BOOST_TEST(contains(from_environment.message, "UDS_ECHO_SOCKET: socket path"),
               from_environment.message);

    check_file_error("# comment\n\nsocket = " + too_long + "\n", "3: socket: socket path \"");
}

BOOST_AUTO_TEST_CASE(abstract_name_is_accepted) {
    BOOST_TEST(parse({"--socket", "@uds-echo-test"}).socket_path == "@uds-echo-test");
}

BOOST_AUTO_TEST_CASE(empty_socket_in_file_means_the_default) {
    TempDir temp;
    const auto file = temp.write("c.conf", "socket =\n");
    BOOST_TEST(parse({"-c", file}).socket_path == default_socket_path(current_user()));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(config_file)

BOOST_AUTO_TEST_CASE(command_line_wins_over_file) {
    TempDir temp;
    const auto file = temp.write("c.conf", "threads = 3\nmax-connections = 7\n"
                                           "log-level = debug\nallow-uid = 1\nallow-gid = 4\n");
    const auto from_file = parse({"--config", file});
    BOOST_TEST(from_file.config_file == file);
    BOOST_TEST(from_file.threads == 3u);
    BOOST_TEST(from_file.max_connections == 7u);
    BOOST_TEST(from_file.log_level == LogLevel::debug);

    const auto both = parse({"--config", file, "--threads", "2", "--allow-uid", "9"});
    BOOST_TEST(both.threads == 2u);
    BOOST_TEST(both.max_connections == 7u);
    BOOST_TEST(both.log_level == LogLevel::debug);
    // The command line's list replaces the file's, it does not add to it.
    BOOST_TEST(both.access.allowed_uids == (std::vector<uid_t>{9}),
               boost::test_tools::per_element());
    BOOST_TEST(both.access.allowed_gids == (std::vector<gid_t>{4}),
               boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(file_syntax_comments_blanks_and_repeated_lists) {
    TempDir temp;
    const auto file = temp.write("c.conf", "# a comment\n"
                                           "\n"
                                           "   threads=4   # trailing comment\n"
                                           "\tlog-format\t=\ttext\r\n"
                                           "allow-uid = 1, 2\n"
                                           "allow-uid = 3\n");
    const auto config = parse({"-c", file});
    BOOST_TEST(config.threads == 4u);
    BOOST_TEST(config.log_format == LogFormat::text);
    BOOST_TEST(config.access.allowed_uids == (std::vector<uid_t>{1, 2, 3}),
               boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(default_file_is_read_only_if_it_exists) {
    TempDir temp;
    const auto file = temp.write("default.conf", "threads = 5\n");
    const auto config = parse({}, file);
    BOOST_TEST(config.threads == 5u);
    BOOST_TEST(config.config_file == file);
    BOOST_TEST(parse({}, temp.path + "/absent.conf").config_file == "");
    // --config replaces the default file rather than adding to it.
    const auto other = temp.write("other.conf", "max-connections = 3\n");
    const auto named = parse({"-c", other}, file);
    BOOST_TEST(named.threads == default_worker_count());
    BOOST_TEST(named.max_connections == 3u);
}

BOOST_AUTO_TEST_CASE(named_file_that_is_missing_is_a_config_error) {
    TempDir temp;
    const auto missing = temp.path + "/missing.conf";
    const auto result = refusal({"--config", missing});
    BOOST_TEST(result.code == ExitCode::config);
    BOOST_TEST(result.message == "config file " + missing + ": No such file or directory");
    const auto directory = refusal({"--config", temp.path});
    BOOST_TEST(directory.code == ExitCode::config);
    BOOST_TEST(contains(directory.message, temp.path), directory.message);
}

BOOST_AUTO_TEST_CASE(bad_values_in_the_file_name_file_and_line) {
    check_file_error("threads = 2\n\nthreads-x = 1\n", "3: threads-x: unknown option");
    check_file_error("# x\nthreads = x\n", "2: threads: \"x\" is not a number");
    check_file_error("threads = -1\n", "1: threads: \"-1\" is negative");
    check_file_error("\n\n\n\nmax-connections = 0\n", "5: max-connections");
    check_file_error("socket-mode = 999\n", "1: socket-mode");
    check_file_error("socket-group = no-such-group-here\n", "1: socket-group");
    check_file_error("allow-uid = 1\nallow-uid = nobody-here-x\n", "2: allow-uid");
    check_file_error("buffer-size = 1\n", "1: buffer-size");
    check_file_error("log-level = loud\n", "1: log-level");
    check_file_error("log-format = xml\n", "1: log-format");
    check_file_error("idle-timeout =\n", "1: idle-timeout: \"\" is not a number");
}

BOOST_AUTO_TEST_CASE(syntax_errors_in_the_file_name_file_and_line) {
    check_file_error("threads = 1\njust words\n", "2: expected \"name = value\"");
    check_file_error("[daemon]\nthreads = 1\n", "1: sections are not used");
    check_file_error("= 4\n", "1: option name missing");
    check_file_error("threads = 1\nlog-level = info\nthreads = 2\n",
                     "3: threads: given more than once (first on line 1)");
}

BOOST_AUTO_TEST_CASE(command_line_only_options_are_refused_in_the_file) {
    check_file_error("config = /etc/other.conf\n", "1: config: not allowed in a config file");
    check_file_error("check-config = 1\n", "1: check-config: not allowed");
    check_file_error("help =\n", "1: help: not allowed");
    check_file_error("version = 1\n", "1: version: not allowed");
}

BOOST_AUTO_TEST_CASE(file_values_are_validated_even_when_the_command_line_overrides_them) {
    TempDir temp;
    const auto file = temp.write("c.conf", "threads = lots\n");
    const auto result = refusal({"-c", file, "--threads", "2"});
    BOOST_TEST(result.code == ExitCode::config);
    BOOST_TEST(contains(result.message, file + ":1: threads"), result.message);
}

BOOST_AUTO_TEST_CASE(command_line_errors_come_before_the_file_is_read) {
    TempDir temp;
    const auto file = temp.write("c.conf", "threads = lots\n");
    BOOST_TEST(refusal({"-c", file, "--bogus"}).code == ExitCode::usage);
    // --help needs no valid file.
    BOOST_TEST(contains(information({"-c", file, "--help"}), "Usage:"));
}

BOOST_AUTO_TEST_CASE(a_comment_glued_to_a_value_is_refused_not_cut) {
    check_file_error("# x\nsocket = /tmp/a#b\n",
                     "2: socket: \"/tmp/a#b\" would be cut to \"/tmp/a\" by a comment");
    check_file_error("threads = 4#four threads\n", "1: threads: \"4#four\" would be cut to \"4\"");
    check_file_error("allow-uid = 0,1#admins # and a comment\n",
                     "1: allow-uid: \"0,1#admins\" would be cut to \"0,1\"");
    check_file_error("idle-timeout =#never\n", "1: idle-timeout: \"\" is not a number");
}

BOOST_AUTO_TEST_CASE(a_comment_after_a_blank_ends_the_value) {
    TempDir temp;
    const auto file = temp.write("c.conf", "#threads = 9\nthreads = 4 #four\nsocket =\t# unset\n"
                                           "max-connections = 7\t#seven\n");
    const auto config = parse({"-c", file});
    BOOST_TEST(config.threads == 4u);
    BOOST_TEST(config.max_connections == 7u);
    BOOST_TEST(config.socket_path == default_socket_path(current_user()));
}

// The file is read line by line: the first bad line is the one reported, whatever is wrong there.
BOOST_AUTO_TEST_CASE(errors_name_the_first_bad_line) {
    check_file_error("threads-x = 1\njust words\n", "1: threads-x: unknown option");
}

BOOST_AUTO_TEST_CASE(shipped_config_file_parses_to_the_defaults) {
    BOOST_REQUIRE_MESSAGE(std::filesystem::exists(shipped_config_file), shipped_config_file);
    const auto shipped = parse({"--config", shipped_config_file});
    BOOST_TEST(settings_of(shipped) == settings_of(parse({})));
    BOOST_TEST(!read_sockets_from_config_file(shipped_config_file).stream.has_value());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(describe_and_reload)

BOOST_AUTO_TEST_CASE(describe_prints_every_option_in_file_syntax) {
    const auto config =
        parse({"-s", "/tmp/d.sock", "--socket-mode", "600", "--socket-group", "0", "--allow-uid",
               "5,3", "--allow-gid", "7", "--buffer-size", "8K", "--log-format", "journal"});
    const auto text = config.describe();
    for (const char* line :
         {"\nsocket = /tmp/d.sock\n", "\nsocket-mode = 0600\n", "\nsocket-group = 0\n",
          "\nthreads = ", "\nmax-connections = 10000\n", "\nmax-connections-per-uid = 1000\n",
          "\nidle-timeout = 0\n", "\nexit-on-idle = 0\n", "\nshutdown-timeout = 5\n",
          "\nbuffer-size = 8192\n", "\nallow-uid = 3,5\n", "\nallow-gid = 7\n",
          "\nlog-level = info\n", "\nlog-format = journal\n"})
        BOOST_TEST(contains(text, line), line);
    const auto defaults = parse({}).describe();
    BOOST_TEST(contains(defaults, "\nsocket-group =\n"));
    BOOST_TEST(contains(defaults, "\nallow-uid =\n"));
    BOOST_TEST(contains(defaults, "\nallow-gid =\n"));
}

BOOST_AUTO_TEST_CASE(describe_output_is_a_config_file_that_gives_the_same_configuration) {
    TempDir temp;
    for (const Args& args : {Args{}, Args{"-s",
                                          "@abstract-name",
                                          "--socket-mode",
                                          "0",
                                          "--socket-group",
                                          "0",
                                          "--threads",
                                          "2",
                                          "--max-connections",
                                          "1",
                                          "--idle-timeout",
                                          "31536000",
                                          "--exit-on-idle",
                                          "1",
                                          "--shutdown-timeout",
                                          "0",
                                          "--buffer-size",
                                          "64M",
                                          "--allow-uid",
                                          "0,1,2",
                                          "--allow-gid",
                                          "3",
                                          "--log-level",
                                          "trace",
                                          "--log-format",
                                          "text"}}) {
        const auto original = parse(args);
        const auto file = temp.write("described.conf", original.describe());
        const auto reread = parse({"--config", file});
        BOOST_TEST(settings_of(reread) == settings_of(original));
        BOOST_TEST(options_needing_restart(original, reread).empty());
        BOOST_TEST(options_changed_at_runtime(original, reread).empty());
        BOOST_TEST(reread.config_file == file);
    }
}

BOOST_AUTO_TEST_CASE(restart_and_runtime_differences) {
    const auto before = parse({"-s", "/tmp/a.sock"});
    BOOST_TEST(options_needing_restart(before, before).empty());
    BOOST_TEST(options_changed_at_runtime(before, before).empty());

    const auto restart =
        parse({"-s", "/tmp/b.sock", "--socket-mode", "0600", "--socket-group", "0", "--threads",
               std::to_string(before.threads + 1), "--buffer-size", "1024"});
    const std::vector<std::string> restart_names{"socket", "socket-mode", "socket-group", "threads",
                                                 "buffer-size"};
    BOOST_TEST(options_needing_restart(before, restart) == restart_names,
               boost::test_tools::per_element());
    BOOST_TEST(options_changed_at_runtime(before, restart).empty());

    const auto runtime = parse({"-s",
                                "/tmp/a.sock",
                                "--log-level",
                                "error",
                                "--log-format",
                                "json",
                                "--max-connections",
                                "5",
                                "--max-connections-per-uid",
                                "4",
                                "--idle-timeout",
                                "1",
                                "--exit-on-idle",
                                "2",
                                "--shutdown-timeout",
                                "3",
                                "--allow-uid",
                                "0",
                                "--allow-gid",
                                "0"});
    // In --help order, like every list of options the daemon prints.
    const std::vector<std::string> runtime_names{"max-connections",  "max-connections-per-uid",
                                                 "idle-timeout",     "exit-on-idle",
                                                 "shutdown-timeout", "allow-uid",
                                                 "allow-gid",        "log-level",
                                                 "log-format"};
    BOOST_TEST(options_changed_at_runtime(before, runtime) == runtime_names,
               boost::test_tools::per_element());
    BOOST_TEST(options_needing_restart(before, runtime).empty());
}

BOOST_AUTO_TEST_CASE(every_file_option_either_reloads_or_needs_a_restart) {
    const auto before = parse({});
    const auto after = parse(every_option_changed());
    auto changed = options_needing_restart(before, after);
    const auto runtime = options_changed_at_runtime(before, after);
    changed.insert(changed.end(), runtime.begin(), runtime.end());
    std::sort(changed.begin(), changed.end());
    auto described = described_names(after);
    std::sort(described.begin(), described.end());
    BOOST_TEST(changed == described, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(a_reload_takes_over_exactly_the_runtime_options) {
    auto running = parse({});
    auto arguments = every_option_changed();
    arguments.push_back("--check-config");
    const auto reloaded = parse(arguments);
    const auto restart_names = options_needing_restart(running, reloaded);
    take_runtime_options(running, reloaded);
    BOOST_TEST(options_changed_at_runtime(running, reloaded).empty());
    BOOST_TEST(options_needing_restart(running, reloaded) == restart_names,
               boost::test_tools::per_element());
    BOOST_TEST(settings_of(running) != settings_of(reloaded));
    BOOST_TEST(running.socket_path == default_socket_path(current_user()));
    BOOST_TEST(running.threads == default_worker_count());
    BOOST_TEST(running.max_connections_per_uid == 4u);
    BOOST_TEST(running.access.allowed_uids == (std::vector<uid_t>{0, 1}),
               boost::test_tools::per_element());
    BOOST_TEST(running.log_format == LogFormat::json);
    BOOST_TEST(!running.check_config);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(client_view)

BOOST_AUTO_TEST_CASE(socket_line_is_read_and_everything_else_ignored) {
    TempDir temp;
    const auto file =
        temp.write("c.conf", "threads = not-checked-here\nfuture-option = 1\nsocket = /tmp/s\n");
    BOOST_TEST(read_sockets_from_config_file(file).stream.value_or("") == "/tmp/s");
    BOOST_TEST(!read_sockets_from_config_file(temp.path + "/absent.conf").stream.has_value());
    BOOST_TEST(
        !read_sockets_from_config_file(temp.write("n.conf", "threads = 1\n")).stream.has_value());
    BOOST_TEST(
        !read_sockets_from_config_file(temp.write("e.conf", "socket =\n")).stream.has_value());
}

BOOST_AUTO_TEST_CASE(unparsable_file_is_a_config_error) {
    TempDir temp;
    const auto file = temp.write("c.conf", "socket = /tmp/s\nnonsense\n");
    const auto result = client_refusal(file);
    BOOST_TEST(result.code == ExitCode::config);
    BOOST_TEST(contains(result.message, file + ":2:"), result.message);
    // A socket path cut by a comment, like the daemon's.
    const auto cut = temp.write("cut.conf", "threads = 1\nsocket = /tmp/a#b\n");
    BOOST_TEST(contains(client_refusal(cut).message, cut + ":2: socket: \"/tmp/a#b\""));
}

BOOST_AUTO_TEST_CASE(comments_on_other_lines_are_not_the_clients_business) {
    TempDir temp;
    const auto file = temp.write("c.conf", "threads = 1#x\nsocket = /tmp/s # mine\n");
    BOOST_TEST(read_sockets_from_config_file(file).stream.value_or("") == "/tmp/s");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(values)

// The problem a parser reports for `text`, or "accepted".
template <typename Parse>
std::string problem_with(Parse parse, std::string_view text) {
    try {
        parse(text);
    } catch (const InvalidValue& invalid) {
        return invalid.what();
    }
    return "accepted";
}

// The messages name no option: whoever reads the value puts its name or place in front.
BOOST_AUTO_TEST_CASE(parsers_explain_without_naming_the_option) {
    const auto percent = [](std::string_view text) { return parse_number(text, {1, 100}); };
    BOOST_TEST(percent("42") == 42u);
    BOOST_TEST(problem_with(percent, "0") == "\"0\" is out of range (expected 1 to 100)");
    BOOST_TEST(problem_with(percent, "-3") == "\"-3\" is negative (expected 1 to 100)");
    BOOST_TEST(parse_seconds("90").count() == 90);
    const auto kibibyte = [](std::string_view text) { return parse_size(text, {1, 1024}); };
    BOOST_TEST(kibibyte("1K") == 1024u);
    BOOST_TEST(
        problem_with(kibibyte, "2K") ==
        "\"2K\" is out of range (expected 1 to 1024 bytes; K and M suffixes mean KiB and MiB)");
    BOOST_TEST(parse_octal_mode("640") == 0640u);
    BOOST_TEST(parse_id(" 7 ", IdKind::user) == 7u);
    BOOST_TEST(parse_id_list("root, 3", IdKind::user) == (std::vector<uid_t>{0, 3}),
               boost::test_tools::per_element());
    const auto groups = [](std::string_view text) { return parse_id_list(text, IdKind::group); };
    BOOST_TEST(problem_with(groups, "1,,2") == "\"1,,2\" has an empty entry");
}

BOOST_AUTO_TEST_SUITE_END()
