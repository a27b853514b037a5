// Peer credentials and the allow lists (--allow-uid/--allow-gid).
#include "daemon/access.hpp"

#include <sys/socket.h>

#include <algorithm>

namespace uds_echo::daemon {

bool AccessPolicy::allows(const PeerCredentials& peer) const {
    if (!restricts())
        return true;
    const bool uid_allowed =
        std::find(allowed_uids.begin(), allowed_uids.end(), peer.uid) != allowed_uids.end();
    const bool gid_allowed =
        std::find(allowed_gids.begin(), allowed_gids.end(), peer.gid) != allowed_gids.end();
    return uid_allowed || gid_allowed;
}

boost::log::record_ostream& operator<<(boost::log::record_ostream& out, const PeerInLog& peer) {
    out << LogField{peer.subject, static_cast<std::int64_t>(peer.id)} << peer.subject << ' '
        << peer.id;
    if (peer.peer)
        out << LogField{"pid", peer.peer->pid} << LogField{"uid", peer.peer->uid}
            << LogField{"gid", peer.peer->gid} << " (pid " << peer.peer->pid << ", uid "
            << peer.peer->uid << ", gid " << peer.peer->gid << ")";
    return out;
}

std::optional<PeerCredentials> peer_credentials(int fd) {
    struct ucred credentials {};
    socklen_t length = sizeof credentials;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0 ||
        length != sizeof credentials)
        return std::nullopt;
    return PeerCredentials{credentials.pid, credentials.uid, credentials.gid};
}

} // namespace uds_echo::daemon
