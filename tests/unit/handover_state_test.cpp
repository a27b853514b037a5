// The handover state (lib/daemon/handover.hpp, docs/architecture.md "Restart: the handover"): what
// encode_state writes, decode_state reads back, and every rule by which decode_state refuses a
// state. Each refusal case breaks one rule of a state that is otherwise valid.
#define BOOST_TEST_MODULE unit_handover_state
#include <boost/test/unit_test.hpp>

#include "process.hpp"

#include "daemon/handover.hpp"

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

using namespace uds_echo::daemon;
using uds_echo::test::contains;

namespace {

// The layout of format version 1 (handover.hpp).
constexpr std::size_t version_offset = 8;
constexpr std::size_t count_offset = 12;
constexpr std::size_t total_offset = 16;
constexpr std::size_t header_size = 24;
constexpr std::size_t record_header_size = 16;
// The fields of the record that starts at `record`.
constexpr std::size_t size_field = 8;
constexpr std::size_t zero_field = 12;

template <class Field>
void write_at(std::string& bytes, std::size_t offset, Field value) {
    BOOST_REQUIRE(offset + sizeof value <= bytes.size());
    std::memcpy(bytes.data() + offset, &value, sizeof value);
}

// Keeps the header's size field true to `bytes`, so that only the rule under test is broken.
void fix_total(std::string& bytes) {
    write_at<std::uint64_t>(bytes, total_offset, bytes.size());
}

// A valid state of two records: "hello" for inode 7, "world!" for inode 9.
std::string two_records() {
    return encode_state({StateRecord{7, "hello"}, StateRecord{9, "world!"}});
}
constexpr std::size_t second_record = header_size + record_header_size + 5;

// decode_state refuses `bytes`, saying something that contains `reason`.
void check_refused(const std::string& bytes, const std::string& reason) {
    std::string error;
    const auto records = decode_state(bytes, error);
    BOOST_TEST(!records.has_value(), "accepted a state that should be refused for: " << reason);
    BOOST_TEST(contains(error, reason), "error: '" << error << "', expected '" << reason << "'");
}

} // namespace

BOOST_AUTO_TEST_CASE(a_state_reads_back_as_written) {
    std::string error;
    const auto records = decode_state(two_records(), error);
    BOOST_REQUIRE_MESSAGE(records.has_value(), error);
    BOOST_REQUIRE_EQUAL(records->size(), 2u);
    BOOST_TEST((*records)[0].inode == 7u);
    BOOST_TEST((*records)[0].unsent == "hello");
    BOOST_TEST((*records)[1].inode == 9u);
    BOOST_TEST((*records)[1].unsent == "world!");
}

BOOST_AUTO_TEST_CASE(a_state_without_records_is_valid) {
    std::string error;
    const auto records = decode_state(encode_state({}), error);
    BOOST_REQUIRE_MESSAGE(records.has_value(), error);
    BOOST_TEST(records->empty());
}

BOOST_AUTO_TEST_CASE(bytes_shorter_than_a_header_are_refused) {
    check_refused(two_records().substr(0, header_size - 1), "wrong magic");
    check_refused("", "wrong magic");
}

BOOST_AUTO_TEST_CASE(a_wrong_magic_is_refused) {
    std::string bytes = two_records();
    bytes[7] = '\x02';
    check_refused(bytes, "wrong magic");
}

BOOST_AUTO_TEST_CASE(another_format_version_is_refused) {
    std::string bytes = two_records();
    write_at<std::uint32_t>(bytes, version_offset, state_version + 1);
    check_refused(bytes, "state format version " + std::to_string(state_version + 1));
}

BOOST_AUTO_TEST_CASE(a_size_field_that_is_not_the_size_is_refused) {
    std::string bytes = two_records();
    write_at<std::uint64_t>(bytes, total_offset, bytes.size() + 1);
    check_refused(bytes, "size field");
    bytes = two_records();
    bytes += "x"; // one byte more than the header says
    check_refused(bytes, "size field");
}

BOOST_AUTO_TEST_CASE(more_records_than_the_limit_are_refused) {
    std::string bytes = encode_state({});
    write_at<std::uint32_t>(bytes, count_offset, max_state_records + 1);
    check_refused(bytes, "more than " + std::to_string(max_state_records));
}

BOOST_AUTO_TEST_CASE(a_record_header_cut_short_is_refused) {
    // The count says three records: the bytes end where the third record's header should start.
    std::string bytes = two_records();
    write_at<std::uint32_t>(bytes, count_offset, 3);
    check_refused(bytes, "record 2 is cut short");
    // Half a record header.
    bytes = two_records().substr(0, second_record + record_header_size / 2);
    fix_total(bytes);
    check_refused(bytes, "record 1 is cut short");
}

BOOST_AUTO_TEST_CASE(a_record_for_inode_0_is_refused) {
    std::string bytes = two_records();
    write_at<std::uint64_t>(bytes, second_record, 0);
    check_refused(bytes, "record 1 is invalid");
}

BOOST_AUTO_TEST_CASE(a_record_whose_zero_field_is_not_zero_is_refused) {
    std::string bytes = two_records();
    write_at<std::uint32_t>(bytes, second_record + zero_field, 1);
    check_refused(bytes, "record 1 is invalid");
}

BOOST_AUTO_TEST_CASE(a_record_without_bytes_is_refused) {
    // Only connections with unsent bytes have a record.
    std::string bytes = encode_state({StateRecord{7, "hello"}, StateRecord{9, ""}});
    check_refused(bytes, "record 1 is invalid");
}

BOOST_AUTO_TEST_CASE(a_record_larger_than_the_largest_buffer_is_refused) {
    const std::string bytes = encode_state(
        {StateRecord{7, "hello"}, StateRecord{9, std::string(max_unsent_bytes + 1, 'x')}});
    check_refused(bytes, "record 1 is invalid");
    // The largest buffer itself is fine.
    std::string error;
    BOOST_TEST(
        decode_state(encode_state({StateRecord{9, std::string(max_unsent_bytes, 'x')}}), error)
            .has_value(),
        error);
}

BOOST_AUTO_TEST_CASE(a_record_whose_bytes_are_cut_short_is_refused) {
    std::string bytes = two_records();
    bytes.pop_back(); // "world" of "world!"
    fix_total(bytes);
    check_refused(bytes, "record 1 is invalid");
    // The same with a size field far past the end.
    bytes = two_records();
    write_at<std::uint32_t>(bytes, second_record + size_field, 1000);
    check_refused(bytes, "record 1 is invalid");
}

BOOST_AUTO_TEST_CASE(bytes_after_the_last_record_are_refused) {
    std::string bytes = two_records();
    write_at<std::uint32_t>(bytes, count_offset, 1);
    check_refused(bytes, std::to_string(record_header_size + 6) + " bytes after the last record");
}

BOOST_AUTO_TEST_CASE(two_records_for_one_connection_are_refused) {
    check_refused(encode_state({StateRecord{7, "hello"}, StateRecord{7, "again"}}),
                  "two records for one connection");
    // Not only when they are next to each other.
    check_refused(encode_state({StateRecord{7, "a"}, StateRecord{8, "b"}, StateRecord{7, "c"}}),
                  "two records for one connection");
}
