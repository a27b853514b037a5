// Runs one coroutine to its end on an io_context of the calling thread: how the blocking entry
// points of the client (one-shot, interactive, ping) drive their asynchronous insides.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <exception>
#include <optional>
#include <type_traits>

namespace uds_echo::client {

// The coroutine's result, or its exception rethrown. The context may be run again afterwards
// (objects bound to it, such as a socket, live on between calls).
template <typename T>
T run_coroutine(boost::asio::io_context& context, boost::asio::awaitable<T> task) {
    std::exception_ptr error;
    std::optional<std::conditional_t<std::is_void_v<T>, bool, T>> result;
    if constexpr (std::is_void_v<T>) {
        boost::asio::co_spawn(context, std::move(task), [&](std::exception_ptr thrown) {
            error = thrown;
            result = true;
        });
    } else {
        boost::asio::co_spawn(context, std::move(task), [&](std::exception_ptr thrown, T value) {
            error = thrown;
            result = std::move(value);
        });
    }
    context.restart();
    context.run();
    if (error)
        std::rethrow_exception(error);
    if constexpr (!std::is_void_v<T>)
        return std::move(*result);
}

} // namespace uds_echo::client
