// The per-user fallback directory /tmp/uds-echo-$UID (docs/configuration.md, "Socket path"): a
// user without XDG_RUNTIME_DIR gets a socket there, in a directory that anyone could have created
// first. The daemon creates it 0700 when missing and otherwise refuses to start unless it is a
// real directory of its own with no group or other permissions; nothing is created inside a
// refused directory. The daemon runs as another uid (setpriv), so these tests need root and are
// skipped otherwise.
#define BOOST_TEST_MODULE integration_fallback_directory
#include <boost/test/unit_test.hpp>

#include "preconditions.hpp"
#include "process.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <random>

using namespace uds_echo::test;
namespace utf = boost::unit_test;

namespace {

const RootOnly root_only{"to run the daemon as another uid"};

// A uid without a home of its own here and its fallback directory, which must not exist yet;
// whatever a test put at that path is removed afterwards (a symlink itself, never its target).
struct FallbackUser {
    uid_t uid = 0;
    std::string dir;
    std::string socket;

    FallbackUser() {
        std::random_device random;
        for (;;) {
            uid = 40000 + random() % 20000;
            dir = "/tmp/uds-echo-" + std::to_string(uid);
            if (!path_exists(dir))
                break;
        }
        socket = dir + "/uds-echo.sock";
    }
    FallbackUser(const FallbackUser&) = delete;
    FallbackUser& operator=(const FallbackUser&) = delete;
    ~FallbackUser() {
        std::error_code ignored;
        std::filesystem::remove_all(dir, ignored);
    }

    // The daemon as this user, with no XDG_RUNTIME_DIR and no --socket: the fallback path.
    DaemonOptions daemon(bool wait_ready) const {
        const auto id = std::to_string(uid);
        DaemonOptions options;
        options.socket = socket;
        options.pass_socket = false;
        options.wait_ready = wait_ready;
        options.args = {"--config", "/dev/null"};
        options.environment["XDG_RUNTIME_DIR"] = std::nullopt;
        options.wrapper = {"/usr/bin/setpriv", "--reuid=" + id, "--regid=" + id, "--clear-groups"};
        return options;
    }
};

void make_directory(const std::string& path, uid_t owner, mode_t mode) {
    BOOST_REQUIRE(::mkdir(path.c_str(), mode) == 0);
    BOOST_REQUIRE(::chown(path.c_str(), owner, owner) == 0);
    BOOST_REQUIRE(::chmod(path.c_str(), mode) == 0);
}

bool is_empty_directory(const std::string& path) {
    return std::filesystem::is_empty(path);
}

// Starts the daemon as `user` and expects it to refuse with 77 and a message naming the directory
// and `reason`.
void expect_refusal(const TempDir& temp, const FallbackUser& user, const std::string& reason) {
    auto daemon = start_daemon(temp, user.daemon(false));
    const auto status = daemon.process.wait_for_exit(10s);
    BOOST_REQUIRE_MESSAGE(status, "the daemon is still running in an unsafe directory");
    const auto err = daemon.process.stderr_text();
    BOOST_TEST(status->exited_with(exit_no_permission), *status << "; stderr: " << err);
    BOOST_TEST(err.find(user.dir) != std::string::npos, err);
    BOOST_TEST(err.find(reason) != std::string::npos, err);
    BOOST_TEST(non_empty_lines(err).size() == 1u, err);
}

} // namespace

BOOST_AUTO_TEST_CASE(a_missing_directory_is_created_0700_and_served,
                     *utf::precondition(root_only)) {
    TempDir temp;
    FallbackUser user;
    auto daemon = start_daemon(temp, user.daemon(true));
    struct stat status {};
    BOOST_REQUIRE(::lstat(user.dir.c_str(), &status) == 0);
    BOOST_TEST(S_ISDIR(status.st_mode));
    BOOST_TEST(status.st_uid == user.uid);
    BOOST_TEST((status.st_mode & 07777) == 0700u);
    BOOST_TEST(echo_through(user.socket, "through the fallback\n") == "through the fallback\n");
    BOOST_TEST(stop_daemon(daemon).exited_with(0));
}

BOOST_AUTO_TEST_CASE(a_directory_of_our_own_with_mode_0700_is_used, *utf::precondition(root_only)) {
    TempDir temp;
    FallbackUser user;
    make_directory(user.dir, user.uid, 0700);
    auto daemon = start_daemon(temp, user.daemon(true));
    BOOST_TEST(echo_through(user.socket, "x") == "x");
    BOOST_TEST(stop_daemon(daemon).exited_with(0));
}

BOOST_AUTO_TEST_CASE(a_directory_planted_by_another_user_is_refused,
                     *utf::precondition(root_only)) {
    TempDir temp;
    FallbackUser user;
    make_directory(user.dir, 0, 0777); // created first by someone else, open to all
    expect_refusal(temp, user, "owned by uid 0");
    BOOST_TEST(is_empty_directory(user.dir));
}

BOOST_AUTO_TEST_CASE(a_directory_of_our_own_open_to_others_is_refused,
                     *utf::precondition(root_only)) {
    TempDir temp;
    FallbackUser user;
    make_directory(user.dir, user.uid, 0755);
    expect_refusal(temp, user, "mode 0755");
    BOOST_TEST(is_empty_directory(user.dir));
}

BOOST_AUTO_TEST_CASE(a_symlink_in_place_of_the_directory_is_refused,
                     *utf::precondition(root_only)) {
    TempDir temp;
    FallbackUser user;
    // The link points at a directory that would pass every other check: only the link is wrong.
    const auto target = temp.file("elsewhere");
    BOOST_REQUIRE(::chmod(temp.path().c_str(), 0755) == 0);
    make_directory(target, user.uid, 0700);
    BOOST_REQUIRE(::symlink(target.c_str(), user.dir.c_str()) == 0);
    expect_refusal(temp, user, "symlink");
    BOOST_TEST(is_empty_directory(target));
}

BOOST_AUTO_TEST_CASE(a_file_in_place_of_the_directory_is_refused, *utf::precondition(root_only)) {
    TempDir temp;
    FallbackUser user;
    temp.write_file("unused", "");
    BOOST_REQUIRE(std::filesystem::copy_file(temp.file("unused"), user.dir));
    BOOST_REQUIRE(::chown(user.dir.c_str(), user.uid, user.uid) == 0);
    expect_refusal(temp, user, "not a directory");
}
