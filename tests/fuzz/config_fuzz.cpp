// libFuzzer target: the daemon's command line and config file parsing (parse_daemon_config) and
// the client's reading of `socket =` from a config file.
//
// Input layout: the config file's content, then a NUL-NUL separator, then the command-line
// arguments separated by single NUL bytes. --config always names the fuzzed file (written to a
// private temporary directory); arguments that could name another config file are dropped, and
// the default config file is a path that does not exist, so nothing outside the temporary
// directory is ever read as a config file.
#include "common/config_file.hpp"
#include "common/exit_codes.hpp"
#include "daemon/config.hpp"

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace {

const std::string& work_dir() {
    static const std::string dir = [] {
        char name[] = "/tmp/uds-echo-fuzz.XXXXXX";
        if (::mkdtemp(name) == nullptr)
            std::abort();
        return std::string(name);
    }();
    return dir;
}

// True for an argument that could select a config file other than ours: -c in any short-option
// group, or --config in any spelling.
bool names_a_config_file(const std::string& arg) {
    if (arg.rfind("--", 0) == 0) {
        const std::string name = arg.substr(2, arg.find('=') - 2);
        return !name.empty() && std::string("config").rfind(name, 0) == 0;
    }
    return arg.size() > 1 && arg[0] == '-' && arg.find('c') != std::string::npos;
}

void write_file(const std::string& path, std::string_view content) {
    std::FILE* file = std::fopen(path.c_str(), "wb");
    if (file == nullptr)
        std::abort();
    std::fwrite(content.data(), 1, content.size(), file);
    std::fclose(file);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const auto separator = input.find(std::string_view("\0\0", 2));
    const std::string_view file_content = input.substr(0, separator);
    std::vector<std::string> args;
    if (separator != std::string_view::npos) {
        std::string_view rest = input.substr(separator + 2);
        while (!rest.empty()) {
            const auto end = rest.find('\0');
            std::string arg(rest.substr(0, end));
            if (!names_a_config_file(arg))
                args.push_back(std::move(arg));
            if (end == std::string_view::npos)
                break;
            rest.remove_prefix(end + 1);
        }
    }

    const std::string config_path = work_dir() + "/fuzz.conf";
    write_file(config_path, file_content);
    args.push_back("--config");
    args.push_back(config_path);

    try {
        auto result =
            uds_echo::daemon::parse_daemon_config(args, work_dir() + "/no-such-file.conf");
        auto* config = std::get_if<uds_echo::daemon::DaemonConfig>(&result);
        if (config != nullptr) {
            // A configuration that parsed must describe itself, and its description must parse
            // to the same configuration (what --check-config prints is a valid config file).
            const std::string described = config->describe();
            write_file(config_path, described);
            auto again = uds_echo::daemon::parse_daemon_config({"--config", config_path},
                                                               work_dir() + "/no-such-file.conf");
            auto* reparsed = std::get_if<uds_echo::daemon::DaemonConfig>(&again);
            if (reparsed == nullptr || reparsed->describe() != described) {
                std::fprintf(stderr, "describe() does not round-trip:\n%s\n---\n%s\n",
                             described.c_str(), reparsed ? reparsed->describe().c_str() : "");
                std::abort();
            }
        }
    } catch (const uds_echo::Failure&) {
        // A rejected input: the expected outcome for most of them.
    }

    write_file(config_path, file_content);
    try {
        (void)uds_echo::read_sockets_from_config_file(config_path);
    } catch (const uds_echo::Failure&) {
    }
    return 0;
}
