// Peer credentials and the allow lists (--allow-uid/--allow-gid, uds-echod(8)).
#define BOOST_TEST_MODULE unit_access_policy
#include <boost/test/unit_test.hpp>

#include "daemon/access.hpp"

#include <sys/socket.h>
#include <unistd.h>

using namespace uds_echo;
using namespace uds_echo::daemon;

namespace {

struct SocketPair {
    int fds[2] = {-1, -1};
    SocketPair() { BOOST_REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0); }
    ~SocketPair() {
        ::close(fds[0]);
        ::close(fds[1]);
    }
};

const PeerCredentials alice{100, 1000, 1000};
const PeerCredentials bob_in_staff{200, 1001, 50};

} // namespace

BOOST_AUTO_TEST_CASE(peer_credentials_of_a_socketpair_are_our_own) {
    SocketPair pair;
    for (int fd : pair.fds) {
        const auto peer = peer_credentials(fd);
        BOOST_REQUIRE(peer.has_value());
        BOOST_TEST(peer->pid == ::getpid());
        BOOST_TEST(peer->uid == ::getuid());
        BOOST_TEST(peer->gid == ::getgid());
    }
}

BOOST_AUTO_TEST_CASE(peer_credentials_of_a_non_socket_is_nullopt) {
    int pipe_fds[2];
    BOOST_REQUIRE(::pipe(pipe_fds) == 0);
    BOOST_TEST(!peer_credentials(pipe_fds[0]).has_value());
    ::close(pipe_fds[0]);
    ::close(pipe_fds[1]);
    BOOST_TEST(!peer_credentials(-1).has_value());
}

BOOST_AUTO_TEST_CASE(empty_policy_lets_anyone_in) {
    const AccessPolicy anyone;
    BOOST_TEST(!anyone.restricts());
    BOOST_TEST(anyone.allows(alice));
    BOOST_TEST(anyone.allows(bob_in_staff));
    BOOST_TEST(anyone.allows(PeerCredentials{}));
}

BOOST_AUTO_TEST_CASE(uid_match_lets_in) {
    const AccessPolicy policy{{1000}, {}};
    BOOST_TEST(policy.restricts());
    BOOST_TEST(policy.allows(alice));
    BOOST_TEST(!policy.allows(bob_in_staff));
}

BOOST_AUTO_TEST_CASE(gid_match_lets_in) {
    const AccessPolicy policy{{}, {50}};
    BOOST_TEST(policy.restricts());
    BOOST_TEST(policy.allows(bob_in_staff));
    BOOST_TEST(!policy.allows(alice));
}

BOOST_AUTO_TEST_CASE(either_list_is_enough) {
    const AccessPolicy policy{{1000}, {50}};
    BOOST_TEST(policy.allows(alice));
    BOOST_TEST(policy.allows(bob_in_staff));
}

BOOST_AUTO_TEST_CASE(neither_uid_nor_gid_matching_is_refused) {
    const AccessPolicy policy{{0, 999}, {0, 10}};
    BOOST_TEST(!policy.allows(alice));
    BOOST_TEST(!policy.allows(bob_in_staff));
    // A uid that equals an allowed gid does not count, nor the other way round.
    BOOST_TEST(!AccessPolicy({{50}, {}}).allows(PeerCredentials{1, 1001, 1001}));
    BOOST_TEST(!AccessPolicy({{}, {1000}}).allows(PeerCredentials{1, 1000, 7}));
}
