#include "daemon/worker_pool.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <utility>

namespace uds_echo::daemon {
namespace {

namespace asio = boost::asio;

constexpr auto as_tuple_awaitable = asio::as_tuple(asio::use_awaitable);

} // namespace

WorkerPool::WorkerPool(asio::io_context& control, unsigned count, std::size_t buffer_size,
                       const WorkerSettings& settings, Listeners listeners,
                       std::function<void(const char* why)> one_connection_over)
    : control_(control)
    , one_connection_over_(listeners.stream < 0 && listeners.seqpacket < 0
                               ? std::move(one_connection_over)
                               : nullptr)
    , refusals_(control)
    , all_done_(control) {
    for (unsigned i = 0; i < count; ++i)
        workers_.push_back(std::make_unique<Worker>(i, buffer_size, settings,
                                                    i == 0 ? listeners : Listeners{}, *this));
}

void WorkerPool::start() {
    for (auto& worker : workers_)
        worker->start();
}

void WorkerPool::join() {
    for (auto& worker : workers_)
        worker->join();
}

void WorkerPool::serve_connected(int fd) {
    auto& worker = *workers_.front();
    worker.reserve();
    worker.post([&worker, fd] { worker.serve_connected(fd); });
}

void WorkerPool::resume(std::vector<HandedConnection> connections, unsigned limit) {
    std::vector<std::vector<HandedConnection>> shares(workers_.size());
    std::size_t next = 0;
    for (auto& connection : connections) {
        if (connections_held() >= limit) {
            refusals_.add(++shared_.accepted, peer_credentials(connection.fd.get()),
                          "resumed beyond max-connections");
            continue;
        }
        const auto index = next++ % workers_.size();
        workers_[index]->reserve();
        shares[index].push_back(std::move(connection));
    }
    for (std::size_t i = 0; i < workers_.size(); ++i) {
        if (shares[i].empty())
            continue;
        auto& worker = *workers_[i];
        worker.post(
            [&worker, share = std::move(shares[i])]() mutable { worker.resume(std::move(share)); });
    }
}

void WorkerPool::apply(const WorkerSettings& settings) {
    for (auto& worker : workers_)
        worker->post([&worker = *worker, settings] { worker.apply(settings); });
}

// The accepting worker takes `step` first, on its own thread, and only then posts it to the
// others. Every step stops the accept loop, so no connection is handed out after it; and one
// handed out before was counted on its worker (Worker::reserve()) before it was posted there, so
// that worker does not finish while it is on its way.
template <typename Step>
void WorkerPool::for_each_worker_accepting_first(Step step) {
    workers_.front()->post([this, step] {
        step(*workers_.front());
        for (auto other = workers_.begin() + 1; other != workers_.end(); ++other)
            (*other)->post([&worker = **other, step] { step(worker); });
    });
}

asio::awaitable<std::vector<HandedConnection>> WorkerPool::hand_over(std::chrono::seconds timeout) {
    workers_busy_ = workers_.size();
    for_each_worker_accepting_first([](Worker& worker) { worker.begin_handover(); });
    co_await wait_for_every_worker(timeout);
    co_return std::exchange(handed_, {});
}

asio::awaitable<std::uint64_t> WorkerPool::drain(std::chrono::seconds timeout) {
    workers_busy_ = workers_.size();
    for_each_worker_accepting_first([](Worker& worker) { worker.begin_drain(); });
    co_await wait_for_every_worker(timeout);
    refusals_.stop(); // no worker is left to refuse anyone
    std::uint64_t cut = 0;
    for (const auto& worker : workers_)
        cut += worker->connections_cut();
    co_return cut;
}

// worker_done() cancels the wait when the last worker is done. Workers report by posting to this
// thread, so none is counted before the wait begins.
asio::awaitable<void> WorkerPool::wait_for_every_worker(std::chrono::seconds timeout) {
    all_done_.expires_after(timeout);
    co_await all_done_.async_wait(as_tuple_awaitable);
    if (workers_busy_ > 0) {
        force_close();
        all_done_.expires_at(asio::steady_timer::time_point::max());
        co_await all_done_.async_wait(as_tuple_awaitable);
    }
}

void WorkerPool::worker_done() {
    if (--workers_busy_ == 0)
        all_done_.cancel();
}

void WorkerPool::force_close() {
    for (auto& worker : workers_)
        worker->post([&worker = *worker] { worker.force_close(); });
}

bool WorkerPool::every_worker_ran(std::uint64_t beat) const {
    return std::all_of(workers_.begin(), workers_.end(),
                       [beat](const auto& worker) { return worker->heartbeat() == beat; });
}

void WorkerPool::post_heartbeat(std::uint64_t beat) {
    for (auto& worker : workers_)
        worker->post([&worker = *worker, beat] { worker.set_heartbeat(beat); });
}

unsigned WorkerPool::connections_held() const {
    unsigned held = 0;
    for (const auto& worker : workers_)
        held += worker->held();
    return held;
}

std::uint64_t WorkerPool::bytes_echoed() const {
    std::uint64_t bytes = 0;
    for (const auto& worker : workers_)
        bytes += worker->bytes_echoed();
    return bytes;
}

// The connection goes to the worker with the fewest connections if that has fewer than the
// accepting worker, and otherwise stays where it is, at no cost. A worker's count can be a moment
// old; the balance only needs to be rough.
bool WorkerPool::hand_out_on_worker_thread(int fd, SocketType type) {
    Worker* least = workers_.front().get();
    unsigned least_held = least->held();
    for (auto other = workers_.begin() + 1; other != workers_.end(); ++other) {
        if (const auto held = (*other)->held(); held < least_held) {
            least = other->get();
            least_held = held;
        }
    }
    if (least == workers_.front().get())
        return false;
    least->reserve();
    least->post([least, fd, type] { least->serve_accepted(fd, type); });
    return true;
}

void WorkerPool::refused_on_worker_thread(std::uint64_t id, std::optional<PeerCredentials> peer,
                                          const char* reason) {
    asio::post(control_, [this, id, peer, reason] {
        refusals_.add(id, peer, reason);
        if (one_connection_over_)
            one_connection_over_("connection refused");
    });
    workers_.front()->wake_accept_loop();
}

void WorkerPool::session_ended_on_worker_thread() {
    if (one_connection_over_)
        asio::post(control_, [this] { one_connection_over_("connection closed"); });
    else
        workers_.front()->wake_accept_loop();
}

void WorkerPool::let_go_on_worker_thread(std::vector<HandedConnection> connections) {
    asio::post(control_, [this, connections = std::move(connections)]() mutable {
        for (auto& connection : connections)
            handed_.push_back(std::move(connection));
        worker_done();
    });
}

void WorkerPool::drained_on_worker_thread() {
    asio::post(control_, [this] { worker_done(); });
}

} // namespace uds_echo::daemon
