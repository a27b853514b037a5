// The three kinds of AF_UNIX socket uds-echo serves, and their names on the command line, in the
// config file, in the logs and in STATUS=.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <optional>
#include <string_view>

namespace uds_echo {

enum class SocketType : unsigned char {
    stream,    // SOCK_STREAM: a byte stream, echoed byte for byte
    seqpacket, // SOCK_SEQPACKET: connections that keep message boundaries
    datagram,  // SOCK_DGRAM: no connection, each datagram answered to its sender's address
};

// Every seqpacket message and datagram up to this size is echoed whole, whatever --buffer-size
// says; the client cuts its streamed input into messages of this size at most.
inline constexpr std::size_t guaranteed_message_size = 64 * 1024;

// The largest seqpacket message or datagram the daemon echoes whole for a --buffer-size: the
// buffer size, and never less than guaranteed_message_size.
constexpr std::size_t message_capacity(std::size_t buffer_size) {
    return buffer_size > guaranteed_message_size ? buffer_size : guaranteed_message_size;
}

inline constexpr SocketType all_socket_types[] = {SocketType::stream, SocketType::seqpacket,
                                                  SocketType::datagram};

constexpr std::string_view to_string(SocketType type) {
    switch (type) {
    case SocketType::stream:
        return "stream";
    case SocketType::seqpacket:
        return "seqpacket";
    case SocketType::datagram:
        return "datagram";
    }
    return "?";
}

// The `type` argument of socket(2).
constexpr int kernel_socket_type(SocketType type) {
    switch (type) {
    case SocketType::stream:
        return SOCK_STREAM;
    case SocketType::seqpacket:
        return SOCK_SEQPACKET;
    case SocketType::datagram:
        return SOCK_DGRAM;
    }
    return -1;
}

// From getsockopt(SO_TYPE); nullopt for a kind uds-echo does not serve (SOCK_RAW, ...).
constexpr std::optional<SocketType> socket_type_of_kernel(int kernel_type) {
    for (const auto type : all_socket_types)
        if (kernel_socket_type(type) == kernel_type)
            return type;
    return std::nullopt;
}

constexpr std::optional<SocketType> socket_type_named(std::string_view name) {
    for (const auto type : all_socket_types)
        if (to_string(type) == name)
            return type;
    return std::nullopt;
}

} // namespace uds_echo
