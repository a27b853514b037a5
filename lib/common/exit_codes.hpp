// Exit codes shared by uds-echod and uds-echo (sysexits.h values, see docs/protocol.md).
#pragma once

#include <stdexcept>
#include <string>

namespace uds_echo {

enum class ExitCode : int {
    ok = 0,
    usage = 64,         // EX_USAGE: bad command line
    data_error = 65,    // EX_DATAERR: the echo differed
    unavailable = 69,   // EX_UNAVAILABLE: no daemon at the socket
    software = 70,      // EX_SOFTWARE: internal error
    os_error = 71,      // EX_OSERR: any other OS error
    cannot_create = 73, // EX_CANTCREAT: cannot create or bind the socket
    temp_failure = 75,  // EX_TEMPFAIL: timeout
    no_permission = 77, // EX_NOPERM: permission denied
    config = 78,        // EX_CONFIG: bad configuration or unusable passed socket
};

constexpr int to_int(ExitCode code) {
    return static_cast<int>(code);
}

// The one error type for everything that ends a program with a message: the message is a complete
// one-line sentence for the user, the code is the exit status that goes with it.
class Failure : public std::runtime_error {
public:
    Failure(ExitCode code, const std::string& message)
        : std::runtime_error(message)
        , code_(code) {}

    ExitCode code() const { return code_; }

private:
    ExitCode code_;
};

} // namespace uds_echo
