#include "daemon/refusal_log.hpp"

#include "daemon/logging.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <exception>

namespace uds_echo::daemon {
namespace {

constexpr unsigned lines_per_second = 10;

} // namespace

RefusalLog::RefusalLog(boost::asio::io_context& control, const char* subject)
    : control_(control)
    , subject_(subject)
    , summary_timer_(control) {}

void RefusalLog::add(std::uint64_t id, const std::optional<PeerCredentials>& peer,
                     const char* reason) {
    ++refused_;
    const auto now = std::chrono::steady_clock::now();
    if (now - window_start_ >= std::chrono::seconds(1) && unlogged_ == 0) {
        window_start_ = now;
        logged_in_window_ = 0;
    }
    if (++logged_in_window_ <= lines_per_second) {
        UDS_LOG(warning) << PeerInLog{id, peer, subject_} << " refused: " << reason;
        return;
    }
    if (unlogged_++ == 0)
        boost::asio::co_spawn(control_, summarize(), [](std::exception_ptr failure) {
            if (failure)
                std::rethrow_exception(failure); // a bug: main() reports it
        });
}

boost::asio::awaitable<void> RefusalLog::summarize() {
    summary_timer_.expires_at(window_start_ + std::chrono::seconds(1));
    auto [cancelled] =
        co_await summary_timer_.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    if (cancelled)
        co_return;
    UDS_LOG(warning) << unlogged_ << " more " << subject_ << "(s) refused in the last second";
    unlogged_ = 0;
    window_start_ = std::chrono::steady_clock::now();
    logged_in_window_ = 0;
}

} // namespace uds_echo::daemon
