// Who may connect (--allow-uid/--allow-gid), decided from the peer's SO_PEERCRED.
#pragma once

#include "daemon/logging.hpp"

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace uds_echo::daemon {

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

// A connection as the log names it: "connection ID (pid P, uid U, gid G)", or "connection ID"
// without credentials (a datagram: "datagram ID ..."). Streamed into UDS_LOG, the numbers are also
// fields of their own
// ("connection", "pid", "uid", "gid": LogField).
struct PeerInLog {
    std::uint64_t id;
    std::optional<PeerCredentials> peer;
    const char* subject = "connection"; // or "datagram": what the id counts
};
boost::log::record_ostream& operator<<(boost::log::record_ostream& out, const PeerInLog& peer);

// The credentials the kernel recorded for the peer of a connected AF_UNIX socket at connect()
// time; nullopt if getsockopt fails.
std::optional<PeerCredentials> peer_credentials(int fd);

} // namespace uds_echo::daemon
