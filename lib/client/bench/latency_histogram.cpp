#include "client/bench/latency_histogram.hpp"

#include <algorithm>
#include <bit>
#include <cmath>

namespace uds_echo::client {

std::size_t LatencyHistogram::bucket_of(std::uint64_t value) {
    if (value < sub_buckets)
        return static_cast<std::size_t>(value);
    const unsigned exponent = static_cast<unsigned>(std::bit_width(value)) - 1;
    if (exponent > max_exponent)
        return bucket_count - 1;
    const unsigned shift = exponent - sub_bucket_bits;
    const std::size_t sub = static_cast<std::size_t>(value >> shift) - sub_buckets;
    return sub_buckets + (exponent - sub_bucket_bits) * sub_buckets + sub;
}

std::uint64_t LatencyHistogram::bucket_low(std::size_t bucket) {
    if (bucket < sub_buckets)
        return bucket;
    const std::size_t group = (bucket - sub_buckets) / sub_buckets; // exponent - sub_bucket_bits
    const std::size_t sub = (bucket - sub_buckets) % sub_buckets;
    return static_cast<std::uint64_t>(sub_buckets + sub) << group;
}

std::uint64_t LatencyHistogram::bucket_high(std::size_t bucket) {
    if (bucket < sub_buckets)
        return bucket;
    const std::size_t group = (bucket - sub_buckets) / sub_buckets;
    return bucket_low(bucket) + (std::uint64_t{1} << group) - 1;
}

void LatencyHistogram::record(std::uint64_t nanoseconds, std::uint64_t count) {
    if (count == 0)
        return;
    counts_[bucket_of(nanoseconds)] += count;
    count_ += count;
    sum_ += nanoseconds * count;
    max_ = std::max(max_, nanoseconds);
    min_ = std::min(min_, nanoseconds);
}

void LatencyHistogram::merge(const LatencyHistogram& other) {
    for (std::size_t i = 0; i < bucket_count; ++i)
        counts_[i] += other.counts_[i];
    count_ += other.count_;
    sum_ += other.sum_;
    max_ = std::max(max_, other.max_);
    min_ = std::min(min_, other.min_);
}

double LatencyHistogram::mean() const {
    return count_ == 0 ? 0.0 : static_cast<double>(sum_) / static_cast<double>(count_);
}

std::uint64_t LatencyHistogram::percentile(double fraction) const {
    if (count_ == 0)
        return 0;
    // The rank of the sample asked for, 1-based: p50 of 2 samples is the first.
    const auto rank = std::max<std::uint64_t>(
        1, static_cast<std::uint64_t>(std::ceil(fraction * static_cast<double>(count_))));
    // The last sample is the maximum, kept exactly; so is anything in the overflow bucket.
    if (rank >= count_)
        return max_;
    std::uint64_t seen = 0;
    for (std::size_t bucket = 0; bucket + 1 < bucket_count; ++bucket) {
        seen += counts_[bucket];
        if (seen >= rank) {
            const std::uint64_t middle =
                bucket_low(bucket) + (bucket_high(bucket) - bucket_low(bucket)) / 2;
            return std::clamp(middle, min(), max_);
        }
    }
    return max_;
}

std::uint64_t LatencyHistogram::count_at_or_below(std::uint64_t nanoseconds) const {
    if (nanoseconds >= max_)
        return count_;
    std::uint64_t seen = 0;
    for (std::size_t bucket = 0; bucket <= bucket_of(nanoseconds); ++bucket)
        seen += counts_[bucket];
    return seen;
}

} // namespace uds_echo::client
