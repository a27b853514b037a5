#include "client/bench/bench_load.hpp"

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

// Largest send of several pipelined messages at once, and the size of a worker's reads.
constexpr std::size_t max_batch_bytes = 256 * 1024;
constexpr std::size_t read_buffer_bytes = 64 * 1024;
// How often a worker looks for connections that owe an echo too long, and publishes its figures
// for the progress display.
constexpr auto tick_interval = milliseconds(50);
constexpr int max_events = 256;

std::string errno_text(int error) {
    return std::strerror(error);
}

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

// ---- loads ----

// What both kinds of load share: one connection at a time carrying the pattern's stream with up
// to `depth` messages in flight, every echoed byte checked as it arrives, and the way a load ends.
// On a seqpacket or datagram socket each message is one send() of `size` bytes of the stream, and
// each echo must be one message of exactly those bytes, in order; a datagram reply the daemon
// dropped is counted lost, not failed (see check_message()).
// Everything runs on the worker's thread, called from its epoll loop.
class Load {
public:
    Load(Worker& worker, std::size_t depth, bool new_connection_per_message)
        : worker_(worker)
        , run_(worker.run())
        , size_(run_.options.message_size)
        , depth_(depth)
        , messages_(run_.options.type != SocketType::stream)
        , datagrams_(run_.options.type == SocketType::datagram)
        , new_connection_per_message_(new_connection_per_message)
        , batches_(depth) {}
    Load(const Load&) = delete;
    Load& operator=(const Load&) = delete;
    virtual ~Load() = default;

    // Sends the first messages (or opens the first connection).
    virtual void start(Clock::time_point now) = 0;
    // The last echo of the connection came back (churn), or more may be sent (pipelined).
    virtual void echoed(Clock::time_point now) = 0;
    // Every tick and when a wake_by() time has come: a load waiting for something else than its
    // socket (a full listen backlog) goes on.
    virtual void tick(Clock::time_point) {}

    // The socket is ready for what the loop watches it for.
    void ready(std::uint32_t events) {
        if (ended_)
            return; // closed earlier in the same batch of events
        if ((events & EPOLLOUT) != 0 && !send_unsent())
            return;
        if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0)
            receive();
    }

    // Fails the load if it owes an echo and nothing came for the timeout. Datagrams all sent whose
    // replies did not come for the timeout are lost, and the load goes on.
    void check_timeout(Clock::time_point now) {
        if (ended_ || in_flight_ == 0 || now - last_progress_ <= run_.options.timeout)
            return;
        if (datagrams_ && unsent_ == 0) {
            const std::size_t lost = in_flight_;
            receive_offset_ += lost * size_;
            retire(lost, now, true);
            last_progress_ = now;
            echoed(now);
            return;
        }
        fail(Failure(ExitCode::temp_failure,
                     "no echo within " + seconds_text(run_.options.timeout) +
                         " on a connection with " + std::to_string(in_flight_) +
                         " message(s) in flight"));
    }

    // Ends the load at once: its connection is closed (which also takes it out of the epoll set).
    void close() {
        if (ended_)
            return;
        ended_ = true;
        fd_.reset();
        worker_.load_ended();
    }

protected:
    // A new connection whose stream starts at `stream_offset`.
    void start_stream(FileDescriptor fd, std::uint64_t stream_offset) {
        fd_ = std::move(fd);
        send_offset_ = receive_offset_ = stream_start_ = stream_offset;
        sent_ = 0;
        first_batch_ = batch_count_ = 0;
        unsent_ = 0;
        partial_ = 0;
        watching_output_ = false;
        worker_.watch(fd_.get(), this, false, false);
    }

    // Sends `count` more messages (the caller checked that they fit in the pipeline) with one
    // send(); what the kernel does not take now is sent when the socket polls writable.
    void send_messages(std::size_t count, Clock::time_point now) {
        if (in_flight_ == 0)
            last_progress_ = now;
        batches_[wrap(first_batch_ + batch_count_)] = Batch{now, count};
        ++batch_count_;
        sent_ += count;
        in_flight_ += count;
        unsent_ += count * size_;
        send_unsent();
    }

    bool sending_blocked() const { return unsent_ > 0; }

    // Closes the connection of a finished cycle; the load goes on.
    void close_connection() { fd_.reset(); }

    void fail(const Failure& failure) {
        if (ended_)
            return;
        run_.record_failure(failure);
        close();
    }

    Worker& worker_;
    BenchRun& run_;
    const std::size_t size_;
    const std::size_t depth_;
    std::size_t in_flight_ = 0;
    bool ended_ = false;

private:
    // False when the load failed.
    bool send_unsent() {
        while (unsent_ > 0) {
            // A message socket takes a whole message or nothing (EAGAIN).
            const ssize_t count = ::send(fd_.get(), run_.pattern.at(send_offset_),
                                         messages_ ? size_ : unsent_, MSG_NOSIGNAL);
            if (count < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN)
                    break;
                fail_on(errno, "cannot send to the daemon");
                return false;
            }
            send_offset_ += static_cast<std::uint64_t>(count);
            unsent_ -= static_cast<std::size_t>(count);
        }
        // Output is watched only while the kernel holds back part of a batch.
        if ((unsent_ > 0) != watching_output_) {
            watching_output_ = unsent_ > 0;
            worker_.watch(fd_.get(), this, watching_output_, true);
        }
        return true;
    }

    // One recv() per readiness event, as the epoll loop of a C program does: the loop is
    // level-triggered, so what is left is reported again.
    void receive() {
        // MSG_TRUNC: the length of a message longer than the buffer is its true length.
        const ssize_t count = ::recv(fd_.get(), worker_.read_buffer(), worker_.read_buffer_size(),
                                     messages_ ? MSG_TRUNC : 0);
        if (count < 0) {
            if (errno == EINTR || errno == EAGAIN)
                return;
            fail_on(errno, "cannot receive from the daemon");
            return;
        }
        if (count == 0 && !datagrams_) {
            fail_on(0, "");
            return;
        }
        const auto now = Clock::now();
        if (messages_ ? check_message(static_cast<std::size_t>(count), now)
                      : check_echo(static_cast<std::size_t>(count), now))
            echoed(now);
    }

    // One echoed message of `count` bytes: it must be exactly the oldest message in flight. A
    // datagram reply may instead be a later one in flight: the daemon dropped the replies before
    // it, which are counted lost. False when the load failed.
    bool check_message(std::size_t count, Clock::time_point now) {
        last_progress_ = now;
        if (in_flight_ == 0) {
            fail(Failure(ExitCode::data_error, "the daemon sent a message it was not sent"));
            return false;
        }
        if (count != size_) {
            fail(Failure(ExitCode::data_error, "the daemon echoed a message of " +
                                                   std::to_string(count) + " bytes for one of " +
                                                   std::to_string(size_) + " bytes"));
            return false;
        }
        const std::size_t candidates = datagrams_ ? in_flight_ : 1;
        for (std::size_t skipped = 0; skipped < candidates; ++skipped) {
            const std::uint64_t offset = receive_offset_ + skipped * size_;
            if (run_.pattern.difference(offset, worker_.read_buffer(), count))
                continue;
            if (skipped > 0)
                retire(skipped, now, true);
            receive_offset_ = offset + size_;
            retire(1, now, false);
            return true;
        }
        fail(Failure(ExitCode::data_error,
                     "the echo differed from message " +
                         std::to_string((receive_offset_ - stream_start_) / size_) + " sent on a " +
                         std::string(to_string(run_.options.type)) + " socket" +
                         (datagrams_ ? " and from every later one in flight" : "")));
        return false;
    }

    // False when the load failed.
    bool check_echo(std::size_t count, Clock::time_point now) {
        last_progress_ = now;
        if (receive_offset_ - stream_start_ + count > sent_ * size_) {
            fail(Failure(ExitCode::data_error, "the daemon sent more bytes than it was sent"));
            return false;
        }
        if (const auto index =
                run_.pattern.difference(receive_offset_, worker_.read_buffer(), count)) {
            fail(Failure(ExitCode::data_error,
                         "the echo differed from what was sent at byte offset " +
                             std::to_string(receive_offset_ - stream_start_ + *index) +
                             " of a connection"));
            return false;
        }
        receive_offset_ += count;
        partial_ += count;
        const std::size_t completed = partial_ / size_;
        partial_ -= completed * size_;
        retire(completed, now, false);
        return true;
    }

    // The `count` oldest messages in flight are done: echoed, or (`lost`) never to be. Counted
    // batch by batch: the messages of a batch share their send time, so each batch is one
    // histogram entry, however deep the pipeline.
    void retire(std::size_t count, Clock::time_point now, bool lost) {
        in_flight_ -= count;
        while (count > 0) {
            Batch& oldest = batches_[first_batch_];
            const std::size_t done = std::min(count, oldest.messages);
            if (lost)
                worker_.replies_lost(oldest.sent, done);
            else
                worker_.messages_done(oldest.sent, now, done, new_connection_per_message_);
            count -= done;
            oldest.messages -= done;
            if (oldest.messages == 0) {
                first_batch_ = wrap(first_batch_ + 1);
                --batch_count_;
            }
        }
    }

    std::size_t wrap(std::size_t index) const { return index >= depth_ ? index - depth_ : index; }

    // `error` 0: the daemon closed the connection.
    void fail_on(int error, const std::string& what) {
        if (error == 0 || error == ECONNRESET || error == EPIPE)
            fail(Failure(ExitCode::data_error,
                         "the daemon closed a connection with " + std::to_string(in_flight_) +
                             " message(s) in flight" +
                             (error == 0 ? "" : " (" + errno_text(error) + ")")));
        else
            fail(Failure(ExitCode::os_error, what + ": " + errno_text(error)));
    }

    const bool messages_;  // a seqpacket or datagram socket: whole messages each way
    const bool datagrams_; // replies may be dropped
    const bool new_connection_per_message_;
    FileDescriptor fd_;
    // The messages in flight, oldest first, as the batches they were sent in: a ring of `depth`
    // entries (a batch holds at least one message).
    struct Batch {
        Clock::time_point sent;
        std::size_t messages;
    };
    std::vector<Batch> batches_;
    std::size_t first_batch_ = 0;
    std::size_t batch_count_ = 0;
    std::uint64_t send_offset_ = 0;    // stream offset of the next byte to send
    std::uint64_t receive_offset_ = 0; // stream offset of the next byte expected back
    std::uint64_t stream_start_ = 0;
    std::uint64_t sent_ = 0;  // messages sent (wholly or partly) on this connection
    std::size_t unsent_ = 0;  // bytes of sent messages the kernel has not taken yet
    std::size_t partial_ = 0; // bytes of the oldest message in flight already back
    Clock::time_point last_progress_{};
    bool watching_output_ = false;
};

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
    if (fd.valid()) {
        ++figures_.connections_opened;
        loads_.push_back(
            std::make_unique<PipelinedConnection>(*this, std::move(fd), stream_offset, quota));
    } else {
        loads_.push_back(std::make_unique<ChurnSlot>(*this, stream_offset, quota));
    }
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
