// The life of one connection on its worker: read what the client sent, write it back, until the
// client closes; at a restart, let go of the connection with what it could not write back yet.
#include "daemon/worker_impl.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/write.hpp>

#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace uds_echo::daemon {
namespace {

using namespace worker_detail;

// The read a session awaits between messages: the bytes it brought, or 0 when the connection
// ended (a successful stream read brings at least one byte). Frame: one number as the result.
auto read_some_into(Socket& peer, FirstRead& first) {
    return peer.async_read_some(asio::buffer(first),
                                asio::deferred([](error_code error, std::size_t received) {
                                    return asio::deferred.values(error ? 0 : received);
                                }));
}

// False when the client has closed its side or the connection failed: a non-blocking peek
// that finds an end of file or an error.
bool peer_still_there(int fd) {
    char byte;
    const auto peeked = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return peeked > 0 || (peeked < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
}

} // namespace

// Between messages a session holds no buffer but `first`. Frame: one awaited call per message
// (GCC gives each local and each awaited temporary a slot of its own).
Worker::Impl::Task<void> Worker::Impl::session(Connection connection) {
    connections_.push_back(connection);
    // Writes (and the reads of a burst) are tried directly; only when the kernel says they would
    // block does the session wait through Asio. Sockets from the accept loop are non-blocking
    // already.
    if (!connection.socket.non_blocking())
        connection.socket.non_blocking(true);
    FirstRead first;
    while (!handing_over_) {
        // async_read_some lets Asio try the read at once when epoll has reported data, and costs
        // no epoll_ctl when it must wait: one epoll_wait, one read and one write per small
        // message, like a hand-written epoll loop.
        const std::size_t received = co_await read_some_into(connection.socket, first);
        // End of file: everything received has been echoed, and closing the socket (when the
        // frame ends) sends the client its end of file. Any other error: reset by the client,
        // closed by the idle sweep or a forced stop, or cancelled for a handover.
        if (received == 0)
            break;
        connection.last_activity_tick = tick_;
        if (!co_await echo_read(connection.socket, first, received))
            break;
    }
    end_session(connection);
}

// Echoes what a read put into `first`. A full `first` means more is probably waiting: that
// continues in a pooled buffer.
Worker::Impl::Task<bool> Worker::Impl::echo_read(Socket& peer, const FirstRead& first,
                                                 std::size_t received) {
    const auto data = asio::buffer(first, received);
    return received == first.size() ? echo_burst(peer, data) : echo(peer, data);
}

// Writes `data` back; false when the client is gone. The first write is tried directly; a client
// that reads slower than it writes makes the session wait for room in its socket buffer, holding
// `data`: that is the backpressure (docs/protocol.md), and the only memory a slow client costs.
Worker::Impl::Task<bool> Worker::Impl::echo(Socket& peer, asio::const_buffer data) {
    error_code error;
    const std::size_t sent = peer.write_some(data, error);
    if (error && error != asio::error::would_block)
        co_return false; // EPIPE, ECONNRESET
    const std::size_t done = error ? 0 : sent;
    if (done < data.size()) {
        // A handover does not wait for a slow client: the rest goes with the connection.
        if (handing_over_) {
            keep_unsent(peer, data + done);
            co_return false;
        }
        auto [write_error, written] =
            co_await asio::async_write(peer, data + done, as_tuple_deferred);
        if (write_error) {
            if (handing_over_ && write_error == asio::error::operation_aborted)
                keep_unsent(peer, data + done + written);
            co_return false;
        }
    }
    count_echoed(peer, data.size());
    co_return true;
}

// `first` filled up, so more data is probably waiting: borrow a full-size buffer from the
// worker's pool and echo until a read comes back short or would block. At end of file the data
// read so far is echoed and the next async_read_some reports the end.
Worker::Impl::Task<bool> Worker::Impl::echo_burst(Socket& peer, asio::const_buffer first) {
    auto lease = buffers_.borrow();
    const auto whole = lease.whole();
    std::memcpy(whole.data(), first.data(), first.size());
    std::size_t filled = first.size();
    for (;;) {
        error_code error;
        const std::size_t received = peer.read_some(whole + filled, error);
        if (error && error != asio::error::would_block && error != asio::error::eof)
            co_return false;
        filled += error ? 0 : received;
        if (!co_await echo(peer, lease.first(filled)))
            co_return false;
        if (error || filled < whole.size() || handing_over_)
            co_return true;
        filled = 0;
    }
}

// A connection handed over at a restart whose client had not read everything echoed to it: those
// bytes are written first (a plain completion handler, no coroutine frame), then it is a session
// like any other. Listed with the sessions meanwhile, so that a drain, a forced close or another
// handover reaches it.
void Worker::Impl::write_unsent_then_serve(Socket socket, std::string unsent, SessionEnded ended) {
    auto pending = std::make_unique<Connection>(std::move(socket), tick_);
    connections_.push_back(*pending);
    pending->socket.non_blocking(true);
    auto bytes = std::make_unique<std::string>(std::move(unsent));
    const auto data = asio::buffer(*bytes);
    auto& socket_of_pending = pending->socket; // named before the handler takes `pending`
    asio::async_write(
        socket_of_pending, data,
        [this, pending = std::move(pending), bytes = std::move(bytes),
         ended](error_code error, std::size_t written) mutable {
            if (error) {
                if (handing_over_ && error == asio::error::operation_aborted)
                    keep_unsent(pending->socket, asio::buffer(*bytes) + written);
                end_session(*pending);
                pending.reset(); // closes the socket unless it was let go
                ended(nullptr);
                return;
            }
            count_echoed(pending->socket, written);
            asio::co_spawn(context_, session(Connection(std::move(pending->socket), tick_)), ended);
        });
}

// The end of a session, in a plain function so that its locals stay out of the session's frame.
// The socket is closed when the frame ends, unless a handover takes it.
void Worker::Impl::end_session(Connection& connection) {
    const int fd = connection.socket.native_handle(); // -1: closed and logged by the worker
    const bool handed_over = let_go(connection);
    if (!logged_.empty())
        log_end(fd, handed_over ? "handed over" : "closed");
}

// During a handover: the connection goes to the handed-over list instead of being closed (true),
// unless it is closed already or its client has gone (nothing to resume: everything it sent was
// echoed).
bool Worker::Impl::let_go(Connection& connection) {
    if (!handing_over_ || !connection.socket.is_open())
        return false;
    std::string unsent;
    if (const auto saved = unsent_.find(connection.socket.native_handle());
        saved != unsent_.end()) {
        unsent = std::move(saved->second);
        unsent_.erase(saved);
    }
    if (unsent.empty() && !peer_still_there(connection.socket.native_handle()))
        return false;
    error_code error;
    const int fd = connection.socket.release(error);
    if (error)
        return false;
    handed_.push_back(HandedConnection{FileDescriptor(fd), std::move(unsent)});
    return true;
}

void Worker::Impl::keep_unsent(Socket& peer, asio::const_buffer data) {
    unsent_[peer.native_handle()].assign(static_cast<const char*>(data.data()), data.size());
}

} // namespace uds_echo::daemon
