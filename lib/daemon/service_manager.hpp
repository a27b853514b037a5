// What the service manager intends when it stops the daemon: a restart (hand the connections
// over) or a stop (drain them). Internal to the library; server.cpp asks on SIGTERM.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

namespace uds_echo::daemon {

struct StopIntent {
    bool restart = false;
    // How many more descriptors the file descriptor store takes; nullopt when not known.
    std::optional<std::size_t> store_room;
    std::string reason; // for the log: what was found, or why it could not be told
};

// Asks systemd over D-Bus (sd-bus) for the job queued for this process's unit: "restart" (also
// "try-restart" and "reload-or-restart") means a restart, anything else a stop. When it cannot be
// told (not in a service unit, no system bus, no job), the answer is a stop: a connection drained
// for nothing costs the client a reconnect, a connection handed to a store that is about to be
// emptied is cut.
StopIntent ask_service_manager();

// The store's room as far as the environment tells it: $FDSTORE (set by systemd 254 and later
// to FileDescriptorStoreMax=), nullopt when unset or invalid.
std::optional<std::size_t> store_room_from_environment();

} // namespace uds_echo::daemon
