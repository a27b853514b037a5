// The client uds-echo (uds-echo(1)): its forms, options and every exit code, against the real
// uds-echod and against small fake servers that misbehave on purpose.
#define BOOST_TEST_MODULE integration_client
#include <boost/test/unit_test.hpp>

#include "fake_server.hpp"
#include "fixtures.hpp"
#include "preconditions.hpp"
#include "process.hpp"

#include "common/paths.hpp"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace uds_echo::test;
namespace utf = boost::unit_test;

namespace {

constexpr std::size_t MiB = 1024 * 1024;
constexpr uid_t nobody = 65534;

// One line on stderr, `uds-echo: ...`, and the expected exit code.
void check_failure(const RunResult& result, int code, const std::vector<std::string>& parts) {
    BOOST_TEST(result.status.exited_with(code),
               "exit " << result.status << ", expected " << code << "; stderr: " << result.err);
    BOOST_TEST(result.err.rfind("uds-echo: ", 0) == 0, "stderr: " << result.err);
    BOOST_TEST(non_empty_lines(result.err).size() == 1u, "stderr: " << result.err);
    for (const auto& part : parts)
        BOOST_TEST(contains(result.err, part), "stderr lacks '" << part << "': " << result.err);
}

// Reads everything, even past the client's half-close, and never answers: the connection stays
// open until the client closes its end completely (POLLHUP).
void swallow_silently(int fd, const Stopping& stopping) {
    hold_until_peer_closes(fd, stopping);
    while (!stopping) {
        pollfd entry{fd, POLLIN, 0};
        if (::poll(&entry, 1, 20) > 0 && (entry.revents & POLLHUP) != 0)
            return;
    }
}

// Runs the client as `uid` (and the same gid) through fork, setgroups, setgid, setuid and exec,
// without $XDG_RUNTIME_DIR (as after su or in cron): the harness's Process keeps the test's
// identity.
RunResult run_client_as(uid_t uid, const std::vector<std::string>& args) {
    int err_pipe[2];
    BOOST_REQUIRE(::pipe2(err_pipe, O_CLOEXEC) == 0);
    FileDescriptor err_read(err_pipe[0]);
    FileDescriptor err_write(err_pipe[1]);
    std::vector<std::string> argv_strings{client_binary()};
    argv_strings.insert(argv_strings.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& arg : argv_strings)
        argv.push_back(arg.data());
    argv.push_back(nullptr);
    const pid_t pid = ::fork();
    BOOST_REQUIRE(pid >= 0);
    if (pid == 0) {
        const int null = ::open("/dev/null", O_RDWR);
        ::dup2(null, STDIN_FILENO);
        ::dup2(null, STDOUT_FILENO);
        ::dup2(err_write.get(), STDERR_FILENO);
        if (::setgroups(0, nullptr) != 0 || ::setgid(uid) != 0 || ::setuid(uid) != 0)
            ::_exit(126);
        ::unsetenv("UDS_ECHO_SOCKET");
        ::unsetenv("XDG_RUNTIME_DIR");
        ::execv(argv[0], argv.data());
        ::_exit(127);
    }
    err_write.reset();
    std::string err;
    char buffer[4096];
    ssize_t count;
    while ((count = ::read(err_read.get(), buffer, sizeof buffer)) != 0) {
        if (count < 0 && errno == EINTR)
            continue;
        if (count < 0)
            break;
        err.append(buffer, static_cast<std::size_t>(count));
    }
    int raw = 0;
    while (::waitpid(pid, &raw, 0) < 0 && errno == EINTR) {
    }
    ExitStatus status =
        WIFSIGNALED(raw) ? ExitStatus{true, WTERMSIG(raw)} : ExitStatus{false, WEXITSTATUS(raw)};
    return RunResult{status, "", err};
}

} // namespace

// ---- one-shot ----

BOOST_FIXTURE_TEST_CASE(one_shot_prints_the_echo, DaemonFixture) {
    const auto result = run_client({"-s", daemon.socket, "hello"});
    BOOST_TEST(result.status.exited_with(exit_ok), result.status << " " << result.err);
    BOOST_TEST(result.out == "hello\n");
    BOOST_TEST(result.err.empty());
}

BOOST_FIXTURE_TEST_CASE(words_are_joined_by_spaces, DaemonFixture) {
    const auto result = run_client({"-s", daemon.socket, "hello", "big", "world"});
    BOOST_TEST(result.status.exited_with(exit_ok), result.status << " " << result.err);
    BOOST_TEST(result.out == "hello big world\n");
}

BOOST_FIXTURE_TEST_CASE(options_before_and_after_the_words, DaemonFixture) {
    auto result = run_client({"hello", "-s", daemon.socket, "-t", "2"});
    BOOST_TEST(result.status.exited_with(exit_ok), result.status << " " << result.err);
    BOOST_TEST(result.out == "hello\n");
    result = run_client({"-t", "0.5", "hello", "--socket", daemon.socket, "again"});
    BOOST_TEST(result.status.exited_with(exit_ok), result.status << " " << result.err);
    BOOST_TEST(result.out == "hello again\n");
}

BOOST_FIXTURE_TEST_CASE(words_are_sent_whatever_stdin_is, DaemonFixture) {
    ProcessOptions options;
    options.stdin_data = "this is not sent\n";
    const auto result = run_client({"-s", daemon.socket, "hello"}, options);
    BOOST_TEST(result.status.exited_with(exit_ok), result.status << " " << result.err);
    BOOST_TEST(result.out == "hello\n");
}

BOOST_FIXTURE_TEST_CASE(quiet_prints_nothing, DaemonFixture) {
    const auto result = run_client({"-q", "-s", daemon.socket, "hello"});
    BOOST_TEST(result.status.exited_with(exit_ok), result.status << " " << result.err);
    BOOST_TEST(result.out.empty());
    BOOST_TEST(result.err.empty());
}

BOOST_FIXTURE_TEST_CASE(a_message_larger_than_the_socket_buffers, DaemonFixture) {
    // Words of 100 KiB each, 1 MiB in all: the one-shot form must read while it writes.
    std::vector<std::string> args{"-s", daemon.socket};
    for (int i = 0; i < 10; ++i)
        args.push_back(std::string(100 * 1024, static_cast<char>('a' + i)));
    const auto result = run_client(args);
    BOOST_TEST(result.status.exited_with(exit_ok), result.status << " " << result.err);
    BOOST_TEST(result.out.size() == 10u * 100 * 1024 + 10);
}

BOOST_FIXTURE_TEST_CASE(the_socket_from_the_environment, DaemonFixture) {
    ProcessOptions options;
    options.environment = {{"UDS_ECHO_SOCKET", daemon.socket}};
    const auto result = run_client({"hello"}, options);
    BOOST_TEST(result.status.exited_with(exit_ok), result.status << " " << result.err);
    BOOST_TEST(result.out == "hello\n");
}

// ---- streaming ----

BOOST_FIXTURE_TEST_CASE(streams_16_mib_from_a_file, DaemonFixture) {
    const std::string data = random_bytes(16 * MiB, 1);
    ProcessOptions options;
    options.stdin_data = data; // a regular file: epoll refuses it
    const auto result = run_client({"-s", daemon.socket, "-"}, options);
    BOOST_TEST(result.status.exited_with(exit_ok), result.status << " " << result.err);
    check_same(result.out, data);
}

BOOST_FIXTURE_TEST_CASE(streams_16_mib_from_a_pipe, DaemonFixture) {
    const std::string data = random_bytes(16 * MiB, 2);
    int pipe_ends[2];
    BOOST_REQUIRE(::pipe2(pipe_ends, O_CLOEXEC) == 0);
    FileDescriptor read_end(pipe_ends[0]);
    FileDescriptor write_end(pipe_ends[1]);
    ProcessOptions options;
    options.stdin_fd = read_end.get();
    // No "-": stdin that is not a terminal streams too.
    options.argv = {client_binary(), "-s", daemon.socket};
    options.environment = clean_client_environment();
    Process client(options);
    read_end.reset();
    std::thread writer([&] {
        std::string_view rest = data;
        while (!rest.empty()) {
            const ssize_t count = ::write(write_end.get(), rest.data(), rest.size());
            if (count <= 0)
                break;
            rest.remove_prefix(static_cast<std::size_t>(count));
        }
        write_end.reset();
    });
    const auto status = client.wait_for_exit(60s);
    writer.join();
    BOOST_REQUIRE_MESSAGE(status.has_value(), "the client did not finish");
    BOOST_TEST(status->exited_with(exit_ok), *status << " " << client.stderr_text());
    check_same(client.stdout_text(), data);
}

BOOST_FIXTURE_TEST_CASE(dev_null_input_gives_no_output, DaemonFixture) {
    ProcessOptions options; // stdin is /dev/null by default
    const auto result = run_client({"-s", daemon.socket, "-"}, options);
    BOOST_TEST(result.status.exited_with(exit_ok), result.status << " " << result.err);
    BOOST_TEST(result.out.empty());
}

BOOST_FIXTURE_TEST_CASE(a_closed_output_pipe_ends_quietly, DaemonFixture) {
    const std::string big = dir.write_file("big", random_bytes(8 * MiB, 3));
    // The shell reports the client's own status; a death by SIGPIPE would be 141.
    ProcessOptions options;
    options.argv = {
        "/bin/sh",
        "-c",
        "{ \"$0\" -s \"$1\" - < \"$2\"; echo \"client=$?\" >&2; } | head -c 1 >/dev/null",
        client_binary(),
        daemon.socket,
        big};
    options.environment = clean_client_environment();
    const auto result = run(options, 60s);
    BOOST_TEST(contains(result.err, "client=0"), "stderr: " << result.err);
}

BOOST_FIXTURE_TEST_CASE(a_slow_output_is_not_a_timeout, DaemonFixture) {
    // The reader of our output sleeps longer than the timeout: the reply timeout only counts
    // while the client waits on the daemon, not while it waits on its output.
    const std::string data = random_bytes(4 * MiB, 5);
    const std::string input = dir.write_file("input", data);
    const std::string output = dir.file("output");
    ProcessOptions options;
    options.argv = {"/bin/sh",
                    "-c",
                    "{ \"$0\" -s \"$1\" -t 0.3 - < \"$2\"; echo \"client=$?\" >&2; } | "
                    "{ sleep 1; cat > \"$3\"; }",
                    client_binary(),
                    daemon.socket,
                    input,
                    output};
    options.environment = clean_client_environment();
    const auto result = run(options, 60s);
    BOOST_TEST(contains(result.err, "client=0"), "stderr: " << result.err);
    check_same(read_file(output), data);
}

BOOST_AUTO_TEST_CASE(a_stream_cut_short) {
    TempDir dir;
    const auto path = dir.file("fake.sock");
    FakeServer server(path, [](int fd, const Stopping& stopping) {
        send_quietly(fd, receive_exactly(fd, 1000, stopping).substr(0, 1000));
    });
    ProcessOptions options;
    options.stdin_data = random_bytes(2 * MiB, 6);
    const auto result = run_client({"-s", path, "-"}, options);
    check_failure(result, exit_data_error,
                  {"closed the connection after echoing 1000 of", "before the end of the input"});
    // Bytes came back, so no allow list refused this user: no hint about them.
    BOOST_TEST(!contains(result.err, "allow-uid"), result.err);
}

// ---- 64 usage ----

BOOST_AUTO_TEST_CASE(usage_errors) {
    check_failure(run_client({"--no-such-option", "hello"}), exit_usage,
                  {"uds-echo: --no-such-option: unknown option"});
    check_failure(run_client({"--socket"}), exit_usage, {"uds-echo: --socket: missing value"});
    check_failure(run_client({"--quiet=yes", "hello"}), exit_usage, {"--quiet: takes no value"});
    check_failure(run_client({"-t", "0", "hello"}), exit_usage, {"timeout"});
    check_failure(run_client({"-t", "abc", "hello"}), exit_usage, {"timeout"});
    check_failure(run_client({"--timeout=nan", "hello"}), exit_usage, {"timeout"});
    check_failure(run_client({"hello", "-t"}), exit_usage, {"--timeout: missing value"});
    check_failure(run_client({"-s", "/tmp/" + std::string(120, 'x'), "hello"}), exit_usage, {});
}

BOOST_AUTO_TEST_CASE(help_and_version) {
    auto result = run_client({"--help"});
    BOOST_TEST(result.status.exited_with(exit_ok));
    BOOST_TEST(contains(result.out, "--socket"));
    result = run_client({"-V"});
    BOOST_TEST(result.status.exited_with(exit_ok));
    BOOST_TEST(result.out.rfind("uds-echo ", 0) == 0, result.out);
}

// ---- 65 the echo differed ----

BOOST_AUTO_TEST_CASE(a_corrupted_echo) {
    TempDir dir;
    const auto path = dir.file("fake.sock");
    FakeServer server(path, [](int fd, const Stopping& stopping) {
        std::string data = receive_exactly(fd, 6, stopping);
        if (data.size() == 6)
            data[4] = 'O';
        send_quietly(fd, data);
        hold_until_peer_closes(fd, stopping);
    });
    const auto result = run_client({"-s", path, "hello"});
    check_failure(result, exit_data_error, {"offset 4"});
}

BOOST_AUTO_TEST_CASE(a_daemon_that_closes_early) {
    TempDir dir;
    const auto path = dir.file("fake.sock");
    FakeServer server(path, [](int fd, const Stopping& stopping) {
        const std::string data = receive_exactly(fd, 6, stopping);
        send_quietly(fd, data.substr(0, 2));
    });
    check_failure(run_client({"-s", path, "hello"}), exit_data_error,
                  {"after echoing 2 of 6 bytes sent"});
}

BOOST_AUTO_TEST_CASE(a_corrupted_stream) {
    TempDir dir;
    const auto path = dir.file("fake.sock");
    FakeServer server(path, echo_corrupting_at(1'000'000));
    ProcessOptions options;
    options.stdin_data = random_bytes(3 * MiB, 4);
    check_failure(run_client({"-s", path, "-"}, options), exit_data_error, {"offset 1000000"});
}

// ---- 69 no daemon ----

BOOST_AUTO_TEST_CASE(a_missing_socket) {
    TempDir dir;
    const auto path = dir.file("missing.sock");
    const auto result = run_client({"-s", path, "hello"});
    check_failure(result, exit_unavailable, {path, "no such socket"});
    // systemctl serves the system path only: suggesting it for another path misleads.
    BOOST_TEST(!contains(result.err, "systemctl"), result.err);
}

BOOST_AUTO_TEST_CASE(the_default_paths_are_all_named, *utf::precondition(no_system_uds_echo)) {
    TempDir dir;
    ProcessOptions options;
    options.environment = {{"XDG_RUNTIME_DIR", dir.path()}};
    const auto result = run_client({"hello"}, options);
    std::vector<std::string> expected{uds_echo::system_socket_path};
    if (::getuid() != 0)
        expected.push_back(dir.file("uds-echo.sock"));
    check_failure(result, exit_unavailable, expected);
    BOOST_TEST(contains(result.err, "systemctl start uds-echo.socket"));
}

BOOST_AUTO_TEST_CASE(a_stale_socket_file) {
    TempDir dir;
    const auto path = dir.file("stale.sock");
    bind_unix(path); // closed at once: the file stays, nobody listens
    check_failure(run_client({"-s", path, "hello"}), exit_unavailable, {path, "stale"});
}

BOOST_AUTO_TEST_CASE(a_regular_file_at_the_path) {
    TempDir dir;
    const auto path = dir.write_file("not-a-socket", "");
    check_failure(run_client({"-s", path, "hello"}), exit_unavailable, {path, "not a socket"});
}

BOOST_AUTO_TEST_CASE(a_missing_abstract_socket) {
    const std::string name = "@uds-echo-client-test-" + std::to_string(::getpid());
    check_failure(run_client({"-s", name, "hello"}), exit_unavailable, {name});
}

// ---- 75 timeout ----

BOOST_AUTO_TEST_CASE(a_daemon_that_never_answers) {
    TempDir dir;
    const auto path = dir.file("fake.sock");
    FakeServer server(path, hold_until_peer_closes);
    const auto start = Clock::now();
    check_failure(run_client({"-s", path, "-t", "0.5", "hello"}), exit_timeout, {"0.5 s"});
    const auto elapsed = Clock::now() - start;
    BOOST_TEST(elapsed >= 400ms);
    BOOST_TEST(elapsed < 10s);
}

BOOST_AUTO_TEST_CASE(a_stream_that_is_never_echoed) {
    TempDir dir;
    const auto path = dir.file("fake.sock");
    FakeServer server(path, swallow_silently);
    ProcessOptions options;
    options.stdin_data = "some input\n";
    check_failure(run_client({"-s", path, "-t", "0.5", "-"}, options), exit_timeout, {});
}

BOOST_AUTO_TEST_CASE(a_full_listen_backlog) {
    TempDir dir;
    const auto path = dir.file("busy.sock");
    const FileDescriptor listener = listen_unix(path, 0); // never accepts
    std::vector<FileDescriptor> fillers;
    for (int i = 0; i < 16; ++i) {
        FileDescriptor filler(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        sockaddr_un address{};
        address.sun_family = AF_UNIX;
        std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
        if (::connect(filler.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
            BOOST_REQUIRE_EQUAL(errno, EAGAIN);
            break;
        }
        fillers.push_back(std::move(filler));
    }
    BOOST_REQUIRE_MESSAGE(fillers.size() < 16u, "the backlog never filled");
    const auto start = Clock::now();
    check_failure(run_client({"-s", path, "-t", "0.5", "hello"}), exit_timeout, {"backlog"});
    const auto elapsed = Clock::now() - start;
    BOOST_TEST(elapsed >= 400ms, "the client gave up before the timeout");
    BOOST_TEST(elapsed < 10s);
}

// True when the client `pid` found the backlog full and waits to try again: it holds its socket
// (made right before its first connect()) and sleeps in epoll_wait, on its back-off timer. A
// connection could not have succeeded meanwhile: nothing is accepted until this holds.
bool waits_to_retry_the_connection(pid_t pid) {
    const std::string process = "/proc/" + std::to_string(pid);
    bool has_socket = false;
    std::error_code error;
    for (const auto& entry : std::filesystem::directory_iterator(process + "/fd", error)) {
        std::error_code unreadable;
        const auto target = std::filesystem::read_symlink(entry.path(), unreadable);
        has_socket = has_socket || target.string().starts_with("socket:");
    }
    std::ifstream wchan(process + "/task/" + std::to_string(pid) + "/wchan");
    std::string waiting_in;
    std::getline(wchan, waiting_in);
    return has_socket && contains(waiting_in, "epoll_wait");
}

BOOST_AUTO_TEST_CASE(a_backlog_that_frees_up_in_time) {
    TempDir dir;
    const auto path = dir.file("busy.sock");
    const FileDescriptor listener = listen_unix(path, 0);
    FileDescriptor filler = connect_unix(path);
    ProcessOptions options;
    options.argv = {client_binary(), "-s", path, "-t", "10", "hello"};
    options.environment = clean_client_environment();
    Process client(options);
    // The backlog frees up only once the client has found it full: the retry is what is tested.
    BOOST_REQUIRE_MESSAGE(
        wait_until([&] { return !client.running() || waits_to_retry_the_connection(client.pid()); },
                   10s),
        "the client never waited to retry; stderr: " << client.stderr_text());
    BOOST_REQUIRE_MESSAGE(client.running(), "the client gave up at once: " << client.stderr_text());
    FileDescriptor first(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC)); // the filler
    BOOST_REQUIRE_MESSAGE(wait_readable(listener.get(), 5s), "the client did not retry");
    FileDescriptor connection(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    BOOST_REQUIRE(connection.valid());
    set_io_timeout(connection.get(), 10s);
    write_all(connection.get(), read_exact(connection.get(), 6));
    const auto status = client.wait_for_exit(10s);
    BOOST_REQUIRE_MESSAGE(status.has_value(), "the client did not finish");
    BOOST_TEST(status->exited_with(exit_ok), *status << " " << client.stderr_text());
    BOOST_TEST(client.stdout_text() == "hello\n");
}

// ---- 77 permission denied ----

BOOST_FIXTURE_TEST_CASE(a_socket_we_may_not_use, DaemonFixture,
                        *utf::precondition(RootOnly{"to run the client as another user"})) {
    BOOST_REQUIRE(::chmod(dir.path().c_str(), 0755) == 0);
    BOOST_REQUIRE(::chmod(daemon.socket.c_str(), 0600) == 0);
    const auto result = run_client_as(nobody, {"-s", daemon.socket, "hello"});
    check_failure(result, exit_no_permission, {daemon.socket, "owner root", "mode 0600"});
}

BOOST_FIXTURE_TEST_CASE(a_directory_we_may_not_enter, DaemonFixture,
                        *utf::precondition(RootOnly{"to run the client as another user"})) {
    BOOST_REQUIRE(::chmod(dir.path().c_str(), 0700) == 0);
    const auto result = run_client_as(nobody, {"-s", daemon.socket, "hello"});
    check_failure(result, exit_no_permission, {"directory " + dir.path(), "mode 0700"});
}

// ---- 71 other OS errors ----

BOOST_AUTO_TEST_CASE(a_datagram_socket_at_the_path) {
    TempDir dir;
    const auto path = dir.file("dgram.sock");
    const FileDescriptor datagram = bind_unix(path, SOCK_DGRAM);
    check_failure(run_client({"-s", path, "hello"}), exit_unavailable,
                  {path + " is a datagram socket, not a stream one (use --type datagram)"});
}

BOOST_FIXTURE_TEST_CASE(an_unreadable_input, DaemonFixture) {
    FileDescriptor directory(::open(dir.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    BOOST_REQUIRE(directory.valid());
    ProcessOptions options;
    options.stdin_fd = directory.get(); // read(2) says EISDIR
    check_failure(run_client({"-s", daemon.socket, "-"}, options), exit_os_error,
                  {"cannot read the input"});
}

// ---- the per-user directory below /tmp ----

// A uid of its own per test process, so that parallel runs do not share /tmp/uds-echo-UID.
uid_t unused_uid() {
    return static_cast<uid_t>(60000 + ::getpid() % 5000);
}

// /tmp/uds-echo-UID planted by someone, with a live fake daemon inside that counts its
// connections; removed at the end.
class PlantedDirectory {
public:
    PlantedDirectory(uid_t user, uid_t owner, mode_t mode, bool as_symlink)
        : path_("/tmp/uds-echo-" + std::to_string(user)) {
        std::filesystem::remove_all(path_);
        const std::string real = as_symlink ? target_.file("elsewhere") : path_;
        BOOST_REQUIRE(::mkdir(real.c_str(), 0700) == 0);
        if (as_symlink) {
            BOOST_REQUIRE(::chmod(target_.path().c_str(), 0755) == 0);
            BOOST_REQUIRE(::symlink(real.c_str(), path_.c_str()) == 0);
        }
        server_.emplace(real + "/uds-echo.sock", [this](int fd, const std::atomic<bool>& stop) {
            ++connections_;
            echo_changing_byte(fd, SIZE_MAX, stop);
        });
        BOOST_REQUIRE(::chmod((real + "/uds-echo.sock").c_str(), 0777) == 0);
        BOOST_REQUIRE(::chown(real.c_str(), owner, owner) == 0);
        BOOST_REQUIRE(::chmod(real.c_str(), mode) == 0);
    }
    PlantedDirectory(const PlantedDirectory&) = delete;
    PlantedDirectory& operator=(const PlantedDirectory&) = delete;
    ~PlantedDirectory() {
        server_.reset();
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }

    const std::string& path() const { return path_; }
    int connections() const { return connections_; }

private:
    TempDir target_;
    std::string path_;
    std::atomic<int> connections_{0};
    std::optional<FakeServer> server_;
};

// Root is needed to plant a directory for another uid and to run the client as that uid; the
// machine's own socket or config file would change which paths the client tries.
const RootOnly can_plant{"to plant a directory for another user and run the client as that user"};

// The client skips the planted directory, says why, tries the system path and names both.
void check_skipped(const PlantedDirectory& planted, const RunResult& result,
                   const std::string& why) {
    check_failure(
        result, exit_unavailable,
        {"skipped " + planted.path() + "/uds-echo.sock", why, uds_echo::system_socket_path});
    BOOST_TEST(planted.connections() == 0, "the client connected through " << planted.path());
}

BOOST_AUTO_TEST_CASE(a_private_tmp_directory_of_our_own_is_used,
                     *utf::precondition(can_plant) * utf::precondition(no_system_uds_echo)) {
    const uid_t user = unused_uid();
    PlantedDirectory planted(user, user, 0700, false);
    const auto result = run_client_as(user, {"hello"});
    BOOST_TEST(result.status.exited_with(exit_ok), result.status << " " << result.err);
    BOOST_TEST(planted.connections() == 1);
}

BOOST_AUTO_TEST_CASE(a_tmp_directory_owned_by_someone_else_is_skipped,
                     *utf::precondition(can_plant) * utf::precondition(no_system_uds_echo)) {
    const uid_t user = unused_uid();
    PlantedDirectory planted(user, 0, 0777, false);
    check_skipped(planted, run_client_as(user, {"secret"}), "owned by uid 0");
}

BOOST_AUTO_TEST_CASE(a_tmp_directory_open_to_others_is_skipped,
                     *utf::precondition(can_plant) * utf::precondition(no_system_uds_echo)) {
    const uid_t user = unused_uid();
    PlantedDirectory planted(user, user, 0777, false);
    check_skipped(planted, run_client_as(user, {"secret"}), "mode 0777");
}

BOOST_AUTO_TEST_CASE(a_tmp_directory_that_is_a_symlink_is_skipped,
                     *utf::precondition(can_plant) * utf::precondition(no_system_uds_echo)) {
    const uid_t user = unused_uid();
    PlantedDirectory planted(user, user, 0700, true);
    check_skipped(planted, run_client_as(user, {"secret"}), "symlink");
}
