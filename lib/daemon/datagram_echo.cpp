// The datagram echo: one coroutine that waits until the socket is readable, then answers every
// queued datagram with non-blocking system calls, never waiting for one sender.
#include "daemon/datagram_echo.hpp"

#include "daemon/logging.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/datagram_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <exception>
#include <optional>
#include <thread>
#include <vector>

namespace uds_echo::daemon {

namespace asio = boost::asio;

DatagramEcho::DatagramEcho(FileDescriptor socket, std::size_t buffer_size, AccessPolicy access)
    : context_(1) // one thread: Asio may leave out its locks
    , socket_(context_)
    , refusals_(context_, "datagram")
    , access_(std::move(access))
    , buffer_(message_capacity(buffer_size)) {
    const int fd = socket.get();
    socket_.assign(asio::local::datagram_protocol(), socket.release());
    socket_.non_blocking(true);
    // Credentials on every datagram (SCM_CREDENTIALS), for the allow lists. A socket passed
    // by systemd has them when its unit says PassCredentials=yes; set here as well, those
    // that arrived before carry no pid and are refused whenever an allow list applies.
    const int on = 1;
    if (::setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0)
        UDS_LOG(warning) << "cannot set SO_PASSCRED on the datagram socket: "
                         << std::strerror(errno);
    // Room to send back the largest datagram accepted (the kernel doubles the value).
    const int send_buffer = static_cast<int>(std::min<std::size_t>(buffer_.size(), 1 << 30));
    int current = 0;
    socklen_t length = sizeof current;
    if (::getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &current, &length) == 0 &&
        current < 2 * send_buffer)
        (void)::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &send_buffer, sizeof send_buffer);
}

DatagramEcho::~DatagramEcho() {
    stop();
    if (thread_.joinable())
        thread_.join();
}

void DatagramEcho::start() {
    asio::co_spawn(context_, serve(), [](std::exception_ptr failure) {
        if (failure)
            std::rethrow_exception(failure); // a bug: the thread ends the daemon
    });
    thread_ = std::thread([this] { context_.run(); });
}

void DatagramEcho::stop() {
    asio::post(context_, [this] {
        boost::system::error_code ignored;
        socket_.cancel(ignored);
        refusals_.stop();
    });
}

void DatagramEcho::apply(AccessPolicy access) {
    asio::post(context_,
               [this, access = std::move(access)]() mutable { access_ = std::move(access); });
}

DatagramFigures DatagramEcho::figures() const {
    DatagramFigures figures;
    figures.answered = answered_.load(std::memory_order_relaxed);
    figures.bytes = bytes_.load(std::memory_order_relaxed);
    figures.unanswerable = unanswerable_.load(std::memory_order_relaxed);
    figures.too_long = too_long_.load(std::memory_order_relaxed);
    figures.reply_dropped = reply_dropped_.load(std::memory_order_relaxed);
    figures.refused = refused_.load(std::memory_order_relaxed);
    return figures;
}

void DatagramEcho::add(std::atomic<std::uint64_t>& figure, std::uint64_t amount) {
    figure.store(figure.load(std::memory_order_relaxed) + amount, std::memory_order_relaxed);
}

asio::awaitable<void> DatagramEcho::serve() {
    for (;;) {
        auto [error] = co_await socket_.async_wait(asio::socket_base::wait_read,
                                                   asio::as_tuple(asio::use_awaitable));
        if (error)
            co_return; // stopped
        // At most a queue's worth before waiting again, so that a stop is seen under a flood.
        for (int taken = 0; taken < 512 && answer_one(); ++taken) {
        }
    }
}

// Receives one datagram and answers it; false when none is queued.
bool DatagramEcho::answer_one() {
    sockaddr_un sender{};
    // Room for the credentials only: descriptors someone sends along do not fit and are
    // closed by the kernel (MSG_CTRUNC), so no datagram can fill the daemon's descriptors.
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred))];
    iovec data{buffer_.data(), buffer_.size()};
    msghdr message{};
    message.msg_name = &sender;
    message.msg_namelen = sizeof sender;
    message.msg_iov = &data;
    message.msg_iovlen = 1;
    message.msg_control = control;
    message.msg_controllen = sizeof control;
    const int fd = socket_.native_handle();
    // MSG_TRUNC: the datagram's real length, so that an over-long one is seen, not cut.
    const ssize_t length = ::recvmsg(fd, &message, MSG_DONTWAIT | MSG_TRUNC | MSG_CMSG_CLOEXEC);
    if (length < 0) {
        if (errno == EINTR)
            return true;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            UDS_LOG(debug) << "datagram receive failed: " << std::strerror(errno);
        return false;
    }
    const auto id = ++received_;
    const auto size = static_cast<std::size_t>(length);
    if (size > buffer_.size() || (message.msg_flags & MSG_TRUNC) != 0) {
        add(too_long_);
        UDS_LOG(debug) << "datagram " << id << " of " << size << " bytes dropped: longer than "
                       << buffer_.size();
        return true;
    }
    if (access_.restricts()) {
        const auto peer = sender_credentials(message);
        if (!peer || !access_.allows(*peer)) {
            add(refused_);
            refusals_.add(id, peer,
                          peer ? "not in allow-uid or allow-gid" : "it carries no credentials");
            return true;
        }
    }
    if (!is_abstract_sender(message)) {
        add(unanswerable_);
        return true;
    }
    if (::sendto(fd, buffer_.data(), size, MSG_DONTWAIT | MSG_NOSIGNAL,
                 reinterpret_cast<const sockaddr*>(&sender), message.msg_namelen) < 0) {
        // EAGAIN: the sender's queue is full; ECONNREFUSED, ENOENT: it is gone. Never waited
        // for: the other senders keep being answered.
        add(reply_dropped_);
        return true;
    }
    add(answered_);
    add(bytes_, size);
    return true;
}

// The sender's credentials (SCM_CREDENTIALS); nullopt when the datagram carries none. One
// queued before SO_PASSCRED carries the kernel's overflow ids and pid 0: unknown, not uid
// 65534.
std::optional<PeerCredentials> DatagramEcho::sender_credentials(msghdr& message) {
    for (cmsghdr* header = CMSG_FIRSTHDR(&message); header != nullptr;
         header = CMSG_NXTHDR(&message, header)) {
        if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_CREDENTIALS ||
            header->cmsg_len != CMSG_LEN(sizeof(ucred)))
            continue;
        ucred credentials{};
        std::memcpy(&credentials, CMSG_DATA(header), sizeof credentials);
        if (credentials.pid == 0)
            return std::nullopt;
        return PeerCredentials{credentials.pid, credentials.uid, credentials.gid};
    }
    return std::nullopt;
}

// Only abstract addresses (autobound ones included) are answered. A path is looked up again
// by sendto(), with the daemon's permissions: a sender that bound a path and then put a
// symbolic link to another socket there (say /dev/log, whose reader trusts the credentials
// the kernel attaches: the daemon's) would have the daemon write into that socket. An
// abstract name has no file to swap: it names the socket bound to it.
bool DatagramEcho::is_abstract_sender(const msghdr& message) {
    const auto* address = static_cast<const sockaddr_un*>(message.msg_name);
    return message.msg_namelen > offsetof(sockaddr_un, sun_path) + 1 &&
           address->sun_path[0] == '\0';
}

} // namespace uds_echo::daemon
