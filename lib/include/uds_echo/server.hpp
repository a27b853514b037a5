// The echo server: worker threads, each with its own io_context, an acceptor that hands every
// connection to a worker, one coroutine session per connection, signals and shutdown.
#pragma once

#include "uds_echo/config.hpp"

#include <memory>
#include <string>
#include <vector>

namespace uds_echo {

class Server {
public:
    // `listen_fd` is a listening AF_UNIX stream socket; the server takes ownership. `args` are
    // the command line arguments, kept to re-read the configuration on SIGHUP.
    Server(DaemonConfig config, int listen_fd, std::vector<std::string> args);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // Serves until SIGTERM/SIGINT and the drain that follows; returns the exit code.
    ExitCode run();

private:
    class Impl;
    std::unique_ptr<Impl> impl_;
};

} // namespace uds_echo
