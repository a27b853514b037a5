/*
 * epoll_echo: the hand-written reference echo server of the performance benchmark.
 *
 *   epoll_echo SOCKET_PATH [THREADS]
 *
 * Listens on the Unix stream socket SOCKET_PATH (an existing file there is unlinked first) and
 * echoes every byte it reads back to the same connection, until it is killed.
 *
 * Design, the plain way a careful C programmer would write it:
 *   - THREADS threads (default 1), each running its own epoll loop with its own 64 KiB read
 *     buffer. A connection belongs to the thread that accepted it for its whole life.
 *   - The non-blocking listening socket is shared: every thread's epoll watches it with
 *     EPOLLEXCLUSIVE, so one new connection wakes one thread, not all of them.
 *   - Connections are non-blocking (accept4 with SOCK_NONBLOCK | SOCK_CLOEXEC) and watched
 *     level-triggered: one read per readiness event keeps the connections of a thread fair.
 *   - Partial writes: the bytes the kernel did not take are copied into a per-connection backlog,
 *     the connection stops being watched for input and is watched for output (EPOLLOUT) until the
 *     backlog is drained. A client that does not read therefore stops the server from reading
 *     from it, and costs at most one read's worth of memory.
 *   - An idle connection costs its socket and a small struct; no buffer.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

enum {
    READ_BUFFER_SIZE = 64 * 1024,
    MAX_EVENTS = 256,
    MAX_THREADS = 256,
    LISTEN_BACKLOG = 4096,
};

/* One accepted connection. The backlog holds echoed bytes the kernel has not taken yet. */
struct connection {
    int fd;
    char* backlog;      /* NULL when nothing is pending */
    size_t backlog_len; /* bytes in backlog */
    size_t backlog_off; /* bytes of backlog already sent */
};

/* The epoll data of the listening socket is this marker; every other entry is a connection. */
static char listener_marker;

static int listen_fd = -1;

static void die(const char* what) {
    perror(what);
    exit(1);
}

static int watch(int epfd, int op, struct connection* conn, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.ptr = conn};
    return epoll_ctl(epfd, op, conn->fd, &ev);
}

static void close_connection(struct connection* conn) {
    close(conn->fd); /* also removes it from the epoll set */
    free(conn->backlog);
    free(conn);
}

/* Accept every pending connection (the listener is non-blocking) and watch each for input. */
static void accept_all(int epfd) {
    for (;;) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            /* EAGAIN: nothing left, or another thread took it. Anything else (EMFILE...):
             * give up for this wake-up; the reference does not need more than that. */
            return;
        }
        struct connection* conn = calloc(1, sizeof *conn);
        if (conn == NULL) {
            close(fd);
            continue;
        }
        conn->fd = fd;
        if (watch(epfd, EPOLL_CTL_ADD, conn, EPOLLIN) < 0) {
            close_connection(conn);
        }
    }
}

/*
 * Send what remains of the backlog. Returns 1 when it is drained, 0 when the kernel took only
 * part of it (wait for EPOLLOUT), -1 when the connection is broken.
 */
static int flush_backlog(struct connection* conn) {
    while (conn->backlog_off < conn->backlog_len) {
        ssize_t n = send(conn->fd, conn->backlog + conn->backlog_off,
                         conn->backlog_len - conn->backlog_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return -1;
        }
        conn->backlog_off += (size_t)n;
    }
    free(conn->backlog);
    conn->backlog = NULL;
    conn->backlog_len = conn->backlog_off = 0;
    return 1;
}

/*
 * Echo: send exactly the bytes just read. If the kernel takes only part of them, keep the rest
 * in the connection's backlog. Returns 1 when all was sent, 0 when a backlog remains, -1 on error.
 */
static int echo(struct connection* conn, const char* data, size_t len) {
    size_t sent = 0;
    while (sent < len) {
        ssize_t n = send(conn->fd, data + sent, len - sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return -1;
        }
        sent += (size_t)n;
    }
    if (sent == len)
        return 1;
    conn->backlog_len = len - sent;
    conn->backlog_off = 0;
    conn->backlog = malloc(conn->backlog_len);
    if (conn->backlog == NULL)
        return -1;
    memcpy(conn->backlog, data + sent, conn->backlog_len);
    return 0;
}

/* Input is ready: one read, one echo. The connection is closed at end of file or on error. */
static void on_readable(int epfd, struct connection* conn, char* buffer) {
    ssize_t n = recv(conn->fd, buffer, READ_BUFFER_SIZE, 0);
    if (n < 0) {
        if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        close_connection(conn);
        return;
    }
    if (n == 0) {
        /* End of file: everything read has been sent (we never read while a backlog exists). */
        close_connection(conn);
        return;
    }
    int status = echo(conn, buffer, (size_t)n);
    if (status < 0) {
        close_connection(conn);
    } else if (status == 0) {
        /* The client is not reading fast enough: stop reading from it until the backlog is out. */
        if (watch(epfd, EPOLL_CTL_MOD, conn, EPOLLOUT) < 0)
            close_connection(conn);
    }
}

/* Output is possible again: drain the backlog, then go back to watching for input. */
static void on_writable(int epfd, struct connection* conn) {
    int status = flush_backlog(conn);
    if (status < 0) {
        close_connection(conn);
    } else if (status == 1) {
        if (watch(epfd, EPOLL_CTL_MOD, conn, EPOLLIN) < 0)
            close_connection(conn);
    }
}

static void* event_loop(void* unused) {
    (void)unused;
    char* buffer = malloc(READ_BUFFER_SIZE); /* this thread's read buffer, shared by its clients */
    if (buffer == NULL)
        die("malloc");
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die("epoll_create1");
    struct epoll_event listen_ev = {.events = EPOLLIN | EPOLLEXCLUSIVE,
                                    .data.ptr = &listener_marker};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, listen_fd, &listen_ev) < 0)
        die("epoll_ctl(listener)");

    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int count = epoll_wait(epfd, events, MAX_EVENTS, -1);
        if (count < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < count; ++i) {
            if (events[i].data.ptr == &listener_marker) {
                accept_all(epfd);
                continue;
            }
            struct connection* conn = events[i].data.ptr;
            /* Errors and hang-ups are noticed by the next read or send. */
            if (conn->backlog != NULL)
                on_writable(epfd, conn);
            else
                on_readable(epfd, conn, buffer);
        }
    }
    return NULL;
}

int main(int argc, char** argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s SOCKET_PATH [THREADS]\n", argv[0]);
        return 2;
    }
    const char* path = argv[1];
    long threads = argc == 3 ? strtol(argv[2], NULL, 10) : 1;
    if (threads < 1 || threads > MAX_THREADS) {
        fprintf(stderr, "%s: THREADS must be 1-%d\n", argv[0], MAX_THREADS);
        return 2;
    }

    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof addr.sun_path) {
        fprintf(stderr, "%s: socket path too long\n", argv[0]);
        return 2;
    }
    strcpy(addr.sun_path, path);

    signal(SIGPIPE, SIG_IGN); /* belt and braces: every send already has MSG_NOSIGNAL */

    listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listen_fd < 0)
        die("socket");
    unlink(path);
    if (bind(listen_fd, (struct sockaddr*)&addr, sizeof addr) < 0)
        die("bind");
    if (listen(listen_fd, LISTEN_BACKLOG) < 0)
        die("listen");

    /* Threads 1..N-1 are new; the main thread runs the first loop itself. */
    for (long i = 1; i < threads; ++i) {
        pthread_t thread;
        if (pthread_create(&thread, NULL, event_loop, NULL) != 0)
            die("pthread_create");
        pthread_detach(thread);
    }
    event_loop(NULL);
    return 0;
}
