// The read buffers of one worker, lent to its sessions while they move data.
#pragma once

#include <boost/asio/buffer.hpp>

#include <cstddef>
#include <memory>
#include <vector>

namespace uds_echo::daemon {

// Read buffers lent to sessions only while they move data. An idle session holds none, so the
// memory of an idle connection is its socket and its coroutine frame, and a busy worker reuses
// the same few buffers for every message (no allocation per message).
class BufferPool {
public:
    explicit BufferPool(std::size_t buffer_size)
        : buffer_size_(buffer_size) {}

    class Lease {
    public:
        Lease(BufferPool& pool, std::unique_ptr<char[]> buffer)
            : pool_(pool)
            , buffer_(std::move(buffer)) {}
        Lease(Lease&& other) noexcept
            : pool_(other.pool_)
            , buffer_(std::move(other.buffer_)) {}
        Lease& operator=(Lease&&) = delete;
        ~Lease() {
            if (buffer_)
                pool_.give_back(std::move(buffer_));
        }

        boost::asio::mutable_buffer whole() { return {buffer_.get(), pool_.buffer_size_}; }
        boost::asio::const_buffer prefix(std::size_t size) const { return {buffer_.get(), size}; }

    private:
        BufferPool& pool_;
        std::unique_ptr<char[]> buffer_;
    };

    Lease borrow() {
        if (free_.empty())
            return Lease(*this, std::make_unique_for_overwrite<char[]>(buffer_size_));
        auto buffer = std::move(free_.back());
        free_.pop_back();
        return Lease(*this, std::move(buffer));
    }

private:
    // Buffers beyond this many go back to the heap: a burst of blocked writers must not pin its
    // peak memory forever.
    static constexpr std::size_t max_free_buffers = 8;

    void give_back(std::unique_ptr<char[]> buffer) {
        if (free_.size() < max_free_buffers)
            free_.push_back(std::move(buffer));
    }

    std::size_t buffer_size_;
    std::vector<std::unique_ptr<char[]>> free_;
};

} // namespace uds_echo::daemon
