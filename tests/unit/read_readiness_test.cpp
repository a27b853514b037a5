// The two promises a stream session's reads rest on (session.cpp, read_readiness.hpp):
// - after a read of its own that found nothing, forget_read_readiness() makes Asio's next
//   async_read_some wait for epoll without trying a read first, and the wait still ends when data
//   comes; the test counts recv() calls by interposing libc's wrapper in this executable, and
//   fails when a Boost version takes the slow path;
// - a queued read completes, and its coroutine resumes, before any other socket's read runs, so
//   every session of a worker may read into one buffer.
#define BOOST_TEST_MODULE read_readiness
#include <boost/test/unit_test.hpp>

#include "daemon/read_readiness.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include <dlfcn.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <memory>
#include <string>
#include <vector>

namespace {

std::atomic<int> recv_calls{0};

} // namespace

// Interposed: the executable's definition comes before libc's (or a sanitizer's) in symbol
// lookup; it counts, then calls the next definition.
extern "C" ssize_t recv(int fd, void* buffer, size_t size, int flags) {
    ++recv_calls;
    using Recv = ssize_t (*)(int, void*, size_t, int);
    static const auto next = reinterpret_cast<Recv>(::dlsym(RTLD_NEXT, "recv"));
    return next(fd, buffer, size, flags);
}

namespace {

namespace asio = boost::asio;
using boost::system::error_code;
using uds_echo::daemon::StreamSocket;
using uds_echo::daemon::Task;

// A connected stream pair: the daemon's end in an Asio socket, the client's a plain descriptor.
struct Pair {
    StreamSocket socket;
    int client = -1;

    explicit Pair(asio::io_context& context)
        : socket(context) {
        int fds[2];
        BOOST_REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) ==
                      0);
        socket.assign(asio::local::stream_protocol(), fds[0]);
        socket.non_blocking(true);
        client = fds[1];
    }
    ~Pair() { ::close(client); }

    void client_writes(const std::string& text) const {
        BOOST_REQUIRE(::write(client, text.data(), text.size()) ==
                      static_cast<ssize_t>(text.size()));
    }
};

// As a session does it: its own read, which finds nothing, then the wait.
void read_dry_then_forget(StreamSocket& socket, asio::mutable_buffer buffer) {
    error_code error;
    socket.read_some(buffer, error);
    BOOST_REQUIRE(error == asio::error::would_block);
    uds_echo::daemon::forget_read_readiness(socket);
}

// Waits, then keeps what the shared buffer holds when the coroutine resumes.
Task<void> wait_and_read(StreamSocket& socket, asio::mutable_buffer shared, std::string& seen) {
    read_dry_then_forget(socket, shared);
    auto [error, size] = co_await socket.async_read_some(shared, asio::as_tuple(asio::deferred));
    BOOST_REQUIRE(!error);
    seen.assign(static_cast<const char*>(shared.data()), size);
}

} // namespace

BOOST_AUTO_TEST_CASE(after_a_read_that_found_nothing_the_wait_tries_no_read_and_still_ends) {
    BOOST_REQUIRE_MESSAGE(uds_echo::daemon::read_readiness_fast_path,
                          "no fast path for Boost " << BOOST_VERSION
                                                    << ": read_readiness.hpp was checked "
                                                       "against 1.81 only");
    asio::io_context context(1);
    Pair pair(context);
    std::array<char, 16> buffer{};
    for (int round = 0; round < 3; ++round) {
        read_dry_then_forget(pair.socket, asio::buffer(buffer));
        recv_calls = 0;
        std::size_t received = 0;
        pair.socket.async_read_some(asio::buffer(buffer), [&](error_code error, std::size_t size) {
            BOOST_REQUIRE(!error);
            received = size;
        });
        context.restart();
        context.poll();
        BOOST_TEST(recv_calls.load() == 0,
                   "async_read_some tried a read although the socket was read dry: the fast "
                   "path of read_readiness.hpp is lost (Boost "
                       << BOOST_VERSION << ")");
        pair.client_writes("ping");
        context.restart();
        context.run_one();
        BOOST_TEST(received == 4u);
        BOOST_TEST(recv_calls.load() == 1);
    }
}

// The end of the stream after a dry read is an event of its own: the wait ends with it.
BOOST_AUTO_TEST_CASE(an_end_of_file_after_the_dry_read_ends_the_wait) {
    asio::io_context context(1);
    Pair pair(context);
    std::array<char, 16> buffer{};
    read_dry_then_forget(pair.socket, asio::buffer(buffer));
    error_code result;
    bool done = false;
    pair.socket.async_read_some(asio::buffer(buffer), [&](error_code error, std::size_t) {
        result = error;
        done = true;
    });
    context.poll();
    ::shutdown(pair.client, SHUT_WR);
    context.restart();
    context.run_one();
    BOOST_TEST(done);
    BOOST_TEST(result == asio::error::eof);
}

// The counter sees what it counts: without forgetting, Asio tries the read first.
BOOST_AUTO_TEST_CASE(the_counter_sees_the_read_asio_tries_first) {
    asio::io_context context(1);
    Pair pair(context);
    std::array<char, 16> buffer{};
    error_code error;
    pair.socket.read_some(asio::buffer(buffer), error);
    BOOST_REQUIRE(error == asio::error::would_block);
    recv_calls = 0;
    pair.socket.async_read_some(asio::buffer(buffer), [](error_code, std::size_t) {});
    context.poll();
    BOOST_TEST(recv_calls.load() == 1);
}

// Many coroutines wait to read into one buffer; every client writes before the worker polls
// epoll, so one epoll_wait reports them all. Each coroutine must find its own client's bytes in
// the buffer when it resumes: its read completed, and it resumed, before the next socket's read.
BOOST_AUTO_TEST_CASE(a_queued_read_resumes_its_coroutine_before_any_other_read_runs) {
    constexpr int sockets = 32;
    asio::io_context context(1);
    std::vector<std::unique_ptr<Pair>> pairs;
    for (int i = 0; i < sockets; ++i)
        pairs.push_back(std::make_unique<Pair>(context));
    std::array<char, 64> shared{};
    std::vector<std::string> seen(sockets);
    for (int i = 0; i < sockets; ++i)
        asio::co_spawn(context, wait_and_read(pairs[i]->socket, asio::buffer(shared), seen[i]),
                       asio::detached);
    context.poll(); // every coroutine waits
    for (int i = 0; i < sockets; ++i)
        pairs[i]->client_writes("client " + std::to_string(i) + std::string(i, '.'));
    context.restart();
    context.run();
    for (int i = 0; i < sockets; ++i)
        BOOST_TEST(seen[i] == "client " + std::to_string(i) + std::string(i, '.'));
}
