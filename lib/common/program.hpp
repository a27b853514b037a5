// How every program of the project ends: a Failure becomes its one-line message on standard error
// and its exit code; any other exception is reported the same way as an OS error.
#pragma once

#include "common/exit_codes.hpp"

#include <exception>
#include <iostream>

namespace uds_echo {

template <typename Body>
int run_program(const char* name, Body&& body) {
    try {
        return body();
    } catch (const Failure& failure) {
        std::cerr << name << ": " << failure.what() << '\n';
        return to_int(failure.code());
    } catch (const std::exception& error) {
        std::cerr << name << ": " << error.what() << '\n';
        return to_int(ExitCode::os_error);
    }
}

} // namespace uds_echo
