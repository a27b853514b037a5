#include "streaming_clients.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>

namespace uds_echo::test {

StreamingClients::StreamingClients(const std::string& socket, std::size_t count) {
    for (std::size_t i = 0; i < count; ++i) {
        Client client;
        client.fd = connect_unix(socket);
        ::fcntl(client.fd.get(), F_SETFL, O_NONBLOCK);
        client.pattern = random_bytes(pattern_size + i, i);
        clients_.push_back(std::move(client));
    }
    pump_ = std::thread([this] { pump(); });
}

StreamingClients::~StreamingClients() {
    stop();
}

std::vector<std::uint64_t> StreamingClients::received() {
    std::lock_guard lock(mutex_);
    std::vector<std::uint64_t> counts;
    for (const auto& client : clients_)
        counts.push_back(client.received);
    return counts;
}

std::uint64_t StreamingClients::least_received() {
    const auto counts = received();
    return counts.empty() ? 0 : *std::min_element(counts.begin(), counts.end());
}

bool StreamingClients::each_received_more_than(const std::vector<std::uint64_t>& marks) {
    const auto counts = received();
    for (std::size_t i = 0; i < counts.size() && i < marks.size(); ++i)
        if (counts[i] <= marks[i])
            return false;
    return true;
}

void StreamingClients::close(std::size_t index) {
    std::lock_guard lock(mutex_);
    clients_.at(index).closed = true;
    clients_.at(index).fd.reset();
}

std::vector<std::string> StreamingClients::finish() {
    stop();
    std::vector<std::string> errors;
    for (std::size_t i = 0; i < clients_.size(); ++i) {
        auto& client = clients_[i];
        if (client.closed)
            continue;
        if (client.error.empty()) {
            ::fcntl(client.fd.get(), F_SETFL, 0);
            set_io_timeout(client.fd.get(), 20s);
            try {
                shutdown_write(client.fd.get());
                check(client, read_until_eof(client.fd.get()));
            } catch (const std::exception& error) {
                client.error = error.what();
            }
            if (client.error.empty() && client.received != client.sent)
                client.error = "sent " + std::to_string(client.sent) + " bytes, got back " +
                               std::to_string(client.received);
        }
        if (!client.error.empty())
            errors.push_back("client " + std::to_string(i) + ": " + client.error);
    }
    return errors;
}

std::chrono::milliseconds StreamingClients::longest_pause() {
    std::lock_guard lock(mutex_);
    return longest_pause_;
}

void StreamingClients::stop() {
    stopping_ = true;
    if (pump_.joinable())
        pump_.join();
}

void StreamingClients::check(Client& client, std::string_view data) {
    for (std::size_t i = 0; i < data.size() && client.error.empty(); ++i) {
        if (client.received + i >= client.sent)
            client.error = "more bytes back than sent";
        else if (data[i] != client.pattern[(client.received + i) % client.pattern.size()])
            client.error = "byte " + std::to_string(client.received + i) + " differs";
    }
    client.received += data.size();
}

void StreamingClients::pump() {
    std::vector<pollfd> polled(clients_.size());
    auto last_echo = Clock::now();
    char buffer[16384];
    while (!stopping_) {
        {
            std::lock_guard lock(mutex_);
            for (std::size_t i = 0; i < clients_.size(); ++i) {
                const auto& client = clients_[i];
                const bool may_send = client.pumped() && client.sent - client.received < window;
                polled[i] = {client.pumped() ? client.fd.get() : -1,
                             static_cast<short>(POLLIN | (may_send ? POLLOUT : 0)), 0};
            }
        }
        if (::poll(polled.data(), polled.size(), 50) <= 0)
            continue;
        std::lock_guard lock(mutex_);
        bool echoed = false;
        for (std::size_t i = 0; i < clients_.size(); ++i) {
            auto& client = clients_[i];
            // Closed by the test while this thread polled: its number may belong to another
            // descriptor now.
            if (!client.pumped())
                continue;
            if (polled[i].revents & POLLOUT) {
                const auto offset = client.sent % client.pattern.size();
                const auto size =
                    std::min<std::uint64_t>({sizeof buffer, client.pattern.size() - offset,
                                             window - (client.sent - client.received)});
                const auto sent = ::send(client.fd.get(), client.pattern.data() + offset, size,
                                         MSG_NOSIGNAL | MSG_DONTWAIT);
                if (sent > 0)
                    client.sent += static_cast<std::uint64_t>(sent);
                else if (sent < 0 && errno != EAGAIN)
                    client.error = std::string("send: ") + std::strerror(errno);
            }
            if (polled[i].revents & (POLLIN | POLLHUP | POLLERR)) {
                const auto got = ::recv(client.fd.get(), buffer, sizeof buffer, MSG_DONTWAIT);
                if (got == 0)
                    client.error = "end of file while streaming";
                else if (got < 0 && errno != EAGAIN)
                    client.error = std::string("recv: ") + std::strerror(errno);
                else if (got > 0) {
                    check(client, std::string_view(buffer, static_cast<std::size_t>(got)));
                    echoed = true;
                }
            }
        }
        // A pause is a time in which no client got anything back (all wait for a restart).
        const auto now = Clock::now();
        if (echoed) {
            longest_pause_ =
                std::max(longest_pause_,
                         std::chrono::duration_cast<std::chrono::milliseconds>(now - last_echo));
            last_echo = now;
        }
    }
}

} // namespace uds_echo::test
