#!/bin/bash
# The mutation check (docs/testing.md, "Mutation check"): copies the tracked files of this tree, as
# they are in the working tree, to DIR/src (check.py edits the sources it checks), configures the
# release preset there and runs tests/mutation/check.py on it. Exits non-zero unless every check
# is proven. Run it as root: the tests of several checks need another uid.
# usage: tests/mutation/run-mutation-check.sh [DIR [PROMISE]]   (default: build/mutation)
# PROMISE keeps only the rows whose promise contains it.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-$root/build/mutation}
mkdir -p "$work/src"
# tar keeps the files' times: a second run rebuilds only what changed since the first.
git -C "$root" ls-files -z | tar -C "$root" --null --ignore-failed-read -T - -cf - | tar -C "$work/src" -xf -
cd "$work/src"
# A removed check can leave a function unused, which is only a warning.
cmake --preset release -DUDS_ECHO_WERROR=OFF > /dev/null
# check.py builds the daemon and the tests it runs, and only them.
python3 tests/mutation/check.py . "${@:2}"
