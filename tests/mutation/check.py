#!/usr/bin/env python3
"""Proves that each access and safety check of uds-echod is tested: removes one check at a time,
rebuilds, runs the test that should catch it, and puts the check back. Each row of the table must
say "yes"; the script exits non-zero otherwise, and also when a row's source text is not found
exactly once (the code was reformatted or rewritten: mend the row, do not drop it), when a build
fails, or when a test fails with every check in place. It edits the source tree it is given:
tests/mutation/run-mutation-check.sh runs it on a copy (docs/testing.md, "Mutation check"). By
hand, on a scratch copy built with -DUDS_ECHO_WERROR=OFF (a removed check can leave a function
unused, which is only a warning):

    python3 tests/mutation/check.py SCRATCH_TREE [PROMISE]

With --rows-only in place of PROMISE it edits and builds nothing: it only checks that each row's
source text occurs exactly once in SCRATCH_TREE (the lint_mutation_rows test runs it on the
source tree, so that a rewritten check is seen by the default suite, not first by CI).

Tests that need root are skipped otherwise, and a skipped test catches nothing: run it as root.
"""
import subprocess, sys, os, time
started = time.monotonic()
root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else '.')
build = os.path.join(root, 'build', 'release')
M = [
 ("socket mode set at creation", "lib/daemon/listener.cpp", "::umask(~mode & 0777)", "::umask(~mode & 0777 & 0)", "integration_socket_file", "socket_mode_option_is_applied"),
 ("socket group set", "lib/daemon/listener.cpp", "apply_group(options.path, *options.group);", "if (false) apply_group(options.path, *options.group);", "integration_socket_file", "socket_group_by_number"),
 ("allow lists (refused before the first byte)", "lib/daemon/admission.cpp", "if (settings.access.restricts() && !settings.access.allows(*admission.peer)) {", "if (false) {", "integration_admission", "a_peer_not_in_the_allow_lists_is_closed_before_any_echo_and_logged_once"),
 ("no symlink followed at the socket path", "lib/daemon/listener.cpp", "if (::lstat(path.c_str(), &status) != 0) {\n        if (errno == ENOENT)", "if (::stat(path.c_str(), &status) != 0) {\n        if (errno == ENOENT)", "integration_socket_file", "symlink_to_a_stale_socket_is_refused"),
 ("stale-socket probe", "lib/daemon/listener.cpp", "if (someone_listens(path, type))", "if (false && someone_listens(path, type))", "integration_socket_file", "live_daemon_at_the_path_is_not_disturbed"),
 ("/tmp fallback directory check", "lib/daemon/listener.cpp", "check_private_directory(directory, ::geteuid());", "if (false) check_private_directory(directory, ::geteuid());", "integration_fallback_directory", "a_directory_planted_by_another_user_is_refused"),
 ("per-uid cap", "lib/daemon/admission.cpp", "if (!uid_counts.try_add(admission.peer->uid, settings.max_connections_per_uid)) {", "if (!uid_counts.try_add(admission.peer->uid, 1000000)) {", "integration_admission", "a_uid_at_its_cap_gets_no_more_while_other_uids_are_served"),
 ("per-uid count given back", "lib/daemon/worker.cpp", "worker->pool_.shared().uid_counts.remove(*counted_uid);", "(void)0;", "integration_admission", "a_closed_connection_gives_its_uid_a_slot_back"),
 ("abstract socket warning", "lib/daemon/server.cpp", "            warn_if_anyone_may_connect();", "", "integration_admission", "an_abstract_socket_without_allow_list_is_warned_about_once_at_start"),
 ("shared directory warning", "lib/daemon/listener.cpp", "    warn_if_others_can_replace(directory, status);", "    if (false) warn_if_others_can_replace(directory, status);", "integration_socket_file", "a_directory_others_may_write_to_is_warned_about"),
 ("descriptor exhaustion back-off", "lib/daemon/worker.cpp", "co_await backoff.async_wait(as_tuple_deferred);", "(void)backoff;", "integration_limits", "descriptor_exhaustion_backs_off_logs_once_and_recovers"),
 ("bounded memory: backpressure (no read while the echo is unwritten)", "lib/daemon/session.cpp", "        auto [write_error, written] = co_await asio::async_write(peer, rest, as_tuple_deferred);\n        if (write_error) {", "        auto copy = std::make_shared<std::string>(static_cast<const char*>(rest.data()), rest.size());\n        asio::async_write(peer, asio::buffer(*copy), [copy](error_code, std::size_t) {});\n        const error_code write_error;\n        const std::size_t written = 0;\n        if (false) {", "integration_limits", "a_client_reading_one_byte_per_100ms_keeps_daemon_memory_bounded"),
 ("max-connections", "lib/daemon/worker.cpp", "        if (pool_.connections_held() >= settings_.max_connections) {", "        if (pool_.connections_held() >= 1000000) {", "integration_limits", "max_connections_keeps_extra_clients_waiting_then_serves_them"),
 ("unreadable credentials refused (not taken for root)", "lib/daemon/admission.cpp", "        admission.refusal = \"its credentials cannot be read\";\n        return admission;", "        admission.peer = PeerCredentials{};", "unit_admission_decision", "unreadable_credentials_are_refused_by_an_allow_list_that_lets_root_in"),
 ("a read that found nothing makes Asio wait without trying", "lib/daemon/read_readiness.hpp", "        (state->*member_of(TryReadTag{}))[boost::asio::detail::epoll_reactor::read_op] = false;", "        (void)state;", "unit_read_readiness", "after_a_read_that_found_nothing_the_wait_tries_no_read_and_still_ends"),
 ("what waits for a slow client is copied out of the shared read buffer", "lib/daemon/session.cpp", "        if (data.data() == read_buffer_.data()) {", "        if (false && data.data() == read_buffer_.data()) {", "integration_echo", "echo/a_client_that_does_not_read_gets_its_own_bytes_while_others_are_served"),
 ("accepted sockets skip FIONBIO and EPOLL_CTL_DEL", "lib/daemon/accepted_socket.hpp", "#if BOOST_VERSION == 108100\n", "#if 0\n", "unit_accepted_socket", "an_accepted_connection_costs_no_fionbio_and_no_epoll_ctl_del"),
 ("datagrams answered to abstract senders only", "lib/daemon/datagram_echo.cpp", "    if (!is_abstract_sender(message)) {", "    if (false) {", "integration_datagram", "a_sender_that_swaps_its_path_for_a_symlink_cannot_aim_the_reply"),
 ("a datagram without credentials is never judged as uid 65534", "lib/daemon/datagram_echo.cpp", "        if (credentials.pid == 0)", "        if (false)", "integration_datagram", "a_datagram_without_credentials_never_passes_as_the_overflow_uid"),
 ("allow lists per datagram", "lib/daemon/datagram_echo.cpp", "        if (!peer || !access_.allows(*peer)) {", "        if (false) {", "integration_datagram", "a_sender_not_in_the_allow_lists_is_refused_and_logged"),
 ("an over-long seqpacket message is never echoed cut", "lib/daemon/seqpacket_session.cpp", "        const auto size = static_cast<std::size_t>(length);\n        if (size > buffer.size()) {", "        const auto size = std::min(static_cast<std::size_t>(length), buffer.size());\n        if (false) {", "integration_seqpacket", "an_over_long_message_closes_the_connection_and_is_never_echoed_cut"),
]
def occurrences(f, old):
    return open(os.path.join(root, f)).read().count(old)

if len(sys.argv) > 2 and sys.argv[2] == '--rows-only':
    found_in = [(name, f, occurrences(f, old)) for name, f, old, *_ in M]
    stale = [row for row in found_in if row[2] != 1]
    for name, f, found in stale:
        print(f'{name}: the text to mutate occurs {found} times in {f}, not once')
    print(f'{len(M)} rows, {len(stale)} stale')
    sys.exit(1 if stale else 0)
# A second argument keeps only the rows whose promise contains it.
if len(sys.argv) > 2:
    M = [row for row in M if sys.argv[2] in row[0]]
env = dict(os.environ, UDS_ECHOD=build+'/daemon/uds-echod', UDS_ECHO=build+'/client/uds-echo')
out = sys.stdout
failures = 0

def build_targets(*targets):
    return subprocess.run(['ninja', '-C', build, *targets], capture_output=True, text=True)

class NoSuchTest(Exception):
    pass

def test_fails(binary, test):
    r = subprocess.run([build + '/tests/' + binary, '--run_test=' + test], capture_output=True, text=True, env=env, timeout=300)
    # A filter that matches nothing also exits non-zero: it must not pass for a caught mutation.
    # (A test inside a suite is named SUITE/TEST.)
    if 'no test cases matching filter' in r.stdout + r.stderr:
        raise NoSuchTest(f'{binary} has no test named {test}')
    return r.returncode != 0

# The daemon and the tests the rows name, built before any mutation: a tree that does not build
# proves nothing.
targets = ['daemon/uds-echod', 'client/uds-echo'] + sorted({'tests/' + row[4] for row in M})
b = build_targets(*targets)
if b.returncode != 0:
    sys.exit('the unmutated tree does not build:\n' + b.stdout[-2000:])

out.write('| promise | test | fails without the check |\n| --- | --- | --- |\n')
for name, f, old, new, binary, test in M:
    path = os.path.join(root, f)
    orig = open(path).read()
    found = occurrences(f, old)
    if found != 1:
        failures += 1
        out.write(f'| {name} | `{binary}: {test}` | FAIL: the text to mutate occurs {found} times in {f}, not once |\n'); out.flush(); continue
    open(path, 'w').write(orig.replace(old, new, 1))
    try:
        # Only the daemon and the test that should catch the mutation: the other test programs
        # link the same library and would be relinked for nothing.
        b = build_targets('daemon/uds-echod', 'tests/' + binary)
        if b.returncode != 0:
            result = 'FAIL: build failed: ' + b.stdout[-300:].replace('\n', ' ')
        else:
            result = 'yes' if test_fails(binary, test) else 'NO'
    except subprocess.TimeoutExpired:
        result = 'yes (test timed out)'
    except NoSuchTest as error:
        result = f'FAIL: {error}'
    finally:
        open(path, 'w').write(orig)
    if not result.startswith('yes'):
        failures += 1
    out.write(f'| {name} | `{binary}: {test}` | {result} |\n'); out.flush()
if build_targets(*targets).returncode != 0:
    failures += 1
    out.write('the unmutated tree does not build\n')
# The checks are back: each test passes again.
for name, f, old, new, binary, test in M:
    try:
        passes = not test_fails(binary, test)
    except NoSuchTest:
        passes = False
    if not passes:
        failures += 1
    out.write(f'with the check: {test}: {"pass" if passes else "FAIL"}\n'); out.flush()
out.write(f'{len(M)} checks, {failures} failure(s), {time.monotonic() - started:.0f} s\n')
sys.exit(1 if failures else 0)
