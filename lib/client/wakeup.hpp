// Wakes one coroutine that waits for a condition another coroutine of the same thread changes.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace uds_echo::client {

// A timer that never expires by itself; cancelling it is the signal. Single-threaded use: the
// waiter checks its condition before waiting, so no wake-up is lost.
class Wakeup {
public:
    explicit Wakeup(const boost::asio::any_io_executor& executor)
        : timer_(executor) {}
    boost::asio::awaitable<void> wait() {
        timer_.expires_at(boost::asio::steady_timer::time_point::max());
        co_await timer_.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    }
    void notify() { timer_.cancel(); }

private:
    boost::asio::steady_timer timer_;
};

} // namespace uds_echo::client
