// The SOCK_DGRAM echo (uds-echod(8), DATAGRAMS): every datagram goes back, whole, to the abstract
// address it came from, on a thread of its own. The rules, and why only abstract addresses are
// answered, are in docs/protocol.md.
#pragma once

#include "common/file_descriptor.hpp"
#include "common/socket_type.hpp"
#include "daemon/access.hpp"
#include "daemon/refusal_log.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/datagram_protocol.hpp>

#include <sys/socket.h>

#include <atomic>
#include <optional>
#include <thread>
#include <vector>

#include <cstddef>
#include <cstdint>

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
    // Only the datagram thread writes a figure; the control thread reads them.
    static void add(std::atomic<std::uint64_t>& figure, std::uint64_t amount = 1);
    boost::asio::awaitable<void> serve();
    bool answer_one(); // false when no datagram is queued
    static std::optional<PeerCredentials> sender_credentials(msghdr& message);
    static bool is_abstract_sender(const msghdr& message);

    boost::asio::io_context context_;
    boost::asio::local::datagram_protocol::socket socket_;
    RefusalLog refusals_;
    AccessPolicy access_;      // the datagram thread's
    std::vector<char> buffer_; // one datagram at a time: no allocation per datagram
    std::uint64_t received_ = 0;
    std::atomic<std::uint64_t> answered_{0};
    std::atomic<std::uint64_t> bytes_{0};
    std::atomic<std::uint64_t> unanswerable_{0};
    std::atomic<std::uint64_t> too_long_{0};
    std::atomic<std::uint64_t> reply_dropped_{0};
    std::atomic<std::uint64_t> refused_{0};
    std::thread thread_;
};

} // namespace uds_echo::daemon
