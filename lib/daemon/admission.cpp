#include "daemon/admission.hpp"

namespace uds_echo::daemon {

Admission admit_peer(int fd, const WorkerSettings& settings, UidCounts& uid_counts,
                     CredentialReader read_credentials) {
    Admission admission;
    const bool needed = settings.admission_needs_credentials();
    if (needed || settings.log_peers)
        admission.peer = read_credentials(fd);
    if (needed && !admission.peer) {
        admission.refusal = "its credentials cannot be read";
        return admission;
    }
    if (settings.access.restricts() && !settings.access.allows(*admission.peer)) {
        admission.refusal = "not in allow-uid or allow-gid";
        return admission;
    }
    if (settings.max_connections_per_uid > 0 && admission.peer->uid != UidCounts::exempt) {
        if (!uid_counts.try_add(admission.peer->uid, settings.max_connections_per_uid)) {
            admission.refusal = "its uid already holds max-connections-per-uid";
            return admission;
        }
        admission.counted_uid = admission.peer->uid;
    }
    return admission;
}

} // namespace uds_echo::daemon
