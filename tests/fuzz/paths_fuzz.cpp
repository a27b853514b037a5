// libFuzzer target: socket path resolution and validation (docs/protocol.md), shared by daemon and
// client.
//
// Input layout: up to four NUL-separated fields: command-line path, environment path, config-file
// path, XDG_RUNTIME_DIR; the first byte's bits say which fields are present and the uid class.
// Checked properties: resolution picks the first explicit path; validation accepts exactly the
// paths that fit in sun_path and can be written in the config file, and those convert to an
// endpoint; an abstract name ('@') becomes a leading NUL.
#include "common/exit_codes.hpp"
#include "common/paths.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

void check(bool condition, const char* what, const std::string& path) {
    if (!condition) {
        std::fprintf(stderr, "property violated: %s (path of %zu bytes)\n", what, path.size());
        std::abort();
    }
}

// What a socket path may be: not empty, not "@" alone (an abstract socket needs a name), at most
// max_socket_path_length bytes (sun_path), and writable as a `socket = ...` line of the config
// file: no NUL or other control byte (below 0x20, or 0x7f), no '#' (a comment there), no space at
// either end (trimmed there).
bool acceptable(const std::string& path) {
    if (path.empty() || path == "@" || path.size() > uds_echo::max_socket_path_length)
        return false;
    if (path.front() == ' ' || path.back() == ' ')
        return false;
    return std::none_of(path.begin(), path.end(), [](char c) {
        const auto byte = static_cast<unsigned char>(c);
        return byte < 0x20 || byte == 0x7f || c == '#';
    });
}

void check_path(const std::string& path) {
    bool valid = true;
    try {
        uds_echo::validate_socket_path(path, uds_echo::ExitCode::usage);
    } catch (const uds_echo::Failure&) {
        valid = false;
    }
    check(valid == acceptable(path), "validate_socket_path accepts exactly the acceptable paths",
          path);
    if (!valid)
        return;
    const auto endpoint = uds_echo::make_endpoint(path);
    const std::string name = endpoint.path();
    if (uds_echo::is_abstract(path)) {
        check(!name.empty() && name[0] == '\0' && name.substr(1) == path.substr(1),
              "an abstract name becomes a leading NUL", path);
    } else {
        check(name == path, "a file path is kept unchanged", path);
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0)
        return 0;
    const std::uint8_t flags = data[0];
    std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
    std::vector<std::string> fields;
    while (fields.size() < 4) {
        const auto end = rest.find('\0');
        fields.emplace_back(rest.substr(0, end));
        if (end == std::string_view::npos)
            break;
        rest.remove_prefix(end + 1);
    }
    fields.resize(4);

    uds_echo::PathSources sources;
    if (flags & 1)
        sources.command_line = fields[0];
    if (flags & 2)
        sources.environment = fields[1];
    if (flags & 4)
        sources.config_file = fields[2];
    uds_echo::UserContext user;
    user.uid = (flags & 8) ? 0 : static_cast<uid_t>(1000 + (flags >> 5));
    if (flags & 16)
        user.xdg_runtime_dir = fields[3];

    const std::string resolved = uds_echo::resolve_socket_path(sources, user);
    const auto explicit_path = uds_echo::explicit_socket_path(sources);
    if (explicit_path)
        check(resolved == *explicit_path, "an explicit path wins", resolved);
    else
        check(resolved == uds_echo::default_socket_path(user), "the default otherwise", resolved);

    const auto candidates = uds_echo::client_socket_candidates(sources, user);
    check(!candidates.empty(), "the client has a candidate", resolved);
    check(explicit_path ? candidates.size() == 1 && candidates[0] == *explicit_path
                        : candidates.front() == uds_echo::default_socket_path(user),
          "client candidates follow the same order", resolved);

    for (const auto& field : fields)
        check_path(field);
    check_path(resolved);
    (void)uds_echo::is_private_tmp_path(resolved, user);
    return 0;
}
