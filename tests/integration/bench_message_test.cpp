// `uds-echo bench --type seqpacket|datagram` (uds-echo(1), bench): every echoed message checked
// whole and in order against the real uds-echod, datagram replies that never came counted and
// reported, the datagram pipeline held to the kernel's receive queue limit, and fake servers that
// corrupt, reorder or drop messages caught.
#define BOOST_TEST_MODULE integration_bench_message
#include <boost/test/unit_test.hpp>

#include "client_checks.hpp"
#include "process.hpp"

#include <boost/property_tree/json_parser.hpp>
#include <boost/property_tree/ptree.hpp>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace uds_echo::test;

namespace {

// A daemon serving all three types in a directory of its own.
struct MessageDaemonFixture {
    TempDir dir;
    std::string seqpacket = dir.file("q.sock");
    std::string datagram = dir.file("d.sock");
    Daemon daemon = start_daemon(dir, DaemonOptions::with_args({"--seqpacket-socket", seqpacket,
                                                                "--datagram-socket", datagram}));
};

unsigned datagram_queue_limit() {
    std::ifstream file("/proc/sys/net/unix/max_dgram_qlen");
    unsigned limit = 10;
    file >> limit;
    return limit;
}

// What a fake server does with message number `index` (counted from 0 over the whole run): the
// messages to send back (none drops it, two reorder).
using Reply = std::function<std::vector<std::string>(std::size_t index, std::string message)>;

// A fake message server at `path` of `type` (SOCK_SEQPACKET: one connection; SOCK_DGRAM: answers
// each sender) on a thread of its own until destroyed.
class FakeMessageServer {
public:
    FakeMessageServer(const std::string& path, int type, Reply reply)
        : type_(type)
        , reply_(std::move(reply)) {
        fd_ = ::socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
        sockaddr_un address{};
        address.sun_family = AF_UNIX;
        std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
        BOOST_REQUIRE(::bind(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof address) ==
                      0);
        if (type == SOCK_SEQPACKET)
            BOOST_REQUIRE(::listen(fd_, 8) == 0);
        thread_ = std::thread([this] { serve(); });
    }
    FakeMessageServer(const FakeMessageServer&) = delete;
    FakeMessageServer& operator=(const FakeMessageServer&) = delete;
    ~FakeMessageServer() {
        stop_ = true;
        thread_.join();
        if (connection_ >= 0)
            ::close(connection_);
        ::close(fd_);
    }

private:
    // Waits for `fd` to be readable while not stopped.
    bool readable(int fd) {
        pollfd entry{fd, POLLIN, 0};
        while (!stop_)
            if (::poll(&entry, 1, 50) > 0)
                return true;
        return false;
    }

    void serve() {
        if (type_ == SOCK_SEQPACKET) {
            if (!readable(fd_))
                return;
            connection_ = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
        }
        const int fd = type_ == SOCK_SEQPACKET ? connection_ : fd_;
        std::vector<char> buffer(70000);
        for (std::size_t index = 0; readable(fd); ++index) {
            sockaddr_un sender{};
            socklen_t length = sizeof sender;
            const ssize_t count = ::recvfrom(fd, buffer.data(), buffer.size(), 0,
                                             reinterpret_cast<sockaddr*>(&sender), &length);
            if (count <= 0)
                return;
            for (const auto& message :
                 reply_(index, std::string(buffer.data(), static_cast<std::size_t>(count))))
                ::sendto(fd, message.data(), message.size(), MSG_NOSIGNAL,
                         type_ == SOCK_DGRAM ? reinterpret_cast<const sockaddr*>(&sender) : nullptr,
                         type_ == SOCK_DGRAM ? length : 0);
        }
    }

    const int type_;
    const Reply reply_;
    int fd_ = -1;
    int connection_ = -1;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

std::vector<std::string> echo(std::size_t, std::string message) {
    return {std::move(message)};
}

} // namespace

BOOST_FIXTURE_TEST_CASE(bench_seqpacket_counts_every_message_echoed_whole, MessageDaemonFixture) {
    for (const char* size : {"1", "100", "64K"}) {
        const auto result =
            run_client({"--type", "seqpacket", "bench", "-s", seqpacket, "-n", "2000", "-c", "4",
                        "--pipeline", "8", "--threads", "2", "--size", size, "--json"});
        check_exit(result, exit_ok);
        const auto json = parse_json(result.out);
        BOOST_TEST(json.get<std::string>("type") == "seqpacket");
        BOOST_TEST(json_integer(json, "messages") == 2000);
        BOOST_TEST(json_integer(json, "errors") == 0);
        BOOST_TEST(json.get<std::string>("replies_lost") == "null");
    }
    const auto churn =
        run_client({"--type", "seqpacket", "bench", "-s", seqpacket, "--churn", "-n", "200"});
    check_exit(churn, exit_ok);
    BOOST_TEST(contains(churn.out, "churn: seqpacket, 10 connections"), churn.out);
}

BOOST_FIXTURE_TEST_CASE(bench_datagram_reports_messages_and_lost_replies, MessageDaemonFixture) {
    const auto result = run_client({"--type", "datagram", "bench", "-s", datagram, "-n", "3000",
                                    "-c", "4", "--pipeline", "8", "--size", "200", "--json"});
    check_exit(result, exit_ok);
    const auto json = parse_json(result.out);
    BOOST_TEST(json.get<std::string>("type") == "datagram");
    // The daemon may drop a reply; then it is counted, never silently missing.
    BOOST_TEST(json_integer(json, "messages") + json_integer(json, "replies_lost") == 3000);
    BOOST_TEST(json_integer(json, "errors") == 0);

    const auto text =
        run_client({"--type", "datagram", "bench", "-s", datagram, "-d", "0.3", "-c", "2"});
    check_exit(text, exit_ok);
    for (const char* part : {"bench: datagram, 2 sockets", "msg/s", "p99 ", "lost        ",
                             "replies never came", "errors      0"})
        BOOST_TEST(contains(text.out, part), "stdout lacks '" << part << "': " << text.out);
}

BOOST_FIXTURE_TEST_CASE(bench_datagram_pipeline_is_held_to_the_receive_queue_limit,
                        MessageDaemonFixture) {
    const unsigned limit = datagram_queue_limit();
    const auto result = run_client({"--type", "datagram", "bench", "-s", datagram, "-n", "2000",
                                    "-c", "2", "--pipeline", std::to_string(limit + 50), "--json"});
    check_exit(result, exit_ok);
    const auto json = parse_json(result.out);
    BOOST_TEST(json_integer(json, "pipeline") == limit);
    BOOST_TEST(json_integer(json, "pipeline_asked") == limit + 50);
}

BOOST_AUTO_TEST_CASE(bench_datagram_counts_the_replies_a_server_drops) {
    TempDir dir;
    const auto path = dir.file("d.sock");
    // Every seventh reply dropped; the run still ends well and says how many.
    FakeMessageServer server(path, SOCK_DGRAM, [](std::size_t index, std::string message) {
        return index % 7 == 3 ? std::vector<std::string>{} : echo(index, std::move(message));
    });
    const auto result = run_client({"--type", "datagram", "bench", "-s", path, "-n", "700", "-c",
                                    "1", "--pipeline", "4", "-t", "0.5", "--json"});
    check_exit(result, exit_ok);
    const auto json = parse_json(result.out);
    BOOST_TEST(json_integer(json, "replies_lost") == 100);
    BOOST_TEST(json_integer(json, "messages") == 600);
}

BOOST_AUTO_TEST_CASE(bench_message_types_fail_on_a_corrupted_reordered_or_cut_echo) {
    struct Case {
        int type;
        const char* name;
        Reply reply;
        const char* error;
    };
    const Case cases[] = {
        {SOCK_SEQPACKET, "seqpacket",
         [](std::size_t index, std::string message) {
             if (index == 500)
                 message[10] ^= 1;
             return echo(index, std::move(message));
         },
         "the echo differed from message 500"},
        {SOCK_DGRAM, "datagram",
         [](std::size_t index, std::string message) {
             if (index == 500)
                 message[10] ^= 1;
             return echo(index, std::move(message));
         },
         "the echo differed from message 500"},
        {SOCK_SEQPACKET, "seqpacket",
         [](std::size_t index, std::string message) {
             if (index == 300)
                 message.pop_back();
             return echo(index, std::move(message));
         },
         "echoed a message of 63 bytes for one of 64 bytes"},
        // Replies 400 and 401 swapped: 401 first makes 400 look lost, then 400 is none of the
        // messages still in flight (402 on).
        {SOCK_DGRAM, "datagram",
         [held = std::make_shared<std::string>()](std::size_t index, std::string message) {
             if (index == 400) {
                 *held = std::move(message);
                 return std::vector<std::string>{};
             }
             if (index == 401)
                 return std::vector<std::string>{std::move(message), *held};
             return echo(index, std::move(message));
         },
         "the echo differed from message 402 sent on a datagram socket and from every later"},
    };
    for (const auto& c : cases) {
        TempDir dir;
        const auto path = dir.file("m.sock");
        FakeMessageServer server(path, c.type, c.reply);
        const auto result = run_client({"--type", c.name, "bench", "-s", path, "-n", "1000", "-c",
                                        "1", "--pipeline", "4", "--json"});
        check_exit(result, exit_data_error);
        BOOST_TEST(contains(result.err, c.error), c.name << ": " << result.err);
    }
}

BOOST_AUTO_TEST_CASE(bench_datagram_has_no_churn) {
    const auto result = run_client({"--type", "datagram", "bench", "--churn", "-n", "5"});
    check_exit(result, exit_usage);
    BOOST_TEST(contains(result.err, "--churn: datagrams have no connections"), result.err);
}
