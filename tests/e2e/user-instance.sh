# The per-user instance under the container's systemd: a user with a user manager (lingering),
# their own uds-echo.socket in $XDG_RUNTIME_DIR, and `uds-echo` with no option served by it.
# Sourced by run-systemd-e2e.sh, which defines check, inside, eventually, paced_data, all_grow_by,
# file_size, $work...
# shellcheck shell=bash disable=SC2154

readonly user_name=uds-e2e-user other_user=uds-e2e-other
user_uid=
user_sock=

# A command as that user, with the environment a login session gives them: $XDG_RUNTIME_DIR (the
# client's first choice, systemctl --user's way to the manager) and $HOME.
as_user() {
    inside setpriv --reuid="$user_name" --regid="$user_name" --init-groups \
        env XDG_RUNTIME_DIR="/run/user/$user_uid" HOME="/home/$user_name" "$@"
}
user_state() { as_user systemctl --user is-active "$1" 2>/dev/null || true; }
user_unit_is() { [[ $(user_state "$1") = "$2" ]]; }
user_main_pid() { as_user systemctl --user show -P MainPID uds-echo.service; }
# The user's instance in the journal. Not `journalctl --user-unit`, which matches the caller's
# uid too (root's here).
user_journal() {
    inside journalctl --no-pager _SYSTEMD_USER_UNIT=uds-echo.service _UID="$user_uid" "$@"
}
user_journal_count() {
    user_journal -o cat | grep -c -- "$1" || true
}

# Two users; the first lingers, so logind starts their user manager (user@UID.service) and its
# bus without a login.
set_up_user_instance() {
    inside useradd --create-home --shell /bin/sh "$user_name"
    inside useradd --create-home --shell /bin/sh "$other_user"
    user_uid=$(inside id -u "$user_name")
    user_sock=/run/user/$user_uid/uds-echo.sock
    inside loginctl enable-linger "$user_name"
    eventually 30 bash -c "$(declare -f inside); container_pid=$container_pid;
        [[ \$(inside systemctl is-active user@$user_uid.service) = active ]]" ||
        { echo "user@$user_uid.service: $(service_state "user@$user_uid.service")"; return 1; }
    eventually 30 as_user systemctl --user is-system-running --quiet --wait ||
        echo "the user manager says: $(as_user systemctl --user is-system-running)"
    # Enabled for nobody by the package.
    local enabled
    enabled=$(as_user systemctl --user is-enabled uds-echo.socket 2>&1 || true)
    [[ $enabled = disabled ]] || { echo "uds-echo.socket is $enabled for the user"; return 1; }
    # Also= in uds-echo.socket enables the seqpacket and datagram sockets with it.
    as_user systemctl --user enable --now uds-echo.socket
    local unit
    for unit in uds-echo-seqpacket.socket uds-echo-datagram.socket; do
        enabled=$(as_user systemctl --user is-enabled "$unit" 2>&1 || true)
        [[ $enabled = enabled ]] || { echo "$unit is $enabled after enabling uds-echo.socket"; return 1; }
    done
    as_user systemctl --user start uds-echo-seqpacket.socket uds-echo-datagram.socket
}

check_user_socket_activation() {
    user_unit_is uds-echo.socket active ||
        { echo "socket: $(user_state uds-echo.socket)"; return 1; }
    user_unit_is uds-echo.service inactive ||
        { echo "service: $(user_state uds-echo.service), expected inactive"; return 1; }
    # The socket file: the user's, 0600, in their runtime directory.
    local owner
    owner=$(inside stat -c '%U %a %F' "$user_sock")
    [[ $owner = "$user_name 600 socket" ]] || { echo "socket: $owner"; return 1; }
    # No option: the client tries $XDG_RUNTIME_DIR/uds-echo.sock first.
    local out
    out=$(as_user uds-echo -t 10 hello) || { echo "uds-echo hello: exit $?: $out"; return 1; }
    [[ $out = hello ]] || { echo "uds-echo hello printed: $out"; return 1; }
    eventually 10 user_unit_is uds-echo.service active ||
        { echo "service: $(user_state uds-echo.service), expected active"; return 1; }
    # The other two types at their default paths in the runtime directory, 0600 too.
    local type
    for type in seqpacket datagram; do
        owner=$(inside stat -c '%U %a %F' "/run/user/$user_uid/uds-echo-$type.sock")
        [[ $owner = "$user_name 600 socket" ]] || { echo "$type socket: $owner"; return 1; }
        out=$(as_user uds-echo -t 10 --type "$type" "$type hello") ||
            { echo "uds-echo --type $type hello: exit $?: $out"; return 1; }
        [[ $out = "$type hello" ]] || { echo "uds-echo --type $type hello printed: $out"; return 1; }
    done
    # The daemon runs as the user.
    local pid user
    pid=$(user_main_pid)
    user=$(inside ps -o user:32= -p "$pid" | xargs)
    [[ $user = "$user_name" ]] || { echo "the daemon ($pid) runs as $user"; return 1; }
}

check_user_status_line() {
    eventually 10 bash -c "$(declare -f inside as_user); container_pid=$container_pid;
        user_name=$user_name; user_uid=$user_uid;
        as_user systemctl --user status --no-pager uds-echo.service | grep -q '^ *Status: \"'" || {
        as_user systemctl --user status --no-pager uds-echo.service
        return 1
    }
    as_user systemctl --user status --no-pager uds-echo.service | grep '^ *Status: '
}

check_user_instance_is_private() {
    local status out
    # Another user, even naming the socket: the runtime directory (0700) and the socket (0600)
    # refuse them (exit 77, permission denied).
    status=0
    inside setpriv --reuid="$other_user" --regid="$other_user" --init-groups \
        uds-echo -t 5 -s "$user_sock" hello || status=$?
    [[ $status = 77 ]] || { echo "$other_user: exit $status, expected 77"; return 1; }
    # Root, with no option, does not look there: with the system socket stopped nothing serves
    # it, and the paths it tried do not include the user's.
    inside systemctl stop uds-echo.socket uds-echo.service
    status=0
    out=$(inside uds-echo -t 5 hello 2>&1) || status=$?
    inside systemctl start uds-echo.socket
    [[ $status = 69 ]] || { echo "root: exit $status, expected 69: $out"; return 1; }
    if grep -q "/run/user/" <<<"$out"; then
        echo "root's client tried the user's socket: $out"
        return 1
    fi
    echo "root: $out"
}

# Clients of the user streaming verified data (from the host's paced_data, through the client
# inside the container as that user, with no socket option) through `systemctl --user restart`:
# every connection handed over and resumed, data moving again on all, every byte echoed.
check_user_restart_keeps_connections() {
    local clients=5 bad=0 old_pid handed_before resumed_before
    local handed="handed over $clients connection(s) to the file descriptor store; draining 0"
    local resumed="resuming $clients connection(s)"
    handed_before=$(user_journal_count "$handed")
    resumed_before=$(user_journal_count "$resumed")
    start_streams user "$clients" as_user uds-echo -t 30 - || bad=1
    old_pid=$(user_main_pid)
    as_user systemctl --user restart uds-echo.service || { echo "restart failed"; bad=1; }
    running_anew "$old_pid" user_main_pid user_unit_is uds-echo.service active || bad=1
    finish_streams || bad=1
    (($(user_journal_count "$handed") == handed_before + 1)) ||
        { echo "no '$handed' line"; bad=1; }
    (($(user_journal_count "$resumed") == resumed_before + 1)) ||
        { echo "no '$resumed' line"; bad=1; }
    user_journal -o cat -n 30 |
        grep -E "restart|stop|handed|resuming" || true
    return "$bad"
}
