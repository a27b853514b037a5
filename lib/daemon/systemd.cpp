#include "daemon/systemd.hpp"

#include "common/exit_codes.hpp"
#include "daemon/logging.hpp"

#include <systemd/sd-daemon.h>

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace uds_echo::daemon {

namespace {

void close_all(const std::vector<int>& fds) {
    for (const int fd : fds)
        ::close(fd);
}

// What a passed descriptor is, or a one-line reason why it cannot be served.
std::optional<ActivatedSocket> classify(int fd, std::string& why) {
    int kernel_type = 0;
    socklen_t length = sizeof kernel_type;
    if (sd_is_socket(fd, AF_UNIX, 0, -1) <= 0 ||
        ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &kernel_type, &length) != 0) {
        why = "is not an AF_UNIX socket";
        return std::nullopt;
    }
    const auto type = socket_type_of_kernel(kernel_type);
    if (!type) {
        why = "is an AF_UNIX socket of a type uds-echod does not serve (" +
              std::to_string(kernel_type) + ")";
        return std::nullopt;
    }
    // A datagram socket is neither listening nor connected: it is served as it is.
    const bool listening =
        *type == SocketType::datagram || sd_is_socket_unix(fd, kernel_type, 1, nullptr, 0) > 0;
    return ActivatedSocket{fd, *type, listening};
}

} // namespace

std::optional<ActivatedSocket> PassedDescriptors::of_type(SocketType type) const {
    for (const auto& socket : sockets)
        if (socket.type == type)
            return socket;
    return std::nullopt;
}

PassedDescriptors take_passed_descriptors() {
    // unset_environment=1: the variables describe this process only (LISTEN_PID is checked by
    // libsystemd), and a child must not believe they are meant for it.
    char** raw_names = nullptr;
    const int count = sd_listen_fds_with_names(1, &raw_names);
    if (count < 0)
        throw Failure(ExitCode::config, std::string("invalid socket activation environment: ") +
                                            std::strerror(-count));
    // Without LISTEN_FDNAMES every name is "unknown".
    std::vector<std::string> names;
    for (int i = 0; i < count; ++i) {
        names.emplace_back(raw_names != nullptr && raw_names[i] != nullptr ? raw_names[i] : "");
        std::free(raw_names != nullptr ? raw_names[i] : nullptr);
    }
    std::free(raw_names);

    PassedDescriptors passed;
    PassedHandover handover;
    std::vector<int> others;
    for (int i = 0; i < count; ++i) {
        const int fd = SD_LISTEN_FDS_START + i;
        if (!handover.take(fd, names[static_cast<std::size_t>(i)]))
            others.push_back(fd);
    }
    passed.resumed = handover.finish();
    const auto refuse = [&](const std::string& problem) {
        close_all(others);
        throw Failure(ExitCode::config, problem);
    };
    for (const int fd : others) {
        std::string why;
        const auto socket = classify(fd, why);
        if (!socket)
            refuse("the descriptor passed by socket activation (fd " + std::to_string(fd) + ") " +
                   why + "; check the Listen*= lines of the .socket unit");
        if (passed.of_type(socket->type))
            refuse("socket activation passed more than one " +
                   std::string(to_string(socket->type)) +
                   " socket; uds-echod serves one of each type");
        passed.sockets.push_back(*socket);
    }
    const bool connected =
        std::any_of(passed.sockets.begin(), passed.sockets.end(),
                    [](const ActivatedSocket& socket) { return !socket.listening; });
    if (connected && passed.sockets.size() > 1)
        refuse("socket activation passed a connected socket (Accept=yes) together with others; "
               "an Accept=yes service serves its one connection alone");
    return passed;
}

ServiceNotifier::ServiceNotifier() {
    const char* socket = std::getenv("NOTIFY_SOCKET");
    enabled_ = socket != nullptr && *socket != '\0';
    std::uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0)
        watchdog_interval_ = std::chrono::microseconds(usec / 2);
}

void ServiceNotifier::ready() const {
    send("READY=1");
}

void ServiceNotifier::reloading() const {
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    const auto usec = static_cast<std::uint64_t>(now.tv_sec) * 1000000 +
                      static_cast<std::uint64_t>(now.tv_nsec) / 1000;
    send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec));
}

void ServiceNotifier::stopping() const {
    send("STOPPING=1");
}

void ServiceNotifier::watchdog() const {
    send("WATCHDOG=1");
}

void ServiceNotifier::status(const std::string& text) const {
    send("STATUS=" + text);
}

void ServiceNotifier::send(const std::string& message) const {
    if (!enabled_)
        return;
    const int result = sd_notify(0, message.c_str());
    if (result < 0)
        UDS_LOG(debug) << "sd_notify failed: " << std::strerror(-result);
}

} // namespace uds_echo::daemon
