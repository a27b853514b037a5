// The daemon's listening socket (uds-echod(8), SOCKET FILE): safe creation of a socket file, and
// its removal on a clean exit only while it is still the file this process created.
#pragma once

#include "common/socket_type.hpp"

#include <sys/types.h>

#include <optional>
#include <string>

namespace uds_echo::daemon {

struct ListenerOptions {
    std::string path; // validated; "@name" for an abstract socket
    SocketType type = SocketType::stream;
    mode_t mode = 0660;
    std::optional<gid_t> group;
    // The parent directory must be this user's own (the /tmp fallback, see
    // is_private_tmp_path()): created 0700 when missing, and refused unless it is a real directory
    // owned by the effective uid with no group or other permissions.
    bool private_parent = false;
};

// A socket file this process created, identified by device and inode; the destructor unlinks it
// if the path still names that inode (another instance may have replaced it meanwhile).
class OwnedSocketFile {
public:
    OwnedSocketFile(std::string path, dev_t device, ino_t inode);
    OwnedSocketFile(OwnedSocketFile&& other) noexcept;
    OwnedSocketFile& operator=(OwnedSocketFile&&) = delete;
    OwnedSocketFile(const OwnedSocketFile&) = delete;
    ~OwnedSocketFile();

    const std::string& path() const { return path_; }

private:
    std::string path_; // empty once moved from
    dev_t device_;
    ino_t inode_;
};

// A listening socket (a bound one for datagrams): the descriptor (non-blocking, close-on-exec)
// and, for a path socket, the file it owns.
struct Listener {
    int fd = -1;
    std::optional<OwnedSocketFile> file;
};

// Creates, binds and listens. For a path: creates a missing parent directory (0755 for
// /run/uds-echo, 0700 elsewhere), checks a private parent, refuses a symlink or a non-socket at the
// path, removes a stale socket only after connect() to it is refused, refuses when a live daemon
// answers there, and creates the file with its final mode and group before listen(). A datagram
// socket passes credentials (SO_PASSCRED) from before its bind, and is not listened on. Throws
// Failure: cannot_create (73), no_permission (77) or os_error (71), with a message naming the
// path.
Listener create_listener(const ListenerOptions& options);

// The path or "@name" (an abstract name, see is_abstract()) that `fd` is bound to; nullopt for an
// unnamed socket.
std::optional<std::string> bound_socket_name(int fd);

} // namespace uds_echo::daemon
