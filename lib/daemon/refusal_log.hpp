// The log of refused peers (allow lists, per-uid cap, resumed beyond --max-connections), limited
// so that a flood of refusals cannot fill the log. Lives on the thread of the io_context it is
// given: the control thread for connections, the datagram thread for datagrams.
#pragma once

#include "daemon/access.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <optional>

namespace uds_echo::daemon {

class RefusalLog {
public:
    // `subject` is what is refused: "connection" or "datagram".
    explicit RefusalLog(boost::asio::io_context& control, const char* subject = "connection");

    // At most ten lines a second; the refusals beyond are counted and reported in one line when
    // their second is over, so the operator still sees the size of a flood.
    // `peer` is nullopt when the credentials could not be read (or were not needed).
    void add(std::uint64_t id, const std::optional<PeerCredentials>& peer, const char* reason);
    std::uint64_t count() const { return refused_; }
    // Drops a pending summary line (at shutdown, so that the control thread can end).
    void stop() { summary_timer_.cancel(); }

private:
    boost::asio::awaitable<void> summarize();

    boost::asio::io_context& control_;
    const char* subject_;
    boost::asio::steady_timer summary_timer_;
    std::uint64_t refused_ = 0;
    std::chrono::steady_clock::time_point window_start_{};
    unsigned logged_in_window_ = 0;
    unsigned unlogged_ = 0;
};

} // namespace uds_echo::daemon
