#!/usr/bin/env bash
# Proves that the .deb is reproducible: builds it twice from scratch, in two build directories,
# with tests/package/check-deb.sh (which also checks each package) and the same SOURCE_DATE_EPOCH,
# and compares the two files byte for byte.
#
#   tests/package/check-reproducible.sh [DIR]     default DIR: build/reproducible
#
# The builds go to DIR/a and DIR/b, emptied first. SOURCE_DATE_EPOCH is the last commit's date
# unless the environment sets it.
set -euo pipefail
source_dir=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:-$source_dir/build/reproducible}

fail() {
  echo "check-reproducible: FAIL: $*" >&2
  exit 1
}

if [[ -z ${SOURCE_DATE_EPOCH:-} ]]; then
  SOURCE_DATE_EPOCH=$(git -C "$source_dir" log -1 --format=%ct 2>/dev/null) ||
    fail "SOURCE_DATE_EPOCH is not set and $source_dir is no git checkout"
fi
export SOURCE_DATE_EPOCH
echo "check-reproducible: SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH ($(date -u -d "@$SOURCE_DATE_EPOCH"))"

debs=()
for build in a b; do
  rm -rf "${dir:?}/$build"
  mkdir -p "$dir"
  "$source_dir/tests/package/check-deb.sh" "$dir/$build" || fail "check-deb.sh $dir/$build failed"
  debs+=("$dir/$build"/uds-echo_*.deb)
done

if ! cmp "${debs[0]}" "${debs[1]}"; then
  # What differs, file by file, to start from.
  rm -rf "${dir:?}/diff"
  for i in 0 1; do
    mkdir -p "$dir/diff/$i"
    dpkg-deb -R "${debs[$i]}" "$dir/diff/$i"
  done
  diff -r "$dir/diff/0" "$dir/diff/1" >&2 || true
  fail "the two packages differ (unpacked in $dir/diff/)"
fi
echo "check-reproducible: OK: ${debs[0]##*/} built twice, identical ($(sha256sum <"${debs[0]}" | cut -c1-16)...)"
