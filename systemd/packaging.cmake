# `cpack -G DEB` from a build tree: the uds-echo package. Build it from a tree configured with
# -DCMAKE_INSTALL_PREFIX=/usr (tests/package/check-deb.sh does): the unit files name the daemon by
# its absolute path under the configure-time prefix, and the package installs under that same prefix.

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME uds-echo)
set(CPACK_PACKAGE_VENDOR "uds-echo maintainers")
set(CPACK_PACKAGE_CONTACT "uds-echo maintainers <maintainers@users.noreply.r-seed-74b5c22d.example>")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "asynchronous echo daemon on a Unix domain socket")
set(CPACK_PACKAGE_DESCRIPTION [[uds-echod echoes every byte a client sends on an AF_UNIX stream socket, in
order, with bounded memory per connection. It is built on Boost.Asio
coroutines and supports systemd socket activation, sd_notify readiness,
status, watchdog and reload.

The package ships the daemon, the client uds-echo (one-shot echo, streaming,
ping and a load benchmark), systemd units and a sysusers.d entry for the
uds-echo group, whose members may connect to /run/uds-echo/uds-echo.sock,
and for the uds-echod user the daemon runs as.]])
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_STRIP_FILES ON)

set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Library dependencies from dpkg-shlibdeps (libboost-log1.81.0, libsystemd0, libstdc++6, ...).
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS OFF)
# systemd-sysusers creates the uds-echo group and the uds-echod user in postinst; without systemd
# the script falls back to groupadd and useradd, and the daemon runs fine without systemd. A system
# bus (dbus, or dbus-broker): on SIGTERM the daemon asks systemd over it whether a restart is under
# way, to hand its connections over; without an answer a restart drains them, as a stop does.
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "systemd, default-dbus-system-bus | dbus-system-bus")
# deb-systemd-helper and deb-systemd-invoke for the maintainer scripts, as debhelper adds them.
# procps: /bin/kill, which the service's ExecReload= runs.
set(CPACK_DEBIAN_PACKAGE_DEPENDS "init-system-helpers (>= 1.54~), procps")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "bash-completion")

# Maintainer scripts (what dh_installsysusers and dh_installsystemd generate for a socket-activated
# daemon) and the conffile list. File modes are set strictly (0755 scripts, 0644 data).
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${CMAKE_CURRENT_LIST_DIR}/debian/conffiles
    ${CMAKE_CURRENT_LIST_DIR}/debian/postinst
    ${CMAKE_CURRENT_LIST_DIR}/debian/prerm
    ${CMAKE_CURRENT_LIST_DIR}/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

# Debian policy: /usr/share/doc/PACKAGE/copyright and a compressed changelog, both made in
# ${CMAKE_BINARY_DIR}/debian/.
set(uds_echo_doc_dir ${CMAKE_INSTALL_DATADIR}/doc/uds-echo)
set(debian_dir ${CMAKE_BINARY_DIR}/debian)

# copyright, in Debian's machine-readable format, from LICENSE: the holder from its "Copyright (c)"
# line, the licence text below that line with each line indented by one blank (" ." for an empty
# line).
file(READ ${PROJECT_SOURCE_DIR}/LICENSE license)
if(NOT license MATCHES "\nCopyright \\(c\\) ([^\n]+)\n\n(.+)$")
  message(FATAL_ERROR "LICENSE: no \"Copyright (c) ...\" line followed by the licence text")
endif()
set(UDS_ECHO_COPYRIGHT "${CMAKE_MATCH_1}")
string(STRIP "${CMAKE_MATCH_2}" license)
string(REPLACE "\n" "\n " license " ${license}")
string(REPLACE "\n \n" "\n .\n" UDS_ECHO_LICENSE_TEXT "${license}")
configure_file(${CMAKE_CURRENT_LIST_DIR}/debian/copyright.in ${debian_dir}/copyright @ONLY)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/LICENSE)
install(FILES ${debian_dir}/copyright DESTINATION ${uds_echo_doc_dir})

install(FILES ${CMAKE_CURRENT_LIST_DIR}/debian/lintian-overrides
        DESTINATION ${CMAKE_INSTALL_DATADIR}/lintian/overrides RENAME uds-echo)

# changelog.Debian: the release's version and date (UDS_ECHO_DATE_RFC2822).
configure_file(${CMAKE_CURRENT_LIST_DIR}/debian/changelog.in ${debian_dir}/changelog.Debian @ONLY)
find_program(UDS_ECHO_GZIP gzip)
if(UDS_ECHO_GZIP)
  add_custom_command(OUTPUT ${debian_dir}/changelog.Debian.gz
    COMMAND ${UDS_ECHO_GZIP} -9n -c ${debian_dir}/changelog.Debian > ${debian_dir}/changelog.Debian.gz
    DEPENDS ${debian_dir}/changelog.Debian VERBATIM)
  add_custom_target(debian-changelog ALL DEPENDS ${debian_dir}/changelog.Debian.gz)
  install(FILES ${debian_dir}/changelog.Debian.gz DESTINATION ${uds_echo_doc_dir})
endif()

# Every file in the .deb, and its ar and tar headers, carry the date of the release (or the
# SOURCE_DATE_EPOCH this tree was configured with), whatever the environment cpack runs in: cpack
# reads this file before it packs, and dates the archive from SOURCE_DATE_EPOCH.
file(CONFIGURE OUTPUT ${CMAKE_BINARY_DIR}/CPackProjectConfig.cmake
     CONTENT "set(ENV{SOURCE_DATE_EPOCH} ${UDS_ECHO_SOURCE_DATE_EPOCH})\n" @ONLY)
set(CPACK_PROJECT_CONFIG_FILE ${CMAKE_BINARY_DIR}/CPackProjectConfig.cmake)

include(CPack)
