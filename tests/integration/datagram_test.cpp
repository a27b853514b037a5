// uds-echod's datagram socket (uds-echod(8), DATAGRAMS; docs/protocol.md): every datagram back
// whole to its abstract sender, nothing for unbound or path-bound senders (the symlink attack
// among them), over-long datagrams dropped and counted, a flooding sender never stopping the
// others, the allow lists per datagram, and the socket passed by socket activation.
#define BOOST_TEST_MODULE integration_datagram
#include <boost/test/unit_test.hpp>

#include "fixtures.hpp"
#include "process.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

using namespace uds_echo::test;
namespace utf = boost::unit_test;

namespace {

// A datagram socket: autobound (an abstract name the kernel picks), bound to `path`, or unbound.
enum class Bind { autobind, none };
FileDescriptor datagram_socket(Bind bind = Bind::autobind) {
    FileDescriptor fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    BOOST_REQUIRE(fd.get() >= 0);
    if (bind == Bind::autobind) {
        const sa_family_t family = AF_UNIX;
        BOOST_REQUIRE(::bind(fd.get(), reinterpret_cast<const sockaddr*>(&family), sizeof family) ==
                      0);
    }
    return fd;
}

// sendto(); the errno, 0 on success.
int send_to(int fd, const std::string& path, std::string_view data, int flags = 0) {
    sockaddr_un address{};
    const socklen_t length = make_address(path, address);
    return ::sendto(fd, data.data(), data.size(), flags | MSG_NOSIGNAL,
                    reinterpret_cast<const sockaddr*>(&address), length) < 0
               ? errno
               : 0;
}

// The next datagram within `timeout`, whole (up to 1 MiB); nullopt when none came.
std::optional<std::string> receive(int fd, std::chrono::milliseconds timeout = 2s) {
    if (!wait_readable(fd, timeout))
        return std::nullopt;
    std::string buffer(1 << 20, '\0');
    const auto length = ::recv(fd, buffer.data(), buffer.size(), MSG_DONTWAIT);
    if (length < 0)
        return std::nullopt;
    buffer.resize(static_cast<std::size_t>(length));
    return buffer;
}

struct DatagramDaemon {
    TempDir dir;
    std::string socket = dir.path() + "/d.sock";
    Daemon daemon;

    explicit DatagramDaemon(std::vector<std::string> extra = {})
        : daemon(start(extra)) {}

    Daemon start(std::vector<std::string> extra) {
        extra.insert(extra.begin(), {"--datagram-socket", socket});
        return start_daemon(dir, DaemonOptions::with_args(std::move(extra)));
    }

    // The statistics line SIGUSR1 logs, once it holds `part`. Asked for again while waiting:
    // the datagram thread may count after the control thread has logged.
    std::string statistics_with(const std::string& part) {
        std::string line;
        wait_until(
            [&] {
                daemon.process.signal(SIGUSR1);
                for (const auto& candidate : non_empty_lines(daemon.process.stderr_text()))
                    if (contains(candidate, "statistics:") && contains(candidate, part))
                        line = candidate;
                return !line.empty();
            },
            5s, 100ms);
        return line;
    }
};

} // namespace

BOOST_AUTO_TEST_CASE(every_datagram_comes_back_whole_to_its_autobound_sender) {
    DatagramDaemon d;
    const FileDescriptor client = datagram_socket();
    for (const std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{100},
                                   std::size_t{4096}, std::size_t{65536}}) {
        const auto data = random_bytes(size, size);
        BOOST_REQUIRE_EQUAL(send_to(client.get(), d.socket, data), 0);
        const auto echo = receive(client.get());
        BOOST_REQUIRE_MESSAGE(echo.has_value(), "no echo of " << size << " bytes");
        BOOST_TEST(echo->size() == size);
        BOOST_TEST((*echo == data));
    }
    BOOST_TEST(!d.statistics_with("5 datagram(s) answered").empty());
}

// Eight in flight: a receive queue holds net.unix.max_dgram_qlen datagrams (10 by default), and
// a reply beyond that would be dropped.
BOOST_AUTO_TEST_CASE(pipelined_datagrams_come_back_in_order) {
    DatagramDaemon d;
    const FileDescriptor client = datagram_socket();
    for (int round = 0; round < 10; ++round) {
        for (int i = 0; i < 8; ++i)
            BOOST_REQUIRE_EQUAL(send_to(client.get(), d.socket, std::to_string(round * 8 + i)), 0);
        for (int i = 0; i < 8; ++i)
            BOOST_REQUIRE(receive(client.get()).value_or("") == std::to_string(round * 8 + i));
    }
}

BOOST_AUTO_TEST_CASE(an_over_long_datagram_is_dropped_and_counted_never_cut) {
    DatagramDaemon d; // --buffer-size 65536: datagrams up to 64 KiB
    const FileDescriptor client = datagram_socket();
    const int send_buffer = 1 << 20;
    BOOST_REQUIRE(
        ::setsockopt(client.get(), SOL_SOCKET, SO_SNDBUF, &send_buffer, sizeof send_buffer) == 0);
    BOOST_REQUIRE_EQUAL(send_to(client.get(), d.socket, std::string(65537, 'x')), 0);
    BOOST_TEST(!receive(client.get(), 500ms).has_value());
    BOOST_TEST(!d.statistics_with("1 too long").empty());
    // The next one is answered.
    BOOST_REQUIRE_EQUAL(send_to(client.get(), d.socket, "after"), 0);
    BOOST_TEST(receive(client.get()).value_or("") == "after");
}

BOOST_AUTO_TEST_CASE(unbound_and_path_bound_senders_get_nothing) {
    DatagramDaemon d;
    const FileDescriptor unbound = datagram_socket(Bind::none);
    BOOST_REQUIRE_EQUAL(send_to(unbound.get(), d.socket, "unbound"), 0);
    const FileDescriptor path_bound = bind_unix(d.dir.path() + "/client.sock", SOCK_DGRAM);
    BOOST_REQUIRE_EQUAL(send_to(path_bound.get(), d.socket, "path"), 0);
    BOOST_TEST(!receive(path_bound.get(), 500ms).has_value());
    BOOST_TEST(!d.statistics_with("2 without an abstract sender address").empty());
}

// The attack the abstract-only rule stops: a sender binds a path, sends, and replaces its path by
// a symbolic link to another socket before the daemon answers; sendto() would follow the link and
// deliver the daemon's datagram (with the daemon's credentials) there. The daemon is stopped
// (SIGSTOP) while the link is put in place, so that the reply comes after it for certain.
BOOST_AUTO_TEST_CASE(a_sender_that_swaps_its_path_for_a_symlink_cannot_aim_the_reply) {
    DatagramDaemon d;
    const std::string victim_path = d.dir.path() + "/victim.sock";
    const FileDescriptor victim = bind_unix(victim_path, SOCK_DGRAM);
    const std::string sender_path = d.dir.path() + "/sender.sock";
    const FileDescriptor sender = bind_unix(sender_path, SOCK_DGRAM);

    d.daemon.process.signal(SIGSTOP);
    BOOST_REQUIRE_EQUAL(send_to(sender.get(), d.socket, "aimed at the victim"), 0);
    BOOST_REQUIRE(::unlink(sender_path.c_str()) == 0);
    BOOST_REQUIRE(::symlink(victim_path.c_str(), sender_path.c_str()) == 0);
    d.daemon.process.signal(SIGCONT);

    BOOST_TEST(!d.statistics_with("1 without an abstract sender address").empty());
    BOOST_TEST(!receive(victim.get(), 500ms).has_value());
}

BOOST_AUTO_TEST_CASE(a_sender_that_never_reads_does_not_stop_the_others_being_answered) {
    DatagramDaemon d;
    const FileDescriptor flooder = datagram_socket();
    const FileDescriptor other = datagram_socket();
    // The flooder's receive queue fills up with replies it never reads; each reply beyond is
    // dropped instead of waited for.
    int sent = 0;
    for (int i = 0; i < 5000; ++i)
        if (send_to(flooder.get(), d.socket, std::string(1000, 'f'), MSG_DONTWAIT) == 0)
            ++sent;
    for (int i = 0; i < 200; ++i) {
        const auto data = "other " + std::to_string(i);
        BOOST_REQUIRE_EQUAL(send_to(other.get(), d.socket, data), 0);
        BOOST_REQUIRE_MESSAGE(receive(other.get()).value_or("") == data, "round trip " << i);
    }
    BOOST_TEST_MESSAGE("flooder sent " << sent);
    const auto line = d.statistics_with("replies dropped");
    BOOST_TEST(!contains(line, " 0 replies dropped"), line);
}

BOOST_AUTO_TEST_CASE(a_sender_not_in_the_allow_lists_is_refused_and_logged) {
    DatagramDaemon d({"--allow-uid", std::to_string(::getuid() == 0 ? 1 : 0)});
    const FileDescriptor client = datagram_socket();
    BOOST_REQUIRE_EQUAL(send_to(client.get(), d.socket, "refused"), 0);
    BOOST_TEST(!receive(client.get(), 500ms).has_value());
    BOOST_TEST(wait_until(
        [&] {
            return contains(d.daemon.process.stderr_text(),
                            "datagram 1 (pid " + std::to_string(::getpid())) &&
                   contains(d.daemon.process.stderr_text(),
                            "refused: not in allow-uid or allow-gid");
        },
        5s));
}

// An abstract name has no file permissions: without an allow list, the daemon says so at start.
BOOST_AUTO_TEST_CASE(an_abstract_datagram_socket_without_allow_list_is_warned_about) {
    TempDir dir;
    const std::string name = "@uds-echo-datagram-test-" + std::to_string(::getpid());
    Daemon daemon = start_daemon(dir, DaemonOptions::with_args({"--datagram-socket", name}));
    BOOST_TEST(wait_until(
        [&] {
            return contains(daemon.process.stderr_text(),
                            "the abstract socket " + name + " has no file permissions");
        },
        5s));
    BOOST_TEST(stop_daemon(daemon).exited_with(exit_ok));
}

BOOST_AUTO_TEST_CASE(a_sender_in_the_allow_lists_is_answered) {
    DatagramDaemon d({"--allow-uid", std::to_string(::getuid())});
    const FileDescriptor client = datagram_socket();
    BOOST_REQUIRE_EQUAL(send_to(client.get(), d.socket, "allowed"), 0);
    BOOST_TEST(receive(client.get()).value_or("") == "allowed");
}

// A datagram queued while neither socket passed credentials carries the kernel's overflow ids
// (uid 65534) and pid 0; an allow list naming 65534 must not let it pass.
BOOST_AUTO_TEST_CASE(a_datagram_without_credentials_never_passes_as_the_overflow_uid) {
    TempDir dir;
    const std::string path = dir.path() + "/passed.sock";
    const FileDescriptor passed =
        bind_unix(path, SOCK_DGRAM); // no SO_PASSCRED, as a unit without PassCredentials=
    const FileDescriptor client = datagram_socket();
    BOOST_REQUIRE_EQUAL(send_to(client.get(), path, "queued before"), 0);

    DaemonOptions options = DaemonOptions::with_args({"--allow-uid", "65534"});
    options.listen_fds = {passed.get()};
    options.pass_socket = false;
    options.wait_ready = false;
    Daemon daemon = start_daemon(dir, options);
    BOOST_TEST(!receive(client.get(), 1s).has_value());
    BOOST_TEST(wait_until(
                   [&] {
                       return contains(daemon.process.stderr_text(),
                                       "refused: it carries no credentials");
                   },
                   5s),
               daemon.process.stderr_text());
    stop_daemon(daemon);
}

BOOST_AUTO_TEST_CASE(a_datagram_socket_passed_by_socket_activation_is_served) {
    TempDir dir;
    const std::string path = dir.path() + "/activated.sock";
    const FileDescriptor passed = bind_unix(path, SOCK_DGRAM);
    DaemonOptions options;
    options.listen_fds = {passed.get()};
    options.pass_socket = false;
    options.wait_ready = false;
    Daemon daemon = start_daemon(dir, options);
    const FileDescriptor client = datagram_socket();
    BOOST_REQUIRE_EQUAL(send_to(client.get(), path, "activated"), 0);
    BOOST_TEST(receive(client.get(), 5s).value_or("") == "activated", daemon.process.stderr_text());
    BOOST_TEST(stop_daemon(daemon).exited_with(exit_ok));
    BOOST_TEST(is_socket_file(path)); // systemd's file: never removed by the daemon
}

namespace {

// The daemon given `fds` by socket activation exits 78 and says `why`.
void passing_is_a_configuration_error(const std::vector<int>& fds, const std::string& why) {
    TempDir dir;
    DaemonOptions options;
    options.listen_fds = fds;
    options.pass_socket = false;
    options.wait_ready = false;
    Daemon daemon = start_daemon(dir, options);
    const auto status = daemon.process.wait_for_exit(10s);
    BOOST_REQUIRE(status.has_value());
    BOOST_TEST(status->exited_with(exit_config), *status);
    BOOST_TEST(contains(daemon.process.stderr_text(), why), daemon.process.stderr_text());
}

} // namespace

BOOST_AUTO_TEST_CASE(a_passed_socket_of_a_kind_not_served_is_a_configuration_error) {
    const FileDescriptor udp(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    passing_is_a_configuration_error({udp.get()}, "is not an AF_UNIX socket");
    int pipe_ends[2];
    BOOST_REQUIRE(::pipe2(pipe_ends, O_CLOEXEC) == 0);
    const FileDescriptor pipe_read(pipe_ends[0]);
    const FileDescriptor pipe_write(pipe_ends[1]);
    passing_is_a_configuration_error({pipe_read.get()}, "is not an AF_UNIX socket");
}

BOOST_AUTO_TEST_CASE(two_passed_sockets_of_one_type_are_a_configuration_error) {
    TempDir dir;
    const FileDescriptor first = bind_unix(dir.path() + "/one.sock", SOCK_DGRAM);
    const FileDescriptor second = bind_unix(dir.path() + "/two.sock", SOCK_DGRAM);
    passing_is_a_configuration_error({first.get(), second.get()}, "more than one datagram socket");
}

BOOST_AUTO_TEST_CASE(the_client_echoes_through_the_datagram_socket) {
    DatagramDaemon d;
    check_every_client_form("datagram", d.socket, 300000);
}

BOOST_AUTO_TEST_CASE(a_client_of_one_type_is_told_the_type_of_the_socket) {
    DatagramDaemon d;
    const auto stream_at_datagram = run_client({"-s", d.socket, "hello"});
    BOOST_TEST(stream_at_datagram.status.exited_with(exit_unavailable), stream_at_datagram.err);
    BOOST_TEST(contains(stream_at_datagram.err, "is a datagram socket, not a stream one"),
               stream_at_datagram.err);
    const auto datagram_at_stream =
        run_client({"--type", "datagram", "-s", d.daemon.socket, "hello"});
    BOOST_TEST(datagram_at_stream.status.exited_with(exit_unavailable), datagram_at_stream.err);
    BOOST_TEST(contains(datagram_at_stream.err, "use --type stream"), datagram_at_stream.err);
}
