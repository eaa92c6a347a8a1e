#!/usr/bin/env python3
"""Every benchmark comparison in one command; writes BENCHMARKS.md.

    python3 bench/all.py              # the full run (~20 min: memory alone is 10 min)
    python3 bench/all.py --quick      # a short smoke run (~6 min), same sections
    python3 bench/all.py --sections calls,http   # only some sections
    python3 bench/all.py --note "measured while the machine was shared with other builds"

Sections (each compares against a baseline measured in the same run):

  calls   plugin call overhead: poll/render with fuel + epoch on, limits off
          (examples/callbench.rs, both Engines in one process), and the same
          Python in CPython with the fakehost shim (bench/native_calls.py)
  http    /api and / throughput and latency with wrk while plugins poll,
          against examples/bare_http.rs (tiny_http, fixed body)
  sched   poll start delay (jitter) p50/p99/max from /metrics histograms,
          idle and under the wrk load
  idle    host CPU time over 60 s without HTTP traffic, per thread
  memory  bench/memory.py (host modes against python3 processes)
  start   bench/start.py (cold against warm start)
  reload  bench/reload.py (hot reload against a restart)
  flood   bench/flood.py (a fresh request's latency while another client
          floods the connection slots, against no flood)

The figures go to BENCHMARKS.md between `<!-- bench:NAME -->` markers (a
section not run keeps its previous figures), with the machine, the date and
this exact command. Needs the host built (the script runs cargo build), the
plugins (it runs scripts/build-plugins.sh), and `wrk` (scripts/setup.sh).
"""

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import BINARY, ROOT, api, start_host, write_config  # noqa: E402

PY = os.path.join(ROOT, ".venv", "bin", "python")
EXAMPLES = os.path.join(ROOT, "target", "debug", "examples")
BENCH_DIR = os.path.join(ROOT, "target", "bench")
SECTIONS = ["calls", "http", "sched", "idle", "memory", "start", "reload", "flood"]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(cmd, **kw):
    log("$ " + " ".join(shlex.quote(c) for c in cmd))
    return subprocess.run(cmd, check=True, cwd=ROOT, **kw)


def tables(text):
    """The markdown tables (and the lines between them) a script printed."""
    lines = text.splitlines()
    first = next((i for i, l in enumerate(lines) if l.startswith("|")), None)
    return "\n".join(lines[first:]).strip() if first is not None else text.strip()


# ---------------------------------------------------------------- machine

def machine():
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    lock = open(os.path.join(ROOT, "Cargo.lock")).read()
    m = re.search(r'name = "wasmtime"\nversion = "([^"]+)"', lock)
    mem_kib = int(next(l for l in open("/proc/meminfo") if l.startswith("MemTotal")).split()[1])
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": f"{mem_kib / 1024 / 1024:.0f} GiB",
        "kernel": platform.release(),
        "os": platform.freedesktop_os_release().get("PRETTY_NAME", "") if hasattr(platform, "freedesktop_os_release") else "",
        "rustc": rustc,
        "wasmtime": m.group(1) if m else "?",
        "python": subprocess.run([PY, "--version"], capture_output=True, text=True).stdout.strip(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


# ---------------------------------------------------------------- calls

def calls_section(quick):
    iters = 300 if quick else 3000
    out = run([os.path.join(EXAMPLES, "callbench"), "--config", os.path.join(ROOT, "config", "host.toml"),
               "--cache", os.path.join(BENCH_DIR, "cache"), "--iters", str(iters)],
              stdout=subprocess.PIPE, text=True).stdout
    rows = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    out = run([PY, os.path.join(ROOT, "bench", "native_calls.py"), "--iters", str(iters)],
              stdout=subprocess.PIPE, text=True).stdout
    rows += [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    by = {(r["plugin"], r["mode"]): r for r in rows}
    pyver = next((r["python"] for r in rows if "python" in r), "?")
    lines = [
        f"```\n./target/debug/examples/callbench --iters {iters}   # limits on and off, one process\n"
        f".venv/bin/python bench/native_calls.py --iters {iters}\n```",
        "",
        f"{iters} calls per contender after 20 warm-up calls; the two Engines alternate in rounds of 50 "
        "calls. µs per call, median / p99. Sensor plugins go through the simulated hardware thread "
        "in the host (a channel round trip per reading); in CPython the fakehost shim answers from memory. "
        f"Native CPython is {pyver}; the components embed CPython 3.14.",
        "",
        "| plugin | call | fuel + epoch (a) | limits off (b) | CPython + shim (c) | a/b median | a/b p99 | a/c median | fuel per call |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    goal_poll, goal_ratio = [], []
    for plugin in ["dht22", "bme680", "pi_monitor", "dashboard"]:
        a, b, c = by.get((plugin, "limits_on")), by.get((plugin, "limits_off")), by.get((plugin, "cpython"))
        if not (a and b and c):
            continue
        failed = a.get("failures", 0) + b.get("failures", 0)
        if failed:
            plugin = f"{plugin} ({a.get('failures', 0)} + {b.get('failures', 0)} calls failed)"
        lines.append(
            f"| {plugin} | {a['call']} | {a['median_us']:.1f} / {a['p99_us']:.1f} | {b['median_us']:.1f} / {b['p99_us']:.1f} "
            f"| {c['median_us']:.1f} / {c['p99_us']:.1f} | {a['median_us'] / b['median_us']:.2f} "
            f"| {a['p99_us'] / b['p99_us']:.2f} | {a['median_us'] / c['median_us']:.2f} | {a['fuel']:,} |")
        if a["call"] == "poll":
            goal_poll.append((plugin, a["median_us"]))
            goal_ratio.append((plugin, a["median_us"] / b["median_us"]))
    worst = max(goal_poll, key=lambda x: x[1])
    worst_ratio = max(goal_ratio, key=lambda x: x[1])
    lines += [
        "",
        f"Goal: `poll` with limits ≤ 30 µs median — slowest is {worst[0]} at {worst[1]:.1f} µs: "
        f"**{'met' if worst[1] <= 30 else 'not met'}**. Limits ≤ 1.7× limits off — worst is {worst_ratio[0]} "
        f"at {worst_ratio[1]:.2f}×: **{'met' if worst_ratio[1] <= 1.7 else 'not met'}**.",
    ]
    return "\n".join(lines), rows


# ---------------------------------------------------------------- host helpers

def get(addr, path, timeout=5):
    with urllib.request.urlopen(f"http://{addr}{path}", timeout=timeout) as r:
        return r.read()


def wait_full_api(addr, limit=600):
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        a = api(addr)
        if a and {r["sensor_id"] for r in a["readings"]} >= {"dht22-gpio-4", "bme680-i2c-0x77"} and a["system"] \
                and any(p["name"] == "dashboard" and p["status"] == "running" for p in a["plugins"]):
            return
        time.sleep(0.1)
    raise SystemExit("the host did not reach a full /api")


def metrics(addr):
    """Start-delay histograms from /metrics: {plugin: {le: cumulative}}, plus sums."""
    text = get(addr, "/metrics").decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r'whp_plugin_poll_start_delay_seconds_bucket\{plugin="([^"]+)",le="([^"]+)"\} (\d+)', line)
        if m:
            le = float("inf") if m.group(2) == "+Inf" else float(m.group(2))
            out.setdefault(m.group(1), {})[le] = int(m.group(3))
    return out


def delta(after, before):
    return {p: {le: n - before.get(p, {}).get(le, 0) for le, n in h.items()} for p, h in after.items()}


def quantile(hist, q):
    """Linear interpolation inside the bucket holding quantile q; None when empty."""
    bounds = sorted(hist)
    total = hist[bounds[-1]]
    if total == 0:
        return None
    rank, prev_b, prev_n = q * total, 0.0, 0
    for b in bounds:
        if hist[b] >= rank:
            if b == float("inf"):
                return prev_b
            inside = hist[b] - prev_n
            return prev_b + (b - prev_b) * ((rank - prev_n) / inside if inside else 1)
        prev_b, prev_n = b, hist[b]
    return prev_b


def highest(hist):
    """Upper bound of the highest non-empty bucket."""
    bounds = sorted(hist)
    prev = 0
    top = None
    for b in bounds:
        if hist[b] > prev:
            top = b
        prev = hist[b]
    return top


def cpu_ticks(pid):
    """(process utime+stime, {thread name: ticks}) in clock ticks."""
    def ticks(path):
        fields = open(path).read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    threads = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name = open(f"/proc/{pid}/task/{tid}/comm").read().strip()
            threads[name] = threads.get(name, 0) + ticks(f"/proc/{pid}/task/{tid}/stat")
        except OSError:
            pass
    return ticks(f"/proc/{pid}/stat"), threads


def wrk(url, seconds, connections=8, close=False):
    extra = ["-H", "Connection: close"] if close else []
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", *extra, url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def lat(pct):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        v, unit = float(m.group(1)), m.group(2)
        return v * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50_ms": lat(50), "p99_ms": lat(99),
            "non2xx": int(errors.group(1)) if errors else 0, "socket_errors": sock.group(1) if sock else ""}


# ---------------------------------------------------------------- host run: idle, sched, http

def host_sections(quick, wanted):
    idle_s = 15 if quick else 60
    load_s = 4 if quick else 15
    work = tempfile.mkdtemp(prefix="whp-bench-all-")
    out = {}
    bare = None
    try:
        config = write_config(os.path.join(work, "host.toml"), f"{work}/state", os.path.join(BENCH_DIR, "cache"))
        run([BINARY, "precompile", "--config", config], stdout=subprocess.DEVNULL)
        proc, addr = start_host(config)
        try:
            wait_full_api(addr)
            time.sleep(3)  # let the start-up settle (first renders, artifact checks)
            intervals = {p["name"]: p["interval_ms"] for p in json.loads(get(addr, "/api/plugins"))["plugins"]}
            # Idle: no HTTP traffic at all between the two /metrics reads.
            m0 = metrics(addr)
            c0, t0 = cpu_ticks(proc.pid)
            w0 = time.monotonic()
            log(f"idle phase: {idle_s} s without HTTP traffic")
            time.sleep(idle_s)
            c1, t1 = cpu_ticks(proc.pid)
            wall = time.monotonic() - w0
            m1 = metrics(addr)
            out["idle"] = {"seconds": wall, "cpu_s": (c1 - c0) / CLK_TCK,
                           "threads": {k: (v - t0.get(k, 0)) / CLK_TCK for k, v in t1.items()}}
            out["sched_idle"] = delta(m1, m0)
            # Load: wrk on /api, then on /, while the plugins poll.
            api_size = len(get(addr, "/api"))
            page_size = len(get(addr, "/"))
            if "http" in wanted or "sched" in wanted:
                bare_proc = subprocess.Popen([os.path.join(EXAMPLES, "bare_http"), "127.0.0.1:0", "4", str(api_size)],
                                             stdout=subprocess.PIPE, text=True)
                bare = bare_proc
                bare_addr = re.search(r"listening on http://(\S+)", bare_proc.stdout.readline()).group(1)
                log(f"load phase: wrk {load_s} s each on bare, /api, /, bare")
                res = {}
                m2 = metrics(addr)
                res["bare1"] = wrk(f"http://{bare_addr}/", load_s)
                res["api"] = wrk(f"http://{addr}/api", load_s)
                res["page"] = wrk(f"http://{addr}/", load_s)
                m3 = metrics(addr)
                res["bare2"] = wrk(f"http://{bare_addr}/", load_s)
                # A new connection per request: no keep-alive stalls.
                m4 = metrics(addr)
                res["close_bare1"] = wrk(f"http://{bare_addr}/", load_s, close=True)
                res["close_api"] = wrk(f"http://{addr}/api", load_s, close=True)
                res["close_page"] = wrk(f"http://{addr}/", load_s, close=True)
                m5 = metrics(addr)
                res["close_bare2"] = wrk(f"http://{bare_addr}/", load_s, close=True)
                out["sched_load"] = {p: {le: n + delta(m5, m4)[p][le] for le, n in h.items()}
                                     for p, h in delta(m3, m2).items()}
                out["http"] = res
                out["sizes"] = (api_size, page_size)
            out["intervals"] = intervals
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    finally:
        if bare:
            bare.terminate()
            bare.wait()
        shutil.rmtree(work, ignore_errors=True)
    return out, idle_s, load_s


def idle_text(r, idle_s):
    idle = r["idle"]
    pct = idle["cpu_s"] / idle["seconds"] * 100
    threads = sorted(((k, v) for k, v in idle["threads"].items() if v > 0), key=lambda kv: -kv[1])
    lines = [
        f"Host with the four shipped plugins at their shipped intervals, no HTTP traffic, {idle['seconds']:.0f} s "
        "(utime + stime from `/proc/PID/stat`, clock ticks of 10 ms).",
        "",
        "| host CPU time | % of one core | goal |",
        "|---|---|---|",
        f"| {idle['cpu_s']:.2f} s in {idle['seconds']:.0f} s | {pct:.2f} % | < 0.5 %: **{'met' if pct < 0.5 else 'not met'}** |",
        "",
        "By thread: " + (", ".join(f"`{k}` {v:.2f} s" for k, v in threads) or "none measurable") + ".",
    ]
    return "\n".join(lines)


def http_text(r, load_s):
    h = r["http"]
    api_size, page_size = r["sizes"]
    lines = [
        f"`wrk -t2 -c8 -d{load_s}s --latency` on loopback, one after the other: bare, `/api`, `/`, bare again "
        f"(the bare figure is the mean of the two), first with keep-alive (wrk's default), then with "
        f"`Connection: close` (a new connection per request). The bare server is `examples/bare_http.rs` "
        f"(tiny_http, 4 workers like the host, a fixed {api_size}-byte body, the size of `/api`); `/` is "
        f"{page_size} bytes. The host's plugins keep polling throughout. wrk itself shares the 2 cores.",
        "",
        "| connections | server, route | requests/s | p50 | p99 | ratio to bare (req/s) |",
        "|---|---|---|---|---|---|",
    ]
    worst = 1e9
    for prefix, conn in (("", "keep-alive"), ("close_", "`Connection: close`")):
        b1, b2 = h[prefix + "bare1"], h[prefix + "bare2"]
        bare_rps = statistics.mean([b1["rps"], b2["rps"]])
        lines.append(f"| {conn} | bare tiny_http, fixed body | {bare_rps:,.0f} | "
                     f"{statistics.mean([b1['p50_ms'], b2['p50_ms']]):.2f} ms | "
                     f"{statistics.mean([b1['p99_ms'], b2['p99_ms']]):.2f} ms | 1.00 |")
        for key, label in (("api", "host `/api`"), ("page", "host `/` (dashboard from cache)")):
            x = h[prefix + key]
            ratio = x["rps"] / bare_rps
            worst = min(worst, ratio)
            errs = f" ({x['non2xx']} non-2xx)" if x["non2xx"] else ""
            lines.append(f"| {conn} | {label} | {x['rps']:,.0f}{errs} | {x['p50_ms']:.2f} ms | {x['p99_ms']:.2f} ms "
                         f"| {ratio:.2f} |")
    lines += ["", f"Goal: `/` and `/api` ≥ 80 % of bare — worst is {worst * 100:.0f} %: "
              f"**{'met' if worst >= 0.8 else 'not met'}**."]
    return "\n".join(lines)


def sched_text(r, idle_s, load_s):
    lines = [
        "How late each scheduled `poll` started after its due time, from the "
        "`whp_plugin_poll_start_delay_seconds` histograms in `/metrics` (difference of two scrapes per phase; "
        "quantiles interpolated inside a bucket, max is the upper bound of the highest non-empty bucket). "
        f"Shipped intervals, so a phase holds few samples: p99 of a few dozen is close to the max. Idle: {idle_s} s; "
        f"under load: the four host wrk runs ({4 * load_s} s).",
        "",
        "| plugin | interval | phase | polls | p50 | p99 | max (bucket) |",
        "|---|---|---|---|---|---|---|",
    ]

    def fmt(s):
        return "—" if s is None else (f"{s * 1e3:.2f} ms" if s >= 1e-3 else f"{s * 1e6:.0f} µs")
    for phase, key in (("idle", "sched_idle"), ("under wrk", "sched_load")):
        for plugin, hist in sorted(r.get(key, {}).items()):
            n = hist[float("inf")]
            lines.append(f"| {plugin} | {r['intervals'].get(plugin, '?')} ms | {phase} | {n} | {fmt(quantile(hist, 0.5))} "
                         f"| {fmt(quantile(hist, 0.99))} | ≤ {fmt(highest(hist))} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- scripts

def script_section(args, timeout=None):
    out = run([sys.executable, *args], stdout=subprocess.PIPE, text=True, timeout=timeout).stdout
    return out


# ---------------------------------------------------------------- BENCHMARKS.md

BEGIN = "<!-- bench:{} -->"
END = "<!-- /bench:{} -->"
HEADER = "## All comparisons, one command (`bench/all.py`)"


def write_md(sections):
    path = os.path.join(ROOT, "BENCHMARKS.md")
    text = open(path).read()
    if HEADER not in text:
        first = text.index("\n## ")
        block = [HEADER, "",
                 "Generated by `bench/all.py`; a re-run replaces the text between the `bench:` markers. "
                 "Older hand-written sections below keep their own dates and commands.", ""]
        for name in ["machine"] + SECTIONS:
            block += [BEGIN.format(name), "(not run yet)", END.format(name), ""]
        text = text[:first + 1] + "\n".join(block) + text[first + 1:]
    for name, body in sections.items():
        b, e = BEGIN.format(name), END.format(name)
        if b not in text:
            text = text.replace(END.format("reload"), END.format("reload") + f"\n\n{b}\n{e}", 1)
        start, end = text.index(b) + len(b), text.index(e)
        text = text[:start] + "\n" + body.strip() + "\n" + text[end:]
    with open(path, "w") as f:
        f.write(text)
    log(f"wrote {path}")


TITLES = {
    "calls": "### Plugin call overhead: limits on, limits off, CPython",
    "http": "### HTTP: the host against a bare tiny_http server",
    "sched": "### Schedule accuracy: poll start delay, idle and under HTTP load",
    "idle": "### Idle cost",
    "memory": "### Memory: the host against python3 processes",
    "start": "### Start-up: cold against warm",
    "reload": "### Hot reload against restarting the host",
    "flood": "### A fresh request while another client floods the connections",
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short smoke run of every section")
    ap.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset of " + ",".join(SECTIONS))
    ap.add_argument("--note", default="", help="a remark printed with the machine details")
    ap.add_argument("--no-write", action="store_true", help="print, do not touch BENCHMARKS.md")
    ap.add_argument("--skip-build", action="store_true", help="do not run cargo build / build-plugins")
    args = ap.parse_args()
    wanted = [s for s in args.sections.split(",") if s]
    for s in wanted:
        if s not in SECTIONS:
            raise SystemExit(f"unknown section {s}; known: {', '.join(SECTIONS)}")
    if ("http" in wanted or "sched" in wanted) and not shutil.which("wrk"):
        raise SystemExit("wrk is missing: run scripts/setup.sh (or apt-get install wrk)")
    command = "python3 bench/all.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    os.makedirs(BENCH_DIR, exist_ok=True)
    if not args.skip_build:
        run(["cargo", "build", "--bins", "--examples"])
        run([os.path.join(ROOT, "scripts", "build-plugins.sh")], stdout=subprocess.DEVNULL)
        run([os.path.join(ROOT, "scripts", "build-plugins.sh"), "--dir", os.path.join(ROOT, "tests", "plugins"),
             "hostile"], stdout=subprocess.DEVNULL)
    info = machine()
    started = time.monotonic()
    sections = {}

    def attempt(names, f):
        """Runs one part; a failure is written into its sections instead of
        losing the whole run."""
        try:
            f()
        except (Exception, SystemExit) as e:  # noqa: BLE001 - reported in BENCHMARKS.md
            log(f"{', '.join(names)} failed: {e!r}")
            for n in names:
                sections.setdefault(n, f"**This section failed in the last run:** `{e!r}`")

    def calls():
        sections["calls"] = calls_section(args.quick)[0]

    def host():
        r, idle_s, load_s = host_sections(args.quick, wanted)
        if "idle" in wanted:
            sections["idle"] = idle_text(r, idle_s)
        if "http" in wanted:
            sections["http"] = http_text(r, load_s)
        if "sched" in wanted:
            sections["sched"] = sched_text(r, idle_s, load_s)

    def memory():
        seconds = 60 if args.quick else 600
        log(f"memory: {seconds} s")
        out = script_section([os.path.join(ROOT, "bench", "memory.py"), "--seconds", str(seconds),
                              "--cache", os.path.join(BENCH_DIR, "cache")])
        sections["memory"] = f"```\npython3 bench/memory.py --seconds {seconds}\n```\n\n" + tables(out)

    def start():
        runs = ["--runs", "2", "--cold-runs", "1"] if args.quick else ["--runs", "5", "--cold-runs", "1"]
        out = script_section([os.path.join(ROOT, "bench", "start.py"), *runs])
        sections["start"] = f"```\npython3 bench/start.py {' '.join(runs)}\n```\n\n" + tables(out)

    def reload():
        runs = ["--runs", "3", "--compile-runs", "1"] if args.quick else ["--runs", "10", "--compile-runs", "2"]
        out = script_section([os.path.join(ROOT, "bench", "reload.py"), *runs])
        sections["reload"] = f"```\npython3 bench/reload.py {' '.join(runs)}\n```\n\n" + tables(out)

    def flood():
        runs = ["--probes", "20"] if args.quick else ["--probes", "42"]
        out = script_section([os.path.join(ROOT, "bench", "flood.py"), *runs])
        sections["flood"] = f"```\npython3 bench/flood.py {' '.join(runs)}\n```\n\n" + tables(out)

    host_parts = [s for s in ("http", "sched", "idle") if s in wanted]
    for names, f in ((["calls"], calls), (host_parts, host), (["memory"], memory), (["start"], start),
                     (["reload"], reload), (["flood"], flood)):
        if names and set(names) <= set(wanted):
            log("section: " + ", ".join(names))
            attempt(names, f)
    minutes = (time.monotonic() - started) / 60
    note = f"\n\n**{args.note}**" if args.note else ""
    sections["machine"] = (
        f"```\n{command}\n```\n\n"
        f"| | |\n|---|---|\n| date | {info['date']} |\n| CPU | {info['cpu']} |\n| cores | {info['cores']} |\n"
        f"| memory | {info['memory']} |\n| OS, kernel | {info['os']}, Linux {info['kernel']} |\n| rustc | {info['rustc']} |\n"
        f"| wasmtime | {info['wasmtime']} |\n| native Python | {info['python']} |\n"
        f"| load average at start | {info['load']} |\n| load average at end | {' '.join(f'{x:.2f}' for x in os.getloadavg())} |\n| sections run | {', '.join(wanted)}{' (quick)' if args.quick else ''}, "
        f"{minutes:.1f} min |\n\nHost and examples in the `dev` profile (dependencies at opt-level 3, as "
        f"`scripts/run.sh` builds them).{note}"
    )
    for name in ["machine"] + [s for s in SECTIONS if s in sections]:
        body = sections[name]
        if name in TITLES:
            body = TITLES[name] + "\n\n" + body
        sections[name] = body
        print("\n" + body + "\n")
    if not args.no_write:
        write_md(sections)


if __name__ == "__main__":
    sys.exit(main())
