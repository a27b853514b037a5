#!/usr/bin/env python3
"""The performance benchmark of uds-echo (targets: docs/performance.md). Started by tests/perf/run.sh.

For every scenario and every server: start the server on a fresh socket pinned to one CPU,
drive it with a load generator pinned to the other CPU, stop it. The load generator is
`uds-echo bench`, or with --load c the hand-written C one (tests/perf/epoll_load.c), which
saturates the servers where bench may not. With --compare-loads the C server is driven by both
generators in turn: how close `uds-echo bench` comes to the C generator. Every scenario runs
--runs times, interleaved across columns (run 1 of every column, then run 2 of every column,
...). The report gives, for every figure, the median, the ratio to the reference column's median,
and the spread (min-max) of the runs, as a Markdown table.

Every row of a throughput scenario shows the server's CPU over the measured seconds (from
/proc/PID/stat) and the server's CPU time per message; in (b), (c) and (f) a server below 90 % of
a CPU is marked "not saturated": the load generator, not the server, set the pace.
"""
import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PINNING = {"server": ["taskset", "-c", "1"], "client": ["taskset", "-c", "0"]}


def log(message):
    print(f"[perf {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Servers


class Server:
    """How to start one server. `argv(path)` builds its command line for a socket path."""

    def __init__(self, key, label, argv, max_conns=None):
        self.key = key
        self.label = label
        self.argv = argv
        self.max_conns = max_conns  # None: no limit; socat forks two processes per connection


def make_servers(build, unpinned=False):
    def binary(*parts):
        path = os.path.join(build, *parts)
        if not os.access(path, os.X_OK):
            sys.exit(f"perf: {path} is missing; build it first (tests/perf/run.sh does)")
        return path

    udsechod = binary("daemon", "uds-echod")
    epoll = binary("tests", "perf", "perf_epoll_echo")
    asio = binary("tests", "perf", "perf_asio_plain_echo")
    if unpinned:
        # Both CPUs for everyone, the load generator included: what default --threads gives.
        cpus = str(os.cpu_count())
        return [
            Server("c", f"C epoll ({cpus} thr)", lambda p: [epoll, p, cpus]),
            Server("udsechod", "uds-echod (default)",
                   lambda p: [udsechod, "--socket", p, "--log-level", "warning"]),
            Server("udsechod1", "uds-echod --threads 1",
                   lambda p: [udsechod, "--socket", p, "--log-level", "warning", "--threads", "1"]),
            # One worker per CPU: what the default would be without leaving CPUs to the clients.
            Server("udsechodn", f"uds-echod --threads {cpus}",
                   lambda p: [udsechod, "--socket", p, "--log-level", "warning", "--threads", cpus]),
        ]
    return [
        Server("c", "C epoll (1 thr)", lambda p: [epoll, p, "1"]),
        Server("udsechod", "uds-echod", lambda p: [udsechod, "--socket", p, "--log-level", "warning"]),
        Server("asio", "Asio plain", lambda p: [asio, p]),
        Server("asyncio", "Python asyncio",
               lambda p: [sys.executable, os.path.join(HERE, "asyncio_echo.py"), p]),
        Server("socat", "socat fork", lambda p: ["socat", f"UNIX-LISTEN:{p},fork,backlog=4096",
                                                 "EXEC:cat"], max_conns=100),
    ]


class Column:
    """One column of the table: a server driven by a load generator ("bench" or "c")."""

    def __init__(self, key, label, server, load):
        self.key = key
        self.label = label
        self.server = server
        self.load = load


def make_columns(servers, load, compare_loads):
    if compare_loads:
        c = servers[0]
        return [Column("c", f"{c.label}, C generator", c, "c"),
                Column("bench", f"{c.label}, `uds-echo bench`", c, "bench")]
    return [Column(s.key, s.label, s, load) for s in servers]


class Running:
    """A started server: its process group, socket path and log file."""

    def __init__(self, server, workdir):
        self.server = server
        self.path = os.path.join(workdir, f"{server.key}-{time.monotonic_ns()}.sock")
        self.logfile = open(self.path + ".log", "w+")
        self.proc = subprocess.Popen(PINNING["server"] + server.argv(self.path),
                                     stdin=subprocess.DEVNULL, stdout=self.logfile,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{server.label} exited at start: {self.log_tail()}")
            if self.answers():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{server.label} did not answer on {self.path}")
            time.sleep(0.02)

    def answers(self):
        """One full 64-byte echo: the server is ready (and its first connection is done)."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(2)
                s.connect(self.path)
                s.sendall(b"r" * 64)
                got = b""
                while len(got) < 64:
                    chunk = s.recv(64 - len(got))
                    if not chunk:
                        return False
                    got += chunk
                return True
        except OSError:
            return False

    def log_tail(self):
        self.logfile.seek(0)
        return self.logfile.read()[-400:].strip()

    def rss(self):
        """Resident memory in bytes of the server's process tree (socat forks per connection)."""
        return tree_rss(self.proc.pid)

    def cpu(self):
        """CPU seconds used so far by the server's process tree."""
        return tree_cpu_seconds(self.proc.pid)

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        # socat's children of a killed parent, if any, are in the same group.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.logfile.close()
        for leftover in (self.path, self.path + ".log"):
            try:
                os.unlink(leftover)
            except FileNotFoundError:
                pass


def process_rss(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def tree_pids(root):
    """The process `root` and all its descendants."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(children.get(pid, []))
    return pids


def tree_rss(root):
    return sum(process_rss(pid) for pid in tree_pids(root))


def tree_cpu_seconds(root):
    """User + system CPU time of a process tree, children that ended and were waited for included."""
    total = 0
    for pid in tree_pids(root):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command: state ppid ... utime(12) stime(13) cutime(14) cstime(15), 0-based.
        total += sum(int(x) for x in fields[11:15])
    return total / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------
# The load generator


class BenchFailed(Exception):
    pass


def find_key(data, *names):
    """The first of `names` found anywhere in the JSON object (depth first)."""
    if isinstance(data, dict):
        for name in names:
            if name in data and not isinstance(data[name], (dict, list)):
                return data[name]
        for value in data.values():
            found = find_key(value, *names)
            if found is not None:
                return found
    return None


def run_bench(ctx, load, path, args, timeout):
    """One run of the load generator `load` ("bench" or "c") with `args` (the options both
    understand) against the socket `path`: its figures, and its own CPU time in "client_cpu"."""
    if load == "c":
        argv = PINNING["client"] + [ctx.c_load, path] + args
    else:
        # --timeout: the longest wait for an echo; generous, so a slow server counts as slow,
        # not as failed (Python with 10,000 connections on a busy machine).
        argv = (PINNING["client"] + [ctx.client, "--socket", path, "--timeout", "30", "bench"] +
                args + ["--json"])
    usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchFailed(f"timed out: {' '.join(argv)}")
    usage_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = ((usage_after.ru_utime + usage_after.ru_stime) -
                  (usage_before.ru_utime + usage_before.ru_stime)) / (time.monotonic() - started)
    if done.returncode != 0:
        raise BenchFailed(f"exit {done.returncode}: {' '.join(argv)}: {done.stderr.strip()[-300:]}")
    try:
        result = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise BenchFailed(f"not JSON: {done.stdout[-300:]}")
    errors = find_key(result, "errors", "error_count")
    if errors:
        raise BenchFailed(f"{errors} errors reported: {' '.join(argv)}")
    return {
        "msgs": float(find_key(result, "messages_per_second", "messages_per_sec", "msgs_per_s")
                      or 0),
        "mibs": float(find_key(result, "mib_per_second", "mib_per_sec", "MiB_per_s") or 0),
        "conns": float(find_key(result, "connections_per_second", "connections_per_sec",
                                "conns_per_s") or 0),
        "p50": float(find_key(result, "p50_us", "p50") or 0),
        "p99": float(find_key(result, "p99_us", "p99") or 0),
        "client_cpu": 100 * client_cpu,
        "raw": result,
    }


# ---------------------------------------------------------------------------------------------
# Scenarios. Each returns {metric: value} for one run against one running server.


class Scenario:
    def __init__(self, key, title, metrics, run, applies=lambda server: True):
        self.key = key
        self.title = title
        self.metrics = metrics  # [(metric key, label, unit, higher_is_better)]
        self.run = run
        self.applies = applies


class MeasuredCpu:
    """The server's CPU over the measured seconds of a run: sampled from the moment the warm-up
    should be over to the moment the measurement should end (a thread sleeps in between)."""

    def __init__(self, srv, warmup, duration):
        self.samples = []
        self.thread = threading.Thread(target=self.sample, args=(srv, warmup, duration))
        self.thread.start()

    def sample(self, srv, warmup, duration):
        # The generator needs a moment to start and connect: begin a little after the warm-up,
        # end a little before the measurement does.
        start = time.monotonic()
        for at in (warmup + 0.1, warmup + duration - 0.05):
            time.sleep(max(0.0, start + at - time.monotonic()))
            self.samples.append((time.monotonic(), srv.cpu()))

    def fraction(self):
        """Server CPU seconds per second over the window (1.0: one CPU saturated)."""
        self.thread.join()
        (t0, c0), (t1, c1) = self.samples
        return (c1 - c0) / (t1 - t0)


def bench_scenario(conns, size, pipeline, fields, rate, extra=()):
    """One run of a throughput or latency scenario. `rate` is the figure of messages (or
    connections) per second that the server's CPU per message is taken against."""
    def run(ctx, srv, load):
        # Churn sends one message per connection: no pipeline depth to give.
        depth = [] if "--churn" in extra else ["--pipeline", str(pipeline)]
        args = ["-c", str(conns), "--size", str(size)] + depth + [
                "-d", str(ctx.duration), "--warmup", str(ctx.warmup)] + list(extra)
        cpu = MeasuredCpu(srv, ctx.warmup, ctx.duration)
        out = run_bench(ctx, load, srv.path, args, timeout=ctx.duration + ctx.warmup + 60)
        figures = {f: out[f] for f in fields}
        figures["cpu"] = 100 * cpu.fraction()
        if out[rate] > 0:
            figures["us_per_msg"] = 1e6 * cpu.fraction() / out[rate]
        figures["client_cpu"] = out["client_cpu"]
        if out[rate] > 0:
            # Over the generator's whole life (start, connections, warm-up): a little high.
            figures["client_us_per_msg"] = 1e4 * out["client_cpu"] / out[rate]
        return figures
    return run


def scaling_scenario(conns):
    """(b) at `conns` connections; the server's RSS and CPU sampled while the load runs."""
    def run(ctx, srv, load):
        peak = [0]
        cpu_samples = [(time.monotonic(), srv.cpu())]  # (monotonic time, server CPU seconds)
        stop = threading.Event()

        def sample():
            while not stop.wait(0.25):
                peak[0] = max(peak[0], srv.rss())
                cpu_samples.append((time.monotonic(), srv.cpu()))
        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            # Opening 10,000 connections takes about a second: longer warm-up and measurement.
            duration = max(ctx.duration, 2) if conns >= 10000 else ctx.duration
            warmup = max(ctx.warmup, 1) if conns >= 10000 else ctx.warmup
            args = ["-c", str(conns), "--size", "64", "--pipeline", "1", "-d", str(duration),
                    "--warmup", str(warmup)]
            out = run_bench(ctx, load, srv.path, args, timeout=duration + warmup + 120)
            end = (time.monotonic(), srv.cpu())
        finally:
            stop.set()
            sampler.join()
        # CPU over the measured seconds only (connecting 10,000 clients is not part of it): from
        # the last sample taken before they began.
        start = max((s for s in cpu_samples if s[0] <= end[0] - duration),
                    default=cpu_samples[0])
        cpu = 100 * (end[1] - start[1]) / (end[0] - start[0])
        figures = {"msgs": out["msgs"], "cpu": cpu, "rss": peak[0] / 2**20}
        if out["msgs"] > 0:
            figures["us_per_msg"] = 1e4 * cpu / out["msgs"]
        return figures
    return run


def idle_scenario(count):
    """(g): RSS of the server before and after `count` connections that echoed once and idle."""
    def run(ctx, srv, load):
        before = srv.rss()
        holder = subprocess.Popen(PINNING["client"] + [sys.executable,
                                   os.path.join(HERE, "idle_holder.py"), srv.path, str(count)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            line = holder.stdout.readline()
            if not line.startswith("ready"):
                raise BenchFailed(f"idle holder failed (exit {holder.wait()})")
            time.sleep(0.5)
            after = srv.rss()
        finally:
            holder.stdin.close()
            holder.wait(timeout=60)
        return {"bpc": (after - before) / count, "rss": after / 2**20}
    return run


# Secondary rows: the server's CPU use over the measured seconds (marked "not saturated" below
# SATURATED in the scenarios that must saturate it), the server's CPU time per message, and the
# load generator's own CPU use.
CPU = ("cpu", "server CPU %", "pct", False)
PER_MESSAGE = ("us_per_msg", "server CPU µs/msg", "us", False)
CLIENT_CPU = ("client_cpu", "load generator CPU %", "pct", False)
CLIENT_PER_MESSAGE = ("client_us_per_msg", "load generator CPU µs/msg", "us", False)
SATURATED = 90
MUST_SATURATE = "bcf"


def make_scenarios(quick):
    scale = [1, 100, 1000, 10000]
    throughput = [CPU, PER_MESSAGE, CLIENT_CPU, CLIENT_PER_MESSAGE]
    scenarios = [
        Scenario("a", "(a) 1 conn, 64 B, 1 in flight",
                 [("msgs", "msgs/s", "n", True), ("p50", "latency p50 µs", "us", False),
                  ("p99", "latency p99 µs", "us", False)] + throughput,
                 bench_scenario(1, 64, 1, ["msgs", "p50", "p99"], "msgs")),
        Scenario("b", "(b) 64 conns, 64 B, 1 in flight", [("msgs", "msgs/s", "n", True)] +
                 throughput, bench_scenario(64, 64, 1, ["msgs"], "msgs")),
        Scenario("c", "(c) 64 conns, 64 B, 16 in flight", [("msgs", "msgs/s", "n", True)] +
                 throughput, bench_scenario(64, 64, 16, ["msgs"], "msgs")),
        Scenario("d", "(d) 8 conns, 64 KiB, 4 in flight", [("mibs", "MiB/s", "n", True)] +
                 throughput, bench_scenario(8, 65536, 4, ["mibs", "msgs"], "msgs")),
        Scenario("e", "(e) 1 conn, 1 MiB, 2 in flight", [("mibs", "MiB/s", "n", True)] +
                 throughput, bench_scenario(1, 1 << 20, 2, ["mibs", "msgs"], "msgs")),
        Scenario("f", "(f) churn, 8 clients, 64 B", [("conns", "conns/s", "n", True)] +
                 throughput, bench_scenario(8, 64, 1, ["conns"], "conns", extra=["--churn"])),
        Scenario("g", "(g) 10,000 idle conns", [("bpc", "RSS B/conn (target ≤ 1024)", "b", False),
                                                 ("rss", "RSS MiB", "m", False)],
                 idle_scenario(10000), applies=lambda s: s.max_conns is None),
    ]
    for n in scale:
        scenarios.append(Scenario(
            f"h{n}", f"(h) {n:,} conns, 64 B, 1 in flight",
            [("msgs", "msgs/s", "n", True), CPU, PER_MESSAGE, ("rss", "RSS MiB", "m", False)],
            scaling_scenario(n),
            applies=lambda s, n=n: s.max_conns is None or n <= s.max_conns))
    return scenarios


# ---------------------------------------------------------------------------------------------
# Report


def fmt(value, unit):
    if value is None:
        return "–"
    if unit == "n":
        if value >= 1e6:
            return f"{value / 1e6:.2f}M"
        if value >= 1e4:
            return f"{value / 1e3:.0f}k"
        if value >= 1e3:
            return f"{value / 1e3:.1f}k"
        return f"{value:.0f}"
    if unit == "us":
        if value < 1:
            return f"{value:.3f}"
        if value < 10:
            return f"{value:.2f}"
        return f"{value:.1f}" if value < 100 else f"{value:.0f}"
    if unit == "b":
        return f"{value:.0f}"
    if unit == "m":
        return f"{value:.1f}"
    if unit == "pct":
        return f"{value:.0f}%"
    return f"{value:g}"


def table(results, scenarios, servers, runs, highlight="udsechod"):
    """Markdown: a row per scenario figure, a column per server (and load generator); the ratios
    are to the column keyed "c", those of the column keyed `highlight` in bold."""
    head = "| scenario | figure | " + " | ".join(s.label for s in servers) + " |"
    lines = [head, "|" + "---|" * (len(servers) + 2)]
    for sc in scenarios:
        for metric, label, unit, higher in sc.metrics:
            ref = results.get((sc.key, "c", metric))
            ref_med = statistics.median(ref) if ref else None
            cells = []
            for srv in servers:
                values = results.get((sc.key, srv.key, metric))
                if not sc.applies(srv.server):
                    cells.append("n/a")
                    continue
                if not values:
                    cells.append("failed")
                    continue
                med = statistics.median(values)
                cell = fmt(med, unit)
                if srv.key != "c" and ref_med:
                    if unit in ("n", "us"):
                        ratio = med / ref_med
                        cell += f" **{ratio:.2f}x**" if srv.key == highlight else f" {ratio:.2f}x"
                if metric == "cpu" and sc.key in MUST_SATURATE and med < SATURATED:
                    cell += " not saturated"
                if len(values) > 1:
                    cell += f" <sub>[{fmt(min(values), unit)}–{fmt(max(values), unit)}]</sub>"
                if len(values) < runs:
                    cell += f" ({runs - len(values)} failed)"
                cells.append(cell)
            lines.append(f"| {sc.title} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets(results, scenarios):
    """The targets of docs/performance.md for uds-echod, each with the figures behind it and PASS/FAIL."""
    def med(key, server, metric):
        values = results.get((key, server, metric))
        return statistics.median(values) if values else None

    lines = []
    for sc in scenarios:
        for metric, label, unit, higher in sc.metrics:
            if sc.key in "abcdef" and len(sc.key) == 1 and metric not in ("cpu", "client_cpu", "client_us_per_msg"):
                ours, ref = med(sc.key, "udsechod", metric), med(sc.key, "c", metric)
                if ours is None or not ref:
                    continue
                ratio = ours / ref
                if higher:
                    ok, goal = ratio >= 1.0, "≥ 1.0x"
                elif metric == "p99":
                    ok, goal = ratio <= 1.1, "≤ 1.1x"
                else:
                    ok, goal = ratio <= 1.0, "≤ 1.0x"
                cpu = med(sc.key, "udsechod", "cpu"), med(sc.key, "c", "cpu")
                unsaturated = [f"{name} {value:.0f}%" for name, value in
                               (("uds-echod", cpu[0]), ("C", cpu[1]))
                               if sc.key in MUST_SATURATE and value is not None and
                               value < SATURATED]
                lines.append(f"- {'PASS' if ok else 'FAIL'} {sc.title}, {label}: {ratio:.2f}x "
                             f"the C reference (target {goal})" +
                             (f"; not saturated: server CPU {', '.join(unsaturated)}"
                              if unsaturated else ""))
    bpc = med("g", "udsechod", "bpc")
    if bpc is not None:
        lines.append(f"- {'PASS' if bpc <= 1024 else 'FAIL'} (g) idle connection: {bpc:.0f} B "
                     f"(target ≤ 1024 B; C reference {med('g', 'c', 'bpc') or 0:.0f} B)")
    at100, at10k = med("h100", "udsechod", "msgs"), med("h10000", "udsechod", "msgs")
    if at100 and at10k is not None:
        ratio = at10k / at100
        lines.append(f"- {'PASS' if ratio >= 0.9 else 'FAIL'} (h) msgs/s at 10,000 connections: "
                     f"{ratio:.2f}x that at 100 (target ≥ 0.9x)")
        # Below 100 % server CPU the load generator set the pace; messages per second of server
        # CPU tell how much of the drop is the server's own.
        cpu100, cpu10k = med("h100", "udsechod", "cpu"), med("h10000", "udsechod", "cpu")
        if cpu100 and cpu10k:
            efficiency = (at10k / cpu10k) / (at100 / cpu100)
            ref = [med(k, "c", m) for k, m in (("h100", "msgs"), ("h100", "cpu"),
                                                 ("h10000", "msgs"), ("h10000", "cpu"))]
            ref_text = (f"; C reference {(ref[2] / ref[3]) / (ref[0] / ref[1]):.2f}x"
                        if all(ref) else "")
            lines.append(f"  server CPU {cpu100:.0f}% at 100 and {cpu10k:.0f}% at 10,000; messages "
                         f"per server CPU second at 10,000: {efficiency:.2f}x that at 100"
                         f"{ref_text}")
    return lines


def load_targets(results, scenarios):
    """`uds-echo bench` against the C generator, both driving the C server: the rate ratio."""
    lines = []
    for sc in scenarios:
        rate = next((m for m in sc.metrics if m[3] and m[2] == "n"), None)
        if rate is None:
            continue
        values = [results.get((sc.key, column, rate[0])) for column in ("bench", "c")]
        if not all(values):
            continue
        ratio = statistics.median(values[0]) / statistics.median(values[1])
        lines.append(f"- {'PASS' if ratio >= 0.95 else 'FAIL'} {sc.title}, {rate[1]}: "
                     f"`uds-echo bench` at {ratio:.2f}x the C generator (target ≥ 0.95x)")
    return lines


def machine_summary():
    def lscpu(field):
        try:
            out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        except OSError:
            return "?"
        for line in out.splitlines():
            if line.startswith(field + ":"):
                return line.split(":", 1)[1].strip()
        return "?"
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) / 2**20
    except OSError:
        mem = 0
    return (f"{lscpu('Model name')}, {lscpu('CPU(s)')} CPUs ({lscpu('Hypervisor vendor')} guest), "
            f"{mem:.1f} GiB RAM, Linux {platform.release()}")


# ---------------------------------------------------------------------------------------------


class Context:
    pass


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("build", help="build directory with uds-echod, uds-echo and tests/perf")
    parser.add_argument("--quick", action="store_true",
                        help="1 run of 1 s per scenario and server (about 2 minutes)")
    parser.add_argument("--runs", type=int, help="runs per scenario and server (default 3)")
    parser.add_argument("--duration", type=float, help="seconds measured per run (default 3)")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up per run (default 0.5)")
    parser.add_argument("--only", help="comma-separated scenario keys (a,b,c,d,e,f,g,h)")
    parser.add_argument("--servers", help="comma-separated server keys (c,udsechod,asio,asyncio,"
                                          "socat)")
    parser.add_argument("--unpinned", action="store_true",
                        help="no taskset: C epoll with one thread per CPU against uds-echod with "
                             "default and 1 thread, scenarios b, c, d, f")
    parser.add_argument("--load", choices=("bench", "c"), default="bench",
                        help="the load generator: uds-echo bench (default) or the C one "
                             "(tests/perf/epoll_load.c), which saturates the servers")
    parser.add_argument("--compare-loads", action="store_true",
                        help="the C server driven by the C generator and by uds-echo bench in "
                             "turn, scenarios a,b,c,f unless --only says otherwise")
    parser.add_argument("--write-doc", metavar="FILE",
                        help="also replace the table between the markers in FILE")
    opts = parser.parse_args()

    ctx = Context()
    ctx.client = os.path.join(opts.build, "client", "uds-echo")
    ctx.c_load = os.path.join(opts.build, "tests", "perf", "perf_epoll_load")
    for program in (ctx.client, ctx.c_load):
        if not os.access(program, os.X_OK):
            sys.exit(f"perf: {program} is missing; build it first (tests/perf/run.sh does)")
    ctx.runs = opts.runs or (1 if opts.quick else 3)
    ctx.duration = opts.duration or (1 if opts.quick else 3)
    ctx.warmup = opts.warmup if opts.warmup is not None else (0.2 if opts.quick else 0.5)

    servers = make_servers(opts.build, opts.unpinned)
    if opts.unpinned:
        PINNING["server"] = PINNING["client"] = []
        opts.only = opts.only or "b,c,d,f"
    if opts.servers:
        wanted = opts.servers.split(",")
        servers = [s for s in servers if s.key in wanted or s.key == "c"]
    if opts.compare_loads:
        opts.only = opts.only or "a,b,c,f"
    columns = make_columns(servers, opts.load, opts.compare_loads)
    scenarios = make_scenarios(opts.quick)
    if opts.only:
        wanted = opts.only.split(",")
        scenarios = [s for s in scenarios if s.key in wanted or s.key[0] in wanted]

    # 10,000 connections need more descriptors than the usual soft limit of 1024, in the load
    # generator and in every server: raise it to the hard limit, which every child inherits.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < 10100:
        log(f"warning: the descriptor hard limit {hard} is too low for 10,000 connections")

    load = os.getloadavg()[0]
    if load > 0.5:
        log(f"warning: load average {load:.2f}: other work on this machine skews the figures")

    started = time.monotonic()
    results = {}
    failures = []
    workdir = tempfile.mkdtemp(prefix="uds-echo-perf-")
    try:
        for run in range(1, ctx.runs + 1):
            for sc in scenarios:
                for column in columns:
                    srv = column.server
                    if not sc.applies(srv):
                        continue
                    log(f"run {run}/{ctx.runs} {sc.title}: {column.label}")
                    try:
                        running = Running(srv, workdir)
                    except RuntimeError as e:
                        failures.append(f"{sc.title}, {srv.label}: {e}")
                        log(f"  FAILED: {e}")
                        continue
                    try:
                        figures = sc.run(ctx, running, column.load)
                        for metric, value in figures.items():
                            results.setdefault((sc.key, column.key, metric), []).append(value)
                        log("  " + ", ".join(f"{k}={v:.4g}" for k, v in figures.items()))
                    except BenchFailed as e:
                        failures.append(f"{sc.title}, {column.label}: {e}")
                        log(f"  FAILED: {e}")
                    finally:
                        running.stop()
                        if running.proc.returncode not in (0, -signal.SIGTERM, 143):
                            log(f"  {srv.label} exited with {running.proc.returncode}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    elapsed = time.monotonic() - started
    load_name = "the C load generator" if opts.load == "c" else "`uds-echo bench`"
    if opts.compare_loads:
        where = "The C server on CPU 1, each load generator in turn on CPU 0."
    elif opts.unpinned:
        where = f"No pinning: servers and {load_name} share both CPUs."
    else:
        where = f"Servers on CPU 1, {load_name} on CPU 0."
    report = [
        f"Run {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} on {machine_summary()}; "
        f"load average at start {load:.2f}.",
        f"{ctx.runs} run(s) per cell, {ctx.duration:g} s measured after {ctx.warmup:g} s warm-up, "
        f"interleaved across columns; {elapsed / 60:.1f} minutes in all. " + where,
        "Cells: median, ratio to the first column's median, [min–max of the runs]. Server CPU "
        f"over the measured seconds; below {SATURATED} % in ({'), ('.join(MUST_SATURATE)}) "
        "the server is not saturated.",
        "",
        table(results, scenarios, columns, ctx.runs,
              highlight="bench" if opts.compare_loads else "udsechod"),
    ]
    goals = load_targets(results, scenarios) if opts.compare_loads else targets(results, scenarios)
    if goals:
        report += ["", ("`uds-echo bench` against the C generator (medians):" if opts.compare_loads
                        else "uds-echod against its targets (medians):"), ""] + goals
    if failures:
        report += ["", "Failed runs:", ""] + [f"- {f}" for f in failures]
    text = "\n".join(report)
    print(text)

    if opts.write_doc:
        with open(opts.write_doc) as f:
            doc = f.read()
        marker = ("perf-loads" if opts.compare_loads else
                  "perf-unpinned" if opts.unpinned else "perf-table")
        begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
        if begin not in doc or end not in doc:
            sys.exit(f"perf: {opts.write_doc} has no {begin} ... {end} markers")
        head, rest = doc.split(begin, 1)
        _, tail = rest.split(end, 1)
        with open(opts.write_doc, "w") as f:
            f.write(head + begin + "\n" + text + "\n" + end + tail)
        log(f"table written into {opts.write_doc}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
