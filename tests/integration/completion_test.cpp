// The bash completions of uds-echo and uds-echod, run in bash with Debian's bash-completion
// package, against the built binaries (whose --help they read).
#define BOOST_TEST_MODULE integration_completion
#include <boost/test/unit_test.hpp>

#include "process.hpp"

#include <filesystem>
#include <set>
#include <string>
#include <vector>

using namespace uds_echo::test;
namespace fs = std::filesystem;

namespace {

const char* const bash_completion = "/usr/share/bash-completion/bash_completion";

// Loads bash-completion and one completion file, fills COMP_WORDS as bash does for a command line
// whose last word is being completed, calls the function and prints COMPREPLY, one per line.
const char* const driver = R"(source "$1" || exit 2
source "$2" || exit 2
function=$3
shift 3
COMP_WORDS=("$@")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
COMP_LINE="${COMP_WORDS[*]}"
COMP_POINT=${#COMP_LINE}
"$function"
printf '%s\n' "${COMPREPLY[@]}")";

fs::path source_dir() {
    return fs::path(__FILE__).parent_path().parent_path().parent_path();
}

// The offers for the last of `words` (words[0] is the program, as typed).
std::set<std::string> offers(const std::string& file, const std::string& function,
                             const std::vector<std::string>& words) {
    ProcessOptions options;
    options.argv = {
        "/bin/bash", "-c", driver, "completion", bash_completion, (source_dir() / file).string(),
        function};
    options.argv.insert(options.argv.end(), words.begin(), words.end());
    const auto result = run(options);
    BOOST_REQUIRE_MESSAGE(result.status.exited_with(0), result.status << ": " << result.err);
    const auto lines = non_empty_lines(result.out);
    return {lines.begin(), lines.end()};
}

std::set<std::string> client(const std::vector<std::string>& words) {
    std::vector<std::string> line{client_binary()};
    line.insert(line.end(), words.begin(), words.end());
    return offers("client/bash-completion/uds-echo", "_uds_echo", line);
}

std::set<std::string> daemon(const std::vector<std::string>& words) {
    std::vector<std::string> line{daemon_binary()};
    line.insert(line.end(), words.begin(), words.end());
    return offers("daemon/bash-completion/uds-echod", "_uds_echod", line);
}

// The precondition of every test here: Boost.Test reports them skipped without it.
boost::test_tools::assertion_result have_bash_completion(boost::unit_test::test_unit_id) {
    boost::test_tools::assertion_result result(fs::exists(bash_completion));
    if (!result)
        result.message() << "skipped: " << bash_completion
                         << " is missing (package bash-completion)";
    return result;
}

using Offers = std::set<std::string>;

} // namespace

BOOST_AUTO_TEST_CASE(client_subcommands, *boost::unit_test::precondition(have_bash_completion)) {
    BOOST_TEST((client({""}) == Offers{"bench", "help", "ping"}));
    BOOST_TEST((client({"help", ""}) == Offers{"bench", "ping"}));
    BOOST_TEST(client({"ping", ""}).empty());
}

BOOST_AUTO_TEST_CASE(client_options_of_each_form,
                     *boost::unit_test::precondition(have_bash_completion)) {
    BOOST_TEST((client({"--s"}) == Offers{"--socket"}));
    BOOST_TEST((client({"ping", "--c"}) == Offers{"--count"}));
    BOOST_TEST((client({"bench", "--c"}) == Offers{"--churn", "--connections"}));
    // --churn takes no value: what follows it is another option.
    BOOST_TEST((client({"bench", "--churn", "--j"}) == Offers{"--json"}));
    // A number is expected after these: nothing to offer.
    BOOST_TEST(client({"bench", "-c", ""}).empty());
    BOOST_TEST(client({"ping", "--size", ""}).empty());
}

BOOST_AUTO_TEST_CASE(daemon_options_and_values,
                     *boost::unit_test::precondition(have_bash_completion)) {
    BOOST_TEST((daemon({"--max-c"}) == Offers{"--max-connections", "--max-connections-per-uid"}));
    BOOST_TEST((daemon({"--log-l"}) == Offers{"--log-level"}));
    BOOST_TEST(
        (daemon({"--log-level", ""}) == Offers{"debug", "error", "info", "trace", "warning"}));
    BOOST_TEST((daemon({"--log-format", "j"}) == Offers{"journal", "json"}));
    BOOST_TEST(daemon({"--threads", ""}).empty());
}
