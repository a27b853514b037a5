// The documentation keeps up with the programs: every long option that `uds-echod --help` lists
// appears in uds-echod(8), in uds-echo.conf(5) and in the shipped config/uds-echo.conf (except the
// command-line-only ones), and every option of `uds-echo --help` (and of its subcommands) appears
// in uds-echo(1). The binaries come from $UDS_ECHOD and $UDS_ECHO, the documents from the source
// tree next to this file.
#define BOOST_TEST_MODULE documentation
#include <boost/test/unit_test.hpp>

#include "process.hpp"

#include <filesystem>
#include <regex>
#include <set>
#include <sstream>

using namespace uds_echo::test;
namespace fs = std::filesystem;

namespace {

const std::set<std::string> command_line_only = {"config", "check-config", "help", "version"};

fs::path source_dir() {
    const fs::path here(__FILE__);
    if (!here.is_absolute())
        throw std::runtime_error("__FILE__ is not absolute (" + here.string() +
                                 "); cannot find the documents");
    return here.parent_path().parent_path().parent_path();
}

// Man page source as plain text, enough to find option names: roff writes a hyphen as `\-`, and
// font changes (`\fB`, `\fR`, ...) may sit between the parts of a name.
std::string man_text(const fs::path& path) {
    auto text = read_file(path);
    text = std::regex_replace(text, std::regex(R"(\\f[BIRP])"), "");
    text = std::regex_replace(text, std::regex(R"(\\f\(..)"), "");
    text = std::regex_replace(text, std::regex(R"(\\-)"), "-");
    text = std::regex_replace(text, std::regex(R"(\\\(hy)"), "-");
    return text;
}

// The long options of a --help text: every `--name` on the lines that describe options (those
// that start with blanks and a dash), whatever the layout (`-c, --config FILE` or Boost's
// `-s [ --socket ] PATH`).
std::set<std::string> long_options(const std::string& help) {
    std::set<std::string> names;
    const std::regex option_line(R"(^\s+-)");
    const std::regex long_option(R"(--([a-z][a-z0-9-]*))");
    std::istringstream lines(help);
    for (std::string line; std::getline(lines, line);) {
        if (!std::regex_search(line, option_line))
            continue;
        for (std::sregex_iterator it(line.begin(), line.end(), long_option), end; it != end; ++it)
            names.insert((*it)[1]);
    }
    return names;
}

// `word` occurs in `text` as a whole option name: not inside a longer name.
bool contains_name(const std::string& text, const std::string& word) {
    const auto is_name_char = [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    };
    for (auto at = text.find(word); at != std::string::npos; at = text.find(word, at + 1)) {
        const bool starts = at == 0 || !is_name_char(text[at - 1]) ||
                            (at >= 2 && text.compare(at - 2, 2, "--") == 0);
        const auto after = at + word.size();
        const bool ends = after == text.size() || !is_name_char(text[after]);
        if (starts && ends)
            return true;
    }
    return false;
}

std::string help_of(const std::vector<std::string>& argv) {
    const auto result = run(ProcessOptions{argv, {}, std::nullopt, -1, {}});
    BOOST_REQUIRE_MESSAGE(result.status.exited_with(0),
                          argv[0] << " --help: " << result.status << ": " << result.err);
    return result.out;
}

std::set<std::string> daemon_options() {
    const auto names = long_options(help_of({daemon_binary(), "--help"}));
    // A layout change that breaks the parsing must not pass as "nothing to check".
    BOOST_REQUIRE_MESSAGE(names.size() >= 15,
                          "only " << names.size() << " long options found in uds-echod --help");
    return names;
}

// `name = ...` lines of the shipped config file, commented out or not.
std::set<std::string> config_file_names(const std::string& text) {
    std::set<std::string> names;
    const std::regex setting(R"(^#?([a-z][a-z0-9-]*) *=)");
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
        std::smatch match;
        if (std::regex_search(line, match, setting))
            names.insert(match[1]);
    }
    return names;
}

} // namespace

BOOST_AUTO_TEST_CASE(every_daemon_option_is_in_uds_echod_8) {
    const auto page = man_text(source_dir() / "docs/uds-echod.8");
    for (const auto& name : daemon_options())
        BOOST_CHECK_MESSAGE(contains_name(page, "--" + name),
                            "docs/uds-echod.8 does not mention --" << name);
}

// Outside the examples (which show other commands' options too), every `--name` is a real option.
BOOST_AUTO_TEST_CASE(uds_echod_8_names_no_unknown_option) {
    auto page = man_text(source_dir() / "docs/uds-echod.8");
    page = std::regex_replace(page, std::regex(R"(\n\.EX\n[\s\S]*?\n\.EE\n)"), "\n");
    const auto known = daemon_options();
    const std::regex long_option(R"((^|[^a-z0-9-])--([a-z][a-z0-9-]*))");
    for (std::sregex_iterator it(page.begin(), page.end(), long_option), end; it != end; ++it)
        BOOST_CHECK_MESSAGE(known.count((*it)[2]) == 1,
                            "docs/uds-echod.8 names --" << (*it)[2] << ", which uds-echod lacks");
}

BOOST_AUTO_TEST_CASE(every_file_option_is_in_uds_echo_conf_5) {
    const auto page = man_text(source_dir() / "docs/uds-echo.conf.5");
    for (const auto& name : daemon_options()) {
        if (command_line_only.count(name) == 0)
            BOOST_CHECK_MESSAGE(contains_name(page, name),
                                "docs/uds-echo.conf.5 does not describe " << name);
    }
}

BOOST_AUTO_TEST_CASE(shipped_config_file_lists_exactly_the_file_options) {
    const auto names = config_file_names(read_file(source_dir() / "config/uds-echo.conf"));
    const auto options = daemon_options();
    for (const auto& name : options) {
        if (command_line_only.count(name) == 0)
            BOOST_CHECK_MESSAGE(names.count(name) == 1,
                                "config/uds-echo.conf has no `#" << name << " =` line");
    }
    for (const auto& name : names)
        BOOST_CHECK_MESSAGE(options.count(name) == 1 && command_line_only.count(name) == 0,
                            "config/uds-echo.conf sets " << name
                                                         << ", which is not a config file option");
}

BOOST_AUTO_TEST_CASE(every_client_option_is_in_uds_echo_1) {
    const auto path = source_dir() / "docs/uds-echo.1";
    BOOST_TEST_REQUIRE(fs::exists(path), path << " is missing");
    const auto page = man_text(path);
    auto names = long_options(help_of({client_binary(), "--help"}));
    BOOST_REQUIRE_MESSAGE(names.size() >= 4,
                          "only " << names.size() << " long options found in uds-echo --help");
    // Subcommands print their own options when they have any.
    for (const std::string subcommand : {"ping", "bench"}) {
        const auto result =
            run(ProcessOptions{{client_binary(), subcommand, "--help"}, {}, std::nullopt, -1, {}});
        if (result.status.exited_with(0))
            names.merge(long_options(result.out));
    }
    for (const auto& name : names)
        BOOST_CHECK_MESSAGE(contains_name(page, "--" + name),
                            "docs/uds-echo.1 does not mention --" << name);
}
