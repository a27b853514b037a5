# Package upgrades and downgrades between the previous release and this build, under the
# container's systemd, while clients stream verified data. Sourced by run-systemd-e2e.sh, which
# builds the previous release's package ($previous_deb_inside, docs/testing.md) and defines check,
# inside, host_echo, streaming_client, all_grow_by, journal_count, $work...
# shellcheck shell=bash disable=SC2154

pause_tool=$source_dir/tests/perf/restart_pause.py

# apt as an administrator runs it, non-interactive; a modified conffile is kept.
apt_get=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --allow-downgrades
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
apt_install() { inside "${apt_get[@]}" "$@"; }
# shellcheck disable=SC2016 # dpkg-query expands ${Version}
installed_version() { inside dpkg-query -W -f '${Version}' uds-echo; }

# 10 clients stream verified data and 100 more keep a message in flight (restart_pause.py, which
# prints the longest wait of one message for its echo) while `apt install PACKAGE` replaces the
# running version: every connection is handed over and resumed, data moves again on all of them,
# every byte and message comes back identical.
package_change_keeps_connections() {
    local package=$1 expected_version=$2 clients=10 messages=100 bad=0 handed_before
    local resumed_before old_pid total=$((clients + messages))
    local handed="handed over $total connection(s) to the file descriptor store; draining 0"
    local resumed="resuming $total connection(s)"
    host_echo "$sock" "activate" || return 1
    handed_before=$(journal_count "$handed")
    resumed_before=$(journal_count "$resumed")
    old_pid=$(main_pid)
    start_streams package "$clients" || bad=1
    echo "$(installed_version) -> apt-get install $package:"
    # The same apt-get as apt_install, run by restart_pause.py while it measures.
    python3 "$pause_tool" --restarts 1 "$sock" "$messages" -- \
        nsenter --all --target "$container_pid" -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        "${apt_get[@]}" "$package" || { bad=1; echo "restart_pause.py failed"; }
    [[ $(installed_version) = "$expected_version" ]] ||
        { echo "installed: $(installed_version), expected $expected_version"; bad=1; }
    running_anew "$old_pid" main_pid service_is uds-echo.service active || bad=1
    finish_streams || bad=1
    (($(journal_count "$handed") == handed_before + 1)) || { echo "no '$handed' line"; bad=1; }
    (($(journal_count "$resumed") == resumed_before + 1)) || { echo "no '$resumed' line"; bad=1; }
    inside journalctl --no-pager -u uds-echo.service -o cat -n 40 |
        grep -E "uds-echod [0-9]|restart|handed|resuming|refused|invalid|closed" | tail -n 8
    return "$bad"
}

# A downgrade to the previous release, which serves only streams, drains instead
# (docs/operations.md, "Upgrades and downgrades"): this package's prerm stops the three sockets and
# the service, so the daemon echoes what it has and closes every connection as at a stop, and
# hands none to the older daemon. Stream clients end with every byte echoed, seqpacket clients
# with every message echoed until the daemon closed them (seqpacket_client.py's 3), none hangs.
# Then the older package's socket serves streams, and the message sockets are gone.
check_downgrade_drains() {
    local bad=0 handed_before pid status i seqpacket_pids=() stopped_before
    local handed="handed over" stopped="stop (the job queued for .* is a stop)"
    host_echo "$sock" "activate" || return 1
    handed_before=$(journal_count "$handed")
    stopped_before=$(journal_count "$stopped")
    # Streams short enough to end within the daemon's drain (--shutdown-timeout, 5 s).
    stream_pids=()
    for i in 1 2 3; do
        streaming_client 3 >"$work/downgrade-stream-$i.log" 2>&1 &
        stream_pids+=($!)
    done
    rm -f "$work/downgrade-stop"
    for i in 1 2; do
        python3 "$seqpacket_tool" "$seqpacket_sock" "$work/downgrade-stop" \
            >"$work/downgrade-seqpacket-$i.out" 2>"$work/downgrade-seqpacket-$i.log" &
        seqpacket_pids+=($!)
    done
    eventually 20 bash -c "[[ -s $work/downgrade-seqpacket-1.out && -s $work/downgrade-seqpacket-2.out ]]" ||
        { echo "the seqpacket clients did not get going"; bad=1; }
    echo "$(installed_version) -> apt-get install $previous_deb_inside:"
    apt_install "$previous_deb_inside" >"$work/downgrade.log" 2>&1 ||
        { echo "apt-get failed:"; cat "$work/downgrade.log"; bad=1; }
    [[ $(installed_version) = "$previous_deb_version" ]] ||
        { echo "installed: $(installed_version), expected $previous_deb_version"; bad=1; }
    # Every client ends by itself within seconds of the downgrade.
    local alive
    for _ in $(seq 200); do
        alive=0
        for pid in "${stream_pids[@]}" "${seqpacket_pids[@]}"; do
            ! kill -0 "$pid" 2>/dev/null || alive=$((alive + 1))
        done
        ((alive)) || break
        sleep 0.1
    done
    ((alive == 0)) || { echo "$alive client(s) still connected 20 s after the downgrade"; bad=1; }
    touch "$work/downgrade-stop"
    for i in "${!stream_pids[@]}"; do
        wait "${stream_pids[$i]}" ||
            { echo "stream client $((i + 1)) failed:"; cat "$work/downgrade-stream-$((i + 1)).log"; bad=1; }
    done
    for i in "${!seqpacket_pids[@]}"; do
        status=0
        wait "${seqpacket_pids[$i]}" || status=$?
        cat "$work/downgrade-seqpacket-$((i + 1)).log"
        [[ $status = 0 || $status = 3 ]] || { echo "seqpacket client $((i + 1)): exit $status"; bad=1; }
    done
    (($(journal_count "$handed") == handed_before)) || { echo "connections were handed over"; bad=1; }
    (($(journal_count "$stopped") == stopped_before + 1)) || { echo "no '$stopped' line"; bad=1; }
    # The older release serves streams from its own socket; the message sockets are gone.
    host_echo "$sock" "served by $previous_deb_version" || bad=1
    inside journalctl --no-pager -u uds-echo.service -o cat -n 20 | grep "uds-echod $previous_version" ||
        { echo "no 'uds-echod $previous_version' start line"; bad=1; }
    [[ ! -e $seqpacket_sock && ! -e $datagram_sock ]] ||
        { echo "message socket files left:"; ls -la "$host_run"; bad=1; }
    for unit in "${message_sockets[@]}"; do
        ! service_is "$unit" active || { echo "$unit still active"; bad=1; }
    done
    return "$bad"
}

# The upgrade adds the message sockets: started by the postinst before the running daemon is
# restarted, so the new process takes the stream connections back and serves all three.
check_upgrade_keeps_connections() {
    local bad=0 unit
    package_change_keeps_connections "$current_deb_inside" "$current_deb_version" || bad=1
    for unit in uds-echo.socket "${message_sockets[@]}"; do
        service_is "$unit" active || { echo "$unit: $(service_state "$unit")"; bad=1; }
    done
    check_message_types || bad=1
    return "$bad"
}

# The previous release installed and serving, a configuration the new daemon rejects, then the
# upgrade: the new daemon exits at once (78), the unit fails with the reason in the journal, and
# the connections the old one handed over are closed within seconds, no client hangs. Fixing the
# file and starting the socket serves again.
check_failed_upgrade_closes_connections() {
    local bad=0 pid alive started apt_done closed
    apt_install "$previous_deb_inside" >"$work/failed-upgrade.log" 2>&1 ||
        { echo "installing $previous_version failed:"; cat "$work/failed-upgrade.log"; return 1; }
    inside systemctl start uds-echo.socket
    host_echo "$sock" "activate" || return 1
    start_streams failed 5 || bad=1
    inside cp /etc/uds-echo/uds-echo.conf /root/uds-echo.conf.good
    echo "threads = many" | inside tee -a /etc/uds-echo/uds-echo.conf >/dev/null
    started=$(date +%s.%N)
    apt_install "$current_deb_inside" >"$work/failed-upgrade.log" 2>&1 ||
        echo "apt-get: exit $? (the daemon failed to start)"
    apt_done=$(date +%s.%N)
    # Every client ends (closed by the daemon or by systemd emptying the store), none hangs.
    for _ in $(seq 200); do
        alive=0
        for pid in "${stream_pids[@]}"; do
            ! kill -0 "$pid" 2>/dev/null || alive=$((alive + 1))
        done
        ((alive)) || break
        sleep 0.1
    done
    closed=$(date +%s.%N)
    if ((alive)); then
        echo "$alive client(s) still connected 20 s after the upgrade"
        bad=1
    fi
    awk -v s="$started" -v a="$apt_done" -v c="$closed" 'BEGIN {
        printf "apt-get took %.1f s; every client closed %.1f s after it returned\n", a - s, c - a }'
    for pid in "${stream_pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    eventually 10 service_is uds-echo.service failed ||
        { echo "service: $(service_state uds-echo.service), expected failed"; bad=1; }
    inside journalctl --no-pager -u uds-echo.service -o cat -n 30 | grep -i "threads" || {
        echo "the journal does not say what is wrong:"
        inside journalctl --no-pager -u uds-echo.service -o cat -n 30
        bad=1
    }
    # Mended: the socket serves again.
    inside cp /root/uds-echo.conf.good /etc/uds-echo/uds-echo.conf
    inside systemctl reset-failed uds-echo.service uds-echo.socket || true
    inside systemctl start uds-echo.socket
    host_echo "$sock" "mended" || bad=1
    [[ $(installed_version) = "$current_deb_version" ]] ||
        { echo "installed: $(installed_version)"; bad=1; }
    return "$bad"
}
