// Option values from text; see config_values.hpp for the rules.
#include "common/config_values.hpp"

#include <grp.h>
#include <pwd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <optional>
#include <type_traits>
#include <utility>

namespace uds_echo {
namespace {

bool all_digits(std::string_view text, int base) {
    const char last = static_cast<char>('0' + base - 1);
    return !text.empty() &&
           std::all_of(text.begin(), text.end(), [&](char c) { return c >= '0' && c <= last; });
}

bool is_negative_number(std::string_view text) {
    return text.size() > 1 && text.front() == '-' && all_digits(text.substr(1), 10);
}

std::string expected(ValueRange range) {
    return "(expected " + std::to_string(range.min) + " to " + std::to_string(range.max) + ")";
}

// `digits` as a number in `range`; errors quote `shown`, the value as the user wrote it, which
// may be more than the digits (a list, or a number with a blank before it).
std::uint64_t number_in_range(std::string_view digits, ValueRange range, std::string_view shown) {
    if (is_negative_number(digits))
        throw InvalidValue(quoted(shown) + " is negative " + expected(range));
    if (!all_digits(digits, 10))
        throw InvalidValue(quoted(shown) + " is not a number " + expected(range));
    std::uint64_t value = 0;
    const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (error != std::errc{} || end != digits.data() + digits.size() || value < range.min ||
        value > range.max)
        throw InvalidValue(quoted(shown) + " is out of range " + expected(range));
    return value;
}

template <typename Entry>
using LookupByName = int (*)(const char*, Entry*, char*, std::size_t, Entry**);

// getpwnam_r/getgrnam_r with a buffer that grows on ERANGE. nullopt when the name is unknown.
template <typename Entry, typename Id>
std::optional<Id> look_up(const std::string& name, LookupByName<Entry> lookup, Id Entry::*id,
                          const char* kind) {
    std::vector<char> buffer(4096);
    for (;;) {
        Entry entry{};
        Entry* found = nullptr;
        const int error = lookup(name.c_str(), &entry, buffer.data(), buffer.size(), &found);
        if (error == ERANGE && buffer.size() < (1u << 20)) {
            buffer.resize(buffer.size() * 2);
            continue;
        }
        // getpwnam_r(3): these mean "not found" on some NSS back ends.
        if (error == 0 || error == ENOENT || error == ESRCH || error == EBADF || error == EPERM) {
            if (found == nullptr)
                return std::nullopt;
            return found->*id;
        }
        throw InvalidValue(std::string("cannot look up ") + kind + " " + quoted(name) + ": " +
                           std::strerror(error));
    }
}

static_assert(std::is_same_v<uid_t, gid_t>, "uids and gids are handled alike");

// One id, already trimmed; number errors quote `shown`.
uid_t id_from_text(std::string_view text, IdKind kind, std::string_view shown) {
    const char* kind_name = kind == IdKind::user ? "user" : "group";
    if (all_digits(text, 10))
        return static_cast<uid_t>(number_in_range(text, {0, static_cast<uid_t>(-1) - 1u}, shown));
    const std::string name(text);
    const auto id = kind == IdKind::user ? look_up(name, ::getpwnam_r, &passwd::pw_uid, kind_name)
                                         : look_up(name, ::getgrnam_r, &group::gr_gid, kind_name);
    if (!id)
        throw InvalidValue(quoted(text) + " is not a known " + kind_name);
    return *id;
}

} // namespace

std::string_view trim_blanks(std::string_view text) {
    constexpr std::string_view blanks = " \t\r\n";
    const auto first = text.find_first_not_of(blanks);
    if (first == std::string_view::npos)
        return {};
    const auto last = text.find_last_not_of(blanks);
    return text.substr(first, last - first + 1);
}

std::string quoted(std::string_view text) {
    return '"' + std::string(text) + '"';
}

std::uint64_t parse_number(std::string_view text, ValueRange range) {
    return number_in_range(text, range, text);
}

std::chrono::seconds parse_seconds(std::string_view text) {
    return std::chrono::seconds(parse_number(text, {0, max_option_seconds}));
}

std::uint64_t parse_size(std::string_view text, ValueRange range) {
    const std::string expectation = "(expected " + std::to_string(range.min) + " to " +
                                    std::to_string(range.max) +
                                    " bytes; K and M suffixes mean KiB and MiB)";
    constexpr std::array<std::pair<std::string_view, std::uint64_t>, 4> suffixes{
        {{"KiB", 1024}, {"K", 1024}, {"MiB", 1024 * 1024}, {"M", 1024 * 1024}}};
    std::string_view digits = text;
    std::uint64_t unit = 1;
    for (const auto& [suffix, multiplier] : suffixes) {
        if (digits.size() > suffix.size() && digits.ends_with(suffix)) {
            digits.remove_suffix(suffix.size());
            unit = multiplier;
            break;
        }
    }
    if (is_negative_number(digits))
        throw InvalidValue(quoted(text) + " is negative " + expectation);
    if (!all_digits(digits, 10))
        throw InvalidValue(quoted(text) + " is not a size " + expectation);
    std::uint64_t count = 0;
    const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), count);
    const bool fits = error == std::errc{} && end == digits.data() + digits.size() &&
                      count <= range.max / unit && count * unit >= range.min;
    if (!fits)
        throw InvalidValue(quoted(text) + " is out of range " + expectation);
    return count * unit;
}

mode_t parse_octal_mode(std::string_view text) {
    if (!all_digits(text, 8))
        throw InvalidValue(quoted(text) + " is not an octal mode (expected 0000 to 0777)");
    unsigned value = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value, 8);
    if (error != std::errc{} || end != text.data() + text.size() || value > 0777)
        throw InvalidValue(quoted(text) + " is out of range (expected 0000 to 0777)");
    return static_cast<mode_t>(value);
}

uid_t parse_id(std::string_view text, IdKind kind) {
    return id_from_text(trim_blanks(text), kind, text);
}

std::vector<uid_t> parse_id_list(std::string_view text, IdKind kind) {
    std::vector<uid_t> ids;
    if (trim_blanks(text).empty())
        return ids;
    std::size_t start = 0;
    for (;;) {
        const auto comma = text.find(',', start);
        const auto item = trim_blanks(text.substr(start, comma - start));
        if (item.empty())
            throw InvalidValue(quoted(text) + " has an empty entry");
        ids.push_back(id_from_text(item, kind, text));
        if (comma == std::string_view::npos)
            return ids;
        start = comma + 1;
    }
}

} // namespace uds_echo
