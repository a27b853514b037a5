// Reading the config file: one pass over its lines. Program_options reads each line (comment,
// blanks, name and value), because it reports no line numbers when it reads a whole file; the loop
// around it numbers the lines and refuses what Program_options would take silently: section
// headers, and a value cut short by a `#` glued to it.
#include "common/config_file.hpp"

#include "common/config_values.hpp"
#include "common/exit_codes.hpp"
#include "common/paths.hpp"

#include <boost/program_options/errors.hpp>
#include <boost/program_options/parsers.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <sstream>
#include <string_view>

namespace uds_echo::config_detail {
namespace {

namespace po = boost::program_options;

[[noreturn]] void refuse_line(const Origin& origin, const std::string& problem) {
    throw Failure(ExitCode::config, place(origin) + ": " + problem);
}

// Program_options' reading of one line that has content: its name and value, without the comment
// and the blanks around them.
po::option read_assignment(std::string_view line, std::string_view content,
                           const po::options_description& options, const Origin& origin) {
    std::istringstream stream{std::string(line)};
    po::parsed_options parsed(&options);
    try {
        parsed = po::parse_config_file(stream, options, true);
    } catch (const po::invalid_config_file_syntax&) {
        refuse_line(origin, "expected \"name = value\", got " + quoted(content));
    } catch (const po::error& error) {
        refuse_line(origin, error.what());
    }
    if (parsed.options.size() != 1)
        refuse_line(origin, "cannot be parsed");
    return parsed.options.front();
}

bool is_blank(char c) {
    return c == ' ' || c == '\t' || c == '\r';
}

// Program_options cuts a line at any `#`. No value may contain one (a socket path cannot, and no
// other option has a `#` in its values), so a `#` glued to the end of a value, as in
// `socket = /tmp/a#b`, is a mistake that would otherwise pass silently as `/tmp/a`. A comment
// after a value needs a blank before its `#`.
void refuse_value_cut_by_comment(const Setting& setting, std::string_view line) {
    const auto comment = line.find('#');
    if (comment == std::string_view::npos || setting.value.empty() || is_blank(line[comment - 1]))
        return;
    const auto word_end = line.find_first_of(" \t\r", comment);
    const auto written = setting.value + std::string(line.substr(comment, word_end - comment));
    reject(setting, quoted(written) + " would be cut to " + quoted(setting.value) +
                        " by a comment: values cannot contain \"#\", and a comment needs a blank "
                        "before it");
}

// The setting on one line; nullopt for a blank or comment line, and for an unknown name that is
// to be skipped.
std::optional<Setting> read_line(std::string_view line, const Origin& origin,
                                 const po::options_description& options,
                                 const UnknownNameHandler& on_unknown_name) {
    const auto content = trim_blanks(line.substr(0, line.find('#')));
    if (content.empty())
        return std::nullopt;
    if (content.front() == '[' && content.back() == ']')
        refuse_line(origin, "sections are not used in this file: " + quoted(content));
    const auto assignment = read_assignment(line, content, options, origin);
    const auto& name = assignment.string_key;
    if (name.empty())
        refuse_line(origin, "option name missing before '='");
    if (assignment.unregistered) {
        if (on_unknown_name)
            on_unknown_name(name, origin);
        return std::nullopt;
    }
    Setting setting{name, assignment.value.empty() ? std::string() : assignment.value.front(),
                    origin};
    refuse_value_cut_by_comment(setting, line);
    return setting;
}

} // namespace

std::optional<std::string> read_config_text(const std::string& path, bool must_exist) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT && !must_exist)
            return std::nullopt;
        throw Failure(ExitCode::config, "config file " + path + ": " + std::strerror(errno));
    }
    std::string text;
    char chunk[4096];
    for (;;) {
        const auto count = ::read(fd, chunk, sizeof chunk);
        if (count < 0 && errno == EINTR)
            continue;
        if (count < 0) {
            const int error = errno;
            ::close(fd);
            throw Failure(ExitCode::config, "config file " + path + ": " + std::strerror(error));
        }
        if (count == 0)
            break;
        text.append(chunk, static_cast<std::size_t>(count));
    }
    ::close(fd);
    return text;
}

Settings parse_config_text(const std::string& path, const std::string& text,
                           const po::options_description& options,
                           const UnknownNameHandler& on_unknown_name) {
    Settings settings;
    std::string_view rest = text;
    for (int number = 1; !rest.empty(); ++number) {
        const auto end = rest.find('\n');
        const auto line = rest.substr(0, end);
        rest.remove_prefix(end == std::string_view::npos ? rest.size() : end + 1);
        if (auto setting = read_line(line, Origin{path, number}, options, on_unknown_name))
            settings.push_back(std::move(*setting));
    }
    return settings;
}

std::string place(const Origin& origin) {
    return origin.file + ":" + std::to_string(origin.line);
}

void reject(const std::string& name, const Origin& origin, const std::string& problem) {
    if (origin.file.empty())
        throw Failure(ExitCode::usage, "--" + name + ": " + problem);
    throw Failure(ExitCode::config, place(origin) + ": " + name + ": " + problem);
}

void reject(const Setting& setting, const std::string& problem) {
    reject(setting.name, setting.origin, problem);
}

const Setting* last(const Settings& settings, std::string_view name) {
    const Setting* found = nullptr;
    for (const auto& setting : settings)
        if (setting.name == name)
            found = &setting;
    return found;
}

void validate_socket_setting(const Setting& setting) {
    // An empty `socket =` in the file means "unset" (that is how describe() would say it); an
    // empty --socket is a mistake.
    if (setting.value.empty() && !setting.origin.file.empty())
        return;
    const auto code = setting.origin.file.empty() ? ExitCode::usage : ExitCode::config;
    try {
        validate_socket_path(setting.value, code);
    } catch (const Failure& failure) {
        reject(setting, failure.what());
    }
}

} // namespace uds_echo::config_detail

namespace uds_echo {

ConfigFileSockets read_sockets_from_config_file(const std::string& path) {
    using namespace config_detail;
    const auto text = read_config_text(path, false);
    if (!text)
        return {};
    boost::program_options::options_description description;
    description.add_options()("socket", boost::program_options::value<std::string>())(
        "seqpacket-socket", boost::program_options::value<std::string>())(
        "datagram-socket", boost::program_options::value<std::string>());
    const auto settings = parse_config_text(path, *text, description);
    const auto path_of = [&](std::string_view name) -> std::optional<std::string> {
        const auto* setting = last(settings, name);
        if (setting == nullptr || setting->value.empty())
            return std::nullopt;
        validate_socket_setting(*setting);
        return setting->value;
    };
    return ConfigFileSockets{path_of("socket"), path_of("seqpacket-socket"),
                             path_of("datagram-socket")};
}

} // namespace uds_echo
