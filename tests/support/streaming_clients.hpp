// Clients streaming verified data through a daemon while a test signals, restarts or cuts it. One
// thread of their own pumps them all, so that they keep sending and reading whatever the test's
// thread does. Each client sends a pattern of its own over and over, with at most `window` bytes
// not yet echoed (bytes are in flight both ways at any time), and checks every byte that comes
// back: lost, duplicated or reordered bytes are reported by finish().
#pragma once

#include "process.hpp"

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace uds_echo::test {

class StreamingClients {
public:
    // Connects `count` clients to `socket` and starts streaming.
    StreamingClients(const std::string& socket, std::size_t count);
    StreamingClients(const StreamingClients&) = delete;
    StreamingClients& operator=(const StreamingClients&) = delete;
    ~StreamingClients();

    // The bytes each client has had back so far, in the order of connection.
    std::vector<std::uint64_t> received();
    // The fewest bytes any client has had back.
    std::uint64_t least_received();
    // True when every client has had more than marks[i] bytes back (marks from received()).
    bool each_received_more_than(const std::vector<std::uint64_t>& marks);

    // Closes client `index` at once, as a client that goes away: it is no longer pumped nor
    // checked.
    void close(std::size_t index);

    // Stops sending; then each open client half-closes and reads the rest until the end of file.
    // Returns the errors seen (empty when every byte came back once, in order, then EOF).
    std::vector<std::string> finish();

    // The longest time in which no client got anything back.
    std::chrono::milliseconds longest_pause();

private:
    static constexpr std::size_t pattern_size = 65536;
    static constexpr std::uint64_t window = 32768;

    struct Client {
        FileDescriptor fd;
        std::string pattern;
        std::uint64_t sent = 0;
        std::uint64_t received = 0;
        std::string error;
        bool closed = false;

        bool pumped() const { return error.empty() && !closed; }
    };

    void stop();
    // Checks `data`, the next bytes `client` got back, against what it sent.
    static void check(Client& client, std::string_view data);
    void pump();

    std::vector<Client> clients_; // guarded by mutex_ while the pump runs
    std::mutex mutex_;
    std::chrono::milliseconds longest_pause_{0};
    std::atomic<bool> stopping_{false};
    std::thread pump_;
};

} // namespace uds_echo::test
