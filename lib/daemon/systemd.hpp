// The systemd glue: socket activation and service notification, through libsystemd exactly as
// sd_listen_fds(3), sd_is_socket(3), sd_notify(3) and sd_watchdog_enabled(3) describe.
#pragma once

#include "daemon/handover.hpp"

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace uds_echo::daemon {

// The socket systemd (or systemd-socket-activate) passed to this process.
struct ActivatedSocket {
    int fd = -1;
    bool listening = true; // false: Accept=yes, the fd is one connected client
};

// What systemd (or systemd-socket-activate, or whoever sets LISTEN_PID) passed to this process.
struct PassedDescriptors {
    std::optional<ActivatedSocket> socket; // the socket to serve, when one was passed
    std::vector<HandedConnection> resumed; // connections handed over by the previous process
};

// Takes the passed descriptors (none when LISTEN_PID/LISTEN_FDS do not name this process) and
// unsets the LISTEN_* variables so that nothing started later inherits them. Descriptors under
// the handover names (handover.hpp) are connections and state of a previous process; of the
// others, one must be an AF_UNIX stream socket, listening or (Accept=yes) connected, whatever its
// name. Throws Failure(config) when more than one such socket is passed or one of them is not an
// AF_UNIX stream socket.
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
