#!/usr/bin/env python3
"""A SOCK_SEQPACKET client that sends numbered messages and checks every echo.

    seqpacket_client.py SOCKET STOP_FILE

Sends one message at a time (a number and random bytes, 1 B to 64 KiB long), waits for its echo
and checks that it came back as one message with the same bytes; prints one line per verified
message. When STOP_FILE exists it shuts its write side down and expects the daemon to close
(uds-echod(8): everything received comes back, then the daemon closes). Exits 0 if every message
came back whole and in order; 3 if the daemon closed the connection first (a stop drains), every
echo until then verified; 1 with the reason otherwise. A restart of the service in between must go
unnoticed.
"""
import os
import random
import socket
import sys
import time

LONGEST = 64 * 1024


def fail(why):
    print(f"seqpacket_client: {why}", file=sys.stderr)
    sys.exit(1)


def closed(number, why):
    print(f"seqpacket_client: closed by the daemon at message {number} ({why})", file=sys.stderr)
    sys.exit(3)


def main():
    path, stop_file = sys.argv[1], sys.argv[2]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.settimeout(30)
    # Room for the longest message in both directions.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * LONGEST)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * LONGEST)
    sock.connect(path)
    number = 0
    while not os.path.exists(stop_file):
        number += 1
        size = LONGEST if number % 50 == 0 else random.randint(1, 4096)
        header = f"{number}:".encode()
        message = (header + os.urandom(size))[:size] if size > len(header) else header[:size]
        try:
            sock.send(message)
            echo, _, flags, _ = sock.recvmsg(LONGEST + 1)
        except (ConnectionResetError, BrokenPipeError) as error:
            closed(number, error)
        except OSError as error:
            fail(f"message {number} ({size} B): {error}")
        if not echo and not flags:
            closed(number, "end of file")
        if flags & socket.MSG_TRUNC or echo != message:
            fail(f"message {number} ({size} B) came back as {len(echo)} B, flags {flags:#x}")
        print(number, size, flush=True)
        time.sleep(0.01)
    sock.shutdown(socket.SHUT_WR)
    try:
        rest = sock.recv(LONGEST + 1)
    except OSError as error:
        fail(f"after shutdown: {error}")
    if rest:
        fail(f"after shutdown: {len(rest)} B more, expected the daemon to close")
    print(f"{number} messages verified", file=sys.stderr)


main()
