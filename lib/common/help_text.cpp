#include "common/help_text.hpp"

#include <algorithm>
#include <sstream>

namespace uds_echo {

std::vector<std::string> wrapped(std::string_view text, std::size_t width) {
    std::vector<std::string> lines(1);
    std::istringstream words{std::string(text)};
    for (std::string word; words >> word;) {
        if (!lines.back().empty() && lines.back().size() + 1 + word.size() > width)
            lines.emplace_back();
        if (!lines.back().empty())
            lines.back() += ' ';
        lines.back() += word;
    }
    return lines;
}

std::string help_table(const std::vector<HelpRow>& rows) {
    std::vector<std::string> lefts;
    std::size_t left_width = 0;
    for (const auto& row : rows) {
        std::string left =
            row.short_name != '\0' ? std::string("-") + row.short_name + ", " : std::string("    ");
        left += "--";
        left += row.name;
        if (row.argument != nullptr)
            left += std::string(" ") + row.argument;
        left_width = std::max(left_width, left.size());
        lefts.push_back(std::move(left));
    }
    const std::size_t indent = 2 + left_width + 2;
    std::string text;
    for (std::size_t i = 0; i < rows.size(); ++i) {
        std::string prefix = "  " + lefts[i] + std::string(left_width - lefts[i].size() + 2, ' ');
        for (const auto& line : wrapped(rows[i].description, help_width - indent)) {
            text += prefix + line + '\n';
            prefix.assign(indent, ' ');
        }
    }
    return text;
}

} // namespace uds_echo
