#!/usr/bin/env python3
"""tiny_http against our HTTP server under the same attacks, side by side
in one run: why the host has its own server although the design card names
tiny_http (issue 19, item 10; ARCHITECTURE.md, "Why our own HTTP server").

    cargo build --release && cargo build --release --example tiny_http_server
    python3 bench/vs_tiny_http.py [--probes N] [--timeout S] [--run-limit S]

The two servers:
  tiny_http  examples/tiny_http_server.rs: tiny_http 0.12 with the host's 4
             workers, answering every request with a fixed body the size
             of /api (no routing, no JSON: its best case)
  ours       the host itself (src/http/server.rs), shipped config/host.toml
             (128 connections, 32 per client, 4 workers, 5 s idle and 10 s
             request deadlines), simulated hardware, the plugins polling

Both run with the open-file limit a systemd service gets by default (soft
1024; deploy/wasi-python-host.service does not raise it), set on the
running process with prlimit.

Attacks, all from one client, 127.0.0.2, each socket reopened as soon as
the server closes it:
  idle       130 sockets that send nothing
  slowloris  300 sockets sending a request head one byte per 0.2 s
  no-read    4 sockets (one per worker) each pipelining 10,000 GET /api
             and never reading the answers (a 4 KiB receive buffer)
  fd         1000 idle sockets: past the open-file limit
then `after`: the attack over, every socket closed. tiny_http is started
afresh for every row but `after` (which shows what the fd row left).

Meanwhile a legitimate client, 127.0.0.1, opens a fresh connection every
50 ms (`--probes` per row, each in its own thread, so a hung probe does not
delay the next) and sends GET /api, waiting at most `--timeout` seconds:
served (200), 503, refused (connection refused or reset, or closed without
an answer), or hung (no answer in time). Per row and server also: the
server's threads, open files and PSS (most seen), and how many attack
sockets the server closed per second (0: it holds them for ever).

Last, without probes: the same no-read sockets pipelining without end, and
the server's PSS (stopped when it passes 512 MiB, a Pi Zero 2 W's RAM, or
after `--memory-seconds`).

Every run (one attack on one server) ends within `--run-limit` seconds;
with the defaults the script takes about a minute (under 4 with every run
at its limit). Memory is PSS from /proc/PID/smaps_rollup (shared pages
divided among their users), not RSS. Prints markdown tables (bench/all.py
--sections tiny copies them into BENCHMARKS.md).
"""

import argparse
import errno
import os
import re
import resource
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import BINARY, EXAMPLES, probe, start_host, write_config  # noqa: E402

ATTACKER = "127.0.0.2"
NOFILE = 1024
TINY = os.path.join(EXAMPLES, "tiny_http_server")
WORKERS = 4
PROBE_EVERY_S = 0.05
MEMORY_STOP_MIB = 512
# Connections the attacker opens per 20 ms tick at most: a server that
# refuses at once must not turn the reopen loop into a busy loop.
OPENS_PER_TICK = 100


def probes(addr, n, timeout):
    """n probes, one started every PROBE_EVERY_S whatever the others do;
    returns once all have an outcome (≤ n × 50 ms + timeout)."""
    results = [None] * n

    def one(i):
        results[i] = probe(addr, timeout)

    threads = []
    for i in range(n):
        t = threading.Thread(target=one, args=(i,), daemon=True)
        t.start()
        threads.append(t)
        time.sleep(PROBE_EVERY_S)
    for t in threads:
        t.join(timeout + 1)
    return [r or ("hung", timeout) for r in results]


class Attack:
    """`n` sockets from ATTACKER of one `kind`, reopened when the server
    closes them. Connections are opened without blocking, so a server that
    stops accepting (a full backlog) does not stall the attacker."""

    def __init__(self, addr, kind, n, pipelined=None, ready_within=5.0):
        """`pipelined`: requests each no-read socket sends (None: no end)."""
        host, port = addr.rsplit(":", 1)
        self.target = (host, int(port))
        self.kind, self.n, self.pipelined = kind, n, pipelined
        self.ready_within = ready_within
        self.sent = {}
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.closed_by_server = 0
        self.request = f"GET /api HTTP/1.1\r\nHost: {addr}\r\n\r\n".encode()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def push(self, s):
        """Sends pipelined requests until the socket's buffer is full or
        its budget is spent."""
        try:
            for _ in range(2000):
                if self.pipelined is not None and self.sent.get(s, 0) >= self.pipelined:
                    return
                s.send(self.request)
                self.sent[s] = self.sent.get(s, 0) + 1
        except OSError:  # BlockingIOError included: the buffer is full
            pass

    def run(self):
        poller = select.poll()
        ends = select.POLLRDHUP | select.POLLHUP | select.POLLERR
        # A no-read socket is never read: only its end is watched.
        steady = ends if self.kind == "no-read" else ends | select.POLLIN
        socks, connecting = {}, set()

        def open_one():
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((ATTACKER, 0))
                if self.kind == "no-read":
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.setblocking(False)
                err = s.connect_ex(self.target)
            except OSError:
                s.close()
                return
            if err not in (0, errno.EINPROGRESS):
                s.close()
                return
            socks[s.fileno()] = s
            connecting.add(s.fileno())
            poller.register(s, select.POLLOUT | ends)

        def connected(s):
            if self.kind == "slowloris":
                try:
                    s.send(b"GET /api HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                except OSError:
                    pass
            elif self.kind == "no-read":
                self.push(s)

        def drop(fd, by_server):
            s = socks.pop(fd)
            connecting.discard(fd)
            poller.unregister(fd)
            self.sent.pop(s, None)
            s.close()
            if by_server:
                self.closed_by_server += 1

        t_start = time.monotonic()
        last_trickle = time.monotonic()
        while not self.stop.is_set():
            for _ in range(min(self.n - len(socks), OPENS_PER_TICK)):
                open_one()
            if not self.ready.is_set() and ((len(socks) >= self.n and not connecting)
                                            or time.monotonic() - t_start > self.ready_within):
                self.ready.set()
            for fd, event in poller.poll(20):
                s = socks.get(fd)
                if s is None:
                    continue
                if fd in connecting:
                    if event & ends or s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                        drop(fd, by_server=False)  # refused or reset: never accepted
                        continue
                    connecting.discard(fd)
                    poller.modify(fd, steady)
                    connected(s)
                    continue
                if not event & ends:
                    # An answer (408, 503) before the close: read on.
                    try:
                        if s.recv(65536):
                            continue
                    except BlockingIOError:
                        continue
                    except OSError:
                        pass
                drop(fd, by_server=True)
            if self.kind == "slowloris" and time.monotonic() - last_trickle > 0.2:
                last_trickle = time.monotonic()
                for fd, s in socks.items():
                    if fd not in connecting:
                        try:
                            s.send(b"a")
                        except OSError:
                            pass  # the poll reports the end
            elif self.kind == "no-read":
                for fd, s in socks.items():
                    if fd not in connecting:
                        self.push(s)
        for s in socks.values():
            s.close()

    def __enter__(self):
        self.thread.start()
        self.ready.wait(self.ready_within + 5)
        time.sleep(1)  # the server busy with every socket (buffers full, threads parked)
        self.started = time.monotonic()
        self.closed_at_start = self.closed_by_server
        return self

    def __exit__(self, *exc):
        seconds = max(time.monotonic() - self.started, 1e-3)
        self.close_rate = (self.closed_by_server - self.closed_at_start) / seconds
        self.stop.set()
        self.thread.join()


class Sampler:
    """The most threads, open files and PSS (KiB) a process shows while it
    runs, and its PSS when sampling started."""

    def __init__(self, pid, every=0.2):
        self.pid, self.every = pid, every
        self.threads = self.files = self.pss_kib = 0
        self.pss_first = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def sample(self):
        try:
            status = open(f"/proc/{self.pid}/status").read()
            self.threads = max(self.threads, int(re.search(r"Threads:\s+(\d+)", status).group(1)))
            self.files = max(self.files, len(os.listdir(f"/proc/{self.pid}/fd")))
            pss = common.smaps_rollup(self.pid)["pss"]
        except (OSError, AttributeError):
            return False
        if self.pss_first is None:
            self.pss_first = pss
        self.pss_kib = max(self.pss_kib, pss)
        return True

    def run(self):
        while self.sample() and not self.stop.wait(self.every):
            pass

    def __enter__(self):
        self.sample()
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.sample()


def run_row(name, server, proc, addr, args, attack=None):
    """One row of the main table: probes while `attack` runs."""
    t0 = time.monotonic()
    with Sampler(proc.pid) as sampler:
        if attack:
            # The attack may spend what the probes do not need of the run limit.
            ready = max(args.run_limit - args.probes * PROBE_EVERY_S - args.timeout - 2, 1)
            with Attack(addr, *attack, ready_within=ready) as a:
                results = probes(addr, args.probes, args.timeout)
            close_rate = f"{a.close_rate:,.0f}"
        else:
            results = probes(addr, args.probes, args.timeout)
            close_rate = "–"
    outcomes = [o for o, _ in results]
    served = [t for o, t in results if o == "served"]
    other = len(outcomes) - sum(outcomes.count(k) for k in ("served", "503", "refused", "hung"))
    lat = (f"{1000 * statistics.median(served):.1f} | {1000 * max(served):.1f}" if served else "– | –")
    log(f"  {server}: {dict((k, outcomes.count(k)) for k in sorted(set(outcomes)))} "
        f"threads {sampler.threads} files {sampler.files} in {time.monotonic() - t0:.1f} s")
    return (f"| {name} | {server} | {outcomes.count('served')} | {outcomes.count('503')} | "
            f"{outcomes.count('refused')} | {outcomes.count('hung')}{f' (+{other} other)' if other else ''} | "
            f"{lat} | {sampler.threads} | {sampler.files} | {sampler.pss_kib / 1024:.1f} | {close_rate} |")


def memory_row(server, proc, addr, seconds):
    """PSS while one client pipelines requests without end on WORKERS
    sockets and never reads the answers: stopped as soon as the server
    passes MEMORY_STOP_MIB or after `seconds`."""
    with Sampler(proc.pid, every=0.1) as sampler, Attack(addr, "no-read", WORKERS):
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds and sampler.pss_kib < MEMORY_STOP_MIB * 1024:
            time.sleep(0.1)
        elapsed = time.monotonic() - t0
    start, peak = sampler.pss_first / 1024, sampler.pss_kib / 1024
    stopped = " (stopped there)" if peak >= MEMORY_STOP_MIB else ""
    log(f"  {server}: PSS {start:.1f} -> {peak:.1f} MiB in {elapsed:.1f} s")
    return (f"| {server} | {start:.1f} | {peak:.1f}{stopped} | {peak - start:+.1f} | {elapsed:.1f} | "
            f"{(peak - start) / elapsed:+.1f} | {sampler.threads} |")


# (row, attack): an attack is (kind, sockets[, pipelined requests per socket]).
ATTACKS = [
    ("no attack", None),
    ("130 idle sockets", ("idle", 130)),
    ("300 slowloris heads", ("slowloris", 300)),
    ("4 sockets pipelining 10,000 requests each, never reading", ("no-read", 4, 10_000)),
    ("1000 idle sockets (past the open-file limit)", ("idle", 1000)),
    ("after: attack over, sockets closed", None),
]


def limit_files(pid):
    hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)[1]
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (NOFILE, hard))


def listens(addr):
    """Whether anything still listens on addr's port (/proc/net/tcp)."""
    port = f"{int(addr.rsplit(':', 1)[1]):04X}"
    with open("/proc/net/tcp") as f:
        return any(line.split()[1].endswith(":" + port) and line.split()[3] == "0A"
                   for line in list(f)[1:])


def wait_ready(addr, limit=600):
    """Until /api lists every plugin running (the first start may compile
    the runtime: measuring during that would measure the compiler), then
    a moment to settle."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        a = common.api(addr)
        if a and a.get("plugins") and all(p["status"] == "running" for p in a["plugins"]):
            time.sleep(2)
            return
        time.sleep(0.5)
    raise SystemExit("the host's plugins did not all reach `running`")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Tiny:
    """examples/tiny_http_server, restartable; its stderr kept in a file."""

    def __init__(self, body_bytes, stderr_path):
        self.body_bytes, self.proc = body_bytes, None
        self.stderr = open(stderr_path, "w+")
        self.notes = []

    def start(self):
        self.stop()
        self.stderr.seek(0)
        self.stderr.truncate()
        self.proc = subprocess.Popen([TINY, "127.0.0.1:0", str(WORKERS), str(self.body_bytes)],
                                     stdout=subprocess.PIPE, stderr=self.stderr, text=True,
                                     env={**os.environ, "RUST_LOG": "error"})
        self.addr = re.search(r"listening on http://(\S+)", self.proc.stdout.readline()).group(1)
        limit_files(self.proc.pid)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def said(self):
        """What tiny_http and the example wrote to stderr (panics, the
        accept thread stopping), each line once."""
        self.stderr.flush()
        self.stderr.seek(0)
        lines = self.stderr.read().splitlines()
        found = []
        for i, line in enumerate(lines):
            if "panicked at" in line:
                what = f"{line.strip()} {lines[i + 1].strip() if i + 1 < len(lines) else ''}"
            elif line.strip() and "note: run with" not in line:
                what = line.strip()
            else:
                continue
            if what not in found:
                found.append(what)
        return found


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--probes", type=int, default=20, help="probes per row and server")
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds before a probe counts as hung")
    ap.add_argument("--run-limit", type=float, default=15.0,
                    help="seconds one attack on one server may take, set-up included")
    ap.add_argument("--memory-seconds", type=float, default=20.0,
                    help="how long the no-read pipelining of the memory table runs at most")
    args = ap.parse_args()
    if args.probes * PROBE_EVERY_S + args.timeout + 3 > args.run_limit:
        raise SystemExit("--run-limit must leave room for the probes: probes × 0.05 s + timeout + 3 s")
    # The attacker and the probes need more than 1024 sockets themselves.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 4096), hard), hard))
    for path in (TINY, BINARY):
        if not os.path.exists(path):
            raise SystemExit(f"missing {path}: cargo build --release && "
                             "cargo build --release --example tiny_http_server")
    rows, memory, states, said = [], [], {}, []
    load_before = os.getloadavg()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="whp-vs-tiny-") as tmp:
        cache = os.path.join(common.TARGET_DIR, "bench", "cache")
        os.makedirs(cache, exist_ok=True)
        config = write_config(os.path.join(tmp, "host.toml"), os.path.join(tmp, "state"), cache)
        host, host_addr = start_host(config)
        common.drain(host)
        tiny = None
        try:
            wait_ready(host_addr)
            limit_files(host.pid)
            # tiny_http's fixed body is as long as our /api.
            with urllib.request.urlopen(f"http://{host_addr}/api", timeout=5) as r:
                body_bytes = len(r.read())
            tiny = Tiny(body_bytes, os.path.join(tmp, "tiny.stderr"))
            for name, attack in ATTACKS:
                log(name)
                if attack is not None or name == "no attack":
                    tiny.start()
                for server, proc, addr in (("tiny_http", tiny.proc, tiny.addr), ("ours", host, host_addr)):
                    rows.append(run_row(name, server, proc, addr, args, attack))
                if name.startswith("1000"):
                    said = tiny.said()
            states = {s: ("running" if p.poll() is None else f"exited ({p.returncode})")
                      + ("" if listens(a) else ", no longer listening")
                      for s, p, a in (("tiny_http", tiny.proc, tiny.addr), ("ours", host, host_addr))}
            log("memory")
            tiny.start()
            memory.append(memory_row("tiny_http", tiny.proc, tiny.addr, args.memory_seconds))
            tiny.stop()
            memory.append(memory_row("ours", host, host_addr, args.memory_seconds))
        finally:
            if tiny is not None:
                tiny.stop()
            host.terminate()
            host.wait(timeout=30)
    print(f"{args.probes} probes per row and server: GET /api from 127.0.0.1, a fresh connection every "
          f"50 ms (each in its own thread); hung = no answer within {args.timeout:.0f} s; refused = "
          f"connection refused or reset, or closed without an answer. Attacks from {ATTACKER}, each "
          f"socket reopened when the server closes it; the attack runs 1 s before the first probe. Both "
          f"servers with {WORKERS} workers and an open-file limit of {NOFILE} (a systemd service's "
          f"default); tiny_http (examples/tiny_http_server.rs, a fixed {body_bytes}-byte body, the size "
          f"of our /api) is started afresh for every row but the last; ours is the host as shipped "
          f"(128 connections, 32 per client, 5 s idle and 10 s request deadlines), one process for the "
          f"whole run. Threads, open files and PSS are the most seen during the row (tiny_http holds two "
          f"files per connection: it duplicates each socket). Both built with `cargo build "
          f"--{common.PROFILE}`. {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average "
          f"(1 min) {load_before[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, on "
          f"{os.cpu_count()} cores; {(time.monotonic() - started) / 60:.1f} min in all.\n")
    print("| attack | server | served | 503 | refused | hung | median ms | max ms | "
          "threads | open files | PSS MiB | attack sockets the server closed /s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(row)
    print("\nAt the end of the table: " + ", ".join(f"{s} {st}" for s, st in states.items()) + ".")
    for line in said:
        print(f"\ntiny_http's stderr during the 1000-socket row: `{line}`")
    print(f"\nOne client, {WORKERS} sockets pipelining GET /api without end and never reading the answers "
          f"(no probes; tiny_http started afresh; stopped at {MEMORY_STOP_MIB} MiB or after "
          f"{args.memory_seconds:.0f} s). PSS from /proc/PID/smaps_rollup:\n")
    print("| server | PSS before, MiB | PSS most, MiB | growth, MiB | seconds | MiB/s | threads |")
    print("|---|---|---|---|---|---|---|")
    for row in memory:
        print(row)


if __name__ == "__main__":
    sys.exit(main())
