// The life of one seqpacket connection on its worker: every message received whole and sent back
// as one message, until the client closes; at a restart, let go of the connection with the
// message it could not write back yet.
#include "daemon/logging.hpp"
#include "daemon/worker.hpp"

#include <sys/socket.h>

#include <cerrno>

namespace uds_echo::daemon {

// Between messages a seqpacket session holds no buffer at all: it waits until the socket is
// readable. Each message is then received whole into a buffer borrowed from the worker.
Task<void> Worker::seqpacket_session(Connection connection) {
    connections_.push_back(connection);
    if (!connection.socket.non_blocking())
        connection.socket.non_blocking(true);
    // What came before the session started is read first: Asio's epoll registration is
    // edge-triggered, and the edge of a message that is already there may be gone.
    while (co_await echo_messages(connection) && phase_ != Phase::handing_over) {
        auto [error] = co_await connection.socket.async_wait(boost::asio::socket_base::wait_read,
                                                             as_tuple_deferred);
        // Closed by the idle sweep or a forced stop, or cancelled for a handover.
        if (error)
            break;
    }
    end_session(connection);
}

// Echoes every message queued on the connection, in order, until none is left (true) or the
// connection is over (false). Reading until EAGAIN is what an edge-triggered wait needs.
Task<bool> Worker::echo_messages(Connection& connection) {
    auto lease = message_buffers_.borrow();
    const auto buffer = lease.whole();
    const int fd = connection.socket.native_handle();
    while (phase_ != Phase::handing_over) {
        // MSG_TRUNC: the message's real length, so that one longer than the buffer is seen, not
        // silently cut.
        const ssize_t length = ::recv(fd, buffer.data(), buffer.size(), MSG_DONTWAIT | MSG_TRUNC);
        if (length < 0)
            co_return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
        // The end of file, or an empty message: recv() cannot tell them apart, and the end it is
        // (docs/protocol.md). Everything before it has been echoed.
        if (length == 0)
            co_return false;
        const auto size = static_cast<std::size_t>(length);
        if (size > buffer.size()) {
            UDS_LOG(warning) << "seqpacket connection closed: a message of " << size
                             << " bytes is longer than the " << buffer.size()
                             << " bytes the daemon accepts (buffer-size)";
            co_return false;
        }
        connection.last_activity_tick = tick_;
        // One send() is one message: it takes the whole message or none of it, so a slow client
        // makes echo() wait holding this one message, and a handover takes it whole.
        if (!co_await echo(connection, lease.prefix(size)))
            co_return false;
    }
    co_return true;
}

} // namespace uds_echo::daemon
