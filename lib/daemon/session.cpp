// The life of one stream connection on its worker: read what the client sent, write it back, until
// the client closes; at a restart, let go of the connection with what it could not write back yet.
#include "daemon/worker.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace uds_echo::daemon {
namespace {

namespace asio = boost::asio;
using boost::system::error_code;

// The read a session awaits between messages: the bytes it brought, or 0 when the connection
// ended (a successful stream read brings at least one byte). Frame: one number as the result.
auto read_some_into(StreamSocket& peer, FrameBuffer& buffer) {
    return peer.async_read_some(asio::buffer(buffer),
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

// Between messages a session holds no buffer but the one in its frame. Frame: one awaited call
// per message (GCC gives each local and each awaited temporary a slot of its own).
Task<void> Worker::session(Connection connection) {
    connections_.push_back(connection);
    // Writes (and the reads of a burst) are tried directly; only when the kernel says they would
    // block does the session wait through Asio. Sockets from the accept loop are non-blocking
    // already.
    if (!connection.socket.non_blocking())
        connection.socket.non_blocking(true);
    FrameBuffer buffer;
    while (phase_ != Phase::handing_over) {
        // async_read_some lets Asio try the read at once when epoll has reported data, and costs
        // no epoll_ctl when it must wait: one epoll_wait, one read and one write per small
        // message, like a hand-written epoll loop.
        const std::size_t received = co_await read_some_into(connection.socket, buffer);
        // End of file: everything received has been echoed, and closing the socket (when the
        // frame ends) sends the client its end of file. Any other error: reset by the client,
        // closed by the idle sweep or a forced stop, or cancelled for a handover.
        if (received == 0)
            break;
        connection.last_activity_tick = tick_;
        if (!co_await echo_read(connection, buffer, received))
            break;
    }
    end_session(connection);
}

// Echoes what a read put into the frame's buffer. A full buffer means more is probably waiting:
// that continues in a pooled buffer.
Task<bool> Worker::echo_read(Connection& connection, const FrameBuffer& buffer,
                             std::size_t received) {
    const auto data = asio::buffer(buffer, received);
    return received == buffer.size() ? echo_burst(connection, data)
                                     : echo(connection, data, AfterEcho::let_others_run);
}

// Writes `data` back; false when the client is gone. The first write is tried directly; a client
// that reads slower than it writes makes the session wait for room in its socket buffer, holding
// `data`: that is the backpressure (docs/protocol.md), and the only memory a slow client costs.
Task<bool> Worker::echo(Connection& connection, asio::const_buffer data, AfterEcho after) {
    auto& peer = connection.socket;
    error_code error;
    const std::size_t sent = peer.write_some(data, error);
    if (error && error != asio::error::would_block)
        co_return false; // EPIPE, ECONNRESET
    const std::size_t done = error ? 0 : sent;
    if (done < data.size()) {
        // A handover does not wait for a slow client: the rest goes with the connection.
        if (phase_ == Phase::handing_over) {
            let_go(connection, data + done);
            co_return false;
        }
        auto [write_error, written] =
            co_await asio::async_write(peer, data + done, as_tuple_deferred);
        if (write_error) {
            if (phase_ == Phase::handing_over && write_error == asio::error::operation_aborted)
                let_go(connection, data + done + written);
            co_return false;
        }
    }
    count_echoed(connection, data.size());
    // Asio's next async_read_some tries a read before it waits (Boost 1.81 stops trying only
    // after a read finds the end of the stream), and right after an echo the client has not
    // answered yet: that read finds nothing, one wasted system call per message. Run the other
    // ready sessions and one poll of epoll first, and the read finds the answer.
    // docs/architecture.md, "Reads per message", has the figures; the one connection of a
    // ping-pong has nothing to wait for, and a burst (a full read) would only read less per call.
    // held() is a counter; the connection list's size() would walk every connection.
    if (after == AfterEcho::let_others_run && held() > 1)
        co_await asio::post(context_, asio::deferred);
    co_return true;
}

// The frame's buffer filled up, so more data is probably waiting: borrow a full-size buffer from
// the worker's pool and echo until a read comes back short or would block. At end of file the
// data read so far is echoed and the next async_read_some reports the end.
Task<bool> Worker::echo_burst(Connection& connection, asio::const_buffer already_read) {
    auto lease = buffers_.borrow();
    const auto whole = lease.whole();
    std::memcpy(whole.data(), already_read.data(), already_read.size());
    std::size_t filled = already_read.size();
    for (;;) {
        error_code error;
        const std::size_t received = connection.socket.read_some(whole + filled, error);
        if (error && error != asio::error::would_block && error != asio::error::eof)
            co_return false;
        filled += error ? 0 : received;
        if (!co_await echo(connection, lease.prefix(filled)))
            co_return false;
        if (error || filled < whole.size() || phase_ == Phase::handing_over)
            co_return true;
        filled = 0;
    }
}

// A connection handed over at a restart whose client had not read everything echoed to it: those
// bytes are written first, then it is a session like any other. Listed with the sessions
// meanwhile, so that a drain, a forced close or another handover reaches it.
// A plain completion handler and not a coroutine: as a second awaited write inside session(), it
// would add a slot to every session's frame (GCC 12 gives each awaited expression its own), which
// every idle connection pays for; as a coroutine that awaits session() after the write, its frame
// would stay for the connection's whole life, which every resumed connection pays for.
void Worker::write_unsent_then_serve(Connection connection, std::string unsent,
                                     SessionEnded ended) {
    auto pending = std::make_unique<Connection>(std::move(connection));
    connections_.push_back(*pending);
    pending->socket.non_blocking(true);
    auto bytes = std::make_unique<std::string>(std::move(unsent));
    const auto data = asio::buffer(*bytes);
    auto& socket_of_pending = pending->socket; // named before the handler takes `pending`
    asio::async_write(socket_of_pending, data,
                      [this, pending = std::move(pending), bytes = std::move(bytes),
                       ended](error_code error, std::size_t written) mutable {
                          if (error) {
                              if (phase_ == Phase::handing_over &&
                                  error == asio::error::operation_aborted)
                                  let_go(*pending, asio::buffer(*bytes) + written);
                              end_session(*pending);
                              pending.reset(); // closes the socket unless it was let go
                              ended(nullptr);
                              return;
                          }
                          count_echoed(*pending, written);
                          pending->last_activity_tick = tick_;
                          asio::co_spawn(context_, session_of_type(std::move(*pending)), ended);
                      });
}

// The end of a session, in a plain function so that its locals stay out of the session's frame.
// During a handover the connection goes to the pool instead of being closed, unless it is closed
// already (by the worker, or let go with unsent bytes). The socket is closed when the frame ends.
void Worker::end_session(Connection& connection) {
    if (phase_ == Phase::handing_over && connection.socket.is_open())
        let_go(connection, {});
    log_end(connection, "closed"); // unless the worker or let_go() logged its end already
}

// During a handover: the connection's descriptor and the bytes it could not write back yet go to
// the connections handed over, unless there is nothing to resume (no unsent bytes, and the client
// has gone: everything it sent was echoed).
void Worker::let_go(Connection& connection, asio::const_buffer unsent) {
    if (unsent.size() == 0 && !peer_still_there(connection.socket.native_handle()))
        return;
    error_code error;
    const int fd = connection.socket.release(error);
    if (error)
        return;
    handed_.push_back(HandedConnection{
        FileDescriptor(fd), std::string(static_cast<const char*>(unsent.data()), unsent.size())});
    log_end(connection, "handed over");
}

} // namespace uds_echo::daemon
