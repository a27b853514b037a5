// Who may connect (--allow-uid/--allow-gid), decided from the peer's SO_PEERCRED.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace uds_echo {

struct PeerCredentials {
    pid_t pid = 0;
    uid_t uid = 0;
    gid_t gid = 0;
};

struct AccessPolicy {
    std::vector<uid_t> allowed_uids;
    std::vector<gid_t> allowed_gids;

    // Both lists empty: anyone. Otherwise a peer is let in when its uid is in allowed_uids or its
    // (primary) gid is in allowed_gids.
    bool allows(const PeerCredentials& peer) const;
    bool restricts() const { return !allowed_uids.empty() || !allowed_gids.empty(); }
};

// "connection ID (pid P, uid U, gid G)" for the log; without credentials just "connection ID".
std::string describe_peer(std::uint64_t id, const std::optional<PeerCredentials>& peer);

// The credentials the kernel recorded for the peer of a connected AF_UNIX socket at connect()
// time; nullopt if getsockopt fails.
std::optional<PeerCredentials> peer_credentials(int fd);

} // namespace uds_echo
