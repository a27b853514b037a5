#!/usr/bin/env bash
# Profiles of uds-echod for docs/performance.md:
#
#   tests/perf/profile.sh [BUILD_DIR]        (default build/release, built by run.sh)
#
# 1. Heap allocations per message: uds-echod runs under heaptrack twice, once echoing 100,000
#    messages and once 1,000,000 (8 connections, 64 B, 4 in flight, the same connections and
#    the same steps otherwise). If a message allocated, the second count would be ~900,000
#    higher; the difference divided by 900,000 is the allocations per message.
# 2. System calls per message: `strace -c -f` on uds-echod and on the C epoll reference for
#    200,000 messages of scenario (b) (64 connections, 64 B, 1 in flight).
# Servers run on CPU 1, `uds-echo bench` on CPU 0.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="$(realpath -m "${1:-$root/build/release}")"
daemon="$build/daemon/uds-echod"
client="$build/client/uds-echo"
epoll="$build/tests/perf/perf_epoll_echo"
for f in "$daemon" "$client" "$epoll"; do
    [[ -x "$f" ]] || { echo "profile: $f is missing (run tests/perf/run.sh first)" >&2; exit 1; }
done
for tool in heaptrack heaptrack_print strace taskset; do
    command -v "$tool" >/dev/null || { echo "profile: missing $tool" >&2; exit 1; }
done

work="$(mktemp -d /tmp/uds-echo-profile.XXXXXX)"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# Wait until something accepts connections on the socket $1 (a full echo, via the client).
wait_ready() {
    for _ in $(seq 200); do
        if printf 'ready' | "$client" --socket "$1" >/dev/null 2>&1; then return 0; fi
        sleep 0.05
    done
    echo "profile: nothing answers on $1" >&2
    exit 1
}

# The pid of the uds-echod process below the wrapper $1 (heaptrack or strace runs it as a child).
daemon_below() {
    local pid
    for _ in $(seq 100); do
        pid="$(pgrep -P "$1" -x "$2" || true)"
        [[ -n "$pid" ]] && { echo "$pid"; return 0; }
        sleep 0.05
    done
    echo "profile: no $2 below $1" >&2
    exit 1
}

bench() { taskset -c 0 "$client" --socket "$1" bench "${@:2}" --json >"$work/bench.json"; }

echo "## Heap allocations (heaptrack $(heaptrack --version 2>&1 | grep -o '[0-9.]*' | head -1))"
echo
echo "| messages echoed | allocation calls | temporary | peak heap |"
echo "|---:|---:|---:|---:|"
declare -A calls
for n in 100000 1000000; do
    sock="$work/heap-$n.sock"
    taskset -c 1 heaptrack -o "$work/heap-$n" "$daemon" --socket "$sock" --log-level warning \
        >"$work/heaptrack-$n.log" 2>&1 &
    server_pid=$!
    wait_ready "$sock"
    bench "$sock" -c 8 --size 64 --pipeline 4 -n "$n"
    kill -TERM "$(daemon_below "$server_pid" uds-echod)"
    wait "$server_pid"
    server_pid=""
    heaptrack_print -f "$work"/heap-"$n".* >"$work/heap-$n.txt" 2>/dev/null
    total="$(grep -oP 'calls to allocation functions: \K[0-9]+' "$work/heap-$n.txt")"
    temporary="$(grep -oP 'temporary memory allocations: \K[0-9]+' "$work/heap-$n.txt")"
    peak="$(grep -oP 'peak heap memory consumption: \K\S+' "$work/heap-$n.txt")"
    calls[$n]="$total"
    printf '| %s | %s | %s | %s |\n' "$n" "$total" "$temporary" "$peak"
done
echo
awk -v a="${calls[100000]}" -v b="${calls[1000000]}" \
    'BEGIN { printf "Allocations per message: (%d - %d) / 900000 = %.6f\n", b, a, (b - a) / 900000 }'
echo

echo "## System calls per message (strace -c -f, scenario (b), 200,000 messages)"
echo
echo "| server | syscalls | per message | top calls (count) |"
echo "|---|---:|---:|---|"
for server in uds-echod epoll; do
    sock="$work/strace-$server.sock"
    if [[ "$server" == uds-echod ]]; then
        cmd=("$daemon" --socket "$sock" --log-level warning)
        name=uds-echod
    else
        cmd=("$epoll" "$sock" 1)
        name=perf_epoll_echo
    fi
    taskset -c 1 strace -c -f -o "$work/strace-$server.txt" "${cmd[@]}" >/dev/null 2>&1 &
    server_pid=$!
    wait_ready "$sock"
    bench "$sock" -c 64 --size 64 --pipeline 1 -n 200000
    kill -TERM "$(daemon_below "$server_pid" "$name")"
    wait "$server_pid" || true
    server_pid=""
    # Columns: % time, seconds, usecs/call, calls, [errors], syscall.
    total="$(awk '$NF == "total" { print $4 }' "$work/strace-$server.txt")"
    top="$(awk '$1 ~ /^[0-9.]+$/ && $NF != "total" { print $NF, $4 }' "$work/strace-$server.txt" |
           sort -k2 -nr | head -5 | awk '{ printf "%s%s %s", sep, $1, $2; sep = ", " }')"
    awk -v s="$server" -v t="$total" -v top="$top" \
        'BEGIN { printf "| %s | %d | %.2f | %s |\n", s, t, t / 200000, top }'
done
