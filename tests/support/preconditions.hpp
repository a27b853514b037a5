// Boost.Test preconditions (`*boost::unit_test::precondition(...)`) for the tests that can only
// run on some machines: when one does not hold, Boost.Test reports the test skipped with the
// reason given, never passed.
#pragma once

#include "common/paths.hpp"

#include <boost/test/unit_test.hpp>

#include <sys/stat.h>
#include <unistd.h>

namespace uds_echo::test {

// The test needs root (another uid, chown, setpriv).
struct RootOnly {
    const char* reason;

    boost::test_tools::assertion_result operator()(boost::unit_test::test_unit_id) const {
        boost::test_tools::assertion_result result(::geteuid() == 0);
        if (!result)
            result.message() << "skipped: needs root " << reason;
        return result;
    }
};

// The machine has no uds-echo config file or system socket of its own: they would change which
// paths the client tries by default.
inline boost::test_tools::assertion_result no_system_uds_echo(boost::unit_test::test_unit_id) {
    struct stat ignored;
    boost::test_tools::assertion_result result(::lstat(system_config_path, &ignored) != 0 &&
                                               ::lstat(system_socket_path, &ignored) != 0);
    if (!result)
        result.message() << "skipped: this machine has its own " << system_config_path << " or "
                         << system_socket_path;
    return result;
}

} // namespace uds_echo::test
