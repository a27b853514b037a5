// uds-echod under faults: clients that vanish while the daemon shuts down, SIGTERM under
// full load with every byte accounted for, and a second SIGTERM that forces the close.
#define BOOST_TEST_MODULE integration_faults
#include <boost/test/unit_test.hpp>

#include "process.hpp"

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

// The byte stream of one client: byte i is pattern[(i + offset) % size], where the pattern is
// shared and the offset is the client's own, so every client's stream is different.
const std::string& pattern() {
    static const std::string bytes = random_bytes(1024 * 1024 + 7, 2024);
    return bytes;
}

// A full-duplex client: a writer thread sends the stream in chunks of varying size without
// waiting for echoes, a reader thread reads and checks the echo as it comes. stop() makes the
// writer half-close after its current chunk; the reader then reads to EOF.
class DuplexClient {
public:
    DuplexClient(const std::string& socket, std::size_t index)
        : fd_(connect_unix(socket, 20s))
        , offset_(index * 7919) {
        writer_ = std::thread([this] { write_loop(); });
        reader_ = std::thread([this] { read_loop(); });
    }
    ~DuplexClient() {
        stop_ = true;
        ::shutdown(fd_.get(), SHUT_RDWR);
        if (writer_.joinable())
            writer_.join();
        if (reader_.joinable())
            reader_.join();
    }

    std::size_t written() const { return written_.load(); }
    std::size_t echoed() const { return read_.load(); }
    void stop() { stop_ = true; }
    // Empty on success: everything written came back, identical, then EOF.
    std::string join() {
        stop_ = true;
        writer_.join();
        reader_.join();
        if (error_.empty() && read_ != written_)
            error_ = "wrote " + std::to_string(written_.load()) + " bytes, got " +
                     std::to_string(read_.load()) + " back";
        return error_;
    }

private:
    void write_loop() {
        const auto& bytes = pattern();
        std::size_t chunk = 1000;
        try {
            while (!stop_) {
                const std::size_t start = (written_ + offset_) % bytes.size();
                const std::size_t size = std::min(chunk, bytes.size() - start);
                write_all(fd_.get(), std::string_view(bytes).substr(start, size));
                written_ += size;
                chunk = chunk * 3 % 65521 + 1; // 1 byte to 64 KiB
            }
            shutdown_write(fd_.get());
        } catch (const std::exception& error) {
            set_error(std::string("writer: ") + error.what());
            ::shutdown(fd_.get(), SHUT_RDWR);
        }
    }

    void read_loop() {
        const auto& bytes = pattern();
        std::string buffer(64 * 1024, '\0');
        for (;;) {
            ssize_t n = ::recv(fd_.get(), buffer.data(), buffer.size(), 0);
            if (n == 0)
                return;
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                set_error(std::string("reader: ") + std::strerror(errno) + " after " +
                          std::to_string(read_.load()) + " bytes");
                return;
            }
            for (ssize_t i = 0; i < n; ++i) {
                const std::size_t position = read_ + static_cast<std::size_t>(i);
                if (buffer[static_cast<std::size_t>(i)] !=
                    bytes[(position + offset_) % bytes.size()]) {
                    set_error("echo differs at byte " + std::to_string(position));
                    return;
                }
            }
            read_ += static_cast<std::size_t>(n);
        }
    }

    // Called by both threads: the first error is kept.
    void set_error(const std::string& error) {
        const std::lock_guard lock(error_mutex_);
        if (error_.empty())
            error_ = error;
    }

    Fd fd_;
    std::size_t offset_;
    std::atomic<bool> stop_{false};
    std::atomic<std::size_t> written_{0};
    std::atomic<std::size_t> read_{0};
    std::mutex error_mutex_;
    std::string error_; // written under error_mutex_; join() reads it once both threads ended
    std::thread writer_;
    std::thread reader_;
};

std::string lower(std::string text) {
    for (char& c : text)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return text;
}

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
    std::vector<std::unique_ptr<DuplexClient>> clients;
    for (std::size_t i = 0; i < client_count; ++i)
        clients.push_back(std::make_unique<DuplexClient>(daemon.socket, i));
    auto all_moved_past = [&](const std::vector<std::size_t>& marks) {
        for (std::size_t i = 0; i < clients.size(); ++i)
            if (clients[i]->echoed() <= marks[i])
                return false;
        return true;
    };
    BOOST_REQUIRE_MESSAGE(
        wait_until(
            [&] { return all_moved_past(std::vector<std::size_t>(client_count, 256 * 1024)); },
            15s),
        "not every client got its stream going");

    // Bytes are in flight in both directions when the signal arrives.
    daemon.process.signal(SIGTERM);
    const auto signalled = Clock::now();
    std::vector<std::size_t> at_signal;
    for (const auto& client : clients)
        at_signal.push_back(client->echoed());
    BOOST_TEST(wait_until([&] { return all_moved_past(at_signal); }, 3s),
               "sessions stopped echoing after SIGTERM");

    std::size_t total = 0;
    for (auto& client : clients)
        client->stop();
    for (std::size_t i = 0; i < clients.size(); ++i) {
        const std::string error = clients[i]->join();
        BOOST_TEST(error.empty(), "client " << i << ": " << error);
        total += clients[i]->echoed();
    }
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
    std::vector<Fd> stubborn;
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
    std::vector<Fd> clients;
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
    std::vector<std::unique_ptr<DuplexClient>> clients;
    for (std::size_t i = 0; i < 20; ++i)
        clients.push_back(std::make_unique<DuplexClient>(daemon.socket, i));
    BOOST_REQUIRE(wait_until(
        [&] {
            for (const auto& client : clients)
                if (client->echoed() < 64 * 1024)
                    return false;
            return true;
        },
        10s));
    daemon.process.signal(SIGTERM);
    // The clients never stop on their own: the timeout cuts them; some are destroyed (closed)
    // right around it.
    BOOST_TEST(!wait_until([&] { return !daemon.process.running(); }, 800ms, 50ms),
               "exited before the shutdown timeout");
    for (std::size_t i = 0; i < clients.size(); i += 2)
        clients[i].reset();
    auto status = daemon.process.wait_for_exit(10s);
    BOOST_REQUIRE_MESSAGE(status.has_value(), "stderr: " << daemon.process.stderr_text());
    BOOST_TEST(status->exited_with(0), *status << "; stderr: " << daemon.process.stderr_text());
    clients.clear();
    BOOST_TEST(log_is_clean(daemon.process.stderr_text()), daemon.process.stderr_text());
}
