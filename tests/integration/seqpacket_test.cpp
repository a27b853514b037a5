// uds-echod's seqpacket socket (uds-echod(8), MESSAGE SOCKETS; docs/protocol.md): every message
// back as one message, in order, whole up to 64 KiB; an over-long message closes the connection
// rather than being echoed cut; half-close; a client that never reads; the limits shared with
// stream connections; socket activation, listening and Accept=yes; the client's --type seqpacket.
#define BOOST_TEST_MODULE integration_seqpacket
#include <boost/test/unit_test.hpp>

#include "fixtures.hpp"
#include "process.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

using namespace uds_echo::test;

namespace {

bool wait_writable(int fd, std::chrono::milliseconds timeout) {
    pollfd writable{fd, POLLOUT, 0};
    return ::poll(&writable, 1, static_cast<int>(timeout.count())) == 1;
}

// A connected seqpacket socket with send and receive timeouts; throws when connect() fails.
FileDescriptor connect_seqpacket(const std::string& path) {
    FileDescriptor fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    BOOST_REQUIRE(fd.get() >= 0);
    sockaddr_un address{};
    const socklen_t length = make_address(path, address);
    BOOST_REQUIRE_MESSAGE(
        ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), length) == 0,
        "connect to " << path << ": " << std::strerror(errno));
    set_io_timeout(fd.get(), 10s);
    return fd;
}

void send_message(int fd, std::string_view data) {
    BOOST_REQUIRE_EQUAL(::send(fd, data.data(), data.size(), MSG_NOSIGNAL),
                        static_cast<ssize_t>(data.size()));
}

// One message (up to 1 MiB), or nullopt at end of file or on error (the receive timeout
// included). `truncated` says whether the message was longer than what was read.
std::optional<std::string> receive_message(int fd) {
    std::string buffer(1 << 20, '\0');
    const auto length = ::recv(fd, buffer.data(), buffer.size(), 0);
    if (length <= 0)
        return std::nullopt;
    buffer.resize(static_cast<std::size_t>(length));
    return buffer;
}

struct SeqpacketDaemon {
    TempDir dir;
    std::string socket = dir.path() + "/q.sock";
    Daemon daemon;

    explicit SeqpacketDaemon(std::vector<std::string> extra = {})
        : daemon(start(extra)) {}

    Daemon start(std::vector<std::string> extra) {
        extra.insert(extra.begin(), {"--seqpacket-socket", socket});
        return start_daemon(dir, DaemonOptions::with_args(std::move(extra)));
    }
};

} // namespace

BOOST_AUTO_TEST_CASE(every_message_comes_back_as_one_message_in_order) {
    SeqpacketDaemon d;
    const FileDescriptor client = connect_seqpacket(d.socket);
    std::vector<std::string> sent;
    for (const std::size_t size :
         {std::size_t{1}, std::size_t{95}, std::size_t{96}, std::size_t{97}, std::size_t{4096},
          std::size_t{65535}, std::size_t{65536}})
        sent.push_back(random_bytes(size, size));
    // Pipelined: all sent before the first is read.
    for (const auto& message : sent)
        send_message(client.get(), message);
    for (const auto& message : sent) {
        const auto echo = receive_message(client.get());
        BOOST_REQUIRE_MESSAGE(echo.has_value(), "no echo of " << message.size() << " bytes");
        BOOST_TEST(echo->size() == message.size());
        BOOST_TEST((*echo == message));
    }
}

BOOST_AUTO_TEST_CASE(an_over_long_message_closes_the_connection_and_is_never_echoed_cut) {
    SeqpacketDaemon d;
    const FileDescriptor client = connect_seqpacket(d.socket);
    const int send_buffer = 1 << 20;
    BOOST_REQUIRE(
        ::setsockopt(client.get(), SOL_SOCKET, SO_SNDBUF, &send_buffer, sizeof send_buffer) == 0);
    send_message(client.get(), "before");
    send_message(client.get(), std::string(65537, 'x'));
    BOOST_TEST(receive_message(client.get()).value_or("") == "before");
    // Then the end of file: nothing of the long message.
    BOOST_TEST(!receive_message(client.get()).has_value());
    BOOST_TEST(
        wait_until([&] { return contains(d.daemon.process.stderr_text(), "longer than"); }, 5s),
        d.daemon.process.stderr_text());
}

BOOST_AUTO_TEST_CASE(a_larger_buffer_size_echoes_larger_messages_whole) {
    SeqpacketDaemon d({"--buffer-size", "256K"});
    const FileDescriptor client = connect_seqpacket(d.socket);
    const int buffer = 1 << 20;
    BOOST_REQUIRE(::setsockopt(client.get(), SOL_SOCKET, SO_SNDBUF, &buffer, sizeof buffer) == 0);
    BOOST_REQUIRE(::setsockopt(client.get(), SOL_SOCKET, SO_RCVBUF, &buffer, sizeof buffer) == 0);
    const auto message = random_bytes(200000, 3);
    send_message(client.get(), message);
    BOOST_TEST((receive_message(client.get()).value_or("") == message));
}

// A message within --buffer-size but longer than the daemon's socket send buffer (the kernel's
// default for a new socket) can never be sent back whole: the connection is closed, nothing of
// it is echoed, and the log says why.
BOOST_AUTO_TEST_CASE(a_message_longer_than_the_send_buffer_closes_the_connection_and_is_logged) {
    SeqpacketDaemon d({"--buffer-size", "1M"});
    const FileDescriptor client = connect_seqpacket(d.socket);
    int default_send_buffer = 0;
    socklen_t length = sizeof default_send_buffer;
    BOOST_REQUIRE(
        ::getsockopt(client.get(), SOL_SOCKET, SO_SNDBUF, &default_send_buffer, &length) == 0);
    const int buffer = 4 << 20;
    BOOST_REQUIRE(::setsockopt(client.get(), SOL_SOCKET, SO_SNDBUF, &buffer, sizeof buffer) == 0);
    BOOST_REQUIRE(::setsockopt(client.get(), SOL_SOCKET, SO_RCVBUF, &buffer, sizeof buffer) == 0);
    const auto size = static_cast<std::size_t>(default_send_buffer);
    BOOST_REQUIRE(size < (1u << 20));
    send_message(client.get(), "before");
    send_message(client.get(), random_bytes(size, 5));
    BOOST_TEST(receive_message(client.get()).value_or("") == "before");
    BOOST_TEST(!receive_message(client.get()).has_value());
    BOOST_TEST(wait_until(
                   [&] {
                       return contains(d.daemon.process.stderr_text(),
                                       "bytes is longer than its socket's send buffer");
                   },
                   5s),
               d.daemon.process.stderr_text());
}

BOOST_AUTO_TEST_CASE(after_a_half_close_everything_comes_back_then_the_end) {
    SeqpacketDaemon d;
    const FileDescriptor client = connect_seqpacket(d.socket);
    for (const char* message : {"one", "two", "three"})
        send_message(client.get(), message);
    shutdown_write(client.get());
    for (const char* message : {"one", "two", "three"})
        BOOST_TEST(receive_message(client.get()).value_or("") == message);
    BOOST_TEST(!receive_message(client.get()).has_value());
}

// A client that sends and never reads stalls its own connection only: the daemon holds one of
// its messages at most and keeps serving the others.
BOOST_AUTO_TEST_CASE(a_client_that_never_reads_does_not_stop_the_others) {
    SeqpacketDaemon d;
    const FileDescriptor silent = connect_seqpacket(d.socket);
    const auto message = std::string(60000, 's');
    // Sends while the socket takes more within 300 ms. A daemon that read on while it cannot send
    // back would take all 1000; one that holds one message stops taking them after the two
    // queues (about ten messages each, net.unix.max_dgram_qlen) and its one are full.
    std::size_t sent = 0;
    while (sent < 1000) {
        if (::send(silent.get(), message.data(), message.size(), MSG_NOSIGNAL | MSG_DONTWAIT) > 0) {
            ++sent;
            continue;
        }
        BOOST_REQUIRE(errno == EAGAIN);
        if (!wait_writable(silent.get(), 300ms))
            break;
    }
    BOOST_TEST(sent < 100u, sent << " messages taken from a client that never reads");
    const FileDescriptor other = connect_seqpacket(d.socket);
    for (int i = 0; i < 100; ++i) {
        send_message(other.get(), "other " + std::to_string(i));
        BOOST_REQUIRE(receive_message(other.get()).value_or("") == "other " + std::to_string(i));
    }
}

// Stream and seqpacket connections count together against --max-connections: at the limit the
// daemon stops accepting either kind, and a client waits in the backlog until one closes.
BOOST_AUTO_TEST_CASE(stream_and_seqpacket_connections_count_together) {
    SeqpacketDaemon d({"--max-connections", "2"});
    FileDescriptor stream = connect_unix(d.daemon.socket);
    write_all(stream.get(), "s");
    BOOST_REQUIRE(read_exact(stream.get(), 1) == "s");
    const FileDescriptor first = connect_seqpacket(d.socket);
    send_message(first.get(), "first");
    BOOST_REQUIRE(receive_message(first.get()).value_or("") == "first");

    const FileDescriptor waiting = connect_seqpacket(d.socket); // completed from the backlog
    send_message(waiting.get(), "waiting");
    BOOST_TEST(!wait_readable(waiting.get(), 500ms)); // not accepted: no echo yet
    stream.reset();
    BOOST_TEST(wait_readable(waiting.get(), 5s));
    BOOST_TEST(receive_message(waiting.get()).value_or("") == "waiting");
}

BOOST_AUTO_TEST_CASE(a_peer_not_in_the_allow_lists_is_closed_before_any_echo) {
    SeqpacketDaemon d({"--allow-uid", std::to_string(::getuid() == 0 ? 1 : 0)});
    const FileDescriptor client = connect_seqpacket(d.socket);
    ::send(client.get(), "refused", 7, MSG_NOSIGNAL);
    BOOST_TEST(!receive_message(client.get()).has_value());
    BOOST_TEST(wait_until(
        [&] {
            return contains(d.daemon.process.stderr_text(),
                            "refused: not in allow-uid or allow-gid");
        },
        5s));
}

BOOST_AUTO_TEST_CASE(an_idle_connection_is_closed_after_the_idle_timeout) {
    SeqpacketDaemon d({"--idle-timeout", "1"});
    const FileDescriptor client = connect_seqpacket(d.socket);
    send_message(client.get(), "once");
    BOOST_REQUIRE(receive_message(client.get()).value_or("") == "once");
    BOOST_TEST(peer_closed(client.get(), 5s));
}

BOOST_AUTO_TEST_CASE(a_seqpacket_listener_passed_by_socket_activation_is_served) {
    TempDir dir;
    const std::string path = dir.path() + "/activated.sock";
    FileDescriptor listener(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    sockaddr_un address{};
    const socklen_t length = make_address(path, address);
    BOOST_REQUIRE(::bind(listener.get(), reinterpret_cast<const sockaddr*>(&address), length) == 0);
    BOOST_REQUIRE(::listen(listener.get(), 16) == 0);
    DaemonOptions options;
    options.listen_fds = {listener.get()};
    options.pass_socket = false;
    options.wait_ready = false;
    Daemon daemon = start_daemon(dir, options);
    const FileDescriptor client = connect_seqpacket(path);
    send_message(client.get(), "activated");
    BOOST_TEST(receive_message(client.get()).value_or("") == "activated",
               daemon.process.stderr_text());
    BOOST_TEST(stop_daemon(daemon).exited_with(exit_ok));
}

// Accept=yes: one connected seqpacket socket, served until its end, then the daemon exits.
BOOST_AUTO_TEST_CASE(a_connected_seqpacket_socket_is_served_then_the_daemon_exits) {
    TempDir dir;
    int pair[2];
    BOOST_REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) == 0);
    FileDescriptor client(pair[0]);
    FileDescriptor passed(pair[1]);
    set_io_timeout(client.get(), 10s);
    DaemonOptions options;
    options.listen_fds = {passed.get()};
    options.pass_socket = false;
    options.wait_ready = false;
    Daemon daemon = start_daemon(dir, options);
    passed.reset();
    send_message(client.get(), "inetd");
    BOOST_TEST(receive_message(client.get()).value_or("") == "inetd", daemon.process.stderr_text());
    shutdown_write(client.get());
    BOOST_TEST(!receive_message(client.get()).has_value());
    const auto status = daemon.process.wait_for_exit(10s);
    BOOST_REQUIRE(status.has_value());
    BOOST_TEST(status->exited_with(exit_ok), *status);
}

BOOST_AUTO_TEST_CASE(the_client_echoes_through_the_seqpacket_socket) {
    SeqpacketDaemon d;
    check_every_client_form("seqpacket", d.socket, 1000000);

    const auto stream_at_seqpacket = run_client({"-s", d.socket, "hello"});
    BOOST_TEST(stream_at_seqpacket.status.exited_with(exit_unavailable), stream_at_seqpacket.err);
    BOOST_TEST(contains(stream_at_seqpacket.err, "is a seqpacket socket, not a stream one"),
               stream_at_seqpacket.err);
}
