// A stand-in for the daemon in client tests: a listening socket whose connections get a scripted
// behaviour (an echo that corrupts, stalls or closes early; silence), and the small blocking I/O
// helpers those behaviours are written with. Every helper notices the shutdown flag within 20 ms.
#pragma once

#include "process.hpp"

#include <atomic>
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace uds_echo::test {

// Whether a fake server should go on with a connection, polled by its behaviours.
using Stopping = std::atomic<bool>;

// Listens at `path` and serves each connection with `behaviour` in a thread of its own (the bench
// opens many at once), until destroyed; the destructor waits for every behaviour to return.
class FakeServer {
public:
    using Behaviour = std::function<void(int connection, const Stopping& stopping)>;

    FakeServer(const std::string& path, Behaviour behaviour);
    FakeServer(const FakeServer&) = delete;
    FakeServer& operator=(const FakeServer&) = delete;
    ~FakeServer();

private:
    void accept_loop();

    Behaviour behaviour_;
    FileDescriptor listener_;
    Stopping stopping_{false};
    std::thread acceptor_;
    std::vector<std::thread> sessions_;
};

// Bytes that arrived, or empty at end of file, error or shutdown.
std::string receive_some(int fd, const Stopping& stopping);
// `size` bytes, or fewer when the connection ends first.
std::string receive_exactly(int fd, std::size_t size, const Stopping& stopping);
// Sends what it can; a peer that went away ends it quietly.
void send_quietly(int fd, std::string_view data);
// Echoes the connection's stream until its end, with the byte at stream offset `offset` changed
// (none when `offset` is past the end).
void echo_changing_byte(int fd, std::size_t offset, const Stopping& stopping);
// The same as a behaviour: a daemon whose echo differs at `offset`.
FakeServer::Behaviour echo_corrupting_at(std::size_t offset);
// Reads and discards until the client goes away: a daemon that stopped answering.
void hold_until_peer_closes(int fd, const Stopping& stopping);

} // namespace uds_echo::test
