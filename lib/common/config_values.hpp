// Option values from text: numbers, seconds, sizes, octal modes, user and group ids. Strict on
// purpose: plain decimal digits, no sign, no blanks, no base prefix, so that "-1" is never wrapped
// into a huge unsigned and a typo is never read as a number. Shared by every program that reads an
// option value; the wording of the errors is the one docs/configuration.md shows.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace uds_echo {

// A value that does not parse. what() says why, quoting the value, without naming the option, e.g.
// `"abc" is not a number (expected 0 to 1024)`; the caller puts the option or the file and line
// in front.
class InvalidValue : public std::invalid_argument {
public:
    using std::invalid_argument::invalid_argument;
};

// The accepted values, both ends included.
struct ValueRange {
    std::uint64_t min;
    std::uint64_t max;
};

// The longest duration any option accepts: one year.
constexpr std::uint64_t max_option_seconds = 365 * 24 * 3600;

// A whole number in plain decimal digits within `range`.
std::uint64_t parse_number(std::string_view text, ValueRange range);

// Whole seconds, 0 to max_option_seconds.
std::chrono::seconds parse_seconds(std::string_view text);

// A byte count within `range`, with an optional binary suffix: K or KiB (1024), M or MiB (1024^2).
std::uint64_t parse_size(std::string_view text, ValueRange range);

// A file mode in octal digits, 0 to 0777 ("660" and "0660" are the same).
mode_t parse_octal_mode(std::string_view text);

enum class IdKind { user, group };

// A uid or gid, as a number or as a name looked up in the user or group database (getpwnam_r,
// getgrnam_r). Blanks around it are ignored. The highest value, (uid_t)-1, means "no id" to
// chown() and the kernel and is refused.
uid_t parse_id(std::string_view text, IdKind kind);

// Comma-separated ids as parse_id reads them, in the order written; blank text is an empty list,
// an empty entry ("1,,2") is an error.
std::vector<uid_t> parse_id_list(std::string_view text, IdKind kind);

// `text` without blanks (space, tab, CR, LF) at either end.
std::string_view trim_blanks(std::string_view text);

// `text` in double quotes, as error messages quote values.
std::string quoted(std::string_view text);

} // namespace uds_echo
