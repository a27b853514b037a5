// uds-echod limits (uds-echod(8)): --max-connections keeps extra clients waiting in the
// backlog, --idle-timeout closes only idle connections, descriptor exhaustion is survived without a
// busy loop, and memory stays bounded per connection and returns after many connections.
#define BOOST_TEST_MODULE integration_limits
#include <boost/test/unit_test.hpp>

#include "process.hpp"

#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace uds_echo::test;

namespace {

constexpr std::size_t MiB = 1024 * 1024;

// The tests open hundreds of sockets at once: use the whole hard limit.
BOOST_TEST_GLOBAL_FIXTURE(RaiseDescriptorLimit);

// User plus system CPU time of a process, in clock ticks (/proc/PID/stat fields 14 and 15).
long cpu_ticks(pid_t pid) {
    const std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
    // The command name (field 2) is in parentheses and may contain spaces: parse after it.
    const auto close = stat.rfind(')');
    if (close == std::string::npos)
        throw std::runtime_error("unexpected /proc/PID/stat: " + stat);
    std::istringstream fields(stat.substr(close + 2));
    std::vector<std::string> values;
    std::string value;
    while (fields >> value)
        values.push_back(value);
    // values[0] is field 3 (state): utime is field 14, stime field 15.
    if (values.size() < 13)
        throw std::runtime_error("short /proc/PID/stat: " + stat);
    return std::stol(values[11]) + std::stol(values[12]);
}

// Sends `message` and says whether its echo arrives within `timeout` (without throwing).
bool echoed_within(int fd, const std::string& message, std::chrono::milliseconds timeout) {
    if (::send(fd, message.data(), message.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(message.size()))
        return false;
    std::string got;
    auto deadline = Clock::now() + timeout;
    while (got.size() < message.size()) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left <= 0ms || !wait_readable(fd, left))
            return false;
        char buffer[256];
        ssize_t n = ::recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
        if (n <= 0)
            return false;
        got.append(buffer, static_cast<std::size_t>(n));
    }
    return got == message;
}

// Reads whatever is available within `timeout` into `got`; false on EOF or error (a reset).
bool collect(int fd, std::string& got, std::chrono::milliseconds timeout) {
    if (!wait_readable(fd, timeout))
        return true;
    char buffer[256];
    ssize_t n = ::recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
    if (n > 0) {
        got.append(buffer, static_cast<std::size_t>(n));
        return true;
    }
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

} // namespace

BOOST_AUTO_TEST_CASE(max_connections_keeps_extra_clients_waiting_then_serves_them) {
    constexpr std::size_t limit = 8;
    TempDir dir;
    Daemon daemon = start_daemon(
        dir,
        DaemonOptions::with_args({"--max-connections", std::to_string(limit), "--threads", "2"}));

    // N clients are served (the readiness probe may still hold a slot for a moment).
    std::vector<FileDescriptor> served;
    for (std::size_t i = 0; i < limit; ++i) {
        served.push_back(connect_unix(daemon.socket, 10s));
        BOOST_REQUIRE_MESSAGE(echoed_within(served.back().get(), "served " + std::to_string(i), 5s),
                              "client " << i << " of the first " << limit << " was not served");
    }

    // Five more connect (the kernel queues them) and send, but get nothing back: no slot.
    std::vector<FileDescriptor> waiting;
    std::vector<std::string> received(5);
    for (std::size_t i = 0; i < 5; ++i) {
        auto fd = connect_unix_within(daemon.socket, 5s);
        BOOST_REQUIRE_MESSAGE(fd.has_value(), "waiting client " << i << " could not connect");
        write_all(fd->get(), "w" + std::to_string(i));
        waiting.push_back(std::move(*fd));
    }
    // Give the daemon time to (wrongly) serve them; they must stay unanswered and open.
    auto quiet_until = Clock::now() + 500ms;
    while (Clock::now() < quiet_until) {
        for (std::size_t i = 0; i < waiting.size(); ++i)
            BOOST_REQUIRE_MESSAGE(collect(waiting[i].get(), received[i], 20ms),
                                  "waiting client " << i << " was closed or reset");
    }
    for (std::size_t i = 0; i < waiting.size(); ++i)
        BOOST_TEST(received[i].empty(), "client " << i << " beyond the limit was served");
    // The served ones still work.
    BOOST_TEST(echoed_within(served.front().get(), "still", 2s));

    // Two slots free: exactly two of the waiting clients are served, in connect order.
    served.erase(served.begin(), served.begin() + 2);
    auto served_count = [&] {
        std::size_t count = 0;
        for (std::size_t i = 0; i < waiting.size(); ++i) {
            if (!collect(waiting[i].get(), received[i], 0ms))
                throw std::runtime_error("waiting client " + std::to_string(i) + " was reset");
            count += received[i] == "w" + std::to_string(i) ? 1 : 0;
        }
        return count;
    };
    BOOST_TEST(wait_until([&] { return served_count() >= 2; }, 5s),
               "freed slots were not given to waiting clients");
    // And not more than two, even after a while.
    BOOST_TEST(!wait_until([&] { return served_count() > 2; }, 500ms, 20ms),
               "more clients served than free slots");

    // All slots free: every waiting client is served, none was reset.
    served.clear();
    BOOST_TEST(wait_until([&] { return served_count() == waiting.size(); }, 5s),
               "waiting clients not all served after the slots freed");
    for (std::size_t i = 0; i < waiting.size(); ++i) {
        BOOST_TEST(echoed_within(waiting[i].get(), "more", 2s), "client " << i);
        shutdown_write(waiting[i].get());
        BOOST_TEST(read_until_eof(waiting[i].get()).empty());
    }
    BOOST_TEST(stop_daemon(daemon).exited_with(0));
}

BOOST_AUTO_TEST_CASE(idle_timeout_closes_only_idle_connections) {
    TempDir dir;
    Daemon daemon = start_daemon(dir, DaemonOptions::with_args({"--idle-timeout", "1"}));

    FileDescriptor idle = connect_unix(daemon.socket, 10s);
    BOOST_REQUIRE(echoed_within(idle.get(), "then silence", 2s));
    auto idle_since = Clock::now();

    FileDescriptor active = connect_unix(daemon.socket, 10s);
    std::atomic<bool> stop{false};
    std::atomic<int> rounds{0};
    std::string active_error; // read by this thread only after `failed` is set or chatter ended
    std::atomic<bool> failed{false};
    std::thread chatter([&] {
        while (!stop) {
            if (!echoed_within(active.get(), "tick", 2s)) {
                active_error = "the active connection lost its echo after " +
                               std::to_string(rounds.load()) + " rounds";
                failed = true;
                return;
            }
            ++rounds;
            auto next = Clock::now() + 300ms;
            while (!stop && Clock::now() < next)
                std::this_thread::sleep_for(10ms);
        }
    });

    // The idle one is closed, after at least the timeout and not much later than two sweeps.
    BOOST_TEST(peer_closed(idle.get(), 4s), "the idle connection was not closed");
    auto idle_for = Clock::now() - idle_since;
    BOOST_TEST((idle_for >= 900ms),
               "closed after only "
                   << std::chrono::duration_cast<std::chrono::milliseconds>(idle_for).count()
                   << " ms idle");

    // The active one survives several timeouts' worth of time.
    BOOST_TEST(wait_until([&] { return rounds >= 10 || failed; }, 10s));
    stop = true;
    chatter.join();
    BOOST_TEST(active_error.empty(), active_error);
    BOOST_TEST(rounds >= 10);

    // A connection that never sent anything is idle too.
    FileDescriptor silent = connect_unix(daemon.socket, 10s);
    BOOST_TEST(peer_closed(silent.get(), 4s), "a silent connection was not closed");
    BOOST_TEST(stop_daemon(daemon).exited_with(0));
}

// Every connection is a descriptor: the daemon raises its soft limit to the hard one before it
// takes anything passed to it, and says the limit it serves with.
BOOST_AUTO_TEST_CASE(the_soft_descriptor_limit_is_raised_to_the_hard_one) {
    TempDir dir;
    DaemonOptions options;
    options.wrapper = {"/usr/bin/prlimit", "--nofile=100:4096"};
    Daemon daemon = start_daemon(dir, options);
    BOOST_TEST(contains(daemon.process.stderr_text(), "(descriptor limit 4096)"),
               daemon.process.stderr_text());
    BOOST_TEST(stop_daemon(daemon).exited_with(0));
}

BOOST_AUTO_TEST_CASE(descriptor_exhaustion_backs_off_logs_once_and_recovers) {
    TempDir dir;
    const std::string socket = dir.file("s.sock");
    ProcessOptions options;
    // The daemon raises its soft limit to the hard one: limit both.
    options.argv = {"/usr/bin/prlimit",
                    "--nofile=64:64",
                    daemon_binary(),
                    "--socket",
                    socket,
                    "--config",
                    dir.write_file("empty.conf", ""),
                    "--threads",
                    "1"};
    options.environment = clean_daemon_environment();
    Process process(options);
    BOOST_REQUIRE_MESSAGE(
        wait_until([&] { return !process.running() || daemon_answers(socket); }, 10s),
        "not serving; stderr: " << process.stderr_text());
    BOOST_REQUIRE_MESSAGE(process.running(), "stderr: " << process.stderr_text());
    const pid_t pid = process.pid();

    // Lines about failing to accept for want of descriptors (not the start-up line that states
    // the descriptor limit).
    auto exhaustion_lines = [&] {
        std::size_t count = 0;
        for (const auto& line : non_empty_lines(process.stderr_text())) {
            const auto low = lower(line);
            const bool about_accept = low.find("accept") != std::string::npos;
            const bool about_descriptors = low.find("too many open files") != std::string::npos ||
                                           low.find("emfile") != std::string::npos ||
                                           low.find("out of descriptors") != std::string::npos;
            count += about_accept && about_descriptors ? 1 : 0;
        }
        return count;
    };

    // Connect until the daemon cannot take more: the kernel still completes connects from the
    // backlog, but the later clients get no echo.
    std::vector<FileDescriptor> clients;
    std::size_t served = 0;
    for (int i = 0; i < 100 && clients.size() == served; ++i) {
        auto fd = connect_unix_within(socket, 5s);
        BOOST_REQUIRE(fd.has_value());
        if (echoed_within(fd->get(), "x", 500ms))
            ++served;
        clients.push_back(std::move(*fd));
    }
    BOOST_REQUIRE_MESSAGE(clients.size() > served, "never ran out of descriptors");
    BOOST_TEST_MESSAGE("descriptors ran out after " << served << " connections");
    // A few more wait in the backlog.
    for (int i = 0; i < 5; ++i) {
        auto fd = connect_unix_within(socket, 5s);
        BOOST_REQUIRE(fd.has_value());
        write_all(fd->get(), "x");
        clients.push_back(std::move(*fd));
    }

    BOOST_REQUIRE_MESSAGE(wait_until([&] { return exhaustion_lines() >= 1; }, 5s),
                          "exhaustion not logged; stderr: " << process.stderr_text());

    // While exhausted for 1.5 s the daemon must rest, not spin on the readable listener.
    const long ticks_before = cpu_ticks(pid);
    const auto measured_from = Clock::now();
    while (Clock::now() - measured_from < 1500ms) {
        BOOST_REQUIRE(process.running());
        std::this_thread::sleep_for(50ms);
    }
    const long used = cpu_ticks(pid) - ticks_before;
    const long ticks_per_second = ::sysconf(_SC_CLK_TCK);
    BOOST_TEST(used * 10 < ticks_per_second * 3,
               "daemon used " << used << " ticks (of " << ticks_per_second
                              << "/s) in 1.5 s while out of descriptors: a busy loop");
    BOOST_TEST(exhaustion_lines() == 1u,
               "exhaustion logged more than once per episode; stderr: " << process.stderr_text());
    // It still serves those it has.
    BOOST_TEST(echoed_within(clients.front().get(), "alive", 2s));

    // Close the served connections: the daemon resumes by itself and serves the waiting ones.
    const std::size_t first_waiting = served;
    for (std::size_t i = 0; i < first_waiting; ++i)
        clients[i].reset();
    for (std::size_t i = first_waiting; i < clients.size(); ++i) {
        std::string got;
        BOOST_TEST(wait_until(
                       [&] {
                           if (!collect(clients[i].get(), got, 0ms))
                               throw std::runtime_error("a waiting client was reset");
                           return !got.empty();
                       },
                       5s),
                   "waiting client " << i << " not served after descriptors freed");
        BOOST_TEST(got == "x");
    }
    clients.clear();
    const std::string data = random_bytes(256 * 1024, 7);
    BOOST_TEST(echo_through(socket, data) == data);
    BOOST_TEST(exhaustion_lines() == 1u);

    process.signal(SIGTERM);
    auto status = process.wait_for_exit(10s);
    BOOST_REQUIRE(status.has_value());
    BOOST_TEST(status->exited_with(0), *status << "; stderr: " << process.stderr_text());
}

BOOST_AUTO_TEST_CASE(a_client_reading_one_byte_per_100ms_keeps_daemon_memory_bounded) {
    TempDir dir;
    Daemon daemon = start_daemon(dir);
    const pid_t pid = daemon.process.pid();
    {
        const std::string warm = random_bytes(1 * MiB, 1);
        BOOST_REQUIRE(echo_through(daemon.socket, warm) == warm);
    }
    const std::size_t rss_before = resident_bytes(pid);

    constexpr std::size_t total = 48 * MiB;
    constexpr std::size_t chunk = 256 * 1024;
    FileDescriptor fd = connect_unix(daemon.socket, 60s);
    ChunkedWriter writer(fd.get(), total, chunk);

    // Slow phase: one byte every 100 ms for 3 s, sampling the daemon's RSS.
    std::string echoed;
    std::size_t max_rss = rss_before;
    for (int i = 0; i < 30; ++i) {
        echoed += read_exact(fd.get(), 1);
        max_rss = std::max(max_rss, resident_bytes(pid));
        std::this_thread::sleep_for(100ms);
    }
    const std::size_t written_while_slow = writer.written();
    BOOST_TEST(written_while_slow < 16 * MiB,
               "the daemon took " << written_while_slow << " bytes from a client reading 30 bytes");
    BOOST_TEST(max_rss < rss_before + 8 * MiB,
               "daemon RSS grew from " << rss_before << " to " << max_rss);

    // Fast phase: everything comes back, in order.
    try {
        echoed += read_until_eof(fd.get());
    } catch (const std::exception& error) {
        BOOST_ERROR("reading the rest: " << error.what());
        ::shutdown(fd.get(), SHUT_RDWR);
    }
    const std::string writer_error = writer.join();
    BOOST_TEST(writer_error.empty(), writer_error);
    const auto wrong = writer.first_wrong_chunk(echoed);
    BOOST_TEST(!wrong.has_value(), "echo differs in the chunk at offset "
                                       << wrong.value_or(0) << " (got " << echoed.size()
                                       << " bytes)");
    BOOST_TEST(stop_daemon(daemon).exited_with(0));
}

// AddressSanitizer keeps freed memory in quarantine on purpose: RSS says nothing there.
boost::test_tools::assertion_result rss_follows_freed_memory(boost::unit_test::test_unit_id) {
#if defined(__SANITIZE_ADDRESS__)
    boost::test_tools::assertion_result result(false);
    result.message() << "skipped under AddressSanitizer: its quarantine holds freed memory";
    return result;
#else
    return true;
#endif
}

BOOST_AUTO_TEST_CASE(rss_returns_close_to_its_start_after_10000_connections,
                     *boost::unit_test::precondition(rss_follows_freed_memory)) {
    TempDir dir;
    Daemon daemon = start_daemon(dir, DaemonOptions::with_args({"--threads", "2"}));
    const pid_t pid = daemon.process.pid();
    auto batch = [&](std::size_t count, std::size_t round) {
        std::vector<FileDescriptor> fds;
        for (std::size_t i = 0; i < count; ++i) {
            auto fd = connect_unix_within(daemon.socket, 10s);
            if (!fd)
                throw std::runtime_error("connect failed in round " + std::to_string(round));
            fds.push_back(std::move(*fd));
        }
        for (std::size_t i = 0; i < count; ++i)
            write_all(fds[i].get(), "m" + std::to_string(round * count + i) + ";");
        for (std::size_t i = 0; i < count; ++i) {
            const std::string expected = "m" + std::to_string(round * count + i) + ";";
            if (read_exact(fds[i].get(), expected.size()) != expected)
                throw std::runtime_error("wrong echo in round " + std::to_string(round));
        }
    };
    // Warm up with one batch: the allocator's first growth is part of the baseline.
    batch(500, 0);
    const std::size_t rss_start = resident_bytes(pid);
    const auto started = Clock::now();
    std::size_t rss_peak = rss_start;
    for (std::size_t round = 1; round <= 20; ++round) {
        batch(500, round);
        rss_peak = std::max(rss_peak, resident_bytes(pid));
    }
    BOOST_TEST_MESSAGE(
        "10,000 connections in "
        << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count()
        << " ms; RSS start " << rss_start << ", peak " << rss_peak);
    std::size_t rss_end = 0;
    BOOST_TEST(wait_until(
                   [&] {
                       rss_end = resident_bytes(pid);
                       return rss_end <= rss_start + 8 * MiB;
                   },
                   5s, 100ms),
               "RSS " << rss_start << " at start, " << rss_end << " after 10,000 connections");
    BOOST_TEST(stop_daemon(daemon).exited_with(0));
}
