// Admission of a peer (admission.hpp): the allow lists and the per-uid cap, and that credentials
// which cannot be read refuse the connection instead of passing for root's.
#define BOOST_TEST_MODULE admission
#include <boost/test/unit_test.hpp>

#include "daemon/admission.hpp"

#include <unistd.h>

#include <optional>
#include <string_view>

using namespace uds_echo::daemon;

namespace {

int reads = 0;

std::optional<PeerCredentials> unreadable(int) {
    ++reads;
    return std::nullopt;
}

std::optional<PeerCredentials> root_peer(int) {
    ++reads;
    return PeerCredentials{1, 0, 0};
}

std::optional<PeerCredentials> user_peer(int) {
    ++reads;
    return PeerCredentials{2, 1000, 1000};
}

WorkerSettings allowing_root_only() {
    WorkerSettings settings;
    settings.access.allowed_uids = {0};
    return settings;
}

WorkerSettings capped(unsigned cap) {
    WorkerSettings settings;
    settings.max_connections_per_uid = cap;
    return settings;
}

bool refused_as_unreadable(const Admission& admission) {
    return admission.refusal != nullptr &&
           std::string_view(admission.refusal) == "its credentials cannot be read";
}

} // namespace

BOOST_AUTO_TEST_CASE(unreadable_credentials_are_refused_by_an_allow_list_that_lets_root_in) {
    UidCounts counts;
    const auto admission = admit_peer(3, allowing_root_only(), counts, unreadable);
    BOOST_TEST(refused_as_unreadable(admission));
    BOOST_TEST(!admission.peer.has_value());
    BOOST_TEST(!admission.counted_uid.has_value());
}

BOOST_AUTO_TEST_CASE(unreadable_credentials_are_refused_under_a_per_uid_cap_that_exempts_root) {
    UidCounts counts;
    const auto admission = admit_peer(3, capped(1), counts, unreadable);
    BOOST_TEST(refused_as_unreadable(admission));
    BOOST_TEST(!admission.counted_uid.has_value());
}

BOOST_AUTO_TEST_CASE(a_descriptor_that_is_not_a_socket_is_refused) {
    int pipe_ends[2];
    BOOST_REQUIRE(::pipe(pipe_ends) == 0);
    UidCounts counts;
    const auto admission = admit_peer(pipe_ends[0], allowing_root_only(), counts);
    ::close(pipe_ends[0]);
    ::close(pipe_ends[1]);
    BOOST_TEST(refused_as_unreadable(admission));
}

BOOST_AUTO_TEST_CASE(credentials_needed_only_for_the_log_admit_a_peer_whose_cannot_be_read) {
    UidCounts counts;
    WorkerSettings settings;
    settings.log_peers = true;
    const auto admission = admit_peer(3, settings, counts, unreadable);
    BOOST_TEST((admission.refusal == nullptr));
    BOOST_TEST(!admission.peer.has_value());
}

BOOST_AUTO_TEST_CASE(credentials_nobody_needs_are_not_read) {
    UidCounts counts;
    reads = 0;
    const auto admission = admit_peer(3, WorkerSettings{}, counts, unreadable);
    BOOST_TEST((admission.refusal == nullptr));
    BOOST_TEST(reads == 0);
}

BOOST_AUTO_TEST_CASE(root_read_as_root_is_let_in_by_allow_uid_0_and_not_counted) {
    UidCounts counts;
    auto settings = allowing_root_only();
    settings.max_connections_per_uid = 1;
    for (int i = 0; i < 3; ++i) {
        const auto admission = admit_peer(3, settings, counts, root_peer);
        BOOST_TEST((admission.refusal == nullptr));
        BOOST_TEST(!admission.counted_uid.has_value());
    }
}

BOOST_AUTO_TEST_CASE(a_user_outside_the_allow_list_is_refused) {
    UidCounts counts;
    const auto admission = admit_peer(3, allowing_root_only(), counts, user_peer);
    BOOST_REQUIRE(admission.refusal != nullptr);
    BOOST_TEST(std::string_view(admission.refusal) == "not in allow-uid or allow-gid");
}

BOOST_AUTO_TEST_CASE(a_user_at_the_cap_is_refused_and_holds_no_further_count) {
    UidCounts counts;
    const auto first = admit_peer(3, capped(1), counts, user_peer);
    BOOST_TEST((first.refusal == nullptr));
    BOOST_TEST((first.counted_uid == std::optional<uid_t>(1000)));
    const auto second = admit_peer(3, capped(1), counts, user_peer);
    BOOST_REQUIRE(second.refusal != nullptr);
    BOOST_TEST(std::string_view(second.refusal) == "its uid already holds max-connections-per-uid");
    counts.remove(1000);
    BOOST_TEST((admit_peer(3, capped(1), counts, user_peer).refusal == nullptr));
}
