// Boost.Test pieces the integration tests share: a fixture with a running daemon, and the check
// that an echo is the data sent.
#pragma once

#include "process.hpp"

#include <boost/test/unit_test.hpp>

#include <string>

namespace uds_echo::test {

// A daemon with the default options in a temporary directory of its own, for each test case.
struct DaemonFixture {
    TempDir dir;
    Daemon daemon = start_daemon(dir);

    DaemonFixture() = default;
    DaemonFixture(const DaemonFixture&) = delete;
    DaemonFixture& operator=(const DaemonFixture&) = delete;
    ~DaemonFixture() {
        // None of these tests ends the daemon: one that died on the way fails the test.
        BOOST_CHECK_MESSAGE(daemon.process.running(),
                            "uds-echod ended during the test: "
                                << (daemon.process.status() ? daemon.process.status()->describe()
                                                            : std::string("?"))
                                << "; stderr: " << daemon.process.stderr_text());
    }
};

// `echoed` is `sent`; a difference is reported by its offset, not by printing megabytes.
inline void check_same(const std::string& echoed, const std::string& sent) {
    const auto difference = first_difference(echoed, sent);
    BOOST_TEST(!difference.has_value(), "echo differs at byte "
                                            << difference.value_or(0) << " (sent " << sent.size()
                                            << " bytes, got " << echoed.size() << ")");
}

// Every form of the client of `type` ("seqpacket", "datagram") against the socket at `socket`:
// a one-shot message, `stream_bytes` streamed, and two pings, each exit 0 and echoed exactly.
inline void check_every_client_form(const std::string& type, const std::string& socket,
                                    std::size_t stream_bytes) {
    const auto one_shot = run_client({"--type", type, "-s", socket, "hello", type});
    BOOST_TEST(one_shot.status.exited_with(exit_ok), one_shot.err);
    BOOST_TEST(one_shot.out == "hello " + type + "\n");

    ProcessOptions streaming;
    streaming.stdin_data = random_bytes(stream_bytes, stream_bytes);
    const auto streamed = run_client({"--type", type, "-s", socket, "-"}, streaming);
    BOOST_TEST(streamed.status.exited_with(exit_ok), streamed.err);
    BOOST_TEST((streamed.out == *streaming.stdin_data));

    const auto ping = run_client({"--type", type, "-s", socket, "ping", "-c", "2", "-i", "0"});
    BOOST_TEST(ping.status.exited_with(exit_ok), ping.err);
    BOOST_TEST(contains(ping.out, "2 received"), ping.out);
}

} // namespace uds_echo::test
