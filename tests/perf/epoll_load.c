/*
 * epoll_load: the hand-written reference load generator of the performance benchmark, the
 * yardstick for `uds-echo bench` and a load that saturates the servers it drives.
 *
 *   epoll_load SOCKET_PATH [-c CONNS] [--size BYTES] [--pipeline N] [-d SECONDS]
 *              [--warmup SECONDS] [--churn]
 *
 * The same load as `uds-echo bench` with the same options: CONNS connections, each with up to N
 * messages of BYTES in flight (several sent in one send() when several slots are free), or with
 * --churn CONNS slots that each open a connection, send one message, read its echo and close.
 * Every echoed byte is compared with what was sent. Messages sent during the warm-up are not
 * counted; the rate is the measured messages over the time from the end of the warm-up to the last
 * measured echo. Prints one JSON object with the field names of `uds-echo bench --json`; exits 1
 * on any error (a wrong byte, a closed connection, a failed system call).
 *
 * The plain way a careful C programmer would write it: one thread, one epoll set, level-triggered,
 * non-blocking sockets, one 64 KiB read buffer, one recv() per readiness event. A connection is
 * watched for output only while the kernel has not taken all it was given. The payload is a
 * pseudo-random table of a prime period; a connection's stream starts at its own offset in it, so
 * a message is sent from the table and checked against it without copying.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

enum {
    PERIOD = 65521,
    MAX_BATCH = 256 * 1024,
    READ_BUFFER_SIZE = 64 * 1024,
    MAX_EVENTS = 256,
    SUB_BUCKET_BITS = 7,
    SUB_BUCKETS = 1 << SUB_BUCKET_BITS,
    MAX_EXPONENT = 40,
    BUCKETS = SUB_BUCKETS * (MAX_EXPONENT - SUB_BUCKET_BITS + 2),
};

struct connection {
    int fd;
    uint64_t send_offset;    /* stream offset of the next byte to send */
    uint64_t receive_offset; /* stream offset of the next byte expected back */
    uint64_t unsent;         /* bytes of the last batch the kernel has not taken yet */
    uint64_t sent;           /* messages sent */
    uint64_t received;       /* messages completely echoed */
    size_t partial;          /* bytes of the oldest message in flight already back */
    int64_t* send_times;     /* ring of pipeline entries: when each message in flight left */
    int watching_output;
    int done;
};

static struct {
    const char* path;
    unsigned connections, pipeline;
    size_t size;
    double duration, warmup;
    int churn;
} options = {NULL, 10, 1, 64, 5.0, 0.0, 0};

static char* pattern; /* PERIOD + span bytes: any span bytes from any offset < PERIOD */
static int epfd;
static char buffer[READ_BUFFER_SIZE];
static int64_t measure_start, measure_end;
static uint64_t measured_messages, measured_connections;
static int64_t last_completion;
static uint64_t latency_counts[BUCKETS], latency_count, latency_max;
static unsigned active;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void fail(const char* what) {
    fprintf(stderr, "epoll_load: %s\n", what);
    printf("{\"errors\":1,\"error\":\"%s\"}\n", what);
    exit(1);
}

static void fail_errno(const char* what) {
    char text[200];
    snprintf(text, sizeof text, "%s: %s", what, strerror(errno));
    fail(text);
}

/* Log-linear buckets: each power of two split into SUB_BUCKETS (as uds-echo bench does). */
static size_t bucket_of(uint64_t value) {
    if (value < SUB_BUCKETS)
        return (size_t)value;
    unsigned exponent = 63u - (unsigned)__builtin_clzll(value);
    if (exponent > MAX_EXPONENT)
        return BUCKETS - 1;
    unsigned shift = exponent - SUB_BUCKET_BITS;
    return SUB_BUCKETS + (size_t)(exponent - SUB_BUCKET_BITS) * SUB_BUCKETS +
           (size_t)(value >> shift) - SUB_BUCKETS;
}

static double bucket_middle_us(size_t bucket) {
    if (bucket < SUB_BUCKETS)
        return (double)bucket / 1e3;
    size_t group = (bucket - SUB_BUCKETS) / SUB_BUCKETS, sub = (bucket - SUB_BUCKETS) % SUB_BUCKETS;
    double low = (double)((uint64_t)(SUB_BUCKETS + sub) << group);
    return (low + (double)((uint64_t)1 << group) / 2) / 1e3;
}

static double percentile_us(double fraction) {
    uint64_t rank = (uint64_t)ceil(fraction * (double)latency_count), seen = 0;
    if (rank < 1)
        rank = 1;
    if (rank >= latency_count)
        return (double)latency_max / 1e3;
    for (size_t b = 0; b < BUCKETS; ++b) {
        seen += latency_counts[b];
        if (seen >= rank)
            return bucket_middle_us(b);
    }
    return (double)latency_max / 1e3;
}

static void message_done(int64_t sent_at, int64_t now) {
    if (sent_at < measure_start || sent_at >= measure_end)
        return;
    uint64_t latency = (uint64_t)(now - sent_at);
    ++latency_counts[bucket_of(latency)];
    ++latency_count;
    if (latency > latency_max)
        latency_max = latency;
    ++measured_messages;
    if (options.churn)
        ++measured_connections;
    if (now > last_completion)
        last_completion = now;
}

static void verify(struct connection* conn, size_t count) {
    if (memcmp(buffer, pattern + conn->receive_offset % PERIOD, count) != 0)
        fail("the echo differed from what was sent");
    conn->receive_offset += count;
}

static void watch(struct connection* conn, int op, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.ptr = conn};
    if (epoll_ctl(epfd, op, conn->fd, &ev) < 0)
        fail_errno("epoll_ctl");
}

static int connect_socket(void) {
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strncpy(addr.sun_path, options.path, sizeof addr.sun_path - 1);
    for (;;) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            fail_errno("socket");
        if (connect(fd, (struct sockaddr*)&addr, sizeof addr) == 0)
            return fd;
        int error = errno;
        close(fd);
        if (error != EAGAIN && error != EINTR) {
            errno = error;
            fail_errno("connect");
        }
        /* The listen backlog is full: a short pause, then again. */
        struct timespec pause = {0, 100000};
        nanosleep(&pause, NULL);
    }
}

/* Send the rest of the current batch; watch for output while the kernel takes only part. */
static void send_unsent(struct connection* conn) {
    while (conn->unsent > 0) {
        size_t chunk = (size_t)conn->unsent;
        ssize_t n = send(conn->fd, pattern + conn->send_offset % PERIOD, chunk, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                fail_errno("send");
            break;
        }
        conn->send_offset += (uint64_t)n;
        conn->unsent -= (uint64_t)n;
    }
    int want_output = conn->unsent > 0;
    if (want_output != conn->watching_output) {
        watch(conn, EPOLL_CTL_MOD, EPOLLIN | (want_output ? EPOLLOUT : 0));
        conn->watching_output = want_output;
    }
}

/* Fill the free slots of a pipelined connection with one batch, if sending is still allowed. */
static void send_batch(struct connection* conn, int64_t now) {
    if (conn->unsent > 0 || now >= measure_end)
        return;
    uint64_t free = options.pipeline - (conn->sent - conn->received);
    uint64_t fit = MAX_BATCH / options.size;
    uint64_t count = free < fit ? free : (fit > 0 ? fit : 1);
    if (count == 0)
        return;
    for (uint64_t i = 0; i < count; ++i)
        conn->send_times[(conn->sent + i) % options.pipeline] = now;
    conn->sent += count;
    conn->unsent = count * options.size;
    send_unsent(conn);
}

static void finish(struct connection* conn) {
    close(conn->fd);
    conn->done = 1;
    --active;
}

/*
 * Output and input of one readiness event: the rest of a batch, then one recv() and the check of
 * its bytes. Returns the bytes received, 0 when there was nothing to read yet.
 */
static size_t receive(struct connection* conn, uint32_t events) {
    if (events & EPOLLOUT)
        send_unsent(conn);
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return 0;
    ssize_t n = recv(conn->fd, buffer, sizeof buffer, 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return 0;
        fail_errno("recv");
    }
    if (n == 0)
        fail("the server closed a connection with messages in flight");
    if (conn->receive_offset + (uint64_t)n > conn->send_offset + conn->unsent)
        fail("the server sent more bytes than it was sent");
    verify(conn, (size_t)n);
    conn->partial += (size_t)n;
    return (size_t)n;
}

static void on_pipelined(struct connection* conn, uint32_t events) {
    if (receive(conn, events) == 0)
        return;
    int64_t now = now_ns();
    while (conn->partial >= options.size) {
        conn->partial -= options.size;
        message_done(conn->send_times[conn->received % options.pipeline], now);
        ++conn->received;
    }
    send_batch(conn, now);
    if (conn->sent == conn->received && now >= measure_end)
        finish(conn);
}

/* Churn: a new connection, one message (its send time kept in send_times[0]). */
static void churn_start(struct connection* conn) {
    int64_t now = now_ns();
    if (now >= measure_end) {
        conn->done = 1;
        --active;
        return;
    }
    conn->send_times[0] = now;
    conn->fd = connect_socket();
    conn->receive_offset = conn->send_offset;
    conn->partial = 0;
    conn->watching_output = 0;
    watch(conn, EPOLL_CTL_ADD, EPOLLIN);
    conn->unsent = options.size;
    send_unsent(conn);
}

static void on_churn(struct connection* conn, uint32_t events) {
    if (receive(conn, events) == 0 || conn->partial < options.size)
        return;
    message_done(conn->send_times[0], now_ns());
    close(conn->fd); /* also leaves the epoll set */
    /* The next message continues the stream a prime step further on. */
    conn->send_offset += 4099;
    churn_start(conn);
}

static void usage(const char* self) {
    fprintf(stderr,
            "usage: %s SOCKET_PATH [-c CONNS] [--size BYTES] [--pipeline N] [-d SECONDS]\n"
            "          [--warmup SECONDS] [--churn]\n",
            self);
    exit(2);
}

static void parse(int argc, char** argv) {
    static const struct option long_options[] = {
        {"connections", required_argument, NULL, 'c'}, {"size", required_argument, NULL, 's'},
        {"pipeline", required_argument, NULL, 'p'},    {"duration", required_argument, NULL, 'd'},
        {"warmup", required_argument, NULL, 'w'},      {"churn", no_argument, NULL, 'C'},
        {NULL, 0, NULL, 0}};
    int option;
    while ((option = getopt_long(argc, argv, "c:s:p:d:w:", long_options, NULL)) != -1) {
        switch (option) {
        case 'c': options.connections = (unsigned)strtoul(optarg, NULL, 10); break;
        case 's': options.size = (size_t)strtoul(optarg, NULL, 10); break;
        case 'p': options.pipeline = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'd': options.duration = strtod(optarg, NULL); break;
        case 'w': options.warmup = strtod(optarg, NULL); break;
        case 'C': options.churn = 1; break;
        default: usage(argv[0]);
        }
    }
    if (optind + 1 != argc || options.connections < 1 || options.size < 1 ||
        options.pipeline < 1 || options.duration <= 0 || options.warmup < 0)
        usage(argv[0]);
    options.path = argv[optind];
    if (options.churn)
        options.pipeline = 1;
}

int main(int argc, char** argv) {
    parse(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    size_t span = options.size > MAX_BATCH ? options.size : MAX_BATCH;
    pattern = malloc(PERIOD + span);
    if (pattern == NULL)
        fail("out of memory");
    uint64_t random = 0x7564736563686f31u;
    for (size_t i = 0; i < PERIOD; ++i) {
        random ^= random << 13, random ^= random >> 7, random ^= random << 17;
        pattern[i] = (char)random;
    }
    for (size_t i = PERIOD; i < PERIOD + span; ++i)
        pattern[i] = pattern[i % PERIOD];

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        fail_errno("epoll_create1");
    struct connection* conns = calloc(options.connections, sizeof *conns);
    if (conns == NULL)
        fail("out of memory");
    /* Pipelined connections are all open before the clock starts, as in uds-echo bench. */
    for (unsigned i = 0; i < options.connections; ++i) {
        struct connection* conn = &conns[i];
        conn->send_offset = conn->receive_offset = (uint64_t)i * 7919;
        conn->send_times = calloc(options.pipeline, sizeof *conn->send_times);
        if (conn->send_times == NULL)
            fail("out of memory");
        if (!options.churn) {
            conn->fd = connect_socket();
            watch(conn, EPOLL_CTL_ADD, EPOLLIN);
        }
    }
    int64_t start = now_ns();
    measure_start = start + (int64_t)(options.warmup * 1e9);
    measure_end = measure_start + (int64_t)(options.duration * 1e9);
    active = options.connections;
    for (unsigned i = 0; i < options.connections; ++i) {
        if (options.churn)
            churn_start(&conns[i]);
        else
            send_batch(&conns[i], start);
    }

    struct epoll_event events[MAX_EVENTS];
    while (active > 0) {
        int count = epoll_wait(epfd, events, MAX_EVENTS, 1000);
        if (count < 0) {
            if (errno == EINTR)
                continue;
            fail_errno("epoll_wait");
        }
        for (int i = 0; i < count; ++i) {
            struct connection* conn = events[i].data.ptr;
            if (conn->done)
                continue;
            if (options.churn)
                on_churn(conn, events[i].events);
            else
                on_pipelined(conn, events[i].events);
        }
    }

    double seconds = (double)(last_completion - measure_start) / 1e9;
    double rate = seconds > 0 ? (double)measured_messages / seconds : 0;
    printf("{\"mode\":\"%s\",\"connections\":%u,\"size\":%zu,\"pipeline\":%u,"
           "\"messages\":%llu,\"errors\":0,\"seconds\":%.6f,\"messages_per_second\":%.1f,"
           "\"mib_per_second\":%.3f,\"connections_per_second\":",
           options.churn ? "churn" : "pipelined", options.connections, options.size,
           options.pipeline, (unsigned long long)measured_messages, seconds, rate,
           rate * (double)options.size / (1024.0 * 1024.0));
    if (options.churn)
        printf("%.1f", seconds > 0 ? (double)measured_connections / seconds : 0);
    else
        printf("null");
    printf(",\"latency_us\":{\"p50\":%.3f,\"p99\":%.3f}}\n", percentile_us(0.50),
           percentile_us(0.99));
    return 0;
}
