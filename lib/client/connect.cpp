#include "client/connect.hpp"

#include "common/paths.hpp"
#include "common/text.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <optional>
#include <sstream>

namespace uds_echo::client {

namespace {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// ---- messages ----

std::string user_name(uid_t uid) {
    if (const passwd* entry = ::getpwuid(uid))
        return entry->pw_name;
    return std::to_string(uid);
}

std::string group_name(gid_t gid) {
    if (const group* entry = ::getgrgid(gid))
        return entry->gr_name;
    return std::to_string(gid);
}

std::string owner_group_mode(const struct stat& status) {
    std::ostringstream mode;
    mode << '0' << std::oct << (status.st_mode & 07777);
    return "owner " + user_name(status.st_uid) + ", group " + group_name(status.st_gid) +
           ", mode " + mode.str();
}

// connect() said EACCES or EPERM. Either a directory on the way cannot be searched, or the socket
// file is not writable for us; the administrator needs to know which, and who owns it.
std::string explain_permission_denied(const std::string& path) {
    // Directories from the top down: the first one we may not enter is the one to fix.
    std::vector<std::filesystem::path> directories;
    for (auto dir = std::filesystem::path(path).parent_path(); !dir.empty();
         dir = dir.parent_path()) {
        directories.push_back(dir);
        if (dir == dir.root_path())
            break;
    }
    for (auto dir = directories.rbegin(); dir != directories.rend(); ++dir) {
        struct stat status {};
        if (::access(dir->c_str(), X_OK) != 0 && ::stat(dir->c_str(), &status) == 0)
            return "permission denied: cannot enter the directory " + dir->string() + " (" +
                   owner_group_mode(status) + ") that holds " + path;
    }
    struct stat status {};
    if (::stat(path.c_str(), &status) != 0)
        return "permission denied connecting to " + path;
    std::string message =
        "permission denied connecting to " + path + " (" + owner_group_mode(status) + ")";
    if ((status.st_mode & S_IWGRP) != 0)
        message += "; members of the group " + group_name(status.st_gid) + " may connect";
    return message;
}

// connect() to a path said ECONNREFUSED: usually the socket file a dead daemon left behind, but
// connect() says the same for a regular file at the path.
std::string explain_refusal(const std::string& path) {
    struct stat status {};
    if (::stat(path.c_str(), &status) == 0 && !S_ISSOCK(status.st_mode))
        return path + " is not a socket (" + owner_group_mode(status) + ")";
    return "nothing is listening at " + path + " (stale socket file?)";
}

// Only the system sockets are the ones the shipped units serve.
bool is_system_path(const std::string& path) {
    return std::any_of(std::begin(all_socket_types), std::end(all_socket_types),
                       [&](SocketType type) { return path == system_socket_path_of(type); });
}

std::string start_hint(const std::string& path) {
    return is_system_path(path) ? "is it running? try: systemctl start uds-echo.socket"
                                : "is the daemon running?";
}

// The type of the socket at `path`, found by connecting with each type in turn: for the message
// that says a client of one type met a socket of another.
std::optional<SocketType> type_listening_at(const std::string& path) {
    const auto endpoint = make_endpoint(path);
    for (const auto type : all_socket_types) {
        FileDescriptor probe(::socket(AF_UNIX, kernel_socket_type(type) | SOCK_CLOEXEC, 0));
        if (probe.valid() &&
            ::connect(probe.get(), endpoint.data(), static_cast<socklen_t>(endpoint.size())) == 0)
            return type;
    }
    return std::nullopt;
}

// Why one candidate was not used.
struct Skipped {
    std::string path;
    Failure failure;
    bool missing = false; // no socket there at all (as opposed to refused or unsafe)
};

// The one failure for "no candidate answered". With one candidate its own message says it all;
// with several, every path is named with its reason.
Failure none_answered(const std::vector<Skipped>& skipped) {
    // Permission denied says more than "missing" about what the user can fix.
    ExitCode code = ExitCode::unavailable;
    for (const auto& candidate : skipped)
        if (candidate.failure.code() == ExitCode::no_permission)
            code = ExitCode::no_permission;
    if (skipped.size() == 1)
        return skipped.front().failure;
    std::string message = "no daemon answered at any path tried: ";
    bool system_path_missing = false;
    for (std::size_t i = 0; i < skipped.size(); ++i) {
        const auto& candidate = skipped[i];
        message += (i > 0 ? "; " : "") + candidate.path + ": ";
        message += candidate.missing ? "no such socket" : candidate.failure.what();
        system_path_missing |= candidate.missing && is_system_path(candidate.path);
    }
    if (system_path_missing)
        message += " (" + start_hint(system_socket_path) + ")";
    return Failure(code, message);
}

// The per-user fallback below /tmp is someone else's to plant unless its directory is ours and
// private. Returns why the candidate must be skipped, if it must; a missing directory only means
// that no daemon is there.
std::optional<Skipped> unsafe_directory(const std::string& path) {
    if (!is_private_tmp_path(path, current_user()))
        return std::nullopt;
    const std::string dir = std::filesystem::path(path).parent_path().string();
    try {
        check_private_directory(dir, ::geteuid());
        return std::nullopt;
    } catch (const Failure& failure) {
        if (failure.code() == ExitCode::cannot_create)
            return Skipped{path, connect_failure(path, ENOENT, {}), true};
        return Skipped{
            path,
            Failure(ExitCode::unavailable, std::string("skipped ") + path + ": " + failure.what()),
            false};
    }
}

// A daemon was found after skipping an unsafe directory: the user should still hear about it.
void warn_about_unsafe(const std::vector<Skipped>& skipped) {
    for (const auto& candidate : skipped)
        if (!candidate.missing)
            std::cerr << "uds-echo: " << candidate.failure.what() << '\n';
}

} // namespace

FileDescriptor client_socket(SocketType type) {
    FileDescriptor fd(
        ::socket(AF_UNIX, kernel_socket_type(type) | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd.valid())
        throw Failure(ExitCode::os_error,
                      std::string("cannot create a socket: ") + std::strerror(errno));
    if (type == SocketType::datagram) {
        const sa_family_t family = AF_UNIX;
        if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&family), sizeof family) != 0)
            throw Failure(ExitCode::os_error, std::string("cannot bind an address to receive "
                                                          "the echo: ") +
                                                  std::strerror(errno));
    }
    return fd;
}

Failure connect_failure(const std::string& path, int error, milliseconds timeout, SocketType type) {
    switch (error) {
    case EPROTOTYPE: {
        const auto there = type_listening_at(path);
        return Failure(ExitCode::unavailable,
                       path + " is " +
                           (there ? "a " + std::string(to_string(*there)) + " socket"
                                  : "a socket of another type") +
                           ", not a " + std::string(to_string(type)) + " one" +
                           (there ? " (use --type " + std::string(to_string(*there)) + ")" : ""));
    }
    case ENOENT:
    case ENOTDIR:
        return Failure(ExitCode::unavailable, "no daemon listens at " + path +
                                                  " (no such socket; " + start_hint(path) + ")");
    case ECONNREFUSED:
        // An abstract name has no file: refused simply means nobody listens there.
        if (is_abstract(path))
            return Failure(ExitCode::unavailable,
                           "no daemon listens at " + path + " (" + start_hint(path) + ")");
        return Failure(ExitCode::unavailable, explain_refusal(path));
    case EACCES:
    case EPERM:
        return Failure(ExitCode::no_permission, explain_permission_denied(path));
    case ETIMEDOUT:
        return Failure(ExitCode::temp_failure, "timed out after " + seconds_text(timeout) +
                                                   " connecting to " + path +
                                                   ": the daemon's listen backlog stayed full");
    default:
        return Failure(ExitCode::os_error,
                       "cannot connect to " + path + ": " + std::strerror(error));
    }
}

int connect_once(int fd, const asio::local::stream_protocol::endpoint& endpoint) {
    for (;;) {
        if (::connect(fd, endpoint.data(), static_cast<socklen_t>(endpoint.size())) == 0)
            return 0;
        if (errno != EINTR)
            return errno;
    }
}

// Connects a non-blocking socket by hand rather than with Asio's async_connect: async_connect
// takes the EAGAIN of a full listen backlog for "in progress", reports success once the socket
// polls writable, and the first write then fails with ENOTCONN (upstream asio#1014). Here EAGAIN
// is retried with a short backoff until the deadline.
asio::awaitable<ConnectAttempt>
connect_with_retry(const asio::local::stream_protocol::endpoint& endpoint,
                   Clock::time_point deadline, SocketType type) {
    auto fd = client_socket(type);
    std::optional<asio::steady_timer> backoff_timer;
    auto backoff = first_backlog_retry;
    for (;;) {
        const int error = connect_once(fd.get(), endpoint);
        if (error == 0)
            co_return ConnectAttempt{std::move(fd), 0};
        if (error != EAGAIN)
            co_return ConnectAttempt{FileDescriptor(), error};
        const auto now = Clock::now();
        if (now >= deadline)
            co_return ConnectAttempt{FileDescriptor(), ETIMEDOUT};
        if (!backoff_timer)
            backoff_timer.emplace(co_await asio::this_coro::executor);
        backoff_timer->expires_at(std::min(now + backoff, deadline));
        co_await backoff_timer->async_wait(asio::as_tuple(asio::use_awaitable));
        backoff = next_backlog_retry(backoff);
    }
}

asio::awaitable<DaemonConnection> connect_to_daemon(const ClientOptions& options) {
    if (options.socket_candidates.empty())
        throw Failure(ExitCode::software, "no socket path to connect to");
    const auto deadline = Clock::now() + options.timeout;
    std::vector<Skipped> skipped;
    for (const auto& path : options.socket_candidates) {
        validate_socket_path(path, ExitCode::usage);
        if (auto unsafe = unsafe_directory(path)) {
            skipped.push_back(std::move(*unsafe));
            continue;
        }
        auto attempt = co_await connect_with_retry(make_endpoint(path), deadline, options.type);
        if (attempt.fd.valid()) {
            warn_about_unsafe(skipped);
            co_return DaemonConnection{std::move(attempt.fd), path};
        }
        auto failure = connect_failure(path, attempt.error, options.timeout, options.type);
        // A daemon that is there but cannot be reached in time, or an unexpected error, ends the
        // search: another candidate would hide what is wrong with this one.
        if (failure.code() == ExitCode::temp_failure || failure.code() == ExitCode::os_error)
            throw failure;
        const bool missing = attempt.error == ENOENT || attempt.error == ENOTDIR ||
                             (attempt.error == ECONNREFUSED && is_abstract(path));
        skipped.push_back(Skipped{path, std::move(failure), missing});
    }
    throw none_answered(skipped);
}

} // namespace uds_echo::client
