#!/usr/bin/env python3
"""The performance benchmark of uds-echo (targets: docs/performance.md). Started by tests/perf/run.sh.

For every scenario and every server: start the server on a fresh socket pinned to one CPU,
drive it with `uds-echo bench` pinned to the other CPU, stop it. Every scenario runs --runs times,
interleaved across servers (run 1 of every server, then run 2 of every server, ...). The report
gives, for every figure, the median, the ratio to the C epoll reference's median, and the spread
(min-max) of the runs, as a Markdown table.
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


def run_bench(client, path, args, timeout):
    # --timeout: the longest wait for an echo; generous, so a slow server counts as slow, not
    # as failed (Python with 10,000 connections on a busy machine).
    argv = (PINNING["client"] + [client, "--socket", path, "--timeout", "30", "bench"] + args +
            ["--json"])
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchFailed(f"timed out: {' '.join(argv)}")
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


def bench_scenario(conns, size, pipeline, fields, extra=()):
    def run(ctx, srv):
        # Churn sends one message per connection: no pipeline depth to give.
        depth = [] if "--churn" in extra else ["--pipeline", str(pipeline)]
        args = ["-c", str(conns), "--size", str(size)] + depth + [
                "-d", str(ctx.duration), "--warmup", str(ctx.warmup)] + list(extra)
        cpu_before, wall_before = srv.cpu(), time.monotonic()
        out = run_bench(ctx.client, srv.path, args, timeout=ctx.duration + ctx.warmup + 60)
        figures = {f: out[f] for f in fields}
        # How busy the server's CPU was over the whole bench (warm-up included): below 100 %
        # the load generator, not the server, set the pace.
        figures["cpu"] = 100 * (srv.cpu() - cpu_before) / (time.monotonic() - wall_before)
        return figures
    return run


def scaling_scenario(conns):
    """(b) at `conns` connections; the server's RSS and CPU sampled while the load runs."""
    def run(ctx, srv):
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
            out = run_bench(ctx.client, srv.path, args, timeout=duration + warmup + 120)
            end = (time.monotonic(), srv.cpu())
        finally:
            stop.set()
            sampler.join()
        # CPU over the measured seconds only (connecting 10,000 clients is not part of it): from
        # the last sample taken before they began.
        start = max((s for s in cpu_samples if s[0] <= end[0] - duration),
                    default=cpu_samples[0])
        cpu = 100 * (end[1] - start[1]) / (end[0] - start[0])
        return {"msgs": out["msgs"], "cpu": cpu, "rss": peak[0] / 2**20}
    return run


def idle_scenario(count):
    """(g): RSS of the server before and after `count` connections that echoed once and idle."""
    def run(ctx, srv):
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


# A secondary row: the server's CPU use during the bench (no ratio, no target).
CPU = ("cpu", "server CPU %", "pct", False)


def make_scenarios(quick):
    scale = [1, 100, 1000, 10000]
    scenarios = [
        Scenario("a", "(a) 1 conn, 64 B, 1 in flight",
                 [("p50", "latency p50 µs", "us", False), ("p99", "latency p99 µs", "us", False)],
                 bench_scenario(1, 64, 1, ["p50", "p99"])),
        Scenario("b", "(b) 64 conns, 64 B, 1 in flight", [("msgs", "msgs/s", "n", True), CPU],
                 bench_scenario(64, 64, 1, ["msgs"])),
        Scenario("c", "(c) 64 conns, 64 B, 16 in flight", [("msgs", "msgs/s", "n", True), CPU],
                 bench_scenario(64, 64, 16, ["msgs"])),
        Scenario("d", "(d) 8 conns, 64 KiB, 4 in flight", [("mibs", "MiB/s", "n", True), CPU],
                 bench_scenario(8, 65536, 4, ["mibs"])),
        Scenario("e", "(e) 1 conn, 1 MiB, 2 in flight", [("mibs", "MiB/s", "n", True), CPU],
                 bench_scenario(1, 1 << 20, 2, ["mibs"])),
        Scenario("f", "(f) churn, 8 clients, 64 B", [("conns", "conns/s", "n", True), CPU],
                 bench_scenario(8, 64, 1, ["conns"], extra=["--churn"])),
        Scenario("g", "(g) 10,000 idle conns", [("bpc", "RSS B/conn (target ≤ 1024)", "b", False),
                                                 ("rss", "RSS MiB", "m", False)],
                 idle_scenario(10000), applies=lambda s: s.max_conns is None),
    ]
    for n in scale:
        scenarios.append(Scenario(
            f"h{n}", f"(h) {n:,} conns, 64 B, 1 in flight",
            [("msgs", "msgs/s", "n", True), CPU, ("rss", "RSS MiB", "m", False)],
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
        return f"{value:.1f}" if value < 100 else f"{value:.0f}"
    if unit == "b":
        return f"{value:.0f}"
    if unit == "m":
        return f"{value:.1f}"
    if unit == "pct":
        return f"{value:.0f}%"
    return f"{value:g}"


def table(results, scenarios, servers, runs):
    """Markdown: a row per scenario figure, a column per server."""
    head = "| scenario | figure | " + " | ".join(s.label for s in servers) + " |"
    lines = [head, "|" + "---|" * (len(servers) + 2)]
    for sc in scenarios:
        for metric, label, unit, higher in sc.metrics:
            ref = results.get((sc.key, "c", metric))
            ref_med = statistics.median(ref) if ref else None
            cells = []
            for srv in servers:
                values = results.get((sc.key, srv.key, metric))
                if not sc.applies(srv):
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
                        cell += f" **{ratio:.2f}x**" if srv.key == "udsechod" else f" {ratio:.2f}x"
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
            if sc.key in "abcdef" and len(sc.key) == 1 and metric != "cpu":
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
                lines.append(f"- {'PASS' if ok else 'FAIL'} {sc.title}, {label}: {ratio:.2f}x "
                             f"the C reference (target {goal})")
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
    parser.add_argument("--write-doc", metavar="FILE",
                        help="also replace the table between the markers in FILE")
    opts = parser.parse_args()

    ctx = Context()
    ctx.client = os.path.join(opts.build, "client", "uds-echo")
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
                for srv in servers:
                    if not sc.applies(srv):
                        continue
                    log(f"run {run}/{ctx.runs} {sc.title}: {srv.label}")
                    try:
                        running = Running(srv, workdir)
                    except RuntimeError as e:
                        failures.append(f"{sc.title}, {srv.label}: {e}")
                        log(f"  FAILED: {e}")
                        continue
                    try:
                        figures = sc.run(ctx, running)
                        for metric, value in figures.items():
                            results.setdefault((sc.key, srv.key, metric), []).append(value)
                        log("  " + ", ".join(f"{k}={v:.4g}" for k, v in figures.items()))
                    except BenchFailed as e:
                        failures.append(f"{sc.title}, {srv.label}: {e}")
                        log(f"  FAILED: {e}")
                    finally:
                        running.stop()
                        if running.proc.returncode not in (0, -signal.SIGTERM, 143):
                            log(f"  {srv.label} exited with {running.proc.returncode}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    elapsed = time.monotonic() - started
    report = [
        f"Run {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} on {machine_summary()}; "
        f"load average at start {load:.2f}.",
        f"{ctx.runs} run(s) per cell, {ctx.duration:g} s measured after {ctx.warmup:g} s warm-up, "
        f"interleaved across servers; {elapsed / 60:.1f} minutes in all. " +
        ("No pinning: servers and `uds-echo bench` share both CPUs." if opts.unpinned else
         "Servers on CPU 1, `uds-echo bench` on CPU 0."),
        "Cells: median, ratio to the C epoll reference's median, [min–max of the runs].",
        "",
        table(results, scenarios, servers, ctx.runs),
    ]
    goals = targets(results, scenarios)
    if goals:
        report += ["", "uds-echod against its targets (medians):", ""] + goals
    if failures:
        report += ["", "Failed runs:", ""] + [f"- {f}" for f in failures]
    text = "\n".join(report)
    print(text)

    if opts.write_doc:
        with open(opts.write_doc) as f:
            doc = f.read()
        marker = "perf-unpinned" if opts.unpinned else "perf-table"
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
