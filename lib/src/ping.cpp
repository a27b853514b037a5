#include "uds_echo/ping.hpp"

#include <poll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <istream>
#include <memory>
#include <ostream>

namespace uds_echo {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::string seconds_text(milliseconds duration) {
    char text[32];
    std::snprintf(text, sizeof text, "%g s", static_cast<double>(duration.count()) / 1000.0);
    return text;
}

int poll_timeout(Clock::time_point deadline) {
    const auto left = std::chrono::ceil<milliseconds>(deadline - Clock::now()).count();
    return static_cast<int>(std::clamp<long long>(left, 0, 1'000'000));
}

bool is_disconnect_errno(int error) {
    return error == ECONNRESET || error == EPIPE;
}

Failure closed_early(std::size_t received, std::size_t expected) {
    return Failure(ExitCode::data_error, "the daemon closed the connection after " +
                                             std::to_string(received) + " of " +
                                             std::to_string(expected) + " bytes");
}

} // namespace

std::string peer_socket_path(int fd) {
    sockaddr_un address{};
    socklen_t length = sizeof address;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0 ||
        length <= offsetof(sockaddr_un, sun_path))
        return {};
    const std::size_t path_length = length - offsetof(sockaddr_un, sun_path);
    if (address.sun_path[0] == '\0')
        return "@" + std::string(address.sun_path + 1, path_length - 1);
    return std::string(address.sun_path, ::strnlen(address.sun_path, path_length));
}

EchoConnection::EchoConnection(const ClientOptions& options)
    : fd_(connect_to_daemon(options))
    , timeout_(options.timeout)
    , path_(peer_socket_path(fd_)) {
    if (path_.empty())
        path_ = options.socket_candidates.front();
}

EchoConnection::~EchoConnection() {
    ::close(fd_);
}

EchoConnection::Outcome EchoConnection::round_trip(std::string_view data, std::string& echo,
                                                   int interrupt_fd) {
    echo.resize(data.size());
    std::size_t sent = 0;
    std::size_t received = 0;
    // The daemon must make progress (take or return bytes) within the timeout.
    auto deadline = Clock::now() + timeout_;
    while (received < data.size()) {
        pollfd entries[2] = {
            {fd_, static_cast<short>(POLLIN | (sent < data.size() ? POLLOUT : 0)), 0},
            {interrupt_fd, POLLIN, 0}};
        const int ready = ::poll(entries, interrupt_fd >= 0 ? 2 : 1, poll_timeout(deadline));
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready < 0)
            throw Failure(ExitCode::os_error, std::string("poll: ") + std::strerror(errno));
        if (interrupt_fd >= 0 && (entries[1].revents & POLLIN) != 0)
            return Outcome::interrupted;
        if (ready == 0)
            throw Failure(ExitCode::temp_failure, "no echo within " + seconds_text(timeout_) +
                                                      " (" + std::to_string(received) + " of " +
                                                      std::to_string(data.size()) +
                                                      " bytes came back)");
        if ((entries[0].revents & POLLOUT) != 0 && sent < data.size()) {
            const ssize_t count =
                ::send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (count > 0) {
                sent += static_cast<std::size_t>(count);
                deadline = Clock::now() + timeout_;
            } else if (count < 0 && is_disconnect_errno(errno)) {
                sent = data.size(); // the read side reports the close, with the count
            } else if (count < 0 && errno != EAGAIN && errno != EINTR) {
                throw Failure(ExitCode::os_error,
                              std::string("cannot send to the daemon: ") + std::strerror(errno));
            }
        }
        if ((entries[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
            const ssize_t count =
                ::recv(fd_, echo.data() + received, data.size() - received, MSG_DONTWAIT);
            if (count == 0 || (count < 0 && is_disconnect_errno(errno)))
                throw closed_early(received, data.size());
            if (count < 0 && errno != EAGAIN && errno != EINTR)
                throw Failure(ExitCode::os_error, std::string("cannot receive from the daemon: ") +
                                                      std::strerror(errno));
            if (count > 0) {
                received += static_cast<std::size_t>(count);
                deadline = Clock::now() + timeout_;
            }
        }
    }
    const auto difference = std::mismatch(echo.begin(), echo.end(), data.begin());
    if (difference.first != echo.end())
        throw Failure(ExitCode::data_error, "the echo differed at byte offset " +
                                                std::to_string(difference.first - echo.begin()));
    return Outcome::echoed;
}

namespace {

// SIGINT and SIGTERM, blocked and readable through a descriptor, so that every wait of the ping
// (for the echo, for the next interval) also ends on Ctrl-C.
class StopSignals {
public:
    StopSignals() {
        sigemptyset(&set_);
        sigaddset(&set_, SIGINT);
        sigaddset(&set_, SIGTERM);
        ::sigprocmask(SIG_BLOCK, &set_, &previous_);
        fd_ = ::signalfd(-1, &set_, SFD_CLOEXEC | SFD_NONBLOCK);
        if (fd_ < 0)
            throw Failure(ExitCode::os_error, std::string("signalfd: ") + std::strerror(errno));
    }
    ~StopSignals() {
        // A signal that ended the ping is still pending: take it, or unblocking delivers it.
        const timespec zero{0, 0};
        while (::sigtimedwait(&set_, nullptr, &zero) > 0) {
        }
        ::close(fd_);
        ::sigprocmask(SIG_SETMASK, &previous_, nullptr);
    }
    StopSignals(const StopSignals&) = delete;
    StopSignals& operator=(const StopSignals&) = delete;

    int fd() const { return fd_; }

    // Waits until `until`; true when a stop signal came first.
    bool wait_until(Clock::time_point until) const {
        for (;;) {
            pollfd entry{fd_, POLLIN, 0};
            const int ready = ::poll(&entry, 1, poll_timeout(until));
            if (ready > 0)
                return true;
            if (ready == 0 || errno != EINTR)
                return false;
        }
    }

private:
    sigset_t set_{};
    sigset_t previous_{};
    int fd_ = -1;
};

// Round-trip times in milliseconds, for the summary.
class RoundTripStats {
public:
    void add(double ms) {
        ++count_;
        sum_ += ms;
        sum_of_squares_ += ms * ms;
        min_ = count_ == 1 ? ms : std::min(min_, ms);
        max_ = std::max(max_, ms);
    }
    std::uint64_t count() const { return count_; }
    double min() const { return min_; }
    double max() const { return max_; }
    double mean() const { return count_ ? sum_ / static_cast<double>(count_) : 0; }
    // The standard deviation, as ping(8) calls mdev.
    double deviation() const {
        if (count_ == 0)
            return 0;
        const double mean_value = mean();
        return std::sqrt(
            std::max(0.0, sum_of_squares_ / static_cast<double>(count_) - mean_value * mean_value));
    }

private:
    std::uint64_t count_ = 0;
    double sum_ = 0;
    double sum_of_squares_ = 0;
    double min_ = 0;
    double max_ = 0;
};

// The payload of ping number `sequence`: its number, then filler, exactly `size` bytes.
void fill_payload(std::string& payload, std::size_t size, std::uint64_t sequence) {
    payload.assign(size, '\0');
    const std::string head = "uds-echo ping " + std::to_string(sequence) + "\n";
    for (std::size_t i = 0; i < size; ++i)
        payload[i] = i < head.size() ? head[i] : static_cast<char>('a' + (i + sequence) % 26);
}

void print_summary(std::ostream& out, const std::string& path, std::uint64_t sent,
                   const RoundTripStats& stats, Clock::duration elapsed) {
    const double loss =
        sent == 0 ? 0.0
                  : 100.0 * static_cast<double>(sent - stats.count()) / static_cast<double>(sent);
    char line[256];
    out << "\n--- " << path << " ping statistics ---\n";
    std::snprintf(
        line, sizeof line, "%llu sent, %llu received, %g%% loss, time %lld ms\n",
        static_cast<unsigned long long>(sent), static_cast<unsigned long long>(stats.count()), loss,
        static_cast<long long>(std::chrono::duration_cast<milliseconds>(elapsed).count()));
    out << line;
    if (stats.count() > 0) {
        std::snprintf(line, sizeof line, "rtt min/avg/max/mdev = %.3f/%.3f/%.3f/%.3f ms\n",
                      stats.min(), stats.mean(), stats.max(), stats.deviation());
        out << line;
    }
    out.flush();
}

} // namespace

ExitCode run_ping(const PingOptions& options, std::ostream& out) {
    StopSignals signals;
    auto connection = std::make_unique<EchoConnection>(options.client);
    const std::string path = connection->path();
    // Reconnections go to the socket the first connection found.
    ClientOptions same_socket = options.client;
    same_socket.socket_candidates = {path};

    out << "PING " << path << ": " << options.size << " bytes\n" << std::flush;
    RoundTripStats stats;
    std::optional<ExitCode> first_failure;
    std::uint64_t sent = 0;
    std::string payload;
    std::string echo;
    const auto start = Clock::now();
    auto next_send = start;
    for (std::uint64_t sequence = 1; !options.count || sequence <= *options.count; ++sequence) {
        try {
            if (!connection)
                connection = std::make_unique<EchoConnection>(same_socket);
            fill_payload(payload, options.size, sequence);
            const auto sent_at = Clock::now();
            if (connection->round_trip(payload, echo, signals.fd()) ==
                EchoConnection::Outcome::interrupted) {
                break; // a ping cut short by Ctrl-C is not counted, as in ping(8)
            }
            const double ms =
                std::chrono::duration<double, std::milli>(Clock::now() - sent_at).count();
            ++sent;
            stats.add(ms);
            if (!options.client.quiet) {
                char line[64];
                std::snprintf(line, sizeof line, ": seq=%llu time=%.3f ms\n",
                              static_cast<unsigned long long>(sequence), ms);
                out << options.size << " bytes from " << path << line << std::flush;
            }
        } catch (const Failure& failure) {
            ++sent;
            if (!first_failure)
                first_failure = failure.code();
            connection.reset(); // its state is unknown now: the next ping starts afresh
            if (!options.client.quiet)
                out << "seq=" << sequence << ": " << failure.what() << '\n' << std::flush;
        }
        if (options.count && sequence == *options.count)
            break;
        next_send += std::chrono::duration_cast<Clock::duration>(options.interval);
        next_send = std::max(next_send, Clock::now());
        if (signals.wait_until(next_send))
            break;
    }
    print_summary(out, path, sent, stats, Clock::now() - start);
    if (stats.count() == sent)
        return ExitCode::ok;
    return first_failure.value_or(ExitCode::ok);
}

ExitCode echo_lines(const ClientOptions& options, std::istream& in, std::ostream& out) {
    EchoConnection connection(options);
    std::string line;
    std::string echo;
    while (std::getline(in, line)) {
        line += '\n';
        connection.round_trip(line, echo);
        out << echo << std::flush;
    }
    return ExitCode::ok;
}

} // namespace uds_echo
