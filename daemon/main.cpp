// uds-echod: parse and validate everything, set up the listening socket, serve.
#include "common/exit_codes.hpp"
#include "common/paths.hpp"
#include "common/program.hpp"
#include "daemon/config.hpp"
#include "daemon/listener.hpp"
#include "daemon/logging.hpp"
#include "daemon/server.hpp"
#include "daemon/systemd.hpp"

#include <csignal>
#include <iostream>
#include <string>
#include <vector>

namespace {

using namespace uds_echo;
using namespace uds_echo::daemon;

// Creates the socket of `type` at `path` as the configuration says, and logs it.
Listener create_listener_of(const DaemonConfig& config, SocketType type, const std::string& path) {
    auto listener =
        create_listener(ListenerOptions{path, type, config.socket_mode, config.socket_group,
                                        is_private_tmp_path(path, current_user())});
    UDS_LOG(info) << (type == SocketType::stream ? "listening on " : "listening (") << path
                  << (type == SocketType::stream ? "" : ", " + std::string(to_string(type)) + ")");
    return listener;
}

// What the server serves of the sockets systemd passed.
ServerSocket activated_sockets(PassedDescriptors& passed) {
    ServerSocket sockets;
    sockets.socket_activated = true;
    sockets.resumed = std::move(passed.resumed);
    for (const auto& socket : passed.sockets) {
        // Accept=yes: the one connected socket, of either type, is `fd`.
        if (socket.type == SocketType::datagram)
            sockets.datagram_fd = socket.fd;
        else if (socket.type == SocketType::seqpacket && socket.listening)
            sockets.seqpacket_fd = socket.fd;
        else
            sockets.fd = socket.fd;
        sockets.connected = sockets.connected || !socket.listening;
    }
    return sockets;
}

int run(const std::vector<std::string>& args) {
    auto parsed = parse_daemon_config(args);
    if (auto* information = std::get_if<InformationRequest>(&parsed)) {
        std::cout << information->text;
        return to_int(ExitCode::ok);
    }
    auto config = std::get<DaemonConfig>(std::move(parsed));
    if (config.check_config) {
        std::cout << config.describe();
        return to_int(ExitCode::ok);
    }
    init_logging(config.log_level, config.log_format, "uds-echod");

    // Writes to a vanished client must fail with EPIPE instead of killing the daemon. Asio's
    // socket writes already pass MSG_NOSIGNAL; this covers every other descriptor too.
    std::signal(SIGPIPE, SIG_IGN);

    raise_descriptor_limit();
    // Sockets passed by systemd win over creating any; the files they may have belong to systemd.
    auto passed = take_passed_descriptors();
    if (!passed.sockets.empty())
        return to_int(Server(std::move(config), activated_sockets(passed), args).run());
    if (config.exit_on_idle.count() > 0)
        UDS_LOG(warning) << "exit-on-idle is only used when socket-activated; ignoring it";
    const auto stream = create_listener_of(config, SocketType::stream, config.socket_path);
    std::optional<Listener> datagram;
    if (!config.datagram_socket_path.empty())
        datagram.emplace(
            create_listener_of(config, SocketType::datagram, config.datagram_socket_path));
    std::optional<Listener> seqpacket;
    if (!config.seqpacket_socket_path.empty())
        seqpacket.emplace(
            create_listener_of(config, SocketType::seqpacket, config.seqpacket_socket_path));
    ServerSocket sockets;
    sockets.fd = stream.fd;
    sockets.seqpacket_fd = seqpacket ? seqpacket->fd : -1;
    sockets.datagram_fd = datagram ? datagram->fd : -1;
    sockets.resumed = std::move(passed.resumed);
    return to_int(Server(std::move(config), std::move(sockets), args).run());
}

} // namespace

int main(int argc, char* argv[]) {
    const std::vector<std::string> args(argv + 1, argv + argc);
    uds_echo::daemon::block_server_signals();
    return uds_echo::run_program("uds-echod", [&] { return run(args); });
}
