// Restart without cutting a connection, without PID 1: a datagram socket owned by the test plays
// systemd's file descriptor store (it keeps the descriptors FDSTORE=1 messages carry, with their
// names), and the next daemon gets them as LISTEN_FDS/LISTEN_FDNAMES, next to the listening
// socket, as systemd passes them at a restart. SIGUSR2 asks for the handover (uds-echod(8)).
#define BOOST_TEST_MODULE restart integration
#include <boost/test/unit_test.hpp>

#include "daemon/handover.hpp"
#include "process.hpp"
#include "streaming_clients.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using namespace uds_echo::test;

BOOST_TEST_GLOBAL_FIXTURE(RaiseDescriptorLimit);

namespace {

constexpr const char* listener_name = "uds-echo.socket";

// A stored descriptor and the name it was stored under.
struct Stored {
    std::string name;
    FileDescriptor fd;
};

// The receiving end of $NOTIFY_SOCKET, keeping what FDSTORE=1 messages bring, as systemd does.
class FakeStore {
public:
    explicit FakeStore(std::string path)
        : path_(std::move(path))
        , fd_(bind_unix(path_, SOCK_DGRAM)) {
        const int on = 1;
        if (::setsockopt(fd_.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0)
            throw std::runtime_error("SO_PASSCRED: " + std::string(std::strerror(errno)));
        // Read all the time, as systemd does: a sender whose datagrams are not read blocks in
        // sd_notify once the socket's queue is full (net.unix.max_dgram_qlen).
        reader_ = std::thread([this] {
            while (!stopping_) {
                pollfd readable{fd_.get(), POLLIN, 0};
                if (::poll(&readable, 1, 10) > 0)
                    receive();
            }
        });
    }
    FakeStore(const FakeStore&) = delete;
    FakeStore& operator=(const FakeStore&) = delete;
    ~FakeStore() {
        stopping_ = true;
        reader_.join();
    }

    const std::string& path() const { return path_; }

    // Everything queued so far (call when the sender has exited: all it sent is queued).
    void receive() {
        std::lock_guard lock(mutex_);
        for (;;) {
            char data[4096];
            iovec vector{data, sizeof data};
            alignas(cmsghdr) char
                control[CMSG_SPACE(sizeof(int) * uds_echo::daemon::max_fds_per_message) +
                        CMSG_SPACE(sizeof(ucred))];
            msghdr message{};
            message.msg_iov = &vector;
            message.msg_iovlen = 1;
            message.msg_control = control;
            message.msg_controllen = sizeof control;
            const auto size = ::recvmsg(fd_.get(), &message, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
            if (size < 0)
                return;
            // Not a Boost.Test assertion: this may run on the reader thread.
            if ((message.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) != 0)
                history_.push_back("truncated message");
            std::vector<FileDescriptor> fds;
            for (auto* header = CMSG_FIRSTHDR(&message); header != nullptr;
                 header = CMSG_NXTHDR(&message, header)) {
                if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS)
                    continue;
                const auto count = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (std::size_t i = 0; i < count; ++i) {
                    int fd;
                    std::memcpy(&fd, CMSG_DATA(header) + i * sizeof(int), sizeof fd);
                    fds.emplace_back(fd);
                }
            }
            const std::string text(data, static_cast<std::size_t>(size));
            history_.push_back(text);
            if (text.find("FDSTORE=1") == std::string::npos)
                continue;
            const auto name_at = text.find("FDNAME=");
            const std::string name =
                name_at == std::string::npos
                    ? "stored"
                    : text.substr(name_at + 7, text.find('\n', name_at) - name_at - 7);
            for (auto& fd : fds)
                stored_.push_back(Stored{name, std::move(fd)});
        }
    }

    // What was stored; read it after receive(), once the sender has exited.
    std::vector<Stored>& stored() { return stored_; }
    std::size_t count(const std::string& name) {
        std::lock_guard lock(mutex_);
        std::size_t count = 0;
        for (const auto& entry : stored_)
            count += entry.name == name;
        return count;
    }
    bool received(const std::string& text) {
        std::lock_guard lock(mutex_);
        for (const auto& message : history_)
            if (message.find(text) != std::string::npos)
                return true;
        return false;
    }

private:
    std::string path_;
    FileDescriptor fd_;
    std::vector<Stored> stored_;
    std::vector<std::string> history_;
    std::mutex mutex_;
    std::atomic<bool> stopping_{false};
    std::thread reader_;
};

// A daemon serving `listener` (at `socket`) plus the `passed` descriptors.
Daemon start_with(const TempDir& dir, const FileDescriptor& listener, const std::string& socket,
                  const std::vector<Stored>& passed, std::vector<std::string> args = {},
                  Environment environment = {}, bool wait_ready = true) {
    auto options = DaemonOptions::at(socket, std::move(args));
    options.pass_socket = false;
    options.wait_ready = wait_ready;
    options.listen_fds = {listener.get()};
    std::string names = listener_name;
    for (const auto& entry : passed) {
        options.listen_fds.push_back(entry.fd.get());
        names += ":" + entry.name;
    }
    options.environment = std::move(environment);
    options.environment["LISTEN_FDNAMES"] = names;
    return start_daemon(dir, options);
}

// What a test of a restart needs: a directory, the listening socket of the service, which
// outlives its daemons as a .socket unit's does, and the store.
struct Service {
    TempDir dir;
    std::string socket = dir.file("s.sock");
    FileDescriptor listener = listen_unix(socket);
    FakeStore store{dir.file("notify.sock")};

    Daemon start(const std::vector<Stored>& passed = {}, std::vector<std::string> args = {},
                 Environment environment = {}, bool wait_ready = true) {
        environment.try_emplace("NOTIFY_SOCKET", store.path());
        return start_with(dir, listener, socket, passed, std::move(args), std::move(environment),
                          wait_ready);
    }

    // The next daemon of a restart: it gets what the store holds, and asks the store to forget it.
    Daemon start_next(std::vector<std::string> args = {}, bool wait_ready = true) {
        auto next = start(store.stored(), std::move(args), {}, wait_ready);
        store.stored().clear();
        return next;
    }
};

// `count` connections, each of which has had `message` echoed.
std::vector<FileDescriptor> clients_that_echoed(const std::string& socket, int count,
                                                const std::string& message) {
    std::vector<FileDescriptor> clients;
    for (int i = 0; i < count; ++i) {
        clients.push_back(connect_unix(socket, 20s));
        write_all(clients.back().get(), message);
        BOOST_TEST(read_exact(clients.back().get(), message.size()) == message);
    }
    return clients;
}

ExitStatus wait_for_end(Daemon& daemon) {
    const auto status = daemon.process.wait_for_exit(30s);
    if (!status)
        throw std::runtime_error("still running; stderr: " + daemon.process.stderr_text());
    return *status;
}

bool logged(Daemon& daemon, const std::string& text) {
    return daemon.process.stderr_text().find(text) != std::string::npos;
}

// A sealed-free memory file holding `bytes`, to pass as a state.
FileDescriptor memory_file(const std::string& bytes) {
    FileDescriptor fd(::memfd_create("state", MFD_CLOEXEC));
    if (!bytes.empty() &&
        ::write(fd.get(), bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size()))
        throw std::runtime_error("cannot write a memory file");
    return fd;
}

std::string file_content(int fd) {
    std::string content;
    char buffer[4096];
    ssize_t got;
    for (off_t offset = 0; (got = ::pread(fd, buffer, sizeof buffer, offset)) > 0; offset += got)
        content.append(buffer, static_cast<std::size_t>(got));
    return content;
}

Stored& state_of(FakeStore& store) {
    for (auto& entry : store.stored())
        if (entry.name == uds_echo::daemon::state_fd_name)
            return entry;
    throw std::runtime_error("no state was stored");
}

// A restart as the test plays it: SIGUSR2 to `old`, which must exit 0 having stored `expected`
// connections; the descriptors it stored are in `store`.
void hand_over(Daemon& old, FakeStore& store, std::size_t expected) {
    old.process.signal(SIGUSR2);
    const auto status = wait_for_end(old);
    BOOST_TEST_REQUIRE(status.exited_with(0), status << "; stderr: " << old.process.stderr_text());
    store.receive();
    BOOST_TEST_REQUIRE(!store.received("truncated message"));
    // The connections wait in flight in one socket pair: three descriptors whatever their count.
    BOOST_TEST_REQUIRE(store.count(uds_echo::daemon::connections_fd_name) == 1u,
                       old.process.stderr_text());
    BOOST_TEST_REQUIRE(store.count(uds_echo::daemon::connections_peer_fd_name) == 1u);
    BOOST_TEST_REQUIRE(store.count(uds_echo::daemon::state_fd_name) == 1u);
    BOOST_TEST(logged(old, "handed over " + std::to_string(expected) + " connection(s)"),
               old.process.stderr_text());
}

// A drain that outlasts a slow machine: these tests stream through a drain and end their
// clients themselves, which under a sanitizer and a parallel test run can take longer than the
// default --shutdown-timeout of 5 s, after which the daemon cuts what is left (as it should;
// integration_signals tests the timeout).
const std::vector<std::string> long_drain = {"--shutdown-timeout", "120"};

// `count` clients streaming while `signal_number` makes `old` drain: they are echoed on until
// they end, every byte, and `old` exits 0. `old` must have been started with `long_drain`.
void streams_through_a_drain(Daemon& old, const std::string& socket, int signal_number,
                             std::size_t count) {
    StreamingClients streams(socket, count);
    BOOST_TEST_REQUIRE(wait_until([&] { return streams.least_received() >= 65536; }, 30s));
    old.process.signal(signal_number);
    BOOST_TEST(wait_until([&] { return logged(old, "draining " + std::to_string(count)); }, 10s),
               old.process.stderr_text());
    // Still echoing while it drains.
    const auto before = streams.least_received();
    BOOST_TEST(wait_until([&] { return streams.least_received() >= before + 65536; }, 30s));
    const auto errors = streams.finish();
    BOOST_TEST(errors.empty(), (errors.empty() ? "" : errors.front()));
    const auto status = wait_for_end(old);
    BOOST_TEST(status.exited_with(0), status << "; stderr: " << old.process.stderr_text());
    BOOST_TEST(!logged(old, "shutdown timeout: closed"), old.process.stderr_text());
}

// The central promise: clients streaming through a restart lose, duplicate or reorder nothing
// and never see an end of file or a reset; then the longest pause any of them saw.
std::chrono::milliseconds stream_through_restart(std::size_t count) {
    Service service;
    auto& store = service.store;
    const auto& socket = service.socket;
    auto old = service.start();

    StreamingClients streams(socket, count);
    BOOST_TEST_REQUIRE(wait_until([&] { return streams.least_received() >= 65536; }, 60s));
    hand_over(old, store, count);
    BOOST_TEST(store.count(uds_echo::daemon::state_fd_name) == 1u);

    auto next = service.start_next();
    const auto before = streams.least_received();
    BOOST_TEST(wait_until([&] { return streams.least_received() >= before + 65536; }, 60s),
               next.process.stderr_text());
    const auto errors = streams.finish();
    BOOST_TEST(errors.empty(), (errors.empty() ? "" : errors.front())
                                   << " and " << errors.size() - 1 << " more");
    BOOST_TEST(logged(next, "resuming " + std::to_string(count) + " connection(s)"),
               next.process.stderr_text());
    store.receive();
    for (const char* name :
         {uds_echo::daemon::connections_fd_name, uds_echo::daemon::connections_peer_fd_name,
          uds_echo::daemon::state_fd_name})
        BOOST_TEST(store.received(std::string("FDSTOREREMOVE=1\nFDNAME=") + name), name);
    BOOST_TEST(stop_daemon(next).exited_with(0));
    return streams.longest_pause();
}

} // namespace

BOOST_AUTO_TEST_CASE(streams_through_a_restart_at_100_connections) {
    const auto pause = stream_through_restart(100);
    BOOST_TEST_MESSAGE("100 connections: longest pause " << pause.count() << " ms");
}

BOOST_AUTO_TEST_CASE(streams_through_a_restart_at_1000_connections) {
    const auto pause = stream_through_restart(1000);
    BOOST_TEST_MESSAGE("1000 connections: longest pause " << pause.count() << " ms");
}

// A client that does not read while it writes: at the handover the daemon holds bytes it could
// not write back; they travel in the state and the new process writes them first.
BOOST_AUTO_TEST_CASE(bytes_pending_for_a_slow_reader_are_written_first) {
    Service service;
    auto& store = service.store;
    const auto& socket = service.socket;
    auto old = service.start();

    auto client = connect_unix(socket);
    const auto data = random_bytes(8 << 20, 7);
    std::size_t written = 0;
    ::fcntl(client.get(), F_SETFL, O_NONBLOCK);
    // Writes until nothing more goes in for 300 ms: both directions' buffers are full and the
    // daemon waits to write back.
    while (written < data.size()) {
        const auto sent =
            ::send(client.get(), data.data() + written, data.size() - written, MSG_NOSIGNAL);
        if (sent > 0) {
            written += static_cast<std::size_t>(sent);
            continue;
        }
        BOOST_REQUIRE(errno == EAGAIN);
        pollfd writable{client.get(), POLLOUT, 0};
        if (::poll(&writable, 1, 300) == 0)
            break;
    }
    BOOST_TEST_REQUIRE(written < data.size());
    hand_over(old, store, 1);

    std::string error;
    const auto records =
        uds_echo::daemon::decode_state(file_content(state_of(store).fd.get()), error);
    BOOST_TEST_REQUIRE(records.has_value(), error);
    BOOST_TEST_REQUIRE(records->size() == 1u);
    BOOST_TEST(!records->front().unsent.empty());

    auto next = service.start_next();
    ::fcntl(client.get(), F_SETFL, 0);
    const auto first = read_exact(client.get(), written);
    BOOST_TEST((first == data.substr(0, written)),
               "first difference at " << *first_difference(first, data));
    // The rest of the data goes through the new process.
    std::thread writer([&] { write_all(client.get(), data.substr(written)); });
    const auto rest = read_exact(client.get(), data.size() - written);
    writer.join();
    BOOST_TEST((rest == data.substr(written)));
    shutdown_write(client.get());
    BOOST_TEST(read_until_eof(client.get()).empty());
    BOOST_TEST(stop_daemon(next).exited_with(0));
}

// A seqpacket connection whose client stopped reading: at the handover the daemon holds one
// message it could not send back; it travels whole in the state, the new process sends it first,
// and every message comes back whole and in order, before and after the restart.
BOOST_AUTO_TEST_CASE(a_seqpacket_message_in_flight_is_handed_over_whole) {
    Service service;
    const auto seqpacket_path = service.dir.file("q.sock");
    const FileDescriptor seqpacket_listener = bind_unix(seqpacket_path, SOCK_SEQPACKET);
    BOOST_REQUIRE(::listen(seqpacket_listener.get(), SOMAXCONN) == 0);
    // Both listeners passed, as a .socket unit with ListenStream= and ListenSequentialPacket=
    // passes them, and the stored descriptors after them.
    const auto start = [&](const std::vector<Stored>& passed) {
        auto options = DaemonOptions::at(service.socket);
        options.pass_socket = false;
        options.listen_fds = {service.listener.get(), seqpacket_listener.get()};
        std::string names = std::string(listener_name) + ":" + listener_name;
        for (const auto& entry : passed) {
            options.listen_fds.push_back(entry.fd.get());
            names += ":" + entry.name;
        }
        options.environment = {{"NOTIFY_SOCKET", service.store.path()}, {"LISTEN_FDNAMES", names}};
        return start_daemon(service.dir, options);
    };
    auto old = start({});

    FileDescriptor client(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, seqpacket_path.c_str(), sizeof address.sun_path - 1);
    BOOST_REQUIRE(::connect(client.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) ==
                  0);
    const auto message = [](std::size_t index) {
        auto text = random_bytes(4000, index);
        text.replace(0, std::to_string(index).size(), std::to_string(index));
        return text;
    };
    // Sends until nothing more goes in for 300 ms: the client's receive queue is full and the
    // daemon waits to send one message back.
    std::size_t sent = 0;
    for (;;) {
        const auto data = message(sent);
        if (::send(client.get(), data.data(), data.size(), MSG_NOSIGNAL) > 0) {
            ++sent;
            continue;
        }
        BOOST_REQUIRE(errno == EAGAIN);
        pollfd writable{client.get(), POLLOUT, 0};
        if (::poll(&writable, 1, 300) == 0)
            break;
    }
    hand_over(old, service.store, 1);
    std::string error;
    const auto records =
        uds_echo::daemon::decode_state(file_content(state_of(service.store).fd.get()), error);
    BOOST_TEST_REQUIRE(records.has_value(), error);
    BOOST_TEST_REQUIRE(records->size() == 1u);
    BOOST_TEST(records->front().unsent.size() == 4000u); // one message, whole

    auto next = start(service.store.stored());
    service.store.stored().clear();
    ::fcntl(client.get(), F_SETFL, 0);
    set_io_timeout(client.get(), 10s);
    std::string echo(8000, '\0');
    for (std::size_t index = 0; index < sent + 10; ++index) {
        if (index >= sent) { // after the restart, through the new process
            const auto data = message(index);
            BOOST_REQUIRE(::send(client.get(), data.data(), data.size(), MSG_NOSIGNAL) == 4000);
        }
        const auto length = ::recv(client.get(), echo.data(), echo.size(), 0);
        BOOST_REQUIRE_MESSAGE(length == 4000, "message " << index << ": " << length << "; "
                                                         << next.process.stderr_text());
        BOOST_REQUIRE_MESSAGE(echo.substr(0, 4000) == message(index), "message " << index);
    }
    BOOST_TEST(stop_daemon(next).exited_with(0));
}

namespace {

// Connections handed over with the state replaced by `state`: the new process must close them
// (their clients see an end of file), say why in `expected_log`, and serve on.
void resume_rejects_state(const std::string& state, const std::string& expected_log) {
    Service service;
    auto& store = service.store;
    const auto& socket = service.socket;
    auto old = service.start();
    auto clients = clients_that_echoed(socket, 3, "before");
    hand_over(old, store, 3);
    state_of(store).fd = memory_file(state);

    auto next = service.start_next();
    for (auto& client : clients)
        BOOST_TEST(peer_closed(client.get(), 10s));
    BOOST_TEST(logged(next, expected_log), next.process.stderr_text());
    BOOST_TEST(echo_through(socket, "serves on") == "serves on");
    BOOST_TEST(next.process.running());
    BOOST_TEST(stop_daemon(next).exited_with(0));
}

std::string state_with_version(std::uint32_t version) {
    auto state = uds_echo::daemon::encode_state({});
    std::memcpy(state.data() + 8, &version, sizeof version);
    return state;
}

} // namespace

BOOST_AUTO_TEST_CASE(a_corrupt_state_closes_the_connections_cleanly) {
    resume_rejects_state("UDSECHO\x01 but then nonsense", "invalid handover state");
}

BOOST_AUTO_TEST_CASE(a_state_of_a_newer_version_closes_the_connections_cleanly) {
    resume_rejects_state(state_with_version(2), "state format version 2");
}

namespace {

// A socket pair as the old process leaves it in the store, its messages carrying `fds`.
std::vector<Stored> handover_carrying(std::vector<int> fds) {
    int ends[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ends) != 0)
        throw std::runtime_error("socketpair failed");
    std::vector<Stored> passed;
    passed.push_back(Stored{uds_echo::daemon::connections_peer_fd_name, FileDescriptor(ends[0])});
    passed.push_back(Stored{uds_echo::daemon::connections_fd_name, FileDescriptor(ends[1])});
    passed.push_back(
        Stored{uds_echo::daemon::state_fd_name, memory_file(uds_echo::daemon::encode_state({}))});
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)]{};
    char byte = 'c';
    iovec data{&byte, 1};
    msghdr message{};
    message.msg_iov = &data;
    message.msg_iovlen = 1;
    message.msg_control = control;
    message.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    auto* header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(header), fds.data(), sizeof(int) * fds.size());
    if (::sendmsg(ends[0], &message, 0) != 1)
        throw std::runtime_error("sendmsg failed");
    return passed;
}

} // namespace

// Descriptors in the pair that are not connected stream sockets are closed and logged; a
// connection next to them is resumed.
BOOST_AUTO_TEST_CASE(a_descriptor_of_the_wrong_kind_is_closed) {
    Service service;
    const auto& socket = service.socket;
    int pipe_ends[2];
    BOOST_REQUIRE(::pipe2(pipe_ends, O_CLOEXEC) == 0);
    FileDescriptor read_end(pipe_ends[0]);
    FileDescriptor write_end(pipe_ends[1]);
    FileDescriptor datagram(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    int pair[2];
    BOOST_REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
    FileDescriptor client(pair[0]);
    FileDescriptor connection(pair[1]);
    auto passed = handover_carrying({write_end.get(), datagram.get(), connection.get()});
    write_end.reset();
    connection.reset();
    auto daemon = service.start(passed);
    passed.clear();
    // The daemon's end of the pipe is closed: the reader sees the end.
    BOOST_TEST(wait_readable(read_end.get(), 10s));
    char byte;
    BOOST_TEST(::read(read_end.get(), &byte, 1) == 0);
    BOOST_TEST(logged(daemon, "closed 2 descriptor(s) passed in uds-echo-connections"),
               daemon.process.stderr_text());
    BOOST_TEST(logged(daemon, "resuming 1 connection(s)"), daemon.process.stderr_text());
    write_all(client.get(), "resumed");
    BOOST_TEST(read_exact(client.get(), 7) == "resumed");
    BOOST_TEST(echo_through(socket, "serves on") == "serves on");
    BOOST_TEST(stop_daemon(daemon).exited_with(0));
}

// Something else than a socket pair under the name of the pair: closed and logged, no crash.
BOOST_AUTO_TEST_CASE(a_pipe_passed_as_the_socket_pair_is_closed) {
    Service service;
    int pipe_ends[2];
    BOOST_REQUIRE(::pipe2(pipe_ends, O_CLOEXEC) == 0);
    FileDescriptor read_end(pipe_ends[0]);
    std::vector<Stored> passed;
    passed.push_back(Stored{uds_echo::daemon::connections_fd_name, FileDescriptor(pipe_ends[1])});
    auto daemon = service.start(passed);
    passed.clear();
    BOOST_TEST(wait_readable(read_end.get(), 10s));
    BOOST_TEST(logged(daemon, "not an AF_UNIX SOCK_SEQPACKET socket"),
               daemon.process.stderr_text());
    BOOST_TEST(echo_through(service.socket, "serves on") == "serves on");
    BOOST_TEST(stop_daemon(daemon).exited_with(0));
}

// A store that refuses everything (nothing listens at $NOTIFY_SOCKET): every connection is
// drained as at a stop, none is lost.
BOOST_AUTO_TEST_CASE(a_store_that_refuses_leaves_the_connections_to_the_drain) {
    Service service;
    const auto& socket = service.socket;
    // Nothing listens at $NOTIFY_SOCKET.
    auto old = service.start({}, long_drain, {{"NOTIFY_SOCKET", service.dir.file("nobody.sock")}});
    streams_through_a_drain(old, socket, SIGUSR2, 5);
    BOOST_TEST(logged(old, "handed over 0 connection(s)"), old.process.stderr_text());
}

// $FDSTORE (FileDescriptorStoreMax=, as systemd 254 and later export it) below the three
// descriptors the handover needs: nothing is stored, every connection is drained, none is lost.
BOOST_AUTO_TEST_CASE(a_store_too_small_for_the_handover_drains_every_connection) {
    Service service;
    auto& store = service.store;
    auto old = service.start({}, long_drain, {{"FDSTORE", "2"}});
    streams_through_a_drain(old, service.socket, SIGUSR2, 5);
    BOOST_TEST(logged(old, "has room for 2 descriptor(s); the handover needs 3"),
               old.process.stderr_text());
    BOOST_TEST(logged(old, "handed over 0 connection(s)"), old.process.stderr_text());
    store.receive();
    BOOST_TEST(store.stored().empty());
}

// Exactly enough room: everything goes, whatever the number of connections.
BOOST_AUTO_TEST_CASE(three_descriptors_of_store_carry_every_connection) {
    Service service;
    auto& store = service.store;
    auto old = service.start({}, {}, {{"FDSTORE", "3"}});
    auto clients = clients_that_echoed(service.socket, 300, "before");
    hand_over(old, store, 300);
    auto next = service.start_next();
    for (auto& client : clients) {
        write_all(client.get(), "after");
        BOOST_TEST(read_exact(client.get(), 5) == "after");
    }
    BOOST_TEST(logged(next, "resuming 300 connection(s)"), next.process.stderr_text());
    BOOST_TEST(stop_daemon(next).exited_with(0));
}

// --max-connections counts resumed connections: one over it is closed and logged.
BOOST_AUTO_TEST_CASE(resumed_connections_count_against_max_connections) {
    Service service;
    auto& store = service.store;
    const auto& socket = service.socket;
    auto old = service.start();
    auto clients = clients_that_echoed(socket, 2, "x");
    hand_over(old, store, 2);
    // Not waiting for an answer: the one slot is taken by a resumed connection.
    auto next = service.start_next({"--max-connections", "1"}, false);
    BOOST_TEST(wait_until([&] { return logged(next, "resumed beyond max-connections"); }, 10s),
               next.process.stderr_text());
    std::size_t closed = 0;
    for (auto& client : clients)
        closed += peer_closed(client.get(), 1s);
    BOOST_TEST(closed == 1u);
    BOOST_TEST(stop_daemon(next).exited_with(0));
}

// The allow lists of the new configuration apply to resumed peers: one no longer allowed is
// closed and logged.
BOOST_AUTO_TEST_CASE(resumed_peers_no_longer_allowed_are_closed) {
    Service service;
    auto& store = service.store;
    auto old = service.start();
    auto clients = clients_that_echoed(service.socket, 1, "x");
    hand_over(old, store, 1);
    const auto someone_else = std::to_string(::getuid() + 1);
    auto next = service.start_next({"--allow-uid", someone_else});
    BOOST_TEST(peer_closed(clients.front().get(), 10s));
    BOOST_TEST(logged(next, "refused: not in allow-uid or allow-gid"), next.process.stderr_text());
    BOOST_TEST(stop_daemon(next).exited_with(0));
}

// Without a restart (SIGTERM, and no service manager to say one follows) the daemon drains as
// always: nothing is stored, a streaming client is echoed to the end.
BOOST_AUTO_TEST_CASE(a_stop_drains_and_stores_nothing) {
    Service service;
    auto& store = service.store;
    const auto& socket = service.socket;
    auto old = service.start({}, long_drain);
    streams_through_a_drain(old, socket, SIGTERM, 3);
    store.receive();
    BOOST_TEST(store.stored().empty());
    BOOST_TEST(!store.received("FDSTORE=1"));
}
