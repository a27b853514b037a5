// Inside the configuration: reading an INI config file into settings, each with its line.
#pragma once

#include "config_options.hpp"

#include <boost/program_options/options_description.hpp>

#include <optional>
#include <string>

namespace uds_echo::config_detail {

// The whole file, or nullopt when it does not exist and `must_exist` is false. Throws
// Failure(ExitCode::config) naming the file when it cannot be read.
std::optional<std::string> read_config_text(const std::string& path, bool must_exist);

// What to do with a name that the options description does not know.
enum class UnknownNames { refuse, skip };

// The `name = value` lines of `text`, read from `path`, in order and each with its line number.
// Syntax errors, names not in `options` (unless skipped) and repeated single-value options are
// Failure(ExitCode::config) naming the file and line. The values are not checked here.
Settings parse_config_text(const std::string& path, const std::string& text,
                           const boost::program_options::options_description& options,
                           UnknownNames unknown);

} // namespace uds_echo::config_detail
