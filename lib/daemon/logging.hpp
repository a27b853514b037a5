// Logging through Boost.Log (--log-level, --log-format).
#pragma once

#include <boost/log/sources/global_logger_storage.hpp>
#include <boost/log/sources/record_ostream.hpp>
#include <boost/log/sources/severity_logger.hpp>

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>

namespace uds_echo::daemon {

// Ordered by severity; the values are the syslog priorities that journald understands in a `<N>`
// prefix.
enum class LogLevel : int { trace = 8, debug = 7, info = 6, warning = 4, error = 3 };

enum class LogFormat { automatic, text, journal, json };

std::optional<LogLevel> parse_log_level(const std::string& name);
std::optional<LogFormat> parse_log_format(const std::string& name);
const char* to_string(LogLevel level);
const char* to_string(LogFormat format);

// True when stderr is the journal stream named by $JOURNAL_STREAM (device and inode compared with
// fstat of fd 2, as systemd.exec(5) asks).
bool stderr_is_journal();

// Sets up the one stderr sink. `automatic` becomes `journal` when stderr_is_journal(), else `text`.
// Safe to call again (SIGHUP) to change level or format.
void init_logging(LogLevel level, LogFormat format, const std::string& program_name);

// Changes the minimum level at run time.
void set_log_level(LogLevel level);

namespace detail {
inline std::atomic<int> minimum_log_level{static_cast<int>(LogLevel::info)};
}

// Asked before Boost.Log is: a record that Boost.Log filters out still costs a lock and a lookup of
// its attributes, too much for the debug lines a busy worker skips on every connection.
inline bool log_enabled(LogLevel level) {
    return static_cast<int>(level) <= detail::minimum_log_level.load(std::memory_order_relaxed);
}

// A number that belongs to a log line as a field of its own, such as the peer's "pid": streamed
// into UDS_LOG, --log-format json writes it next to the message, where a log reader can filter on
// it. The text formats leave it out; the message says what a person needs.
struct LogField {
    const char* name;
    std::int64_t value;
};
boost::log::record_ostream& operator<<(boost::log::record_ostream& out, const LogField& field);

BOOST_LOG_INLINE_GLOBAL_LOGGER_DEFAULT(logger, boost::log::sources::severity_logger_mt<LogLevel>)

} // namespace uds_echo::daemon

// Usage: UDS_LOG(info) << "text"; the stream expression is evaluated only when the level is on.
#define UDS_LOG(level)                                                                             \
    for (bool uds_log_enabled =                                                                    \
             ::uds_echo::daemon::log_enabled(::uds_echo::daemon::LogLevel::level);                 \
         uds_log_enabled; uds_log_enabled = false)                                                 \
    BOOST_LOG_SEV(::uds_echo::daemon::logger::get(), ::uds_echo::daemon::LogLevel::level)
