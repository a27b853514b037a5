#!/usr/bin/env python3
"""The benchmark of the message sockets: uds-echod's seqpacket and datagram sockets against the
hand-written C references (perf_epoll_message_echo), driven by `uds-echo bench --type`.

    tests/perf/message_sockets.py [--runs N] [--duration S] [--warmup S] [BUILD_DIR]

Each server runs pinned to CPU 1, the load generator to CPU 0 (as in harness.py). Every
scenario runs N times per server, alternating the servers, so that a busy moment of a shared
machine does not fall on one server only; the table shows the median and the range of the runs.
The server's CPU over the measured seconds gives its CPU time per message: a server below 100 %
CPU was not saturated, and its figure is the load generator's, not its own. Datagram replies the
server dropped are counted by bench and shown.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harness  # noqa: E402  (the pinning and the CPU accounting of the stream benchmark)

# (key, title, connections, size, pipeline); the datagram pipeline stays within the kernel's
# receive queue limit (net.unix.max_dgram_qlen, 10 by default), see uds-echo(1).
SCENARIOS = [
    ("p", "ping-pong: 1 conn, 64 B, 1 in flight", 1, 64, 1),
    ("m", "many: 16 conns, 64 B, 1 in flight", 16, 64, 1),
    ("q", "pipelined: 16 conns, 64 B, 8 in flight", 16, 64, 8),
    ("l", "large: 4 conns, 16 KiB, 4 in flight", 4, 16384, 4),
]


class Server:
    """A started server of one type at a fresh path, pinned, ready when it echoes."""

    def __init__(self, argv, client, socket_type, path):
        self.path = path
        self.proc = subprocess.Popen(harness.PINNING["server"] + argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + 15
        while subprocess.run([client, "--type", socket_type, "-s", path, "-t", "0.5", "-q",
                              "probe"], capture_output=True).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{argv[0]} did not answer on {path}")
            time.sleep(0.05)

    def cpu(self):
        return harness.tree_cpu_seconds(self.proc.pid)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def servers(build, socket_type, daemon_args):
    daemon = os.path.join(build, "daemon", "uds-echod")
    reference = os.path.join(build, "tests", "perf", "perf_epoll_message_echo")
    option = "--seqpacket-socket" if socket_type == "seqpacket" else "--datagram-socket"
    return [
        ("c", "C epoll reference",
         lambda path: [reference, socket_type, path]),
        ("udsechod", "uds-echod",
         lambda path: [daemon, "--socket", path + ".stream", option, path, "--log-level",
                       "warning"] + daemon_args),
    ]


def one_run(client, server, socket_type, scenario, args):
    _, _, conns, size, pipeline = scenario
    cpu = harness.MeasuredCpu(server, args.warmup, args.duration)
    done = subprocess.run(
        harness.PINNING["client"] +
        [client, "--type", socket_type, "-s", server.path, "-t", "2", "bench", "-c", str(conns),
         "--size", str(size), "--pipeline", str(pipeline), "-d", str(args.duration), "--warmup",
         str(args.warmup), "--json"], capture_output=True, text=True,
        timeout=args.duration + args.warmup + 60)
    result = json.loads(done.stdout)
    if done.returncode != 0 or result["errors"]:
        raise RuntimeError(f"bench failed: {result['error']}")
    rate = result["messages_per_second"] or 0.0
    fraction = cpu.fraction()
    return {"msgs": rate, "p50": result["latency_us"]["p50"] or 0.0, "cpu": 100 * fraction,
            "us_per_msg": 1e6 * fraction / rate if rate else 0.0,
            "lost": result["replies_lost"] or 0}


def spread(values, decimals=0):
    middle = statistics.median(values)
    return f"{middle:,.{decimals}f} ({min(values):,.{decimals}f}–{max(values):,.{decimals}f})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--types", default="seqpacket,datagram")
    parser.add_argument("--scenarios", default="".join(s[0] for s in SCENARIOS))
    parser.add_argument("--daemon-args", default="", help="more uds-echod options, one string")
    parser.add_argument("build", nargs="?", default=os.path.join(HERE, "..", "..", "build",
                                                                  "release"))
    args = parser.parse_args()
    client = os.path.join(args.build, "client", "uds-echo")
    rows = []
    with tempfile.TemporaryDirectory(prefix="uds-echo-msgperf.") as workdir:
        for socket_type in args.types.split(","):
            for scenario in [s for s in SCENARIOS if s[0] in args.scenarios]:
                runs = {}
                for index in range(args.runs):
                    for key, label, argv in servers(args.build, socket_type,
                                                          args.daemon_args.split()):
                        path = os.path.join(workdir, f"{key}-{socket_type}-{index}.sock")
                        server = Server(argv(path), client, socket_type, path)
                        try:
                            figures = one_run(client, server, socket_type, scenario, args)
                        finally:
                            server.stop()
                        harness.log(f"{socket_type} {scenario[0]} {label}: {figures}")
                        runs.setdefault(key, []).append(figures)
                rows.append((socket_type, scenario, runs))
    print(f"{args.runs} runs of {args.duration:g} s (+{args.warmup:g} s warm-up) each; "
          "median (min–max)\n")
    print("| type | scenario | figure | C epoll reference | uds-echod | ratio |")
    print("|---|---|---|---:|---:|---:|")
    for socket_type, scenario, runs in rows:
        for metric, label, decimals in (("msgs", "msg/s", 0), ("p50", "p50 µs", 1),
                                        ("cpu", "server CPU %", 0),
                                        ("us_per_msg", "server CPU µs/msg", 2)):
            c = [r[metric] for r in runs["c"]]
            d = [r[metric] for r in runs["udsechod"]]
            ratio = statistics.median(d) / statistics.median(c) if statistics.median(c) else 0
            print(f"| {socket_type} | {scenario[1]} | {label} | {spread(c, decimals)} | "
                  f"{spread(d, decimals)} | {ratio:.2f}x |")
        if socket_type == "datagram":
            c = sum(r["lost"] for r in runs["c"])
            d = sum(r["lost"] for r in runs["udsechod"])
            print(f"| {socket_type} | {scenario[1]} | replies lost (all runs) | {c} | {d} | |")


if __name__ == "__main__":
    sys.exit(main())
