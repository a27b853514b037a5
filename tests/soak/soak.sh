#!/bin/bash
# Soak test for uds-echod: starts a daemon on a private socket, holds CONNECTIONS concurrent
# connections with mixed message sizes for DURATION seconds (every echoed byte verified), and
# prints messages, errors (must be 0), daemon RSS and descriptor count every INTERVAL seconds.
#
# usage: tests/soak/soak.sh [-c CONNECTIONS] [-d SECONDS] [-i INTERVAL] [-t THREADS] [-b BUILD_DIR]
#   defaults: 10000 connections, 60 s, every 10 s, --threads 0, build dir build/
#   UDS_ECHOD=path overrides the daemon binary.
# Exit status: 0 when no error was seen and the daemon exited 0 after SIGTERM.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
connections=10000 duration=60 interval=10 threads=0 build="$here/../../build"
while getopts "c:d:i:t:b:h" opt; do
  case $opt in
    c) connections=$OPTARG ;;
    d) duration=$OPTARG ;;
    i) interval=$OPTARG ;;
    t) threads=$OPTARG ;;
    b) build=$OPTARG ;;
    *) sed -n '2,9p' "$0"; exit 64 ;;
  esac
done
daemon=${UDS_ECHOD:-$build/daemon/uds-echod}
[ -x "$daemon" ] || { echo "soak: no daemon binary at $daemon (build first, or set UDS_ECHOD)" >&2; exit 69; }

dir=$(mktemp -d /tmp/uds-echo-soak.XXXXXX)
pid=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT
: > "$dir/empty.conf"
# Each connection is a descriptor in the daemon and in the client: both need the hard limit.
ulimit -n "$(ulimit -Hn)"

"$daemon" --socket "$dir/s.sock" --config "$dir/empty.conf" --threads "$threads" \
  --max-connections $((connections + 100)) --log-level warning 2> "$dir/daemon.log" &
pid=$!
for _ in $(seq 100); do [ -S "$dir/s.sock" ] && break; sleep 0.1; done
[ -S "$dir/s.sock" ] || { echo "soak: daemon did not start" >&2; cat "$dir/daemon.log" >&2; exit 1; }

echo "soak: uds-echod pid $pid, $connections connections, ${duration}s, threads=$threads"
status=0
python3 "$here/soak_client.py" --socket "$dir/s.sock" --pid "$pid" -c "$connections" \
  -d "$duration" -i "$interval" || status=$?

kill -TERM "$pid"
daemon_status=0
wait "$pid" || daemon_status=$?
pid=
if [ -s "$dir/daemon.log" ]; then echo "soak: daemon log:"; cat "$dir/daemon.log"; fi
echo "soak: client status $status, daemon exit status $daemon_status"
[ "$status" -eq 0 ] && [ "$daemon_status" -eq 0 ]
