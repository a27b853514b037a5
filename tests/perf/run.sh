#!/usr/bin/env bash
# The performance benchmark of uds-echo (targets in docs/performance.md). One command:
#
#   tests/perf/run.sh [--quick] [--write-doc] [harness options...] [BUILD_DIR]
#
#   BUILD_DIR     build directory (default build/release); configured (RelWithDebInfo) and the
#                 programs built if needed: uds-echod, uds-echo, perf_epoll_echo,
#                 perf_asio_plain_echo, perf_epoll_load.
#   --quick       one 1-second run per scenario and server (about 2 minutes) instead of three
#                 3-second runs (about 15 minutes).
#   --write-doc   also put the table into docs/performance.md (between its markers).
#   --unpinned    no taskset, 2-thread servers: does default --threads pay off? (b,c,d,f)
#   --load c      drive the servers with the C load generator (tests/perf/epoll_load.c), which
#                 saturates them, instead of `uds-echo bench`.
#   --messages    instead: the seqpacket and datagram sockets against the C references
#                 (perf_epoll_message_echo), tests/perf/message_sockets.py (--runs, --duration).
#   --compare-loads  the C server driven by the C generator and by `uds-echo bench` in turn:
#                 how close bench comes to it (a,b,c,f).
#   other options go to tests/perf/harness.py (--runs N, --duration S, --only a,c,h,
#                 --servers udsechod,asio; see harness.py --help).
#
# Needs: taskset, python3, socat (installed with apt-get if missing), 2 CPUs. Servers run on
# CPU 1, the load generator (`uds-echo bench`, or the C one) on CPU 0. The table goes to stdout,
# progress to stderr.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="$root/build/release"
harness_args=()
messages=false
while (($#)); do
    case "$1" in
        --messages) messages=true ;;
        --write-doc) harness_args+=(--write-doc "$root/docs/performance.md") ;;
        --runs | --duration | --warmup | --only | --servers | --load)
            harness_args+=("$1" "$2")
            shift
            ;;
        -h | --help)
            sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        -*) harness_args+=("$1") ;;
        *) build="$(realpath -m "$1")" ;;
    esac
    shift
done

say() { printf '[perf] %s\n' "$*" >&2; }

if [[ "$(nproc)" -lt 2 ]]; then
    say "needs at least 2 CPUs (server on CPU 1, load generator on CPU 0)"
    exit 1
fi
for tool in taskset python3 cmake; do
    command -v "$tool" >/dev/null || { say "missing: $tool"; exit 1; }
done
if ! command -v socat >/dev/null; then
    say "installing socat"
    sudo_cmd=()
    [[ "$(id -u)" -eq 0 ]] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get install -y -q socat >&2
fi

if [[ ! -f "$build/CMakeCache.txt" ]]; then
    say "configuring $build"
    cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUDS_ECHO_PERF=ON >&2
fi
if ! grep -q '^UDS_ECHO_PERF:BOOL=ON' "$build/CMakeCache.txt"; then
    cmake -DUDS_ECHO_PERF=ON "$build" >&2
fi
say "building in $build"
cmake --build "$build" --target uds-echod uds-echo perf_epoll_echo perf_asio_plain_echo \
    perf_epoll_load perf_epoll_message_echo >&2

if ! "$build/client/uds-echo" bench --help >/dev/null 2>&1; then
    say "$build/client/uds-echo has no 'bench' command; update the source and rebuild"
    exit 1
fi

if $messages; then
    message_args=()
    for ((i = 0; i < ${#harness_args[@]}; i++)); do
        case "${harness_args[i]}" in
            --runs | --duration | --warmup) message_args+=("${harness_args[i]}" "${harness_args[i + 1]}") ;;
        esac
    done
    exec python3 "$here/message_sockets.py" "${message_args[@]}" "$build"
fi
exec python3 "$here/harness.py" "${harness_args[@]}" "$build"
