// Test harness for the integration tests: temporary directories, child processes with captured
// output, a started daemon, and small blocking socket helpers.
//
// Rules the helpers follow so that tests stay parallel-safe and never hang:
// - every child is killed (SIGKILL) and reaped by its owner's destructor, and gets
//   PR_SET_PDEATHSIG(SIGTERM) so a crashed test process leaves no orphan. PDEATHSIG fires when the
//   *thread* that forked exits: spawn from the test's main thread (or a thread that outlives the
//   child);
// - waiting is always polling against a deadline, never a fixed sleep;
// - sockets made here have send and receive timeouts, so a daemon that stops answering fails the
//   test instead of blocking it forever.
// Errors are reported by throwing std::runtime_error with a message; Boost.Test reports it.
#pragma once

#include "common/exit_codes.hpp"
#include "common/file_descriptor.hpp"

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace uds_echo::test {

// The exit codes of both programs (docs/protocol.md), as the numbers a child's status carries.
inline constexpr int exit_ok = to_int(ExitCode::ok);
inline constexpr int exit_usage = to_int(ExitCode::usage);
inline constexpr int exit_data_error = to_int(ExitCode::data_error);
inline constexpr int exit_unavailable = to_int(ExitCode::unavailable);
inline constexpr int exit_os_error = to_int(ExitCode::os_error);
inline constexpr int exit_cannot_create = to_int(ExitCode::cannot_create);
inline constexpr int exit_timeout = to_int(ExitCode::temp_failure);
inline constexpr int exit_no_permission = to_int(ExitCode::no_permission);
inline constexpr int exit_config = to_int(ExitCode::config);

// True when `part` occurs in `text`: the tests' check of messages and logs.
inline bool contains(std::string_view text, std::string_view part) {
    return text.find(part) != std::string_view::npos;
}

// `text` in lower case (ASCII), for log lines whose capitals the tests do not pin down.
std::string lower(std::string text);

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Polls `predicate` every `interval` until it returns true (true) or `timeout` passes (false).
// The predicate is evaluated once more at the deadline, so a slow machine is not penalised by the
// poll granularity.
bool wait_until(const std::function<bool()>& predicate, std::chrono::milliseconds timeout,
                std::chrono::milliseconds interval = 5ms);

// The tests own their descriptors with the library's class.
using uds_echo::FileDescriptor;

// A private directory below /tmp (mkdtemp, short so that socket paths fit in sun_path), removed
// with everything in it by the destructor.
class TempDir {
public:
    TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    ~TempDir();

    const std::string& path() const { return path_; }
    // path() + "/" + name
    std::string file(const std::string& name) const;
    // Creates (or truncates) the file `name` with `content` and returns its path.
    std::string write_file(const std::string& name, const std::string& content) const;

private:
    std::string path_;
};

// How a child ended: a normal exit with a code, or a signal.
struct ExitStatus {
    bool signalled = false;
    int value = 0; // exit code, or signal number when signalled

    bool exited_with(int code) const { return !signalled && value == code; }
    std::string describe() const;
    friend bool operator==(const ExitStatus&, const ExitStatus&) = default;
};
std::ostream& operator<<(std::ostream& out, const ExitStatus& status);

// Environment changes for a child: a value sets the variable, nullopt removes it. Everything else
// is inherited from the test process.
using Environment = std::map<std::string, std::optional<std::string>>;

struct ProcessOptions {
    std::vector<std::string> argv; // argv[0] is the program path (execv, no PATH search)
    Environment environment;
    // stdin: `stdin_data` when set (a memory file, so the child sees a regular file with exactly
    // this content), else `stdin_fd` when >= 0 (duplicated; the caller keeps its copy), else
    // /dev/null.
    std::optional<std::string> stdin_data;
    int stdin_fd = -1;
    // Socket activation as sd_listen_fds(3) reads it: these descriptors (the caller keeps its
    // copies) become the child's 3, 4, ... and LISTEN_FDS/LISTEN_PID say so; LISTEN_FDNAMES, when
    // wanted, goes in `environment`.
    std::vector<int> listen_fds;
};

// A child process. stdout and stderr go to anonymous memory files, readable at any time (also
// while the child runs) without any risk of the child blocking on a full pipe.
class Process {
public:
    explicit Process(const ProcessOptions& options);
    Process(Process&& other) noexcept;
    Process& operator=(Process&&) = delete;
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;
    // Kills (SIGKILL) and reaps the child if it is still running.
    ~Process();

    pid_t pid() const { return pid_; }
    // Sends `signal_number` unless the child was already reaped (never a recycled pid).
    void signal(int signal_number);
    // Reaps the child if it has ended; true while it runs.
    bool running();
    // Waits until the child ends or `timeout` passes; nullopt on timeout (the child keeps running).
    std::optional<ExitStatus> wait_for_exit(std::chrono::milliseconds timeout);
    // The status once reaped.
    std::optional<ExitStatus> status() const { return status_; }
    // SIGKILL and reap (no-op when already reaped).
    void kill_and_reap();

    std::string stdout_text() const;
    std::string stderr_text() const;
    // argv joined by spaces, for messages.
    const std::string& command_line() const { return command_line_; }

private:
    void try_reap(bool block);

    pid_t pid_ = -1;
    FileDescriptor stdout_file_;
    FileDescriptor stderr_file_;
    std::optional<ExitStatus> status_;
    std::string command_line_;
};

// What a finished process left behind.
struct RunResult {
    ExitStatus status;
    std::string out;
    std::string err;
};

// Runs a process to completion; throws (after killing it) if it does not end within `timeout`.
RunResult run(const ProcessOptions& options, std::chrono::milliseconds timeout = 20s);

// The binaries under test, from $UDS_ECHOD and $UDS_ECHO (set by CTest); throws if unset.
std::string daemon_binary();
std::string client_binary();

// Variables that would let the machine's or the caller's context leak into a child (socket path,
// systemd activation and notification, journald detection). start_daemon() removes them all.
Environment clean_daemon_environment();

// The client's environment: the test process's without $UDS_ECHO_SOCKET, so that only what a
// test passes names a socket.
Environment clean_client_environment();

// Runs uds-echo with `args` (options.argv is replaced) to completion, as run() does;
// `options.environment` applies on top of clean_client_environment().
RunResult run_client(const std::vector<std::string>& args, ProcessOptions options = {},
                     std::chrono::milliseconds timeout = 60s);

struct DaemonOptions {
    // --socket value; empty means dir/s.sock. Not passed at all when `args` already has --socket
    // or -s, or when `pass_socket` is false (then `socket` only says where to wait for readiness).
    std::string socket;
    bool pass_socket = true;
    // Extra arguments. --config dir/empty.conf is added unless they contain --config or -c, so
    // the machine's /etc/uds-echo/uds-echo.conf never influences a test. --threads
    // $UDS_ECHO_TEST_THREADS is added when that variable is set and they have no --threads.
    std::vector<std::string> args;
    // Applied on top of clean_daemon_environment().
    Environment environment;
    // Passed as by socket activation (ProcessOptions::listen_fds); with `pass_socket` false,
    // `socket` then names the passed listening socket's path.
    std::vector<int> listen_fds;
    // A command that runs the daemon, put before it (e.g. setpriv with another uid); it must exec
    // the daemon in the same process, so that its pid is the daemon's.
    std::vector<std::string> wrapper;
    // Wait until the daemon answers on the socket (see daemon_answers()).
    bool wait_ready = true;
    std::chrono::milliseconds ready_timeout = 10s;

    // Shorthands (designated initializers that omit fields warn with g++ 12 -Wextra).
    static DaemonOptions at(std::string socket_path, std::vector<std::string> extra_args = {}) {
        DaemonOptions options;
        options.socket = std::move(socket_path);
        options.args = std::move(extra_args);
        return options;
    }
    static DaemonOptions with_args(std::vector<std::string> extra_args) {
        DaemonOptions options;
        options.args = std::move(extra_args);
        return options;
    }
};

// A running uds-echod and the socket it serves.
struct Daemon {
    Process process;
    std::string socket;
};

// True when the main thread of process `pid` does not block SIGTERM and waits in epoll_wait.
// uds-echod blocks its signals from its start until its handlers own them (its READY=1 point), and
// its workers may answer before. A signal sent around then is handled in plain builds, but
// ThreadSanitizer (GCC 12) loses about one in 500 of them: the kernel delivers the signal to
// TSan's handler and Asio's handler never runs (docs/testing.md). Once the main thread has waited
// in its event loop, no loss was seen.
bool waits_in_event_loop(pid_t pid);

// Starts uds-echod in `dir`. When waiting for readiness (the socket answers, then
// waits_in_event_loop()), throws with the daemon's exit status and stderr if it ends before the
// socket answers, or if the timeout passes.
Daemon start_daemon(const TempDir& dir, DaemonOptions options = {});

// True when a daemon at `socket` serves: a connection is accepted and answered (a probe byte is
// echoed, or the daemon closes the connection, as it does for a peer it refuses). A successful
// connect() alone is not enough: the kernel completes it from the listen backlog before the daemon
// runs its event loop.
bool daemon_answers(const std::string& socket, std::chrono::milliseconds answer_timeout = 500ms);

// Sends SIGTERM and waits for the exit; throws with stderr if it does not end within `timeout`.
ExitStatus stop_daemon(Daemon& daemon, std::chrono::milliseconds timeout = 10s);

// ---- sockets (blocking, close-on-exec; "@name" means the abstract name "\0name") ----

// The connected socket, or the errno of socket()/connect().
struct ConnectResult {
    FileDescriptor fd;
    int error = 0;
};
ConnectResult try_connect_unix(const std::string& path);
// A socket of `type` bound to `path`; throws if it cannot be.
FileDescriptor bind_unix(const std::string& path, int type = SOCK_STREAM);
// A stream socket listening at `path`; throws if it cannot be.
FileDescriptor listen_unix(const std::string& path, int backlog = SOMAXCONN);
// The address of `path` ("@name": abstract) and its length, for bind(), connect() and sendto().
socklen_t make_address(const std::string& path, sockaddr_un& address);

// Connects or throws; sets send/receive timeouts of `io_timeout`.
FileDescriptor connect_unix(const std::string& path, std::chrono::milliseconds io_timeout = 30s);
// Polls try_connect_unix until it succeeds or `timeout` passes.
std::optional<FileDescriptor> connect_unix_within(const std::string& path,
                                                  std::chrono::milliseconds timeout);

// SO_SNDTIMEO and SO_RCVTIMEO (0 = block forever).
void set_io_timeout(int fd, std::chrono::milliseconds timeout);
// Writes everything (MSG_NOSIGNAL) or throws (error, or timeout).
void write_all(int fd, std::string_view data);
// Reads exactly `count` bytes or throws (EOF first, error, or timeout).
std::string read_exact(int fd, std::size_t count);
// Reads until EOF or throws (error or timeout).
std::string read_until_eof(int fd);
// Reads whatever arrives until EOF, error or timeout, and returns it without throwing: for
// connections the daemon may cut.
std::string read_until_end_quietly(int fd);
void shutdown_write(int fd);
// Closes with SO_LINGER {1, 0}: the kernel resets the connection (ECONNRESET on the other side).
void close_with_reset(FileDescriptor& fd);
// True when `fd` has data or EOF (or an error) within `timeout`.
bool wait_readable(int fd, std::chrono::milliseconds timeout);
// True when the peer has closed: readable and a MSG_PEEK recv returns 0 or an error.
bool peer_closed(int fd, std::chrono::milliseconds timeout);

// Sends `data` from a writer thread while this thread reads the echo, half-closes after the last
// byte and reads until EOF; returns what came back. Never deadlocks on data larger than the socket
// buffers.
std::string echo_through(const std::string& socket_path, const std::string& data);

// Deterministic pseudo-random bytes (all 256 values, NUL included) from `seed`.
std::string random_bytes(std::size_t size, std::uint64_t seed);

// The stream the backpressure tests send: `total` bytes as blocks random_bytes(chunk, offset),
// written from a thread of its own, then a half-close. A write error shuts the socket down, so
// that a reader blocked on it wakes up.
class ChunkedWriter {
public:
    ChunkedWriter(int fd, std::size_t total, std::size_t chunk);
    ChunkedWriter(const ChunkedWriter&) = delete;
    ChunkedWriter& operator=(const ChunkedWriter&) = delete;
    ~ChunkedWriter();

    // The bytes the kernel has taken so far.
    std::size_t written() const { return written_.load(); }
    // Waits for the thread; returns the write error, or "" when everything was written.
    std::string join();
    // The offset of the first chunk in which `echoed` differs from the stream (its size included),
    // or nullopt when it is the whole stream.
    std::optional<std::size_t> first_wrong_chunk(const std::string& echoed) const;

private:
    std::size_t total_;
    std::size_t chunk_;
    std::atomic<std::size_t> written_{0};
    std::string error_;
    std::thread thread_;
};

// Offset of the first difference, or nullopt when equal (for readable failures on large data).
std::optional<std::size_t> first_difference(std::string_view a, std::string_view b);

// Raises the test process's soft descriptor limit to the hard limit: a Boost.Test global fixture
// (BOOST_TEST_GLOBAL_FIXTURE(RaiseDescriptorLimit)) for tests that open thousands of sockets.
struct RaiseDescriptorLimit {
    RaiseDescriptorLimit();
};

// ---- /proc and files ----

// Number of entries in /proc/PID/fd; throws if it cannot be read.
std::size_t open_fd_count(pid_t pid);
// VmRSS of /proc/PID/status in bytes; throws if it cannot be read.
std::size_t resident_bytes(pid_t pid);

bool path_exists(const std::string& path);    // lstat succeeds (a dangling symlink exists)
bool is_socket_file(const std::string& path); // lstat says S_IFSOCK
// Permission bits (07777) from lstat; throws if missing.
mode_t file_mode(const std::string& path);
std::string read_file(const std::string& path);

// The non-empty lines of `text`.
std::vector<std::string> non_empty_lines(const std::string& text);

} // namespace uds_echo::test
