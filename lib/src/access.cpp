// Peer credentials and the allow lists (--allow-uid/--allow-gid).
#include "uds_echo/access.hpp"

#include <sys/socket.h>

#include <algorithm>

namespace uds_echo {

bool AccessPolicy::allows(const PeerCredentials& peer) const {
    if (!restricts())
        return true;
    const bool uid_allowed =
        std::find(allowed_uids.begin(), allowed_uids.end(), peer.uid) != allowed_uids.end();
    const bool gid_allowed =
        std::find(allowed_gids.begin(), allowed_gids.end(), peer.gid) != allowed_gids.end();
    return uid_allowed || gid_allowed;
}

std::string describe_peer(std::uint64_t id, const std::optional<PeerCredentials>& peer) {
    auto text = "connection " + std::to_string(id);
    if (peer)
        text += " (pid " + std::to_string(peer->pid) + ", uid " + std::to_string(peer->uid) +
                ", gid " + std::to_string(peer->gid) + ")";
    return text;
}

std::optional<PeerCredentials> peer_credentials(int fd) {
    struct ucred credentials {};
    socklen_t length = sizeof credentials;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0 ||
        length != sizeof credentials)
        return std::nullopt;
    return PeerCredentials{credentials.pid, credentials.uid, credentials.gid};
}

} // namespace uds_echo
