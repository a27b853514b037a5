// asio_plain_echo: the straightforward Boost.Asio coroutine echo, as Asio's own examples write it.
//
//   asio_plain_echo SOCKET_PATH
//
// One io_context run by one thread; the acceptor spawns a coroutine per connection; each session
// owns a 64 KiB buffer in its coroutine frame and loops async_read_some / async_write with
// use_awaitable. Nothing is tuned: this is the baseline uds-echod has to beat.

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <cstdio>
#include <exception>
#include <string>
#include <unistd.h>

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using stream = asio::local::stream_protocol;

namespace {

awaitable<void> session(stream::socket socket) {
    try {
        char data[64 * 1024];
        for (;;) {
            const std::size_t n =
                co_await socket.async_read_some(asio::buffer(data), use_awaitable);
            co_await asio::async_write(socket, asio::buffer(data, n), use_awaitable);
        }
    } catch (const std::exception&) {
        // End of file or a broken connection: the session ends.
    }
}

awaitable<void> listener(stream::acceptor acceptor) {
    for (;;) {
        stream::socket socket = co_await acceptor.async_accept(use_awaitable);
        co_spawn(acceptor.get_executor(), session(std::move(socket)), asio::detached);
    }
}

} // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s SOCKET_PATH\n", argv[0]);
        return 2;
    }
    try {
        const std::string path = argv[1];
        ::unlink(path.c_str());
        asio::io_context context(1);
        stream::acceptor acceptor(context, stream::endpoint(path));
        acceptor.listen(4096);
        asio::signal_set signals(context, SIGINT, SIGTERM);
        signals.async_wait([&](auto, auto) { context.stop(); });
        co_spawn(context, listener(std::move(acceptor)), asio::detached);
        context.run();
        ::unlink(path.c_str());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "asio_plain_echo: %s\n", e.what());
        return 1;
    }
    return 0;
}
