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

int run(const std::vector<std::string>& args) {
    using namespace uds_echo;
    using namespace uds_echo::daemon;
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
    // A socket passed by systemd wins over creating one; the file it may have belongs to systemd.
    auto passed = take_passed_descriptors();
    if (const auto activated = passed.socket) {
        Server server(
            std::move(config),
            ServerSocket{activated->fd, !activated->listening, true, std::move(passed.resumed)},
            args);
        return to_int(server.run());
    }
    if (config.exit_on_idle.count() > 0)
        UDS_LOG(warning) << "exit-on-idle is only used when socket-activated; ignoring it";
    const auto listener =
        create_listener(ListenerOptions{config.socket_path, config.socket_mode, config.socket_group,
                                        is_private_tmp_path(config.socket_path, current_user())});
    UDS_LOG(info) << "listening on " << config.socket_path;
    Server server(std::move(config),
                  ServerSocket{listener.fd, false, false, std::move(passed.resumed)}, args);
    return to_int(server.run());
}

} // namespace

int main(int argc, char* argv[]) {
    const std::vector<std::string> args(argv + 1, argv + argc);
    uds_echo::daemon::block_server_signals();
    return uds_echo::run_program("uds-echod", [&] { return run(args); });
}
