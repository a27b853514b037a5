#include "client/bench/bench_load.hpp"

#include "client/bench/loads.hpp"

#include "client/connect.hpp"
#include "common/paths.hpp"
#include "common/text.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>

namespace uds_echo::client {

namespace {

using Clock = BenchClock;
using std::chrono::milliseconds;

// The size of a worker's reads.
constexpr std::size_t read_buffer_bytes = 64 * 1024;
// How often a worker looks for connections that owe an echo too long, and publishes its figures
// for the progress display.
constexpr auto tick_interval = milliseconds(50);
constexpr int max_events = 256;

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
    abort();
}

std::optional<Failure> BenchRun::failure() {
    const std::lock_guard lock(failure_mutex_);
    return first_failure_;
}

void BenchRun::abort() {
    for (auto* worker : workers_)
        worker->abort();
}

// ---- the worker ----

Worker::Worker(BenchRun& run)
    : run_(run)
    , epoll_(::epoll_create1(EPOLL_CLOEXEC))
    , abort_event_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK))
    // A message is received whole with one recv(), so a message socket reads its full size.
    , read_buffer_(run.options.type == SocketType::stream
                       ? read_buffer_bytes
                       : std::max(read_buffer_bytes, run.options.message_size)) {
    if (!epoll_.valid() || !abort_event_.valid())
        throw Failure(ExitCode::os_error,
                      "bench: cannot create an event loop: " + errno_text(errno));
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.ptr = nullptr; // the abort event; every other entry is a load
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, abort_event_.get(), &event) != 0)
        throw Failure(ExitCode::os_error, "bench: epoll_ctl: " + errno_text(errno));
    run_.enlist(*this);
}

Worker::~Worker() = default;

void Worker::add_load(FileDescriptor fd, std::uint64_t stream_offset,
                      std::optional<std::uint64_t> quota) {
    if (fd.valid())
        ++figures_.connections_opened;
    loads_.push_back(make_load(*this, std::move(fd), stream_offset, quota));
}

void Worker::watch(int fd, Load* load, bool output, bool added) {
    epoll_event event{};
    event.events = EPOLLIN | (output ? EPOLLOUT : 0u);
    event.data.ptr = load;
    if (::epoll_ctl(epoll_.get(), added ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &event) != 0)
        throw Failure(ExitCode::os_error, "bench: epoll_ctl: " + errno_text(errno));
}

void Worker::wake_by(Clock::time_point when) {
    if (!wake_by_ || when < *wake_by_)
        wake_by_ = when;
}

void Worker::abort() {
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto written = ::write(abort_event_.get(), &one, sizeof one);
}

void Worker::messages_done(Clock::time_point sent, Clock::time_point now, std::size_t count,
                           bool new_connection) {
    if (!run_.measured(sent))
        return;
    figures_.latency.record(
        static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(now - sent).count()),
        count);
    figures_.messages += count;
    figures_.bytes += count * run_.options.message_size;
    if (new_connection)
        figures_.connections_measured += count;
    figures_.last_completion = std::max(figures_.last_completion, now);
}

void Worker::replies_lost(Clock::time_point sent, std::size_t count) {
    if (run_.measured(sent))
        figures_.replies_lost += count;
}

void Worker::run_loads() {
    active_ = loads_.size();
    auto next_tick = Clock::now() + tick_interval;
    try {
        for (auto& load : loads_)
            load->start(Clock::now());
        epoll_event events[max_events];
        bool aborted = false;
        while (active_ > 0 && !aborted) {
            const auto wake = std::min(next_tick, wake_by_.value_or(next_tick));
            const auto wait = std::chrono::ceil<milliseconds>(wake - Clock::now()).count();
            const int count = ::epoll_wait(epoll_.get(), events, max_events,
                                           static_cast<int>(std::max<long>(wait, 0)));
            if (count < 0 && errno != EINTR)
                throw Failure(ExitCode::os_error, "bench: epoll_wait: " + errno_text(errno));
            for (int i = 0; i < count; ++i) {
                if (events[i].data.ptr == nullptr)
                    aborted = true;
                else
                    static_cast<Load*>(events[i].data.ptr)->ready(events[i].events);
            }
            const auto now = Clock::now();
            if (now >= wake) {
                wake_by_.reset();
                tick(now);
                if (now >= next_tick) {
                    next_tick = now + tick_interval;
                    publish();
                }
            }
        }
    } catch (const Failure& failure) {
        run_.record_failure(failure);
    } catch (const std::exception& exception) {
        run_.record_failure(Failure(ExitCode::software, std::string("bench: ") + exception.what()));
    }
    for (auto& load : loads_)
        load->close();
    publish();
}

void Worker::tick(Clock::time_point now) {
    for (auto& load : loads_) {
        load->check_timeout(now);
        load->tick(now);
    }
}

void Worker::publish() {
    const std::lock_guard lock(published_mutex_);
    published_ = figures_;
}

WorkerFigures Worker::published_figures() {
    const std::lock_guard lock(published_mutex_);
    return published_;
}

} // namespace uds_echo::client
