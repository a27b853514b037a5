#include "client/round_trip.hpp"

#include "client/reply_deadline.hpp"
#include "common/text.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>

namespace uds_echo::client {

namespace {

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;
using boost::system::error_code;

constexpr auto as_tuple_awaitable = asio::as_tuple(asio::use_awaitable);

// One round trip: the two halves and the deadline run at once, and the first to decide the
// outcome stops the others the way every part of the client stops (docs/architecture.md,
// "Stopping"): it cancels what they wait on, and each re-checks `stopped` after every await. No
// coroutine throws, so the `&&` that runs them only joins them.
class Exchange {
public:
    Exchange(Socket& socket, std::span<const char> message, std::span<char> echo,
             ReplyDeadline& deadline)
        : socket_(socket)
        , message_(message)
        , echo_(echo)
        , deadline_(deadline) {}

    asio::awaitable<void> send_message() {
        const auto [error, count] = co_await asio::async_write(
            socket_, asio::buffer(message_.data(), message_.size()), as_tuple_awaitable);
        sent = count;
        if (stopped)
            co_return;
        // A daemon that hung up is reported by the receiving half, with the count it got back.
        if (error && !is_disconnect(error))
            stop(Failure(ExitCode::os_error, "cannot send to the daemon: " + error.message()));
    }

    asio::awaitable<void> receive_echo() {
        while (received < echo_.size()) {
            const auto [error, count] = co_await socket_.async_read_some(
                asio::buffer(echo_.data() + received, echo_.size() - received), as_tuple_awaitable);
            received += count;
            if (stopped)
                co_return;
            if (count > 0)
                deadline_.progress();
            if (is_disconnect(error)) {
                stop(closed_early(received, std::max(sent, received)));
                co_return;
            }
            if (error) {
                stop(Failure(ExitCode::os_error,
                             "cannot receive from the daemon: " + error.message()));
                co_return;
            }
        }
        stop(std::nullopt);
    }

    asio::awaitable<void> watch_deadline() {
        const bool expired = co_await deadline_.expiry([] { return true; });
        if (expired)
            stop(Failure(ExitCode::temp_failure,
                         "no echo within " + seconds_text(deadline_.timeout()) + " (" +
                             std::to_string(received) + " of " + std::to_string(message_.size()) +
                             " bytes came back)"));
    }

    // The first call decides: `failure`, or the whole echo came back when it is empty.
    void stop(std::optional<Failure> outcome) {
        if (stopped)
            return;
        stopped = true;
        failure = std::move(outcome);
        deadline_.cancel();
        error_code ignored;
        socket_.cancel(ignored);
    }

    std::size_t sent = 0;
    std::size_t received = 0;
    bool stopped = false;
    std::optional<Failure> failure;

private:
    Socket& socket_;
    std::span<const char> message_;
    std::span<char> echo_;
    ReplyDeadline& deadline_;
};

} // namespace

bool is_disconnect(const error_code& error) {
    return error == asio::error::eof || error == asio::error::connection_reset ||
           error == asio::error::broken_pipe;
}

Failure closed_early(std::uint64_t echoed, std::uint64_t sent, bool input_left) {
    if (sent == 0)
        return Failure(ExitCode::data_error,
                       "the daemon closed the connection before anything was sent");
    std::string message = "the daemon closed the connection after echoing " +
                          std::to_string(echoed) + " of " + std::to_string(sent) + " bytes sent";
    if (input_left)
        message += ", before the end of the input";
    if (echoed == 0)
        message += " (does its allow-uid/allow-gid let this user in?)";
    return Failure(ExitCode::data_error, message);
}

asio::awaitable<RoundTripResult> round_trip(Socket& socket, std::span<const char> message,
                                            std::span<char> echo,
                                            std::chrono::milliseconds timeout) {
    ReplyDeadline deadline(co_await asio::this_coro::executor, timeout);
    const auto echo_span = echo.first(message.size());
    Exchange exchange(socket, message, echo_span, deadline);
    co_await (exchange.send_message() && exchange.receive_echo() && exchange.watch_deadline());
    RoundTripResult result{exchange.sent, exchange.received, exchange.failure};
    if (result.failure)
        co_return result;
    const auto difference = std::mismatch(echo_span.begin(), echo_span.end(), message.begin());
    if (difference.first != echo_span.end())
        result.failure =
            Failure(ExitCode::data_error, "the echo differed from what was sent at byte offset " +
                                              std::to_string(difference.first - echo_span.begin()));
    co_return result;
}

} // namespace uds_echo::client
