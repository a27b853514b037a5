// What the service manager intends when it stops the daemon: a restart (hand the connections
// over) or a stop (drain them). Internal to the library; server.cpp asks on SIGTERM.
#pragma once

#include <boost/asio/awaitable.hpp>

#include <chrono>
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

// The bus the manager of this process listens on: the system bus for the system manager, the
// user's bus ($DBUS_SESSION_BUS_ADDRESS, else $XDG_RUNTIME_DIR/bus) for a user manager, which
// sets $MANAGERPID for its services (the system manager never does).
enum class ManagerBus { system, user };
ManagerBus manager_bus_from_environment();

// How long the whole question may take, every D-Bus call included. TimeoutStopSec= runs
// meanwhile; the drain or the handover that follows needs the rest of it.
constexpr std::chrono::milliseconds question_limit{2000};

// Asks systemd over D-Bus (sd-bus) for the job queued for this process's unit: "restart" (also
// "try-restart" and "reload-or-restart") means a restart, anything else a stop. When it cannot be
// told (not in a service unit, no bus, no job, no answer within `limit`), the answer is a stop: a
// connection drained for nothing costs the client a reconnect, a connection handed to a store that
// is about to be emptied is cut.
// The blocking D-Bus calls run on a thread of their own, so that the caller's executor (the
// control thread: watchdog pings, STATUS=) keeps running; the awaitable completes within `limit`
// whatever the bus does, and the thread has ended by then.
boost::asio::awaitable<StopIntent> ask_service_manager(ManagerBus bus,
                                                       std::chrono::milliseconds limit);

// The store's room as far as the environment tells it: $FDSTORE (set by systemd 254 and later
// to FileDescriptorStoreMax=), nullopt when unset or invalid.
std::optional<std::size_t> store_room_from_environment();

} // namespace uds_echo::daemon
