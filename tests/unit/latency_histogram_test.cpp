// LatencyHistogram: exact minimum, maximum and mean; percentiles within the promised 1/128 of the
// value; merging; counting below a value; samples recorded with a count; the empty case.
#define BOOST_TEST_MODULE unit_latency_histogram
#include <boost/test/unit_test.hpp>

#include "client/bench/latency_histogram.hpp"

#include <cstdint>

using uds_echo::client::LatencyHistogram;

namespace {

// True when `value` is within 1/128 of `expected` (the bucket width), plus one for rounding.
bool close_to(std::uint64_t value, std::uint64_t expected) {
    const auto tolerance = expected / 128 + 1;
    return value + tolerance >= expected && value <= expected + tolerance;
}

} // namespace

BOOST_AUTO_TEST_CASE(an_empty_histogram_says_zero) {
    const LatencyHistogram histogram;
    BOOST_TEST(histogram.count() == 0u);
    BOOST_TEST(histogram.min() == 0u);
    BOOST_TEST(histogram.max() == 0u);
    BOOST_TEST(histogram.mean() == 0.0);
    BOOST_TEST(histogram.percentile(0.99) == 0u);
    BOOST_TEST(histogram.count_at_or_below(1000) == 0u);
}

BOOST_AUTO_TEST_CASE(min_max_and_mean_are_exact) {
    LatencyHistogram histogram;
    for (const std::uint64_t value : {1000u, 2000u, 3000u, 123457u})
        histogram.record(value);
    BOOST_TEST(histogram.count() == 4u);
    BOOST_TEST(histogram.min() == 1000u);
    BOOST_TEST(histogram.max() == 123457u);
    BOOST_TEST(histogram.mean() == (1000.0 + 2000 + 3000 + 123457) / 4);
}

BOOST_AUTO_TEST_CASE(percentiles_are_within_one_bucket) {
    LatencyHistogram histogram;
    for (std::uint64_t value = 1; value <= 100000; ++value)
        histogram.record(value * 100); // 100 ns to 10 ms
    for (const double fraction : {0.5, 0.9, 0.99, 0.999}) {
        const auto expected = static_cast<std::uint64_t>(fraction * 100000) * 100;
        BOOST_TEST(close_to(histogram.percentile(fraction), expected),
                   "p" << fraction * 100 << " = " << histogram.percentile(fraction) << ", expected "
                       << expected);
    }
    BOOST_TEST(histogram.percentile(1.0) <= histogram.max());
    BOOST_TEST(histogram.percentile(0.0) >= histogram.min());
}

BOOST_AUTO_TEST_CASE(small_values_are_exact) {
    LatencyHistogram histogram;
    for (std::uint64_t value = 0; value < 128; ++value)
        histogram.record(value);
    BOOST_TEST(histogram.percentile(0.5) == 63u);
    BOOST_TEST(histogram.count_at_or_below(63) == 64u);
}

BOOST_AUTO_TEST_CASE(huge_values_are_counted_and_the_maximum_kept) {
    LatencyHistogram histogram;
    const std::uint64_t huge = std::uint64_t{1} << 50;
    histogram.record(huge);
    histogram.record(10);
    BOOST_TEST(histogram.max() == huge);
    BOOST_TEST(histogram.percentile(1.0) == huge);
    BOOST_TEST(histogram.count_at_or_below(huge) == 2u);
}

BOOST_AUTO_TEST_CASE(merging_adds_counts_and_keeps_the_extremes) {
    LatencyHistogram first;
    LatencyHistogram second;
    for (std::uint64_t value = 1; value <= 1000; ++value) {
        first.record(value * 1000);
        second.record(value * 1000 + 500000000);
    }
    first.merge(second);
    BOOST_TEST(first.count() == 2000u);
    BOOST_TEST(first.min() == 1000u);
    BOOST_TEST(first.max() == 501000000u);
    BOOST_TEST(close_to(first.percentile(0.25), 500000));
    BOOST_TEST(first.count_at_or_below(1000000) == 1000u);
}

// The bench records the messages of one batch, which share their latency, as one entry.
BOOST_AUTO_TEST_CASE(a_value_recorded_with_a_count_is_that_many_samples) {
    LatencyHistogram once;
    LatencyHistogram each;
    once.record(5000, 3);
    once.record(70000);
    for (int i = 0; i < 3; ++i)
        each.record(5000);
    each.record(70000);
    BOOST_TEST(once.count() == 4u);
    BOOST_TEST(once.mean() == each.mean());
    for (const double fraction : {0.5, 0.75, 0.99})
        BOOST_TEST(once.percentile(fraction) == each.percentile(fraction));
    BOOST_TEST(once.count_at_or_below(5000) == 3u);
}
