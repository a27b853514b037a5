// Adopting a descriptor from accept4() into an Asio socket without the two system calls Asio would
// spend on it. The one place that writes Asio's private state; tests/unit/accepted_socket_test.cpp
// counts those system calls and fails when a Boost version takes the slow path.
#pragma once

#include "daemon/connection.hpp"

#include <boost/version.hpp>

namespace uds_echo::daemon {

// True when adopt() below skips the two system calls: only for the Boost version whose private
// state it was checked against.
inline constexpr bool accepted_socket_fast_path = BOOST_VERSION == 108100;

// A socket made by accept4(SOCK_NONBLOCK | SOCK_CLOEXEC). Asio cannot know what this code knows
// about such a descriptor, and pays two system calls per connection for it: an ioctl(FIONBIO)
// before the first operation that could block, and an EPOLL_CTL_DEL before close, because a
// descriptor it is given with assign() might have duplicates that keep the open file, and its
// epoll registration, alive. This one is non-blocking already and has no duplicate, so close()
// alone removes it from epoll. The flags live in Asio's implementation details, so this is done
// only for the Boost version it was checked against; any other version takes the documented path
// and the two system calls.
class AcceptedSocket : public StreamSocket {
public:
    explicit AcceptedSocket(boost::asio::io_context& context)
        : StreamSocket(context) {}

    void adopt(int fd) {
        assign(boost::asio::local::stream_protocol(), fd);
#if BOOST_VERSION == 108100
        namespace socket_ops = boost::asio::detail::socket_ops;
        auto& state = impl_.get_implementation().state_;
        state = static_cast<socket_ops::state_type>(
            (state | socket_ops::user_set_non_blocking | socket_ops::internal_non_blocking) &
            ~socket_ops::possible_dup);
#else
        non_blocking(true);
#endif
    }
};

} // namespace uds_echo::daemon
