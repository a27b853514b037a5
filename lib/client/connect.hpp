// Finding the daemon: the client's socket candidates tried in order, the check of the per-user
// directory below /tmp, the retry while the daemon's listen backlog is full, and the one table
// from connect(2)'s errno to the client's exit code and message.
#pragma once

#include "common/exit_codes.hpp"
#include "common/file_descriptor.hpp"
#include "common/socket_type.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/local/stream_protocol.hpp>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

namespace uds_echo::client {

struct ClientOptions {
    std::vector<std::string> socket_candidates; // tried in order, see client_socket_candidates()
    std::chrono::milliseconds timeout{5000};    // connect, and each wait for a reply
    bool quiet = false;
    SocketType type = SocketType::stream; // --type
};

// A connected descriptor (non-blocking, close-on-exec) and the candidate it reached. A datagram
// socket is bound to an autobound abstract address first, so that the daemon can answer it
// (docs/protocol.md), and connected: it sends to and receives from the daemon only.
struct DaemonConnection {
    FileDescriptor fd;
    std::string path;
};

// Connects to the first candidate that answers. A candidate that is the per-user fallback below
// /tmp is used only when its directory is the user's own and private; an unsafe one is skipped
// and the next candidate tried. Throws Failure when none answers: 69 when no daemon is there
// (naming every path tried and why each was not used; the `systemctl start uds-echo.socket` hint
// only for the system path), 77 naming the socket's owner, group and mode, 75 when the listen
// backlog stays full for the timeout, 71 for any other error.
boost::asio::awaitable<DaemonConnection> connect_to_daemon(const ClientOptions& options);

// The result of connect_with_retry(): a connected descriptor, or the errno that ended the
// attempt (ETIMEDOUT when the backlog stayed full until the deadline).
struct ConnectAttempt {
    FileDescriptor fd;
    int error = 0;
};

// A new non-blocking, close-on-exec Unix socket of `type`; throws Failure (71) when none can be
// made. A datagram socket is autobound (an abstract name the kernel picks): the only kind of
// address the daemon answers, and one that leaves no file behind.
FileDescriptor client_socket(SocketType type = SocketType::stream);

// One connect() of the non-blocking socket `fd` to `endpoint`: 0 when connected, else the errno.
// For AF_UNIX a non-blocking connect() completes at once or fails; EAGAIN means the listen
// backlog is full, and the same socket may try again later.
int connect_once(int fd, const boost::asio::local::stream_protocol::endpoint& endpoint);

// The listen backlog of a busy daemon is full: retry quickly at first, then every 50 ms.
constexpr std::chrono::milliseconds first_backlog_retry{1};
inline std::chrono::milliseconds next_backlog_retry(std::chrono::milliseconds backoff) {
    return std::min(backoff * 2, std::chrono::milliseconds(50));
}

// One connection of `type` to `endpoint`, retried with a short backoff while the listen backlog
// is full (EAGAIN) until `deadline`.
boost::asio::awaitable<ConnectAttempt>
connect_with_retry(const boost::asio::local::stream_protocol::endpoint& endpoint,
                   std::chrono::steady_clock::time_point deadline,
                   SocketType type = SocketType::stream);

// The failure for a connection of `type` to `path` that ended with `error`, as the user reads
// it. EPROTOTYPE (a socket of another type is there) names the type that is.
Failure connect_failure(const std::string& path, int error, std::chrono::milliseconds timeout,
                        SocketType type = SocketType::stream);

} // namespace uds_echo::client
