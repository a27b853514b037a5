#!/bin/bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for SECONDS (default 30).
# usage: tests/fuzz/run-fuzz.sh [SECONDS] [BUILD_DIR]   (default build dir: build/fuzz)
# New inputs go to BUILD_DIR/corpus/<target>; the seed corpus in tests/fuzz/corpus/ is only read.
# A crash (or a leak, a timeout, an out-of-memory) leaves its input in BUILD_DIR/artifacts/, which
# each run empties first, prints the fuzzer's report and makes the script exit non-zero.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
seconds=${1:-30}
build=${2:-$root/build/fuzz}
cxx=${CXX_FUZZ:-$(command -v clang++-14 || command -v clang++)}

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUDS_ECHO_WERROR=ON \
  -DCMAKE_CXX_COMPILER="$cxx" -DUDS_ECHO_FUZZ=ON -DUDS_ECHO_BUILD_TESTS=OFF > /dev/null
cmake --build "$build" --target config_fuzz paths_fuzz

rm -rf "$build/artifacts"
mkdir -p "$build/artifacts" "$build/logs"
status=0
for target in config_fuzz paths_fuzz; do
  seeds="$here/corpus/${target%_fuzz}"
  work="$build/corpus/${target%_fuzz}"
  log="$build/logs/$target.log"
  mkdir -p "$work"
  echo "== $target for ${seconds}s"
  if "$build/tests/fuzz/$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$build/artifacts/$target-" -print_final_stats=1 \
      "$work" "$seeds" > "$log" 2>&1; then
    tail -n 6 "$log"
  else
    # The report without libFuzzer's progress lines ("#123  NEW ...").
    echo "$target failed; its report ($log):"
    { grep -v $'^#[0-9]*\t' "$log" || true; } | tail -n 120
    status=1
  fi
done
if ls "$build"/artifacts/* > /dev/null 2>&1; then
  echo "crash inputs in $build/artifacts (reproduce: $build/tests/fuzz/<target> <input>):"
  ls -l "$build"/artifacts/
  status=1
fi
exit $status
