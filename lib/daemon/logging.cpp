#include "daemon/logging.hpp"

#include "common/text.hpp"

#include <boost/core/null_deleter.hpp>
#include <boost/log/core.hpp>
#include <boost/log/expressions.hpp>
#include <boost/log/sinks/sync_frontend.hpp>
#include <boost/log/sinks/text_ostream_backend.hpp>
#include <boost/log/utility/manipulators/add_value.hpp>

#include <sys/stat.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <mutex>
#include <string_view>

namespace uds_echo::daemon {

namespace logging = boost::log;
namespace expr = boost::log::expressions;
namespace sinks = boost::log::sinks;

namespace {

BOOST_LOG_ATTRIBUTE_KEYWORD(severity_keyword, "Severity", LogLevel)

using Sink = sinks::synchronous_sink<sinks::text_ostream_backend>;
std::mutex sink_mutex;
boost::shared_ptr<Sink> current_sink;

// journald maps `<N>` to the priority; trace has no syslog level of its own and goes as debug.
int syslog_priority(LogLevel level) {
    return level == LogLevel::trace ? 7 : static_cast<int>(level);
}

// UTC with microseconds: log lines from different threads stay comparable and sortable.
std::string timestamp_now() {
    timespec now{};
    clock_gettime(CLOCK_REALTIME, &now);
    tm utc{};
    gmtime_r(&now.tv_sec, &utc);
    char text[40];
    const auto length = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
    std::snprintf(text + length, sizeof text - length, ".%06ldZ", now.tv_nsec / 1000);
    return text;
}

void format_record(LogFormat format, const std::string& program, logging::record_view const& record,
                   logging::formatting_ostream& stream) {
    const auto level_value = record[severity_keyword];
    const auto level = level_value ? *level_value : LogLevel::info;
    const auto message_value = record[expr::smessage];
    const std::string_view message = message_value ? std::string_view(*message_value) : "";
    switch (format) {
    case LogFormat::journal:
        // journald adds its own timestamp and the unit name.
        stream << '<' << syslog_priority(level) << '>' << message;
        break;
    case LogFormat::json: {
        std::string line = "{\"time\":\"" + timestamp_now() + "\",\"level\":\"";
        line += to_string(level);
        line += "\",\"program\":";
        append_json_string(line, program);
        line += ",\"message\":";
        append_json_string(line, message);
        for (const auto& [name, value] : record.attribute_values()) {
            if (const auto number = value.extract<std::int64_t>()) {
                line += ',';
                append_json_string(line, name.string());
                line += ':' + std::to_string(*number);
            }
        }
        line += '}';
        stream << line;
        break;
    }
    case LogFormat::automatic:
    case LogFormat::text:
        stream << timestamp_now() << ' ' << program << ' ' << to_string(level) << ": " << message;
        break;
    }
}

} // namespace

logging::record_ostream& operator<<(logging::record_ostream& out, const LogField& field) {
    return out << logging::add_value(field.name, field.value);
}

std::optional<LogLevel> parse_log_level(const std::string& name) {
    for (auto level :
         {LogLevel::trace, LogLevel::debug, LogLevel::info, LogLevel::warning, LogLevel::error}) {
        if (name == to_string(level))
            return level;
    }
    return std::nullopt;
}

std::optional<LogFormat> parse_log_format(const std::string& name) {
    for (auto format :
         {LogFormat::automatic, LogFormat::text, LogFormat::journal, LogFormat::json}) {
        if (name == to_string(format))
            return format;
    }
    return std::nullopt;
}

const char* to_string(LogLevel level) {
    switch (level) {
    case LogLevel::trace:
        return "trace";
    case LogLevel::debug:
        return "debug";
    case LogLevel::info:
        return "info";
    case LogLevel::warning:
        return "warning";
    case LogLevel::error:
        return "error";
    }
    return "unknown";
}

const char* to_string(LogFormat format) {
    switch (format) {
    case LogFormat::automatic:
        return "auto";
    case LogFormat::text:
        return "text";
    case LogFormat::journal:
        return "journal";
    case LogFormat::json:
        return "json";
    }
    return "unknown";
}

bool stderr_is_journal() {
    // systemd.exec(5): JOURNAL_STREAM is "device:inode" of the stream; a child whose stderr was
    // redirected elsewhere inherits the variable, so the descriptor itself must be compared.
    const char* value = std::getenv("JOURNAL_STREAM");
    if (value == nullptr)
        return false;
    unsigned long long device = 0;
    unsigned long long inode = 0;
    if (std::sscanf(value, "%llu:%llu", &device, &inode) != 2)
        return false;
    struct stat status {};
    if (fstat(STDERR_FILENO, &status) != 0)
        return false;
    return status.st_dev == device && status.st_ino == inode;
}

void init_logging(LogLevel level, LogFormat format, const std::string& program_name) {
    if (format == LogFormat::automatic)
        format = stderr_is_journal() ? LogFormat::journal : LogFormat::text;

    auto backend = boost::make_shared<sinks::text_ostream_backend>();
    backend->add_stream(boost::shared_ptr<std::ostream>(&std::clog, boost::null_deleter()));
    backend->auto_flush(true);
    auto sink = boost::make_shared<Sink>(backend);
    sink->set_formatter([format, program_name](logging::record_view const& record,
                                               logging::formatting_ostream& stream) {
        format_record(format, program_name, record, stream);
    });

    auto core = logging::core::get();
    {
        std::lock_guard lock(sink_mutex);
        if (current_sink)
            core->remove_sink(current_sink);
        current_sink = sink;
        core->add_sink(sink);
    }
    set_log_level(level);
    // Lower values are more severe (syslog order), so a record passes when its value is at most
    // the minimum level's.
    core->set_filter([](logging::attribute_value_set const& values) {
        const auto level = values[severity_keyword];
        return !level || static_cast<int>(*level) <=
                             detail::minimum_log_level.load(std::memory_order_relaxed);
    });
}

void set_log_level(LogLevel level) {
    detail::minimum_log_level.store(static_cast<int>(level), std::memory_order_relaxed);
}

} // namespace uds_echo::daemon
