#!/usr/bin/env python3
"""Soak client for uds-echod: holds many concurrent connections, each sending messages of mixed
sizes and verifying every echoed byte, and reports messages, errors, and the daemon's RSS and
descriptor count at a fixed interval. Exit status 0 only when no error was seen."""

import argparse
import asyncio
import os
import random
import resource
import sys
import time

# (size in bytes, weight): mostly small messages, some socket-buffer sized, a few large ones.
SIZES = [(1, 20), (16, 20), (100, 20), (1000, 15), (4096, 12), (16384, 8), (65536, 4),
         (262144, 0.8), (1048576, 0.2)]


class Stats:
    def __init__(self):
        self.messages = 0
        self.bytes = 0
        self.errors = 0
        self.error_samples = []
        self.open = 0

    def error(self, text):
        self.errors += 1
        if len(self.error_samples) < 10:
            self.error_samples.append(text)


def daemon_figures(pid):
    rss = 0
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None, None
    return rss, fds


async def connect(path, deadline):
    # A full listen backlog completes connects that fail later: retry until the deadline.
    while True:
        try:
            address = "\0" + path[1:] if path.startswith("@") else path
            return await asyncio.open_unix_connection(address, limit=2 * 1024 * 1024)
        except (ConnectionRefusedError, BlockingIOError, FileNotFoundError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def session(index, path, pattern, stats, stop, rng_seed, think):
    rng = random.Random(rng_seed)
    sizes = [s for s, _ in SIZES]
    weights = [w for _, w in SIZES]
    reader = writer = None
    try:
        reader, writer = await connect(path, time.monotonic() + 60)
        stats.open += 1
        while not stop.is_set():
            size = rng.choices(sizes, weights)[0]
            offset = rng.randrange(0, len(pattern) - size)
            payload = pattern[offset:offset + size]
            writer.write(payload)
            await writer.drain()
            echoed = await reader.readexactly(size)
            if echoed != payload:
                stats.error(f"connection {index}: echo of {size} bytes differs")
            stats.messages += 1
            stats.bytes += size
            if think:
                await asyncio.sleep(rng.uniform(0, think))
        writer.write_eof()
        rest = await reader.read()
        if rest:
            stats.error(f"connection {index}: {len(rest)} unexpected bytes before EOF")
    except Exception as error:  # noqa: BLE001 - every failure counts
        stats.error(f"connection {index}: {type(error).__name__}: {error}")
    finally:
        if writer is not None:
            stats.open -= 1
            writer.close()
            try:
                await writer.wait_closed()
            except Exception:  # noqa: BLE001
                pass


async def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--socket", required=True)
    parser.add_argument("--pid", type=int, required=True, help="the daemon's pid, for RSS and fds")
    parser.add_argument("-c", "--connections", type=int, default=10000)
    parser.add_argument("-d", "--duration", type=float, default=60)
    parser.add_argument("-i", "--interval", type=float, default=10)
    parser.add_argument("--think", type=float, default=0.0,
                        help="max random pause between messages of one connection (s)")
    args = parser.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    pattern = random.Random(1).randbytes(4 * 1024 * 1024)
    stats = Stats()
    stop = asyncio.Event()
    rss0, fds0 = daemon_figures(args.pid)
    print(f"start: daemon rss {rss0 / 2**20:.1f} MiB, fds {fds0}; opening {args.connections} "
          f"connections for {args.duration:.0f} s", flush=True)

    started = time.monotonic()
    tasks = []
    for i in range(args.connections):
        tasks.append(asyncio.create_task(
            session(i, args.socket, pattern, stats, stop, i * 7919 + 1, args.think)))
        if i % 500 == 499:
            await asyncio.sleep(0)  # let the batch connect

    peak_rss = peak_fds = 0
    last_messages, last_bytes, last_time = 0, 0, started
    end = started + args.duration
    while True:
        now = time.monotonic()
        if now >= end:
            break
        await asyncio.sleep(min(args.interval, end - now))
        now = time.monotonic()
        rss, fds = daemon_figures(args.pid)
        if rss is None:
            stats.error("the daemon is gone")
            break
        peak_rss, peak_fds = max(peak_rss, rss), max(peak_fds, fds)
        rate = (stats.messages - last_messages) / (now - last_time)
        mib = (stats.bytes - last_bytes) / (now - last_time) / 2**20
        print(f"t={now - started:6.0f}s open={stats.open:5d} messages={stats.messages:10d} "
              f"({rate:8.0f}/s, {mib:7.1f} MiB/s) errors={stats.errors} "
              f"daemon rss={rss / 2**20:7.1f} MiB fds={fds}", flush=True)
        last_messages, last_bytes, last_time = stats.messages, stats.bytes, now

    stop.set()
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - started
    # The daemon gives the descriptors back as the sessions end.
    settle_deadline = time.monotonic() + 10
    while True:
        rss1, fds1 = daemon_figures(args.pid)
        if fds1 is None or fds1 <= fds0 or time.monotonic() > settle_deadline:
            break
        await asyncio.sleep(0.1)
    print(f"summary: connections={args.connections} duration={elapsed:.0f}s "
          f"messages={stats.messages} bytes={stats.bytes} "
          f"rate={stats.messages / elapsed:.0f}/s errors={stats.errors} "
          f"daemon rss start={rss0 / 2**20:.1f}MiB peak={peak_rss / 2**20:.1f}MiB "
          f"end={(rss1 or 0) / 2**20:.1f}MiB fds start={fds0} peak={peak_fds} end={fds1}",
          flush=True)
    for sample in stats.error_samples:
        print(f"error: {sample}", file=sys.stderr)
    return 0 if stats.errors == 0 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
