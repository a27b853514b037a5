// Socket path resolution (docs/protocol.md, "Where the socket is"): precedence, defaults, limits,
// abstract names, private directories.
#define BOOST_TEST_MODULE paths
#include <boost/test/unit_test.hpp>

#include "process.hpp"

#include "common/paths.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

using namespace uds_echo;
using uds_echo::test::contains;

namespace uds_echo {
// How Boost.Test prints an exit code in a failed check.
std::ostream& boost_test_print_type(std::ostream& out, ExitCode code) {
    return out << to_int(code);
}
} // namespace uds_echo

namespace {

const UserContext root{0, std::nullopt};
const UserContext user_with_xdg{1000, "/run/user/1000"};
const UserContext user_without_xdg{1000, std::nullopt};

template <typename Function>
ExitCode failure_code(Function function) {
    try {
        function();
    } catch (const Failure& failure) {
        return failure.code();
    }
    BOOST_FAIL("no Failure was thrown");
    return ExitCode::ok;
}

template <typename Function>
std::string failure_message(Function function) {
    try {
        function();
    } catch (const Failure& failure) {
        return failure.what();
    }
    BOOST_FAIL("no Failure was thrown");
    return {};
}

// A fresh directory below the system temp dir, removed with everything in it.
struct TempDir {
    std::string path;
    TempDir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "paths-test-XXXXXX");
        BOOST_REQUIRE(::mkdtemp(pattern.data()) != nullptr);
        path = pattern;
    }
    ~TempDir() { std::filesystem::remove_all(path); }
};

} // namespace

BOOST_AUTO_TEST_CASE(command_line_wins_over_environment_and_file) {
    const PathSources sources{"/cli.sock", "/env.sock", "/file.sock"};
    BOOST_TEST(resolve_socket_path(sources, user_with_xdg) == "/cli.sock");
}

BOOST_AUTO_TEST_CASE(environment_wins_over_file) {
    const PathSources sources{std::nullopt, "/env.sock", "/file.sock"};
    BOOST_TEST(resolve_socket_path(sources, user_with_xdg) == "/env.sock");
}

BOOST_AUTO_TEST_CASE(file_is_used_when_nothing_else_is_given) {
    const PathSources sources{std::nullopt, std::nullopt, "/file.sock"};
    BOOST_TEST(resolve_socket_path(sources, user_with_xdg) == "/file.sock");
}

BOOST_AUTO_TEST_CASE(empty_environment_and_empty_file_value_count_as_unset) {
    const PathSources sources{std::nullopt, "", ""};
    BOOST_TEST(!explicit_socket_path(sources).has_value());
    BOOST_TEST(resolve_socket_path(sources, user_with_xdg) == "/run/user/1000/uds-echo.sock");
    const PathSources file_after_empty_env{std::nullopt, "", "/file.sock"};
    BOOST_TEST(resolve_socket_path(file_after_empty_env, user_with_xdg) == "/file.sock");
}

BOOST_AUTO_TEST_CASE(empty_command_line_value_is_kept_for_validation_to_refuse) {
    const PathSources sources{"", "/env.sock", std::nullopt};
    BOOST_TEST(resolve_socket_path(sources, root) == "");
    BOOST_TEST(failure_code([] { validate_socket_path("", ExitCode::usage); }) == ExitCode::usage);
}

BOOST_AUTO_TEST_CASE(defaults_for_root_xdg_and_plain_user) {
    BOOST_TEST(default_socket_path(root) == "/run/uds-echo/uds-echo.sock");
    BOOST_TEST(default_socket_path(UserContext{0, "/run/user/0"}) == "/run/uds-echo/uds-echo.sock");
    BOOST_TEST(default_socket_path(user_with_xdg) == "/run/user/1000/uds-echo.sock");
    BOOST_TEST(default_socket_path(UserContext{1000, "/run/user/1000/"}) ==
               "/run/user/1000/uds-echo.sock");
    BOOST_TEST(default_socket_path(UserContext{1000, ""}) == "/tmp/uds-echo-1000/uds-echo.sock");
    BOOST_TEST(default_socket_path(user_without_xdg) == "/tmp/uds-echo-1000/uds-echo.sock");
}

BOOST_AUTO_TEST_CASE(current_user_reads_uid_and_treats_empty_xdg_as_unset) {
    const char* saved = std::getenv("XDG_RUNTIME_DIR");
    const std::optional<std::string> original =
        saved ? std::optional<std::string>(saved) : std::nullopt;
    ::setenv("XDG_RUNTIME_DIR", "/run/user/4242", 1);
    BOOST_TEST(current_user().uid == ::getuid());
    BOOST_TEST(current_user().xdg_runtime_dir.value_or("") == "/run/user/4242");
    ::setenv("XDG_RUNTIME_DIR", "", 1);
    BOOST_TEST(!current_user().xdg_runtime_dir.has_value());
    ::unsetenv("XDG_RUNTIME_DIR");
    BOOST_TEST(!current_user().xdg_runtime_dir.has_value());
    if (original)
        ::setenv("XDG_RUNTIME_DIR", original->c_str(), 1);
}

BOOST_AUTO_TEST_CASE(client_candidates) {
    BOOST_TEST(client_socket_candidates({"/x.sock", std::nullopt, std::nullopt}, user_with_xdg) ==
                   std::vector<std::string>{"/x.sock"},
               boost::test_tools::per_element());
    const std::vector<std::string> user_then_system{"/run/user/1000/uds-echo.sock",
                                                    "/run/uds-echo/uds-echo.sock"};
    BOOST_TEST(client_socket_candidates({}, user_with_xdg) == user_then_system,
               boost::test_tools::per_element());
    const std::vector<std::string> system_once{"/run/uds-echo/uds-echo.sock"};
    BOOST_TEST(client_socket_candidates({}, root) == system_once, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(path_of_107_bytes_is_accepted_108_refused) {
    const std::string ok = "/" + std::string(106, 'a');
    BOOST_REQUIRE_EQUAL(ok.size(), 107u);
    BOOST_CHECK_NO_THROW(validate_socket_path(ok, ExitCode::usage));
    BOOST_CHECK_NO_THROW(make_endpoint(ok));

    const std::string too_long = ok + "b";
    BOOST_TEST(failure_code([&] { validate_socket_path(too_long, ExitCode::usage); }) ==
               ExitCode::usage);
    BOOST_TEST(failure_code([&] { validate_socket_path(too_long, ExitCode::config); }) ==
               ExitCode::config);
    const auto message = failure_message([&] { validate_socket_path(too_long, ExitCode::usage); });
    BOOST_TEST(contains(message, "is 108 bytes long; the limit is 107 (sun_path)"), message);
    BOOST_TEST(contains(message, too_long), message);
}

BOOST_AUTO_TEST_CASE(abstract_names_have_the_same_limit) {
    const std::string ok = "@" + std::string(106, 'n');
    BOOST_CHECK_NO_THROW(validate_socket_path(ok, ExitCode::usage));
    BOOST_CHECK_NO_THROW(make_endpoint(ok));
    const auto message = failure_message([&] { validate_socket_path(ok + "n", ExitCode::usage); });
    BOOST_TEST(contains(message, "abstract socket name"), message);
    BOOST_TEST(contains(message, "108 bytes"), message);
}

BOOST_AUTO_TEST_CASE(empty_nul_and_bare_at_are_refused) {
    BOOST_TEST(failure_code([] { validate_socket_path("", ExitCode::config); }) ==
               ExitCode::config);
    BOOST_TEST(failure_code([] {
                   validate_socket_path(std::string("/tmp/a\0b", 8), ExitCode::usage);
               }) == ExitCode::usage);
    BOOST_TEST(contains(
        failure_message([] { validate_socket_path(std::string("/a\0b", 4), ExitCode::usage); }),
        "NUL"));
    BOOST_TEST(failure_code([] { validate_socket_path("@", ExitCode::usage); }) == ExitCode::usage);
}

// What --check-config prints must stay a valid config file, one line per option.
BOOST_AUTO_TEST_CASE(paths_that_cannot_be_written_in_the_config_file_are_refused) {
    for (const std::string path : {"/tmp/a\nsocket-mode = 0777", "/tmp/a\tb", "/tmp/a\x7f",
                                   "/tmp/a#b", " /tmp/a", "/tmp/a "}) {
        BOOST_TEST((failure_code([&] { validate_socket_path(path, ExitCode::config); }) ==
                    ExitCode::config),
                   path);
    }
    BOOST_TEST(contains(failure_message([] { validate_socket_path("/a\nb", ExitCode::usage); }),
                        "control character"));
    BOOST_CHECK_NO_THROW(validate_socket_path("/tmp/with space/s.sock", ExitCode::usage));
}

BOOST_AUTO_TEST_CASE(abstract_endpoint_starts_with_nul_and_keeps_its_length) {
    BOOST_TEST(is_abstract("@name"));
    BOOST_TEST(!is_abstract("/name"));
    BOOST_TEST(!is_abstract(""));
    const auto endpoint = make_endpoint("@uds-echo-test");
    const std::string expected("\0uds-echo-test", 14);
    BOOST_TEST(endpoint.path() == expected);
    BOOST_TEST(endpoint.path().size() == 14u);
    // sun_family plus the name, without a terminating NUL.
    BOOST_TEST(endpoint.size() == sizeof(sa_family_t) + 14u);
}

BOOST_AUTO_TEST_CASE(path_endpoint_is_the_path) {
    const auto endpoint = make_endpoint("/run/uds-echo/uds-echo.sock");
    BOOST_TEST(endpoint.path() == "/run/uds-echo/uds-echo.sock");
}

BOOST_AUTO_TEST_CASE(private_tmp_path_detection) {
    BOOST_TEST(is_private_tmp_path("/tmp/uds-echo-1000/uds-echo.sock", user_without_xdg));
    BOOST_TEST(is_private_tmp_path("/tmp/uds-echo-1000/other.sock", user_without_xdg));
    BOOST_TEST(!is_private_tmp_path("/tmp/uds-echo-1001/uds-echo.sock", user_without_xdg));
    BOOST_TEST(!is_private_tmp_path("/tmp/uds-echo.sock", user_without_xdg));
    BOOST_TEST(!is_private_tmp_path("/run/user/1000/uds-echo.sock", user_with_xdg));
    BOOST_TEST(!is_private_tmp_path("@tmp/uds-echo-1000/x", user_without_xdg));
}

BOOST_AUTO_TEST_CASE(private_directory_of_our_own_with_mode_0700_passes) {
    TempDir temp;
    BOOST_REQUIRE(::chmod(temp.path.c_str(), 0700) == 0);
    BOOST_CHECK_NO_THROW(check_private_directory(temp.path, ::getuid()));
}

BOOST_AUTO_TEST_CASE(private_directory_with_group_or_other_access_fails) {
    TempDir temp;
    for (mode_t mode : {0750, 0701, 0770, 0755}) {
        BOOST_REQUIRE(::chmod(temp.path.c_str(), mode) == 0);
        BOOST_TEST(failure_code([&] { check_private_directory(temp.path, ::getuid()); }) ==
                   ExitCode::no_permission);
    }
    BOOST_REQUIRE(::chmod(temp.path.c_str(), 0750) == 0);
    const auto message = failure_message([&] { check_private_directory(temp.path, ::getuid()); });
    BOOST_TEST(contains(message, "mode 0750"), message);
    BOOST_TEST(contains(message, "uid " + std::to_string(::getuid())), message);
}

BOOST_AUTO_TEST_CASE(private_directory_owned_by_someone_else_fails) {
    TempDir temp;
    BOOST_REQUIRE(::chmod(temp.path.c_str(), 0700) == 0);
    const uid_t someone_else = ::getuid() + 1;
    const auto message = failure_message([&] { check_private_directory(temp.path, someone_else); });
    BOOST_TEST(contains(message, "owned by uid " + std::to_string(::getuid())), message);
}

BOOST_AUTO_TEST_CASE(private_directory_that_is_a_symlink_fails) {
    TempDir temp;
    const std::string real = temp.path + "/real";
    const std::string link = temp.path + "/link";
    BOOST_REQUIRE(::mkdir(real.c_str(), 0700) == 0);
    BOOST_REQUIRE(::symlink(real.c_str(), link.c_str()) == 0);
    BOOST_TEST(failure_code([&] { check_private_directory(link, ::getuid()); }) ==
               ExitCode::no_permission);
    BOOST_TEST(
        contains(failure_message([&] { check_private_directory(link, ::getuid()); }), "symlink"));
}

BOOST_AUTO_TEST_CASE(private_directory_that_is_a_file_or_missing_fails) {
    TempDir temp;
    const std::string file = temp.path + "/file";
    std::FILE* created = std::fopen(file.c_str(), "w");
    BOOST_REQUIRE(created != nullptr);
    std::fclose(created);
    BOOST_TEST(failure_code([&] { check_private_directory(file, ::getuid()); }) ==
               ExitCode::no_permission);
    BOOST_TEST(contains(failure_message([&] { check_private_directory(file, ::getuid()); }),
                        "not a directory"));
    BOOST_TEST(failure_code([&] { check_private_directory(temp.path + "/missing", ::getuid()); }) ==
               ExitCode::cannot_create);
}
