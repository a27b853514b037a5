// The client's tools (uds-echo(1)): ping, bench, the interactive line mode, help and usage errors,
// against the real uds-echod and against fake servers that stall, corrupt or close early. Every run
// is bounded: a tool that hangs fails the test instead of blocking it.
#define BOOST_TEST_MODULE integration_client_tools
#include <boost/test/unit_test.hpp>

#include "client_checks.hpp"
#include "fake_server.hpp"
#include "fixtures.hpp"
#include "process.hpp"

#include <boost/property_tree/json_parser.hpp>
#include <boost/property_tree/ptree.hpp>

#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using namespace uds_echo::test;

namespace {

double json_number(const boost::property_tree::ptree& json, const std::string& key) {
    return std::stod(json.get<std::string>(key));
}

// ---- fake servers ----

// Echoes `budget` bytes in total, over all connections, then answers nothing more.
FakeServer::Behaviour echo_then_stall(std::size_t budget) {
    auto left = std::make_shared<std::atomic<std::size_t>>(budget);
    return [left](int fd, const Stopping& stopping) {
        for (;;) {
            const std::string data = receive_some(fd, stopping);
            if (data.empty())
                return;
            std::size_t available = left->load();
            const std::size_t count = std::min(available, data.size());
            left->store(available - count);
            send_quietly(fd, std::string_view(data).substr(0, count));
            if (count < data.size())
                return hold_until_peer_closes(fd, stopping);
        }
    };
}

// Echoes `budget` bytes in total, then closes every connection (a daemon that died).
FakeServer::Behaviour echo_then_close(std::size_t budget) {
    auto left = std::make_shared<std::atomic<std::size_t>>(budget);
    return [left](int fd, const Stopping& stopping) {
        for (;;) {
            if (left->load() == 0)
                return;
            const std::string data = receive_some(fd, stopping);
            if (data.empty())
                return;
            const std::size_t available = left->load();
            const std::size_t count = std::min(available, data.size());
            left->store(available - count);
            send_quietly(fd, std::string_view(data).substr(0, count));
        }
    };
}

// Writes to the master side of a pseudo-terminal (not a socket: write_all() uses send()).
void type_into(int terminal, std::string_view text) {
    while (!text.empty()) {
        const ssize_t count = ::write(terminal, text.data(), text.size());
        if (count < 0 && errno == EINTR)
            continue;
        BOOST_REQUIRE_MESSAGE(count > 0, "write to the terminal: " << std::strerror(errno));
        text.remove_prefix(static_cast<std::size_t>(count));
    }
}

struct FakeFixture {
    TempDir dir;
    std::string path = dir.file("fake.sock");
};

} // namespace

// ---- ping ----

BOOST_FIXTURE_TEST_CASE(ping_counts_round_trips_and_summarises, DaemonFixture) {
    const auto result = run_client({"ping", "-c", "3", "-i", "0.05", "-s", daemon.socket});
    check_exit(result, exit_ok);
    BOOST_TEST(contains(result.out, "PING " + daemon.socket + ": 64 bytes"), result.out);
    for (const char* sequence : {"seq=1 time=", "seq=2 time=", "seq=3 time="})
        BOOST_TEST(contains(result.out, "64 bytes from " + daemon.socket + ": " + sequence),
                   result.out);
    BOOST_TEST(contains(result.out, "3 sent, 3 received, 0% loss"), result.out);
    BOOST_TEST(contains(result.out, "rtt min/avg/max/mdev = "), result.out);
    BOOST_TEST(result.err.empty(), result.err);
}

BOOST_FIXTURE_TEST_CASE(ping_options_before_the_subcommand_and_quiet, DaemonFixture) {
    const auto result =
        run_client({"-s", daemon.socket, "-q", "ping", "--size", "1K", "-c", "2", "-i", "0"});
    check_exit(result, exit_ok);
    BOOST_TEST(!contains(result.out, "seq="), result.out);
    BOOST_TEST(contains(result.out, "PING " + daemon.socket + ": 1024 bytes"), result.out);
    BOOST_TEST(contains(result.out, "2 sent, 2 received, 0% loss"), result.out);
}

BOOST_FIXTURE_TEST_CASE(ping_reports_a_server_that_stops_answering, FakeFixture) {
    FakeServer server(path, echo_then_stall(64));
    const auto start = Clock::now();
    const auto result = run_client({"ping", "-s", path, "-c", "3", "-i", "0.05", "-t", "0.3"});
    BOOST_TEST((Clock::now() - start < 5s));
    check_exit(result, exit_timeout);
    BOOST_TEST(contains(result.out, "seq=1 time="), result.out);
    BOOST_TEST(contains(result.out, "seq=2: no echo within 0.3 s"), result.out);
    BOOST_TEST(contains(result.out, "3 sent, 1 received, 66.6667% loss"), result.out);
}

BOOST_FIXTURE_TEST_CASE(ping_reports_a_daemon_lost_mid_run, FakeFixture) {
    FakeServer server(path, echo_then_close(64));
    const auto result = run_client({"ping", "-s", path, "-c", "3", "-i", "0.05"});
    check_exit(result, exit_data_error);
    BOOST_TEST(contains(result.out, "seq=1 time="), result.out);
    BOOST_TEST(contains(result.out, "seq=2: the daemon closed the connection"), result.out);
    BOOST_TEST(contains(result.out, "3 sent, 1 received"), result.out);
}

BOOST_FIXTURE_TEST_CASE(ping_without_a_daemon, FakeFixture) {
    const auto result = run_client({"ping", "-s", path, "-c", "1"});
    check_exit(result, exit_unavailable);
    BOOST_TEST(contains(result.err, "uds-echo: no daemon listens at " + path), result.err);
}

BOOST_FIXTURE_TEST_CASE(ping_ends_on_sigint_with_the_summary, DaemonFixture) {
    ProcessOptions options;
    options.argv = {client_binary(), "ping", "-s", daemon.socket, "-i", "0.05"};
    Process ping(options);
    BOOST_REQUIRE(wait_until([&] { return contains(ping.stdout_text(), "seq=2 "); }, 10s));
    ping.signal(SIGINT);
    const auto status = ping.wait_for_exit(5s);
    BOOST_REQUIRE(status.has_value());
    BOOST_TEST(status->exited_with(exit_ok), *status << " " << ping.stderr_text());
    BOOST_TEST(contains(ping.stdout_text(), "ping statistics ---"), ping.stdout_text());
    BOOST_TEST(contains(ping.stdout_text(), "0% loss"), ping.stdout_text());
}

// ---- bench ----

BOOST_FIXTURE_TEST_CASE(bench_counts_exactly_n_messages_as_json, DaemonFixture) {
    const auto result =
        run_client({"bench", "-s", daemon.socket, "-n", "2000", "-c", "8", "--pipeline", "4",
                    "--threads", "2", "--size", "100", "--json"});
    check_exit(result, exit_ok);
    BOOST_TEST(non_empty_lines(result.out).size() == 1u, result.out);
    const auto json = parse_json(result.out);
    BOOST_TEST(json_integer(json, "messages") == 2000);
    BOOST_TEST(json_integer(json, "bytes") == 200000);
    BOOST_TEST(json_integer(json, "errors") == 0);
    BOOST_TEST(json_integer(json, "connections") == 8);
    BOOST_TEST(json_integer(json, "connections_opened") == 8);
    BOOST_TEST(json.get<std::string>("connections_per_second") == "null");
    BOOST_TEST(json_integer(json, "threads") == 2);
    BOOST_TEST(json_number(json, "messages_per_second") > 0);
    BOOST_TEST(json_number(json, "latency_us.p50") > 0);
    BOOST_TEST(json_number(json, "latency_us.p50") <= json_number(json, "latency_us.p99"));
    BOOST_TEST(json_number(json, "latency_us.p99_9") <= json_number(json, "latency_us.max"));
    BOOST_TEST(result.err.empty(), result.err);
}

BOOST_FIXTURE_TEST_CASE(bench_text_report_for_a_duration, DaemonFixture) {
    // Options before and after the subcommand; not a terminal, so no progress line.
    const auto result = run_client(
        {"-s", daemon.socket, "bench", "-d", "0.3", "--warmup", "0.1", "-c", "2", "--size", "64K"});
    check_exit(result, exit_ok);
    for (const char* part : {"2 connections on 1 thread, 65536-byte messages", "messages ", "msg/s",
                             "MiB/s", "p50 ", "p90 ", "p99 ", "p99.9 ", "max ", "errors      0"})
        BOOST_TEST(contains(result.out, part), "stdout lacks '" << part << "': " << result.out);
    BOOST_TEST(!contains(result.out, "\r"), "a progress line on a non-terminal");
}

BOOST_FIXTURE_TEST_CASE(bench_churn_opens_a_connection_per_message, DaemonFixture) {
    const auto result =
        run_client({"bench", "-s", daemon.socket, "--churn", "-n", "300", "-c", "3", "--json"});
    check_exit(result, exit_ok);
    const auto json = parse_json(result.out);
    BOOST_TEST(json.get<std::string>("mode") == "churn");
    BOOST_TEST(json_integer(json, "messages") == 300);
    BOOST_TEST(json_integer(json, "connections_opened") == 300);
    BOOST_TEST(json_number(json, "connections_per_second") > 0);
}

BOOST_FIXTURE_TEST_CASE(bench_fails_on_a_corrupted_echo, FakeFixture) {
    FakeServer server(path, echo_corrupting_at(1000));
    const auto result =
        run_client({"bench", "-s", path, "-n", "1000", "-c", "2", "--pipeline", "8", "--json"});
    check_exit(result, exit_data_error);
    const auto json = parse_json(result.out);
    BOOST_TEST(json_integer(json, "errors") >= 1);
    BOOST_TEST(json_integer(json, "exit_code") == exit_data_error);
    BOOST_TEST(contains(result.err, "differed from what was sent at byte offset 1000"), result.err);
}

BOOST_FIXTURE_TEST_CASE(bench_reports_a_server_that_closes_early, FakeFixture) {
    FakeServer server(path, echo_then_close(640));
    const auto start = Clock::now();
    const auto result = run_client({"bench", "-s", path, "-d", "30", "-c", "1"});
    BOOST_TEST((Clock::now() - start < 5s));
    check_exit(result, exit_data_error);
    BOOST_TEST(contains(result.out, "errors      1"), result.out);
    BOOST_TEST(contains(result.err, "uds-echo: bench: the daemon closed a connection"), result.err);
}

BOOST_FIXTURE_TEST_CASE(bench_reports_a_server_that_stalls, FakeFixture) {
    FakeServer server(path, echo_then_stall(6400));
    const auto start = Clock::now();
    const auto result = run_client({"bench", "-s", path, "-d", "30", "-c", "2", "-t", "0.3"});
    BOOST_TEST((Clock::now() - start < 5s));
    check_exit(result, exit_timeout);
    BOOST_TEST(contains(result.err, "no echo within 0.3 s"), result.err);
}

// The first SIGINT lets the messages in flight come back (here they never do); the second closes
// every connection at once, on every thread, and the report still comes.
BOOST_FIXTURE_TEST_CASE(bench_waits_for_echoes_on_sigint_and_cuts_them_on_the_second, FakeFixture) {
    // A connection counts once its first message arrived: the load runs, and so does the
    // handling of signals, which starts before it.
    auto loaded = std::make_shared<std::atomic<int>>(0);
    FakeServer server(path, [loaded](int fd, const Stopping& stopping) {
        if (receive_some(fd, stopping).empty())
            return;
        ++*loaded;
        hold_until_peer_closes(fd, stopping);
    });
    ProcessOptions options;
    options.argv = {client_binary(), "bench", "-s",    path, "-d", "30", "-t", "30", "-c", "4",
                    "--threads",     "2",     "--json"};
    Process bench(options);
    BOOST_REQUIRE(wait_until([&] { return loaded->load() == 4; }, 10s));
    bench.signal(SIGINT);
    BOOST_TEST(!bench.wait_for_exit(500ms).has_value(), "ended with messages still in flight");
    bench.signal(SIGINT);
    const auto status = bench.wait_for_exit(5s);
    BOOST_REQUIRE(status.has_value());
    BOOST_TEST(status->exited_with(exit_ok), *status << " " << bench.stderr_text());
    const auto json = parse_json(bench.stdout_text());
    BOOST_TEST(json.get<std::string>("interrupted") == "true");
    BOOST_TEST(json_integer(json, "messages") == 0);
    BOOST_TEST(json_integer(json, "errors") == 0);
}

BOOST_FIXTURE_TEST_CASE(bench_churn_reports_a_missing_daemon, FakeFixture) {
    const auto result = run_client({"bench", "-s", path, "--churn", "-n", "10"});
    check_exit(result, exit_unavailable);
    BOOST_TEST(contains(result.err, "no daemon listens at " + path), result.err);
}

// ---- interactive, help, usage ----

BOOST_FIXTURE_TEST_CASE(a_terminal_gets_the_line_mode, DaemonFixture) {
    // The client's stdin is a pseudo-terminal; its stdout stays a file.
    FileDescriptor master(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
    BOOST_REQUIRE(master.valid());
    BOOST_REQUIRE(::grantpt(master.get()) == 0 && ::unlockpt(master.get()) == 0);
    FileDescriptor terminal(::open(::ptsname(master.get()), O_RDWR | O_NOCTTY | O_CLOEXEC));
    BOOST_REQUIRE(terminal.valid());
    ProcessOptions options;
    options.argv = {client_binary(), "-s", daemon.socket};
    options.stdin_fd = terminal.get();
    Process client(options);
    type_into(master.get(), "first line\nsecond\n");
    BOOST_REQUIRE(wait_until([&] { return contains(client.stdout_text(), "second\n"); }, 10s));
    type_into(master.get(), "\x04"); // end of input on a terminal (Ctrl-D at a line start)
    const auto status = client.wait_for_exit(10s);
    BOOST_REQUIRE(status.has_value());
    BOOST_TEST(status->exited_with(exit_ok), *status << " " << client.stderr_text());
    BOOST_TEST(client.stdout_text() == "first line\nsecond\n");
    // Where it is connected and how to leave, on standard error: the output stays the echo.
    BOOST_TEST(contains(client.stderr_text(), "connected to " + daemon.socket),
               client.stderr_text());
    BOOST_TEST(contains(client.stderr_text(), "Ctrl-D"), client.stderr_text());
}

BOOST_AUTO_TEST_CASE(a_double_dash_sends_the_word_ping, *boost::unit_test::timeout(30)) {
    TempDir dir;
    Daemon daemon = start_daemon(dir);
    const auto result = run_client({"-s", daemon.socket, "--", "ping"});
    check_exit(result, exit_ok);
    BOOST_TEST(result.out == "ping\n");
}

// Every help fits 80 columns, has no trailing blanks and no double blank line, and lays options
// out as uds-echod does (`-s, --socket PATH`).
void check_help_layout(const std::string& help) {
    BOOST_TEST(help.find("\n\n\n") == std::string::npos, "a double blank line:\n" << help);
    BOOST_TEST(contains(help, "  -s, --socket PATH"), help);
    BOOST_TEST(!contains(help, "[ --"), "Boost's layout:\n" << help);
    std::istringstream lines(help);
    for (std::string line; std::getline(lines, line);) {
        BOOST_TEST(line.size() <= 80u, "longer than 80 columns: " << line);
        BOOST_TEST((line.empty() || line.back() != ' '), "trailing blank: '" << line << "'");
    }
}

BOOST_AUTO_TEST_CASE(help_for_each_subcommand) {
    const auto general = run_client({"--help"});
    check_exit(general, exit_ok);
    check_help_layout(general.out);
    for (const char* part : {"ping [PING OPTION]", "bench [BENCH OPTION]", "--socket", "--quiet",
                             "uds-echo help", "uds-echo -- ping", "Exit status"})
        BOOST_TEST(contains(general.out, part), general.out);

    const auto ping = run_client({"ping", "--help"});
    check_exit(ping, exit_ok);
    check_help_layout(ping.out);
    for (const char* part :
         {"Usage: uds-echo ping", "--count", "--interval", "--size", "--timeout", "Exit status"})
        BOOST_TEST(contains(ping.out, part), ping.out);

    const auto bench = run_client({"-h", "bench"});
    check_exit(bench, exit_ok);
    check_help_layout(bench.out);
    for (const char* part :
         {"Usage: uds-echo bench", "--connections", "--pipeline", "--duration", "--messages",
          "--warmup", "--threads", "--churn", "--json", "Exit status"})
        BOOST_TEST(contains(bench.out, part), bench.out);

    const auto version = run_client({"bench", "--version"});
    check_exit(version, exit_ok);
    BOOST_TEST(version.out.rfind("uds-echo ", 0) == 0, version.out);
}

BOOST_AUTO_TEST_CASE(help_as_a_subcommand) {
    const auto general = run_client({"help"});
    check_exit(general, exit_ok);
    BOOST_TEST(general.out == run_client({"--help"}).out);
    const auto ping = run_client({"help", "ping"});
    check_exit(ping, exit_ok);
    BOOST_TEST(ping.out == run_client({"ping", "--help"}).out);
    const auto bench = run_client({"help", "bench"});
    check_exit(bench, exit_ok);
    BOOST_TEST(bench.out == run_client({"bench", "--help"}).out);
    check_exit(run_client({"help", "nothing"}), exit_usage);
}

BOOST_AUTO_TEST_CASE(a_misspelt_subcommand_is_refused, *boost::unit_test::timeout(30)) {
    for (const char* word : {"pign", "pin", "bnech", "benchh", "hlep"}) {
        const auto result = run_client({"-s", "/nonexistent/x.sock", word});
        check_exit(result, exit_usage);
        BOOST_TEST(contains(result.err, std::string("\"") + word + "\": unknown subcommand"),
                   result.err);
        BOOST_TEST(contains(result.err, std::string("uds-echo -- ") + word), result.err);
    }
    // Real words one letter away, and sentences, are messages.
    TempDir dir;
    Daemon daemon = start_daemon(dir);
    for (const auto& words : {std::vector<std::string>{"pong"}, {"pign", "now"}, {"--", "pign"}}) {
        std::vector<std::string> args{"-s", daemon.socket};
        args.insert(args.end(), words.begin(), words.end());
        check_exit(run_client(args), exit_ok);
    }
}

BOOST_AUTO_TEST_CASE(ping_dash_s_with_a_number_points_to_size) {
    const auto result = run_client({"ping", "-s", "1000"});
    check_exit(result, exit_usage);
    BOOST_TEST(contains(result.err, "--size 1000"), result.err);
}

// One line each, worded as uds-echod words its own, naming the offending word.
BOOST_AUTO_TEST_CASE(usage_errors_of_the_subcommands) {
    const std::vector<std::pair<std::vector<std::string>, std::string>> bad = {
        {{"ping", "-c", "0"}, "--count: \"0\" is not a count (expected 1 or more)"},
        {{"ping", "-c", "abc"}, "--count: \"abc\" is not a count (expected 1 or more)"},
        {{"ping", "-c", "-1"}, "--count: \"-1\""},
        {{"ping", "-i", "x"}, "--interval: \"x\""},
        {{"ping", "extra"}, "unexpected argument \"extra\""},
        {{"ping", "--pipeline", "2"}, "--pipeline: unknown option"},
        {{"ping", "--frobnicate"}, "--frobnicate: unknown option"},
        {{"ping", "--count"}, "--count: missing value"},
        {{"bench", "-d", "1", "-n", "5"}, "--duration and --messages exclude each other"},
        {{"bench", "--size", "0"}, "--size: \"0\""},
        {{"bench", "--size", "3X"}, "--size: \"3X\""},
        {{"bench", "-c", "0"}, "--connections: \"0\" is not a count (expected 1 to 100000)"},
        {{"bench", "--churn", "--pipeline", "4"}, "--pipeline: does not apply to --churn"},
        {{"bench", "--threads", "0"}, "--threads: \"0\""},
        {{"bench", "-t", "0"}, "--timeout: \"0\""},
        {{"bench", "surplus"}, "unexpected argument \"surplus\""},
    };
    for (const auto& [args, message] : bad) {
        const auto result = run_client(args);
        std::string joined;
        for (const auto& arg : args)
            joined += arg + " ";
        BOOST_TEST(result.status.exited_with(exit_usage), joined << "-> " << result.status);
        BOOST_TEST(non_empty_lines(result.err).size() == 1u, joined << "-> " << result.err);
        BOOST_TEST(contains(result.err, "uds-echo: " + message), joined << "-> " << result.err);
    }
}

// ---- bench output ----

BOOST_FIXTURE_TEST_CASE(bench_json_without_a_daemon_is_one_object, FakeFixture) {
    const auto result = run_client({"bench", "-s", path, "-n", "10", "--json"});
    check_exit(result, exit_unavailable);
    BOOST_TEST(non_empty_lines(result.out).size() == 1u, result.out);
    const auto json = parse_json(result.out);
    BOOST_TEST(json_integer(json, "exit_code") == exit_unavailable);
    BOOST_TEST(contains(json.get<std::string>("error"), "no daemon listens at " + path));
    // Figures that were never measured are null, not zero.
    BOOST_TEST(contains(result.out, "\"seconds\":null"), result.out);
    BOOST_TEST(contains(result.out, "\"p99\":null"), result.out);
    BOOST_TEST(contains(result.out, "\"messages_per_second\":null"), result.out);
}

BOOST_AUTO_TEST_CASE(bench_json_usage_error_is_one_object) {
    const auto result = run_client({"bench", "--json", "-c", "0"});
    check_exit(result, exit_usage);
    BOOST_TEST(non_empty_lines(result.out).size() == 1u, result.out);
    const auto json = parse_json(result.out);
    BOOST_TEST(json_integer(json, "exit_code") == exit_usage);
    BOOST_TEST(contains(json.get<std::string>("error"), "--connections"));
}

BOOST_FIXTURE_TEST_CASE(bench_report_has_min_mean_and_a_distribution, DaemonFixture) {
    const auto result =
        run_client({"bench", "-s", daemon.socket, "--churn", "-n", "200", "-c", "2"});
    check_exit(result, exit_ok);
    for (const char* part : {"min ", "mean ", "latency distribution", "100.0000%", "connections/s"})
        BOOST_TEST(contains(result.out, part), "stdout lacks '" << part << "': " << result.out);
    // --pipeline does not apply to churn: the header does not claim one.
    BOOST_TEST(!contains(result.out, "pipeline"), result.out);
}

BOOST_FIXTURE_TEST_CASE(bench_prints_a_progress_line_when_not_on_a_terminal, DaemonFixture) {
    const auto result = run_client({"bench", "-s", daemon.socket, "-d", "5.5", "-c", "1"});
    check_exit(result, exit_ok);
    BOOST_TEST(contains(result.out, "/5.5 s"), result.out);
    BOOST_TEST(contains(result.out, "p99 "), result.out);
    BOOST_TEST(!contains(result.out, "\r"), result.out);
    const auto quiet = run_client({"bench", "-q", "-s", daemon.socket, "-d", "0.2", "-c", "1"});
    BOOST_TEST(!contains(quiet.out, "/0.2 s"), quiet.out);
}
