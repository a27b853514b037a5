// Reading an INI config file into settings, each with its file and line, for both programs: the
// daemon reads every option from it, the client only the socket paths.
#pragma once

#include <boost/program_options/options_description.hpp>

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace uds_echo::config_detail {

// Where a value came from: the command line, or a line of a config file.
struct Origin {
    std::string file; // empty for the command line
    int line = 0;
};

// One `--name value` or `name = value`, as written.
struct Setting {
    std::string name;
    std::string value; // empty for a flag
    Origin origin;
};

using Settings = std::vector<Setting>;

// `file:line`.
std::string place(const Origin& origin);

// The one shape of every error about a value: `--name: problem` from the command line (exit 64),
// `file:line: name: problem` from the config file (78).
[[noreturn]] void reject(const std::string& name, const Origin& origin, const std::string& problem);
[[noreturn]] void reject(const Setting& setting, const std::string& problem);

// The last setting called `name`, or nullptr.
const Setting* last(const Settings& settings, std::string_view name);

// The whole file, or nullopt when it does not exist and `must_exist` is false. Throws
// Failure(ExitCode::config) naming the file when it cannot be read.
std::optional<std::string> read_config_text(const std::string& path, bool must_exist);

// Called with a name that the options description does not know; it throws to refuse the file.
// Without one, such names are skipped.
using UnknownNameHandler = std::function<void(const std::string& name, const Origin& origin)>;

// The `name = value` lines of `text`, read from `path`, in order and each with its line number.
// Syntax errors are Failure(ExitCode::config) naming the file and line. Neither the values nor
// their repetition are checked here.
Settings parse_config_text(const std::string& path, const std::string& text,
                           const boost::program_options::options_description& options,
                           const UnknownNameHandler& on_unknown_name = {});

// Checks a socket path from either source; an empty one in the file means "unset".
void validate_socket_setting(const Setting& setting);

} // namespace uds_echo::config_detail

namespace uds_echo {

// The socket paths of a config file, for the client, which ignores every other option there.
struct ConfigFileSockets {
    std::optional<std::string> stream;    // `socket =`
    std::optional<std::string> seqpacket; // `seqpacket-socket =`
    std::optional<std::string> datagram;  // `datagram-socket =`
};

// Empty when the file does not exist; a line that is present but empty leaves its path unset.
// Throws Failure(ExitCode::config) naming the file and line when it exists but cannot be read or
// parsed, or holds a path that is not a valid socket path.
ConfigFileSockets read_sockets_from_config_file(const std::string& path);

} // namespace uds_echo
