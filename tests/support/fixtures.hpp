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

} // namespace uds_echo::test
