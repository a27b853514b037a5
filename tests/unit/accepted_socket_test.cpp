// The accept loop's fast path (accepted_socket.hpp): a connection from accept4() costs Asio no
// ioctl(FIONBIO) and no EPOLL_CTL_DEL. The test counts both system calls by interposing their
// libc wrappers in this executable, and fails when a Boost version takes the slow path (two more
// system calls per connection), so that an upgrade is seen rather than silently slower.
#define BOOST_TEST_MODULE accepted_socket
#include <boost/test/unit_test.hpp>

#include "daemon/accepted_socket.hpp"

#include <boost/asio/write.hpp>

#include <dlfcn.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <string>

namespace {

std::atomic<int> nonblocking_ioctls{0};
std::atomic<int> epoll_deletions{0};

} // namespace

// Interposed: the executable's definitions come before libc's (or a sanitizer's) in symbol lookup;
// each counts, then calls the next definition.
extern "C" int ioctl(int fd, unsigned long request, ...) noexcept {
    va_list arguments;
    va_start(arguments, request);
    void* argument = va_arg(arguments, void*);
    va_end(arguments);
    if (request == FIONBIO)
        ++nonblocking_ioctls;
    using Ioctl = int (*)(int, unsigned long, ...);
    static const auto next = reinterpret_cast<Ioctl>(::dlsym(RTLD_NEXT, "ioctl"));
    return next(fd, request, argument);
}

extern "C" int epoll_ctl(int epoll_fd, int operation, int fd, epoll_event* event) noexcept {
    if (operation == EPOLL_CTL_DEL)
        ++epoll_deletions;
    using EpollCtl = int (*)(int, int, int, epoll_event*);
    static const auto next = reinterpret_cast<EpollCtl>(::dlsym(RTLD_NEXT, "epoll_ctl"));
    return next(epoll_fd, operation, fd, event);
}

namespace {

namespace asio = boost::asio;
using uds_echo::daemon::AcceptedSocket;

// A listening socket on an abstract name, and as many clients as the test connects.
struct Listener {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    socklen_t length = 0;

    Listener() {
        BOOST_REQUIRE(fd >= 0);
        address.sun_family = AF_UNIX;
        const int written = std::snprintf(address.sun_path + 1, sizeof address.sun_path - 1,
                                          "uds-echo-accepted-socket-test-%d", ::getpid());
        length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + written);
        BOOST_REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&address), length) == 0);
        BOOST_REQUIRE(::listen(fd, 16) == 0);
    }
    ~Listener() { ::close(fd); }

    int connect_client() const {
        const int client = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        BOOST_REQUIRE(client >= 0);
        BOOST_REQUIRE(::connect(client, reinterpret_cast<const sockaddr*>(&address), length) == 0);
        return client;
    }
};

} // namespace

BOOST_AUTO_TEST_CASE(an_accepted_connection_costs_no_fionbio_and_no_epoll_ctl_del) {
    constexpr int connections = 20;
    Listener listener;
    asio::io_context context(1);
    nonblocking_ioctls = 0;
    epoll_deletions = 0;
    for (int i = 0; i < connections; ++i) {
        const int client = listener.connect_client();
        const int fd = ::accept4(listener.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        BOOST_REQUIRE(fd >= 0);
        // As a session does: a speculative read that must wait, an echo, and the close.
        AcceptedSocket socket(context);
        socket.adopt(fd);
        char received[8];
        std::size_t echoed = 0;
        socket.async_read_some(
            asio::buffer(received), [&](boost::system::error_code error, std::size_t size) {
                BOOST_REQUIRE(!error);
                boost::system::error_code write_error;
                echoed = socket.write_some(asio::buffer(received, size), write_error);
                BOOST_REQUIRE(!write_error);
            });
        context.poll(); // the read queues: nothing to read yet
        BOOST_REQUIRE(::write(client, "ping", 4) == 4);
        context.restart();
        context.run_one();
        BOOST_REQUIRE(echoed == 4);
        socket.close();
        char back[4];
        BOOST_TEST(::read(client, back, sizeof back) == 4);
        ::close(client);
        context.restart();
    }
    BOOST_TEST_MESSAGE("per connection: " << nonblocking_ioctls.load() / double(connections)
                                          << " ioctl(FIONBIO), "
                                          << epoll_deletions.load() / double(connections)
                                          << " epoll_ctl(EPOLL_CTL_DEL)");
    BOOST_TEST(nonblocking_ioctls.load() == 0,
               "Asio set O_NONBLOCK itself: the fast path of accepted_socket.hpp is lost (Boost "
                   << BOOST_VERSION << ")");
    BOOST_TEST(epoll_deletions.load() == 0,
               "Asio removed the descriptor from epoll itself: the fast path of "
               "accepted_socket.hpp is lost (Boost "
                   << BOOST_VERSION << ")");
}

// The counters see what they count: the documented path pays both system calls.
BOOST_AUTO_TEST_CASE(the_counters_see_the_slow_path) {
    Listener listener;
    asio::io_context context(1);
    const int client = listener.connect_client();
    const int fd = ::accept4(listener.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    BOOST_REQUIRE(fd >= 0);
    nonblocking_ioctls = 0;
    epoll_deletions = 0;
    {
        uds_echo::daemon::StreamSocket socket(context, asio::local::stream_protocol(), fd);
        socket.non_blocking(true);
    }
    ::close(client);
    BOOST_TEST(nonblocking_ioctls.load() == 1);
    BOOST_TEST(epoll_deletions.load() == 1);
}
