#include "client/round_trip.hpp"

#include "client/reply_deadline.hpp"
#include "common/text.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <variant>

namespace uds_echo::client {

namespace {

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;
using boost::system::error_code;

constexpr auto as_tuple_awaitable = asio::as_tuple(asio::use_awaitable);

// What the two halves of a round trip share.
struct Transfer {
    Socket& socket;
    std::span<const char> message;
    std::span<char> echo;
    ReplyDeadline& deadline;
    std::size_t sent = 0;
    std::size_t received = 0;
};

asio::awaitable<void> send_message(Transfer& transfer) {
    const auto [error, count] = co_await asio::async_write(
        transfer.socket, asio::buffer(transfer.message.data(), transfer.message.size()),
        as_tuple_awaitable);
    transfer.sent = count;
    // A daemon that hung up is reported by the receiving half, with the count it got back.
    if (error && !is_disconnect(error))
        throw Failure(ExitCode::os_error, "cannot send to the daemon: " + error.message());
}

asio::awaitable<void> receive_echo(Transfer& transfer) {
    while (transfer.received < transfer.echo.size()) {
        const auto [error, count] = co_await transfer.socket.async_read_some(
            asio::buffer(transfer.echo.data() + transfer.received,
                         transfer.echo.size() - transfer.received),
            as_tuple_awaitable);
        transfer.received += count;
        if (count > 0)
            transfer.deadline.progress();
        if (is_disconnect(error))
            throw closed_early(transfer.received, std::max(transfer.sent, transfer.received));
        if (error)
            throw Failure(ExitCode::os_error, "cannot receive from the daemon: " + error.message());
    }
}

// Both halves at once; the first failure cancels the other half and is returned, not thrown, so
// that `||` with the deadline ends as soon as either is decided.
asio::awaitable<std::optional<Failure>> transfer_both_ways(Transfer& transfer) {
    try {
        co_await (send_message(transfer) && receive_echo(transfer));
    } catch (const Failure& failure) {
        co_return failure;
    }
    co_return std::nullopt;
}

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
    Transfer transfer{socket, message, echo.first(message.size()), deadline};
    const auto outcome =
        co_await (transfer_both_ways(transfer) || deadline.expiry([] { return true; }));
    RoundTripResult result{transfer.sent, transfer.received, std::nullopt};
    if (outcome.index() == 1) {
        result.failure = Failure(ExitCode::temp_failure,
                                 "no echo within " + seconds_text(timeout) + " (" +
                                     std::to_string(transfer.received) + " of " +
                                     std::to_string(message.size()) + " bytes came back)");
        co_return result;
    }
    result.failure = std::get<0>(outcome);
    if (result.failure)
        co_return result;
    const auto difference =
        std::mismatch(transfer.echo.begin(), transfer.echo.end(), message.begin());
    if (difference.first != transfer.echo.end())
        result.failure = Failure(ExitCode::data_error,
                                 "the echo differed from what was sent at byte offset " +
                                     std::to_string(difference.first - transfer.echo.begin()));
    co_return result;
}

} // namespace uds_echo::client
