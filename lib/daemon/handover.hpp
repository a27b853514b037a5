// Restart without cutting a connection: the old process hands its open connections, and the bytes
// it read but did not echo yet, to systemd's file descriptor store (sd_notify(3): FDSTORE=1,
// FDNAME=); the new process takes them back (sd_listen_fds_with_names(3)) and resumes them.
// The connections do not go to the store one by one: they wait in flight inside a socket pair
// whose two ends the store keeps, next to the state. docs/architecture.md ("Restart: the
// handover") tells the steps, why, and the state format.
#pragma once

#include "common/file_descriptor.hpp"

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace uds_echo::daemon {

// The names under which the handover goes to the store; systemd gives back every stored
// descriptor under the name it was stored with. Only descriptors passed under these names are
// taken for the handover.
// - connections_fd_name: the receiving end of an AF_UNIX SOCK_SEQPACKET pair whose messages carry
//   the connections (SCM_RIGHTS, up to 253 a message), one byte of data each;
// - connections_peer_fd_name: the sending end, stored only so that the receiving end never sees a
//   hang-up, on which systemd would drop it and every connection in it;
// - state_fd_name: the sealed memory file with the unsent bytes.
inline constexpr const char* connections_fd_name = "uds-echo-connections";
inline constexpr const char* connections_peer_fd_name = "uds-echo-connections-peer";
inline constexpr const char* state_fd_name = "uds-echo-state";
// What the handover takes in the store, however many connections it carries.
inline constexpr std::size_t handover_store_size = 3;

// A message carries at most SCM_MAX_FD (253) descriptors.
inline constexpr std::size_t max_fds_per_message = 253;

// One connection passed from a process to the next: its socket and the bytes read from it but not
// yet written back, which the next process writes first.
struct HandedConnection {
    FileDescriptor fd;
    std::string unsent;
};

// ---- the state: a sealed memory file stored under state_fd_name ----
//
// Format version 1, native byte order (both processes run on the same machine):
//   header  8 bytes magic "UDSECHO\x01", u32 version, u32 record count, u64 total size in bytes
//   record  u64 socket inode, u32 byte count, u32 zero, then the bytes
// A record names a connection by the inode of its socket (fstat(2) st_ino), which stays the same
// in every process the descriptor is passed to. Only connections with unsent bytes have a record.
inline constexpr std::uint32_t state_version = 1;
inline constexpr std::size_t max_state_records = 1 << 20;
inline constexpr std::size_t max_unsent_bytes = 64 * 1024 * 1024; // the largest --buffer-size
inline constexpr std::size_t max_state_bytes = std::size_t{1} << 30;

struct StateRecord {
    ino_t inode = 0;
    std::string unsent;
};

// The state as bytes.
std::string encode_state(const std::vector<StateRecord>& records);
// Checks every field and size; a reason in `error` and nullopt when anything is wrong.
std::optional<std::vector<StateRecord>> decode_state(std::string_view bytes, std::string& error);

// The inode of the socket `fd` refers to; 0 when fstat fails.
ino_t socket_inode(int fd);

// ---- the old process ----

// Hands `connections` (and their unsent bytes, in the state) to the file descriptor store, which
// must have room for handover_store_size descriptors when its size is known (`room`). Returns
// the connections that were not handed over, still open, for the caller to drain; closes its own
// descriptors of the others. Never loses one: a connection is either handed over or returned.
std::vector<HandedConnection> store_connections(std::vector<HandedConnection> connections,
                                                std::optional<std::size_t> room);

// ---- the new process ----

// Takes the descriptors passed under the handover names, asks the store to forget them (so that
// the connections end when this process closes them), and receives the connections from the
// socket pair: each checked to be a connected AF_UNIX stream socket, matched with the unsent bytes
// of a valid state. A descriptor of the wrong kind, or every connection when the state is missing
// or invalid, is logged in one line and closed. Needs room for every connection below
// RLIMIT_NOFILE: the kernel closes what it cannot install.
class PassedHandover {
public:
    // `fd` was passed under `name`; false when the name is not one of the handover names.
    bool take(int fd, const std::string& name);
    // The connections to resume.
    std::vector<HandedConnection> finish();

private:
    std::vector<HandedConnection> receive_connections();

    std::vector<FileDescriptor> queues_; // receiving ends
    std::vector<FileDescriptor> peers_;  // sending ends
    std::vector<FileDescriptor> states_;
    bool any_ = false;
};

} // namespace uds_echo::daemon
