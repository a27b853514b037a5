// The layout of both programs' --help: a table of options in two columns, and paragraphs, wrapped
// to fit 79 columns.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace uds_echo {

inline constexpr std::size_t help_width = 79;

// One option in the table: "-s, --socket PATH" on the left, what it does on the right.
struct HelpRow {
    char short_name;       // '\0' for none
    std::string_view name; // without the leading "--"
    const char* argument;  // nullptr for a switch
    std::string description;
};

// Words of `text` in lines of at most `width` columns (a longer word gets a line of its own).
std::vector<std::string> wrapped(std::string_view text, std::size_t width = help_width);

// The rows, a line each and more for a long description: two spaces, the left column padded to
// the widest left entry plus two spaces, then the description wrapped below itself.
std::string help_table(const std::vector<HelpRow>& rows);

} // namespace uds_echo
