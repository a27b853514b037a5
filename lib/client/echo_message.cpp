#include "client/echo.hpp"

#include "client/round_trip.hpp"
#include "client/run_coroutine.hpp"

#include <boost/asio/io_context.hpp>

#include <istream>
#include <ostream>

namespace uds_echo::client {

namespace {

namespace asio = boost::asio;

// A socket on `context` connected to the daemon, and the path it reached.
Socket connect_socket(asio::io_context& context, const ClientOptions& options,
                      std::string* path = nullptr) {
    auto connection = run_coroutine(context, connect_to_daemon(options));
    if (path != nullptr)
        *path = connection.path;
    return Socket(context, asio::local::stream_protocol(), connection.fd.release());
}

} // namespace

// A differing or truncated echo is thrown as Failure(data_error) rather than returned, so that
// its message (the byte offset, the byte counts) reaches the user; a normal return is always ok.
ExitCode echo_message(const ClientOptions& options, const std::string& message, std::ostream& out) {
    asio::io_context context(1);
    Socket socket = connect_socket(context, options);
    std::string echo(message.size(), '\0');
    const auto result = run_coroutine(context, round_trip(socket, message, echo, options.timeout));
    if (!options.quiet && result.received == echo.size())
        out.write(echo.data(), static_cast<std::streamsize>(echo.size())).flush();
    if (result.failure)
        throw *result.failure;
    return ExitCode::ok;
}

ExitCode echo_lines(const ClientOptions& options, std::istream& in, std::ostream& out,
                    std::ostream* greeting) {
    asio::io_context context(1);
    std::string path;
    Socket socket = connect_socket(context, options, &path);
    if (greeting != nullptr)
        *greeting << "connected to " << path << "; type lines to echo them, Ctrl-D to leave"
                  << std::endl;
    std::string line;
    std::string echo;
    while (std::getline(in, line)) {
        line += '\n';
        echo.resize(line.size());
        const auto result = run_coroutine(context, round_trip(socket, line, echo, options.timeout));
        if (result.failure)
            throw *result.failure;
        out << echo << std::flush;
    }
    return ExitCode::ok;
}

} // namespace uds_echo::client
