// The time the daemon has to answer: while it owes us bytes, it must take or return some within
// the timeout of the last time it did.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>

namespace uds_echo::client {

// One timer that re-checks a moving deadline, rather than a timer re-armed on every read: Asio
// 1.81 has no cancel_after, and `read || timer` waits on after a failed read until the timer
// fires. Time spent on anything but the daemon (a slow output) is excluded by `owed`.
class ReplyDeadline {
public:
    using Clock = std::chrono::steady_clock;

    ReplyDeadline(const boost::asio::any_io_executor& executor, std::chrono::milliseconds timeout)
        : timer_(executor)
        , timeout_(timeout)
        , deadline_(Clock::now() + timeout) {}

    std::chrono::milliseconds timeout() const { return timeout_; }

    // The daemon took or returned bytes: it has the whole timeout from now.
    void progress() { deadline_ = Clock::now() + timeout_; }

    // True once the deadline passed while `owed()` said the daemon owed us bytes; false when
    // cancelled first (cancel(), or the cancellation of the awaiting operation).
    template <typename Owed>
    boost::asio::awaitable<bool> expiry(Owed owed) {
        while (!cancelled_) {
            timer_.expires_at(deadline_);
            const auto [error] =
                co_await timer_.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
            if (error)
                co_return false;
            if (Clock::now() < deadline_)
                continue; // progress moved the deadline while the timer slept
            if (owed())
                co_return true;
            progress();
        }
        co_return false;
    }

    // Ends expiry(), also one that has not started waiting yet.
    void cancel() {
        cancelled_ = true;
        timer_.cancel();
    }

private:
    boost::asio::steady_timer timer_;
    std::chrono::milliseconds timeout_;
    Clock::time_point deadline_;
    bool cancelled_ = false;
};

} // namespace uds_echo::client
