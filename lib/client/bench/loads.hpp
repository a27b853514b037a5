// The loads of `uds-echo bench`: what one connection (or one churn slot) does in a worker's epoll
// loop. bench_load.cpp has the worker that drives them.
#pragma once

#include "client/bench/bench_load.hpp"
#include "client/connect.hpp"
#include "common/file_descriptor.hpp"
#include "common/text.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <string>

namespace uds_echo::client {

// Largest send of several pipelined messages at once.
inline constexpr std::size_t max_batch_bytes = 256 * 1024;

inline std::string errno_text(int error) {
    return std::strerror(error);
}

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
    virtual void start(BenchClock::time_point now) = 0;
    // The last echo of the connection came back (churn), or more may be sent (pipelined).
    virtual void echoed(BenchClock::time_point now) = 0;
    // Every tick and when a wake_by() time has come: a load waiting for something else than its
    // socket (a full listen backlog) goes on.
    virtual void tick(BenchClock::time_point) {}

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
    void check_timeout(BenchClock::time_point now) {
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
    void send_messages(std::size_t count, BenchClock::time_point now) {
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
        const auto now = BenchClock::now();
        if (messages_ ? check_message(static_cast<std::size_t>(count), now)
                      : check_echo(static_cast<std::size_t>(count), now))
            echoed(now);
    }

    // One echoed message of `count` bytes: it must be exactly the oldest message in flight. A
    // datagram reply may instead be a later one in flight: the daemon dropped the replies before
    // it, which are counted lost. False when the load failed.
    bool check_message(std::size_t count, BenchClock::time_point now) {
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
    bool check_echo(std::size_t count, BenchClock::time_point now) {
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
    void retire(std::size_t count, BenchClock::time_point now, bool lost) {
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
        BenchClock::time_point sent;
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
    BenchClock::time_point last_progress_{};
    bool watching_output_ = false;
};

// A pipelined connection over `fd`, or a churn slot (a new connection per message) when `fd` is
// empty, carrying the pattern's stream from `stream_offset`, for `quota` messages if given.
std::unique_ptr<Load> make_load(Worker& worker, FileDescriptor fd, std::uint64_t stream_offset,
                                std::optional<std::uint64_t> quota);

} // namespace uds_echo::client
