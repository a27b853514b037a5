// How uds-echod creates, protects and removes its socket file (uds-echod(8), SOCKET FILE).
#define BOOST_TEST_MODULE integration_socket_file
#include <boost/test/unit_test.hpp>

#include "process.hpp"

#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

using namespace uds_echo::test;

namespace {

// A socket file with nobody listening: bound, then closed (what a crashed daemon leaves).
void make_stale_socket_file(const std::string& path) {
    bind_unix(path);
    BOOST_REQUIRE(is_socket_file(path));
}

ino_t inode_of(const std::string& path) {
    struct stat info;
    BOOST_REQUIRE_MESSAGE(::lstat(path.c_str(), &info) == 0, "lstat " << path);
    return info.st_ino;
}

void check_echoes(const std::string& socket) {
    const std::string data = "hello\0world\n";
    BOOST_TEST(echo_through(socket, data) == data);
}

// Starts a daemon that is expected to refuse to start; returns its exit status and stderr.
RunResult run_failing_daemon(const TempDir& dir, DaemonOptions options) {
    options.wait_ready = false;
    Daemon daemon = start_daemon(dir, std::move(options));
    auto status = daemon.process.wait_for_exit(10s);
    BOOST_REQUIRE_MESSAGE(status.has_value(),
                          "uds-echod kept running; stderr: " << daemon.process.stderr_text());
    return RunResult{*status, daemon.process.stdout_text(), daemon.process.stderr_text()};
}

void check_one_line_error(const RunResult& result, int code) {
    BOOST_TEST(result.status == (ExitStatus{false, code}), "stderr: " << result.err);
    BOOST_TEST(non_empty_lines(result.err).size() == 1u, "stderr: " << result.err);
}

// A path of exactly `length` bytes below `dir`.
std::string path_of_length(const TempDir& dir, std::size_t length) {
    std::string prefix = dir.path() + "/";
    BOOST_REQUIRE(prefix.size() + 6 < length);
    return prefix + std::string(length - prefix.size() - 5, 'x') + ".sock";
}

} // namespace

BOOST_AUTO_TEST_CASE(stale_socket_file_is_replaced) {
    TempDir dir;
    std::string socket = dir.file("s.sock");
    make_stale_socket_file(socket);
    BOOST_REQUIRE(try_connect_unix(socket).error == ECONNREFUSED);

    Daemon daemon = start_daemon(dir, DaemonOptions::at(socket));
    check_echoes(socket);
    BOOST_TEST(stop_daemon(daemon).exited_with(0));
}

BOOST_AUTO_TEST_CASE(live_daemon_at_the_path_is_not_disturbed) {
    TempDir dir;
    Daemon first = start_daemon(dir);
    ino_t inode = inode_of(first.socket);

    RunResult second = run_failing_daemon(dir, DaemonOptions::at(first.socket));
    check_one_line_error(second, exit_cannot_create);

    BOOST_TEST(first.process.running());
    BOOST_TEST(is_socket_file(first.socket));
    BOOST_TEST(inode_of(first.socket) == inode);
    check_echoes(first.socket);
    BOOST_TEST(stop_daemon(first).exited_with(0));
}

BOOST_AUTO_TEST_CASE(regular_file_at_the_path_is_untouched) {
    TempDir dir;
    std::string path = dir.write_file("s.sock", "precious data\n");

    RunResult result = run_failing_daemon(dir, DaemonOptions::at(path));
    check_one_line_error(result, exit_cannot_create);
    BOOST_TEST(read_file(path) == "precious data\n");
}

BOOST_AUTO_TEST_CASE(symlink_to_a_stale_socket_is_refused) {
    TempDir dir;
    std::string target = dir.file("target.sock");
    make_stale_socket_file(target);
    std::string link = dir.file("s.sock");
    BOOST_REQUIRE(::symlink(target.c_str(), link.c_str()) == 0);

    RunResult result = run_failing_daemon(dir, DaemonOptions::at(link));
    check_one_line_error(result, exit_cannot_create);
    BOOST_TEST(result.err.find("symbolic link") != std::string::npos, "stderr: " << result.err);
    BOOST_TEST(std::filesystem::is_symlink(link));
    BOOST_TEST(std::filesystem::read_symlink(link).string() == target);
    BOOST_TEST(is_socket_file(target));
}

BOOST_AUTO_TEST_CASE(dangling_symlink_is_refused) {
    TempDir dir;
    std::string target = dir.file("nothing-here.sock");
    std::string link = dir.file("s.sock");
    BOOST_REQUIRE(::symlink(target.c_str(), link.c_str()) == 0);

    RunResult result = run_failing_daemon(dir, DaemonOptions::at(link));
    check_one_line_error(result, exit_cannot_create);
    BOOST_TEST(std::filesystem::is_symlink(link));
    BOOST_TEST(!path_exists(target));
}

BOOST_AUTO_TEST_CASE(too_long_path_on_the_command_line_is_a_usage_error) {
    TempDir dir;
    std::string path = path_of_length(dir, 108);
    RunResult result = run_failing_daemon(dir, DaemonOptions::at(path));
    check_one_line_error(result, exit_usage);
    BOOST_TEST(!path_exists(path));
    // No silent truncation: nothing was created under a shortened name either.
    BOOST_TEST(!path_exists(path.substr(0, 107)));
}

BOOST_AUTO_TEST_CASE(longest_allowed_path_works) {
    TempDir dir;
    std::string path = path_of_length(dir, 107);
    Daemon daemon = start_daemon(dir, DaemonOptions::at(path));
    check_echoes(path);
    BOOST_TEST(stop_daemon(daemon).exited_with(0));
    BOOST_TEST(!path_exists(path));
}

BOOST_AUTO_TEST_CASE(too_long_path_in_the_config_file_is_a_config_error) {
    TempDir dir;
    std::string path = path_of_length(dir, 120);
    std::string config = dir.write_file("long.conf", "socket = " + path + "\n");
    DaemonOptions options = DaemonOptions::at(path, {"--config", config});
    options.pass_socket = false;
    RunResult result = run_failing_daemon(dir, options);
    check_one_line_error(result, exit_config);
    BOOST_TEST(result.err.find("long.conf") != std::string::npos, "stderr: " << result.err);
}

BOOST_AUTO_TEST_CASE(missing_parent_directory_is_created_private) {
    TempDir dir;
    std::string parent = dir.file("run");
    std::string socket = parent + "/s.sock";
    Daemon daemon = start_daemon(dir, DaemonOptions::at(socket));
    BOOST_TEST(std::filesystem::is_directory(parent));
    BOOST_TEST(file_mode(parent) == 0700u);
    check_echoes(socket);
    BOOST_TEST(stop_daemon(daemon).exited_with(0));
}

// Whoever may write to the socket's directory may swap the socket: a shared directory without the
// sticky bit is used, as configured, with a warning; the daemon's own private one without.
BOOST_AUTO_TEST_CASE(a_directory_others_may_write_to_is_warned_about) {
    TempDir dir;
    const auto shared = dir.file("shared");
    BOOST_REQUIRE(::mkdir(shared.c_str(), 0700) == 0);
    BOOST_REQUIRE(::chmod(shared.c_str(), 0777) == 0);
    const std::string warning = "can replace the socket";
    Daemon open = start_daemon(dir, DaemonOptions::at(shared + "/s.sock"));
    BOOST_TEST(open.process.stderr_text().find(warning) != std::string::npos,
               "stderr: " << open.process.stderr_text());
    BOOST_TEST(stop_daemon(open).exited_with(0));

    BOOST_REQUIRE(::chmod(shared.c_str(), 01777) == 0); // sticky, like /tmp
    Daemon sticky = start_daemon(dir, DaemonOptions::at(shared + "/s.sock"));
    BOOST_TEST(sticky.process.stderr_text().find(warning) == std::string::npos,
               "stderr: " << sticky.process.stderr_text());
    BOOST_TEST(stop_daemon(sticky).exited_with(0));
}

BOOST_AUTO_TEST_CASE(default_socket_mode_is_0660) {
    TempDir dir;
    Daemon daemon = start_daemon(dir);
    BOOST_TEST(is_socket_file(daemon.socket));
    BOOST_TEST(file_mode(daemon.socket) == 0660u);
    BOOST_TEST(stop_daemon(daemon).exited_with(0));
}

BOOST_AUTO_TEST_CASE(socket_mode_option_is_applied) {
    TempDir dir;
    Daemon daemon = start_daemon(dir, DaemonOptions::with_args({"--socket-mode", "0600"}));
    BOOST_TEST(file_mode(daemon.socket) == 0600u);
    check_echoes(daemon.socket);
    BOOST_TEST(stop_daemon(daemon).exited_with(0));
}

BOOST_AUTO_TEST_CASE(socket_file_is_removed_on_clean_exit) {
    TempDir dir;
    Daemon daemon = start_daemon(dir);
    BOOST_REQUIRE(is_socket_file(daemon.socket));
    BOOST_TEST(stop_daemon(daemon).exited_with(0));
    BOOST_TEST(!path_exists(daemon.socket));
}

BOOST_AUTO_TEST_CASE(replaced_socket_file_is_left_in_place) {
    TempDir dir;
    Daemon daemon = start_daemon(dir);
    // Another socket is renamed over the daemon's path, as a second instance would do.
    std::string other = dir.file("other.sock");
    make_stale_socket_file(other);
    ino_t other_inode = inode_of(other);
    BOOST_REQUIRE(std::rename(other.c_str(), daemon.socket.c_str()) == 0);

    BOOST_TEST(stop_daemon(daemon).exited_with(0));
    BOOST_TEST(is_socket_file(daemon.socket));
    if (path_exists(daemon.socket))
        BOOST_TEST(inode_of(daemon.socket) == other_inode);
}

BOOST_AUTO_TEST_CASE(abstract_socket_works_and_leaves_no_file) {
    TempDir dir;
    std::string name = "@uds-echo-test-" + std::to_string(::getpid());
    Daemon daemon = start_daemon(dir, DaemonOptions::at(name));
    check_echoes(name);
    BOOST_TEST(stop_daemon(daemon).exited_with(0));

    // Only the config file the harness wrote is in the directory; nothing named after the socket
    // in the working directory either.
    std::size_t entries = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
        BOOST_TEST(entry.path().filename() == "empty.conf");
        ++entries;
    }
    BOOST_TEST(entries == 1u);
    BOOST_TEST(!path_exists(name));
    BOOST_TEST(!path_exists(name.substr(1)));
    // The name is free again.
    BOOST_TEST(try_connect_unix(name).error == ECONNREFUSED);
}

// A group the socket would not get by itself (the creator's gid): any for root, else one of the
// supplementary groups; none when the test process has no other group.
std::optional<gid_t> other_group() {
    if (::geteuid() == 0)
        return ::getgid() == 65534 ? 0 : 65534;
    std::vector<gid_t> groups(static_cast<std::size_t>(std::max(::getgroups(0, nullptr), 0)));
    const int count = ::getgroups(static_cast<int>(groups.size()), groups.data());
    for (int i = 0; i < count; ++i)
        if (groups[static_cast<std::size_t>(i)] != ::getegid())
            return groups[static_cast<std::size_t>(i)];
    return std::nullopt;
}

// With the creator's own group the socket would have it anyway: such a test proves nothing.
boost::test_tools::assertion_result have_another_group(boost::unit_test::test_unit_id) {
    boost::test_tools::assertion_result result(other_group().has_value());
    if (!result)
        result.message() << "skipped: the test process has no group but its own to give the socket";
    return result;
}

BOOST_AUTO_TEST_CASE(socket_group_by_number, *boost::unit_test::precondition(have_another_group)) {
    TempDir dir;
    const gid_t group = *other_group();
    Daemon daemon =
        start_daemon(dir, DaemonOptions::with_args({"--socket-group", std::to_string(group)}));
    struct stat info;
    BOOST_REQUIRE(::lstat(daemon.socket.c_str(), &info) == 0);
    BOOST_TEST(info.st_gid == group);
    BOOST_TEST(file_mode(daemon.socket) == 0660u);
    check_echoes(daemon.socket);
    BOOST_TEST(stop_daemon(daemon).exited_with(0));
}

BOOST_AUTO_TEST_CASE(socket_group_by_name, *boost::unit_test::precondition(have_another_group)) {
    TempDir dir;
    const gid_t group = *other_group();
    const struct group* entry = ::getgrgid(group);
    BOOST_REQUIRE_MESSAGE(entry != nullptr, "no name for gid " << group);
    Daemon daemon = start_daemon(dir, DaemonOptions::with_args({"--socket-group", entry->gr_name}));
    struct stat info;
    BOOST_REQUIRE(::lstat(daemon.socket.c_str(), &info) == 0);
    BOOST_TEST(info.st_gid == group);
    BOOST_TEST(stop_daemon(daemon).exited_with(0));
}

BOOST_AUTO_TEST_CASE(unknown_socket_group_is_refused) {
    TempDir dir;
    RunResult result = run_failing_daemon(
        dir, DaemonOptions::with_args({"--socket-group", "no-such-group-uds-echo-test"}));
    // A bad value on the command line: a usage error, and nothing was created.
    check_one_line_error(result, exit_usage);
    BOOST_TEST(!path_exists(dir.file("s.sock")));
}
