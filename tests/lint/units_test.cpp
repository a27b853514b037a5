// Lints the configured unit files (the build tree's systemd/ folder, from $UDS_ECHO_UNIT_DIR, and
// the per-user instance's in its user/ folder): `systemd-analyze verify` (with --user for the
// user units) prints nothing for any of them, and `systemd-analyze security --offline=true` rates
// every service at most 1.0 (docs/testing.md, "Lints").
//
// verify exits 0 even for unknown keys or bad values, so the check is "no output at all". It also
// resolves every Exec*= command and the whole default dependency tree, which would make the
// result depend on this machine (is uds-echod installed? which units exist?). So each check runs
// against a scratch --root: a copy of the distribution's unit directory, the units under test in
// /etc/systemd/system, and an executable stub at every command path the units name.
#define BOOST_TEST_MODULE unit files
#include <boost/test/unit_test.hpp>

#include "process.hpp"

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

using namespace uds_echo::test;
namespace fs = std::filesystem;

namespace {

const std::vector<std::string> all_units = {"uds-echo.socket",          "uds-echo-seqpacket.socket",
                                            "uds-echo-datagram.socket", "uds-echo.service",
                                            "uds-echo-inetd.socket",    "uds-echo-inetd@.service"};
const std::vector<std::string> services = {"uds-echo.service", "uds-echo-inetd@.service"};
const std::vector<std::string> user_units = {"uds-echo.socket", "uds-echo-seqpacket.socket",
                                             "uds-echo-datagram.socket", "uds-echo.service"};

// Both usr-merged and split layouts exist; the first one present wins.
std::optional<std::string> first_existing(const std::vector<std::string>& candidates) {
    for (const auto& candidate : candidates)
        if (::access(candidate.c_str(), X_OK) == 0)
            return candidate;
    return std::nullopt;
}

std::optional<std::string> systemd_analyze() {
    return first_existing({"/usr/bin/systemd-analyze", "/bin/systemd-analyze"});
}

std::optional<std::string> system_unit_dir() {
    for (const std::string dir : {"/usr/lib/systemd/system", "/lib/systemd/system"})
        if (fs::exists(dir + "/sysinit.target"))
            return dir;
    return std::nullopt;
}

std::string unit_dir() {
    const char* dir = std::getenv("UDS_ECHO_UNIT_DIR");
    if (dir == nullptr || *dir == '\0')
        throw std::runtime_error("UDS_ECHO_UNIT_DIR is not set (CTest sets it to the build "
                                 "tree's systemd/ folder)");
    return dir;
}

// The command paths of every Exec*= line: the first word after systemd's prefix characters
// (-, @, :, +, !).
std::vector<std::string> exec_paths(const std::string& unit_text) {
    std::vector<std::string> paths;
    std::istringstream lines(unit_text);
    for (std::string line; std::getline(lines, line);) {
        if (line.rfind("Exec", 0) != 0)
            continue;
        const auto equals = line.find('=');
        if (equals == std::string::npos)
            continue;
        auto command = line.substr(equals + 1);
        const auto start = command.find_first_not_of("-@:+! \t");
        if (start == std::string::npos)
            continue;
        command = command.substr(start);
        paths.push_back(command.substr(0, command.find_first_of(" \t")));
    }
    return paths;
}

// What the preconditions below say when they do not hold: Boost.Test then reports the test as
// skipped with this message instead of failing it.
boost::test_tools::assertion_result have_systemd_analyze(boost::unit_test::test_unit_id) {
    boost::test_tools::assertion_result result(systemd_analyze().has_value() &&
                                               system_unit_dir().has_value());
    if (!result)
        result.message() << "systemd-analyze or the system unit directory is missing: "
                            "skipping the unit file lint";
    return result;
}

// The scratch root described at the top of the file, removed with its TempDir.
class ScratchRoot {
public:
    ScratchRoot() {
        const fs::path root(dir_.path());
        fs::create_directories(root / "usr/lib/systemd");
        fs::copy(*system_unit_dir(), root / "usr/lib/systemd/system",
                 fs::copy_options::recursive | fs::copy_options::copy_symlinks);
        fs::create_directories(units());
        for (const auto& unit : all_units) {
            const fs::path source = fs::path(unit_dir()) / unit;
            BOOST_TEST_REQUIRE(fs::exists(source), source << " was not configured");
            fs::copy_file(source, units() / unit);
            for (const auto& command : exec_paths(read_file(source)))
                add_stub(command);
        }
    }

    const std::string& path() const { return dir_.path(); }
    fs::path units() const { return fs::path(dir_.path()) / "etc/systemd/system"; }

private:
    // An executable at `command` inside the root, unless the unit names a relative command
    // (systemd then searches its own fixed PATH; verify would complain about that, rightly).
    void add_stub(const std::string& command) {
        if (command.empty() || command.front() != '/')
            return;
        const fs::path stub = fs::path(dir_.path()) / command.substr(1);
        if (fs::exists(stub))
            return;
        fs::create_directories(stub.parent_path());
        std::ofstream(stub) << "#!/bin/sh\nexit 0\n";
        fs::permissions(stub, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                  fs::perms::others_read | fs::perms::others_exec);
    }

    TempDir dir_;
};

// The user units for `systemd-analyze --user`, which takes no --root: copies in a scratch
// directory whose absolute Exec*= commands are rewritten to stubs inside it, and the directories
// a user manager needs ($XDG_RUNTIME_DIR, $XDG_CONFIG_HOME, $HOME) in there too, so that nothing
// depends on this machine or this user's own units.
class ScratchUserUnits {
public:
    ScratchUserUnits() {
        const fs::path root(dir_.path());
        for (const char* sub : {"units", "runtime", "config", "home", "bin"})
            fs::create_directories(root / sub);
        fs::permissions(root / "runtime", fs::perms::owner_all);
        for (const auto& unit : user_units) {
            const fs::path source = fs::path(unit_dir()) / "user" / unit;
            BOOST_TEST_REQUIRE(fs::exists(source), source << " was not configured");
            auto text = read_file(source);
            for (const auto& command : exec_paths(text)) {
                if (command.empty() || command.front() != '/')
                    continue;
                const auto stub = root / "bin" / fs::path(command).filename();
                std::ofstream(stub) << "#!/bin/sh\nexit 0\n";
                fs::permissions(stub, fs::perms::owner_all);
                // The stub's path ends with the command's ("/bin/kill"): search on after it.
                for (auto at = text.find(command); at != std::string::npos;
                     at = text.find(command, at + stub.string().size()))
                    text.replace(at, command.size(), stub.string());
            }
            std::ofstream(units() / unit) << text;
        }
    }

    fs::path units() const { return fs::path(dir_.path()) / "units"; }
    Environment environment() const {
        const fs::path root(dir_.path());
        return {{"XDG_RUNTIME_DIR", (root / "runtime").string()},
                {"XDG_CONFIG_HOME", (root / "config").string()},
                {"HOME", (root / "home").string()}};
    }

private:
    TempDir dir_;
};

RunResult analyze(const std::vector<std::string>& args, const Environment& environment = {}) {
    ProcessOptions options;
    options.argv = {*systemd_analyze()};
    options.argv.insert(options.argv.end(), args.begin(), args.end());
    // No pager, no colours, no attempt to reach a (missing) PID 1 or bus for anything.
    options.environment = environment;
    options.environment["SYSTEMD_PAGER"] = "";
    options.environment["SYSTEMD_COLORS"] = "0";
    return run(options, 120s);
}

// The summary line, e.g. "→ Overall exposure level for uds-echo.service: 0.2 SAFE", so that the
// log shows the score even when the test passes.
void show_exposure(const std::string& security_output) {
    const auto summary = security_output.rfind("Overall exposure level");
    if (summary != std::string::npos)
        BOOST_TEST_MESSAGE(
            security_output.substr(summary, security_output.find('\n', summary) - summary));
}

} // namespace

BOOST_AUTO_TEST_CASE(verify_prints_nothing, *boost::unit_test::precondition(have_systemd_analyze)) {
    const ScratchRoot root;
    for (const auto& unit : all_units) {
        BOOST_TEST_CONTEXT(unit) {
            const auto result = analyze(
                {"verify", "--man=no", "--root=" + root.path(), (root.units() / unit).string()});
            BOOST_TEST(result.status.exited_with(0), result.status);
            BOOST_TEST(result.out.empty(), "stdout: " << result.out);
            BOOST_TEST(result.err.empty(), "stderr: " << result.err);
        }
    }
}

BOOST_AUTO_TEST_CASE(services_are_sandboxed,
                     *boost::unit_test::precondition(have_systemd_analyze)) {
    const ScratchRoot root;
    for (const auto& unit : services) {
        BOOST_TEST_CONTEXT(unit) {
            // --threshold is the exposure times ten: 10 means "at most 1.0", exit 1 above it.
            const auto result =
                analyze({"security", "--offline=true", "--threshold=10", "--no-pager",
                         "--root=" + root.path(), (root.units() / unit).string()});
            BOOST_TEST(result.status.exited_with(0), result.status << "\n"
                                                                   << result.out << result.err);
            show_exposure(result.out);
        }
    }
}

BOOST_AUTO_TEST_CASE(user_units_verify_prints_nothing,
                     *boost::unit_test::precondition(have_systemd_analyze)) {
    const ScratchUserUnits scratch;
    std::vector<std::string> args = {"--user", "verify", "--man=no"};
    for (const auto& unit : user_units)
        args.push_back((scratch.units() / unit).string());
    const auto result = analyze(args, scratch.environment());
    BOOST_TEST(result.status.exited_with(0), result.status);
    BOOST_TEST(result.out.empty(), "stdout: " << result.out);
    BOOST_TEST(result.err.empty(), "stderr: " << result.err);
}

BOOST_AUTO_TEST_CASE(user_service_is_sandboxed,
                     *boost::unit_test::precondition(have_systemd_analyze)) {
    const ScratchUserUnits scratch;
    const auto result = analyze({"--user", "security", "--offline=true", "--threshold=10",
                                 "--no-pager", (scratch.units() / "uds-echo.service").string()},
                                scratch.environment());
    BOOST_TEST(result.status.exited_with(0), result.status << "\n" << result.out << result.err);
    show_exposure(result.out);
}

// One service behind three socket units, system and user alike (docs/architecture.md, "The socket
// units"): the service is handed all three; the datagram socket passes credentials from its
// creation on (the allow lists read them per datagram); the stream and seqpacket sockets do not,
// since every accepted connection would inherit SO_PASSCRED and pay for it on each message.
BOOST_AUTO_TEST_CASE(only_the_datagram_socket_passes_credentials) {
    for (const auto& dir : {fs::path(unit_dir()), fs::path(unit_dir()) / "user"}) {
        BOOST_TEST_CONTEXT(dir.string()) {
            const auto has_line = [&](const std::string& unit, const std::string& wanted) {
                std::istringstream lines(read_file((dir / unit).string()));
                for (std::string line; std::getline(lines, line);)
                    if (line == wanted)
                        return true;
                return false;
            };
            BOOST_TEST(has_line("uds-echo.service", "Sockets=uds-echo.socket "
                                                    "uds-echo-seqpacket.socket "
                                                    "uds-echo-datagram.socket"));
            BOOST_TEST(has_line("uds-echo-datagram.socket", "PassCredentials=yes"));
            for (const std::string unit : {"uds-echo.socket", "uds-echo-seqpacket.socket"})
                BOOST_TEST(!has_line(unit, "PassCredentials=yes"), unit);
            for (const std::string unit : {"uds-echo-seqpacket.socket", "uds-echo-datagram.socket"})
                BOOST_TEST(has_line(unit, "Service=uds-echo.service"), unit);
        }
    }
}
