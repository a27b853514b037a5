#!/usr/bin/env bash
# The pause clients see while `systemctl restart uds-echo.service` hands their connections over,
# measured under a real systemd: the container of tests/e2e/run-systemd-e2e.sh with the package
# installed, clients on the host. Not part of any default run.
#
#   tests/perf/restart-pause.sh [BUILD_DIR [CONNECTIONS...]]     (as root)
#
#   BUILD_DIR     a build directory with the uds-echo .deb, as for run-systemd-e2e.sh
#                 (default build/deb: tests/package/check-deb.sh makes it)
#   CONNECTIONS   open connections for each measurement (default: 100 10000; at most the
#                 daemon's max-connections, 10000, beyond which it refuses them).
#
# For each count, tests/perf/restart_pause.py opens the connections, keeps a message in flight on
# each while a restart goes on and runs `systemctl restart uds-echo.service` three times
# (UDS_ECHO_PAUSE_RESTARTS), printing per restart how long the command took, when data moved again
# on every connection, and the longest one message waited for its echo. The journal must show
# every connection handed over and resumed each time. Each count is a check of
# run-systemd-e2e.sh (PASS/FAIL); the figures are printed under it. The figures include the
# client's own time to get round all its connections, one Python thread for all of them: with
# UDS_ECHO_PAUSE_BASELINE=1 each count is measured once more with `true` in place of the restart,
# which gives that floor.

# The variables of run-systemd-e2e.sh are assigned there.
# shellcheck disable=SC2154
set -euo pipefail

if [[ ${BASH_SOURCE[0]} = "$0" ]]; then
    # Run as a command: boot the container through run-systemd-e2e.sh, which sources this file
    # again in place of its own checks.
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    build=${1:-build/deb}
    shift || true
    export UDS_ECHO_PAUSE_COUNTS="${*:-100 10000}"
    export UDS_ECHO_E2E_CHECKS=$here/restart-pause.sh UDS_ECHO_E2E_VERBOSE=1
    exec "$here/../e2e/run-systemd-e2e.sh" "$build"
fi

# Sourced by run-systemd-e2e.sh: everything it defines is here ($sock, $container_pid, check,
# inside, journal_count...).
pause_tool=$source_dir/tests/perf/restart_pause.py

measure_restart_pause() {
    local count=$1 restarts=${UDS_ECHO_PAUSE_RESTARTS:-3} bad=0 handed_before resumed_before
    local handed="handed over $count connection(s) to the file descriptor store; draining 0"
    local resumed="resuming $count connection(s)"
    host_echo "$sock" "activate" || return 1
    handed_before=$(journal_count "$handed")
    resumed_before=$(journal_count "$resumed")
    python3 "$pause_tool" --restarts "$restarts" "$sock" "$count" -- \
        nsenter --all --target "$container_pid" -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        systemctl restart uds-echo.service || bad=1
    echo "journal: $(($(journal_count "$handed") - handed_before)) of $restarts restarts handed" \
        "over all $count connections, $(($(journal_count "$resumed") - resumed_before)) resumed them"
    (($(journal_count "$handed") - handed_before == restarts)) || bad=1
    (($(journal_count "$resumed") - resumed_before == restarts)) || bad=1
    # Where the time of the last restart went: the old process's handover, systemd taking the
    # descriptors into its store and reaping the old process, the new process's start.
    echo "the last restart in the journal:"
    inside journalctl --no-pager -u uds-echo.service -o short-precise -n 300 |
        grep -E "Stopping|handing|handed over|stopped:|Deactivated|Starting|resuming|Started|Failed" |
        tail -n 9
    # The connections are closed now; the daemon stays up for the next count.
    return "$bad"
}

# The same traffic with a command that restarts nothing: what the client alone adds.
measure_client_floor() {
    local count=$1
    python3 "$pause_tool" --restarts "${UDS_ECHO_PAUSE_RESTARTS:-3}" "$sock" "$count" -- true
}

inside systemctl start uds-echo.socket
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"
for count in $UDS_ECHO_PAUSE_COUNTS; do
    check "pause of systemctl restart at $count connections" measure_restart_pause "$count"
    [[ -z ${UDS_ECHO_PAUSE_BASELINE:-} ]] ||
        check "the client alone, no restart, at $count connections" measure_client_floor "$count"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
