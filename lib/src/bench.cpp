#include "uds_echo/bench.hpp"

#include "uds_echo/client.hpp"
#include "uds_echo/paths.hpp"
#include "uds_echo/ping.hpp"

#include <boost/asio/bind_allocator.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <ostream>
#include <random>
#include <thread>

namespace uds_echo {

// ---------------------------------------------------------------------------------------------
// LatencyHistogram

std::size_t LatencyHistogram::bucket_of(std::uint64_t value) {
    if (value < sub_buckets)
        return static_cast<std::size_t>(value);
    const unsigned exponent = static_cast<unsigned>(std::bit_width(value)) - 1;
    if (exponent > max_exponent)
        return bucket_count - 1;
    const unsigned shift = exponent - sub_bucket_bits;
    const std::size_t sub = static_cast<std::size_t>(value >> shift) - sub_buckets;
    return sub_buckets + (exponent - sub_bucket_bits) * sub_buckets + sub;
}

std::uint64_t LatencyHistogram::bucket_low(std::size_t bucket) {
    if (bucket < sub_buckets)
        return bucket;
    const std::size_t group = (bucket - sub_buckets) / sub_buckets; // exponent - sub_bucket_bits
    const std::size_t sub = (bucket - sub_buckets) % sub_buckets;
    return static_cast<std::uint64_t>(sub_buckets + sub) << group;
}

std::uint64_t LatencyHistogram::bucket_high(std::size_t bucket) {
    if (bucket < sub_buckets)
        return bucket;
    const std::size_t group = (bucket - sub_buckets) / sub_buckets;
    return bucket_low(bucket) + (std::uint64_t{1} << group) - 1;
}

void LatencyHistogram::record(std::uint64_t nanoseconds) {
    ++counts_[bucket_of(nanoseconds)];
    ++count_;
    sum_ += static_cast<long double>(nanoseconds);
    max_ = std::max(max_, nanoseconds);
    min_ = std::min(min_, nanoseconds);
}

void LatencyHistogram::merge(const LatencyHistogram& other) {
    for (std::size_t i = 0; i < bucket_count; ++i)
        counts_[i] += other.counts_[i];
    count_ += other.count_;
    sum_ += other.sum_;
    max_ = std::max(max_, other.max_);
    min_ = std::min(min_, other.min_);
}

double LatencyHistogram::mean() const {
    return count_ == 0 ? 0.0 : static_cast<double>(sum_ / static_cast<long double>(count_));
}

std::uint64_t LatencyHistogram::percentile(double fraction) const {
    if (count_ == 0)
        return 0;
    // The rank of the sample asked for, 1-based: p50 of 2 samples is the first.
    const auto rank = std::max<std::uint64_t>(
        1, static_cast<std::uint64_t>(std::ceil(fraction * static_cast<double>(count_))));
    std::uint64_t seen = 0;
    for (std::size_t bucket = 0; bucket < bucket_count; ++bucket) {
        seen += counts_[bucket];
        if (seen >= rank) {
            const std::uint64_t middle =
                bucket_low(bucket) + (bucket_high(bucket) - bucket_low(bucket)) / 2;
            return std::clamp(middle, min(), max_);
        }
    }
    return max_;
}

namespace {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
using Socket = asio::local::stream_protocol::socket;
using boost::system::error_code;

// ---------------------------------------------------------------------------------------------
// Handler memory: every connection owns one block per kind of outstanding operation, so reads
// and writes in the steady state never touch the heap. Asio frees an operation's memory before
// it calls the handler, so the handler's next operation finds the block free again.

class HandlerMemory {
public:
    HandlerMemory() = default;
    HandlerMemory(const HandlerMemory&) = delete;
    HandlerMemory& operator=(const HandlerMemory&) = delete;

    void* allocate(std::size_t size) {
        if (!in_use_ && size <= sizeof storage_) {
            in_use_ = true;
            return storage_;
        }
        return ::operator new(size); // a larger or second operation: correct, only slower
    }
    void deallocate(void* pointer) {
        if (pointer == storage_)
            in_use_ = false;
        else
            ::operator delete(pointer);
    }

private:
    alignas(std::max_align_t) unsigned char storage_[512];
    bool in_use_ = false;
};

template <typename T>
class HandlerAllocator {
public:
    using value_type = T;
    explicit HandlerAllocator(HandlerMemory& memory)
        : memory_(&memory) {}
    template <typename U>
    HandlerAllocator(const HandlerAllocator<U>& other) // NOLINT: converting, as allocators do
        : memory_(other.memory()) {}

    T* allocate(std::size_t count) { return static_cast<T*>(memory_->allocate(sizeof(T) * count)); }
    void deallocate(T* pointer, std::size_t) { memory_->deallocate(pointer); }
    HandlerMemory* memory() const { return memory_; }
    friend bool operator==(const HandlerAllocator& a, const HandlerAllocator& b) {
        return a.memory_ == b.memory_;
    }

private:
    HandlerMemory* memory_;
};

template <typename Handler>
auto with_memory(HandlerMemory& memory, Handler handler) {
    return asio::bind_allocator(HandlerAllocator<char>(memory), std::move(handler));
}

// ---------------------------------------------------------------------------------------------
// The payload: every connection sends an endless pseudo-random byte stream whose byte at stream
// offset i is table[i % period]. Any run of up to `span` bytes starting anywhere is one
// contiguous piece of `bytes_`, so messages are sent from and checked against it without
// copying. The period is prime, so a lost, repeated or reordered piece shows up as a difference
// unless it is an exact multiple of 65521 bytes long.

class Pattern {
public:
    static constexpr std::size_t period = 65521;

    explicit Pattern(std::size_t span)
        : bytes_(period + span) {
        std::mt19937_64 random(0x75647365'63686f31);
        for (std::size_t i = 0; i < period; ++i)
            bytes_[i] = static_cast<char>(random());
        for (std::size_t i = period; i < bytes_.size(); ++i)
            bytes_[i] = bytes_[i % period];
    }

    const char* at(std::uint64_t offset) const { return bytes_.data() + offset % period; }

    // The index of the first byte of `data` that differs from the stream at `offset`, if any.
    std::optional<std::size_t> difference(std::uint64_t offset, const char* data,
                                          std::size_t size) const {
        const char* expected = at(offset);
        if (std::memcmp(expected, data, size) == 0)
            return std::nullopt;
        return static_cast<std::size_t>(std::mismatch(data, data + size, expected).first - data);
    }

private:
    std::vector<char> bytes_;
};

// Largest write of several pipelined messages at once, and the size of a connection's reads.
constexpr std::size_t max_batch_bytes = 256 * 1024;
constexpr std::size_t read_buffer_size = 64 * 1024;
constexpr auto watchdog_interval = std::chrono::milliseconds(50);

std::string describe_error(const error_code& error) {
    return error.message();
}

bool is_disconnect(const error_code& error) {
    return error == asio::error::eof || error == asio::error::connection_reset ||
           error == asio::error::broken_pipe;
}

// ---------------------------------------------------------------------------------------------
// What all threads share.

struct Shared {
    Shared(const BenchOptions& bench_options, std::string socket_path, Clock::time_point start)
        : options(bench_options)
        , path(std::move(socket_path))
        , pattern(std::max(bench_options.message_size, max_batch_bytes))
        , measure_start(start + bench_options.warmup)
        , measure_end(bench_options.messages
                          ? Clock::time_point::max()
                          : measure_start + std::chrono::duration_cast<Clock::duration>(
                                                bench_options.duration)) {}

    bool measured(Clock::time_point sent) const {
        return sent >= measure_start && sent < measure_end;
    }

    void record_failure(const Failure& failure) {
        {
            const std::lock_guard lock(failure_mutex);
            if (!first_failure)
                first_failure = failure;
        }
        errors.fetch_add(1, std::memory_order_relaxed);
        abort_requested.store(true, std::memory_order_relaxed);
    }

    std::optional<Failure> failure() {
        const std::lock_guard lock(failure_mutex);
        return first_failure;
    }

    const BenchOptions& options;
    const std::string path;
    const Pattern pattern;
    const Clock::time_point measure_start;
    const Clock::time_point measure_end;
    std::atomic<bool> stop_sending{false};    // SIGINT: finish the messages in flight, then end
    std::atomic<bool> abort_requested{false}; // an error, or a second SIGINT: close everything
    std::atomic<std::uint64_t> errors{0};

private:
    std::mutex failure_mutex;
    std::optional<Failure> first_failure;
};

// Counters of one thread, read by the progress display while the thread writes them.
struct alignas(64) Counters {
    std::atomic<std::uint64_t> messages{0};
    std::atomic<std::uint64_t> bytes{0};
    std::atomic<std::uint64_t> connections{0};
};

class Worker;

// The interface the worker's watchdog sees.
class Load {
public:
    virtual ~Load() = default;
    virtual void start() = 0;
    // Fails the connection if it owes an echo and nothing came for the timeout.
    virtual void check_timeout(Clock::time_point now) = 0;
    virtual void close() = 0;
};

// One thread: an io_context of its own, the connections it drives, its latency histogram.
class Worker {
public:
    explicit Worker(Shared& shared)
        : shared_(shared)
        , context_(1)
        , watchdog_(context_) {}

    asio::io_context& context() { return context_; }
    Shared& shared() { return shared_; }
    LatencyHistogram& latency() { return latency_; }
    Counters& counters() { return counters_; }
    Clock::time_point last_completion() const { return last_completion_; }
    void completed_at(Clock::time_point now) { last_completion_ = std::max(last_completion_, now); }

    void add(std::unique_ptr<Load> load) { loads_.push_back(std::move(load)); }

    void run() {
        active_ = loads_.size();
        for (auto& load : loads_)
            load->start();
        arm_watchdog();
        context_.run();
    }

    // A load has ended (done or failed); the thread ends with the last one.
    void load_finished() {
        if (--active_ == 0)
            watchdog_.cancel();
    }

private:
    void arm_watchdog() {
        watchdog_.expires_after(watchdog_interval);
        watchdog_.async_wait([this](const error_code& error) {
            if (error || active_ == 0)
                return;
            if (shared_.abort_requested.load(std::memory_order_relaxed)) {
                for (auto& load : loads_)
                    load->close();
            } else {
                const auto now = Clock::now();
                for (auto& load : loads_)
                    load->check_timeout(now);
            }
            if (active_ > 0)
                arm_watchdog();
        });
    }

    Shared& shared_;
    asio::io_context context_;
    asio::steady_timer watchdog_;
    std::vector<std::unique_ptr<Load>> loads_;
    std::size_t active_ = 0;
    LatencyHistogram latency_;
    Counters counters_;
    Clock::time_point last_completion_{};
};

std::string timeout_text(std::chrono::milliseconds timeout) {
    char text[32];
    std::snprintf(text, sizeof text, "%g s", static_cast<double>(timeout.count()) / 1000.0);
    return text;
}

// ---------------------------------------------------------------------------------------------
// A persistent connection with up to `pipeline` messages in flight. The writer sends whenever a
// slot is free (several messages in one write when several are free); the reader checks every
// byte against the pattern and completes messages as their last byte arrives. The two run
// concurrently, so any depth and size work without deadlock.

class PipelinedConnection final : public Load {
public:
    PipelinedConnection(Worker& worker, int fd, std::uint64_t stream_offset,
                        std::optional<std::uint64_t> quota)
        : worker_(worker)
        , shared_(worker.shared())
        , size_(shared_.options.message_size)
        , pipeline_(shared_.options.pipeline)
        , socket_(worker.context(), asio::local::stream_protocol(), fd)
        , send_times_(pipeline_)
        , read_buffer_(read_buffer_size)
        , send_offset_(stream_offset)
        , receive_offset_(stream_offset)
        , stream_start_(stream_offset)
        , quota_(quota) {}

    void start() override {
        if (quota_ && *quota_ == 0 && shared_.measure_start <= Clock::now()) {
            finish();
            return;
        }
        send_more();
        receive();
    }

    void check_timeout(Clock::time_point now) override {
        if (!closed_ && in_flight_ > 0 && now - last_progress_ > shared_.options.timeout)
            fail(Failure(ExitCode::temp_failure,
                         "no echo within " + timeout_text(shared_.options.timeout) +
                             " on a "
                             "connection with " +
                             std::to_string(in_flight_) + " message(s) in flight"));
    }

    void close() override {
        if (closed_)
            return;
        closed_ = true;
        error_code ignored;
        socket_.close(ignored);
        worker_.load_finished();
    }

private:
    bool may_send(Clock::time_point now) const {
        if (shared_.stop_sending.load(std::memory_order_relaxed))
            return false;
        if (quota_)
            return *quota_ > 0 || now < shared_.measure_start;
        return now < shared_.measure_end;
    }

    void send_more() {
        if (writing_ || closed_ || sending_done_ || in_flight_ == pipeline_)
            return;
        const auto now = Clock::now();
        if (!may_send(now)) {
            sending_done_ = true;
            if (in_flight_ == 0)
                finish();
            return;
        }
        std::size_t count = std::min<std::size_t>(
            pipeline_ - in_flight_, std::max<std::size_t>(1, max_batch_bytes / size_));
        if (quota_ && now >= shared_.measure_start) {
            count = static_cast<std::size_t>(std::min<std::uint64_t>(count, *quota_));
            *quota_ -= count;
        }
        if (in_flight_ == 0)
            last_progress_ = now;
        for (std::size_t i = 0; i < count; ++i)
            send_times_[(sent_ + i) % pipeline_] = now;
        sent_ += count;
        in_flight_ += count;
        writing_ = true;
        asio::async_write(
            socket_, asio::buffer(shared_.pattern.at(send_offset_), count * size_),
            with_memory(write_memory_, [this](const error_code& error, std::size_t written) {
                writing_ = false;
                if (closed_)
                    return;
                if (error) {
                    fail_on(error, "cannot send to the daemon");
                    return;
                }
                send_offset_ += written;
                send_more();
            }));
    }

    void receive() {
        socket_.async_read_some(
            asio::buffer(read_buffer_),
            with_memory(read_memory_, [this](const error_code& error, std::size_t count) {
                if (closed_)
                    return;
                if (error) {
                    fail_on(error, "cannot receive from the daemon");
                    return;
                }
                if (received(count))
                    receive();
            }));
    }

    // False when the connection ended.
    bool received(std::size_t count) {
        const auto now = Clock::now();
        last_progress_ = now;
        if (receive_offset_ - stream_start_ + count > sent_ * size_) {
            fail(Failure(ExitCode::data_error, "the daemon sent more bytes than it was sent"));
            return false;
        }
        if (const auto index =
                shared_.pattern.difference(receive_offset_, read_buffer_.data(), count)) {
            fail(Failure(ExitCode::data_error,
                         "the echo differed from what was sent at byte offset " +
                             std::to_string(receive_offset_ - stream_start_ + *index) +
                             " of a connection"));
            return false;
        }
        receive_offset_ += count;
        partial_ += count;
        while (partial_ >= size_) {
            partial_ -= size_;
            complete_message(now);
        }
        if (sending_done_ && in_flight_ == 0) {
            finish();
            return false;
        }
        send_more();
        return !closed_;
    }

    void complete_message(Clock::time_point now) {
        const auto sent_at = send_times_[received_ % pipeline_];
        ++received_;
        --in_flight_;
        if (!shared_.measured(sent_at))
            return;
        worker_.latency().record(static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(now - sent_at).count()));
        auto& counters = worker_.counters();
        counters.messages.store(counters.messages.load(std::memory_order_relaxed) + 1,
                                std::memory_order_relaxed);
        counters.bytes.store(counters.bytes.load(std::memory_order_relaxed) + size_,
                             std::memory_order_relaxed);
        worker_.completed_at(now);
    }

    void fail_on(const error_code& error, const std::string& what) {
        if (is_disconnect(error))
            fail(Failure(ExitCode::data_error,
                         "the daemon closed a connection with " + std::to_string(in_flight_) +
                             " message(s) in flight (" + describe_error(error) + ")"));
        else
            fail(Failure(ExitCode::os_error, what + ": " + describe_error(error)));
    }

    void fail(const Failure& failure) {
        if (closed_)
            return;
        shared_.record_failure(failure);
        close();
    }

    void finish() {
        if (closed_)
            return;
        error_code ignored;
        socket_.shutdown(Socket::shutdown_both, ignored);
        close();
    }

    Worker& worker_;
    Shared& shared_;
    const std::size_t size_;
    const std::size_t pipeline_;
    Socket socket_;
    std::vector<Clock::time_point> send_times_; // ring, indexed by message number % pipeline
    std::vector<char> read_buffer_;
    HandlerMemory read_memory_;
    HandlerMemory write_memory_;
    std::uint64_t send_offset_;    // stream offset of the next byte to send
    std::uint64_t receive_offset_; // stream offset of the next byte expected back
    const std::uint64_t stream_start_;
    std::optional<std::uint64_t> quota_; // measured messages this connection still sends (-n)
    std::uint64_t sent_ = 0;             // messages sent
    std::uint64_t received_ = 0;         // messages completely echoed
    std::size_t in_flight_ = 0;
    std::size_t partial_ = 0; // bytes of the oldest message in flight already back
    Clock::time_point last_progress_{};
    bool writing_ = false;
    bool sending_done_ = false;
    bool closed_ = false;
};

// ---------------------------------------------------------------------------------------------
// Churn: each message on a connection of its own (connect, send, read the echo, close). The
// latency counted is the whole cycle, from connect() to the last byte of the echo.

// A non-blocking AF_UNIX connect() completes at once or fails; EAGAIN means the daemon's listen
// backlog is full and is retried (see connect_with_retry in client.cpp for why not async_connect).
constexpr auto backlog_retry = std::chrono::milliseconds(1);

class ChurnSlot final : public Load {
public:
    ChurnSlot(Worker& worker, std::uint64_t stream_offset, std::optional<std::uint64_t> quota)
        : worker_(worker)
        , shared_(worker.shared())
        , size_(shared_.options.message_size)
        , endpoint_(make_endpoint(shared_.path))
        , socket_(worker.context())
        , retry_timer_(worker.context())
        , echo_(size_)
        , stream_offset_(stream_offset)
        , quota_(quota) {}

    void start() override { next_cycle(); }

    void check_timeout(Clock::time_point now) override {
        if (!closed_ && busy_ && now - cycle_start_ > shared_.options.timeout)
            fail(Failure(ExitCode::temp_failure, "a connect and echo took longer than " +
                                                     timeout_text(shared_.options.timeout)));
    }

    void close() override {
        if (closed_)
            return;
        closed_ = true;
        error_code ignored;
        socket_.close(ignored);
        retry_timer_.cancel();
        worker_.load_finished();
    }

private:
    bool may_start(Clock::time_point now) {
        if (shared_.stop_sending.load(std::memory_order_relaxed))
            return false;
        if (!quota_)
            return now < shared_.measure_end;
        if (now < shared_.measure_start)
            return true;
        if (*quota_ == 0)
            return false;
        --*quota_;
        return true;
    }

    void next_cycle() {
        if (closed_)
            return;
        const auto now = Clock::now();
        if (!may_start(now)) {
            close();
            return;
        }
        cycle_start_ = now;
        busy_ = true;
        pending_ = 2;
        try_connect();
    }

    void try_connect() {
        const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
            fail(Failure(ExitCode::os_error,
                         std::string("cannot create a socket: ") + std::strerror(errno)));
            return;
        }
        int error = 0;
        while (::connect(fd, endpoint_.data(), static_cast<socklen_t>(endpoint_.size())) != 0) {
            error = errno;
            if (error != EINTR)
                break;
            error = 0;
        }
        if (error == EAGAIN) {
            ::close(fd);
            retry_timer_.expires_after(backlog_retry);
            retry_timer_.async_wait(with_memory(write_memory_, [this](const error_code& e) {
                if (!e && !closed_)
                    try_connect();
            }));
            return;
        }
        if (error != 0) {
            ::close(fd);
            fail(Failure(error == ECONNREFUSED || error == ENOENT ? ExitCode::unavailable
                         : error == EACCES                        ? ExitCode::no_permission
                                                                  : ExitCode::os_error,
                         "cannot connect to " + shared_.path + ": " + std::strerror(error)));
            return;
        }
        error_code assign_error;
        socket_.assign(asio::local::stream_protocol(), fd, assign_error);
        if (assign_error) {
            ::close(fd);
            fail(Failure(ExitCode::os_error,
                         "cannot use a new connection: " + describe_error(assign_error)));
            return;
        }
        exchange();
    }

    void exchange() {
        const std::uint64_t offset = stream_offset_ + cycles_ * 4099;
        asio::async_write(socket_, asio::buffer(shared_.pattern.at(offset), size_),
                          with_memory(write_memory_, [this](const error_code& error, std::size_t) {
                              if (closed_)
                                  return;
                              if (error && !is_disconnect(error)) {
                                  fail(Failure(ExitCode::os_error, "cannot send to the daemon: " +
                                                                       describe_error(error)));
                                  return;
                              }
                              step_done();
                          }));
        asio::async_read(
            socket_, asio::buffer(echo_),
            with_memory(read_memory_, [this, offset](const error_code& error, std::size_t count) {
                if (closed_)
                    return;
                if (error) {
                    fail(Failure(is_disconnect(error) ? ExitCode::data_error : ExitCode::os_error,
                                 "the daemon closed a new connection after " +
                                     std::to_string(count) + " of " + std::to_string(size_) +
                                     " bytes (" + describe_error(error) + ")"));
                    return;
                }
                if (const auto index = shared_.pattern.difference(offset, echo_.data(), size_)) {
                    fail(Failure(ExitCode::data_error,
                                 "the echo differed from what was sent at byte offset " +
                                     std::to_string(*index)));
                    return;
                }
                step_done();
            }));
    }

    // The write and the read of a cycle both done: count the cycle, start the next.
    void step_done() {
        if (--pending_ > 0)
            return;
        const auto now = Clock::now();
        error_code ignored;
        socket_.close(ignored);
        busy_ = false;
        ++cycles_;
        if (shared_.measured(cycle_start_)) {
            worker_.latency().record(static_cast<std::uint64_t>(
                std::chrono::duration_cast<std::chrono::nanoseconds>(now - cycle_start_).count()));
            auto& counters = worker_.counters();
            counters.messages.store(counters.messages.load(std::memory_order_relaxed) + 1,
                                    std::memory_order_relaxed);
            counters.bytes.store(counters.bytes.load(std::memory_order_relaxed) + size_,
                                 std::memory_order_relaxed);
            counters.connections.store(counters.connections.load(std::memory_order_relaxed) + 1,
                                       std::memory_order_relaxed);
            worker_.completed_at(now);
        }
        next_cycle();
    }

    void fail(const Failure& failure) {
        if (closed_)
            return;
        shared_.record_failure(failure);
        close();
    }

    Worker& worker_;
    Shared& shared_;
    const std::size_t size_;
    const asio::local::stream_protocol::endpoint endpoint_;
    Socket socket_;
    asio::steady_timer retry_timer_;
    std::vector<char> echo_;
    HandlerMemory read_memory_;
    HandlerMemory write_memory_;
    const std::uint64_t stream_offset_;
    std::optional<std::uint64_t> quota_;
    std::uint64_t cycles_ = 0;
    Clock::time_point cycle_start_{};
    int pending_ = 0;
    bool busy_ = false;
    bool closed_ = false;
};

// ---------------------------------------------------------------------------------------------
// Setting up and running

// Measured messages for load number `index` of `loads`, when -n splits a total between them.
std::optional<std::uint64_t> quota_of(const BenchOptions& options, std::size_t index,
                                      std::size_t loads) {
    if (!options.messages)
        return std::nullopt;
    const std::uint64_t total = *options.messages;
    return total / loads + (index < total % loads ? 1 : 0);
}

// SIGINT and SIGTERM are blocked in every thread while the benchmark runs; the calling thread
// takes them synchronously with sigtimedwait, which also paces the progress display.
class BlockedStopSignals {
public:
    BlockedStopSignals() {
        sigemptyset(&set_);
        sigaddset(&set_, SIGINT);
        sigaddset(&set_, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &set_, &previous_);
    }
    ~BlockedStopSignals() {
        // A signal that came after the last wait would be delivered on unblocking: take it.
        const timespec zero{0, 0};
        while (sigtimedwait(&set_, nullptr, &zero) > 0) {
        }
        pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
    }
    BlockedStopSignals(const BlockedStopSignals&) = delete;
    BlockedStopSignals& operator=(const BlockedStopSignals&) = delete;

    // True when a stop signal arrived within `timeout`.
    bool wait(std::chrono::milliseconds timeout) {
        const timespec interval{static_cast<time_t>(timeout.count() / 1000),
                                static_cast<long>(timeout.count() % 1000) * 1000000L};
        return sigtimedwait(&set_, nullptr, &interval) > 0;
    }

private:
    sigset_t set_{};
    sigset_t previous_{};
};

std::string rate_text(double value) {
    char text[32];
    if (value >= 1e6)
        std::snprintf(text, sizeof text, "%.2fM", value / 1e6);
    else if (value >= 1e4)
        std::snprintf(text, sizeof text, "%.1fk", value / 1e3);
    else
        std::snprintf(text, sizeof text, "%.0f", value);
    return text;
}

class ProgressDisplay {
public:
    ProgressDisplay(std::ostream& out, std::vector<std::unique_ptr<Worker>>& workers,
                    const Shared& shared)
        : out_(out)
        , workers_(workers)
        , shared_(shared)
        , last_time_(Clock::now()) {}

    void update(Clock::time_point now, bool stopping) {
        std::uint64_t messages = 0;
        std::uint64_t bytes = 0;
        for (auto& worker : workers_) {
            messages += worker->counters().messages.load(std::memory_order_relaxed);
            bytes += worker->counters().bytes.load(std::memory_order_relaxed);
        }
        const double seconds = std::chrono::duration<double>(now - last_time_).count();
        const double elapsed = std::chrono::duration<double>(now - shared_.measure_start).count();
        char line[160];
        if (now < shared_.measure_start)
            std::snprintf(line, sizeof line, "\r\033[Kwarming up, %.0f s left",
                          std::ceil(-elapsed));
        else
            std::snprintf(
                line, sizeof line,
                "\r\033[K%6.1f s  %s msg/s  %.1f MiB/s  %llu messages  %llu errors%s", elapsed,
                rate_text((messages - last_messages_) / seconds).c_str(),
                static_cast<double>(bytes - last_bytes_) / (1024.0 * 1024.0) / seconds,
                static_cast<unsigned long long>(messages),
                static_cast<unsigned long long>(shared_.errors.load(std::memory_order_relaxed)),
                stopping ? "  (stopping)" : "");
        out_ << line << std::flush;
        last_time_ = now;
        last_messages_ = messages;
        last_bytes_ = bytes;
    }

    void clear() { out_ << "\r\033[K" << std::flush; }

private:
    std::ostream& out_;
    std::vector<std::unique_ptr<Worker>>& workers_;
    const Shared& shared_;
    Clock::time_point last_time_;
    std::uint64_t last_messages_ = 0;
    std::uint64_t last_bytes_ = 0;
};

void check_options(const BenchOptions& options) {
    if (options.connections == 0 || options.message_size == 0 || options.pipeline == 0 ||
        options.threads == 0)
        throw Failure(ExitCode::usage, "bench: connections, size, pipeline and threads must be "
                                       "at least 1 (see uds-echo bench --help)");
}

} // namespace

BenchResult run_bench(const BenchOptions& options, std::ostream& progress_out) {
    check_options(options);
    BenchResult result;
    result.options = options;
    result.options.threads = std::min(options.threads, options.connections);

    // The first connection finds the daemon and reports a missing one exactly as the other forms
    // do; the others go to the same path.
    const int first_fd =
        connect_to_daemon(ClientOptions{options.socket_candidates, options.timeout, true});
    std::string path = peer_socket_path(first_fd);
    if (path.empty())
        path = options.socket_candidates.front();
    std::vector<int> fds{first_fd};
    if (!options.churn) {
        const ClientOptions same_path{{path}, options.timeout, true};
        try {
            while (fds.size() < options.connections)
                fds.push_back(connect_to_daemon(same_path));
        } catch (...) {
            for (const int fd : fds)
                ::close(fd);
            throw;
        }
    } else {
        ::close(first_fd);
        fds.clear();
    }

    BlockedStopSignals signals;
    Shared shared(result.options, path, Clock::now());
    std::vector<std::unique_ptr<Worker>> workers;
    for (unsigned i = 0; i < result.options.threads; ++i)
        workers.push_back(std::make_unique<Worker>(shared));
    for (std::size_t i = 0; i < options.connections; ++i) {
        Worker& worker = *workers[i % workers.size()];
        const std::uint64_t stream_offset = i * 7919;
        const auto quota = quota_of(options, i, options.connections);
        if (options.churn)
            worker.add(std::make_unique<ChurnSlot>(worker, stream_offset, quota));
        else
            worker.add(std::make_unique<PipelinedConnection>(worker, fds[i], stream_offset, quota));
    }

    std::atomic<std::size_t> running{workers.size()};
    std::vector<std::thread> threads;
    for (auto& worker : workers)
        threads.emplace_back([&worker, &shared, &running] {
            try {
                worker->run();
            } catch (const std::exception& error) {
                shared.record_failure(
                    Failure(ExitCode::software, std::string("bench thread: ") + error.what()));
            }
            running.fetch_sub(1);
        });

    ProgressDisplay progress(progress_out, workers, shared);
    auto next_progress = Clock::now() + std::chrono::seconds(1);
    while (running.load() > 0) {
        if (signals.wait(std::chrono::milliseconds(20))) {
            // The first signal lets the messages in flight come back; a second one cuts them.
            if (shared.stop_sending.exchange(true))
                shared.abort_requested = true;
            result.interrupted = true;
        }
        const auto now = Clock::now();
        if (options.progress && now >= next_progress) {
            progress.update(now, shared.stop_sending.load());
            next_progress += std::chrono::seconds(1);
        }
    }
    for (auto& thread : threads)
        thread.join();
    if (options.progress)
        progress.clear();

    Clock::time_point last_completion{};
    for (auto& worker : workers) {
        result.latency.merge(worker->latency());
        result.messages += worker->counters().messages.load();
        result.bytes += worker->counters().bytes.load();
        result.connections += worker->counters().connections.load();
        last_completion = std::max(last_completion, worker->last_completion());
    }
    if (last_completion > shared.measure_start)
        result.seconds =
            std::chrono::duration<double>(last_completion - shared.measure_start).count();
    result.errors = shared.errors.load();
    result.failure = shared.failure();
    return result;
}

namespace {

// Latency for people: "36.2 us", "1.25 ms".
std::string latency_text(std::uint64_t nanoseconds) {
    char text[32];
    if (nanoseconds < 1'000'000)
        std::snprintf(text, sizeof text, "%.1f us", static_cast<double>(nanoseconds) / 1e3);
    else if (nanoseconds < 1'000'000'000)
        std::snprintf(text, sizeof text, "%.2f ms", static_cast<double>(nanoseconds) / 1e6);
    else
        std::snprintf(text, sizeof text, "%.2f s", static_cast<double>(nanoseconds) / 1e9);
    return text;
}

double microseconds(std::uint64_t nanoseconds) {
    return static_cast<double>(nanoseconds) / 1e3;
}

std::string json_string(const std::string& text) {
    std::string quoted = "\"";
    for (const char c : text) {
        if (c == '"' || c == '\\') {
            quoted += '\\';
            quoted += c;
        } else if (static_cast<unsigned char>(c) < 0x20) {
            char escape[8];
            std::snprintf(escape, sizeof escape, "\\u%04x", static_cast<unsigned>(c));
            quoted += escape;
        } else {
            quoted += c;
        }
    }
    return quoted + '"';
}

} // namespace

void print_bench_report(const BenchResult& result, std::ostream& out) {
    const auto& options = result.options;
    char line[256];
    std::snprintf(line, sizeof line,
                  "%s: %u connection%s on %u thread%s, %zu-byte messages, pipeline %u, "
                  "%.2f s measured%s\n",
                  options.churn ? "churn" : "bench", options.connections,
                  options.connections == 1 ? "" : "s", options.threads,
                  options.threads == 1 ? "" : "s", options.message_size,
                  options.churn ? 1 : options.pipeline, result.seconds,
                  result.interrupted ? " (interrupted)" : "");
    out << line;
    std::snprintf(line, sizeof line, "messages    %llu  (%.0f msg/s, %.2f MiB/s echoed)\n",
                  static_cast<unsigned long long>(result.messages), result.messages_per_second(),
                  result.mebibytes_per_second());
    out << line;
    if (options.churn) {
        std::snprintf(line, sizeof line, "connections %llu  (%.0f connections/s)\n",
                      static_cast<unsigned long long>(result.connections),
                      result.connections_per_second());
        out << line;
    }
    const auto& latency = result.latency;
    out << "latency     p50 " << latency_text(latency.percentile(0.50)) << "  p90 "
        << latency_text(latency.percentile(0.90)) << "  p99 "
        << latency_text(latency.percentile(0.99)) << "  p99.9 "
        << latency_text(latency.percentile(0.999)) << "  max " << latency_text(latency.max())
        << '\n';
    out << "errors      " << result.errors << '\n';
}

void print_bench_json(const BenchResult& result, std::ostream& out) {
    const auto& options = result.options;
    const auto& latency = result.latency;
    char numbers[512];
    std::snprintf(numbers, sizeof numbers,
                  "\"seconds\":%.6f,\"messages_per_second\":%.1f,\"mib_per_second\":%.3f,"
                  "\"connections_per_second\":%.1f,\"latency_us\":{\"min\":%.3f,\"mean\":%.3f,"
                  "\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p99_9\":%.3f,\"max\":%.3f}",
                  result.seconds, result.messages_per_second(), result.mebibytes_per_second(),
                  options.churn ? result.connections_per_second() : 0.0,
                  microseconds(latency.min()), latency.mean() / 1e3,
                  microseconds(latency.percentile(0.50)), microseconds(latency.percentile(0.90)),
                  microseconds(latency.percentile(0.99)), microseconds(latency.percentile(0.999)),
                  microseconds(latency.max()));
    out << "{\"mode\":\"" << (options.churn ? "churn" : "pipelined") << "\""
        << ",\"connections\":" << options.connections << ",\"threads\":" << options.threads
        << ",\"size\":" << options.message_size << ",\"pipeline\":" << options.pipeline
        << ",\"messages\":" << result.messages << ",\"bytes\":" << result.bytes
        << ",\"connections_opened\":" << result.connections << ",\"errors\":" << result.errors
        << ",\"interrupted\":" << (result.interrupted ? "true" : "false") << ',' << numbers
        << ",\"exit_code\":" << to_int(result.exit_code()) << ",\"error\":"
        << (result.failure ? json_string(result.failure->what()) : std::string("null")) << "}\n";
}

} // namespace uds_echo
