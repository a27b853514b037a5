// uds-echod under faults: clients that vanish while the daemon shuts down, SIGTERM under
// full load with every byte accounted for, and a second SIGTERM that forces the close.
#define BOOST_TEST_MODULE integration_faults
#include <boost/test/unit_test.hpp>

#include "process.hpp"
#include "streaming_clients.hpp"

#include <sys/resource.h>
#include <sys/socket.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <memory>
#include <mutex>
#include <regex>
#include <string>
#include <thread>
#include <vector>

using namespace uds_echo::test;

namespace {

BOOST_TEST_GLOBAL_FIXTURE(RaiseDescriptorLimit);

// A line that says `count` connections were cut or closed by force.
bool logs_cut_count(const std::string& log, std::size_t count) {
    const std::regex number("\\b" + std::to_string(count) + "\\b");
    for (const auto& line : non_empty_lines(log)) {
        const auto low = lower(line);
        const bool about_cut = low.find("cut") != std::string::npos ||
                               low.find("closed") != std::string::npos ||
                               low.find("forc") != std::string::npos;
        if (about_cut && low.find("connection") != std::string::npos &&
            std::regex_search(line, number))
            return true;
    }
    return false;
}

// Signs of a crash or an unexpected session failure in the daemon's log.
bool log_is_clean(const std::string& log) {
    const auto low = lower(log);
    return low.find("failed:") == std::string::npos && low.find("exception") == std::string::npos &&
           low.find("sanitizer") == std::string::npos &&
           low.find("runtime error") == std::string::npos;
}

} // namespace

BOOST_AUTO_TEST_CASE(sigterm_under_full_load_echoes_every_byte_and_exits_0) {
    constexpr std::size_t client_count = 50;
    TempDir dir;
    Daemon daemon =
        start_daemon(dir, DaemonOptions::with_args({"--threads", "2", "--shutdown-timeout", "5"}));
    StreamingClients clients(daemon.socket, client_count);
    BOOST_REQUIRE_MESSAGE(wait_until([&] { return clients.least_received() > 256 * 1024; }, 15s),
                          "not every client got its stream going");

    // Bytes are in flight in both directions when the signal arrives.
    daemon.process.signal(SIGTERM);
    const auto signalled = Clock::now();
    const auto at_signal = clients.received();
    BOOST_TEST(wait_until([&] { return clients.each_received_more_than(at_signal); }, 3s),
               "sessions stopped echoing after SIGTERM");

    const auto errors = clients.finish();
    BOOST_TEST(errors.empty(), (errors.empty() ? "" : errors.front())
                                   << " and " << errors.size() - 1 << " more");
    std::uint64_t total = 0;
    for (const auto received : clients.received())
        total += received;
    BOOST_TEST_MESSAGE(total << " bytes echoed to " << client_count << " clients");

    auto status = daemon.process.wait_for_exit(6s);
    const auto elapsed = Clock::now() - signalled;
    BOOST_REQUIRE_MESSAGE(status.has_value(),
                          "still running; stderr: " << daemon.process.stderr_text());
    BOOST_TEST(status->exited_with(0), *status << "; stderr: " << daemon.process.stderr_text());
    BOOST_TEST((elapsed < 5s), "exit took longer than the shutdown timeout");
    const auto log = daemon.process.stderr_text();
    BOOST_TEST(!logs_cut_count(log, client_count), "connections were cut: " << log);
    BOOST_TEST(log_is_clean(log), log);
    BOOST_TEST(!path_exists(daemon.socket));
}

BOOST_AUTO_TEST_CASE(a_second_sigterm_forces_the_close_and_logs_the_cut_count) {
    TempDir dir;
    Daemon daemon = start_daemon(dir, DaemonOptions::with_args({"--shutdown-timeout", "60"}));
    std::vector<FileDescriptor> stubborn;
    for (int i = 0; i < 3; ++i) {
        stubborn.push_back(connect_unix(daemon.socket, 10s));
        write_all(stubborn.back().get(), "hold");
        BOOST_REQUIRE(read_exact(stubborn.back().get(), 4) == "hold");
    }
    daemon.process.signal(SIGTERM);
    BOOST_TEST(wait_until(
        [&] { return lower(daemon.process.stderr_text()).find("draining") != std::string::npos; },
        5s));
    // Still draining: open sessions are served.
    write_all(stubborn[0].get(), "more");
    BOOST_TEST(read_exact(stubborn[0].get(), 4) == "more");
    BOOST_TEST(daemon.process.running());

    const auto second = Clock::now();
    daemon.process.signal(SIGTERM);
    auto status = daemon.process.wait_for_exit(5s);
    BOOST_REQUIRE_MESSAGE(status.has_value(), "a second SIGTERM did not end the daemon; stderr: "
                                                  << daemon.process.stderr_text());
    BOOST_TEST((Clock::now() - second < 3s));
    BOOST_TEST(status->exited_with(0), *status << "; stderr: " << daemon.process.stderr_text());
    for (auto& fd : stubborn)
        BOOST_TEST(peer_closed(fd.get(), 1s));
    BOOST_TEST(logs_cut_count(daemon.process.stderr_text(), 3),
               "cut count not logged; stderr: " << daemon.process.stderr_text());
}

// Clients disappear in every state while the daemon drains: reset mid-write with the daemon
// blocked writing to them, closed mid-read, half-closed and then gone. The daemon finishes its
// drain as soon as the last one is gone and exits 0 with nothing unexpected in its log.
BOOST_AUTO_TEST_CASE(clients_vanishing_during_shutdown_do_not_crash_the_daemon) {
    TempDir dir;
    Daemon daemon =
        start_daemon(dir, DaemonOptions::with_args({"--threads", "2", "--shutdown-timeout", "20"}));
    const std::string chunk = random_bytes(256 * 1024, 11);
    std::vector<FileDescriptor> clients;
    for (int i = 0; i < 60; ++i) {
        clients.push_back(connect_unix(daemon.socket, 10s));
        int fd = clients.back().get();
        switch (i % 4) {
        case 0: // fills both directions: the daemon is stuck writing to us
            for (;;) {
                ssize_t n = ::send(fd, chunk.data(), chunk.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
                if (n <= 0)
                    break;
            }
            break;
        case 1: // part of an echo read, the rest in flight
            write_all(fd, std::string_view(chunk).substr(0, 100 * 1024));
            read_exact(fd, 10);
            break;
        case 2: // half-closed with data still to come back
            write_all(fd, std::string_view(chunk).substr(0, 50 * 1024));
            shutdown_write(fd);
            break;
        case 3: // idle
            write_all(fd, "x");
            read_exact(fd, 1);
            break;
        }
    }
    daemon.process.signal(SIGTERM);
    BOOST_TEST(wait_until(
        [&] { return lower(daemon.process.stderr_text()).find("draining") != std::string::npos; },
        5s));
    const auto signalled = Clock::now();
    // Vanish: resets and plain closes, interleaved.
    for (std::size_t i = 0; i < clients.size(); ++i) {
        if (i % 2 == 0)
            close_with_reset(clients[i]);
        else
            clients[i].reset();
    }
    auto status = daemon.process.wait_for_exit(10s);
    BOOST_REQUIRE_MESSAGE(status.has_value(), "still running after every client left; stderr: "
                                                  << daemon.process.stderr_text());
    BOOST_TEST(status->exited_with(0), *status << "; stderr: " << daemon.process.stderr_text());
    BOOST_TEST((Clock::now() - signalled < 5s), "the drain did not notice the clients leaving");
    const auto log = daemon.process.stderr_text();
    BOOST_TEST(log_is_clean(log), log);
    BOOST_TEST(!logs_cut_count(log, clients.size()), log);
    BOOST_TEST(!path_exists(daemon.socket));
}

// The same while the daemon is being killed by the timeout: clients leave just as it cuts them.
BOOST_AUTO_TEST_CASE(clients_leaving_as_the_shutdown_timeout_cuts_them) {
    TempDir dir;
    Daemon daemon =
        start_daemon(dir, DaemonOptions::with_args({"--threads", "2", "--shutdown-timeout", "1"}));
    StreamingClients clients(daemon.socket, 20);
    BOOST_REQUIRE(wait_until([&] { return clients.least_received() >= 64 * 1024; }, 10s));
    daemon.process.signal(SIGTERM);
    // The clients never stop on their own: the timeout cuts them; some are destroyed (closed)
    // right around it.
    BOOST_TEST(!wait_until([&] { return !daemon.process.running(); }, 800ms, 50ms),
               "exited before the shutdown timeout");
    for (std::size_t i = 0; i < 20; i += 2)
        clients.close(i);
    auto status = daemon.process.wait_for_exit(10s);
    BOOST_REQUIRE_MESSAGE(status.has_value(), "stderr: " << daemon.process.stderr_text());
    BOOST_TEST(status->exited_with(0), *status << "; stderr: " << daemon.process.stderr_text());
    BOOST_TEST(log_is_clean(daemon.process.stderr_text()), daemon.process.stderr_text());
}
