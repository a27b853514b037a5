#include "process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>

extern char** environ;

namespace uds_echo::test {

namespace {

[[noreturn]] void throw_errno(const std::string& what, int error = errno) {
    throw std::runtime_error(what + ": " + std::strerror(error));
}

std::string join(const std::vector<std::string>& words) {
    std::string joined;
    for (const auto& word : words) {
        if (!joined.empty())
            joined += ' ';
        joined += word;
    }
    return joined;
}

FileDescriptor make_memory_file(const char* name) {
    int fd = ::memfd_create(name, MFD_CLOEXEC);
    if (fd < 0)
        throw_errno("memfd_create");
    return FileDescriptor(fd);
}

// The whole content of a memory file, read with pread so the child's write offset (shared through
// the duplicated descriptor) is not disturbed.
std::string read_whole(int fd) {
    std::string text;
    char buffer[65536];
    off_t offset = 0;
    for (;;) {
        ssize_t n = ::pread(fd, buffer, sizeof buffer, offset);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            throw_errno("pread");
        }
        if (n == 0)
            return text;
        text.append(buffer, static_cast<std::size_t>(n));
        offset += n;
    }
}

// NAME=VALUE strings of the test process's environment with `changes` applied.
std::vector<std::string> child_environment(const Environment& changes) {
    std::map<std::string, std::string> variables;
    for (char** entry = environ; *entry != nullptr; ++entry) {
        std::string_view text(*entry);
        auto equals = text.find('=');
        if (equals == std::string_view::npos)
            continue;
        variables[std::string(text.substr(0, equals))] = std::string(text.substr(equals + 1));
    }
    for (const auto& [name, value] : changes) {
        if (value)
            variables[name] = *value;
        else
            variables.erase(name);
    }
    std::vector<std::string> result;
    for (const auto& [name, value] : variables)
        result.push_back(name + "=" + value);
    return result;
}

std::vector<char*> pointers_to(std::vector<std::string>& strings) {
    std::vector<char*> pointers;
    for (auto& text : strings)
        pointers.push_back(text.data());
    pointers.push_back(nullptr);
    return pointers;
}

// In the forked child: only async-signal-safe calls until execve. Reports a failure through
// `error_pipe` (close-on-exec, so a successful exec closes it and the parent reads EOF).
// The descriptors to pass as 3, 4, ... and the LISTEN_PID= entry of the environment to fill in,
// prepared before fork.
struct ListenFds {
    std::vector<int> fds;
    std::vector<int> moved;     // room for the temporary copies
    char* listen_pid = nullptr; // "LISTEN_PID=" followed by room for the digits
};

// Writes `value` in decimal at `out` with a terminating NUL (async-signal-safe).
void format_pid(char* out, pid_t value) {
    char digits[16];
    int count = 0;
    do
        digits[count++] = static_cast<char>('0' + value % 10);
    while ((value /= 10) > 0);
    while (count > 0)
        *out++ = digits[--count];
    *out = '\0';
}

// In the child: moves the listen fds to 3, 4, ... (through copies above every descriptor they
// might overwrite) and the error pipe above them; returns the error pipe's new number, -1 on
// failure.
int place_listen_fds(ListenFds& listen, int error_pipe) {
    const int count = static_cast<int>(listen.fds.size());
    int above = std::max(error_pipe, 3 + count);
    for (const int fd : listen.fds)
        above = std::max(above, fd);
    const int pipe_copy = ::fcntl(error_pipe, F_DUPFD_CLOEXEC, above + 1);
    if (pipe_copy < 0)
        return -1;
    for (int i = 0; i < count; ++i)
        if ((listen.moved[static_cast<std::size_t>(i)] =
                 ::fcntl(listen.fds[static_cast<std::size_t>(i)], F_DUPFD, above + 1)) < 0)
            return -1;
    for (int i = 0; i < count; ++i)
        if (::dup2(listen.moved[static_cast<std::size_t>(i)], 3 + i) < 0)
            return -1;
    ::close_range(static_cast<unsigned>(3 + count), static_cast<unsigned>(pipe_copy) - 1, 0);
    format_pid(listen.listen_pid + std::strlen("LISTEN_PID="), ::getpid());
    return pipe_copy;
}

[[noreturn]] void exec_child(int stdin_fd, int stdout_fd, int stderr_fd, pid_t parent,
                             char* const* argv, char* const* envp, int error_pipe,
                             ListenFds& listen) {
    // A test process that dies must not leave a daemon behind.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent)
        ::_exit(127);

    // The child starts with default signal handling, whatever the test process ignores or blocks
    // (an inherited SIG_IGN for SIGPIPE would hide the daemon's own SIGPIPE handling).
    struct sigaction default_action {};
    default_action.sa_handler = SIG_DFL;
    for (int signal_number = 1; signal_number < NSIG; ++signal_number)
        ::sigaction(signal_number, &default_action, nullptr);
    sigset_t empty;
    ::sigemptyset(&empty);
    ::sigprocmask(SIG_SETMASK, &empty, nullptr);

    if (::dup2(stdin_fd, 0) < 0 || ::dup2(stdout_fd, 1) < 0 || ::dup2(stderr_fd, 2) < 0) {
        int error = errno;
        [[maybe_unused]] auto ignored = ::write(error_pipe, &error, sizeof error);
        ::_exit(127);
    }
    // Only 0, 1, 2, the listen fds and the error pipe reach the program: descriptors the test
    // process inherited without close-on-exec must not show up in the daemon's descriptor count.
    if (!listen.fds.empty()) {
        error_pipe = place_listen_fds(listen, error_pipe);
        if (error_pipe < 0)
            ::_exit(127);
        ::close_range(static_cast<unsigned>(error_pipe) + 1, ~0U, 0);
    } else if (error_pipe > 3) {
        ::close_range(3, static_cast<unsigned>(error_pipe) - 1, 0);
        ::close_range(static_cast<unsigned>(error_pipe) + 1, ~0U, 0);
    } else {
        ::close_range(error_pipe == 3 ? 4 : 3, ~0U, 0);
    }
    ::execve(argv[0], argv, envp);
    int error = errno;
    [[maybe_unused]] auto ignored = ::write(error_pipe, &error, sizeof error);
    ::_exit(127);
}

bool has_option(const std::vector<std::string>& args, const std::string& long_name,
                const std::string& short_name) {
    return std::any_of(args.begin(), args.end(), [&](const std::string& arg) {
        return arg == long_name || arg == short_name || arg.starts_with(long_name + "=");
    });
}

// sockaddr_un for a path or "@abstract"; the length to pass to bind/connect.

} // namespace

socklen_t make_address(const std::string& path, sockaddr_un& address) {
    std::memset(&address, 0, sizeof address);
    address.sun_family = AF_UNIX;
    bool abstract = !path.empty() && path[0] == '@';
    std::size_t room = abstract ? sizeof address.sun_path : sizeof address.sun_path - 1;
    if (path.size() > room)
        throw std::runtime_error("socket path too long for sun_path: " + path);
    std::memcpy(address.sun_path, path.data(), path.size());
    if (abstract)
        address.sun_path[0] = '\0';
    return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() +
                                  (abstract ? 0 : 1));
}

bool wait_until(const std::function<bool()>& predicate, std::chrono::milliseconds timeout,
                std::chrono::milliseconds interval) {
    auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
        if (predicate())
            return true;
        std::this_thread::sleep_for(interval);
    }
    return predicate();
}

std::string lower(std::string text) {
    for (char& c : text)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return text;
}

// ---- TempDir ----

TempDir::TempDir() {
    char pattern[] = "/tmp/ue-XXXXXX";
    if (::mkdtemp(pattern) == nullptr)
        throw_errno("mkdtemp");
    path_ = pattern;
}

TempDir::~TempDir() {
    std::error_code ignored;
    // Tests may leave read-only directories behind; make them writable so removal works.
    std::filesystem::permissions(path_, std::filesystem::perms::owner_all,
                                 std::filesystem::perm_options::add, ignored);
    std::filesystem::remove_all(path_, ignored);
}

std::string TempDir::file(const std::string& name) const {
    return path_ + "/" + name;
}

std::string TempDir::write_file(const std::string& name, const std::string& content) const {
    std::string path = file(name);
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << content;
    if (!out)
        throw std::runtime_error("cannot write " + path);
    return path;
}

// ---- ExitStatus ----

std::string ExitStatus::describe() const {
    if (signalled) {
        const char* name = ::sigabbrev_np(value);
        return "killed by signal " + std::to_string(value) +
               (name ? std::string(" (SIG") + name + ")" : "");
    }
    return "exit code " + std::to_string(value);
}

std::ostream& operator<<(std::ostream& out, const ExitStatus& status) {
    return out << status.describe();
}

// ---- Process ----

Process::Process(const ProcessOptions& options)
    : stdout_file_(make_memory_file("stdout"))
    , stderr_file_(make_memory_file("stderr"))
    , command_line_(join(options.argv)) {
    if (options.argv.empty())
        throw std::runtime_error("Process: empty argv");

    FileDescriptor stdin_file;
    int child_stdin = options.stdin_fd;
    if (options.stdin_data) {
        stdin_file = make_memory_file("stdin");
        std::string_view rest = *options.stdin_data;
        while (!rest.empty()) {
            ssize_t n = ::write(stdin_file.get(), rest.data(), rest.size());
            if (n < 0)
                throw_errno("write stdin file");
            rest.remove_prefix(static_cast<std::size_t>(n));
        }
        ::lseek(stdin_file.get(), 0, SEEK_SET);
        child_stdin = stdin_file.get();
    } else if (child_stdin < 0) {
        stdin_file = FileDescriptor(::open("/dev/null", O_RDONLY | O_CLOEXEC));
        if (!stdin_file.valid())
            throw_errno("open /dev/null");
        child_stdin = stdin_file.get();
    }

    // Everything the child needs is prepared before fork: after it, only async-signal-safe calls.
    std::vector<std::string> argv_strings = options.argv;
    auto environment = options.environment;
    ListenFds listen{options.listen_fds, std::vector<int>(options.listen_fds.size()), nullptr};
    if (!listen.fds.empty()) {
        environment["LISTEN_FDS"] = std::to_string(listen.fds.size());
        environment["LISTEN_PID"] = std::string(15, '0'); // room, filled in by the child
    }
    std::vector<std::string> env_strings = child_environment(environment);
    for (auto& entry : env_strings)
        if (entry.starts_with("LISTEN_PID=") && !listen.fds.empty())
            listen.listen_pid = entry.data();
    std::vector<char*> argv = pointers_to(argv_strings);
    std::vector<char*> envp = pointers_to(env_strings);

    int error_pipe[2];
    if (::pipe2(error_pipe, O_CLOEXEC) < 0)
        throw_errno("pipe2");
    FileDescriptor error_read(error_pipe[0]);
    FileDescriptor error_write(error_pipe[1]);

    pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ < 0)
        throw_errno("fork");
    if (pid_ == 0)
        exec_child(child_stdin, stdout_file_.get(), stderr_file_.get(), parent, argv.data(),
                   envp.data(), error_write.get(), listen);

    error_write.reset();
    int child_errno = 0;
    ssize_t n;
    do
        n = ::read(error_read.get(), &child_errno, sizeof child_errno);
    while (n < 0 && errno == EINTR);
    if (n == static_cast<ssize_t>(sizeof child_errno)) {
        try_reap(true);
        pid_ = -1;
        throw_errno("cannot execute " + options.argv[0], child_errno);
    }
}

Process::Process(Process&& other) noexcept
    : pid_(other.pid_)
    , stdout_file_(std::move(other.stdout_file_))
    , stderr_file_(std::move(other.stderr_file_))
    , status_(other.status_)
    , command_line_(std::move(other.command_line_)) {
    other.pid_ = -1;
}

Process::~Process() {
    kill_and_reap();
}

void Process::try_reap(bool block) {
    if (pid_ < 0 || status_)
        return;
    int raw = 0;
    pid_t result;
    do
        result = ::waitpid(pid_, &raw, block ? 0 : WNOHANG);
    while (result < 0 && errno == EINTR);
    if (result != pid_)
        return;
    if (WIFSIGNALED(raw))
        status_ = ExitStatus{true, WTERMSIG(raw)};
    else
        status_ = ExitStatus{false, WEXITSTATUS(raw)};
}

void Process::signal(int signal_number) {
    try_reap(false);
    if (pid_ < 0 || status_)
        return;
    ::kill(pid_, signal_number);
}

bool Process::running() {
    try_reap(false);
    return pid_ >= 0 && !status_;
}

std::optional<ExitStatus> Process::wait_for_exit(std::chrono::milliseconds timeout) {
    if (pid_ < 0)
        return status_;
    wait_until([this] { return !running(); }, timeout, 2ms);
    return status_;
}

void Process::kill_and_reap() {
    if (pid_ < 0 || status_)
        return;
    try_reap(false);
    if (status_)
        return;
    ::kill(pid_, SIGKILL);
    try_reap(true);
}

std::string Process::stdout_text() const {
    return read_whole(stdout_file_.get());
}
std::string Process::stderr_text() const {
    return read_whole(stderr_file_.get());
}

RunResult run(const ProcessOptions& options, std::chrono::milliseconds timeout) {
    Process process(options);
    auto status = process.wait_for_exit(timeout);
    if (!status) {
        process.kill_and_reap();
        throw std::runtime_error("'" + process.command_line() + "' did not end within " +
                                 std::to_string(timeout.count()) +
                                 " ms; stderr: " + process.stderr_text());
    }
    return RunResult{*status, process.stdout_text(), process.stderr_text()};
}

// ---- binaries and the daemon ----

namespace {
std::string binary_from(const char* variable) {
    const char* value = std::getenv(variable);
    if (value == nullptr || *value == '\0')
        throw std::runtime_error(std::string("$") + variable +
                                 " is not set (run the tests through ctest)");
    return value;
}
} // namespace

std::string daemon_binary() {
    return binary_from("UDS_ECHOD");
}
std::string client_binary() {
    return binary_from("UDS_ECHO");
}

Environment clean_daemon_environment() {
    Environment environment;
    for (const char* name :
         {"UDS_ECHO_SOCKET", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PIDFDID",
          "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM", "INVOCATION_ID"})
        environment[name] = std::nullopt;
    return environment;
}

Environment clean_client_environment() {
    return Environment{{"UDS_ECHO_SOCKET", std::nullopt}};
}

RunResult run_client(const std::vector<std::string>& args, ProcessOptions options,
                     std::chrono::milliseconds timeout) {
    options.argv = {client_binary()};
    options.argv.insert(options.argv.end(), args.begin(), args.end());
    Environment environment = clean_client_environment();
    for (const auto& [name, value] : options.environment)
        environment[name] = value;
    options.environment = std::move(environment);
    return run(options, timeout);
}

bool waits_in_event_loop(pid_t pid) {
    const std::string task = "/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid);
    std::ifstream status(task + "/status");
    std::string line;
    bool sigterm_blocked = true;
    while (std::getline(status, line)) {
        if (line.starts_with("SigBlk:")) {
            const unsigned long long blocked = std::stoull(line.substr(7), nullptr, 16);
            sigterm_blocked = (blocked & (1ULL << (SIGTERM - 1))) != 0;
            break;
        }
    }
    std::ifstream wchan(task + "/wchan");
    std::string waiting_in;
    std::getline(wchan, waiting_in);
    return !sigterm_blocked && waiting_in.find("epoll_wait") != std::string::npos;
}

Daemon start_daemon(const TempDir& dir, DaemonOptions options) {
    std::string socket = options.socket.empty() ? dir.file("s.sock") : options.socket;
    ProcessOptions process_options;
    process_options.argv = options.wrapper;
    process_options.argv.push_back(daemon_binary());
    if (options.pass_socket && !has_option(options.args, "--socket", "-s")) {
        process_options.argv.push_back("--socket");
        process_options.argv.push_back(socket);
    }
    if (!has_option(options.args, "--config", "-c")) {
        process_options.argv.push_back("--config");
        process_options.argv.push_back(dir.write_file("empty.conf", ""));
    }
    // $UDS_ECHO_TEST_THREADS (the tsan test preset sets it) is the worker count of every daemon
    // whose test chooses none, so that workers race on a one-CPU machine too.
    const char* threads = std::getenv("UDS_ECHO_TEST_THREADS");
    if (threads != nullptr && *threads != '\0' &&
        !has_option(options.args, "--threads", "--threads")) {
        process_options.argv.push_back("--threads");
        process_options.argv.push_back(threads);
    }
    process_options.argv.insert(process_options.argv.end(), options.args.begin(),
                                options.args.end());
    process_options.environment = clean_daemon_environment();
    for (const auto& [name, value] : options.environment)
        process_options.environment[name] = value;
    process_options.listen_fds = options.listen_fds;

    Daemon daemon{Process(process_options), socket};
    if (!options.wait_ready)
        return daemon;

    bool ready =
        wait_until([&] { return !daemon.process.running() || daemon_answers(socket); },
                   options.ready_timeout, 5ms) &&
        wait_until(
            [&] { return !daemon.process.running() || waits_in_event_loop(daemon.process.pid()); },
            options.ready_timeout, 1ms);
    if (!daemon.process.running())
        throw std::runtime_error("'" + daemon.process.command_line() + "' ended before serving (" +
                                 daemon.process.status()->describe() +
                                 "); stderr: " + daemon.process.stderr_text());
    if (!ready)
        throw std::runtime_error(
            "'" + daemon.process.command_line() + "' is not ready (answering on " + socket +
            ", handling signals) after " + std::to_string(options.ready_timeout.count()) +
            " ms; stderr: " + daemon.process.stderr_text());
    return daemon;
}

bool daemon_answers(const std::string& socket, std::chrono::milliseconds answer_timeout) {
    ConnectResult attempt = try_connect_unix(socket);
    if (!attempt.fd.valid())
        return false;
    if (::send(attempt.fd.get(), "?", 1, MSG_NOSIGNAL) != 1)
        return false;
    return wait_readable(attempt.fd.get(), answer_timeout);
}

ExitStatus stop_daemon(Daemon& daemon, std::chrono::milliseconds timeout) {
    daemon.process.signal(SIGTERM);
    auto status = daemon.process.wait_for_exit(timeout);
    if (!status)
        throw std::runtime_error("uds-echod did not exit within " +
                                 std::to_string(timeout.count()) +
                                 " ms of SIGTERM; stderr: " + daemon.process.stderr_text());
    return *status;
}

// ---- sockets ----

ConnectResult try_connect_unix(const std::string& path) {
    ConnectResult result;
    result.fd = FileDescriptor(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!result.fd.valid()) {
        result.error = errno;
        return result;
    }
    sockaddr_un address;
    socklen_t length = make_address(path, address);
    int rc;
    do
        rc = ::connect(result.fd.get(), reinterpret_cast<sockaddr*>(&address), length);
    while (rc < 0 && errno == EINTR);
    if (rc < 0) {
        result.error = errno;
        result.fd.reset();
    }
    return result;
}

FileDescriptor bind_unix(const std::string& path, int type) {
    FileDescriptor fd(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
    if (!fd.valid())
        throw_errno("socket for " + path);
    sockaddr_un address;
    const socklen_t length = make_address(path, address);
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), length) != 0)
        throw_errno("bind " + path);
    return fd;
}

FileDescriptor listen_unix(const std::string& path, int backlog) {
    FileDescriptor fd = bind_unix(path);
    if (::listen(fd.get(), backlog) != 0)
        throw_errno("listen at " + path);
    return fd;
}

FileDescriptor connect_unix(const std::string& path, std::chrono::milliseconds io_timeout) {
    ConnectResult result = try_connect_unix(path);
    if (!result.fd.valid())
        throw_errno("connect to " + path, result.error);
    set_io_timeout(result.fd.get(), io_timeout);
    return std::move(result.fd);
}

std::optional<FileDescriptor> connect_unix_within(const std::string& path,
                                                  std::chrono::milliseconds timeout) {
    std::optional<FileDescriptor> connected;
    wait_until(
        [&] {
            ConnectResult result = try_connect_unix(path);
            if (!result.fd.valid())
                return false;
            set_io_timeout(result.fd.get(), 30s);
            connected = std::move(result.fd);
            return true;
        },
        timeout, 5ms);
    return connected;
}

void set_io_timeout(int fd, std::chrono::milliseconds timeout) {
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
    if (::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0 ||
        ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0)
        throw_errno("setsockopt timeout");
}

void write_all(int fd, std::string_view data) {
    while (!data.empty()) {
        ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                throw std::runtime_error("write timed out");
            throw_errno("write");
        }
        data.remove_prefix(static_cast<std::size_t>(n));
    }
}

namespace {
// One recv; returns bytes read (0 = EOF); throws on error or timeout.
std::size_t receive_some(int fd, char* buffer, std::size_t size) {
    for (;;) {
        ssize_t n = ::recv(fd, buffer, size, 0);
        if (n >= 0)
            return static_cast<std::size_t>(n);
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            throw std::runtime_error("read timed out");
        throw_errno("read");
    }
}
} // namespace

std::string read_exact(int fd, std::size_t count) {
    std::string data(count, '\0');
    std::size_t done = 0;
    while (done < count) {
        std::size_t n = receive_some(fd, data.data() + done, count - done);
        if (n == 0)
            throw std::runtime_error("EOF after " + std::to_string(done) + " of " +
                                     std::to_string(count) + " bytes");
        done += n;
    }
    return data;
}

std::string read_until_eof(int fd) {
    std::string data;
    char buffer[65536];
    for (;;) {
        std::size_t n = receive_some(fd, buffer, sizeof buffer);
        if (n == 0)
            return data;
        data.append(buffer, n);
    }
}

std::string read_until_end_quietly(int fd) {
    std::string data;
    char buffer[65536];
    for (;;) {
        ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return data;
        data.append(buffer, static_cast<std::size_t>(n));
    }
}

void shutdown_write(int fd) {
    if (::shutdown(fd, SHUT_WR) < 0)
        throw_errno("shutdown(SHUT_WR)");
}

void close_with_reset(FileDescriptor& fd) {
    linger option{1, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &option, sizeof option);
    fd.reset();
}

bool wait_readable(int fd, std::chrono::milliseconds timeout) {
    pollfd entry{fd, POLLIN, 0};
    auto deadline = Clock::now() + timeout;
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        int rc = ::poll(&entry, 1, static_cast<int>(std::max<long long>(0, left.count())));
        if (rc > 0)
            return true;
        if (rc == 0)
            return false;
        if (errno != EINTR)
            throw_errno("poll");
    }
}

bool peer_closed(int fd, std::chrono::milliseconds timeout) {
    if (!wait_readable(fd, timeout))
        return false;
    char byte;
    ssize_t n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

std::string echo_through(const std::string& socket_path, const std::string& data) {
    FileDescriptor fd = connect_unix(socket_path);
    std::string write_error;
    std::thread writer([&] {
        try {
            write_all(fd.get(), data);
            shutdown_write(fd.get());
        } catch (const std::exception& error) {
            write_error = error.what();
        }
    });
    std::string echoed;
    std::string read_error;
    try {
        echoed = read_until_eof(fd.get());
    } catch (const std::exception& error) {
        read_error = error.what();
        // Unblock the writer if it waits on a full socket buffer.
        ::shutdown(fd.get(), SHUT_RDWR);
    }
    writer.join();
    if (!write_error.empty() || !read_error.empty())
        throw std::runtime_error("echo through " + socket_path + " failed: " + write_error +
                                 (write_error.empty() ? "" : "; ") + read_error + " (read " +
                                 std::to_string(echoed.size()) + " of " +
                                 std::to_string(data.size()) + " bytes)");
    return echoed;
}

std::string random_bytes(std::size_t size, std::uint64_t seed) {
    // splitmix64: fast, deterministic, good enough to make every byte distinct per seed.
    std::string data(size, '\0');
    std::uint64_t state = seed;
    for (std::size_t i = 0; i < size; i += 8) {
        state += 0x9e3779b97f4a7c15ULL;
        std::uint64_t z = state;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        z ^= z >> 31;
        std::memcpy(data.data() + i, &z, std::min<std::size_t>(8, size - i));
    }
    return data;
}

ChunkedWriter::ChunkedWriter(int fd, std::size_t total, std::size_t chunk)
    : total_(total)
    , chunk_(chunk)
    , thread_([this, fd] {
        try {
            for (std::size_t offset = 0; offset < total_; offset += chunk_) {
                write_all(fd, random_bytes(chunk_, offset));
                written_ += chunk_;
            }
            shutdown_write(fd);
        } catch (const std::exception& error) {
            error_ = error.what();
            ::shutdown(fd, SHUT_RDWR);
        }
    }) {}

ChunkedWriter::~ChunkedWriter() {
    if (thread_.joinable())
        thread_.join();
}

std::string ChunkedWriter::join() {
    if (thread_.joinable())
        thread_.join();
    return error_;
}

std::optional<std::size_t> ChunkedWriter::first_wrong_chunk(const std::string& echoed) const {
    for (std::size_t offset = 0; offset < total_; offset += chunk_)
        if (echoed.compare(offset, chunk_, random_bytes(chunk_, offset)) != 0)
            return offset;
    if (echoed.size() != total_)
        return std::min(echoed.size(), total_);
    return std::nullopt;
}

std::optional<std::size_t> first_difference(std::string_view a, std::string_view b) {
    auto [in_a, in_b] = std::mismatch(a.begin(), a.end(), b.begin(), b.end());
    if (in_a == a.end() && in_b == b.end())
        return std::nullopt;
    return static_cast<std::size_t>(in_a - a.begin());
}

// ---- /proc and files ----

std::size_t open_fd_count(pid_t pid) {
    std::error_code error;
    std::filesystem::directory_iterator entries("/proc/" + std::to_string(pid) + "/fd", error);
    if (error)
        throw std::runtime_error("cannot list /proc/" + std::to_string(pid) +
                                 "/fd: " + error.message());
    std::size_t count = 0;
    for (auto it = entries; it != std::filesystem::directory_iterator(); it.increment(error)) {
        if (error)
            break;
        ++count;
    }
    return count;
}

std::size_t resident_bytes(pid_t pid) {
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(status, line)) {
        if (line.starts_with("VmRSS:")) {
            std::istringstream fields(line.substr(6));
            std::size_t kib = 0;
            fields >> kib;
            return kib * 1024;
        }
    }
    throw std::runtime_error("no VmRSS for pid " + std::to_string(pid));
}

bool path_exists(const std::string& path) {
    struct stat info;
    return ::lstat(path.c_str(), &info) == 0;
}

bool is_socket_file(const std::string& path) {
    struct stat info;
    return ::lstat(path.c_str(), &info) == 0 && S_ISSOCK(info.st_mode);
}

mode_t file_mode(const std::string& path) {
    struct stat info;
    if (::lstat(path.c_str(), &info) < 0)
        throw_errno("lstat " + path);
    return info.st_mode & 07777;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw std::runtime_error("cannot read " + path);
    std::ostringstream content;
    content << in.rdbuf();
    return content.str();
}

std::vector<std::string> non_empty_lines(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line))
        if (!line.empty())
            lines.push_back(line);
    return lines;
}

RaiseDescriptorLimit::RaiseDescriptorLimit() {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &limit);
    }
}

} // namespace uds_echo::test
