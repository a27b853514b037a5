// The echo server: worker threads, each with its own io_context and one coroutine session per
// connection it serves, of which the first also accepts on the listening socket and hands
// connections out to the others (worker_pool.hpp); and a control thread for signals and shutdown.
#pragma once

#include "daemon/config.hpp"
#include "daemon/handover.hpp"

#include <sys/resource.h>

#include <memory>
#include <string>
#include <vector>

namespace uds_echo::daemon {

// The sockets the server serves; the server takes ownership of the descriptors.
struct ServerSocket {
    int fd = -1;            // the listening stream socket, or the connected one (either type)
    int seqpacket_fd = -1;  // the listening seqpacket socket; -1: none
    int datagram_fd = -1;   // the datagram socket; -1: none
    bool connected = false; // Accept=yes: one connected client to serve, then exit
    bool socket_activated = false; // passed by systemd: enables --exit-on-idle
    // Connections a previous process handed over at its restart, resumed before the first accept.
    std::vector<HandedConnection> resumed;
};

// Blocks the signals the server handles (TERM, INT, HUP, USR1) in the calling thread. Call it
// first thing in main: from listen() on, clients may connect, and a signal arriving before the
// server's handlers exist would otherwise kill the daemon with its default action. Threads started
// later inherit the mask; Server::run() unblocks the signals in its own thread once it handles
// them, so they are delivered there.
void block_server_signals();

// Raises the soft descriptor limit to the hard limit: every connection is a descriptor, and the
// default soft limit (1024) is far below --max-connections. Call it in main before
// take_passed_descriptors(), which receives every connection a previous process handed over;
// Server::run() logs the limit.
void raise_descriptor_limit();

class Server {
public:
    // `args` are the command line arguments, kept to re-read the configuration on SIGHUP.
    Server(DaemonConfig config, ServerSocket socket, std::vector<std::string> args);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // Serves until SIGTERM/SIGINT/SIGUSR2 (or the end of the one connection, or --exit-on-idle) and
    // the drain that follows; returns the exit code.
    ExitCode run();

private:
    class Impl;
    std::unique_ptr<Impl> impl_;
};

} // namespace uds_echo::daemon
