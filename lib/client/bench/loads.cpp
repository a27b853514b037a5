// The two kinds of load: a pipelined connection and a churn slot.
#include "client/bench/loads.hpp"

#include "common/paths.hpp"

#include <sys/epoll.h>

namespace uds_echo::client {

using Clock = BenchClock;
using std::chrono::milliseconds;

namespace {

// A persistent connection with up to `pipeline` messages in flight. Each echo read frees slots,
// and the same event sends new messages into them (several in one send when several are free).
class PipelinedConnection final : public Load {
public:
    PipelinedConnection(Worker& worker, FileDescriptor fd, std::uint64_t stream_offset,
                        std::optional<std::uint64_t> quota)
        : Load(worker, worker.run().options.pipeline, false)
        , quota_(quota) {
        start_stream(std::move(fd), stream_offset);
    }

    void start(Clock::time_point now) override { send_more(now); }
    void echoed(Clock::time_point now) override { send_more(now); }

private:
    bool may_send(Clock::time_point now) const {
        if (run_.stop_sending.load(std::memory_order_relaxed))
            return false;
        if (quota_)
            return *quota_ > 0 || now < run_.measure_start;
        return now < run_.measure_end;
    }

    void send_more(Clock::time_point now) {
        if (ended_ || sending_blocked())
            return;
        if (!sending_done_ && !may_send(now))
            sending_done_ = true;
        if (sending_done_) {
            if (in_flight_ == 0)
                close();
            return;
        }
        std::size_t count = std::min<std::size_t>(
            depth_ - in_flight_, std::max<std::size_t>(1, max_batch_bytes / size_));
        if (count == 0)
            return;
        if (quota_ && now >= run_.measure_start) {
            count = static_cast<std::size_t>(std::min<std::uint64_t>(count, *quota_));
            *quota_ -= count;
        }
        send_messages(count, now);
    }

    std::optional<std::uint64_t> quota_; // measured messages this connection still sends (-n)
    bool sending_done_ = false;
};

// Churn: each message on a connection of its own (connect, one message and its echo, close). The
// latency counted is the whole cycle, from connect() to the last byte of the echo. A full listen
// backlog is tried again after a short backoff, until the timeout.
class ChurnSlot final : public Load {
public:
    ChurnSlot(Worker& worker, std::uint64_t stream_offset, std::optional<std::uint64_t> quota)
        : Load(worker, 1, true)
        , endpoint_(make_endpoint(run_.path))
        , stream_offset_(stream_offset)
        , quota_(quota) {}

    void start(Clock::time_point now) override { next_cycle(now); }

    void echoed(Clock::time_point now) override {
        if (in_flight_ > 0)
            return;
        close_connection();
        ++cycle_;
        next_cycle(now);
    }

    void tick(Clock::time_point now) override {
        if (!ended_ && retry_at_ && now >= *retry_at_)
            try_connect(now);
    }

private:
    void next_cycle(Clock::time_point now) {
        if (!may_start(now)) {
            close();
            return;
        }
        cycle_start_ = now;
        backoff_ = first_backlog_retry;
        connecting_ = client_socket(run_.options.type);
        try_connect(now);
    }

    void try_connect(Clock::time_point now) {
        retry_at_.reset();
        const int error = connect_once(connecting_.get(), endpoint_);
        if (error == EAGAIN && now < cycle_start_ + run_.options.timeout) {
            retry_at_ = std::min(now + backoff_, cycle_start_ + run_.options.timeout);
            backoff_ = next_backlog_retry(backoff_);
            worker_.wake_by(*retry_at_);
            return;
        }
        if (error != 0) {
            fail(connect_failure(run_.path, error == EAGAIN ? ETIMEDOUT : error,
                                 run_.options.timeout));
            return;
        }
        ++worker_.figures().connections_opened;
        start_stream(std::move(connecting_), stream_offset_ + cycle_ * 4099);
        send_messages(1, cycle_start_);
    }

    bool may_start(Clock::time_point now) {
        if (run_.stop_sending.load(std::memory_order_relaxed))
            return false;
        if (!quota_)
            return now < run_.measure_end;
        if (now < run_.measure_start)
            return true;
        if (*quota_ == 0)
            return false;
        --*quota_;
        return true;
    }

    const boost::asio::local::stream_protocol::endpoint endpoint_;
    const std::uint64_t stream_offset_;
    std::optional<std::uint64_t> quota_;
    std::uint64_t cycle_ = 0;
    Clock::time_point cycle_start_{};
    FileDescriptor connecting_;
    std::optional<Clock::time_point> retry_at_;
    milliseconds backoff_ = first_backlog_retry;
};

} // namespace

std::unique_ptr<Load> make_load(Worker& worker, FileDescriptor fd, std::uint64_t stream_offset,
                                std::optional<std::uint64_t> quota) {
    if (fd.valid())
        return std::make_unique<PipelinedConnection>(worker, std::move(fd), stream_offset, quota);
    return std::make_unique<ChurnSlot>(worker, stream_offset, quota);
}

} // namespace uds_echo::client
