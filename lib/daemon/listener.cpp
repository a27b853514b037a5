#include "daemon/listener.hpp"

#include "common/exit_codes.hpp"
#include "common/file_descriptor.hpp"
#include "common/paths.hpp"
#include "daemon/logging.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <utility>

namespace uds_echo::daemon {

namespace {

std::string system_error_text(int error) {
    return std::strerror(error);
}

// Maps errno from creating or binding the socket to the exit codes of docs/protocol.md.
Failure creation_failure(const std::string& what, int error) {
    const auto code = (error == EACCES || error == EPERM) ? ExitCode::no_permission
                      : (error == ENOENT || error == ENOTDIR || error == EADDRINUSE ||
                         error == EROFS || error == ELOOP)
                          ? ExitCode::cannot_create
                          : ExitCode::os_error;
    return Failure(code, what + ": " + system_error_text(error));
}

sockaddr_un socket_address(const std::string& path, socklen_t& length) {
    const auto endpoint = make_endpoint(path);
    sockaddr_un address{};
    std::memcpy(&address, endpoint.data(), endpoint.size());
    length = static_cast<socklen_t>(endpoint.size());
    return address;
}

// A directory chosen with --socket is the administrator's choice, so it is used; but whoever may
// write to it can remove the socket file and put their own in its place, and that is worth a
// warning. The sticky bit (as on /tmp) lets only a file's owner remove it.
void warn_if_others_can_replace(const std::string& directory, const struct stat& status) {
    const uid_t self = ::geteuid();
    if (status.st_uid != 0 && status.st_uid != self)
        UDS_LOG(warning) << "directory " << directory << " belongs to uid " << status.st_uid
                         << ", who can replace the socket in it";
    else if ((status.st_mode & (S_IWGRP | S_IWOTH)) != 0 && (status.st_mode & S_ISVTX) == 0)
        UDS_LOG(warning) << "directory " << directory
                         << " is writable by group or others without the sticky bit: they can "
                            "replace the socket in it";
}

// Only the last component is created: a missing grandparent means a misconfigured path, and
// creating a whole tree with the daemon's privileges would hide that.
void ensure_parent_directory(const std::string& path, bool private_parent) {
    const auto directory = parent_directory(path);
    const mode_t mode = directory == "/run/uds-echo" ? 0755 : 0700;
    const bool created = ::mkdir(directory.c_str(), mode) == 0;
    if (!created && errno != EEXIST)
        throw creation_failure("cannot create directory " + directory, errno);
    if (created)
        UDS_LOG(info) << "created directory " << directory;
    // Below /tmp anyone may have made the name first (mkdir's EEXIST does not say whose it is):
    // the private directory is checked whether found or just created, by one code path.
    if (private_parent) {
        check_private_directory(directory, ::geteuid());
        return;
    }
    if (created)
        return;
    struct stat status {};
    if (::stat(directory.c_str(), &status) != 0)
        throw creation_failure("cannot use directory " + directory, errno);
    if (!S_ISDIR(status.st_mode))
        throw Failure(ExitCode::cannot_create, directory + " is not a directory");
    warn_if_others_can_replace(directory, status);
}

// True when a daemon accepts connections (or datagrams) at `path`. connect() on a socket file
// with no socket bound to it fails with ECONNREFUSED: the file is stale. The probe has the type
// of the socket to be created; a live socket of another type answers EPROTOTYPE.
bool someone_listens(const std::string& path, SocketType type) {
    FileDescriptor probe(::socket(AF_UNIX, kernel_socket_type(type) | SOCK_CLOEXEC, 0));
    if (probe.get() < 0)
        throw creation_failure("cannot create a socket", errno);
    socklen_t length = 0;
    const auto address = socket_address(path, length);
    if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&address), length) == 0)
        return true;
    if (errno == ECONNREFUSED)
        return false;
    // EAGAIN: a live listener whose backlog is full. EPROTOTYPE: a live socket of another type.
    if (errno == EAGAIN || errno == EPROTOTYPE)
        return true;
    throw creation_failure("cannot probe the existing socket " + path, errno);
}

// Makes the path free for bind(), or explains why it is not.
void clear_stale_socket(const std::string& path, SocketType type) {
    struct stat status {};
    if (::lstat(path.c_str(), &status) != 0) {
        if (errno == ENOENT)
            return;
        throw creation_failure("cannot inspect " + path, errno);
    }
    if (S_ISLNK(status.st_mode))
        throw Failure(ExitCode::cannot_create,
                      path + " is a symbolic link; refusing to follow it or remove it");
    if (!S_ISSOCK(status.st_mode))
        throw Failure(ExitCode::cannot_create,
                      path + " exists and is not a socket; refusing to remove it");
    if (someone_listens(path, type))
        throw Failure(ExitCode::cannot_create, "another daemon is already listening on " + path);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT)
        throw creation_failure("cannot remove the stale socket " + path, errno);
    UDS_LOG(info) << "removed stale socket file " << path;
}

// bind() creates the socket file with mode 0777 minus the umask: a umask of the complement of
// `mode` gives the file its final mode at creation. No chmod() afterwards, which would follow a
// symlink that someone with write access to the directory put in place of the new file.
void bind_with_mode(int fd, const std::string& path, mode_t mode) {
    socklen_t length = 0;
    const auto address = socket_address(path, length);
    const mode_t previous_umask = ::umask(~mode & 0777);
    const int result = ::bind(fd, reinterpret_cast<const sockaddr*>(&address), length);
    const int error = errno;
    ::umask(previous_umask);
    if (result != 0) {
        if (error == EADDRINUSE && !is_abstract(path))
            throw Failure(ExitCode::cannot_create,
                          "another process created " + path + " while this daemon started");
        if (error == EADDRINUSE)
            throw Failure(ExitCode::cannot_create,
                          "the abstract socket " + path + " is already in use");
        throw creation_failure("cannot bind " + path, error);
    }
}

// The group of the socket file decides, with its mode, who may connect(): set it on the file
// itself (fchown on a socket descriptor would not reach the file). AT_SYMLINK_NOFOLLOW keeps a
// link swapped in for the new file from redirecting the change.
void apply_group(const std::string& path, gid_t group) {
    if (::fchownat(AT_FDCWD, path.c_str(), static_cast<uid_t>(-1), group, AT_SYMLINK_NOFOLLOW) != 0)
        throw creation_failure("cannot set the group of " + path + " to " + std::to_string(group),
                               errno);
}

} // namespace

std::optional<std::string> bound_socket_name(int fd) {
    sockaddr_un address{};
    socklen_t length = sizeof address;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0 ||
        address.sun_family != AF_UNIX || length <= offsetof(sockaddr_un, sun_path))
        return std::nullopt; // unnamed
    const auto name_length = length - offsetof(sockaddr_un, sun_path);
    if (address.sun_path[0] == '\0') // abstract: the length says where the name ends
        return "@" + std::string(address.sun_path + 1, name_length - 1);
    return std::string(address.sun_path, ::strnlen(address.sun_path, name_length));
}

OwnedSocketFile::OwnedSocketFile(std::string path, dev_t device, ino_t inode)
    : path_(std::move(path))
    , device_(device)
    , inode_(inode) {}

OwnedSocketFile::OwnedSocketFile(OwnedSocketFile&& other) noexcept
    : path_(std::exchange(other.path_, std::string()))
    , device_(other.device_)
    , inode_(other.inode_) {}

OwnedSocketFile::~OwnedSocketFile() {
    if (path_.empty())
        return;
    struct stat status {};
    if (::lstat(path_.c_str(), &status) != 0)
        return;
    if (status.st_dev != device_ || status.st_ino != inode_) {
        UDS_LOG(info) << path_ << " was replaced by another file; leaving it in place";
        return;
    }
    if (::unlink(path_.c_str()) != 0)
        UDS_LOG(warning) << "cannot remove " << path_ << ": " << system_error_text(errno);
}

Listener create_listener(const ListenerOptions& options) {
    const bool abstract = is_abstract(options.path);
    if (!abstract) {
        ensure_parent_directory(options.path, options.private_parent);
        clear_stale_socket(options.path, options.type);
    }

    FileDescriptor fd(
        ::socket(AF_UNIX, kernel_socket_type(options.type) | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (fd.get() < 0)
        throw creation_failure("cannot create a socket", errno);
    const bool datagram = options.type == SocketType::datagram;
    // A datagram that arrives before SO_PASSCRED carries no credentials, and the kernel then
    // reports the overflow ids (uid and gid 65534) for it: the allow lists could not judge it.
    // Set before bind(), no datagram can arrive without them.
    const int on = 1;
    if (datagram && ::setsockopt(fd.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0)
        throw creation_failure("cannot set SO_PASSCRED", errno);
    bind_with_mode(fd.get(), options.path, options.mode);

    Listener listener;
    if (!abstract) {
        struct stat status {};
        if (::lstat(options.path.c_str(), &status) != 0)
            throw creation_failure("cannot inspect " + options.path, errno);
        // Owned from here on: a failure below removes the file again.
        listener.file.emplace(options.path, status.st_dev, status.st_ino);
        if (options.group)
            apply_group(options.path, *options.group);
    }
    // Clients can connect only after listen(), so nobody gets in before the mode is final. A
    // datagram could be sent between bind() and the group change, but only by the daemon's own
    // user or those the mode lets in already.
    if (!datagram && ::listen(fd.get(), SOMAXCONN) != 0)
        throw creation_failure("cannot listen on " + options.path, errno);
    listener.fd = fd.release();
    return listener;
}

} // namespace uds_echo::daemon
