#include "daemon/service_manager.hpp"

#include "common/file_descriptor.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fcntl.h>
#include <sys/socket.h>
#include <systemd/sd-bus.h>
#include <unistd.h>

#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>

namespace uds_echo::daemon {
namespace {

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;

constexpr const char* systemd_service = "org.freedesktop.systemd1";

struct BusCloser {
    void operator()(sd_bus* bus) const { sd_bus_flush_close_unref(bus); }
};
struct FreeCloser {
    void operator()(char* text) const { std::free(text); }
};
using Bus = std::unique_ptr<sd_bus, BusCloser>;
struct MessageCloser {
    void operator()(sd_bus_message* message) const { sd_bus_message_unref(message); }
};
using Text = std::unique_ptr<char, FreeCloser>;
using Message = std::unique_ptr<sd_bus_message, MessageCloser>;

// sd_bus_error freed whatever path the code takes.
class BusError {
public:
    BusError() = default;
    BusError(const BusError&) = delete;
    BusError& operator=(const BusError&) = delete;
    ~BusError() { sd_bus_error_free(&error_); }
    sd_bus_error* get() { return &error_; }
    std::string describe(int result) const {
        return error_.message != nullptr ? error_.message : std::strerror(-result);
    }

private:
    sd_bus_error error_ = SD_BUS_ERROR_NULL;
};

StopIntent stop(std::string reason) {
    return StopIntent{false, std::nullopt, std::move(reason)};
}

bool is_restart(const std::string& job_type) {
    return job_type == "restart" || job_type == "try-restart" || job_type == "reload-or-restart";
}

// FileDescriptorStoreMax= less what the store already holds; nullopt when it cannot be read.
std::optional<std::size_t> store_room(sd_bus* bus, const char* unit_path) {
    BusError error;
    std::uint32_t max = 0;
    if (sd_bus_get_property_trivial(bus, systemd_service, unit_path,
                                    "org.freedesktop.systemd1.Service", "FileDescriptorStoreMax",
                                    error.get(), 'u', &max) < 0)
        return std::nullopt;
    BusError count_error;
    std::uint32_t stored = 0;
    if (sd_bus_get_property_trivial(bus, systemd_service, unit_path,
                                    "org.freedesktop.systemd1.Service", "NFileDescriptorStore",
                                    count_error.get(), 'u', &stored) < 0)
        stored = 0;
    return max > stored ? max - stored : 0;
}

const char* bus_name(ManagerBus bus) {
    return bus == ManagerBus::system ? "system bus" : "user bus";
}

// What the asking thread and the awaiting coroutine share. The thread publishes the bus's socket
// once connected; when the time is up the coroutine shuts that socket down, which wakes the
// thread from any sd-bus call at once (the peer's end of a socket shut down reads as a hang-up),
// so that the thread can be joined without waiting for the bus.
class Question {
public:
    // False when the coroutine has given up already: the thread then stops.
    bool publish(int fd) {
        const std::lock_guard lock(mutex_);
        fd_ = fd;
        return !given_up_;
    }
    // Before the bus is closed, so that the number is never shut down once reused.
    void withdraw() {
        const std::lock_guard lock(mutex_);
        fd_ = -1;
    }
    void give_up() {
        const std::lock_guard lock(mutex_);
        given_up_ = true;
        if (fd_ >= 0)
            ::shutdown(fd_, SHUT_RDWR);
    }

private:
    std::mutex mutex_;
    int fd_ = -1;
    bool given_up_ = false;
};

// The questions themselves, blocking: run on the asking thread.
StopIntent ask(ManagerBus which, std::chrono::milliseconds limit, Question& question) {
    sd_bus* raw_bus = nullptr;
    const int opened =
        which == ManagerBus::system ? sd_bus_open_system(&raw_bus) : sd_bus_open_user(&raw_bus);
    if (opened < 0)
        return stop(std::string("cannot reach the ") + bus_name(which) + ": " +
                    std::strerror(-opened));
    const Bus bus(raw_bus);
    if (!question.publish(sd_bus_get_fd(bus.get())))
        return stop("given up");
    struct Withdraw {
        Question& question;
        ~Withdraw() { question.withdraw(); }
    } const withdraw{question}; // destroyed before `bus`
    sd_bus_set_method_call_timeout(bus.get(), static_cast<std::uint64_t>(limit.count()) * 1000);
    // The unit of this process, as systemd knows it from the bus's credentials of the caller (pid
    // 0). Not sd_pid_get_unit(3): it reads /proc/1/cgroup, which ProtectProc=invisible hides.
    BusError unit_error;
    sd_bus_message* raw_unit_reply = nullptr;
    if (const int result =
            sd_bus_call_method(bus.get(), systemd_service, "/org/freedesktop/systemd1",
                               "org.freedesktop.systemd1.Manager", "GetUnitByPID", unit_error.get(),
                               &raw_unit_reply, "u", std::uint32_t{0});
        result < 0)
        return stop("not in a systemd unit (" + unit_error.describe(result) + ")");
    const Message unit_reply(raw_unit_reply);
    const char* path = nullptr;
    if (const int result = sd_bus_message_read(unit_reply.get(), "o", &path); result < 0)
        return stop(std::string("unexpected unit reply: ") + std::strerror(-result));
    const std::string unit_path = path;

    // Job: (uo), the queued job's number (0: none) and object.
    BusError job_error;
    sd_bus_message* raw_reply = nullptr;
    if (const int result = sd_bus_get_property(bus.get(), systemd_service, unit_path.c_str(),
                                               "org.freedesktop.systemd1.Unit", "Job",
                                               job_error.get(), &raw_reply, "(uo)");
        result < 0)
        return stop("cannot read the job of " + unit_path + ": " + job_error.describe(result));
    const Message reply(raw_reply);
    std::uint32_t job_id = 0;
    const char* job_path = nullptr;
    if (const int result = sd_bus_message_read(reply.get(), "(uo)", &job_id, &job_path); result < 0)
        return stop(std::string("unexpected job property: ") + std::strerror(-result));
    if (job_id == 0)
        return stop("no job queued for " + unit_path);

    BusError type_error;
    char* type_text = nullptr;
    if (const int result = sd_bus_get_property_string(bus.get(), systemd_service, job_path,
                                                      "org.freedesktop.systemd1.Job", "JobType",
                                                      type_error.get(), &type_text);
        result < 0)
        return stop("cannot read the job type: " + type_error.describe(result));
    const Text type(type_text);
    const std::string job_type = type.get();
    if (!is_restart(job_type))
        return stop("the job queued for " + unit_path + " is a " + job_type);
    auto room = store_room_from_environment();
    if (!room)
        room = store_room(bus.get(), unit_path.c_str());
    // Storing more than the store takes would have systemd close the rest: with no size known,
    // drain.
    if (!room)
        return stop("a restart, but the size of the file descriptor store cannot be read");
    return StopIntent{true, room, "the job queued for " + unit_path + " is a " + job_type};
}

} // namespace

std::optional<std::size_t> store_room_from_environment() {
    const char* text = std::getenv("FDSTORE");
    if (text == nullptr || *text == '\0')
        return std::nullopt;
    std::size_t value = 0;
    const auto end = text + std::strlen(text);
    const auto [rest, failure] = std::from_chars(text, end, value);
    if (failure != std::errc{} || rest != end)
        return std::nullopt;
    return value;
}

ManagerBus manager_bus_from_environment() {
    const char* manager = std::getenv("MANAGERPID");
    return manager != nullptr && *manager != '\0' ? ManagerBus::user : ManagerBus::system;
}

asio::awaitable<StopIntent> ask_service_manager(ManagerBus bus, std::chrono::milliseconds limit) {
    int ends[2];
    if (::pipe2(ends, O_CLOEXEC) != 0)
        co_return stop(std::string("cannot ask: pipe2: ") + std::strerror(errno));
    const auto executor = co_await asio::this_coro::executor;
    asio::posix::stream_descriptor answered(executor, ends[0]);
    const FileDescriptor answered_writer(ends[1]);

    Question question;
    StopIntent answer;
    // Joined on every path: should this frame be destroyed while the thread runs, the thread is
    // woken and joined first.
    struct Asker {
        Question& question;
        std::thread thread;
        ~Asker() {
            if (thread.joinable()) {
                question.give_up();
                thread.join();
            }
        }
    } asker{question, std::thread([&] {
                answer = ask(bus, limit, question);
                const char done = 1;
                [[maybe_unused]] const auto written = ::write(answered_writer.get(), &done, 1);
            })};
    asio::steady_timer time_up(executor, limit);
    constexpr auto as_tuple = asio::as_tuple(asio::use_awaitable);
    const auto first =
        co_await (answered.async_wait(asio::posix::descriptor_base::wait_read, as_tuple) ||
                  time_up.async_wait(as_tuple));
    const bool in_time = first.index() == 0;
    if (!in_time)
        question.give_up();
    asker.thread.join();
    if (!in_time)
        co_return stop(std::string("no answer on the ") + bus_name(bus) + " within " +
                       std::to_string(limit.count()) + " ms");
    co_return answer;
}

} // namespace uds_echo::daemon
