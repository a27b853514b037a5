#!/usr/bin/env python3
"""Measure the pause clients see while uds-echod restarts, from the client side.

    restart_pause.py [options] SOCKET_PATH COUNT -- RESTART_COMMAND...

Opens COUNT connections to SOCKET_PATH and sends a small, numbered message on each: between
restarts the next one is sent when the echo of the previous one has come back and at least
--interval seconds after the previous send. Every echo must be exactly the message sent. Then,
--restarts times, it runs RESTART_COMMAND (e.g. systemctl restart uds-echo.service) while the
traffic goes on and measures, for each connection, the longest time one of its messages waited
for its echo around the restart (its pause) and when data moved again: the echo that ended that
wait. The command's own duration is reported too. A restart is over once every connection has had
the echo of a message sent after the command returned, which only the new process can have echoed.

From the moment the command is started until the restart is over, every connection keeps a message
in flight: those waiting for their interval send at once, and each echo is answered by the next
message without waiting. So every connection has a message waiting while no process reads it, and
data moves again on it when the new process first answers it, not when the interval lets the
client send again; and the pause is the wait of one message, not the time between two echoes,
which would include the interval (with the interval alone a pause could not be told from an
interval longer than it). A message sent just before the old process stopped reading waits the
whole pause.

Prints one line per restart and exits 1 if a connection closed, an echo differed, the command
failed, or a restart did not end within --timeout seconds. The descriptor limit is raised to what
COUNT needs (as root, beyond the hard limit).
"""
import argparse
import heapq
import os
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import time


class Connection:
    __slots__ = ("index", "sock", "sequence", "expected", "received", "sent_at", "echoes",
                 "served")

    def __init__(self, index, sock):
        self.index = index
        self.sock = sock
        self.sequence = 0
        self.expected = b""
        self.received = b""
        self.sent_at = 0.0
        # (arrival time, time since the message was sent) of each echo since the restart began.
        self.echoes = []
        # Whether a message sent after the restart command returned has come back.
        self.served = False


def message(index, sequence):
    return b"%08d %012d\n" % (index, sequence)


def raise_descriptor_limit(count):
    need = count + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(need, soft), max(need, hard)))
    except (ValueError, OSError):
        sys.exit(f"restart_pause: {count} connections need a descriptor limit of {need} "
                 f"(soft {soft}, hard {hard}; run as root or raise it)")


class Load:
    def __init__(self, path, count, interval):
        self.interval = interval
        self.selector = selectors.EpollSelector()
        self.connections = []
        self.due = []  # (time, index): connections waiting for their interval to pass
        self.failure = None
        # Messages sent after this time count as served by the new process.
        self.returned = float("inf")
        self.served = 0
        # During a restart: the next message goes out as soon as the echo of the last one is in.
        self.probing = False
        # Connect in batches, each connection echoed once, so the listen backlog never overflows.
        batch = 256
        for start in range(0, count, batch):
            group = []
            for index in range(start, min(start + batch, count)):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(path)
                connection = Connection(index, sock)
                self.connections.append(connection)
                group.append(connection)
                self.send(connection, time.monotonic())
            for connection in group:
                connection.sock.settimeout(30)
                while connection.expected:
                    data = connection.sock.recv(64)
                    if not data:
                        sys.exit(f"restart_pause: connection {connection.index} closed at start")
                    self.take(connection, data, time.monotonic())
                connection.sock.setblocking(False)
                self.selector.register(connection.sock, selectors.EVENT_READ, connection)
                self.send(connection, time.monotonic())

    def send(self, connection, now):
        connection.sequence += 1
        connection.expected = message(connection.index, connection.sequence)
        connection.received = b""
        connection.sent_at = now
        sent = connection.sock.send(connection.expected)
        if sent != len(connection.expected):
            self.fail(f"connection {connection.index}: short send ({sent} bytes)")

    def fail(self, text):
        if self.failure is None:
            self.failure = text

    def take(self, connection, data, now):
        connection.received += data
        if len(connection.received) < len(connection.expected):
            if not connection.expected.startswith(connection.received):
                self.fail(f"connection {connection.index}: the echo differs from what was sent")
            return False
        if connection.received != connection.expected:
            self.fail(f"connection {connection.index}: the echo differs from what was sent "
                      f"({connection.received[:40]!r} for {connection.expected!r})")
            return False
        connection.expected = b""
        connection.echoes.append((now, now - connection.sent_at))
        if not connection.served and connection.sent_at > self.returned:
            connection.served = True
            self.served += 1
        return True

    def run_for(self, seconds=None, until=None):
        """Serve the traffic for `seconds`, or until `until()` is true."""
        end = time.monotonic() + seconds if seconds is not None else None
        while self.failure is None:
            now = time.monotonic()
            if end is not None and now >= end:
                return
            if until is not None and until():
                return
            timeout = 0.01
            if self.due:
                timeout = min(timeout, max(0.0, self.due[0][0] - now))
            for key, _ in self.selector.select(timeout):
                connection = key.data
                try:
                    data = connection.sock.recv(4096)
                except BlockingIOError:
                    continue
                except OSError as error:
                    self.fail(f"connection {connection.index}: {error.strerror}")
                    return
                now = time.monotonic()
                if not data:
                    self.fail(f"connection {connection.index} was closed by the daemon")
                    return
                if self.take(connection, data, now):
                    next_at = connection.sent_at + self.interval
                    if self.probing or next_at <= now:
                        self.send(connection, now)
                    else:
                        heapq.heappush(self.due, (next_at, connection.index))
            now = time.monotonic()
            while self.due and self.due[0][0] <= now:
                _, index = heapq.heappop(self.due)
                self.send(self.connections[index], now)


def measure(load, command, timeout):
    for connection in load.connections:
        connection.echoes = []
        connection.served = False
    load.served = 0
    load.returned = float("inf")
    start = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    # A message in flight on every connection from now on, until the restart is over.
    load.probing = True
    now = time.monotonic()
    while load.due:
        _, index = heapq.heappop(load.due)
        load.send(load.connections[index], now)
    load.run_for(until=lambda: process.poll() is not None or time.monotonic() - start > timeout)
    output = process.communicate()[0].decode(errors="replace").strip()
    returned = time.monotonic()
    load.returned = returned
    if load.failure:
        return None, load.failure
    if process.returncode != 0:
        return None, f"{' '.join(command)} exited with {process.returncode}: {output}"

    # Over once every connection has the echo of a message sent after the command returned.
    count = len(load.connections)
    load.run_for(until=lambda: load.served == count or time.monotonic() - start > timeout)
    load.probing = False
    if load.failure:
        return None, load.failure
    if load.served != count:
        return None, (f"{count - load.served} connection(s) not moving {timeout:.0f} s after the "
                      f"restart began")

    pauses, resumed = [], []
    for connection in load.connections:
        # The longest wait for one echo, and when it ended.
        end, waited = max(connection.echoes, key=lambda echo: echo[1])
        pauses.append(waited)
        resumed.append(end - start)
    return {
        "command": returned - start,
        "all_moving": max(resumed),
        "median_moving": statistics.median(resumed),
        "longest_pause": max(pauses),
        "median_pause": statistics.median(pauses),
    }, None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("socket_path")
    parser.add_argument("count", type=int)
    parser.add_argument("command", nargs="+", help="the restart command, after --")
    parser.add_argument("--interval", type=float, default=None,
                        help="seconds between two messages on one connection between "
                             "restarts [count/5000, at least 0.01]")
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--settle", type=float, default=2.0,
                        help="seconds of traffic before each restart")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    interval = args.interval if args.interval is not None else max(0.01, args.count / 5000)

    raise_descriptor_limit(args.count)
    opened = time.monotonic()
    load = Load(args.socket_path, args.count, interval)
    print(f"{args.count} connections open and echoing in {time.monotonic() - opened:.1f} s; "
          f"a message every {interval * 1000:.0f} ms on each between restarts, one always in "
          f"flight during them", flush=True)
    failed = False
    for restart in range(1, args.restarts + 1):
        load.run_for(seconds=args.settle)
        if load.failure:
            print(f"restart_pause: {load.failure}", file=sys.stderr)
            return 1
        figures, failure = measure(load, args.command, args.timeout)
        if failure:
            print(f"restart {restart}: FAILED: {failure}", flush=True)
            failed = True
            break
        print(f"restart {restart}: {args.count} connections: command {figures['command']:.3f} s; "
              f"data moving again on every connection {figures['all_moving']:.3f} s after it "
              f"began (median {figures['median_moving']:.3f} s); longest pause on one "
              f"connection {figures['longest_pause']:.3f} s (median "
              f"{figures['median_pause']:.3f} s)", flush=True)
    load.run_for(seconds=0.5)
    if load.failure:
        print(f"restart_pause: {load.failure}", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
