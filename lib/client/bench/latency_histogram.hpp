// Latencies of a benchmark in a fixed amount of memory, whatever the number of samples.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace uds_echo::client {

// Latencies in nanoseconds, counted in log-linear buckets: every power of two is split into 128
// equal buckets, so a value is known to within 1/128 of itself (0.8 %). Values up to 2^40 ns
// (about 18 minutes) are told apart; larger ones share the last bucket. The minimum, maximum and
// mean are kept exactly.
class LatencyHistogram {
public:
    // `count` samples of the same value.
    void record(std::uint64_t nanoseconds, std::uint64_t count = 1);
    void merge(const LatencyHistogram& other);

    std::uint64_t count() const { return count_; }
    std::uint64_t min() const { return count_ == 0 ? 0 : min_; }
    std::uint64_t max() const { return max_; }
    double mean() const;
    // The value below which `fraction` (0..1) of the samples lie, as the middle of its bucket
    // (clamped to the minimum and maximum); 0 without samples.
    std::uint64_t percentile(double fraction) const;
    // How many samples are at or below `nanoseconds`, to the bucket's precision.
    std::uint64_t count_at_or_below(std::uint64_t nanoseconds) const;

private:
    static constexpr unsigned sub_bucket_bits = 7;
    static constexpr unsigned max_exponent = 40;
    static constexpr std::size_t sub_buckets = std::size_t{1} << sub_bucket_bits;
    static constexpr std::size_t bucket_count = sub_buckets * (max_exponent - sub_bucket_bits + 2);

    static std::size_t bucket_of(std::uint64_t value);
    static std::uint64_t bucket_low(std::size_t bucket);
    static std::uint64_t bucket_high(std::size_t bucket);

    std::array<std::uint64_t, bucket_count> counts_{};
    std::uint64_t count_ = 0;
    std::uint64_t max_ = 0;
    std::uint64_t min_ = UINT64_MAX;
    std::uint64_t sum_ = 0; // 2^64 ns: 584 years of summed latency
};

} // namespace uds_echo::client
