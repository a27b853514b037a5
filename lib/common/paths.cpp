// Socket path resolution (docs/protocol.md, "Where the socket is").
#include "common/paths.hpp"

#include "common/file_descriptor.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace uds_echo {
namespace {

std::optional<std::string> non_empty(const std::optional<std::string>& value) {
    if (value && !value->empty())
        return value;
    return std::nullopt;
}

std::string private_tmp_directory(uid_t uid) {
    return "/tmp/uds-echo-" + std::to_string(uid);
}

std::string without_trailing_slashes(std::string dir) {
    while (dir.size() > 1 && dir.back() == '/')
        dir.pop_back();
    return dir;
}

std::string octal_mode(mode_t mode) {
    char text[8];
    std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
    return text;
}

} // namespace

UserContext current_user() {
    UserContext user;
    user.uid = ::getuid();
    if (const char* dir = std::getenv("XDG_RUNTIME_DIR"); dir != nullptr && *dir != '\0')
        user.xdg_runtime_dir = dir;
    return user;
}

std::string parent_directory(const std::string& path) {
    const auto slash = path.rfind('/');
    if (slash == std::string::npos)
        return ".";
    if (slash == 0)
        return "/";
    return path.substr(0, slash);
}

bool is_abstract(const std::string& path) {
    return !path.empty() && path.front() == '@';
}

std::string socket_file_name(SocketType type) {
    if (type == SocketType::stream)
        return "uds-echo.sock";
    return "uds-echo-" + std::string(to_string(type)) + ".sock";
}

std::string system_socket_path_of(SocketType type) {
    return std::string(system_socket_directory) + "/" + socket_file_name(type);
}

std::string default_socket_path(const UserContext& user, SocketType type) {
    if (user.uid == 0)
        return system_socket_path_of(type);
    if (auto dir = non_empty(user.xdg_runtime_dir))
        return without_trailing_slashes(*dir) + "/" + socket_file_name(type);
    return private_tmp_directory(user.uid) + "/" + socket_file_name(type);
}

std::optional<std::string> explicit_socket_path(const PathSources& sources) {
    // An empty --socket is kept so that validation refuses it loudly; an empty environment
    // variable or `socket =` line means "not set" (describe() and shells produce those).
    if (sources.command_line)
        return sources.command_line;
    if (auto env = non_empty(sources.environment))
        return env;
    return non_empty(sources.config_file);
}

std::string resolve_socket_path(const PathSources& sources, const UserContext& user) {
    if (auto path = explicit_socket_path(sources))
        return *path;
    return default_socket_path(user);
}

std::vector<std::string> client_socket_candidates(const PathSources& sources,
                                                  const UserContext& user, SocketType type) {
    if (auto path = explicit_socket_path(sources))
        return {*path};
    std::vector<std::string> candidates{default_socket_path(user, type)};
    if (candidates.front() != system_socket_path_of(type))
        candidates.push_back(system_socket_path_of(type));
    return candidates;
}

void validate_socket_path(const std::string& path, ExitCode code) {
    if (path.empty())
        throw Failure(code, "socket path is empty");
    if (path.find('\0') != std::string::npos)
        throw Failure(code, "socket path contains a NUL byte");
    if (path == "@")
        throw Failure(code, "abstract socket name \"@\" is empty");
    // Every path must be writable as a `socket = ...` line of the config file (and printable by
    // --check-config and in one log line): no control characters, no '#' (a comment there), no
    // blanks at the ends (trimmed there).
    const auto unprintable = std::find_if(path.begin(), path.end(),
                                          [](unsigned char c) { return c < 0x20 || c == 0x7f; });
    if (unprintable != path.end())
        throw Failure(code, "socket path contains a control character (byte " +
                                std::to_string(unprintable - path.begin()) + ")");
    if (path.find('#') != std::string::npos)
        throw Failure(code, "socket path \"" + path +
                                "\" contains '#', which cannot be written in the config file");
    if (path.front() == ' ' || path.back() == ' ')
        throw Failure(code, "socket path \"" + path + "\" begins or ends with a space");
    // One limit for both kinds: a path needs its terminating NUL inside sun_path, and an abstract
    // name's leading NUL replaces the '@'. The kernel would take a 108-byte abstract name, but
    // Asio's endpoint refuses anything longer than sizeof(sun_path) - 1, so 107 it is.
    if (path.size() > max_socket_path_length)
        throw Failure(
            code, std::string(is_abstract(path) ? "abstract socket name" : "socket path") + " \"" +
                      path + "\" is " + std::to_string(path.size()) + " bytes long; the limit is " +
                      std::to_string(max_socket_path_length) + " (sun_path)");
}

boost::asio::local::stream_protocol::endpoint make_endpoint(const std::string& path) {
    if (!is_abstract(path))
        return {path};
    // The length travels with the std::string, so the leading NUL is kept (a C string would end
    // right there and give an unnamed socket).
    std::string name(1, '\0');
    name.append(path, 1);
    return {name};
}

bool is_private_tmp_path(const std::string& path, const UserContext& user) {
    return !is_abstract(path) && parent_directory(path) == private_tmp_directory(user.uid);
}

void check_private_directory(const std::string& dir, uid_t uid) {
    // The directory is opened without following a link and the open descriptor is examined, so
    // what is checked is what was opened. Once it passes, the name cannot be swapped under us
    // either: its parent, /tmp, is sticky, so only the directory's owner may rename or remove it.
    const FileDescriptor opened(
        ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!opened.valid()) {
        const int error = errno;
        struct stat link {};
        // A symlink fails with ELOOP, or with ENOTDIR when O_DIRECTORY is checked first; ENOTDIR
        // also means "not a directory". lstat only words the message.
        if ((error == ELOOP || error == ENOTDIR) && ::lstat(dir.c_str(), &link) == 0 &&
            S_ISLNK(link.st_mode))
            throw Failure(ExitCode::no_permission,
                          "directory " + dir + " is a symlink; refusing to follow it");
        if (error == ENOTDIR)
            throw Failure(ExitCode::no_permission, dir + " is not a directory");
        const auto code = error == EACCES   ? ExitCode::no_permission
                          : error == ENOENT ? ExitCode::cannot_create
                                            : ExitCode::os_error;
        throw Failure(code, "directory " + dir + ": " + std::strerror(error));
    }
    struct stat status {};
    if (::fstat(opened.get(), &status) != 0)
        throw Failure(ExitCode::os_error, "directory " + dir + ": " + std::strerror(errno));
    if (status.st_uid != uid || (status.st_mode & 077) != 0)
        throw Failure(ExitCode::no_permission,
                      "directory " + dir + " is owned by uid " + std::to_string(status.st_uid) +
                          " with mode " + octal_mode(status.st_mode) +
                          "; it must be owned by uid " + std::to_string(uid) +
                          " with no group or other permissions (e.g. 0700)");
}

} // namespace uds_echo
