#include "daemon/service_manager.hpp"

#include <systemd/sd-bus.h>

#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace uds_echo::daemon {
namespace {

constexpr const char* systemd_service = "org.freedesktop.systemd1";
// A stop must not wait long for an answer: TimeoutStopSec= runs meanwhile.
constexpr std::uint64_t call_timeout_usec = 1000000;

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

StopIntent ask_service_manager() {
    sd_bus* raw_bus = nullptr;
    if (const int result = sd_bus_open_system(&raw_bus); result < 0)
        return stop(std::string("cannot reach the system bus: ") + std::strerror(-result));
    const Bus bus(raw_bus);
    sd_bus_set_method_call_timeout(bus.get(), call_timeout_usec);

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

} // namespace uds_echo::daemon
