#include "fake_server.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace uds_echo::test {

FakeServer::FakeServer(const std::string& path, Behaviour behaviour)
    : behaviour_(std::move(behaviour))
    , listener_(listen_unix(path, 64)) {
    acceptor_ = std::thread([this] { accept_loop(); });
}

FakeServer::~FakeServer() {
    stopping_ = true;
    acceptor_.join();
    for (auto& session : sessions_)
        session.join();
}

void FakeServer::accept_loop() {
    while (!stopping_) {
        pollfd entry{listener_.get(), POLLIN, 0};
        if (::poll(&entry, 1, 20) <= 0)
            continue;
        const int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        sessions_.emplace_back([this, fd] {
            FileDescriptor connection(fd);
            behaviour_(connection.get(), stopping_);
        });
    }
}

std::string receive_some(int fd, const Stopping& stopping) {
    char buffer[64 * 1024];
    while (!stopping) {
        pollfd entry{fd, POLLIN, 0};
        if (::poll(&entry, 1, 20) <= 0)
            continue;
        const ssize_t count = ::recv(fd, buffer, sizeof buffer, 0);
        if (count <= 0)
            return {};
        return std::string(buffer, static_cast<std::size_t>(count));
    }
    return {};
}

std::string receive_exactly(int fd, std::size_t size, const Stopping& stopping) {
    std::string data;
    while (data.size() < size) {
        const std::string part = receive_some(fd, stopping);
        if (part.empty())
            break;
        data += part;
    }
    return data;
}

void send_quietly(int fd, std::string_view data) {
    while (!data.empty()) {
        const ssize_t count = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
        if (count <= 0)
            return;
        data.remove_prefix(static_cast<std::size_t>(count));
    }
}

void echo_changing_byte(int fd, std::size_t offset, const Stopping& stopping) {
    std::size_t position = 0;
    for (;;) {
        std::string data = receive_some(fd, stopping);
        if (data.empty())
            return;
        if (offset >= position && offset < position + data.size())
            data[offset - position] ^= 0x20;
        position += data.size();
        send_quietly(fd, data);
    }
}

FakeServer::Behaviour echo_corrupting_at(std::size_t offset) {
    return [offset](int fd, const Stopping& stopping) { echo_changing_byte(fd, offset, stopping); };
}

void hold_until_peer_closes(int fd, const Stopping& stopping) {
    while (!receive_some(fd, stopping).empty()) {
    }
}

} // namespace uds_echo::test
