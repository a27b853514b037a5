// One message and its echo on a connection to the daemon, bounded by the reply timeout: the
// exchange that the one-shot form, the interactive form, ping and the churn load share, and the
// words every form uses for a connection that ends early.
#pragma once

#include "common/exit_codes.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>

namespace uds_echo::client {

using Socket = boost::asio::local::stream_protocol::socket;

// The peer closed or reset the connection (as opposed to a local error).
bool is_disconnect(const boost::system::error_code& error);

// The daemon closed the connection before the whole echo came back: `echoed` of `sent` bytes
// came back; `input_left` when the client had more to send. Suggests the allow lists only when
// bytes were sent and none came back, the way a refused peer is treated.
Failure closed_early(std::uint64_t echoed, std::uint64_t sent, bool input_left = false);

struct RoundTripResult {
    std::size_t sent = 0;
    std::size_t received = 0;
    std::optional<Failure> failure; // none: the whole echo came back identical
};

// Sends `message` and reads message.size() bytes back into `echo` at the same time, so a message
// larger than the socket buffers cannot deadlock, then compares them. The daemon must take or
// return bytes within `timeout`. The failure: 75 no echo in time, 65 the connection closed early
// or the echo differed, 71 any other error.
boost::asio::awaitable<RoundTripResult> round_trip(Socket& socket, std::span<const char> message,
                                                   std::span<char> echo,
                                                   std::chrono::milliseconds timeout);

} // namespace uds_echo::client
