// The systemd glue: socket activation and service notification, through libsystemd exactly as
// sd_listen_fds(3), sd_is_socket(3), sd_notify(3) and sd_watchdog_enabled(3) describe.
#pragma once

#include "common/socket_type.hpp"
#include "daemon/handover.hpp"

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace uds_echo::daemon {

// A socket systemd (or systemd-socket-activate) passed to this process.
struct ActivatedSocket {
    int fd = -1;
    SocketType type = SocketType::stream;
    bool listening = true; // false: Accept=yes, the fd is one connected client
};

// What systemd (or systemd-socket-activate, or whoever sets LISTEN_PID) passed to this process.
struct PassedDescriptors {
    // The sockets to serve: at most one of each type, or one connected socket alone.
    std::vector<ActivatedSocket> sockets;
    std::vector<HandedConnection> resumed; // connections handed over by the previous process

    // The passed socket of `type`, if any.
    std::optional<ActivatedSocket> of_type(SocketType type) const;
};

// Takes the passed descriptors (none when LISTEN_PID/LISTEN_FDS do not name this process) and
// unsets the LISTEN_* variables so that nothing started later inherits them. Descriptors under
// the handover names (handover.hpp) are connections and state of a previous process; each of the
// others, whatever its name, is served by its type (SO_TYPE): a listening stream or seqpacket
// socket, a datagram socket, or (Accept=yes) one connected stream or seqpacket socket. Throws
// Failure(config), having closed them all, when one is not an AF_UNIX socket of those kinds, when
// two are of the same type, or when a connected socket comes with others.
PassedDescriptors take_passed_descriptors();

// sd_notify(3) messages; each does nothing when $NOTIFY_SOCKET is unset.
class ServiceNotifier {
public:
    ServiceNotifier();

    bool enabled() const { return enabled_; }
    // The interval at which WATCHDOG=1 must be sent (half of $WATCHDOG_USEC), when the watchdog is
    // on for this process.
    std::optional<std::chrono::microseconds> watchdog_interval() const {
        return watchdog_interval_;
    }

    void ready() const;
    void reloading() const; // RELOADING=1 with MONOTONIC_USEC, as systemd 253+ requires
    void stopping() const;
    void watchdog() const;
    void status(const std::string& text) const;

private:
    void send(const std::string& message) const;

    bool enabled_ = false;
    std::optional<std::chrono::microseconds> watchdog_interval_;
};

} // namespace uds_echo::daemon
