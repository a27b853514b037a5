#!/usr/bin/env python3
"""Hold idle connections for the memory scenarios of the performance benchmark.

    idle_holder.py SOCKET_PATH COUNT

Opens COUNT connections to SOCKET_PATH, sends 64 bytes on each and checks the echo (so every
connection has been through a full echo once), prints "ready COUNT" on stdout, and then holds
them all open, idle, until stdin is closed or it is killed. Exits 1 if a connection or an echo
fails. The descriptor limit is raised to the hard limit first.
"""
import os
import resource
import selectors
import socket
import sys

MESSAGE = bytes(range(64))


def main() -> int:
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} SOCKET_PATH COUNT")
    path, count = sys.argv[1], int(sys.argv[2])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if count + 16 > hard:
        sys.exit(f"idle_holder: {count} connections need more than the descriptor limit {hard}")

    connections = []
    # Connect and echo in batches, so the daemon's listen backlog is never overrun.
    batch = 256
    for start in range(0, count, batch):
        group = []
        for _ in range(min(batch, count - start)):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            s.sendall(MESSAGE)
            group.append(s)
        for s in group:
            received = b""
            while len(received) < len(MESSAGE):
                chunk = s.recv(len(MESSAGE) - len(received))
                if not chunk:
                    sys.exit("idle_holder: connection closed before the echo")
                received += chunk
            if received != MESSAGE:
                sys.exit("idle_holder: wrong echo")
        connections.extend(group)

    print(f"ready {len(connections)}", flush=True)
    # Idle until the harness closes our stdin.
    sys.stdin.read()
    for s in connections:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
