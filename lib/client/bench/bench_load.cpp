#include "client/bench/bench_load.hpp"

#include "client/connect.hpp"
#include "client/round_trip.hpp"
#include "client/wakeup.hpp"
#include "common/paths.hpp"
#include "common/text.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <cstring>
#include <random>

namespace uds_echo::client {

namespace {

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;
using boost::system::error_code;
using Clock = BenchClock;

constexpr auto as_tuple_awaitable = asio::as_tuple(asio::use_awaitable);

// Largest write of several pipelined messages at once, and the size of a connection's reads.
constexpr std::size_t max_batch_bytes = 256 * 1024;
constexpr std::size_t read_buffer_size = 64 * 1024;
// How often a worker looks for connections that owe an echo too long, and for an abort.
constexpr auto watchdog_interval = std::chrono::milliseconds(50);

} // namespace

Pattern::Pattern(std::size_t span)
    : bytes_(period + span) {
    std::mt19937_64 random(0x75647365'63686f31);
    for (std::size_t i = 0; i < period; ++i)
        bytes_[i] = static_cast<char>(random());
    for (std::size_t i = period; i < bytes_.size(); ++i)
        bytes_[i] = bytes_[i % period];
}

std::optional<std::size_t> Pattern::difference(std::uint64_t offset, const char* data,
                                               std::size_t size) const {
    const char* expected = at(offset);
    if (std::memcmp(expected, data, size) == 0)
        return std::nullopt;
    return static_cast<std::size_t>(std::mismatch(data, data + size, expected).first - data);
}

BenchRun::BenchRun(const BenchOptions& bench_options, std::string socket_path,
                   Clock::time_point start)
    : options(bench_options)
    , path(std::move(socket_path))
    , pattern(std::max(bench_options.message_size, max_batch_bytes))
    , measure_start(start + bench_options.warmup)
    , measure_end(bench_options.messages
                      ? Clock::time_point::max()
                      : measure_start +
                            std::chrono::duration_cast<Clock::duration>(bench_options.duration)) {}

void BenchRun::record_failure(const Failure& failure) {
    {
        const std::lock_guard lock(failure_mutex_);
        if (!first_failure_)
            first_failure_ = failure;
    }
    errors.fetch_add(1, std::memory_order_relaxed);
    abort_requested.store(true, std::memory_order_relaxed);
}

std::optional<Failure> BenchRun::failure() {
    const std::lock_guard lock(failure_mutex_);
    return first_failure_;
}

// ---- loads ----

// What both kinds of load share: a socket, the way they end, and how a message is counted.
class Load {
public:
    explicit Load(Worker& worker)
        : worker_(worker)
        , run_(worker.run())
        , size_(run_.options.message_size)
        , socket_(worker.context()) {}
    Load(const Load&) = delete;
    Load& operator=(const Load&) = delete;
    virtual ~Load() = default;

    // Sends and checks messages until the load is done, failed or closed.
    virtual asio::awaitable<void> run() = 0;
    // Fails the load if it owes an echo and nothing came for the timeout.
    virtual void check_timeout(Clock::time_point now) = 0;

    // Ends the load at once: everything pending is cancelled.
    virtual void close() {
        closed_ = true;
        error_code ignored;
        socket_.close(ignored);
    }

protected:
    void fail(const Failure& failure) {
        if (closed_)
            return;
        run_.record_failure(failure);
        close();
    }

    Worker& worker_;
    BenchRun& run_;
    const std::size_t size_;
    Socket socket_;
    bool closed_ = false;
};

namespace {

// A persistent connection with up to `pipeline` messages in flight. The writer sends whenever a
// slot is free (several messages in one write when several are free); the reader checks every
// byte against the pattern and completes messages as their last byte arrives. The two run
// concurrently, so any depth and size work without deadlock.
class PipelinedConnection final : public Load {
public:
    PipelinedConnection(Worker& worker, FileDescriptor fd, std::uint64_t stream_offset,
                        std::optional<std::uint64_t> quota)
        : Load(worker)
        , pipeline_(run_.options.pipeline)
        , send_times_(pipeline_)
        , read_buffer_(read_buffer_size)
        , slot_freed_(worker.context().get_executor())
        , send_offset_(stream_offset)
        , receive_offset_(stream_offset)
        , stream_start_(stream_offset)
        , quota_(quota) {
        socket_.assign(asio::local::stream_protocol(), fd.release());
    }

    asio::awaitable<void> run() override { co_await (write_messages() && read_echoes()); }

    void check_timeout(Clock::time_point now) override {
        if (!closed_ && in_flight_ > 0 && now - last_progress_ > run_.options.timeout)
            fail(Failure(ExitCode::temp_failure,
                         "no echo within " + seconds_text(run_.options.timeout) +
                             " on a connection with " + std::to_string(in_flight_) +
                             " message(s) in flight"));
    }

    void close() override {
        Load::close();
        slot_freed_.notify();
    }

private:
    bool may_send(Clock::time_point now) const {
        if (run_.stop_sending.load(std::memory_order_relaxed))
            return false;
        if (quota_)
            return *quota_ > 0 || now < run_.measure_start;
        return now < run_.measure_end;
    }

    asio::awaitable<void> write_messages() {
        for (;;) {
            while (!closed_ && in_flight_ == pipeline_)
                co_await slot_freed_.wait();
            if (closed_)
                co_return;
            const auto now = Clock::now();
            if (!may_send(now)) {
                sending_done_ = true;
                if (in_flight_ == 0)
                    finish();
                co_return;
            }
            std::size_t count = std::min<std::size_t>(
                pipeline_ - in_flight_, std::max<std::size_t>(1, max_batch_bytes / size_));
            if (quota_ && now >= run_.measure_start) {
                count = static_cast<std::size_t>(std::min<std::uint64_t>(count, *quota_));
                *quota_ -= count;
            }
            if (in_flight_ == 0)
                last_progress_ = now;
            for (std::size_t i = 0; i < count; ++i)
                send_times_[(sent_ + i) % pipeline_] = now;
            sent_ += count;
            in_flight_ += count;
            const auto [error, written] = co_await asio::async_write(
                socket_, asio::buffer(run_.pattern.at(send_offset_), count * size_),
                as_tuple_awaitable);
            if (closed_)
                co_return;
            if (error) {
                fail_on(error, "cannot send to the daemon");
                co_return;
            }
            send_offset_ += written;
        }
    }

    asio::awaitable<void> read_echoes() {
        while (!closed_) {
            const auto [error, count] =
                co_await socket_.async_read_some(asio::buffer(read_buffer_), as_tuple_awaitable);
            if (closed_)
                co_return;
            if (error) {
                fail_on(error, "cannot receive from the daemon");
                co_return;
            }
            check_echo(count);
            slot_freed_.notify();
        }
    }

    void check_echo(std::size_t count) {
        const auto now = Clock::now();
        last_progress_ = now;
        if (receive_offset_ - stream_start_ + count > sent_ * size_) {
            fail(Failure(ExitCode::data_error, "the daemon sent more bytes than it was sent"));
            return;
        }
        if (const auto index =
                run_.pattern.difference(receive_offset_, read_buffer_.data(), count)) {
            fail(Failure(ExitCode::data_error,
                         "the echo differed from what was sent at byte offset " +
                             std::to_string(receive_offset_ - stream_start_ + *index) +
                             " of a connection"));
            return;
        }
        receive_offset_ += count;
        partial_ += count;
        while (partial_ >= size_) {
            partial_ -= size_;
            const auto sent_at = send_times_[received_ % pipeline_];
            ++received_;
            --in_flight_;
            worker_.message_done(sent_at, now, false);
        }
        if (sending_done_ && in_flight_ == 0)
            finish();
    }

    void fail_on(const error_code& error, const std::string& what) {
        if (is_disconnect(error))
            fail(Failure(ExitCode::data_error,
                         "the daemon closed a connection with " + std::to_string(in_flight_) +
                             " message(s) in flight (" + error.message() + ")"));
        else
            fail(Failure(ExitCode::os_error, what + ": " + error.message()));
    }

    void finish() {
        error_code ignored;
        socket_.shutdown(Socket::shutdown_both, ignored);
        close();
    }

    const std::size_t pipeline_;
    std::vector<Clock::time_point> send_times_; // ring, indexed by message number % pipeline
    std::vector<char> read_buffer_;
    Wakeup slot_freed_;
    std::uint64_t send_offset_;    // stream offset of the next byte to send
    std::uint64_t receive_offset_; // stream offset of the next byte expected back
    const std::uint64_t stream_start_;
    std::optional<std::uint64_t> quota_; // measured messages this connection still sends (-n)
    std::uint64_t sent_ = 0;             // messages sent
    std::uint64_t received_ = 0;         // messages completely echoed
    std::size_t in_flight_ = 0;
    std::size_t partial_ = 0; // bytes of the oldest message in flight already back
    Clock::time_point last_progress_{};
    bool sending_done_ = false;
};

// Churn: each message on a connection of its own (connect, round trip, close). The latency
// counted is the whole cycle, from connect() to the last byte of the echo. The connect and the
// round trip carry their own deadlines.
class ChurnSlot final : public Load {
public:
    ChurnSlot(Worker& worker, std::uint64_t stream_offset, std::optional<std::uint64_t> quota)
        : Load(worker)
        , endpoint_(make_endpoint(run_.path))
        , echo_(size_)
        , stream_offset_(stream_offset)
        , quota_(quota) {}

    asio::awaitable<void> run() override {
        const auto timeout = run_.options.timeout;
        for (std::uint64_t cycle = 0; !closed_; ++cycle) {
            const auto start = Clock::now();
            if (!may_start(start))
                co_return;
            auto attempt = co_await connect_with_retry(endpoint_, start + timeout);
            if (closed_)
                co_return;
            if (!attempt.fd.valid()) {
                fail(connect_failure(run_.path, attempt.error, timeout));
                co_return;
            }
            ++worker_.figures().connections_opened;
            socket_.assign(asio::local::stream_protocol(), attempt.fd.release());
            const std::span<const char> message(run_.pattern.at(stream_offset_ + cycle * 4099),
                                                size_);
            const auto result = co_await round_trip(socket_, message, echo_, timeout);
            error_code ignored;
            socket_.close(ignored);
            if (closed_)
                co_return;
            if (result.failure) {
                fail(*result.failure);
                co_return;
            }
            worker_.message_done(start, Clock::now(), true);
        }
    }

    void check_timeout(Clock::time_point) override {}

private:
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

    const asio::local::stream_protocol::endpoint endpoint_;
    std::vector<char> echo_;
    const std::uint64_t stream_offset_;
    std::optional<std::uint64_t> quota_;
};

} // namespace

// ---- the worker ----

Worker::Worker(BenchRun& run)
    : run_(run) {}

Worker::~Worker() = default;

void Worker::add_load(FileDescriptor fd, std::uint64_t stream_offset,
                      std::optional<std::uint64_t> quota) {
    if (fd.valid()) {
        ++figures_.connections_opened;
        loads_.push_back(
            std::make_unique<PipelinedConnection>(*this, std::move(fd), stream_offset, quota));
    } else {
        loads_.push_back(std::make_unique<ChurnSlot>(*this, stream_offset, quota));
    }
}

void Worker::message_done(Clock::time_point sent, Clock::time_point now, bool new_connection) {
    if (!run_.measured(sent))
        return;
    figures_.latency.record(static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(now - sent).count()));
    ++figures_.messages;
    figures_.bytes += run_.options.message_size;
    if (new_connection)
        ++figures_.connections_measured;
    figures_.last_completion = std::max(figures_.last_completion, now);
}

asio::awaitable<void> Worker::drive_loads() {
    active_ = loads_.size();
    asio::steady_timer watchdog(context_);
    for (auto& load : loads_)
        asio::co_spawn(context_, load->run(), [this, &watchdog](std::exception_ptr error) {
            if (error)
                record_unexpected(error);
            if (--active_ == 0)
                watchdog.cancel();
        });
    while (active_ > 0) {
        watchdog.expires_after(watchdog_interval);
        co_await watchdog.async_wait(as_tuple_awaitable);
        if (run_.abort_requested.load(std::memory_order_relaxed)) {
            for (auto& load : loads_)
                load->close();
        } else {
            const auto now = Clock::now();
            for (auto& load : loads_)
                load->check_timeout(now);
        }
    }
}

// A load ended by an exception rather than a failure it recorded (no descriptor left for a
// socket, say): it ends the run like any other failure.
void Worker::record_unexpected(std::exception_ptr error) {
    try {
        std::rethrow_exception(error);
    } catch (const Failure& failure) {
        run_.record_failure(failure);
    } catch (const std::exception& exception) {
        run_.record_failure(Failure(ExitCode::software, std::string("bench: ") + exception.what()));
    }
}

} // namespace uds_echo::client
