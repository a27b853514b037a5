#!/usr/bin/env bash
# Profiles of uds-echod for docs/performance.md:
#
#   tests/perf/profile.sh [BUILD_DIR]        (default build/release, built by run.sh)
#
# 1. Heap allocations per message: uds-echod runs under heaptrack twice, once echoing 100,000
#    messages and once 1,000,000 (8 connections, 64 B, 4 in flight, the same connections and
#    the same steps otherwise). If a message allocated, the second count would be ~900,000
#    higher; the difference divided by 900,000 is the allocations per message.
# 2. System calls per message of uds-echod and of the C epoll reference in scenarios (b) (64
#    connections, 64 B, 1 in flight), (c) (16 in flight) and (f) (churn: one message per
#    connection, so per message is per connection), driven by the C load generator.
# Servers run on CPU 1, the load (`uds-echo bench`, or the C generator) on CPU 0.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="$(realpath -m "${1:-$root/build/release}")"
daemon="$build/daemon/uds-echod"
client="$build/client/uds-echo"
epoll="$build/tests/perf/perf_epoll_echo"
load="$build/tests/perf/perf_epoll_load"
for f in "$daemon" "$client" "$epoll" "$load"; do
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
declare -A allocation_calls
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
    allocation_calls[$n]="$total"
    printf '| %s | %s | %s | %s |\n' "$n" "$total" "$temporary" "$peak"
done
echo
awk -v a="${allocation_calls[100000]}" -v b="${allocation_calls[1000000]}" \
    'BEGIN { printf "Allocations per message: (%d - %d) / 900000 = %.6f\n", b, a, (b - a) / 900000 }'
echo

# System calls are counted on the server's process while the C load generator (which saturates
# the servers, docs/performance.md "The load generator") drives it for a fixed time: with perf's
# syscall tracepoints where the kernel lets perf use them (a count in the kernel, no stop per
# call), else with strace, whose stop per call slows the server and changes how much each
# epoll_wait returns. Messages are the generator's count over the same run.
counter=strace
if perf stat -e 'syscalls:sys_enter_recvfrom' -o /dev/null true 2>/dev/null; then counter=perf; fi
calls=(recvfrom sendto epoll_wait epoll_ctl accept4 close getsockopt read write futex)
echo "## System calls per message (C load generator, 3 s per run, counted with $counter)"
echo
echo "| scenario | server | messages | syscalls per message | per message, each call |"
echo "|---|---|---:|---:|---|"
for scenario in b c f; do
    case "$scenario" in
        b) load_args=(-c 64 --size 64 --pipeline 1) ;;
        c) load_args=(-c 64 --size 64 --pipeline 16) ;;
        f) load_args=(-c 8 --size 64 --churn) ;; # one message per connection
    esac
    for server in uds-echod epoll; do
        sock="$work/syscalls-$server.sock"
        if [[ "$server" == uds-echod ]]; then
            taskset -c 1 "$daemon" --socket "$sock" --log-level warning &
        else
            taskset -c 1 "$epoll" "$sock" 1 &
        fi
        server_pid=$!
        wait_ready "$sock"
        if [[ "$counter" == perf ]]; then
            events=$(printf 'syscalls:sys_enter_%s,' "${calls[@]}")
            perf stat -x, -e "${events%,}" -p "$server_pid" -o "$work/count.txt" &
        else
            strace -c -f -p "$server_pid" -o "$work/count.txt" 2>/dev/null &
        fi
        counter_pid=$!
        sleep 0.3 # the counter attaches
        taskset -c 0 "$load" "$sock" "${load_args[@]}" -d 3 --warmup 0 >"$work/load.json"
        kill -INT "$counter_pid"
        wait "$counter_pid" || true
        kill -TERM "$server_pid"
        wait "$server_pid" || true
        server_pid=""
        rm -f "$sock"
        messages="$(grep -oP '"messages":\K[0-9]+' "$work/load.json")"
        if [[ "$counter" == perf ]]; then
            # CSV: count,unit,event,...
            counts="$(awk -F, '$3 ~ /sys_enter_/ && $1 ~ /^[0-9]+$/ { sub(/.*sys_enter_/, "", $3); print $3, $1 }' "$work/count.txt")"
        else
            # Columns: % time, seconds, usecs/call, calls, [errors], syscall.
            counts="$(awk '$1 ~ /^[0-9.]+$/ && $NF != "total" { print $NF, $4 }' "$work/count.txt")"
        fi
        awk -v scenario="($scenario)" -v server="$server" -v n="$messages" '
            { total += $2; if ($2 / n >= 0.0005) { detail = detail sep $1 " " sprintf("%.3f", $2 / n); sep = ", " } }
            END { printf "| %s | %s | %d | %.3f | %s |\n", scenario, server, n, total / n, detail }' \
            <<<"$counts"
    done
done
