// One connection as its worker holds it, and the Asio types a worker's coroutines use. Everything
// here lives on one worker's thread.
#pragma once

#include "common/socket_type.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/intrusive/list.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>

namespace uds_echo::daemon {

// Every session's coroutine frame is the cost of an idle connection: the choices marked "frame"
// keep it small, and docs/architecture.md ("Memory per connection") has the figures.

// Frame: the io_context's own executor type, smaller than the type-erased default.
using Executor = boost::asio::io_context::executor_type;
template <typename T>
using Task = boost::asio::awaitable<T, Executor>;
using Timer = boost::asio::steady_timer::rebind_executor<Executor>::other;
using StreamSocket = boost::asio::local::stream_protocol::socket::rebind_executor<Executor>::other;
using StreamAcceptor =
    boost::asio::local::stream_protocol::acceptor::rebind_executor<Executor>::other;

// Frame: operations awaited in the caller's frame (no frame per operation as with
// use_awaitable); as_tuple turns the expected errors into values.
inline constexpr auto as_tuple_deferred = boost::asio::as_tuple(boost::asio::deferred);

// What the debug line that ends a connection reports ("connection 7 closed after 2.5 s, 4.0 KiB
// echoed"). Allocated only when the connection was admitted at debug level, so that at the other
// levels it costs an idle connection one null pointer.
struct ConnectionLog {
    std::uint64_t id;
    std::chrono::steady_clock::time_point since;
    std::uint64_t echoed = 0;
};

// One connection: its socket and what the worker knows of it, owned by the connection's session.
// Frame: it is the session's parameter, and its hook unlinks it from the worker's list (where the
// idle sweep, a forced close and a handover find it) when the frame ends.
using AutoUnlinkHook =
    boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>>;
//
// A seqpacket connection is held in the same StreamSocket type: Asio's socket types differ only in
// their protocol tag, and one type lets the idle sweep, the forced close and the handover treat
// both kinds alike. The seqpacket session does its own message I/O on the descriptor.
struct Connection : AutoUnlinkHook {
    Connection(StreamSocket socket, SocketType type, std::uint64_t now_tick,
               std::unique_ptr<ConnectionLog> log)
        : socket(std::move(socket))
        , type(type)
        , last_activity_tick(now_tick)
        , log(std::move(log)) {}

    StreamSocket socket;
    SocketType type;                    // stream or seqpacket
    std::uint64_t last_activity_tick;   // the worker's housekeeping tick of the last message
    std::unique_ptr<ConnectionLog> log; // null below debug level, and once the end is logged
};

// Not constant-time size: auto-unlinking members cannot update a count.
using ConnectionList =
    boost::intrusive::list<Connection, boost::intrusive::constant_time_size<false>>;

} // namespace uds_echo::daemon
