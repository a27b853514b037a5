/*
 * epoll_message_echo: the hand-written reference echo servers of the benchmark for the message
 * sockets, the counterpart of epoll_echo.c for SOCK_SEQPACKET and SOCK_DGRAM.
 *
 *   epoll_message_echo seqpacket|datagram SOCKET_PATH
 *
 * Binds SOCKET_PATH (an existing file there is unlinked first; "@name" is an abstract name) and
 * echoes until it is killed. One thread, one epoll loop, one 64 KiB message buffer:
 *   - seqpacket: listens; every accepted connection is non-blocking and watched level-triggered;
 *     one readiness event, one recv() of one message, one send() of it back. A message the kernel
 *     cannot take yet is kept (the only copy) and the connection watched for output until it is
 *     sent; meanwhile nothing more is read from it. A message longer than the buffer (MSG_TRUNC)
 *     closes the connection, as uds-echod does.
 *   - datagram: every datagram is answered with one non-blocking sendto() to its sender; a reply
 *     that would block is dropped, never waited for. Senders without an abstract address are not
 *     answered, the same rule as uds-echod's.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

enum {
    MESSAGE_SIZE = 64 * 1024,
    MAX_EVENTS = 256,
    LISTEN_BACKLOG = 4096,
};

struct connection {
    int fd;
    char* pending; /* a message the kernel has not taken yet, or NULL */
    size_t pending_len;
};

static char buffer[MESSAGE_SIZE];
static char listener_marker;

static void die(const char* what) {
    perror(what);
    exit(1);
}

static socklen_t make_address(const char* path, struct sockaddr_un* address) {
    size_t length = strlen(path);
    memset(address, 0, sizeof *address);
    address->sun_family = AF_UNIX;
    if (length >= sizeof address->sun_path) {
        fprintf(stderr, "path too long: %s\n", path);
        exit(1);
    }
    if (path[0] == '@') {
        memcpy(address->sun_path + 1, path + 1, length - 1);
        return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + length);
    }
    memcpy(address->sun_path, path, length);
    unlink(path);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + length + 1);
}

static int watch(int epfd, int op, int fd, void* data, uint32_t events) {
    struct epoll_event event = {.events = events, .data.ptr = data};
    return epoll_ctl(epfd, op, fd, &event);
}

static void close_connection(struct connection* conn) {
    close(conn->fd);
    free(conn->pending);
    free(conn);
}

/* One message in, one message out; returns 0 when the connection is over. */
static int echo_message(int epfd, struct connection* conn) {
    ssize_t length = recv(conn->fd, buffer, sizeof buffer, MSG_TRUNC);
    if (length < 0)
        return errno == EAGAIN || errno == EINTR;
    if (length == 0 || (size_t)length > sizeof buffer)
        return 0;
    if (send(conn->fd, buffer, (size_t)length, MSG_NOSIGNAL) == length)
        return 1;
    if (errno != EAGAIN)
        return 0;
    conn->pending = malloc((size_t)length);
    if (conn->pending == NULL)
        return 0;
    memcpy(conn->pending, buffer, (size_t)length);
    conn->pending_len = (size_t)length;
    return watch(epfd, EPOLL_CTL_MOD, conn->fd, conn, EPOLLOUT) == 0;
}

static int send_pending(int epfd, struct connection* conn) {
    if (send(conn->fd, conn->pending, conn->pending_len, MSG_NOSIGNAL) < 0)
        return errno == EAGAIN;
    free(conn->pending);
    conn->pending = NULL;
    return watch(epfd, EPOLL_CTL_MOD, conn->fd, conn, EPOLLIN) == 0;
}

static void serve_seqpacket(int listen_fd) {
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0 || watch(epfd, EPOLL_CTL_ADD, listen_fd, &listener_marker, EPOLLIN) != 0)
        die("epoll");
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int count = epoll_wait(epfd, events, MAX_EVENTS, -1);
        if (count < 0 && errno == EINTR)
            continue;
        if (count < 0)
            die("epoll_wait");
        for (int i = 0; i < count; ++i) {
            if (events[i].data.ptr == &listener_marker) {
                int fd;
                while ((fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    struct connection* conn = calloc(1, sizeof *conn);
                    if (conn == NULL) {
                        close(fd);
                        continue;
                    }
                    conn->fd = fd;
                    if (watch(epfd, EPOLL_CTL_ADD, fd, conn, EPOLLIN) != 0)
                        close_connection(conn);
                }
                continue;
            }
            struct connection* conn = events[i].data.ptr;
            int alive = conn->pending != NULL ? send_pending(epfd, conn) : echo_message(epfd, conn);
            if (!alive)
                close_connection(conn);
        }
    }
}

static void serve_datagram(int fd) {
    for (;;) {
        struct sockaddr_un sender;
        socklen_t sender_length = sizeof sender;
        ssize_t length = recvfrom(fd, buffer, sizeof buffer, MSG_TRUNC,
                                  (struct sockaddr*)&sender, &sender_length);
        if (length < 0) {
            if (errno == EINTR)
                continue;
            die("recvfrom");
        }
        if ((size_t)length > sizeof buffer)
            continue;
        if (sender_length <= offsetof(struct sockaddr_un, sun_path) + 1 || sender.sun_path[0] != 0)
            continue;
        sendto(fd, buffer, (size_t)length, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr*)&sender,
               sender_length);
    }
}

int main(int argc, char** argv) {
    if (argc != 3 || (strcmp(argv[1], "seqpacket") != 0 && strcmp(argv[1], "datagram") != 0)) {
        fprintf(stderr, "usage: %s seqpacket|datagram SOCKET_PATH\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    const int seqpacket = strcmp(argv[1], "seqpacket") == 0;
    /* The datagram loop blocks in recvfrom: with one socket, epoll would add a system call. */
    int fd = socket(AF_UNIX, (seqpacket ? SOCK_SEQPACKET | SOCK_NONBLOCK : SOCK_DGRAM) | SOCK_CLOEXEC,
                    0);
    if (fd < 0)
        die("socket");
    struct sockaddr_un address;
    socklen_t length = make_address(argv[2], &address);
    if (bind(fd, (struct sockaddr*)&address, length) != 0)
        die("bind");
    if (seqpacket) {
        if (listen(fd, LISTEN_BACKLOG) != 0)
            die("listen");
        serve_seqpacket(fd);
    } else {
        serve_datagram(fd);
    }
    return 0;
}
