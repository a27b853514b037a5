// A Boost.Test precondition for the tests that need root (another uid, chown, setpriv): they skip,
// with the reason given, when the suite runs as another user.
#pragma once

#include <boost/test/unit_test.hpp>

#include <unistd.h>

namespace uds_echo::test {

struct RootOnly {
    const char* reason;

    boost::test_tools::assertion_result operator()(boost::unit_test::test_unit_id) const {
        boost::test_tools::assertion_result result(::geteuid() == 0);
        if (!result)
            result.message() << "skipped: needs root " << reason;
        return result;
    }
};

} // namespace uds_echo::test
