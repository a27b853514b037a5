// Telling Asio that a stream socket has been read dry, so that its next async_read_some waits for
// epoll instead of first trying a read that would find nothing. Like accepted_socket.hpp, this
// writes Asio's private state, for the one Boost version it was checked against;
// tests/unit/read_readiness_test.cpp counts the reads and fails when a Boost version takes the
// slow path.
#pragma once

#include "daemon/connection.hpp"

#include <boost/asio/detail/reactor.hpp>
#include <boost/version.hpp>

// Only for the Boost version whose private state this was checked against, with its epoll reactor.
#if BOOST_VERSION == 108100 && defined(BOOST_ASIO_HAS_EPOLL) &&                                    \
    !defined(BOOST_ASIO_HAS_IO_URING_AS_DEFAULT)
#define UDS_ECHO_READ_READINESS_FAST_PATH 1
#else
#define UDS_ECHO_READ_READINESS_FAST_PATH 0
#endif

namespace uds_echo::daemon {

// True when forget_read_readiness() below does what it says. Elsewhere a session must not await
// a read into the worker's shared buffer, and waits with async_wait instead (session.cpp).
inline constexpr bool read_readiness_fast_path = UDS_ECHO_READ_READINESS_FAST_PATH;

#if UDS_ECHO_READ_READINESS_FAST_PATH
namespace read_readiness_detail {

// Asio's per-descriptor state keeps, for each kind of operation, a flag that says whether a read
// may find data: an epoll event sets it, and while it is set async_read_some tries the read at
// once, before it waits, and posts the completion. Boost 1.81 clears it only when a read finds
// the end of the stream. The flag is a private member; naming it in an explicit instantiation is
// the one way the language allows to take its address.
using ReactorState = boost::asio::detail::epoll_reactor::descriptor_state;
using TryReadFlags = bool[boost::asio::detail::epoll_reactor::max_ops];

struct TryReadTag {
    using type = TryReadFlags ReactorState::*;
};
TryReadTag::type member_of(TryReadTag);

template <typename Tag, typename Tag::type Member>
struct PrivateMember {
    friend typename Tag::type member_of(Tag) { return Member; }
};
template struct PrivateMember<TryReadTag, &ReactorState::try_speculative_>;

// The socket's implementation is a protected member of Asio's socket class: a pointer to it,
// formed through a class derived from it, as the language allows.
struct SocketImplementation : StreamSocket {
    static constexpr auto member = &SocketImplementation::impl_;
};

} // namespace read_readiness_detail
#endif

// Call only right after a read of this socket returned EAGAIN, on the socket's worker thread.
// Then it is sound: nothing is left to read and the end of the stream has not come (a read would
// have returned 0), and whatever arrives from now on raises a new epoll event (the registration is
// edge-triggered, and an edge is a new arrival), which the read that waits will meet. After a read
// that came back short it would not be: the end of the stream may have arrived with the data, in
// the same event, and no further event would come.
inline void forget_read_readiness(StreamSocket& socket) {
#if UDS_ECHO_READ_READINESS_FAST_PATH
    using namespace read_readiness_detail;
    auto& implementation = (socket.*SocketImplementation::member).get_implementation();
    if (ReactorState* state = implementation.reactor_data_)
        (state->*member_of(TryReadTag{}))[boost::asio::detail::epoll_reactor::read_op] = false;
#else
    (void)socket;
#endif
}

} // namespace uds_echo::daemon
