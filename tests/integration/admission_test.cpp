// uds-echod access control (uds-echod(8), SECURITY): --allow-uid / --allow-gid through SO_PEERCRED.
// A refused peer is closed before any byte is echoed and logged once with uid, gid and pid; a flood
// of refused peers is rate-limited in the log; SIGHUP applies new allow lists to new connections.
// Tests that need a second identity fork a client that drops to another uid/gid: they run only as
// root and are skipped with a message otherwise. The daemon listens on an abstract socket, which
// has no file permissions, so the dropped client can reach it.
#define BOOST_TEST_MODULE integration_admission
#include <boost/test/unit_test.hpp>

#include "preconditions.hpp"
#include "process.hpp"

#include <grp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <random>
#include <regex>
#include <string>
#include <vector>

using namespace uds_echo::test;
namespace utf = boost::unit_test;

namespace {

constexpr uid_t nobody = 65534;

const RootOnly root_only{"to fork a client with another uid/gid"};

// A per-test abstract socket name (parallel-safe: pid plus a random number).
std::string abstract_name() {
    std::random_device random;
    return "@uds-echo-access-" + std::to_string(::getpid()) + "-" + std::to_string(random());
}

// What a client saw after sending its message.
enum class Outcome {
    echoed = 10,    // the message came back whole
    closed = 11,    // EOF or reset with no byte of it back
    partial = 12,   // something else came back
    no_answer = 13, // nothing within the timeout, connection still open
    connect_failed = 14,
    drop_failed = 15,
    child_crashed = 16,
};

std::ostream& operator<<(std::ostream& out, Outcome outcome) {
    switch (outcome) {
    case Outcome::echoed:
        return out << "echoed";
    case Outcome::closed:
        return out << "closed without echo";
    case Outcome::partial:
        return out << "partial echo";
    case Outcome::no_answer:
        return out << "no answer";
    case Outcome::connect_failed:
        return out << "connect failed";
    case Outcome::drop_failed:
        return out << "could not drop privileges";
    case Outcome::child_crashed:
        return out << "client process crashed";
    }
    return out << "?";
}

// Connects to `socket`, sends a message and classifies what comes back. Uses only
// async-signal-safe calls: it runs in a forked child of a possibly multi-threaded process.
Outcome probe(const std::string& socket) {
    static const char message[] = "secret bytes";
    const std::size_t length = sizeof message - 1;
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return Outcome::connect_failed;
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    const bool abstract = !socket.empty() && socket[0] == '@';
    std::memcpy(address.sun_path, socket.data(), socket.size());
    if (abstract)
        address.sun_path[0] = '\0';
    const auto size = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socket.size() +
                                             (abstract ? 0 : 1));
    if (::connect(fd, reinterpret_cast<sockaddr*>(&address), size) != 0) {
        ::close(fd);
        return Outcome::connect_failed;
    }
    if (::send(fd, message, length, MSG_NOSIGNAL) != static_cast<ssize_t>(length)) {
        ::close(fd);
        return Outcome::closed;
    }
    char received[64];
    std::size_t got = 0;
    for (;;) {
        pollfd readable{fd, POLLIN, 0};
        if (::poll(&readable, 1, 3000) <= 0) {
            ::close(fd);
            return got == 0 ? Outcome::no_answer : Outcome::partial;
        }
        ssize_t n = ::recv(fd, received + got, sizeof received - got, 0);
        if (n <= 0) {
            ::close(fd);
            return got == 0 ? Outcome::closed : Outcome::partial;
        }
        got += static_cast<std::size_t>(n);
        if (got >= length) {
            ::close(fd);
            return got == length && std::memcmp(received, message, length) == 0 ? Outcome::echoed
                                                                                : Outcome::partial;
        }
    }
}

struct ClientRun {
    Outcome outcome;
    pid_t pid;
};

// Forks a client that drops to `uid`/`gid` with no supplementary groups, then probes `socket`.
ClientRun probe_as(const std::string& socket, uid_t uid, gid_t gid) {
    pid_t pid = ::fork();
    if (pid < 0)
        throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
    if (pid == 0) {
        if (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0 ||
            ::getuid() != uid || ::getgid() != gid)
            ::_exit(static_cast<int>(Outcome::drop_failed));
        ::_exit(static_cast<int>(probe(socket)));
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status))
        return {Outcome::child_crashed, pid};
    return {static_cast<Outcome>(WEXITSTATUS(status)), pid};
}

// Lines of the daemon's log that report a refusal of the client with `pid`.
std::size_t refusal_lines_for(const std::string& log, pid_t pid) {
    const std::regex pid_word("\\bpid:? " + std::to_string(pid) + "\\b");
    std::size_t count = 0;
    for (const auto& line : non_empty_lines(log))
        if (line.find("refused") != std::string::npos && std::regex_search(line, pid_word))
            ++count;
    return count;
}

bool line_names(const std::string& line, const std::string& what, unsigned value) {
    return std::regex_search(line,
                             std::regex("\\b" + what + ":? " + std::to_string(value) + "\\b"));
}

// One refusal line per refused connection, not the summary of suppressed ones.
std::size_t individual_refusal_lines(const std::string& log) {
    std::size_t count = 0;
    for (const auto& line : non_empty_lines(log))
        if (line.find("refused") != std::string::npos && line.find("pid") != std::string::npos)
            ++count;
    return count;
}

// A root client (the test process itself), classified without forking.
Outcome probe_here(const std::string& socket) {
    return probe(socket);
}

} // namespace

BOOST_AUTO_TEST_CASE(a_peer_not_in_the_allow_lists_is_closed_before_any_echo_and_logged_once,
                     *utf::precondition(root_only)) {
    TempDir dir;
    Daemon daemon = start_daemon(
        dir, DaemonOptions::at(abstract_name(), {"--allow-uid", "0", "--allow-gid", "0"}));
    // Root is allowed: the lists work for the allowed side.
    BOOST_REQUIRE_EQUAL(probe_here(daemon.socket), Outcome::echoed);

    ClientRun refused = probe_as(daemon.socket, nobody, nobody);
    BOOST_TEST(refused.outcome == Outcome::closed, "uid/gid 65534: " << refused.outcome);

    BOOST_TEST(
        wait_until(
            [&] { return refusal_lines_for(daemon.process.stderr_text(), refused.pid) >= 1; }, 5s),
        "refusal not logged; stderr: " << daemon.process.stderr_text());
    // Logged once, with the peer's uid, gid and pid.
    const auto log = daemon.process.stderr_text();
    BOOST_TEST(refusal_lines_for(log, refused.pid) == 1u, "stderr: " << log);
    for (const auto& line : non_empty_lines(log)) {
        if (refusal_lines_for(line, refused.pid) == 1) {
            BOOST_TEST(line_names(line, "uid", nobody), line);
            BOOST_TEST(line_names(line, "gid", nobody), line);
        }
    }
    // The refusal did not disturb anyone else.
    BOOST_TEST(probe_here(daemon.socket) == Outcome::echoed);
    BOOST_TEST(stop_daemon(daemon).exited_with(0));
}

BOOST_AUTO_TEST_CASE(an_allowed_uid_passes, *utf::precondition(root_only)) {
    TempDir dir;
    Daemon daemon = start_daemon(dir, DaemonOptions::at(abstract_name(), {"--allow-uid", "65534"}));
    ClientRun allowed = probe_as(daemon.socket, nobody, nobody);
    BOOST_TEST(allowed.outcome == Outcome::echoed, "uid 65534: " << allowed.outcome);
    // Another uid with the same gid is not let in: the uid list alone decided.
    ClientRun other = probe_as(daemon.socket, 12345, nobody);
    BOOST_TEST(other.outcome == Outcome::closed, "uid 12345: " << other.outcome);
    // Root is not in the list either.
    BOOST_TEST(probe_here(daemon.socket) == Outcome::closed);
    BOOST_TEST(stop_daemon(daemon).exited_with(0));
}

BOOST_AUTO_TEST_CASE(an_allowed_gid_passes, *utf::precondition(root_only)) {
    TempDir dir;
    Daemon daemon = start_daemon(
        dir, DaemonOptions::at(abstract_name(), {"--allow-uid", "1", "--allow-gid", "65534"}));
    ClientRun allowed = probe_as(daemon.socket, 12345, nobody);
    BOOST_TEST(allowed.outcome == Outcome::echoed, "uid 12345 gid 65534: " << allowed.outcome);
    ClientRun refused = probe_as(daemon.socket, 12345, 12345);
    BOOST_TEST(refused.outcome == Outcome::closed, "uid 12345 gid 12345: " << refused.outcome);
    BOOST_TEST(stop_daemon(daemon).exited_with(0));
}

// A flood of refused peers (the test process, not in the list) must not flood the log: at most
// about ten lines a second, and the rest summarised with their count.
BOOST_AUTO_TEST_CASE(a_flood_of_refused_peers_is_rate_limited_in_the_log) {
    TempDir dir;
    const auto other_uid = std::to_string(::getuid() + 1);
    Daemon daemon = start_daemon(dir, DaemonOptions::with_args({"--allow-uid", other_uid}));
    const std::size_t lines_before = individual_refusal_lines(daemon.process.stderr_text());

    constexpr int flood = 300;
    const auto started = Clock::now();
    for (int i = 0; i < flood; ++i)
        BOOST_REQUIRE_EQUAL(probe_here(daemon.socket), Outcome::closed);
    const auto seconds =
        std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - started).count();
    BOOST_TEST_MESSAGE(flood << " refused connections in about " << seconds << " s");

    // The control thread logs the refusals after the workers have closed the peers: wait for it.
    // On a loaded machine the readiness probes may already have used the first second's lines,
    // and a short flood then falls entirely into the summary.
    BOOST_TEST(
        wait_until([&] { return individual_refusal_lines(daemon.process.stderr_text()) > 0; }, 5s),
        "no refusal logged");
    const std::size_t lines = individual_refusal_lines(daemon.process.stderr_text()) - lines_before;
    // Ten a second, in every started one-second window (plus the one the readiness probe opened).
    BOOST_TEST(lines <= static_cast<std::size_t>(10 * (seconds + 2)),
               lines << " refusal lines for " << flood << " connections in " << seconds << " s");

    // Once the flood is over, its suppressed part is reported with a count, without waiting for
    // the next refused client (an operator must not be left with ten lines and silence).
    const std::regex summary("\\b[0-9]+ more connection");
    BOOST_TEST(
        wait_until([&] { return std::regex_search(daemon.process.stderr_text(), summary); }, 3s),
        "no summary of the suppressed refusals; stderr: " << daemon.process.stderr_text());

    // The statistics count every refusal.
    daemon.process.signal(SIGUSR1);
    const std::regex counted("\\b([0-9]+) refused");
    std::smatch match;
    BOOST_TEST(wait_until(
                   [&] {
                       const auto log = daemon.process.stderr_text();
                       std::string last;
                       for (auto it = std::sregex_iterator(log.begin(), log.end(), counted);
                            it != std::sregex_iterator(); ++it)
                           last = (*it)[1];
                       return !last.empty() && std::stoi(last) >= flood;
                   },
                   5s),
               "statistics do not count the refusals; stderr: " << daemon.process.stderr_text());
    BOOST_TEST(stop_daemon(daemon).exited_with(0));
}

// After the flood window, the next refusal brings the count of those that were not logged.
BOOST_AUTO_TEST_CASE(suppressed_refusals_are_counted_in_a_later_line) {
    TempDir dir;
    const auto other_uid = std::to_string(::getuid() + 1);
    Daemon daemon = start_daemon(dir, DaemonOptions::with_args({"--allow-uid", other_uid}));
    for (int i = 0; i < 100; ++i)
        BOOST_REQUIRE_EQUAL(probe_here(daemon.socket), Outcome::closed);
    const auto flood_end = Clock::now();
    const std::regex summary("\\b([0-9]+) more connection");
    // Keep refusing one client now and then until the summary shows up.
    std::smatch match;
    std::string log;
    std::size_t late_probes = 0;
    BOOST_TEST(wait_until(
                   [&] {
                       if (Clock::now() - flood_end > 1100ms) {
                           probe_here(daemon.socket);
                           ++late_probes;
                       }
                       log = daemon.process.stderr_text();
                       return std::regex_search(log, match, summary);
                   },
                   5s, 100ms),
               "no summary line; stderr: " << daemon.process.stderr_text());
    if (!match.empty()) {
        const auto suppressed = std::stoul(match[1]);
        const auto individual = individual_refusal_lines(log);
        // Every refused connection is either a line of its own or in the summary; the late probes
        // and the readiness probes (one, or a few on a loaded machine) add to them.
        BOOST_TEST(individual + suppressed >= 100u, individual << " + " << suppressed);
        BOOST_TEST(individual + suppressed <= 110u + late_probes,
                   individual << " + " << suppressed << " with " << late_probes << " late probes");
    }
    BOOST_TEST(stop_daemon(daemon).exited_with(0));
}

// SIGHUP with a file that adds allow-uid: from then on a new connection of another uid is
// refused, while a connection accepted before keeps echoing.
BOOST_AUTO_TEST_CASE(sighup_applies_a_new_allow_list_to_new_connections) {
    TempDir dir;
    const std::string config = dir.write_file("d.conf", "log-level = info\n");
    Daemon daemon = start_daemon(dir, DaemonOptions::with_args({"--config", config}));
    BOOST_REQUIRE_EQUAL(probe_here(daemon.socket), Outcome::echoed);
    FileDescriptor before = connect_unix(daemon.socket, 10s);
    write_all(before.get(), "before");
    BOOST_REQUIRE(read_exact(before.get(), 6) == "before");

    dir.write_file("d.conf",
                   "log-level = info\nallow-uid = " + std::to_string(::getuid() + 1) + "\n");
    daemon.process.signal(SIGHUP);
    BOOST_TEST(wait_until(
                   [&] {
                       const auto log = daemon.process.stderr_text();
                       return log.find("reloaded") != std::string::npos &&
                              log.find("allow-uid") != std::string::npos;
                   },
                   5s),
               "reload not logged; stderr: " << daemon.process.stderr_text());
    BOOST_TEST(probe_here(daemon.socket) == Outcome::closed, "a new connection was not refused");

    // The connection accepted under the old list is not cut.
    write_all(before.get(), "after");
    BOOST_TEST(read_exact(before.get(), 5) == "after");

    // And back: a reload without the list lets everyone in again.
    dir.write_file("d.conf", "log-level = info\n");
    daemon.process.signal(SIGHUP);
    BOOST_TEST(wait_until([&] { return probe_here(daemon.socket) == Outcome::echoed; }, 5s));
    before.reset();
    BOOST_TEST(stop_daemon(daemon).exited_with(0));
}

BOOST_AUTO_TEST_CASE(sighup_allow_uid_lets_the_new_uid_in, *utf::precondition(root_only)) {
    TempDir dir;
    const std::string config = dir.write_file("d.conf", "allow-uid = 0\n");
    Daemon daemon = start_daemon(dir, DaemonOptions::at(abstract_name(), {"--config", config}));
    BOOST_TEST(probe_as(daemon.socket, nobody, nobody).outcome == Outcome::closed);

    dir.write_file("d.conf", "allow-uid = 0,65534\n");
    const auto log_size = daemon.process.stderr_text().size();
    daemon.process.signal(SIGHUP);
    BOOST_TEST(wait_until(
        [&] {
            return daemon.process.stderr_text().find("reloaded", log_size) != std::string::npos;
        },
        5s));
    ClientRun after = probe_as(daemon.socket, nobody, nobody);
    BOOST_TEST(after.outcome == Outcome::echoed, "after reload: " << after.outcome);
    BOOST_TEST(probe_here(daemon.socket) == Outcome::echoed);
    BOOST_TEST(stop_daemon(daemon).exited_with(0));
}

// ---- --max-connections-per-uid ----

namespace {

// Connects as `uid`: SO_PEERCRED records the credentials of connect(), so only the effective uid
// is switched, and back to root right after.
FileDescriptor connect_as(const std::string& socket, uid_t uid) {
    if (::seteuid(uid) != 0)
        throw std::runtime_error(std::string("seteuid: ") + std::strerror(errno));
    auto attempt = try_connect_unix(socket);
    if (::seteuid(0) != 0)
        throw std::runtime_error(std::string("seteuid back to root: ") + std::strerror(errno));
    if (!attempt.fd.valid())
        throw std::runtime_error("connect to " + socket + ": " + std::strerror(attempt.error));
    set_io_timeout(attempt.fd.get(), 5s);
    return std::move(attempt.fd);
}

// True when the daemon echoes a byte on `fd`; false when it closes the connection instead.
bool echoes(const FileDescriptor& fd) {
    if (::send(fd.get(), "!", 1, MSG_NOSIGNAL) != 1)
        return false;
    char byte = 0;
    return ::recv(fd.get(), &byte, 1, 0) == 1 && byte == '!';
}

std::vector<FileDescriptor> connect_many_as(const std::string& socket, uid_t uid,
                                            std::size_t count) {
    std::vector<FileDescriptor> connections;
    for (std::size_t i = 0; i < count; ++i)
        connections.push_back(connect_as(socket, uid));
    return connections;
}

std::size_t count_echoing(const std::vector<FileDescriptor>& connections) {
    std::size_t echoing = 0;
    for (const auto& connection : connections)
        echoing += echoes(connection) ? 1 : 0;
    return echoing;
}

constexpr uid_t first_user = 40001;
constexpr uid_t second_user = 40002;

} // namespace

BOOST_AUTO_TEST_CASE(a_uid_at_its_cap_gets_no_more_while_other_uids_are_served,
                     *utf::precondition(root_only)) {
    TempDir dir;
    Daemon daemon =
        start_daemon(dir, DaemonOptions::at(abstract_name(), {"--max-connections-per-uid", "3"}));
    const auto held = connect_many_as(daemon.socket, first_user, 3);
    BOOST_TEST(count_echoing(held) == 3u);
    // One more of the same uid is closed before its byte is echoed...
    const auto extra = connect_as(daemon.socket, first_user);
    BOOST_TEST(!echoes(extra), "a fourth connection of uid " << first_user << " was served");
    // ...and logged with its uid and the reason.
    BOOST_TEST(wait_until(
                   [&] {
                       for (const auto& line : non_empty_lines(daemon.process.stderr_text()))
                           if (line_names(line, "uid", first_user) &&
                               line.find("max-connections-per-uid") != std::string::npos)
                               return true;
                       return false;
                   },
                   5s),
               "refusal not logged; stderr: " << daemon.process.stderr_text());
    // Another user still gets in, and root is never capped.
    BOOST_TEST(count_echoing(connect_many_as(daemon.socket, second_user, 3)) == 3u);
    BOOST_TEST(count_echoing(connect_many_as(daemon.socket, 0, 5)) == 5u);
    // The held connections were not disturbed.
    BOOST_TEST(count_echoing(held) == 3u);
    BOOST_TEST(stop_daemon(daemon).exited_with(0));
}

BOOST_AUTO_TEST_CASE(a_closed_connection_gives_its_uid_a_slot_back, *utf::precondition(root_only)) {
    TempDir dir;
    Daemon daemon =
        start_daemon(dir, DaemonOptions::at(abstract_name(), {"--max-connections-per-uid", "2"}));
    auto held = connect_many_as(daemon.socket, first_user, 2);
    BOOST_REQUIRE(count_echoing(held) == 2u);
    BOOST_REQUIRE(!echoes(connect_as(daemon.socket, first_user)));
    held.pop_back();
    // The count drops when the daemon has seen the close: poll with new connections.
    BOOST_TEST(wait_until([&] { return echoes(connect_as(daemon.socket, first_user)); }, 5s, 20ms),
               "the uid never got its slot back");
    BOOST_TEST(stop_daemon(daemon).exited_with(0));
}

BOOST_AUTO_TEST_CASE(sighup_changes_the_per_uid_cap, *utf::precondition(root_only)) {
    TempDir dir;
    const auto config = dir.write_file("d.conf", "max-connections-per-uid = 1\n");
    Daemon daemon = start_daemon(dir, DaemonOptions::at(abstract_name(), {"--config", config}));
    const auto first = connect_as(daemon.socket, first_user);
    BOOST_REQUIRE(echoes(first));
    BOOST_REQUIRE(!echoes(connect_as(daemon.socket, first_user)));

    dir.write_file("d.conf", "max-connections-per-uid = 3\n");
    const auto log_size = daemon.process.stderr_text().size();
    daemon.process.signal(SIGHUP);
    BOOST_REQUIRE(wait_until(
        [&] {
            return daemon.process.stderr_text().find("reloaded", log_size) != std::string::npos;
        },
        5s));
    const auto more = connect_many_as(daemon.socket, first_user, 2);
    BOOST_TEST(count_echoing(more) == 2u, "the raised cap was not applied");
    BOOST_TEST(!echoes(connect_as(daemon.socket, first_user)), "the cap of 3 was not kept");

    // 0 lifts the cap.
    dir.write_file("d.conf", "max-connections-per-uid = 0\n");
    daemon.process.signal(SIGHUP);
    BOOST_TEST(wait_until([&] { return echoes(connect_as(daemon.socket, first_user)); }, 5s));
    BOOST_TEST(stop_daemon(daemon).exited_with(0));
}

// ---- abstract sockets ----

std::size_t abstract_warnings(const std::string& log) {
    std::size_t count = 0;
    for (const auto& line : non_empty_lines(log))
        if (line.find("warning") != std::string::npos &&
            line.find("no file permissions") != std::string::npos)
            ++count;
    return count;
}

BOOST_AUTO_TEST_CASE(an_abstract_socket_without_allow_list_is_warned_about_once_at_start) {
    TempDir dir;
    const auto name = abstract_name();
    Daemon open = start_daemon(dir, DaemonOptions::at(name));
    const auto log = open.process.stderr_text();
    BOOST_TEST(abstract_warnings(log) == 1u, log);
    BOOST_TEST(log.find(name) != std::string::npos, log);
    BOOST_TEST(stop_daemon(open).exited_with(0));

    Daemon restricted = start_daemon(dir, DaemonOptions::at(name, {"--allow-uid", "0"}));
    BOOST_TEST(abstract_warnings(restricted.process.stderr_text()) == 0u);
    BOOST_TEST(stop_daemon(restricted).exited_with(0));

    Daemon path_socket = start_daemon(dir);
    BOOST_TEST(abstract_warnings(path_socket.process.stderr_text()) == 0u);
    BOOST_TEST(stop_daemon(path_socket).exited_with(0));
}
