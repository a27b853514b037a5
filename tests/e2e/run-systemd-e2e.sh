#!/usr/bin/env bash
# End-to-end test of the systemd integration under a real systemd as PID 1.
#
# Usage: tests/e2e/run-systemd-e2e.sh [BUILD_DIR]     (default: build/release; run as root)
#
# Boots a Debian root file system with systemd-nspawn, installs the built binaries and units in it
# (the .deb from `cpack -G DEB` when BUILD_DIR has one, `cmake --install` otherwise) and checks
# socket activation, the service's static user, notification, journald, reload, exit-on-idle,
# restart after a crash, connections kept through systemctl restart and a reinstall of the package,
# a stream drained by systemctl stop and by a restart without the system bus, the socket's group
# and the Accept=yes pair, from the host through a socket directory shared with the container; a
# user's own instance under their user manager (tests/e2e/user-instance.sh); and, with the .deb,
# a downgrade to the previous release and an upgrade back with clients streaming, and an upgrade
# whose daemon cannot start (tests/e2e/upgrades.sh; the previous release's package is built from
# its commit and cached, docs/testing.md).
# Prints PASS/FAIL per check (and, with UDS_ECHO_E2E_VERBOSE=1, what each passing check printed)
# and exits non-zero if any check failed. UDS_ECHO_E2E_CHECKS=FILE runs the checks FILE defines
# instead (it is sourced once the container is up and the package installed).
#
# The host's PID 1 need not be systemd (docs/testing.md says why each nspawn
# option is there). The root file system is built once with debootstrap and cached as a tarball in
# $UDS_ECHO_E2E_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/uds-echo-e2e); every run extracts a
# fresh copy, and everything a run creates (work directory, mounts, cgroups, the container) is
# removed on exit, failure or interruption included.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source_dir=$(cd "$script_dir/../.." && pwd)
build_dir=${1:-build/release}
[[ $build_dir = /* ]] || build_dir=$source_dir/$build_dir
readonly build_dir
readonly cache_dir=${UDS_ECHO_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/uds-echo-e2e}

die() {
    echo "run-systemd-e2e: $*" >&2
    exit 1
}

[[ $(id -u) = 0 ]] || die "must run as root (debootstrap, mounts, systemd-nspawn)"
[[ -f $build_dir/CMakeCache.txt ]] || die "$build_dir is not a configured build directory"

# ---------------------------------------------------------------------------------------------
# Cleanup: registered before anything is created, safe to run at any point.
work=
nspawn_pid=
container_pid=
cgroup_dirs=()
host_dir_mounted=no

# Waits up to $2 tenths of a second for process $1 to end.
wait_gone() {
    local _
    for _ in $(seq "$2"); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.1
    done
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [[ -n $nspawn_pid ]] && kill -0 "$nspawn_pid" 2>/dev/null; then
        # SIGTERM makes nspawn ask the container's systemd to power off (about a second).
        kill -TERM "$nspawn_pid" 2>/dev/null || true
        wait_gone "$nspawn_pid" 50
        # Still there: kill the container's PID 1, which takes its whole PID namespace with it.
        # Killing only nspawn would leave the container running, re-parented to the host's init.
        [[ -z $container_pid ]] || kill -KILL "$container_pid" 2>/dev/null || true
        wait_gone "$nspawn_pid" 50
        kill -KILL "$nspawn_pid" 2>/dev/null || true
    fi
    [[ -z $nspawn_pid ]] || wait "$nspawn_pid" 2>/dev/null || true
    # Background clients of a check interrupted half-way.
    local job
    for job in $(jobs -p); do
        kill -KILL "$job" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    if [[ $host_dir_mounted = yes ]]; then
        umount "$work/run" 2>/dev/null || umount -l "$work/run" 2>/dev/null || true
    fi
    # Deepest first: nspawn leaves payload/ and supervisor/ below our cgroup. The kernel takes a
    # moment to empty them after the last process died.
    local dir _
    for dir in "${cgroup_dirs[@]}"; do
        for _ in $(seq 50); do
            [[ -d $dir ]] || break
            find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || true
            [[ -d $dir ]] || break
            sleep 0.1
        done
        [[ ! -d $dir ]] || echo "run-systemd-e2e: could not remove cgroup $dir" >&2
    done
    if [[ -n $work && -d $work ]]; then
        # Never follow anything into a mount that might still be there.
        if ! grep -q " $work/" /proc/self/mounts; then
            rm -rf --one-file-system "$work"
        else
            echo "run-systemd-e2e: $work still has mounts; left in place" >&2
        fi
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

quietly() {
    # Runs a command with its output in a log; shows the log only if it fails.
    local log=$work/quiet.log
    if ! "$@" >"$log" 2>&1; then
        echo "run-systemd-e2e: failed: $*" >&2
        tail -n 40 "$log" >&2
        return 1
    fi
}

work=$(mktemp -d /tmp/uds-echo-e2e.XXXXXX)
chmod 0755 "$work"
readonly root=$work/root
readonly host_run=$work/run # shared with the container as /run/uds-echo
readonly stage=$work/stage  # `cmake --install` output, for the host's client
mkdir -p "$root" "$host_run" "$stage"

# ---------------------------------------------------------------------------------------------
# Tools.
need_packages=()
command -v systemd-nspawn >/dev/null || need_packages+=(systemd-container)
command -v debootstrap >/dev/null || need_packages+=(debootstrap)
if ((${#need_packages[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    quietly apt-get update -qq
    # Without recommends: libnss-mymachines would edit the host's /etc/nsswitch.conf.
    quietly apt-get install -y -qq --no-install-recommends "${need_packages[@]}"
fi

# ---------------------------------------------------------------------------------------------
# What gets installed: the build's install tree, and the .deb if packaging made one.
quietly env DESTDIR="$stage" cmake --install "$build_dir"
client=$(find "$stage" -path '*/bin/uds-echo' -type f | head -n 1)
daemon=$(find "$stage" -path '*/sbin/uds-echod' -type f | head -n 1)
[[ -x $client && -x $daemon ]] || die "cmake --install of $build_dir installed no uds-echo/uds-echod"
deb=$(find "$build_dir" -maxdepth 1 -name 'uds-echo_*.deb' -type f | sort | tail -n 1)
architecture=$(dpkg --print-architecture)

# ---------------------------------------------------------------------------------------------
# The previous release (docs/testing.md, "The previous release"): the package built from its
# commit, once, and cached. From `git archive` rather than a worktree, so that nothing is left in
# the clone, interrupted or not. The clone needs the history down to that commit.
readonly previous_version=0.1.0
readonly previous_commit=8af9b17e05e42cf9529f87cb0cd2a89536438547
previous_deb=
if [[ -n $deb ]]; then
    previous_deb=$cache_dir/uds-echo_$previous_version-${previous_commit:0:12}_$architecture.deb
    if [[ ! -f $previous_deb ]]; then
        git -C "$source_dir" cat-file -e "$previous_commit^{commit}" 2>/dev/null ||
            die "the previous release $previous_version ($previous_commit) is not in the clone" \
                "(a shallow clone? fetch its history)"
        echo "run-systemd-e2e: building the $previous_version package (once, cached in $cache_dir)"
        mkdir -p "$work/previous/src" "$cache_dir"
        git -C "$source_dir" archive "$previous_commit" | tar -C "$work/previous/src" -x
        quietly cmake -S "$work/previous/src" -B "$work/previous/build" -G Ninja \
            -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr \
            -DUDS_ECHO_BUILD_TESTS=OFF -DUDS_ECHO_PERF=OFF
        quietly cmake --build "$work/previous/build" --parallel "${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
        (cd "$work/previous/build" && quietly cpack -G DEB)
        built=$(find "$work/previous/build" -maxdepth 1 -name "uds-echo_${previous_version}-*.deb")
        [[ -f $built ]] || die "cpack made no uds-echo_$previous_version package"
        cp "$built" "$previous_deb.tmp.$$"
        mv "$previous_deb.tmp.$$" "$previous_deb"
    fi
fi

# ---------------------------------------------------------------------------------------------
# Root file system: Debian minbase with systemd and the libraries the binaries link against.
# shellcheck source=/dev/null
. /etc/os-release
readonly suite=${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}

# The machine's own Debian mirror (its main archive, not -security or -updates).
host_mirror() {
    local file
    if [[ -f /etc/apt/sources.list ]]; then
        awk -v suite="$suite" '$1 == "deb" && $0 !~ /\[/ && $3 == suite { print $2; exit }
                               $1 == "deb" && $2 ~ /^\[/ { for (i = 3; i <= NF; i++)
                                   if ($i !~ /\]$/ && $(i+1) == suite) { print $i; exit } }' \
            /etc/apt/sources.list
    fi
    for file in /etc/apt/sources.list.d/*.sources; do
        [[ -f $file ]] || continue
        # deb822 stanzas: the first URI of a "deb" stanza whose Suites include exactly $suite.
        awk -v suite="$suite" '
            function flush() {
                if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && uri != "")
                    { print uri; found = 1; exit }
                types = suites = uri = ""
            }
            /^[ \t]*$/ { flush(); next }
            /^Types:/ { sub(/^Types:[ \t]*/, ""); types = $0 }
            /^Suites:/ { sub(/^Suites:[ \t]*/, ""); suites = $0 }
            /^URIs:/ { uri = $2 }
            END { if (!found) flush() }' "$file"
    done
    for file in /etc/apt/sources.list.d/*.list; do
        [[ -f $file ]] || continue
        awk -v suite="$suite" '$1 == "deb" && $3 == suite { print $2; exit }' "$file"
    done
}
mirror=$(host_mirror | head -n 1)
mirror=${mirror:-http://deb.debian.org/debian}

# Packages that own the shared libraries the binaries load (dpkg -S on this machine, which built
# them), without the architecture qualifier.
runtime_packages() {
    local lib
    ldd "$daemon" "$client" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u |
        while read -r lib; do
            dpkg -S "$(readlink -f "$lib")" 2>/dev/null || dpkg -S "$lib" 2>/dev/null || true
        done | cut -d: -f1 | sort -u
}
# A .deb's dependencies (first alternative, no version), as apt would install them.
deb_dependencies() {
    dpkg-deb -f "$1" Depends 2>/dev/null | tr ',' '\n' | sed -E 's/\|.*//; s/\(.*\)//; s/:any//' |
        awk 'NF { print $1 }'
}
# systemd-sysv: /sbin/init; dbus: systemctl and journalctl talk to PID 1 over it in places;
# procps: /bin/kill, which the service's ExecReload uses; libpam-systemd and dbus-user-session:
# a lingering user's manager and their bus, for the per-user instance.
includes=(systemd systemd-sysv dbus procps libsystemd0 libpam-systemd dbus-user-session)
mapfile -t -O "${#includes[@]}" includes < <(runtime_packages)
[[ -z $deb ]] || mapfile -t -O "${#includes[@]}" includes < <(deb_dependencies "$deb")
include_list=$(printf '%s\n' "${includes[@]}" | sort -u | paste -sd, -)
cache_key=$(printf '%s\n' "$suite" "$include_list" | sha256sum | cut -c1-16)
readonly rootfs_tar=$cache_dir/rootfs-$suite-$architecture-$cache_key.tar

if [[ ! -f $rootfs_tar ]]; then
    echo "run-systemd-e2e: building the $suite root file system (once, cached in $cache_dir)"
    mkdir -p "$cache_dir"
    bootstrap=$work/bootstrap
    if ! debootstrap --variant=minbase --include="$include_list" "$suite" "$bootstrap" "$mirror" \
        >"$work/debootstrap.log" 2>&1; then
        tail -n 40 "$work/debootstrap.log" >&2
        [[ ! -f $bootstrap/debootstrap/debootstrap.log ]] ||
            tail -n 40 "$bootstrap/debootstrap/debootstrap.log" >&2
        die "debootstrap $suite from $mirror failed"
    fi
    rm -f "$bootstrap"/var/cache/apt/archives/*.deb "$bootstrap"/var/lib/apt/lists/*_Packages
    # Written under a temporary name so an interrupted run never leaves a truncated cache.
    tar -C "$bootstrap" --numeric-owner --xattrs -cf "$rootfs_tar.tmp.$$" .
    mv "$rootfs_tar.tmp.$$" "$rootfs_tar"
    rm -rf --one-file-system "$bootstrap"
fi
tar -C "$root" --numeric-owner --xattrs -xf "$rootfs_tar"

# Install into the root before boot (the .deb is installed from inside, after boot, so its
# maintainer scripts run under the container's systemd).
if [[ -n $deb ]]; then
    cp "$deb" "$root/root/uds-echo.deb"
    # Under their own names too, for apt (tests/e2e/upgrades.sh).
    current_deb_inside=/root/$(basename "$deb")
    previous_deb_inside=/root/$(basename "$previous_deb")
    cp "$deb" "$root$current_deb_inside"
    cp "$previous_deb" "$root$previous_deb_inside"
    current_deb_version=$(dpkg-deb -f "$deb" Version)
    previous_deb_version=$(dpkg-deb -f "$previous_deb" Version)
    install_how="package $(basename "$deb")"
else
    # --keep-directory-symlink: the install tree has lib/systemd/..., the usr-merged root has
    # lib -> usr/lib, which a plain copy would refuse to merge into.
    tar -C "$stage" -c . | tar -C "$root" -x --keep-directory-symlink
    install_how="cmake --install $build_dir"
fi

# ---------------------------------------------------------------------------------------------
# Boot. The socket directory is a tmpfs on the host, bound as the container's /run/uds-echo.
mount -t tmpfs -o mode=0755,size=16m uds-echo-e2e "$host_run"
host_dir_mounted=yes

# Our own cgroup in every hierarchy nspawn might use, so its payload/ and supervisor/ land there
# and are removed with it.
readonly cgroup_name=uds-echo-e2e-$$
for hierarchy in /sys/fs/cgroup/systemd /sys/fs/cgroup/unified /sys/fs/cgroup; do
    [[ -f $hierarchy/cgroup.procs ]] || continue
    current=$(awk -F: -v h="$hierarchy" '
        (h ~ /systemd$/ && $2 == "name=systemd") || (h !~ /systemd$/ && $1 == "0") { print $3 }' \
        /proc/self/cgroup | head -n 1)
    dir=$hierarchy${current%/}/$cgroup_name
    if mkdir "$dir" 2>/dev/null; then
        cgroup_dirs+=("$dir")
    fi
done
((${#cgroup_dirs[@]})) || die "could not create a cgroup of our own in /sys/fs/cgroup"

boot_started=$(date +%s.%N)
(
    for dir in "${cgroup_dirs[@]}"; do
        echo "$BASHPID" >"$dir/cgroup.procs"
    done
    # A private mount namespace with a tmpfs on /run: nspawn keeps state in /run/systemd/nspawn.
    # shellcheck disable=SC2016 # $1..$3 are the inner shell's arguments
    exec unshare --mount --propagation private -- sh -c '
        mount -t tmpfs -o mode=0755 tmpfs /run || exit 1
        exec systemd-nspawn --quiet --boot --register=no --keep-unit --private-network \
            --volatile=overlay --console=read-only --machine="$1" --directory="$2" \
            --bind="$3:/run/uds-echo"' sh "uds-echo-e2e-$$" "$root" "$host_run"
) </dev/null >"$work/nspawn.log" 2>&1 &
nspawn_pid=$!

# The container's PID 1: the descendant of nspawn that is PID 1 in a PID namespace of its own.
descendants() {
    local child
    for child in $(pgrep -P "$1"); do
        echo "$child"
        descendants "$child"
    done
}
for _ in $(seq 300); do
    kill -0 "$nspawn_pid" 2>/dev/null || break
    for pid in $(descendants "$nspawn_pid"); do
        if awk '/^NSpid:/ { found = NF >= 3 && $NF == 1 } END { exit !found }' \
            "/proc/$pid/status" 2>/dev/null; then
            container_pid=$pid
            break 2
        fi
    done
    sleep 0.1
done
if [[ -z $container_pid ]]; then
    cat "$work/nspawn.log" >&2
    die "the container did not start"
fi

inside() {
    nsenter --all --target "$container_pid" -- \
        env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        SYSTEMD_PAGER= SYSTEMD_COLORS=0 LANG=C.UTF-8 "$@"
}

# Up when systemctl answers with "running" (or "degraded": some unit of the minimal system failed,
# which these checks do not depend on; they are listed at the end if a check fails).
state=
deadline=$((SECONDS + 120))
while ((SECONDS < deadline)) && kill -0 "$nspawn_pid" 2>/dev/null; do
    state=$(inside timeout 10 systemctl is-system-running --wait 2>>"$work/wait.log") || true
    [[ $state != running && $state != degraded ]] || break
    sleep 0.2
done
if [[ $state != running && $state != degraded ]]; then
    cat "$work/nspawn.log" "$work/wait.log" >&2
    die "the container's systemd did not come up (state: ${state:-none})"
fi
boot_seconds=$(awk -v start="$boot_started" -v now="$(date +%s.%N)" 'BEGIN { printf "%.1f", now - start }')

if [[ -n $deb ]]; then
    inside dpkg -i /root/uds-echo.deb >"$work/dpkg.log" 2>&1 || {
        cat "$work/dpkg.log" >&2
        die "dpkg -i $(basename "$deb") failed inside the container"
    }
    inside systemctl daemon-reload
else
    # The group came from sysusers.d at boot; nothing to reload.
    :
fi

# ---------------------------------------------------------------------------------------------
# Checks. Each is a function; a failing one prints why and the rest still run.
readonly sock=$host_run/uds-echo.sock
readonly inetd_sock=$host_run/uds-echo-inetd.sock
readonly seqpacket_sock=$host_run/uds-echo-seqpacket.sock datagram_sock=$host_run/uds-echo-datagram.sock
readonly message_sockets=(uds-echo-seqpacket.socket uds-echo-datagram.socket)
readonly seqpacket_tool=$script_dir/seqpacket_client.py
passed=0
failed=0
failed_names=()

check() {
    local name=$1
    shift
    local log=$work/check.log
    if "$@" >"$log" 2>&1; then
        echo "PASS  $name"
        [[ -z ${UDS_ECHO_E2E_VERBOSE:-} ]] || sed 's/^/      /' "$log"
        passed=$((passed + 1))
    else
        echo "FAIL  $name"
        sed 's/^/      /' "$log"
        failed=$((failed + 1))
        failed_names+=("$name")
    fi
}

# Polls `command...` for up to $1 seconds.
eventually() {
    local seconds=$1
    shift
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

service_state() { inside systemctl is-active "$1" 2>/dev/null || true; }
service_is() { [[ $(service_state "$1") = "$2" ]]; }
main_pid() { inside systemctl show -P MainPID uds-echo.service; }

# The client, from the host, against the container's socket; prints its output on failure.
host_echo() {
    local socket=$1 message=$2 out
    out=$("$client" -t 20 -s "$socket" "$message" 2>&1) || {
        echo "client ($message) failed with $?: $out"
        return 1
    }
    [[ $out = "$message" ]] || {
        echo "client ($message) printed: $out"
        return 1
    }
}

check_socket_starts_alone() {
    local unit path owner
    inside systemctl start uds-echo.socket "${message_sockets[@]}"
    for unit in uds-echo.socket "${message_sockets[@]}"; do
        service_is "$unit" active || { echo "$unit: $(service_state "$unit")"; return 1; }
    done
    # The service stays down until someone connects.
    sleep 1
    service_is uds-echo.service inactive ||
        { echo "service: $(service_state uds-echo.service), expected inactive"; return 1; }
    for path in "$sock" "$seqpacket_sock" "$datagram_sock"; do
        [[ -S $path ]] || { echo "no socket at $path"; ls -la "$host_run"; return 1; }
        # docs/operations.md: root-owned, group uds-echo, mode 0660.
        owner=$(inside stat -c '%U:%G %a' "/run/uds-echo/${path##*/}")
        [[ $owner = "root:uds-echo 660" ]] || { echo "${path##*/} owner and mode: $owner"; return 1; }
    done
}

check_activation() {
    host_echo "$sock" "hello" || return 1
    eventually 10 service_is uds-echo.service active ||
        { echo "service: $(service_state uds-echo.service), expected active"; return 1; }
}

check_static_user() {
    local user pid ps_user groups
    user=$(inside systemctl show -P User uds-echo.service)
    [[ $user = uds-echod ]] || { echo "User=$user, expected uds-echod"; return 1; }
    [[ $(inside systemctl show -P DynamicUser uds-echo.service) = no ]] ||
        { echo "DynamicUser is not no"; return 1; }
    pid=$(main_pid)
    ps_user=$(inside ps -o user:32= -o group:32= -p "$pid" | xargs)
    [[ $ps_user = "uds-echod uds-echod" ]] ||
        { echo "the daemon ($pid) runs as $ps_user, expected uds-echod uds-echod"; return 1; }
    # A system user from sysusers.d, in the passwd file, not a member of the clients' group.
    inside getent passwd uds-echod
    groups=$(inside id -nG uds-echod)
    [[ $groups = uds-echod ]] || { echo "uds-echod is in the groups: $groups"; return 1; }
}

check_status_line() {
    # STATUS= is sent at most once a second: wait for it rather than expecting it at once.
    eventually 10 bash -c "$(declare -f inside); container_pid=$container_pid;
        inside systemctl status --no-pager uds-echo.service | grep -q '^ *Status: \"'" || {
        inside systemctl status --no-pager uds-echo.service
        return 1
    }
    inside systemctl status --no-pager uds-echo.service | grep '^ *Status: '
}

check_journal_priorities() {
    # The daemon's lines reach the journal with their priority (<N> prefixes on stderr), not as
    # journald's default 6 for everything: at least one line at info, and its fields say so.
    local verbose
    verbose=$(inside journalctl --no-pager -u uds-echo.service -p info -o verbose)
    grep -q 'PRIORITY=6' <<<"$verbose" || { echo "no PRIORITY=6 line:"; echo "$verbose"; return 1; }
    grep -q '_COMM=uds-echod' <<<"$verbose" || { echo "no line from uds-echod:"; echo "$verbose"; return 1; }
    # No raw "<6>" prefix left in a message: journald must have consumed it.
    if inside journalctl --no-pager -u uds-echo.service -o cat | grep -E '^<[0-7]>'; then
        echo "priority prefixes were logged literally"
        return 1
    fi
}

check_journal_debug_priority() {
    # Run with --log-level debug by the exit-on-idle drop-in: its debug lines must arrive at
    # priority 7, which only the daemon's <7> prefixes can produce (journald files plain stderr
    # lines at 6).
    local verbose
    verbose=$(inside journalctl --no-pager -u uds-echo.service -p debug..debug -o verbose)
    if ! grep -q '_COMM=uds-echod' <<<"$verbose" || ! grep -q 'PRIORITY=7' <<<"$verbose"; then
        echo "no debug line from uds-echod at priority 7:"
        echo "$verbose" | tail -n 30
        return 1
    fi
}

check_reload() {
    local before after
    before=$(main_pid)
    inside systemctl reload uds-echo.service || { echo "systemctl reload failed"; return 1; }
    service_is uds-echo.service active ||
        { echo "service after reload: $(service_state uds-echo.service)"; return 1; }
    after=$(main_pid)
    [[ $before = "$after" && $after != 0 ]] ||
        { echo "MainPID changed across reload: $before -> $after"; return 1; }
    host_echo "$sock" "after reload" || return 1
}

check_exit_on_idle() {
    # Override the command line through a drop-in, as an administrator would.
    local exec_start
    exec_start=$(inside systemctl cat uds-echo.service | sed -n 's/^ExecStart=//p' | tail -n 1)
    [[ -n $exec_start ]] || { echo "no ExecStart= in uds-echo.service"; return 1; }
    inside mkdir -p /etc/systemd/system/uds-echo.service.d
    printf '[Service]\nExecStart=\nExecStart=%s --exit-on-idle 2 --log-level debug\n' "$exec_start" |
        inside tee /etc/systemd/system/uds-echo.service.d/e2e-exit-on-idle.conf >/dev/null
    inside systemctl daemon-reload
    inside systemctl restart uds-echo.service
    host_echo "$sock" "before idle" || return 1
    # It exits cleanly about 2 s after the last connection ended.
    eventually 15 service_is uds-echo.service inactive ||
        { echo "still $(service_state uds-echo.service) after 15 s idle"; return 1; }
    local result
    result=$(inside systemctl show -P Result uds-echo.service)
    [[ $result = success ]] || { echo "exit on idle ended with Result=$result"; return 1; }
    service_is uds-echo.socket active || { echo "socket: $(service_state uds-echo.socket)"; return 1; }
    # The next connection starts it again.
    host_echo "$sock" "after idle" || return 1
    eventually 10 service_is uds-echo.service active ||
        { echo "not re-activated: $(service_state uds-echo.service)"; return 1; }
}

restore_default_service() {
    inside rm -f /etc/systemd/system/uds-echo.service.d/e2e-exit-on-idle.conf
    inside systemctl daemon-reload
    inside systemctl restart uds-echo.service
}

check_restart_after_kill() {
    local old_pid new_pid restarts_before restarts_after i
    restarts_before=$(inside systemctl show -P NRestarts uds-echo.service)
    old_pid=$(main_pid)
    [[ $old_pid != 0 ]] || { echo "service not running"; return 1; }
    # Freeze the daemon so the clients below are certainly in the listen backlog (connected, not
    # yet accepted) when it dies; a connection the daemon had already accepted dies with it by
    # nature, which is not what this checks.
    inside kill -STOP "$old_pid"
    local pids=() clients=30
    for i in $(seq "$clients"); do
        host_echo "$sock" "client $i" >"$work/kill-client-$i.log" 2>&1 &
        pids+=($!)
    done
    # And more clients keep arriving one after another while systemd restarts the daemon.
    (for i in $(seq 20); do
        host_echo "$sock" "late client $i" || exit 1
    done) >"$work/kill-late.log" 2>&1 &
    local late=$!
    sleep 0.5
    inside kill -KILL "$old_pid"
    local bad=0
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || { bad=1; cat "$work/kill-client-$((i + 1)).log"; }
    done
    wait "$late" || { bad=1; cat "$work/kill-late.log"; }
    new_pid=$(main_pid)
    restarts_after=$(inside systemctl show -P NRestarts uds-echo.service)
    echo "MainPID $old_pid -> $new_pid, NRestarts $restarts_before -> $restarts_after"
    [[ $new_pid != 0 && $new_pid != "$old_pid" ]] || { echo "not restarted"; bad=1; }
    ((restarts_after == restarts_before + 1)) || { echo "NRestarts did not go up by one"; bad=1; }
    service_is uds-echo.service active || { echo "service: $(service_state uds-echo.service)"; bad=1; }
    return "$bad"
}

# Random data at about 200 KiB/s for at most $1 seconds, or until the file $2 (if given) exists: a
# client that keeps streaming while systemd restarts or stops the service.
paced_data() {
    python3 -c '
import os, sys, time
end = time.monotonic() + float(sys.argv[1])
stop = sys.argv[2]
while time.monotonic() < end and not (stop and os.path.exists(stop)):
    sys.stdout.buffer.write(os.urandom(4096))
    sys.stdout.buffer.flush()
    time.sleep(0.02)
' "$1" "${2:-}"
}

# A client streaming paced data through the service (paced_data's $1 and $2), its echo written to
# $3 (default /dev/null); exits 0 only when every byte came back identical and the daemon then
# closed the connection (uds-echo(1)).
streaming_client() {
    paced_data "$1" "${2:-}" | "$client" -t 30 -s "$sock" - >"${3:-/dev/null}"
}

journal_count() {
    inside journalctl --no-pager -u uds-echo.service -o cat | grep -c -- "$1" || true
}

file_size() { stat -c %s "$1" 2>/dev/null || echo 0; }

# Waits up to $1 seconds until every file $3... has grown by more than $2 bytes beyond the size
# it had when called; names those that did not.
all_grow_by() {
    local seconds=$1 bytes=$2 file deadline i
    shift 2
    local files=("$@") start=() late=()
    for file in "${files[@]}"; do
        start+=("$(file_size "$file")")
    done
    deadline=$((SECONDS + seconds))
    while :; do
        late=()
        for i in "${!files[@]}"; do
            (($(file_size "${files[$i]}") > start[i] + bytes)) || late+=("${files[$i]##*/}")
        done
        ((${#late[@]})) || return 0
        ((SECONDS < deadline)) || break
        sleep 0.1
    done
    echo "no data moving within ${seconds} s on: ${late[*]}"
    return 1
}

# Clients streaming verified data until `finish_streams` (see streaming_client): $1 names their
# files ($work/$1-echo-N, the echo; $work/$1-client-N.log, what went wrong), $2 is how many; with
# more arguments, the command that plays the client (stdin to the daemon, the echo to stdout)
# instead of the host's client on the system socket. Returns once data moves on all of them (30 s
# at most: starting 20 Python writers and clients on a loaded 2-CPU machine took more than 10).
stream_name=
stream_pids=()
stream_outputs=()
start_streams() {
    local count=$2 i
    stream_name=$1
    shift 2
    stream_pids=()
    stream_outputs=()
    rm -f "$work/$stream_name-stop"
    for i in $(seq "$count"); do
        stream_outputs+=("$work/$stream_name-echo-$i")
        if (($#)); then
            paced_data 120 "$work/$stream_name-stop" | "$@" >"$work/$stream_name-echo-$i" \
                2>"$work/$stream_name-client-$i.log" &
        else
            streaming_client 120 "$work/$stream_name-stop" "$work/$stream_name-echo-$i" \
                >"$work/$stream_name-client-$i.log" 2>&1 &
        fi
        stream_pids+=($!)
    done
    all_grow_by 30 0 "${stream_outputs[@]}"
}

# Ends the streams: every client must end with all its bytes echoed and no error.
finish_streams() {
    local i bad=0
    touch "$work/$stream_name-stop"
    for i in "${!stream_pids[@]}"; do
        wait "${stream_pids[$i]}" || {
            bad=1
            echo "client $((i + 1)) failed:"
            cat "$work/$stream_name-client-$((i + 1)).log"
        }
    done
    echo "bytes echoed and verified per client: $(file_size "${stream_outputs[0]}") (client 1)"
    return "$bad"
}

# After a restart: the service active again ($3...: the test), under a main process other than
# $1 ($2: the command that prints it), and data moving again on every stream: more than a socket
# buffer's worth (208 KiB) echoed since, which only the new process can have echoed.
running_anew() {
    local old_pid=$1 pid_of=$2 new_pid
    shift 2
    eventually 10 "$@" || { echo "not active"; return 1; }
    new_pid=$($pid_of)
    [[ $new_pid != "$old_pid" ]] || { echo "MainPID $old_pid kept"; return 1; }
    echo "MainPID $old_pid -> $new_pid"
    all_grow_by 20 $((256 * 1024)) "${stream_outputs[@]}"
}

stored_descriptors() { inside systemctl show -P NFileDescriptorStore uds-echo.service; }
store_is_empty() { [[ $(stored_descriptors) = 0 ]]; }

# 20 clients stream verified data through three systemctl restarts and, when the package is
# installed, a dpkg -i of the same .deb (its postinst runs try-restart): every restart hands the
# 20 connections over and the next process resumes them, data moves again on every connection
# after each, the store is empty again, and every client ends with all its bytes echoed.
check_restart_keeps_connections() {
    local clients=20 restarts=3 step steps what old_pid bad=0 step_bad
    local handed_before resumed_before handed_after resumed_after
    local handed="handed over $clients connection(s) to the file descriptor store; draining 0"
    local resumed="resuming $clients connection(s)"
    host_echo "$sock" "activate" || return 1
    handed_before=$(journal_count "$handed")
    resumed_before=$(journal_count "$resumed")
    start_streams restart "$clients" || bad=1
    steps=$restarts
    [[ -z $deb ]] || steps=$((restarts + 1))
    for step in $(seq "$steps"); do
        step_bad=0
        old_pid=$(main_pid)
        if ((step <= restarts)); then
            what="restart $step"
            inside systemctl restart uds-echo.service || { echo "$what failed"; step_bad=1; }
        else
            what="reinstall (dpkg -i, try-restart)"
            inside dpkg -i /root/uds-echo.deb >"$work/reinstall.log" 2>&1 ||
                { echo "dpkg -i failed:"; cat "$work/reinstall.log"; step_bad=1; }
        fi
        running_anew "$old_pid" main_pid service_is uds-echo.service active || step_bad=1
        eventually 10 store_is_empty ||
            { echo "the store holds $(stored_descriptors)"; step_bad=1; }
        if ((step_bad)); then
            echo "$what: FAILED, see above"
            bad=1
        else
            echo "$what: data moving again on all $clients connections"
        fi
    done
    finish_streams || bad=1
    handed_after=$(journal_count "$handed")
    resumed_after=$(journal_count "$resumed")
    echo "restarts that handed over all $clients connections: $((handed_after - handed_before))" \
        "of $steps, that resumed them: $((resumed_after - resumed_before)) of $steps"
    ((handed_after - handed_before == steps && resumed_after - resumed_before == steps)) || bad=1
    inside journalctl --no-pager -u uds-echo.service -o cat -n 40 |
        grep -E "restart|stop|handed|resuming|refused|invalid|closed"
    return "$bad"
}

check_stop_drains_a_stream() {
    local pid bad=0
    host_echo "$sock" "activate" || return 1
    streaming_client 3 >"$work/stop-client.log" 2>&1 &
    pid=$!
    sleep 1
    inside systemctl stop uds-echo.service
    wait "$pid" || { bad=1; echo "client failed:"; cat "$work/stop-client.log"; }
    # Drained because systemd said so over the bus, not for want of an answer.
    inside journalctl --no-pager -u uds-echo.service -o cat -n 20 |
        grep -q ": stop (the job queued for .* is a stop)" ||
        { echo "no 'stop (the job queued ... is a stop)' line in the journal"; bad=1; }
    store_is_empty || { echo "the store holds $(stored_descriptors)"; bad=1; }
    # The socket starts it again.
    host_echo "$sock" "after stop" || bad=1
    return "$bad"
}

# Without the system bus the daemon cannot tell a restart from a stop: it drains, as at a stop
# (docs/operations.md), and says why.
check_restart_without_bus_drains() {
    local pid bad=0
    host_echo "$sock" "activate" || return 1
    inside systemctl stop dbus.socket dbus.service
    streaming_client 3 >"$work/no-bus-client.log" 2>&1 &
    pid=$!
    sleep 1
    inside systemctl restart uds-echo.service || { echo "restart failed"; bad=1; }
    wait "$pid" || { bad=1; echo "client failed:"; cat "$work/no-bus-client.log"; }
    inside journalctl --no-pager -u uds-echo.service -o cat -n 20 |
        grep ": stop (cannot reach the system bus" ||
        { echo "no 'stop (cannot reach the system bus ...)' line in the journal"; bad=1; }
    inside systemctl start dbus.socket || { echo "dbus.socket did not start again"; bad=1; }
    host_echo "$sock" "after the restart" || bad=1
    return "$bad"
}

check_group_refused() {
    local client_inside gid status
    client_inside=$(inside sh -c 'command -v uds-echo') ||
        { echo "no uds-echo client inside the container"; return 1; }
    gid=$(inside getent group uds-echo | cut -d: -f3)
    [[ -n $gid ]] || { echo "no uds-echo group inside the container"; return 1; }
    # Outside the group: refused with 77 (permission denied).
    status=0
    inside setpriv --reuid=65534 --regid=65534 --clear-groups \
        "$client_inside" -t 5 -s /run/uds-echo/uds-echo.sock hello || status=$?
    [[ $status = 77 ]] || { echo "non-member: exit $status, expected 77"; return 1; }
    # The same user as a member of the group gets its echo: the refusal was the group's doing.
    inside setpriv --reuid=65534 --regid=65534 --groups="$gid" \
        "$client_inside" -t 5 -s /run/uds-echo/uds-echo.sock member ||
        { echo "member of uds-echo: exit $?"; return 1; }
}

# `uds-echo --type seqpacket|datagram hello` with no socket option (the default paths), inside
# the container: as root, as a member of the uds-echo group, and refused (77) outside it. The
# datagram client binds an abstract address, which exists only in its network namespace (the
# container's, where systemd created the datagram socket), hence inside.
message_echo() {
    local type=$1 out
    shift
    out=$(inside "$@" uds-echo -t 10 --type "$type" "$type hello" 2>&1) || {
        echo "$type as ${*:-root}: exit $?: $out"
        return 1
    }
    [[ $out = "$type hello" ]] || { echo "$type as ${*:-root} printed: $out"; return 1; }
}

check_message_types() {
    local gid type status bad=0
    gid=$(inside getent group uds-echo | cut -d: -f3)
    [[ -n $gid ]] || { echo "no uds-echo group inside the container"; return 1; }
    for type in seqpacket datagram; do
        message_echo "$type" || bad=1
        message_echo "$type" setpriv --reuid=65534 --regid=65534 --groups="$gid" || bad=1
        status=0
        inside setpriv --reuid=65534 --regid=65534 --clear-groups \
            uds-echo -t 5 --type "$type" hello >/dev/null 2>&1 || status=$?
        [[ $status = 77 ]] || { echo "$type, non-member: exit $status, expected 77"; bad=1; }
    done
    # Seqpacket from the host too, through the socket file.
    local out
    out=$("$client" -t 10 --type seqpacket -s "$seqpacket_sock" "from the host" 2>&1) ||
        { echo "seqpacket from the host: exit $?: $out"; bad=1; }
    ((bad)) || echo "seqpacket and datagram: root and a member of uds-echo echoed, others refused"
    return "$bad"
}

# Seqpacket clients (seqpacket_client.py, on the host) send numbered messages of up to 64 KiB and
# check every echo while `systemctl restart uds-echo.service` runs: none sees a message cut, lost
# or reordered, messages move again after it, and every client ends with its connection closed
# cleanly. Datagrams sent all through the restart (inside, the client's one-shot, 20 s timeout)
# are all answered: those that arrive between the two processes wait in systemd's socket.
check_restart_keeps_messages() {
    local clients=5 i bad=0 old_pid restart_pid sent=0 pids=() datagram_pids=() counts=()
    rm -f "$work/seqpacket-stop"
    host_echo "$sock" "activate" || return 1
    for i in $(seq "$clients"); do
        python3 "$seqpacket_tool" "$seqpacket_sock" "$work/seqpacket-stop" \
            >"$work/seqpacket-$i.out" 2>"$work/seqpacket-$i.log" &
        pids+=($!)
    done
    eventually 20 bash -c "for i in \$(seq $clients); do
        [[ \$(wc -l <$work/seqpacket-\$i.out) -gt 20 ]] || exit 1; done" ||
        { echo "the seqpacket clients did not get going"; bad=1; }
    old_pid=$(main_pid)
    inside systemctl restart uds-echo.service &
    restart_pid=$!
    while kill -0 "$restart_pid" 2>/dev/null || ((sent < 5)); do
        sent=$((sent + 1))
        message_echo datagram >"$work/datagram-$sent.log" 2>&1 &
        datagram_pids+=($!)
        sleep 0.05
    done
    wait "$restart_pid" || { echo "systemctl restart failed"; bad=1; }
    eventually 10 service_is uds-echo.service active || { echo "not active"; bad=1; }
    [[ $(main_pid) != "$old_pid" ]] || { echo "MainPID $old_pid kept"; bad=1; }
    for i in $(seq "$clients"); do
        counts+=("$(wc -l <"$work/seqpacket-$i.out")")
    done
    eventually 20 bash -c "c=(${counts[*]}); for i in \$(seq $clients); do
        [[ \$(wc -l <$work/seqpacket-\$i.out) -gt \$((c[i - 1] + 50)) ]] || exit 1; done" ||
        { echo "messages did not move again on every seqpacket connection"; bad=1; }
    touch "$work/seqpacket-stop"
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || { echo "seqpacket client $((i + 1)): exit $?"; bad=1; }
        cat "$work/seqpacket-$((i + 1)).log"
    done
    for i in "${!datagram_pids[@]}"; do
        wait "${datagram_pids[$i]}" || { cat "$work/datagram-$((i + 1)).log"; bad=1; }
    done
    echo "$sent datagram(s) sent through the restart, each answered"
    inside journalctl --no-pager -u uds-echo.service -o cat -n 20 |
        grep -E "handed|resuming|closed" || true
    return "$bad"
}

check_inetd_pair() {
    inside systemctl start uds-echo-inetd.socket
    [[ -S $inetd_sock ]] || { echo "no socket at $inetd_sock"; return 1; }
    local pids=() i bad=0
    for i in $(seq 10); do
        host_echo "$inetd_sock" "inetd client $i" >"$work/inetd-$i.log" 2>&1 &
        pids+=($!)
    done
    # One streaming client with binary data, alongside.
    head -c 1048576 /dev/urandom >"$work/random.bin"
    "$client" -t 20 -s "$inetd_sock" - <"$work/random.bin" >"$work/random.echo" ||
        { echo "streaming client: exit $?"; bad=1; }
    cmp -s "$work/random.bin" "$work/random.echo" || { echo "1 MiB stream came back different"; bad=1; }
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || { bad=1; cat "$work/inetd-$((i + 1)).log"; }
    done
    # Every instance ends with its connection and is collected.
    eventually 10 bash -c "$(declare -f inside); container_pid=$container_pid;
        ! inside systemctl list-units --no-legend --all 'uds-echo-inetd@*.service' | grep -q ." || {
        echo "instances left:"
        inside systemctl list-units --no-legend --all 'uds-echo-inetd@*.service'
        bad=1
    }
    return "$bad"
}

check_stop_removes_socket() {
    inside systemctl stop uds-echo.socket "${message_sockets[@]}" uds-echo.service \
        uds-echo-inetd.socket
    [[ ! -e $sock && ! -e $seqpacket_sock && ! -e $datagram_sock && ! -e $inetd_sock ]] ||
        { echo "socket files left:"; ls -la "$host_run"; return 1; }
    local status=0
    "$client" -t 5 -s "$sock" hello >/dev/null 2>&1 || status=$?
    [[ $status = 69 ]] || { echo "client after stop: exit $status, expected 69"; return 1; }
}

echo "run-systemd-e2e: $suite container up in ${boot_seconds}s, testing $install_how"
if [[ -n ${UDS_ECHO_E2E_CHECKS:-} ]]; then
    # Other checks instead of these: a file sourced here, which may use everything above
    # (tests/perf/restart-pause.sh).
    # shellcheck source=/dev/null
    . "$UDS_ECHO_E2E_CHECKS"
else
    check "socket starts, service stays inactive" check_socket_starts_alone
    check "first connection activates the service" check_activation
    check "the service runs as the static user uds-echod" check_static_user
    check "systemctl status shows the STATUS line" check_status_line
    check "journal has the daemon's lines with priorities" check_journal_priorities
    check "systemctl reload keeps the service active" check_reload
    check "exit-on-idle, then a new connection re-activates" check_exit_on_idle
    check "journal has debug lines at priority 7" check_journal_debug_priority
    restore_default_service >/dev/null 2>&1 || true
    check "kill -9 under load: restarted, every client echoed" check_restart_after_kill
    restarts_name="20 streams through 3 systemctl restarts"
    [[ -z $deb ]] || restarts_name+=" and a reinstall"
    check "$restarts_name: none cut, every byte verified" check_restart_keeps_connections
    check "systemctl stop drains a client streaming through it" check_stop_drains_a_stream
    check "without the system bus a restart drains a stream, and says why" \
        check_restart_without_bus_drains
    check "a client outside the socket's group is refused" check_group_refused
    check "seqpacket and datagram echo as root and as a group member, others refused" \
        check_message_types
    check "5 seqpacket clients through systemctl restart: every message whole; datagrams answered" \
        check_restart_keeps_messages
    # shellcheck source=tests/e2e/user-instance.sh
    . "$script_dir/user-instance.sh"
    check "a lingering user's manager runs; uds-echo.socket disabled until they enable it" \
        set_up_user_instance
    check "user instance: socket in \$XDG_RUNTIME_DIR (theirs, 0600), activated by uds-echo hello" \
        check_user_socket_activation
    check "user instance: systemctl --user status shows the STATUS line" check_user_status_line
    check "user instance: another user refused, root's client does not look there" \
        check_user_instance_is_private
    check "user instance: 5 streams through systemctl --user restart, every byte verified" \
        check_user_restart_keeps_connections
    if [[ -n $deb ]]; then
        # shellcheck source=tests/e2e/upgrades.sh
        . "$script_dir/upgrades.sh"
        check "downgrade to $previous_deb_version (apt install): clients drained, none hangs" \
            check_downgrade_drains
        check "upgrade to $current_deb_version (apt install) with 110 clients: none cut" \
            check_upgrade_keeps_connections
        check "an upgrade whose daemon rejects the config closes clients; fixed, it serves" \
            check_failed_upgrade_closes_connections
    fi
    check "Accept=yes pair serves 10 concurrent clients" check_inetd_pair
    check "stopping removes the sockets" check_stop_removes_socket
fi

if ((failed)); then
    echo "--- failed units and the uds-echo journal inside the container:"
    inside systemctl --no-pager --failed || true
    inside journalctl --no-pager -u 'uds-echo*' -n 60 || true
fi
echo "$passed passed, $failed failed"
((failed == 0))
