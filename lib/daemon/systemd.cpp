#include "daemon/systemd.hpp"

#include "common/exit_codes.hpp"
#include "daemon/logging.hpp"

#include <systemd/sd-daemon.h>

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <ctime>

namespace uds_echo::daemon {

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
    std::vector<int> sockets;
    for (int i = 0; i < count; ++i) {
        const int fd = SD_LISTEN_FDS_START + i;
        if (!handover.take(fd, names[static_cast<std::size_t>(i)]))
            sockets.push_back(fd);
    }
    passed.resumed = handover.finish();
    if (sockets.size() > 1) {
        for (const int fd : sockets)
            ::close(fd);
        throw Failure(ExitCode::config, "socket activation passed " +
                                            std::to_string(sockets.size()) +
                                            " sockets; uds-echod serves exactly one");
    }
    if (sockets.empty())
        return passed;
    const int fd = sockets.front();
    if (sd_is_socket_unix(fd, SOCK_STREAM, -1, nullptr, 0) <= 0)
        throw Failure(ExitCode::config,
                      "the socket passed by socket activation (fd " + std::to_string(fd) +
                          ") is not an AF_UNIX stream socket; check ListenStream= in the .socket "
                          "unit");
    passed.socket = ActivatedSocket{fd, sd_is_socket_unix(fd, SOCK_STREAM, 1, nullptr, 0) > 0};
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
