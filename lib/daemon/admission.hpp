// Admission: whether a connection is let in (the allow lists, the per-uid cap), decided once per
// connection before a byte of it is read, by the worker that serves it. Nothing here depends on
// the kind of socket, so every kind of session is admitted the same way.
#pragma once

#include "daemon/access.hpp"

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <unordered_map>

namespace uds_echo::daemon {

// What a worker needs to know of the configuration; replaced as a whole on reload.
struct WorkerSettings {
    std::chrono::seconds idle_timeout{0};
    unsigned max_connections = 0;
    unsigned max_connections_per_uid = 0; // 0 = no cap
    AccessPolicy access;
    bool log_peers = false; // debug logging names every peer

    // The credentials decide admission: without them the connection is refused.
    bool admission_needs_credentials() const {
        return access.restricts() || max_connections_per_uid > 0;
    }
};

// Open connections per peer uid, across all workers, for --max-connections-per-uid. Only uids
// that hold a connection have an entry, so the table is as large as the set of connected users.
class UidCounts {
public:
    // The uid whose connections are not counted: root may stop the daemon anyway, and a cap on it
    // would only get in the way of the administrator.
    static constexpr uid_t exempt = 0;

    // Counts one more connection of `uid` unless it already holds `cap` (at least 1); false then.
    bool try_add(uid_t uid, unsigned cap) {
        std::lock_guard lock(mutex_);
        auto& count = counts_[uid];
        if (count >= cap)
            return false;
        ++count;
        return true;
    }

    void remove(uid_t uid) {
        std::lock_guard lock(mutex_);
        const auto entry = counts_.find(uid);
        if (entry != counts_.end() && --entry->second == 0)
            counts_.erase(entry);
    }

private:
    std::mutex mutex_;
    std::unordered_map<uid_t, unsigned> counts_;
};

// What the workers share besides their pool; everything in it is thread-safe.
struct SharedState {
    UidCounts uid_counts;
    std::atomic<std::uint64_t> accepted{0};    // also numbers the connections
    std::atomic<bool> out_of_resources{false}; // inside an episode of descriptor exhaustion
};

// The credentials of the peer on a descriptor; nullopt when they cannot be read. Tests inject
// a reader that fails.
using CredentialReader = std::optional<PeerCredentials> (*)(int fd);

// What admission decided for one connection.
struct Admission {
    const char* refusal = nullptr;       // why it was refused; nullptr when it was let in
    std::optional<PeerCredentials> peer; // when read: for admission or for the debug log
    std::optional<uid_t> counted_uid;    // whose per-uid count it holds, to give back at its end
};

// Decides on the peer of `fd`, and counts it in `uid_counts` when it is let in under a per-uid
// cap. Credentials that admission needs and that cannot be read refuse the connection: an
// unknown peer is neither in an allow list nor exempt from the cap. A refused peer holds no
// count.
Admission admit_peer(int fd, const WorkerSettings& settings, UidCounts& uid_counts,
                     CredentialReader read_credentials = peer_credentials);

} // namespace uds_echo::daemon
