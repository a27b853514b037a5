// The echo protocol (docs/protocol.md) against a real uds-echod over real sockets.
#define BOOST_TEST_MODULE integration_echo
#include <boost/test/unit_test.hpp>

#include "fixtures.hpp"
#include "process.hpp"

#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <latch>
#include <string>
#include <thread>
#include <vector>

using namespace uds_echo::test;

namespace {

constexpr std::size_t MiB = 1024 * 1024;

// The daemon's descriptor count once it stops changing: connections that just closed on the
// client side may still be open in the daemon for a moment.
std::size_t settled_fd_count(pid_t pid) {
    std::size_t previous = open_fd_count(pid);
    std::size_t current = previous;
    bool settled = wait_until(
        [&] {
            current = open_fd_count(pid);
            bool same = current == previous;
            previous = current;
            return same;
        },
        5s, 100ms);
    BOOST_REQUIRE_MESSAGE(settled, "fd count of uds-echod keeps changing");
    return current;
}

// The shared fixture, and what these tests ask of its daemon.
struct EchoFixture : DaemonFixture {
    // Worker event loops may create their descriptors (epoll, timerfd, eventfd) lazily, at their
    // first connection: serve enough simultaneous connections to wake every worker before a
    // baseline descriptor count is taken.
    void wake_every_worker() {
        std::vector<FileDescriptor> connections;
        for (int i = 0; i < 32; ++i)
            connections.push_back(connect_unix(daemon.socket));
        for (auto& fd : connections) {
            write_all(fd.get(), "w");
            BOOST_REQUIRE(read_exact(fd.get(), 1) == "w");
        }
    }

    // The descriptor count of the idle daemon after every worker has served a connection.
    std::size_t baseline_fd_count() {
        wake_every_worker();
        return settled_fd_count(daemon.process.pid());
    }

    void check_still_echoes() {
        const std::string probe = "still there?\n";
        BOOST_TEST(echo_through(daemon.socket, probe) == probe);
    }
};

// Writes with MSG_DONTWAIT until the socket buffer is full; returns the bytes written.
std::size_t fill_without_blocking(int fd, const std::string& chunk) {
    std::size_t written = 0;
    for (;;) {
        ssize_t n = ::send(fd, chunk.data(), chunk.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            written += static_cast<std::size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        return written;
    }
}

} // namespace

BOOST_FIXTURE_TEST_SUITE(echo, EchoFixture)

BOOST_AUTO_TEST_CASE(binary_data_with_nul_bytes_comes_back_unchanged) {
    std::string data;
    for (int round = 0; round < 4; ++round)
        for (int value = 0; value < 256; ++value)
            data += static_cast<char>(value);
    data += std::string(100, '\0');

    FileDescriptor fd = connect_unix(daemon.socket);
    write_all(fd.get(), data);
    std::string echoed = read_exact(fd.get(), data.size());
    check_same(echoed, data);

    // Nothing extra arrives: after the half-close only EOF.
    shutdown_write(fd.get());
    BOOST_TEST(read_until_eof(fd.get()).empty());
}

BOOST_AUTO_TEST_CASE(a_single_byte_comes_back) {
    FileDescriptor fd = connect_unix(daemon.socket);
    write_all(fd.get(), "x");
    BOOST_TEST(read_exact(fd.get(), 1) == "x");
    write_all(fd.get(), std::string(1, '\0'));
    BOOST_TEST(read_exact(fd.get(), 1) == std::string(1, '\0'));
    shutdown_write(fd.get());
    BOOST_TEST(read_until_eof(fd.get()).empty());
}

BOOST_AUTO_TEST_CASE(every_message_size_around_the_read_buffer) {
    // Every session of a worker reads into the worker's one read buffer (--buffer-size): a read
    // that fills it reads on at once, a shorter one lets the other sessions run first. With the
    // smallest buffer, sizes on both sides of that edge and of twice it, one message at a time
    // on one connection, then each size alone followed by end of file (the read that fills the
    // buffer meets the end, or the one after it does).
    TempDir small_dir;
    Daemon small = start_daemon(small_dir, DaemonOptions::with_args({"--buffer-size", "512"}));
    FileDescriptor fd = connect_unix(small.socket);
    for (std::size_t size = 1; size <= 1100; ++size) {
        const std::string message = random_bytes(size, size);
        write_all(fd.get(), message);
        check_same(read_exact(fd.get(), size), message);
    }
    for (std::size_t size : {511u, 512u, 513u, 1023u, 1024u, 1025u}) {
        const std::string message = random_bytes(size, size + 1000);
        FileDescriptor single = connect_unix(small.socket);
        write_all(single.get(), message);
        shutdown_write(single.get());
        check_same(read_until_eof(single.get()), message);
    }
}

BOOST_AUTO_TEST_CASE(a_client_that_does_not_read_gets_its_own_bytes_while_others_are_served) {
    // Every session of a worker reads into the worker's one buffer. What a session cannot write
    // back to a client that does not read must be kept apart while it waits, or the next read of
    // another session overwrites it. One worker, so that both connections share the buffer.
    TempDir one_dir;
    Daemon one = start_daemon(one_dir, DaemonOptions::with_args({"--threads", "1"}));
    FileDescriptor stuck = connect_unix(one.socket);
    ChunkedWriter writer(stuck.get(), 4 * MiB, 4096);
    // The writer stalls once both directions are full: the daemon then holds the rest of a read
    // it could not write back.
    std::size_t previous = 0;
    const bool stalled = wait_until(
        [&] {
            const std::size_t now = writer.written();
            const bool same = now > 0 && now == previous;
            previous = now;
            return same;
        },
        10s, 100ms);
    BOOST_REQUIRE_MESSAGE(stalled, "the writer of the connection that does not read never stalled");

    FileDescriptor other = connect_unix(one.socket);
    // Messages as long as the read buffer (--buffer-size), so that they cover all of it.
    for (std::size_t i = 0; i < 50; ++i) {
        const std::string message = random_bytes(64 * 1024, 7000 + i);
        write_all(other.get(), message);
        check_same(read_exact(other.get(), message.size()), message);
    }

    const std::string echoed = read_until_eof(stuck.get());
    const std::string writer_error = writer.join();
    BOOST_TEST(writer_error.empty(), writer_error);
    const auto wrong = writer.first_wrong_chunk(echoed);
    BOOST_TEST(!wrong.has_value(), "the echo differs in the chunk at byte " << wrong.value_or(0));
}

BOOST_AUTO_TEST_CASE(sixteen_mib_on_one_connection) {
    const std::string data = random_bytes(16 * MiB, 16);
    check_same(echo_through(daemon.socket, data), data);
}

BOOST_AUTO_TEST_CASE(two_hundred_concurrent_clients_get_their_own_data) {
    constexpr std::size_t clients = 200;
    constexpr std::size_t size = 64 * 1024;
    std::size_t baseline = baseline_fd_count();

    // All connections are open at the same time before anyone sends.
    std::vector<FileDescriptor> connections;
    for (std::size_t i = 0; i < clients; ++i)
        connections.push_back(connect_unix(daemon.socket));

    std::vector<std::string> failures(clients);
    std::latch start(clients);
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < clients; ++i) {
        threads.emplace_back([&, i] {
            const std::string data = random_bytes(size, 1000 + i);
            int fd = connections[i].get();
            start.arrive_and_wait();
            try {
                std::thread writer([&] {
                    try {
                        write_all(fd, data);
                        shutdown_write(fd);
                    } catch (...) {
                        ::shutdown(fd, SHUT_RDWR);
                    }
                });
                std::string echoed;
                try {
                    echoed = read_until_eof(fd);
                } catch (...) {
                    ::shutdown(fd, SHUT_RDWR);
                    writer.join();
                    throw;
                }
                writer.join();
                if (echoed != data)
                    failures[i] = "client " + std::to_string(i) + ": got " +
                                  std::to_string(echoed.size()) + " bytes, not its own " +
                                  std::to_string(size);
            } catch (const std::exception& error) {
                failures[i] = "client " + std::to_string(i) + ": " + error.what();
            }
        });
    }
    for (auto& thread : threads)
        thread.join();
    for (const auto& failure : failures)
        BOOST_TEST(failure.empty(), failure);

    connections.clear();
    pid_t pid = daemon.process.pid();
    BOOST_TEST(wait_until([&] { return open_fd_count(pid) <= baseline; }, 10s),
               "daemon fds: " << open_fd_count(pid) << ", baseline " << baseline);
    check_still_echoes();
}

BOOST_AUTO_TEST_CASE(half_close_returns_everything_then_eof) {
    const std::string data = random_bytes(64 * 1024, 7);
    FileDescriptor fd = connect_unix(daemon.socket);
    write_all(fd.get(), data);
    shutdown_write(fd.get());
    check_same(read_until_eof(fd.get()), data);
}

BOOST_AUTO_TEST_CASE(half_close_without_data_gives_eof) {
    FileDescriptor fd = connect_unix(daemon.socket);
    shutdown_write(fd.get());
    BOOST_TEST(read_until_eof(fd.get()).empty());
}

BOOST_AUTO_TEST_CASE(half_close_after_partial_reads) {
    // The client reads some of the echo, then half-closes with more still in flight.
    const std::string data = random_bytes(256 * 1024, 8);
    FileDescriptor fd = connect_unix(daemon.socket);
    write_all(fd.get(), std::string_view(data).substr(0, 1000));
    std::string echoed = read_exact(fd.get(), 1000);
    std::thread writer([&] {
        write_all(fd.get(), std::string_view(data).substr(1000));
        shutdown_write(fd.get());
    });
    echoed += read_until_eof(fd.get());
    writer.join();
    check_same(echoed, data);
}

BOOST_AUTO_TEST_CASE(a_client_that_does_not_read_is_slowed_not_buffered) {
    constexpr std::size_t total = 64 * MiB;
    constexpr std::size_t chunk_size = 64 * 1024;
    check_still_echoes(); // warm up: the first session's allocations are part of the baseline
    pid_t pid = daemon.process.pid();
    std::size_t rss_before = resident_bytes(pid);

    FileDescriptor fd = connect_unix(daemon.socket, 120s);
    ChunkedWriter writer(fd.get(), total, chunk_size);

    // The writer must stall: nothing is read, so the daemon can only stop reading. The count of
    // written bytes stops moving long before 64 MiB.
    std::size_t previous = writer.written();
    std::size_t max_rss = rss_before;
    bool stalled = wait_until(
        [&] {
            max_rss = std::max(max_rss, resident_bytes(pid));
            std::size_t now = writer.written();
            bool same = now == previous && now > 0;
            previous = now;
            return same;
        },
        20s, 250ms);
    std::size_t stalled_at = writer.written();
    max_rss = std::max(max_rss, resident_bytes(pid));
    BOOST_TEST(stalled, "the writer never stalled; written " << writer.written());
    BOOST_TEST(stalled_at < 16 * MiB, "the daemon accepted " << stalled_at
                                                             << " bytes from a client that reads "
                                                                "nothing");
    BOOST_TEST(max_rss - rss_before < 16 * MiB,
               "daemon RSS grew from " << rss_before << " to " << max_rss);

    // Now read: everything comes back, identical, and the daemon dropped nothing.
    std::string echoed;
    std::string read_error;
    try {
        echoed = read_until_eof(fd.get());
    } catch (const std::exception& error) {
        read_error = error.what();
        ::shutdown(fd.get(), SHUT_RDWR);
    }
    const std::string writer_error = writer.join();
    BOOST_TEST(writer_error.empty(), writer_error);
    BOOST_TEST(read_error.empty(), read_error);
    const auto wrong = writer.first_wrong_chunk(echoed);
    BOOST_TEST(!wrong.has_value(), "echo differs in the chunk at offset "
                                       << wrong.value_or(0) << " (got " << echoed.size()
                                       << " bytes)");
    check_still_echoes();
}

BOOST_AUTO_TEST_CASE(clients_resetting_mid_transfer_leave_nothing_behind) {
    pid_t pid = daemon.process.pid();
    std::size_t baseline = baseline_fd_count();
    const std::string chunk = random_bytes(64 * 1024, 3);

    for (int round = 0; round < 150; ++round) {
        FileDescriptor fd = connect_unix(daemon.socket);
        switch (round % 3) {
        case 0: // reset right after sending: the daemon is reading or echoing
            write_all(fd.get(), std::string_view(chunk).substr(0, 4096));
            break;
        case 1: // reset after part of the echo came back: more is still in flight
            write_all(fd.get(), chunk);
            read_exact(fd.get(), 1000);
            break;
        case 2: // reset while the daemon is stuck writing to a full socket
            fill_without_blocking(fd.get(), chunk);
            break;
        }
        close_with_reset(fd);
    }

    BOOST_TEST(wait_until([&] { return open_fd_count(pid) <= baseline; }, 10s),
               "daemon fds: " << open_fd_count(pid) << ", baseline " << baseline);
    check_still_echoes();
    const std::string data = random_bytes(1 * MiB, 4);
    check_same(echo_through(daemon.socket, data), data);
}

BOOST_AUTO_TEST_CASE(many_sequential_connections_do_not_leak) {
    pid_t pid = daemon.process.pid();
    std::size_t baseline = baseline_fd_count();
    for (int i = 0; i < 300; ++i) {
        const std::string data = "connection " + std::to_string(i);
        BOOST_REQUIRE(echo_through(daemon.socket, data) == data);
    }
    BOOST_TEST(wait_until([&] { return open_fd_count(pid) <= baseline; }, 10s),
               "daemon fds: " << open_fd_count(pid) << ", baseline " << baseline);
}

BOOST_AUTO_TEST_SUITE_END()

// With several workers the first accepts and hands each connection to the worker with the fewest
// open sessions (docs/architecture.md): held open together, connections spread over all of them,
// each echoes, and a stop with connections on every worker drains them all.
BOOST_AUTO_TEST_CASE(connections_spread_over_every_worker_and_drain_from_all) {
    TempDir dir;
    Daemon daemon =
        start_daemon(dir, DaemonOptions::with_args({"--threads", "3", "--log-level", "debug"}));
    std::vector<FileDescriptor> connections;
    for (int i = 0; i < 30; ++i) {
        connections.push_back(connect_unix(daemon.socket));
        write_all(connections.back().get(), "x");
        BOOST_REQUIRE(read_exact(connections.back().get(), 1) == "x");
    }
    const std::string log = daemon.process.stderr_text();
    for (int worker = 0; worker < 3; ++worker) {
        std::size_t served = 0;
        for (const auto& line : non_empty_lines(log))
            served += contains(line, " accepted by worker " + std::to_string(worker)) ? 1 : 0;
        // The readiness probe comes first; then 30 connections held open: 10 each, give or take
        // a count read a moment before it changed.
        BOOST_TEST(served >= 8u, "worker " << worker << " accepted " << served << "; " << log);
    }
    daemon.process.signal(SIGTERM);
    BOOST_REQUIRE(
        wait_until([&] { return contains(daemon.process.stderr_text(), "draining 30"); }, 10s));
    for (auto& fd : connections) {
        write_all(fd.get(), "last");
        shutdown_write(fd.get());
        BOOST_TEST(read_until_eof(fd.get()) == "last");
    }
    const auto status = daemon.process.wait_for_exit(10s);
    BOOST_REQUIRE(status.has_value());
    BOOST_TEST(status->exited_with(0), *status << "; stderr: " << daemon.process.stderr_text());
}
