// Every row of the mutation check (tests/mutation/check.py) still names source text that occurs
// exactly once. The check itself takes minutes and runs in CI only; this lint runs its row
// lookup alone, so that a check rewritten or re-indented in the daemon is caught by the default
// suite, with the row to mend named.
#define BOOST_TEST_MODULE mutation rows
#include <boost/test/unit_test.hpp>

#include "process.hpp"

#include <filesystem>

using namespace uds_echo::test;
namespace fs = std::filesystem;

BOOST_AUTO_TEST_CASE(every_mutation_row_names_text_found_once_in_the_sources) {
    const fs::path source_dir = fs::path(UDS_ECHO_SOURCE_DIR);
    ProcessOptions options;
    options.argv = {"/usr/bin/python3", (source_dir / "tests/mutation/check.py").string(),
                    source_dir.string(), "--rows-only"};
    const auto result = run(options, 60s);
    BOOST_TEST_INFO("stdout: " << result.out << "\nstderr: " << result.err);
    BOOST_TEST(result.status.exited_with(0));
}
