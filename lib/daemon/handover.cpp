#include "daemon/handover.hpp"

#include "daemon/logging.hpp"

#include <systemd/sd-daemon.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <unordered_map>
#include <utility>

namespace uds_echo::daemon {
namespace {

constexpr char state_magic[8] = {'U', 'D', 'S', 'E', 'C', 'H', 'O', '\x01'};
constexpr std::size_t header_size = 8 + 4 + 4 + 8;
constexpr std::size_t record_header_size = 8 + 4 + 4;

template <typename T>
void append(std::string& out, T value) {
    out.append(reinterpret_cast<const char*>(&value), sizeof value);
}

// Reads a T at `offset` of `bytes`; the caller has checked the size.
template <typename T>
T read_at(std::string_view bytes, std::size_t offset) {
    T value;
    std::memcpy(&value, bytes.data() + offset, sizeof value);
    return value;
}

bool notifies() {
    const char* socket = std::getenv("NOTIFY_SOCKET");
    return socket != nullptr && *socket != '\0';
}

// The state in a memory file sealed against any change, for the store; invalid on failure.
FileDescriptor state_file(const std::string& bytes) {
    FileDescriptor file(::memfd_create(state_fd_name, MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!file.valid())
        return file;
    std::string_view rest = bytes;
    while (!rest.empty()) {
        const auto written = ::write(file.get(), rest.data(), rest.size());
        if (written < 0 && errno == EINTR)
            continue;
        if (written <= 0)
            return FileDescriptor();
        rest.remove_prefix(static_cast<std::size_t>(written));
    }
    if (::fcntl(file.get(), F_ADD_SEALS,
                F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0)
        return FileDescriptor();
    return file;
}

// sd_pid_notify_with_fds(3) with FDSTORE=1 under `name`; the error text, empty on success.
std::string store(const char* name, const int* fds, std::size_t count) {
    const std::string message = std::string("FDSTORE=1\nFDNAME=") + name;
    const int result =
        sd_pid_notify_with_fds(0, 0, message.c_str(), fds, static_cast<unsigned>(count));
    if (result > 0)
        return {};
    return result == 0 ? "NOTIFY_SOCKET is not set" : std::strerror(-result);
}

void forget_stored(const char* name) {
    const std::string message = std::string("FDSTOREREMOVE=1\nFDNAME=") + name;
    const int result = sd_notify(0, message.c_str());
    if (result < 0)
        UDS_LOG(warning) << "cannot remove " << name
                         << " from the file descriptor store: " << std::strerror(-result);
}

// The whole content of the state file passed as `fd`, or nullopt with the reason in `error`.
std::optional<std::string> read_state_file(int fd, std::string& error) {
    struct stat status {};
    if (::fstat(fd, &status) != 0 || !S_ISREG(status.st_mode)) {
        error = "not a regular file";
        return std::nullopt;
    }
    if (status.st_size < 0 || static_cast<std::size_t>(status.st_size) > max_state_bytes) {
        error = "larger than " + std::to_string(max_state_bytes) + " bytes";
        return std::nullopt;
    }
    std::string bytes(static_cast<std::size_t>(status.st_size), '\0');
    std::size_t done = 0;
    while (done < bytes.size()) {
        const auto got =
            ::pread(fd, bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            error = got < 0 ? std::strerror(errno) : "shorter than its size";
            return std::nullopt;
        }
        done += static_cast<std::size_t>(got);
    }
    return bytes;
}

// Sends the descriptors of connections[first, first + count) in one message with one byte of
// data; the error text, empty on success.
std::string send_descriptors(int socket, const std::vector<HandedConnection>& connections,
                             std::size_t first, std::size_t count) {
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * max_fds_per_message)]{};
    char byte = 'c';
    iovec data{&byte, 1};
    msghdr message{};
    message.msg_iov = &data;
    message.msg_iovlen = 1;
    message.msg_control = control;
    message.msg_controllen = CMSG_SPACE(sizeof(int) * count);
    auto* header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int) * count);
    for (std::size_t i = 0; i < count; ++i) {
        const int fd = connections[first + i].fd.get();
        std::memcpy(CMSG_DATA(header) + i * sizeof(int), &fd, sizeof fd);
    }
    while (::sendmsg(socket, &message, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
        if (errno != EINTR)
            return std::strerror(errno);
    }
    return {};
}

// Receives one message of descriptors into `fds`; false when none is left. A message whose
// descriptors did not all fit sets `cut_short` (the kernel has closed the rest).
bool receive_descriptors(int socket, std::vector<FileDescriptor>& fds, bool& cut_short) {
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * max_fds_per_message)];
    char byte;
    iovec data{&byte, 1};
    msghdr message{};
    message.msg_iov = &data;
    message.msg_iovlen = 1;
    message.msg_control = control;
    message.msg_controllen = sizeof control;
    ssize_t received;
    do
        received = ::recvmsg(socket, &message, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    while (received < 0 && errno == EINTR);
    if (received <= 0)
        return false;
    if ((message.msg_flags & MSG_CTRUNC) != 0)
        cut_short = true;
    for (auto* header = CMSG_FIRSTHDR(&message); header != nullptr;
         header = CMSG_NXTHDR(&message, header)) {
        if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS)
            continue;
        const auto count = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t i = 0; i < count; ++i) {
            int fd;
            std::memcpy(&fd, CMSG_DATA(header) + i * sizeof(int), sizeof fd);
            fds.emplace_back(fd);
        }
    }
    return true;
}

} // namespace

std::string encode_state(const std::vector<StateRecord>& records) {
    std::size_t total = header_size;
    for (const auto& record : records)
        total += record_header_size + record.unsent.size();
    std::string out;
    out.reserve(total);
    out.append(state_magic, sizeof state_magic);
    append<std::uint32_t>(out, state_version);
    append<std::uint32_t>(out, static_cast<std::uint32_t>(records.size()));
    append<std::uint64_t>(out, total);
    for (const auto& record : records) {
        append<std::uint64_t>(out, record.inode);
        append<std::uint32_t>(out, static_cast<std::uint32_t>(record.unsent.size()));
        append<std::uint32_t>(out, 0);
        out += record.unsent;
    }
    return out;
}

std::optional<std::vector<StateRecord>> decode_state(std::string_view bytes, std::string& error) {
    auto fail = [&](std::string reason) {
        error = std::move(reason);
        return std::nullopt;
    };
    if (bytes.size() < header_size || std::memcmp(bytes.data(), state_magic, sizeof state_magic))
        return fail("not a uds-echo state (wrong magic)");
    const auto version = read_at<std::uint32_t>(bytes, 8);
    if (version != state_version)
        return fail("state format version " + std::to_string(version) + ", this program reads " +
                    std::to_string(state_version));
    const auto count = read_at<std::uint32_t>(bytes, 12);
    const auto total = read_at<std::uint64_t>(bytes, 16);
    if (total != bytes.size())
        return fail("size field " + std::to_string(total) + " but " + std::to_string(bytes.size()) +
                    " bytes");
    if (count > max_state_records)
        return fail(std::to_string(count) + " records, more than " +
                    std::to_string(max_state_records));
    std::vector<StateRecord> records;
    records.reserve(count);
    std::size_t offset = header_size;
    for (std::uint32_t i = 0; i < count; ++i) {
        if (bytes.size() - offset < record_header_size)
            return fail("record " + std::to_string(i) + " is cut short");
        const auto inode = read_at<std::uint64_t>(bytes, offset);
        const auto size = read_at<std::uint32_t>(bytes, offset + 8);
        const auto zero = read_at<std::uint32_t>(bytes, offset + 12);
        offset += record_header_size;
        if (inode == 0 || zero != 0 || size == 0 || size > max_unsent_bytes ||
            bytes.size() - offset < size)
            return fail("record " + std::to_string(i) + " is invalid");
        records.push_back(
            StateRecord{static_cast<ino_t>(inode), std::string(bytes.substr(offset, size))});
        offset += size;
    }
    if (offset != bytes.size())
        return fail(std::to_string(bytes.size() - offset) + " bytes after the last record");
    std::vector<ino_t> inodes;
    for (const auto& record : records)
        inodes.push_back(record.inode);
    std::sort(inodes.begin(), inodes.end());
    if (std::adjacent_find(inodes.begin(), inodes.end()) != inodes.end())
        return fail("two records for one connection");
    return records;
}

ino_t socket_inode(int fd) {
    struct stat status {};
    return ::fstat(fd, &status) == 0 ? status.st_ino : 0;
}

std::vector<HandedConnection> store_connections(std::vector<HandedConnection> connections,
                                                std::optional<std::size_t> room) {
    if (connections.empty())
        return connections;
    if (room && *room < handover_store_size) {
        UDS_LOG(warning) << "the file descriptor store has room for " << *room
                         << " descriptor(s); the handover needs " << handover_store_size;
        return connections;
    }
    int ends[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ends) != 0) {
        UDS_LOG(error) << "cannot create the handover socket pair: " << std::strerror(errno);
        return connections;
    }
    const FileDescriptor sending(ends[0]);
    const FileDescriptor receiving(ends[1]);

    // Into flight: each message holds its descriptors' open files until it is received, here or
    // in the next process. MSG_DONTWAIT: a full pair (or ETOOMANYREFS, more descriptors in
    // flight than RLIMIT_NOFILE) leaves the rest to the drain instead of blocking.
    std::size_t sent = 0;
    while (sent < connections.size()) {
        const std::size_t batch = std::min(max_fds_per_message, connections.size() - sent);
        if (const auto error = send_descriptors(sending.get(), connections, sent, batch);
            !error.empty()) {
            UDS_LOG(warning) << "cannot hand over more than " << sent
                             << " connection(s): " << error;
            break;
        }
        sent += batch;
    }
    auto kept = [&](std::size_t first) {
        return std::vector<HandedConnection>(std::make_move_iterator(connections.begin() + first),
                                             std::make_move_iterator(connections.end()));
    };
    if (sent == 0)
        return kept(0);

    // Copies: until the store has taken all three descriptors, this process's own descriptors
    // of the connections stay open; should the store refuse, closing the pair frees the copies
    // in flight and every connection is drained here.
    std::vector<StateRecord> records;
    for (std::size_t i = 0; i < sent; ++i)
        if (!connections[i].unsent.empty())
            records.push_back(
                StateRecord{socket_inode(connections[i].fd.get()), connections[i].unsent});
    const auto state = state_file(encode_state(records));
    if (!state.valid()) {
        UDS_LOG(error) << "cannot write the handover state: " << std::strerror(errno);
        return kept(0);
    }
    const std::pair<const char*, int> parts[] = {{state_fd_name, state.get()},
                                                 {connections_peer_fd_name, sending.get()},
                                                 {connections_fd_name, receiving.get()}};
    for (std::size_t stored = 0; stored < std::size(parts); ++stored) {
        if (const auto error = store(parts[stored].first, &parts[stored].second, 1);
            !error.empty()) {
            UDS_LOG(warning) << "the file descriptor store refused the handover: " << error;
            for (std::size_t i = 0; i < stored; ++i)
                forget_stored(parts[i].first);
            return kept(0);
        }
    }
    for (std::size_t i = 0; i < sent; ++i)
        connections[i].fd.reset(); // in flight in the store's socket pair now
    return kept(sent);
}

bool PassedHandover::take(int fd, const std::string& name) {
    if (name == connections_fd_name)
        queues_.emplace_back(fd);
    else if (name == connections_peer_fd_name)
        peers_.emplace_back(fd);
    else if (name == state_fd_name)
        states_.emplace_back(fd);
    else
        return false;
    any_ = true;
    return true;
}

// Every connection in flight in the passed socket pair; descriptors of the wrong kind are closed.
std::vector<HandedConnection> PassedHandover::receive_connections() {
    std::vector<HandedConnection> received;
    std::size_t wrong_kind = 0;
    bool cut_short = false;
    for (const auto& queue : queues_) {
        if (sd_is_socket_unix(queue.get(), SOCK_SEQPACKET, -1, nullptr, 0) <= 0) {
            UDS_LOG(error) << "closed the descriptor passed as " << connections_fd_name
                           << ": not an AF_UNIX SOCK_SEQPACKET socket";
            continue;
        }
        std::vector<FileDescriptor> fds;
        while (receive_descriptors(queue.get(), fds, cut_short)) {
            for (auto& fd : fds) {
                // Stream and seqpacket connections alike; each is served by its type.
                if (sd_is_socket_unix(fd.get(), SOCK_STREAM, 0, nullptr, 0) > 0 ||
                    sd_is_socket_unix(fd.get(), SOCK_SEQPACKET, 0, nullptr, 0) > 0)
                    received.push_back(HandedConnection{std::move(fd), {}});
                else
                    ++wrong_kind;
            }
            fds.clear();
        }
    }
    if (wrong_kind > 0)
        UDS_LOG(error) << "closed " << wrong_kind << " descriptor(s) passed in "
                       << connections_fd_name
                       << " that are not connected AF_UNIX stream or seqpacket sockets";
    if (cut_short)
        UDS_LOG(error) << "some handed-over connections were lost: a message of "
                       << connections_fd_name
                       << " was cut short (too few descriptors left: raise LimitNOFILE=)";
    return received;
}

std::vector<HandedConnection> PassedHandover::finish() {
    if (!any_)
        return {};
    // Before anything is closed: a descriptor the store still holds would keep its connections
    // open after this process closes them, and the clients would wait for an end that never
    // comes.
    if (notifies()) {
        forget_stored(connections_fd_name);
        forget_stored(connections_peer_fd_name);
        forget_stored(state_fd_name);
    }
    auto resumed = receive_connections();
    if (resumed.empty())
        return resumed;

    std::string error;
    std::optional<std::vector<StateRecord>> records;
    if (states_.size() != 1) {
        error = states_.empty() ? "no state was passed" : "more than one state was passed";
    } else if (const auto bytes = read_state_file(states_.front().get(), error)) {
        records = decode_state(*bytes, error);
    }
    if (!records) {
        UDS_LOG(error) << "invalid handover state (" << error << "): closing the " << resumed.size()
                       << " connection(s) passed with it";
        return {};
    }
    std::unordered_map<ino_t, std::string*> unsent_of;
    for (auto& record : *records)
        unsent_of.emplace(record.inode, &record.unsent);
    for (auto& connection : resumed)
        if (const auto found = unsent_of.find(socket_inode(connection.fd.get()));
            found != unsent_of.end())
            connection.unsent = std::move(*found->second);
    return resumed;
}

} // namespace uds_echo::daemon
