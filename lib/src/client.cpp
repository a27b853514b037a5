#include "uds_echo/client.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <exception>
#include <filesystem>
#include <optional>
#include <ostream>
#include <span>
#include <sstream>
#include <thread>
#include <vector>

namespace uds_echo {

namespace {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
using Socket = asio::local::stream_protocol::socket;
using boost::system::error_code;
using std::chrono::milliseconds;

constexpr auto as_tuple_awaitable = asio::as_tuple(asio::use_awaitable);

// ---------------------------------------------------------------------------------------------
// Messages

std::string error_text(int error) {
    return std::strerror(error);
}

// "5 s", "0.5 s", "0.25 s": the timeout as the user typed it, more or less.
std::string seconds_text(milliseconds duration) {
    std::ostringstream text;
    text << static_cast<double>(duration.count()) / 1000.0 << " s";
    return text.str();
}

std::string user_name(uid_t uid) {
    if (const passwd* entry = ::getpwuid(uid))
        return entry->pw_name;
    return std::to_string(uid);
}

std::string group_name(gid_t gid) {
    if (const group* entry = ::getgrgid(gid))
        return entry->gr_name;
    return std::to_string(gid);
}

std::string octal_mode(mode_t mode) {
    std::ostringstream text;
    text << '0' << std::oct << (mode & 07777);
    return text.str();
}

std::string owner_group_mode(const struct stat& status) {
    return "owner " + user_name(status.st_uid) + ", group " + group_name(status.st_gid) +
           ", mode " + octal_mode(status.st_mode);
}

// connect() said EACCES or EPERM. Either a directory on the way cannot be searched, or the socket
// file is not writable for us; the administrator needs to know which, and who owns it.
std::string explain_permission_denied(const std::string& path) {
    // Directories from the top down: the first one we may not enter is the one to fix.
    std::vector<std::filesystem::path> directories;
    for (auto dir = std::filesystem::path(path).parent_path(); !dir.empty();
         dir = dir.parent_path()) {
        directories.push_back(dir);
        if (dir == dir.root_path())
            break;
    }
    for (auto dir = directories.rbegin(); dir != directories.rend(); ++dir) {
        struct stat status {};
        if (::access(dir->c_str(), X_OK) != 0 && ::stat(dir->c_str(), &status) == 0)
            return "permission denied: cannot enter the directory " + dir->string() + " (" +
                   owner_group_mode(status) + ") that holds " + path;
    }
    struct stat status {};
    if (::stat(path.c_str(), &status) != 0)
        return "permission denied connecting to " + path;
    std::string message =
        "permission denied connecting to " + path + " (" + owner_group_mode(status) + ")";
    if ((status.st_mode & S_IWGRP) != 0)
        message += "; members of the group " + group_name(status.st_gid) + " may connect";
    return message;
}

// connect() to a path said ECONNREFUSED: usually the socket file a dead daemon left behind, but
// connect() says the same for a regular file at the path.
std::string explain_refusal(const std::string& path) {
    struct stat status {};
    if (::stat(path.c_str(), &status) == 0 && !S_ISSOCK(status.st_mode))
        return path + " is not a socket (" + owner_group_mode(status) + ")";
    return "nothing is listening at " + path + " (stale socket file?)";
}

std::string join_paths(const std::vector<std::string>& paths) {
    std::string joined;
    for (std::size_t i = 0; i < paths.size(); ++i) {
        if (i > 0)
            joined += (i + 1 == paths.size()) ? " or " : ", ";
        joined += paths[i];
    }
    return joined;
}

Failure no_socket_failure(const std::vector<std::string>& paths_tried) {
    return Failure(ExitCode::unavailable,
                   "no daemon listens at " + join_paths(paths_tried) +
                       " (no such socket; is it running? try: systemctl start uds-echo.socket)");
}

// ---------------------------------------------------------------------------------------------
// Connecting

// The listen backlog of a busy daemon is full: retry quickly at first, then every 50 ms.
constexpr milliseconds first_backlog_retry{1};
constexpr milliseconds last_backlog_retry{50};

void make_blocking(int fd) {
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0)
        throw Failure(ExitCode::os_error,
                      "cannot make the connection blocking: " + error_text(errno));
}

// The connected descriptor, or the errno that ended the attempt (ETIMEDOUT when the backlog
// stayed full until the deadline).
struct ConnectAttempt {
    int fd = -1;
    int error = 0;
};

// Connects a non-blocking socket by hand rather than with Asio's async_connect: for AF_UNIX a
// non-blocking connect() either completes at once or fails, and EAGAIN means the listen backlog
// is full. async_connect takes that EAGAIN for "in progress", reports success once the socket
// polls writable, and the first write then fails with ENOTCONN (asio#1014). Here EAGAIN is
// retried with a short backoff until the deadline.
ConnectAttempt connect_with_retry(const std::string& path, Clock::time_point deadline) {
    const auto endpoint = make_endpoint(path);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        throw Failure(ExitCode::os_error, "cannot create a socket: " + error_text(errno));
    auto backoff = first_backlog_retry;
    for (;;) {
        if (::connect(fd, endpoint.data(), static_cast<socklen_t>(endpoint.size())) == 0) {
            make_blocking(fd);
            return {fd, 0};
        }
        const int error = errno;
        if (error == EINTR)
            continue;
        if (error != EAGAIN) {
            ::close(fd);
            return {-1, error};
        }
        const auto now = Clock::now();
        if (now >= deadline) {
            ::close(fd);
            return {-1, ETIMEDOUT};
        }
        std::this_thread::sleep_for(std::min<Clock::duration>(backoff, deadline - now));
        backoff = std::min(backoff * 2, last_backlog_retry);
    }
}

// ---------------------------------------------------------------------------------------------
// The echo exchange

bool is_disconnect(const error_code& error) {
    return error == asio::error::eof || error == asio::error::connection_reset ||
           error == asio::error::broken_pipe;
}

// Standard input or output of the client. Pipes, terminals and sockets go through Asio
// asynchronously. epoll refuses regular files and some devices (/dev/null) with EPERM; those
// never make read(2) or write(2) wait for another process, so they are read and written
// synchronously, in chunks, inside the event loop. Asio would accept them too (it tolerates EPERM
// and then relies on the operation completing at once), but saying it here keeps that visible.
class LocalFile {
public:
    LocalFile(const asio::any_io_executor& executor, int fd)
        : fd_(fd)
        , original_flags_(::fcntl(fd, F_GETFL)) {
        if (original_flags_ < 0)
            throw Failure(ExitCode::os_error,
                          "descriptor " + std::to_string(fd) + ": " + error_text(errno));
        if (epoll_accepts(fd)) {
            // Asio owns (and closes) a duplicate; the caller's descriptor stays open.
            const int duplicate = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
            if (duplicate < 0)
                throw Failure(ExitCode::os_error, "cannot duplicate descriptor " +
                                                      std::to_string(fd) + ": " +
                                                      error_text(errno));
            async_.emplace(executor, duplicate);
        }
    }
    LocalFile(const LocalFile&) = delete;
    LocalFile& operator=(const LocalFile&) = delete;

    // Asio sets O_NONBLOCK, which belongs to the open file description and so is shared with the
    // shell or whoever handed us this descriptor; put it back as it was.
    ~LocalFile() {
        async_.reset();
        ::fcntl(fd_, F_SETFL, original_flags_);
    }

    // Bytes read, 0 at end of file.
    asio::awaitable<std::pair<error_code, std::size_t>> read_some(std::span<char> buffer) {
        if (async_) {
            auto [error, count] =
                co_await async_->async_read_some(asio::buffer(buffer), as_tuple_awaitable);
            if (error == asio::error::eof)
                co_return std::pair{error_code{}, std::size_t{0}};
            co_return std::pair{error, count};
        }
        for (;;) {
            const ssize_t count = ::read(fd_, buffer.data(), buffer.size());
            if (count >= 0)
                co_return std::pair{error_code{}, static_cast<std::size_t>(count)};
            if (errno != EINTR)
                co_return std::pair{error_code(errno, boost::system::system_category()),
                                    std::size_t{0}};
        }
    }

    asio::awaitable<error_code> write_all(std::span<const char> data) {
        if (async_) {
            auto [error, count] =
                co_await asio::async_write(*async_, asio::buffer(data), as_tuple_awaitable);
            co_return error;
        }
        while (!data.empty()) {
            const ssize_t count = ::write(fd_, data.data(), data.size());
            if (count < 0 && errno == EINTR)
                continue;
            if (count < 0)
                co_return error_code(errno, boost::system::system_category());
            data = data.subspan(static_cast<std::size_t>(count));
        }
        co_return error_code{};
    }

    void cancel() {
        if (async_) {
            error_code ignored;
            async_->cancel(ignored);
        }
    }

private:
    static bool epoll_accepts(int fd) {
        const int epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
        if (epoll_fd < 0)
            return false;
        epoll_event event{};
        event.events = EPOLLIN | EPOLLOUT;
        const bool accepted = ::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event) == 0;
        ::close(epoll_fd);
        return accepted;
    }

    int fd_;
    int original_flags_;
    std::optional<asio::posix::stream_descriptor> async_;
};

// What one connection to the daemon shares between its forms: the socket, the reply timeout and
// the way the exchange ends (the first failure wins, and everything still pending is cancelled).
//
// The timeout: while the daemon owes us an echo and we are waiting on the socket, it must send
// something within `timeout`. Asio 1.81 has no cancel_after, and `read || timer` waits on after a
// read error (see the notes); a timer that re-checks a moving deadline avoids both problems and
// avoids re-arming a timer on every read. Time spent writing to a slow output does not count.
class Exchange {
public:
    Exchange(int fd, milliseconds timeout)
        : socket_(context_, asio::local::stream_protocol(), fd)
        , timeout_(timeout)
        , watchdog_(context_) {}
    Exchange(const Exchange&) = delete;
    Exchange& operator=(const Exchange&) = delete;
    virtual ~Exchange() = default;

protected:
    // Runs the given coroutines and the watchdog until all have ended; then throws the failure
    // that ended the exchange, if any.
    void run(std::vector<asio::awaitable<void>> tasks) {
        std::exception_ptr unexpected;
        auto keep_first = [&unexpected](std::exception_ptr error) {
            if (error && !unexpected)
                unexpected = error;
        };
        for (auto& task : tasks)
            asio::co_spawn(context_, std::move(task), keep_first);
        asio::co_spawn(context_, watch_for_timeout(), keep_first);
        context_.run();
        if (unexpected)
            std::rethrow_exception(unexpected);
        if (failure_)
            throw *failure_;
    }

    // True while the daemon has something to send us: bytes not yet echoed, or its close.
    virtual bool echo_owed() const = 0;
    // "N of M bytes came back", for the timeout message.
    virtual std::string progress_text() const = 0;
    // Cancels the operations on descriptors other than the socket.
    virtual void cancel_local_io() {}

    // Called before each wait on the socket, and whenever we sent something: the daemon has
    // `timeout` from now.
    void expect_echo_soon() { deadline_ = Clock::now() + timeout_; }

    // Ends the exchange: with `failure`, or successfully when it is empty. Later calls change
    // nothing, so the first cause is the one reported.
    void stop(std::optional<Failure> failure = std::nullopt) {
        if (stopping_)
            return;
        stopping_ = true;
        failure_ = std::move(failure);
        watchdog_.cancel();
        error_code ignored;
        socket_.close(ignored);
        cancel_local_io();
    }

    bool stopping() const { return stopping_; }

    asio::io_context context_{1};
    Socket socket_;
    bool waiting_on_socket_ = false;

private:
    asio::awaitable<void> watch_for_timeout() {
        expect_echo_soon();
        while (!stopping_) {
            watchdog_.expires_at(deadline_);
            co_await watchdog_.async_wait(as_tuple_awaitable);
            if (stopping_)
                co_return;
            if (Clock::now() < deadline_)
                continue; // the deadline moved while we slept
            if (waiting_on_socket_ && echo_owed()) {
                stop(Failure(ExitCode::temp_failure, "no echo from the daemon for " +
                                                         seconds_text(timeout_) + " (" +
                                                         progress_text() + ")"));
                co_return;
            }
            expect_echo_soon();
        }
    }

    milliseconds timeout_;
    asio::steady_timer watchdog_;
    Clock::time_point deadline_;
    bool stopping_ = false;
    std::optional<Failure> failure_;
};

// ---- one-shot ----

// Sends the message and reads back as many bytes, concurrently: a message larger than the socket
// buffers would otherwise deadlock (the daemon stops reading while its echo is not read).
class OneShot : public Exchange {
public:
    OneShot(int fd, milliseconds timeout, const std::string& message)
        : Exchange(fd, timeout)
        , message_(message)
        , echo_(message.size(), '\0') {}

    // The echo, exactly message.size() bytes; throws Failure.
    const std::string& exchange() {
        std::vector<asio::awaitable<void>> tasks;
        tasks.push_back(send_message());
        tasks.push_back(receive_echo());
        run(std::move(tasks));
        return echo_;
    }

private:
    asio::awaitable<void> send_message() {
        auto [error, count] =
            co_await asio::async_write(socket_, asio::buffer(message_), as_tuple_awaitable);
        if (stopping())
            co_return;
        // A daemon that hung up is reported by the reading side, with the count it got back.
        if (error && !is_disconnect(error))
            stop(Failure(ExitCode::os_error, "cannot send to the daemon: " + error.message()));
        else if (!error)
            expect_echo_soon();
    }

    asio::awaitable<void> receive_echo() {
        while (received_ < echo_.size()) {
            expect_echo_soon();
            waiting_on_socket_ = true;
            auto [error, count] = co_await socket_.async_read_some(
                asio::buffer(echo_.data() + received_, echo_.size() - received_),
                as_tuple_awaitable);
            waiting_on_socket_ = false;
            if (stopping())
                co_return;
            received_ += count;
            if (is_disconnect(error)) {
                stop(Failure(ExitCode::data_error, closed_early_message()));
                co_return;
            }
            if (error) {
                stop(Failure(ExitCode::os_error,
                             "cannot receive from the daemon: " + error.message()));
                co_return;
            }
        }
        stop();
    }

    bool echo_owed() const override { return received_ < echo_.size(); }

    std::string progress_text() const override {
        return std::to_string(received_) + " of " + std::to_string(echo_.size()) +
               " bytes came back";
    }

    std::string closed_early_message() const {
        std::string message = "the daemon closed the connection after " +
                              std::to_string(received_) + " of " + std::to_string(echo_.size()) +
                              " bytes";
        if (received_ == 0)
            message += " (does its allow-uid/allow-gid let this user in?)";
        return message;
    }

    const std::string& message_;
    std::string echo_;
    std::size_t received_ = 0;
};

// ---- streaming ----

// At most this much input is held that was sent but whose echo has not been checked yet; the
// input is not read while it is full. This bounds memory whatever the input's size and however
// slowly the output drains.
constexpr std::size_t max_unverified_bytes = 4 * 1024 * 1024;
constexpr std::size_t chunk_size = 256 * 1024;

// The bytes of the stream that were read from the input and whose echo has not been checked
// yet, in a fixed ring. Offsets count from the start of the stream.
class UnverifiedBytes {
public:
    explicit UnverifiedBytes(std::size_t capacity)
        : ring_(capacity) {}

    std::size_t held() const { return static_cast<std::size_t>(appended_ - verified_); }
    bool full() const { return held() == ring_.size(); }
    std::uint64_t appended() const { return appended_; }
    std::uint64_t verified() const { return verified_; }

    // The contiguous free space where the next input may be read (empty when full).
    std::span<char> free_space() {
        const std::size_t start = index(appended_);
        const std::size_t free = ring_.size() - held();
        return {ring_.data() + start, std::min(free, ring_.size() - start)};
    }

    // The first `count` bytes of free_space() now hold input.
    void append(std::size_t count) { appended_ += count; }

    // Checks `echo` against the oldest held bytes and releases them. Returns the stream offset
    // of the first byte that differs (or that is one more than we ever sent), if any.
    std::optional<std::uint64_t> verify(std::span<const char> echo) {
        while (!echo.empty()) {
            if (held() == 0)
                return verified_;
            const std::size_t start = index(verified_);
            const std::size_t length = std::min({echo.size(), held(), ring_.size() - start});
            const char* expected = ring_.data() + start;
            const auto difference = std::mismatch(echo.begin(), echo.begin() + length, expected);
            if (difference.first != echo.begin() + length)
                return verified_ + static_cast<std::uint64_t>(difference.first - echo.begin());
            verified_ += length;
            echo = echo.subspan(length);
        }
        return std::nullopt;
    }

private:
    std::size_t index(std::uint64_t offset) const {
        return static_cast<std::size_t>(offset % ring_.size());
    }

    std::vector<char> ring_;
    std::uint64_t appended_ = 0;
    std::uint64_t verified_ = 0;
};

// Wakes one waiting coroutine. A timer that never expires by itself; cancelling it is the
// signal. Single-threaded use: the waiter checks its condition before waiting, so no wake-up is
// lost.
class Wakeup {
public:
    explicit Wakeup(asio::io_context& context)
        : timer_(context) {}
    asio::awaitable<void> wait() {
        timer_.expires_at(Clock::time_point::max());
        co_await timer_.async_wait(as_tuple_awaitable);
    }
    void notify() { timer_.cancel(); }

private:
    asio::steady_timer timer_;
};

// Two coroutines on one thread: the sender copies input to the socket, the receiver checks the
// echo and copies it to the output. Neither waits for the other except through the bounded
// UnverifiedBytes, so a large input never deadlocks: the receiver keeps draining the socket
// while the sender is blocked on a full socket.
class Stream : public Exchange {
public:
    Stream(int fd, milliseconds timeout, int input_fd, int output_fd)
        : Exchange(fd, timeout)
        , input_(context_.get_executor(), input_fd)
        , output_(context_.get_executor(), output_fd)
        , pending_(max_unverified_bytes)
        , space_freed_(context_)
        , echo_buffer_(chunk_size) {}

    void exchange() {
        std::vector<asio::awaitable<void>> tasks;
        tasks.push_back(send_input());
        tasks.push_back(receive_echo());
        run(std::move(tasks));
    }

private:
    asio::awaitable<void> send_input() {
        for (;;) {
            while (pending_.full() && !stopping())
                co_await space_freed_.wait();
            if (stopping())
                co_return;
            auto space = pending_.free_space();
            space = space.first(std::min(space.size(), chunk_size));
            auto [read_error, count] = co_await input_.read_some(space);
            if (stopping())
                co_return;
            if (read_error) {
                stop(Failure(ExitCode::os_error, "cannot read the input: " + read_error.message()));
                co_return;
            }
            if (count == 0)
                break;
            pending_.append(count);
            auto [write_error, written] = co_await asio::async_write(
                socket_, asio::buffer(space.data(), count), as_tuple_awaitable);
            if (stopping())
                co_return;
            if (is_disconnect(write_error))
                co_return; // the receiver sees the close and reports it
            if (write_error) {
                stop(Failure(ExitCode::os_error,
                             "cannot send to the daemon: " + write_error.message()));
                co_return;
            }
            expect_echo_soon();
        }
        input_ended_ = true;
        error_code ignored;
        socket_.shutdown(Socket::shutdown_send, ignored);
        expect_echo_soon();
    }

    asio::awaitable<void> receive_echo() {
        for (;;) {
            expect_echo_soon();
            waiting_on_socket_ = true;
            auto [error, count] =
                co_await socket_.async_read_some(asio::buffer(echo_buffer_), as_tuple_awaitable);
            waiting_on_socket_ = false;
            if (stopping())
                co_return;
            if (is_disconnect(error)) {
                daemon_closed();
                co_return;
            }
            if (error) {
                stop(Failure(ExitCode::os_error,
                             "cannot receive from the daemon: " + error.message()));
                co_return;
            }
            const std::span<const char> echo(echo_buffer_.data(), count);
            if (const auto offset = pending_.verify(echo)) {
                stop(Failure(ExitCode::data_error,
                             "the echo differed from the input at byte offset " +
                                 std::to_string(*offset)));
                co_return;
            }
            space_freed_.notify();
            const auto write_error = co_await output_.write_all(echo);
            if (stopping())
                co_return;
            if (write_error == asio::error::broken_pipe) {
                stop(); // the reader of our output is gone (`| head`): nothing left to do
                co_return;
            }
            if (write_error) {
                stop(Failure(ExitCode::os_error,
                             "cannot write the output: " + write_error.message()));
                co_return;
            }
        }
    }

    void daemon_closed() {
        if (input_ended_ && pending_.held() == 0) {
            stop();
            return;
        }
        std::string message = "the daemon closed the connection after " +
                              std::to_string(pending_.verified()) + " of " +
                              std::to_string(pending_.appended()) + " bytes";
        if (!input_ended_)
            message += ", before the end of the input";
        if (pending_.verified() == 0)
            message += " (does its allow-uid/allow-gid let this user in?)";
        stop(Failure(ExitCode::data_error, message));
    }

    bool echo_owed() const override { return pending_.held() > 0 || input_ended_; }

    std::string progress_text() const override {
        return std::to_string(pending_.verified()) + " of " + std::to_string(pending_.appended()) +
               " bytes came back";
    }

    void cancel_local_io() override {
        input_.cancel();
        output_.cancel();
        space_freed_.notify();
    }

    LocalFile input_;
    LocalFile output_;
    UnverifiedBytes pending_;
    Wakeup space_freed_;
    std::vector<char> echo_buffer_;
    bool input_ended_ = false;
};

} // namespace

int connect_to_daemon(const ClientOptions& options) {
    if (options.socket_candidates.empty())
        throw Failure(ExitCode::software, "no socket path to connect to");
    const auto deadline = Clock::now() + options.timeout;
    std::vector<std::string> missing;
    // A candidate that exists but refuses us; reported only if no other candidate answers.
    std::optional<Failure> refusal;
    for (const auto& path : options.socket_candidates) {
        validate_socket_path(path, ExitCode::usage);
        const auto attempt = connect_with_retry(path, deadline);
        if (attempt.fd >= 0)
            return attempt.fd;
        switch (attempt.error) {
        case ENOENT:
        case ENOTDIR:
            missing.push_back(path);
            break;
        case ECONNREFUSED:
            // An abstract name has no file: refused simply means nobody listens there.
            if (is_abstract(path))
                missing.push_back(path);
            else if (!refusal)
                refusal = Failure(ExitCode::unavailable, explain_refusal(path));
            break;
        case EACCES:
        case EPERM:
            if (!refusal)
                refusal = Failure(ExitCode::no_permission, explain_permission_denied(path));
            break;
        case ETIMEDOUT:
            throw Failure(ExitCode::temp_failure,
                          "timed out after " + seconds_text(options.timeout) + " connecting to " +
                              path + ": the daemon's listen backlog stayed full");
        default:
            throw Failure(ExitCode::os_error,
                          "cannot connect to " + path + ": " + error_text(attempt.error));
        }
    }
    if (refusal)
        throw *refusal;
    throw no_socket_failure(missing);
}

// A differing or truncated echo is thrown as Failure(data_error) rather than returned, so that
// its message (the byte offset, the byte counts) reaches the user; a normal return is always ok.
ExitCode echo_message(const ClientOptions& options, const std::string& message, std::ostream& out) {
    OneShot one_shot(connect_to_daemon(options), options.timeout, message);
    const std::string& echo = one_shot.exchange();
    if (!options.quiet)
        out.write(echo.data(), static_cast<std::streamsize>(echo.size())).flush();
    const auto difference = std::mismatch(echo.begin(), echo.end(), message.begin());
    if (difference.first != echo.end())
        throw Failure(ExitCode::data_error, "the echo differed from the message at byte offset " +
                                                std::to_string(difference.first - echo.begin()));
    return ExitCode::ok;
}

ExitCode echo_stream(const ClientOptions& options, int input_fd, int output_fd) {
    Stream stream(connect_to_daemon(options), options.timeout, input_fd, output_fd);
    stream.exchange();
    return ExitCode::ok;
}

} // namespace uds_echo
