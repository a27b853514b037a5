// The life of one stream connection on its worker: read what the client sent, write it back, until
// the client closes; at a restart, let go of the connection with what it could not write back yet.
#include "daemon/logging.hpp"
#include "daemon/read_readiness.hpp"
#include "daemon/worker.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include <sys/socket.h>

#include <cerrno>
#include <memory>
#include <optional>

namespace uds_echo::daemon {
namespace {

namespace asio = boost::asio;
using boost::system::error_code;

// False when the client has closed its side or the connection failed: a non-blocking peek
// that finds an end of file or an error.
bool peer_still_there(int fd) {
    char byte;
    const auto peeked = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return peeked > 0 || (peeked < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
}

} // namespace

// The bytes a read put into the worker's read buffer; 0 when there was nothing to read, and Asio
// is told so (read_readiness.hpp); nothing when the connection is over: end of file, a reset, or
// a close by the idle sweep or a forced stop. At end of file everything received has been
// echoed, and closing the socket (when the session ends) sends the client its end of file.
std::optional<std::size_t> Worker::read_now(StreamSocket& socket) {
    error_code error;
    const std::size_t received = socket.read_some(asio::buffer(read_buffer_), error);
    if (error == asio::error::would_block) {
        forget_read_readiness(socket);
        return 0;
    }
    if (error)
        return std::nullopt;
    return received;
}

// Waits until the socket has something to read, and reads it: read_now()'s result. With the fast
// path the wait is Asio's async_read_some into the worker's read buffer: the read is made when
// epoll reports the socket, and the session resumes at once, inside the reactor's handling of
// that event, before any other read into the buffer. Otherwise it is async_wait (which re-arms
// the descriptor with epoll_ctl on every call), then read_now(). Frame: one optional number
// instead of an error and a size.
auto Worker::wait_readable(StreamSocket& socket) {
    if constexpr (read_readiness_fast_path)
        return socket.async_read_some(
            asio::buffer(read_buffer_), asio::deferred([](error_code error, std::size_t received) {
                return asio::deferred.values(error ? std::nullopt : std::optional(received));
            }));
    else
        return socket.async_wait(
            asio::socket_base::wait_read, asio::deferred([this, &socket](error_code error) {
                return asio::deferred.values(error ? std::nullopt : read_now(socket));
            }));
}

// An idle session holds no buffer: every read goes into the worker's one read buffer, and a
// session writes back what it read before the next read on the worker (echo() copies what must
// wait for a slow client). Asio's async_read_some would try one more read before it waits, and
// after an echo the client has not answered yet: that read finds nothing. So the reads are the
// session's own, and the one that finds nothing tells Asio, which then waits without trying.
// Frame: three awaited calls (the wait, the echo, the post) and no coroutine per wait, whose
// frames, alive across the post, would not all fit Asio's per-thread cache of recycled frames.
Task<void> Worker::session(Connection connection) {
    connections_.push_back(connection);
    // Reads and writes are tried directly; only when the kernel says they would block does the
    // session wait through Asio. Sockets from the accept loop are non-blocking already.
    if (!connection.socket.non_blocking())
        connection.socket.non_blocking(true);
    // The client may have written before the session began: the first read is tried at once.
    while (phase_ != Phase::handing_over) {
        auto received = read_now(connection.socket);
        if (received == 0u)
            received = co_await wait_readable(connection.socket);
        if (!received)
            break; // over, or cancelled for a handover (end_session() lets go of the connection)
        if (*received == 0)
            continue; // woken without data: wait again
        connection.last_activity_tick = tick_;
        if (!co_await echo(connection, asio::buffer(read_buffer_.data(), *received)))
            break;
        // A full read: more is probably waiting, read on. A short one was all there was: with
        // other connections on the worker, let their ready work run and epoll be polled once
        // before reading again, and the read finds the client's answer instead of nothing.
        // docs/architecture.md, "Reads per message", has the figures. The one connection of a
        // ping-pong has nothing to wait for: its read finds nothing and tells Asio so.
        // held() is a counter; the connection list's size() would walk every connection.
        if (*received < read_buffer_.size() && held() > 1)
            co_await asio::post(asio::deferred);
    }
    end_session(connection);
}

// Writes `data` back; false when the client is gone. The first write is tried directly. A client
// that reads slower than it writes makes the session wait for room in its socket buffer, holding
// the rest: that is the backpressure (docs/protocol.md), and the only memory a slow client costs.
// What waits in the worker's read buffer is copied into a pooled buffer first: the next read of
// any session on the worker reuses the read buffer.
Task<bool> Worker::echo(Connection& connection, asio::const_buffer data) {
    auto& peer = connection.socket;
    error_code error;
    const std::size_t sent = peer.write_some(data, error);
    if (error && error != asio::error::would_block) {
        // EMSGSIZE: a seqpacket message is sent whole or not at all, and one longer than the
        // socket's send buffer never is. Otherwise EPIPE or ECONNRESET: the client is gone.
        if (error == asio::error::message_size)
            UDS_LOG(warning) << "seqpacket connection closed: a message of " << data.size()
                             << " bytes is longer than its socket's send buffer (SO_SNDBUF) allows";
        co_return false;
    }
    const std::size_t done = error ? 0 : sent;
    if (done < data.size()) {
        // A handover does not wait for a slow client: the rest goes with the connection.
        if (phase_ == Phase::handing_over) {
            let_go(connection, data + done);
            co_return false;
        }
        auto rest = data + done;
        std::optional<BufferPool::Lease> pooled;
        if (data.data() == read_buffer_.data()) {
            pooled.emplace(buffers_.borrow());
            rest = asio::buffer(pooled->whole(), asio::buffer_copy(pooled->whole(), rest));
        }
        auto [write_error, written] = co_await asio::async_write(peer, rest, as_tuple_deferred);
        if (write_error) {
            if (phase_ == Phase::handing_over && write_error == asio::error::operation_aborted)
                let_go(connection, rest + written);
            co_return false;
        }
    }
    count_echoed(connection, data.size());
    co_return true;
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
