// The SOCK_DGRAM echo (uds-echod(8), DATAGRAMS): every datagram goes back, whole, to the abstract
// address it came from, on a thread of its own. The rules, and why only abstract addresses are
// answered, are in docs/protocol.md.
#pragma once

#include "common/file_descriptor.hpp"
#include "common/socket_type.hpp"
#include "daemon/access.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>

namespace uds_echo::daemon {

// What happened to the datagrams received so far.
struct DatagramFigures {
    std::uint64_t answered = 0;      // echoed to their sender
    std::uint64_t bytes = 0;         // bytes echoed
    std::uint64_t unanswerable = 0;  // sender unbound or bound to a path: no reply
    std::uint64_t too_long = 0;      // longer than the daemon accepts: dropped, never cut
    std::uint64_t reply_dropped = 0; // the sender's queue was full, or the sender gone
    std::uint64_t refused = 0;       // not let in by the allow lists

    std::uint64_t received() const {
        return answered + unanswerable + too_long + reply_dropped + refused;
    }
};

class DatagramEcho {
public:
    // Takes the socket: a bound AF_UNIX datagram socket, non-blocking or not.
    DatagramEcho(FileDescriptor socket, std::size_t buffer_size, AccessPolicy access);
    ~DatagramEcho(); // stops and joins the thread
    DatagramEcho(const DatagramEcho&) = delete;
    DatagramEcho& operator=(const DatagramEcho&) = delete;

    // Starts the thread that answers.
    void start();
    // Any thread: stops answering (what is queued stays in the socket) and ends the thread.
    void stop();
    // Any thread: the allow lists for the datagrams received from now on (SIGHUP).
    void apply(AccessPolicy access);
    // Any thread.
    DatagramFigures figures() const;

private:
    class Loop;
    std::unique_ptr<Loop> loop_;
};

} // namespace uds_echo::daemon
