#!/usr/bin/env bash
# Builds the uds-echo .deb and checks it: lintian without errors, the files, the service's user and
# the sysusers.d entries, the conffiles, the dependencies, the maintainer scripts, the copyright
# file, and one date (the release's, or SOURCE_DATE_EPOCH) on the changelog, the man pages and
# every file. Needs dpkg-dev (dpkg-shlibdeps, dpkg-parsechangelog) and lintian.
#
#   tests/package/check-deb.sh [BUILD_DIR]        default BUILD_DIR: build/deb
#
# BUILD_DIR is configured with -DCMAKE_INSTALL_PREFIX=/usr if it is not configured yet; an existing
# one must use that prefix (the unit files name /usr/sbin/uds-echod). The .deb is left in BUILD_DIR.
set -euo pipefail
source_dir=$(cd "$(dirname "$0")/../.." && pwd)
build_dir=${1:-$source_dir/build/deb}

fail() {
  echo "check-deb: FAIL: $*" >&2
  exit 1
}

for tool in cmake cpack dpkg-deb dpkg-shlibdeps lintian; do
  command -v "$tool" >/dev/null || fail "$tool is missing (apt-get install dpkg-dev lintian)"
done

if [[ ! -f $build_dir/CMakeCache.txt ]]; then
  cmake -S "$source_dir" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_INSTALL_PREFIX=/usr -DUDS_ECHO_BUILD_TESTS=OFF -DUDS_ECHO_PERF=OFF >/dev/null
fi
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$build_dir/CMakeCache.txt")
[[ $prefix == /usr ]] || fail "$build_dir has CMAKE_INSTALL_PREFIX=$prefix; a package needs /usr"
cmake --build "$build_dir" >/dev/null
rm -f "$build_dir"/uds-echo_*.deb
cpack_output=$(cd "$build_dir" && cpack -G DEB 2>&1) || fail "cpack failed: $cpack_output"
debs=("$build_dir"/uds-echo_*.deb)
[[ ${#debs[@]} -eq 1 && -f ${debs[0]} ]] || fail "cpack made no uds-echo_*.deb in $build_dir"
deb=${debs[0]}
echo "check-deb: built $deb"

# lintian: errors fail the check, warnings are shown.
lintian_output=$(lintian --allow-root "$deb" 2>&1) || true
[[ -z $lintian_output ]] || printf '%s\n' "$lintian_output"
if grep -q '^E:' <<<"$lintian_output"; then
  fail "lintian reports errors"
fi

# Files.
contents=$(dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|')
expected=(
  /usr/sbin/uds-echod /usr/bin/uds-echo
  /etc/uds-echo/uds-echo.conf
  /lib/systemd/system/uds-echo.socket /lib/systemd/system/uds-echo.service
  /lib/systemd/system/uds-echo-seqpacket.socket /lib/systemd/system/uds-echo-datagram.socket
  /lib/systemd/system/uds-echo-inetd.socket /lib/systemd/system/uds-echo-inetd@.service
  /usr/lib/systemd/user/uds-echo.socket /usr/lib/systemd/user/uds-echo.service
  /usr/lib/systemd/user/uds-echo-seqpacket.socket /usr/lib/systemd/user/uds-echo-datagram.socket
  /usr/lib/sysusers.d/uds-echo.conf
  /usr/share/man/man8/uds-echod.8.gz /usr/share/man/man5/uds-echo.conf.5.gz
  /usr/share/bash-completion/completions/uds-echo
  /usr/share/doc/uds-echo/copyright /usr/share/doc/uds-echo/changelog.Debian.gz
)
[[ -f $source_dir/docs/uds-echo.1 ]] && expected+=(/usr/share/man/man1/uds-echo.1.gz)
for file in "${expected[@]}"; do
  grep -qxF "$file" <<<"$contents" || fail "$file is not in the package"
done
if grep -E '^/usr/local|/include/|\.a$|/tests?/' <<<"$contents"; then
  fail "files that do not belong in the package (above)"
fi

# The units start the installed daemon.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
dpkg-deb -x "$deb" "$scratch/root"
grep -qx 'ExecStart=/usr/sbin/uds-echod' "$scratch/root/lib/systemd/system/uds-echo.service" ||
  fail "uds-echo.service does not start /usr/sbin/uds-echod"
grep -qx 'ExecStart=/usr/sbin/uds-echod --config /dev/null --exit-on-idle 600' \
  "$scratch/root/usr/lib/systemd/user/uds-echo.service" ||
  fail "the user unit uds-echo.service does not start /usr/sbin/uds-echod"
# Both services are handed all three sockets; only the datagram sockets pass credentials.
for dir in lib/systemd/system usr/lib/systemd/user; do
  grep -qx 'Sockets=uds-echo.socket uds-echo-seqpacket.socket uds-echo-datagram.socket' \
    "$scratch/root/$dir/uds-echo.service" || fail "$dir/uds-echo.service lacks the three Sockets="
  grep -qx 'PassCredentials=yes' "$scratch/root/$dir/uds-echo-datagram.socket" ||
    fail "$dir/uds-echo-datagram.socket does not pass credentials"
  for unit in uds-echo.socket uds-echo-seqpacket.socket; do
    if grep -q '^PassCredentials=' "$scratch/root/$dir/$unit"; then
      fail "$dir/$unit sets PassCredentials= (accepted connections would inherit it)"
    fi
  done
done
"$scratch/root/usr/sbin/uds-echod" --version >/dev/null || fail "the packaged daemon does not run"

# The service runs as the static user that sysusers.d declares, next to the clients' group; the
# daemon's user is not a member of that group.
service=$scratch/root/lib/systemd/system/uds-echo.service
sysusers=$scratch/root/usr/lib/sysusers.d/uds-echo.conf
grep -qx 'User=uds-echod' "$service" || fail "uds-echo.service does not run as User=uds-echod"
grep -qx 'Group=uds-echod' "$service" || fail "uds-echo.service does not run as Group=uds-echod"
if grep -q '^DynamicUser=' "$service"; then
  fail "uds-echo.service sets DynamicUser= (the system bus refuses dynamic users)"
fi
grep -qE '^g[[:space:]]+uds-echo[[:space:]]+-' "$sysusers" || fail "sysusers.d: no uds-echo group"
grep -qE '^u[[:space:]]+uds-echod[[:space:]]+-[[:space:]]' "$sysusers" ||
  fail "sysusers.d: no uds-echod user"
if grep -qE '^m[[:space:]]+uds-echod[[:space:]]+uds-echo' "$sysusers"; then
  fail "sysusers.d: uds-echod is made a member of the clients' group uds-echo"
fi

# The licence: LICENSE's holder and the MIT licence, in Debian's machine-readable format.
copyright=$scratch/root/usr/share/doc/uds-echo/copyright
holder=$(sed -n 's/^Copyright (c) //p' "$source_dir/LICENSE")
grep -qx 'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/' "$copyright" ||
  fail "copyright is not in Debian's machine-readable format"
grep -qx "Copyright: $holder" "$copyright" || fail "copyright does not name $holder"
[[ $(grep -cx 'License: MIT' "$copyright") -eq 2 ]] || fail "copyright: no MIT licence paragraph"
grep -qx ' THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR' "$copyright" ||
  fail "copyright lacks the licence text"

# One date for the changelog, the man pages and every file: SOURCE_DATE_EPOCH when it is set (it
# must be the same when the build directory was configured), else the release date of the top
# CMakeLists.txt.
release_date=$(sed -n 's/^set(UDS_ECHO_RELEASE_DATE \([0-9-]*\))$/\1/p' "$source_dir/CMakeLists.txt")
[[ -n $release_date ]] || fail "no UDS_ECHO_RELEASE_DATE in CMakeLists.txt"
epoch=${SOURCE_DATE_EPOCH:-$(date -u -d "$release_date" +%s)}
version=$(dpkg-deb -f "$deb" Version)
zcat "$scratch/root/usr/share/doc/uds-echo/changelog.Debian.gz" >"$scratch/changelog"
[[ $(dpkg-parsechangelog -l "$scratch/changelog" -S Version) == "$version" ]] ||
  fail "the changelog's version is not the package's ($version)"
changelog_epoch=$(dpkg-parsechangelog -l "$scratch/changelog" -S Timestamp)
[[ $changelog_epoch == "$epoch" ]] ||
  fail "the changelog is dated $(date -u -d "@$changelog_epoch"), not $(date -u -d "@$epoch")" \
    "(was $build_dir configured with another SOURCE_DATE_EPOCH?)"
for page in "$scratch"/root/usr/share/man/man*/*.gz; do
  title=$(zcat "$page" | grep -m1 '^\.TH ')
  grep -qF "\"$(date -u -d "@$epoch" +%F)\" \"uds-echo ${version%-*}\"" <<<"$title" ||
    fail "${page##*/}: $title: not dated $(date -u -d "@$epoch" +%F), version ${version%-*}"
done
stamps=$(dpkg-deb --fsys-tarfile "$deb" | TZ=UTC tar -tv --full-time | awk '{print $4 "T" $5}' | sort -u)
[[ $stamps == "$(date -u -d "@$epoch" +%FT%T)" ]] ||
  fail "the files are not all dated $(date -u -d "@$epoch" +%FT%T): $(tr '\n' ' ' <<<"$stamps")"

# Control data: conffiles, dependencies, maintainer scripts.
dpkg-deb -e "$deb" "$scratch/control"
[[ $(cat "$scratch/control/conffiles") == /etc/uds-echo/uds-echo.conf ]] ||
  fail "conffiles is not exactly /etc/uds-echo/uds-echo.conf"
depends=$(dpkg-deb -f "$deb" Depends)
for library in libboost-log libboost-program-options libsystemd0 libstdc++6 init-system-helpers; do
  grep -q "$library" <<<"$depends" || fail "Depends lacks $library: $depends"
done
for script in postinst prerm postrm; do
  [[ -x $scratch/control/$script ]] || fail "$script is missing or not executable"
  sh -n "$scratch/control/$script" || fail "$script: syntax error"
done
grep -q 'systemd-sysusers.*uds-echo.conf' "$scratch/control/postinst" || fail "postinst: no sysusers"
grep -q 'useradd --system' "$scratch/control/postinst" ||
  fail "postinst: no useradd of uds-echod where systemd-sysusers is missing"
if grep -Eq '(userdel|deluser|groupdel|delgroup)' "$scratch/control/postrm"; then
  fail "postrm removes a system user or group (Debian keeps them)"
fi
recommends=$(dpkg-deb -f "$deb" Recommends)
grep -q 'dbus-system-bus' <<<"$recommends" || fail "Recommends lacks a system bus: $recommends"
grep -qx 'sockets="uds-echo.socket uds-echo-seqpacket.socket uds-echo-datagram.socket"' \
  "$scratch/control/postinst" || fail "postinst does not name the three socket units"
# shellcheck disable=SC2016 # the scripts' own text
grep -q 'deb-systemd-helper enable "$socket"' "$scratch/control/postinst" ||
  fail "postinst does not enable the socket units"
# shellcheck disable=SC2016 # the scripts' own text
grep -q 'dpkg --compare-versions "$2" lt-nl 0.2.0~' "$scratch/control/prerm" ||
  fail "prerm does not stop the daemon on a downgrade to a release without message sockets"
if grep -E '(start|restart)[^|]*uds-echo\.service' "$scratch/control/postinst" |
  grep -qv try-restart; then
  fail "postinst starts the service"
fi

echo "check-deb: OK: $(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version), Depends: $depends"
