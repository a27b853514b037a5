#include "client/echo.hpp"

#include "client/reply_deadline.hpp"
#include "client/round_trip.hpp"
#include "client/run_coroutine.hpp"
#include "client/wakeup.hpp"
#include "common/text.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <fcntl.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <exception>
#include <optional>
#include <span>
#include <vector>

namespace uds_echo::client {

namespace {

namespace asio = boost::asio;
using boost::system::error_code;

constexpr auto as_tuple_awaitable = asio::as_tuple(asio::use_awaitable);

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
                          "descriptor " + std::to_string(fd) + ": " + std::strerror(errno));
        if (epoll_accepts(fd)) {
            // Asio owns (and closes) a duplicate; the caller's descriptor stays open.
            const int duplicate = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
            if (duplicate < 0)
                throw Failure(ExitCode::os_error, "cannot duplicate descriptor " +
                                                      std::to_string(fd) + ": " +
                                                      std::strerror(errno));
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
        const FileDescriptor epoll(::epoll_create1(EPOLL_CLOEXEC));
        if (!epoll.valid())
            return false;
        epoll_event event{};
        event.events = EPOLLIN | EPOLLOUT;
        return ::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, fd, &event) == 0;
    }

    int fd_;
    int original_flags_;
    std::optional<asio::posix::stream_descriptor> async_;
};

// At most this much input is held that was sent but whose echo has not been checked yet; the
// input is not read while it is full. This bounds memory whatever the input's size and however
// slowly the output drains.
constexpr std::size_t max_unverified_bytes = 4 * 1024 * 1024;
constexpr std::size_t chunk_size = 256 * 1024;

// On a seqpacket or datagram socket each read of the input is sent as one message, of at most
// the size every daemon echoes whole. Datagrams go one at a time: a reply that finds the
// client's receive queue full is dropped by the daemon, so at most one may be on its way back.
std::size_t message_limit(SocketType type) {
    return type == SocketType::stream ? chunk_size : guaranteed_message_size;
}
std::size_t unverified_limit(SocketType type) {
    return type == SocketType::datagram ? guaranteed_message_size : max_unverified_bytes;
}

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

// Two coroutines on one thread: the sender copies input to the socket, the receiver checks the
// echo and copies it to the output. Neither waits for the other except through the bounded
// UnverifiedBytes, so a large input never deadlocks: the receiver keeps draining the socket
// while the sender is blocked on a full socket. The first failure ends the exchange and cancels
// everything still pending.
class Stream {
public:
    // A seqpacket or datagram socket goes through the same stream socket object: one send() is
    // one message, and one receive into a buffer larger than any message is one message.
    Stream(FileDescriptor connection, SocketType type, std::chrono::milliseconds timeout,
           int input_fd, int output_fd)
        : type_(type)
        , socket_(context_, asio::local::stream_protocol(), connection.release())
        , deadline_(context_.get_executor(), timeout)
        , input_(context_.get_executor(), input_fd)
        , output_(context_.get_executor(), output_fd)
        , pending_(unverified_limit(type))
        , space_freed_(context_.get_executor())
        , echo_buffer_(chunk_size) {}

    // Returns when the daemon closed after the whole echo; throws the failure that ended it.
    void exchange() {
        std::exception_ptr unexpected;
        auto keep_first = [&unexpected](std::exception_ptr error) {
            if (error && !unexpected)
                unexpected = error;
        };
        asio::co_spawn(context_, send_input(), keep_first);
        asio::co_spawn(context_, receive_echo(), keep_first);
        asio::co_spawn(context_, watch_for_timeout(), keep_first);
        context_.run();
        if (unexpected)
            std::rethrow_exception(unexpected);
        if (failure_)
            throw *failure_;
    }

private:
    asio::awaitable<void> send_input() {
        for (;;) {
            while (pending_.full() && !stopping_)
                co_await space_freed_.wait();
            if (stopping_)
                co_return;
            auto space = pending_.free_space();
            space = space.first(std::min(space.size(), message_limit(type_)));
            auto [read_error, count] = co_await input_.read_some(space);
            if (stopping_)
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
            sent_ += written;
            if (stopping_)
                co_return;
            if (is_disconnect(write_error))
                co_return; // the receiver sees the close and reports it
            if (write_error) {
                stop(Failure(ExitCode::os_error,
                             "cannot send to the daemon: " + write_error.message()));
                co_return;
            }
            deadline_.progress();
        }
        input_ended_ = true;
        deadline_.progress();
        // A datagram socket has no end of file to send: the exchange is over once every echo
        // is back.
        if (type_ == SocketType::datagram) {
            if (pending_.held() == 0)
                stop();
            co_return;
        }
        error_code ignored;
        socket_.shutdown(Socket::shutdown_send, ignored);
    }

    asio::awaitable<void> receive_echo() {
        for (;;) {
            deadline_.progress();
            waiting_on_socket_ = true;
            auto [error, count] =
                co_await socket_.async_read_some(asio::buffer(echo_buffer_), as_tuple_awaitable);
            waiting_on_socket_ = false;
            if (stopping_)
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
                             "the echo differed from what was sent at byte offset " +
                                 std::to_string(*offset)));
                co_return;
            }
            space_freed_.notify();
            const auto write_error = co_await output_.write_all(echo);
            if (stopping_)
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
            if (type_ == SocketType::datagram && input_ended_ && pending_.held() == 0) {
                stop();
                co_return;
            }
        }
    }

    // The daemon owes us something while we wait on the socket with bytes not yet echoed, or
    // after our half-close (its close); time spent writing to a slow output does not count.
    asio::awaitable<void> watch_for_timeout() {
        const bool expired = co_await deadline_.expiry(
            [this] { return waiting_on_socket_ && (pending_.held() > 0 || input_ended_); });
        if (expired)
            stop(Failure(ExitCode::temp_failure,
                         "no echo within " + seconds_text(deadline_.timeout()) + " (" +
                             std::to_string(pending_.verified()) + " of " + std::to_string(sent_) +
                             " bytes sent came back)"));
    }

    void daemon_closed() {
        if (input_ended_ && pending_.held() == 0)
            stop();
        else
            stop(closed_early(pending_.verified(), sent_, !input_ended_));
    }

    // Ends the exchange: with `failure`, or successfully when it is empty. Later calls change
    // nothing, so the first cause is the one reported.
    void stop(std::optional<Failure> failure = std::nullopt) {
        if (stopping_)
            return;
        stopping_ = true;
        failure_ = std::move(failure);
        deadline_.cancel();
        error_code ignored;
        socket_.close(ignored);
        input_.cancel();
        output_.cancel();
        space_freed_.notify();
    }

    asio::io_context context_{1};
    SocketType type_;
    Socket socket_;
    ReplyDeadline deadline_;
    LocalFile input_;
    LocalFile output_;
    UnverifiedBytes pending_;
    Wakeup space_freed_;
    std::vector<char> echo_buffer_;
    std::uint64_t sent_ = 0;
    bool input_ended_ = false;
    bool waiting_on_socket_ = false;
    bool stopping_ = false;
    std::optional<Failure> failure_;
};

asio::awaitable<FileDescriptor> connect_descriptor(const ClientOptions& options) {
    auto connection = co_await connect_to_daemon(options);
    co_return std::move(connection.fd);
}

} // namespace

ExitCode echo_stream(const ClientOptions& options, int input_fd, int output_fd) {
    asio::io_context connecting(1);
    Stream stream(run_coroutine(connecting, connect_descriptor(options)), options.type,
                  options.timeout, input_fd, output_fd);
    stream.exchange();
    return ExitCode::ok;
}

} // namespace uds_echo::client
