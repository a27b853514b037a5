// Socket path resolution (docs/protocol.md), shared by daemon and client.
#pragma once

#include "common/exit_codes.hpp"
#include "common/socket_type.hpp"

#include <boost/asio/local/stream_protocol.hpp>
#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace uds_echo {

// sun_path is 108 bytes; a path needs its terminating NUL, so 107 usable bytes. An abstract name
// ("@name") has no NUL but its leading NUL byte takes the place of the '@'.
constexpr std::size_t max_socket_path_length = 107;

constexpr const char* system_socket_path = "/run/uds-echo/uds-echo.sock";
constexpr const char* system_socket_directory = "/run/uds-echo";
constexpr const char* system_config_path = "/etc/uds-echo/uds-echo.conf";
constexpr const char* socket_env_variable = "UDS_ECHO_SOCKET";

// What the process knows about where the socket could be, in priority order.
struct PathSources {
    std::optional<std::string> command_line; // --socket
    std::optional<std::string> environment;  // $UDS_ECHO_SOCKET (empty counts as unset)
    std::optional<std::string> config_file;  // socket = ... in the config file
};

// The identity that decides the default path.
struct UserContext {
    uid_t uid = 0;
    std::optional<std::string> xdg_runtime_dir; // empty counts as unset
};

// The calling process's uid and $XDG_RUNTIME_DIR.
UserContext current_user();

bool is_abstract(const std::string& path);

// The directory part of `path`: "/" for "/name", "." for a bare name.
std::string parent_directory(const std::string& path);

// The file name of each type's socket in the default directories: uds-echo.sock,
// uds-echo-seqpacket.sock, uds-echo-datagram.sock.
std::string socket_file_name(SocketType type);

// The system path of a type: /run/uds-echo/ and its file name.
std::string system_socket_path_of(SocketType type);

// The default path for this user: in /run/uds-echo/ for root, else in $XDG_RUNTIME_DIR, else in
// /tmp/uds-echo-$UID/; the file name is the type's.
std::string default_socket_path(const UserContext& user, SocketType type = SocketType::stream);

// The first explicitly given path (command line, environment, config file), if any.
std::optional<std::string> explicit_socket_path(const PathSources& sources);

// The daemon's path: the explicit one, else the default for this user.
std::string resolve_socket_path(const PathSources& sources, const UserContext& user);

// The client's candidates, tried in order: the explicit path alone, or else the per-user default
// followed by the system path (once, when they are the same), both of `type`.
std::vector<std::string> client_socket_candidates(const PathSources& sources,
                                                  const UserContext& user,
                                                  SocketType type = SocketType::stream);

// Throws Failure(code) with a message naming the path if it is empty, contains a NUL byte or is
// longer than sun_path allows. `code` is the exit code of the caller's context (64 for the
// command line, 78 for a config file).
void validate_socket_path(const std::string& path, ExitCode code);

// The Asio endpoint for a validated path; "@name" becomes the abstract name "\0name".
boost::asio::local::stream_protocol::endpoint make_endpoint(const std::string& path);

// True when `path` is the per-user fallback below /tmp, whose directory must be a private one.
bool is_private_tmp_path(const std::string& path, const UserContext& user);

// Checks that `dir` is a real directory (not a symlink) owned by `uid` with no group or other
// permissions; throws Failure(ExitCode::no_permission) naming the owner and mode otherwise.
void check_private_directory(const std::string& dir, uid_t uid);

} // namespace uds_echo
