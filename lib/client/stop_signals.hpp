// SIGINT and SIGTERM as events of an event loop: ping and bench stop on them and still print
// their summary, instead of dying.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <csignal>

namespace uds_echo::client {

class StopSignals {
public:
    explicit StopSignals(const boost::asio::any_io_executor& executor)
        : signals_(executor, SIGINT, SIGTERM) {}

    // True at the next stop signal; false once cancel() was called, also before the wait began.
    boost::asio::awaitable<bool> wait() {
        if (cancelled_)
            co_return false;
        const auto [error, number] =
            co_await signals_.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
        if (error || cancelled_)
            co_return false;
        ++received_;
        co_return true;
    }

    unsigned received() const { return received_; }

    // Ends a wait() in progress, and any later one (they return false).
    void cancel() {
        cancelled_ = true;
        boost::system::error_code ignored;
        signals_.cancel(ignored);
    }

    boost::asio::any_io_executor executor() { return signals_.get_executor(); }

private:
    boost::asio::signal_set signals_;
    unsigned received_ = 0;
    bool cancelled_ = false;
};

} // namespace uds_echo::client
