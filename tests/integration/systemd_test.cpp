// Socket activation and service notification without PID 1: systemd-socket-activate passes the
// socket, and a datagram socket owned by the test plays the role of $NOTIFY_SOCKET.
#define BOOST_TEST_MODULE systemd integration
#include <boost/test/unit_test.hpp>

#include "process.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

using namespace uds_echo::test;

namespace {

constexpr const char* socket_activate = "/usr/bin/systemd-socket-activate";

// The receiving end of sd_notify(3): a bound AF_UNIX datagram socket.
class NotifySocket {
public:
    explicit NotifySocket(std::string path)
        : path_(std::move(path))
        , fd_(bind_unix(path_, SOCK_DGRAM)) {}

    const std::string& path() const { return path_; }

    // Waits for a message containing `needle` and returns it; everything received on the way is
    // kept in history(). nullopt after `timeout`.
    std::optional<std::string> wait_for(const std::string& needle,
                                        std::chrono::milliseconds timeout) {
        const auto deadline = Clock::now() + timeout;
        for (;;) {
            const auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
            if (left.count() <= 0)
                return std::nullopt;
            pollfd readable{fd_.get(), POLLIN, 0};
            if (::poll(&readable, 1, static_cast<int>(left.count())) <= 0)
                continue;
            char buffer[4096];
            const auto size = ::recv(fd_.get(), buffer, sizeof buffer, 0);
            if (size <= 0)
                continue;
            std::string message(buffer, static_cast<std::size_t>(size));
            history_.push_back(message);
            if (message.find(needle) != std::string::npos)
                return message;
        }
    }

    const std::vector<std::string>& history() const { return history_; }

private:
    std::string path_;
    FileDescriptor fd_;
    std::vector<std::string> history_;
};

// `systemd-socket-activate [extra] -l SOCKET -E ... uds-echod --config EMPTY daemon_args...`.
// systemd-socket-activate gives the child a fresh environment: only what -E names reaches it.
Process start_activated(const TempDir& dir, const std::string& socket,
                        const std::vector<std::string>& activate_args,
                        const std::vector<std::string>& daemon_args) {
    ProcessOptions options;
    options.argv = {socket_activate};
    options.argv.insert(options.argv.end(), activate_args.begin(), activate_args.end());
    options.argv.insert(options.argv.end(), {"-l", socket, "--", daemon_binary(), "--config",
                                             dir.write_file("empty.conf", "")});
    options.argv.insert(options.argv.end(), daemon_args.begin(), daemon_args.end());
    options.environment = clean_daemon_environment();
    return Process(options);
}

void wait_for_socket_file(const std::string& path) {
    BOOST_REQUIRE_MESSAGE(wait_until([&] { return is_socket_file(path); }, 10s),
                          "no socket file at " << path);
}

// True when a stream socket bound to `path` listens: in /proc/net/unix (Num RefCount Protocol
// Flags Type St Inode Path) its flags are __SO_ACCEPTCON, 00010000.
bool listening_at(const std::string& path) {
    std::ifstream table("/proc/net/unix");
    std::string line;
    std::getline(table, line); // the header
    while (std::getline(table, line)) {
        std::istringstream fields(line);
        std::string number, references, protocol, flags, type, state, inode, name;
        fields >> number >> references >> protocol >> flags >> type >> state >> inode >> name;
        if (name == path && flags == "00010000")
            return true;
    }
    return false;
}

// The socket file appears at bind(2), before listen(2): a connection attempt in between is
// refused. Waits for the listening socket itself.
void wait_for_listener(const std::string& path) {
    BOOST_REQUIRE_MESSAGE(wait_until([&] { return listening_at(path); }, 10s),
                          "nothing listens at " << path);
}

} // namespace

BOOST_AUTO_TEST_CASE(adopts_passed_listening_socket_and_notifies) {
    TempDir dir;
    const auto socket = dir.file("s.sock");
    NotifySocket notify(dir.file("notify.sock"));
    auto daemon = start_activated(
        dir, socket, {"-E", "NOTIFY_SOCKET=" + notify.path(), "-E", "WATCHDOG_USEC=400000"}, {});
    wait_for_listener(socket);

    // systemd-socket-activate starts the daemon at the first connection, as systemd does.
    BOOST_TEST(echo_through(socket, "activated") == "activated");
    BOOST_TEST(notify.wait_for("READY=1", 10s).has_value());
    // The log names the socket it was given, as it does for one it creates.
    BOOST_TEST(daemon.stderr_text().find("listening on " + socket) != std::string::npos,
               daemon.stderr_text());
    BOOST_TEST(notify.wait_for("WATCHDOG=1", 5s).has_value());
    const auto status = notify.wait_for("STATUS=", 5s);
    BOOST_REQUIRE(status.has_value());
    // "9 B echoed (9 bytes)": readable for people, exact for scripts.
    BOOST_TEST(status->find(" echoed (") != std::string::npos, *status);
    BOOST_TEST(status->find(" bytes)") != std::string::npos, *status);

    daemon.signal(SIGHUP);
    const auto reloading = notify.wait_for("RELOADING=1", 5s);
    BOOST_REQUIRE(reloading.has_value());
    BOOST_TEST(reloading->find("MONOTONIC_USEC=") != std::string::npos, *reloading);
    BOOST_TEST(notify.wait_for("READY=1", 5s).has_value());
    BOOST_TEST(echo_through(socket, "after reload") == "after reload");

    daemon.signal(SIGTERM);
    BOOST_TEST(notify.wait_for("STOPPING=1", 5s).has_value());
    const auto exit = daemon.wait_for_exit(10s);
    BOOST_REQUIRE(exit.has_value());
    BOOST_TEST(exit->exited_with(0), *exit << "; stderr: " << daemon.stderr_text());
    // The socket belongs to whoever passed it: the daemon must not unlink it.
    BOOST_TEST(is_socket_file(socket));
}

BOOST_AUTO_TEST_CASE(accept_yes_serves_one_connection_per_daemon) {
    TempDir dir;
    const auto socket = dir.file("s.sock");
    auto activator = start_activated(dir, socket, {"--accept"}, {});
    wait_for_listener(socket);

    std::vector<std::thread> clients;
    std::vector<std::string> echoes(4);
    for (std::size_t i = 0; i < echoes.size(); ++i)
        clients.emplace_back([&, i] {
            try {
                echoes[i] = echo_through(socket, random_bytes(100000 + i, i));
            } catch (const std::exception& error) {
                echoes[i] = error.what();
            }
        });
    for (auto& client : clients)
        client.join();
    for (std::size_t i = 0; i < echoes.size(); ++i)
        BOOST_TEST((echoes[i] == random_bytes(100000 + i, i)), "client " << i);
    activator.signal(SIGTERM);
    activator.wait_for_exit(10s);
}

// systemd-socket-activate --datagram passes a bound datagram socket; the first datagram starts
// the daemon, which answers it (the socket keeps it queued meanwhile).
BOOST_AUTO_TEST_CASE(serves_a_datagram_socket_passed_by_socket_activation) {
    TempDir dir;
    const auto socket = dir.file("d.sock");
    auto daemon = start_activated(dir, socket, {"--datagram"}, {});
    wait_for_socket_file(socket);
    FileDescriptor sender(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    const sa_family_t family = AF_UNIX; // autobind: an abstract address the daemon answers
    BOOST_REQUIRE(::bind(sender.get(), reinterpret_cast<const sockaddr*>(&family), sizeof family) ==
                  0);
    set_io_timeout(sender.get(), 10s);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, socket.c_str(), sizeof address.sun_path - 1);
    BOOST_REQUIRE(::sendto(sender.get(), "first", 5, 0, reinterpret_cast<sockaddr*>(&address),
                           sizeof address) == 5);
    char echo[16] = {};
    BOOST_TEST(::recv(sender.get(), echo, sizeof echo, 0) == 5, daemon.stderr_text());
    BOOST_TEST(std::string(echo) == "first");
    daemon.signal(SIGTERM);
    const auto exit = daemon.wait_for_exit(10s);
    BOOST_REQUIRE(exit.has_value());
    BOOST_TEST(exit->exited_with(0), *exit);
}

// A seqpacket socket from systemd-socket-activate --seqpacket: a listener (Accept=no), or with
// --accept one connected socket per daemon (Accept=yes); either way each message comes back as
// one message.
void seqpacket_echo_through_activation(const std::vector<std::string>& activate_args) {
    TempDir dir;
    const auto socket = dir.file("q.sock");
    auto activator = start_activated(dir, socket, activate_args, {});
    wait_for_listener(socket);
    FileDescriptor client(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, socket.c_str(), sizeof address.sun_path - 1);
    BOOST_REQUIRE_MESSAGE(
        ::connect(client.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0,
        std::strerror(errno));
    set_io_timeout(client.get(), 10s);
    for (const std::string message : {"one", "two"}) {
        BOOST_REQUIRE(::send(client.get(), message.data(), message.size(), MSG_NOSIGNAL) ==
                      static_cast<ssize_t>(message.size()));
        char echo[16] = {};
        BOOST_TEST(::recv(client.get(), echo, sizeof echo, 0) ==
                       static_cast<ssize_t>(message.size()),
                   activator.stderr_text());
        BOOST_TEST(std::string(echo) == message);
    }
    client.reset();
    activator.signal(SIGTERM);
    BOOST_TEST(activator.wait_for_exit(10s).has_value());
}

BOOST_AUTO_TEST_CASE(serves_a_seqpacket_listener_passed_by_socket_activation) {
    seqpacket_echo_through_activation({"--seqpacket"});
}

BOOST_AUTO_TEST_CASE(serves_a_connected_seqpacket_socket_passed_with_accept) {
    seqpacket_echo_through_activation({"--seqpacket", "--accept"});
}

BOOST_AUTO_TEST_CASE(exits_when_idle_after_serving) {
    TempDir dir;
    const auto socket = dir.file("s.sock");
    auto daemon = start_activated(dir, socket, {}, {"--exit-on-idle", "1"});
    wait_for_listener(socket);
    BOOST_TEST(echo_through(socket, "once") == "once");
    const auto exit = daemon.wait_for_exit(10s);
    BOOST_REQUIRE_MESSAGE(exit.has_value(), "still running; stderr: " << daemon.stderr_text());
    BOOST_TEST(exit->exited_with(0), *exit << "; stderr: " << daemon.stderr_text());
    BOOST_TEST(daemon.stderr_text().find("idle") != std::string::npos, daemon.stderr_text());
    BOOST_TEST(is_socket_file(socket));
}

BOOST_AUTO_TEST_CASE(ignores_activation_variables_meant_for_another_process) {
    TempDir dir;
    // LISTEN_PID names another process (PID 1): the daemon must create its own socket.
    auto options = DaemonOptions::with_args({});
    options.environment = {{"LISTEN_PID", "1"}, {"LISTEN_FDS", "1"}};
    auto daemon = start_daemon(dir, options);
    BOOST_TEST(echo_through(daemon.socket, "own socket") == "own socket");
    BOOST_TEST(stop_daemon(daemon).exited_with(0));
}

BOOST_AUTO_TEST_CASE(exit_on_idle_without_activation_is_ignored_with_a_warning) {
    TempDir dir;
    auto daemon = start_daemon(dir, DaemonOptions::with_args({"--exit-on-idle", "1"}));
    BOOST_TEST(wait_until(
        [&] { return daemon.process.stderr_text().find("exit-on-idle") != std::string::npos; },
        5s));
    // Still serving after the idle time has passed twice over.
    BOOST_TEST(!wait_until([&] { return !daemon.process.running(); }, 2500ms));
    BOOST_TEST(echo_through(daemon.socket, "still here") == "still here");
    BOOST_TEST(stop_daemon(daemon).exited_with(0));
}

namespace {

// A D-Bus socket that never answers: it listens, and the connection waits in its backlog, so the
// daemon's connect succeeds and every call then waits for a reply that never comes.
class SilentBus {
public:
    explicit SilentBus(std::string path)
        : path_(std::move(path))
        , listener_(listen_unix(path_, 16)) {}
    std::string address() const { return "unix:path=" + path_; }

private:
    std::string path_;
    FileDescriptor listener_;
};

// At SIGTERM the daemon asks the service manager over `bus_variable`'s bus, which never answers:
// the whole question ends within its limit (2 s, uds-echod(8)), the watchdog is pinged all along,
// and the daemon drains and exits, saying why.
void sigterm_with_a_silent_bus(const std::vector<std::string>& extra_environment,
                               const std::string& bus_variable, const std::string& bus_name) {
    TempDir dir;
    const auto socket = dir.file("s.sock");
    NotifySocket notify(dir.file("notify.sock"));
    const SilentBus bus(dir.file("bus.sock"));
    std::vector<std::string> activate_args = {"-E", "NOTIFY_SOCKET=" + notify.path(),
                                              "-E", "WATCHDOG_USEC=400000",
                                              "-E", bus_variable + "=" + bus.address()};
    activate_args.insert(activate_args.end(), extra_environment.begin(), extra_environment.end());
    auto daemon = start_activated(dir, socket, activate_args, {});
    wait_for_listener(socket);
    BOOST_TEST(echo_through(socket, "activated") == "activated");
    BOOST_REQUIRE(notify.wait_for("READY=1", 10s).has_value());

    const auto before = notify.history().size();
    daemon.signal(SIGTERM);
    BOOST_REQUIRE_MESSAGE(notify.wait_for("STOPPING=1", 10s).has_value(),
                          "no STOPPING=1; stderr: " << daemon.stderr_text());
    // Pinged every 200 ms while the question ran for 2 s.
    std::size_t pings = 0;
    for (auto i = before; i < notify.history().size(); ++i)
        pings += contains(notify.history()[i], "WATCHDOG=1") ? 1 : 0;
    BOOST_TEST(pings >= 5u, pings << " watchdog ping(s) while the bus was asked");
    const auto exit = daemon.wait_for_exit(10s);
    BOOST_REQUIRE(exit.has_value());
    BOOST_TEST(exit->exited_with(0), *exit << "; stderr: " << daemon.stderr_text());
    BOOST_TEST(
        contains(daemon.stderr_text(), "stop (no answer on the " + bus_name + " within 2000 ms)"),
        daemon.stderr_text());
}

} // namespace

BOOST_AUTO_TEST_CASE(a_system_bus_that_never_answers_delays_the_stop_at_most_two_seconds) {
    sigterm_with_a_silent_bus({}, "DBUS_SYSTEM_BUS_ADDRESS", "system bus");
}

// Under a user manager ($MANAGERPID set) the question goes to the user's bus.
BOOST_AUTO_TEST_CASE(under_a_user_manager_the_question_goes_to_the_user_bus) {
    sigterm_with_a_silent_bus({"-E", "MANAGERPID=1"}, "DBUS_SESSION_BUS_ADDRESS", "user bus");
}
