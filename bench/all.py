#!/usr/bin/env python3
"""Every benchmark comparison in one command; writes BENCHMARKS.md.

    python3 bench/all.py              # the full run (~35 min: memory alone is 10 min)
    python3 bench/all.py --quick      # a short smoke run of every section (~10 min)
    python3 bench/all.py --sections calls,http   # only some sections
    python3 bench/all.py --note "measured while the machine was shared with other builds"

Sections (each compares against a baseline measured in the same run, and
prints ratios):

  calls   plugin call overhead: poll/render with fuel + epoch on, limits off
          (examples/callbench.rs, both Engines in one process), and the same
          Python in CPython with the fakehost shim (bench/native_calls.py)
  http    /api, /view (the dashboard page, cached) and / with wrk -t2 -c32
          while plugins poll, against examples/bare_http.rs (a keep-alive
          responder with TCP_NODELAY and a fixed body), in rounds
  sched   poll start delay (jitter) p50/p99/max from /metrics histograms,
          idle and under the wrk load
  idle    host CPU time over 60 s without HTTP traffic, per thread
  memory  bench/memory.py (the host with 4 and 12 plugins against python3
          processes, PSS, and the memory cgroup's charge)
  start   bench/start.py (cold against warm start)
  swap    examples/swapbench.rs (new source -> first poll, in-process,
          native and Pulley, new and cached bytecode)
  reload  bench/reload.py (edit -> visible in /api, SyntaxError reported,
          against a restart, through the real host and real file saves)
  flood   bench/flood.py (a fresh request's latency while another client
          floods the connection slots, against no flood)
  tiny    bench/vs_tiny_http.py (tiny_http, examples/tiny_http_server.rs,
          against our server under idle, slowloris, no-read and
          open-file attacks: probes served, threads, PSS; why the host has
          its own server)

Everything runs the release build (what is deployed). The figures go to
BENCHMARKS.md between `<!-- bench:NAME -->` markers (a section not run
keeps its previous figures), with the machine, its load, the date and this
exact command. The script builds the host and examples (cargo build
--release) and the runtime (scripts/build-runtime.sh) first; `wrk` comes
from scripts/setup-tests.sh or apt.
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
from common import (BINARY, EXAMPLES, PROFILE, PY, ROOT, TARGET_DIR, api, cargo_build_args,  # noqa: E402
                    drain, start_host, write_config)

BENCH_DIR = os.path.join(TARGET_DIR, "bench")
SECTIONS = ["calls", "http", "sched", "idle", "memory", "start", "swap", "reload", "flood", "tiny"]
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
        f"```\ncargo run --release --example callbench -- --iters {iters}   # limits on and off, one process\n"
        f".venv/bin/python bench/native_calls.py --iters {iters}\n```",
        "",
        f"{iters} calls per contender after 20 warm-up calls; the two Engines (each with its own instance of "
        "the shared runtime, the plugin's source loaded into it) alternate in rounds of 50 calls. µs per call, "
        "median / p99. Sensor plugins go through the simulated hardware thread in the host (a channel round "
        "trip per reading); in CPython the fakehost shim answers from memory. "
        f"Native CPython is {pyver}; the runtime embeds CPython 3.14.",
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


def add(a, b):
    return {p: {le: n + b.get(p, {}).get(le, 0) for le, n in h.items()} for p, h in a.items()}


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


WRK_THREADS, WRK_CONNECTIONS = 2, 32


def wrk(url, seconds, close=False):
    extra = ["-H", "Connection: close"] if close else []
    out = subprocess.run(["wrk", f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}", f"-d{seconds}s", "--latency", *extra, url],
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

HTTP_ROUTES = [("api", "/api"), ("view", "/view"), ("shell", "/")]


def host_sections(quick, wanted):
    idle_s = 15 if quick else 60
    load_s = 4 if quick else 8
    rounds = 1 if quick else 3
    work = tempfile.mkdtemp(prefix="whp-bench-all-")
    out = {}
    bares = {}
    try:
        config = write_config(os.path.join(work, "host.toml"), f"{work}/state", os.path.join(BENCH_DIR, "cache"))
        run([BINARY, "precompile", "--config", config], stdout=subprocess.DEVNULL)
        proc, addr = start_host(config)
        drain(proc)
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
            sizes = {key: len(get(addr, path)) for key, path in HTTP_ROUTES}
            if "http" in wanted or "sched" in wanted:
                # One bare responder per route, with that route's body size.
                for key, _ in HTTP_ROUTES:
                    b = subprocess.Popen([os.path.join(EXAMPLES, "bare_http"), "127.0.0.1:0", str(sizes[key])],
                                         stdout=subprocess.PIPE, text=True)
                    bares[key] = (b, re.search(r"listening on http://(\S+)", b.stdout.readline()).group(1))
                res = {"keep": [], "close": []}
                sched = {}
                for mode in ("keep", "close"):
                    for r in range(rounds):
                        log(f"load phase ({mode}, round {r + 1}/{rounds}): wrk {load_s} s on each route and on a "
                            "bare responder of the same body size, in turns")
                        one = {}
                        for i, (key, path) in enumerate(HTTP_ROUTES):
                            # Alternate which goes first, so drift in the
                            # machine's load does not favour one side.
                            pair = [("bare_" + key, f"http://{bares[key][1]}/"), (key, f"http://{addr}{path}")]
                            for name, url in (pair if (r + i) % 2 == 0 else pair[::-1]):
                                m2 = metrics(addr)
                                one[name] = wrk(url, load_s, close=mode == "close")
                                if name == key:
                                    m3 = metrics(addr)
                                    sched = add(delta(m3, m2), sched) if sched else delta(m3, m2)
                        res[mode].append(one)
                out["sched_load"] = sched
                out["sched_load_s"] = 2 * rounds * len(HTTP_ROUTES) * load_s
                out["http"] = res
                out["sizes"] = sizes
            out["intervals"] = intervals
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    finally:
        for b, _ in bares.values():
            b.terminate()
            b.wait()
        shutil.rmtree(work, ignore_errors=True)
    return out, idle_s, load_s, rounds


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


def http_text(r, load_s, rounds):
    h = r["http"]
    sizes = r["sizes"]
    labels = {"api": "`/api` (cached per change)", "view": "`/view` (the dashboard page, cached)",
              "shell": "`/` (the static shell page)"}
    lines = [
        f"`wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} -d{load_s}s --latency` on loopback, {rounds} round(s) per "
        "connection mode. Each route is compared with a bare responder serving a body of the same size "
        f"(`/api` {sizes['api']} bytes, `/view` {sizes['view']}, `/` {sizes['shell']}), the two run one after "
        "the other, in alternating order from round to round. The bare responder is `examples/bare_http.rs`: "
        "std, one thread per connection like the host, `TCP_NODELAY`, each response in one write, nothing "
        "else. Medians over the rounds; the ratio's range over the rounds in brackets. The host's plugins keep "
        "polling throughout; wrk shares the 2 cores with the servers.",
        "",
        "| connections | route | host requests/s | host p50 / p99 | bare requests/s | bare p50 / p99 | host / bare |",
        "|---|---|---|---|---|---|---|",
    ]
    keep = {}
    med = statistics.median
    for mode, conn in (("keep", "keep-alive"), ("close", "`Connection: close`")):
        runs = h[mode]
        for key, _ in HTTP_ROUTES:
            ratios = [x[key]["rps"] / x["bare_" + key]["rps"] for x in runs]
            errs = sum(x[key]["non2xx"] for x in runs)
            spread = f" ({min(ratios):.2f}–{max(ratios):.2f})" if len(ratios) > 1 else ""
            lines.append(
                f"| {conn} | {labels[key]} | {med([x[key]['rps'] for x in runs]):,.0f}"
                f"{f' ({errs} non-2xx)' if errs else ''} "
                f"| {med([x[key]['p50_ms'] for x in runs]):.2f} / {med([x[key]['p99_ms'] for x in runs]):.2f} ms "
                f"| {med([x['bare_' + key]['rps'] for x in runs]):,.0f} "
                f"| {med([x['bare_' + key]['p50_ms'] for x in runs]):.2f} / "
                f"{med([x['bare_' + key]['p99_ms'] for x in runs]):.2f} ms | {med(ratios):.2f}{spread} |")
            if mode == "keep":
                keep[key] = med(ratios)
    worst = min(keep["api"], keep["view"])
    lines += ["", f"Goal (keep-alive, as the dashboard and API clients use it): `/api` and the dashboard page "
              f"≥ 0.8 of the bare responder — `/api` {keep['api']:.2f}, `/view` {keep['view']:.2f}: "
              f"**{'met' if worst >= 0.8 else 'not met'}**."]
    return "\n".join(lines)


def sched_text(r, idle_s):
    lines = [
        "How late each scheduled `poll` started after its due time, from the "
        "`whp_plugin_poll_start_delay_seconds` histograms in `/metrics` (difference of two scrapes per phase; "
        "quantiles interpolated inside a bucket, max is the upper bound of the highest non-empty bucket). "
        f"Shipped intervals, so a phase holds few samples: p99 of a few dozen is close to the max. Idle: {idle_s} s; "
        f"under load: the host's wrk runs ({r.get('sched_load_s', 0)} s).",
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


# ---------------------------------------------------------------- swap

def swap_section(quick):
    runs = 5 if quick else 30
    cmd = [os.path.join(EXAMPLES, "swapbench"), "--config", os.path.join(ROOT, "config", "host.toml"),
           "--cache", os.path.join(BENCH_DIR, "cache"), "--runs", str(runs)]
    out = run(cmd, stdout=subprocess.PIPE, text=True).stdout
    rows = {(r["engine"], r["source"]): r for r in (json.loads(l) for l in out.splitlines() if l.startswith("{"))}
    lines = [
        f"```\ncargo run --release --example swapbench -- --runs {runs}\n```",
        "",
        f"A new version of the dht22 plugin's `app.py` to its first successful `poll`, in one process, through "
        f"the host's own loading path (`plugins::load`: read and hash the sources, link the grants against the "
        f"shared runtime, instantiate it, load the Python under the plugin's limits; then the first call). "
        f"{runs} rounds per engine; each round times a never-seen version (its Python compiled to bytecode "
        "inside the new instance) and then the same version again (its bytecode cached, as after a restart, a "
        "re-instantiation or `recycle = true`). Pulley is the interpreter an armv7 device runs, measured here "
        "as `pulley64` on x86 (a Pi's cores are several times slower than this machine's: read the Pulley "
        "rows as a ratio). No debounce and no scheduler: `reload` below has the whole way from a saved file.",
        "",
        "| engine | source | median | min–max | p90 | of which loading (median) | ratio to native, new source |",
        "|---|---|---|---|---|---|---|",
    ]
    base = rows.get(("native", "new"), {}).get("median_ms")
    for engine in ("native", "pulley64"):
        for source in ("new", "bytecode cached"):
            r = rows.get((engine, source))
            if not r:
                continue
            lines.append(f"| {'Cranelift (native)' if engine == 'native' else 'Pulley (pulley64)'} | {source} "
                         f"| {r['median_ms']:.1f} ms | {r['min_ms']:.1f}–{r['max_ms']:.1f} ms | {r['p90_ms']:.1f} ms "
                         f"| {r['load_median_ms']:.1f} ms | {r['median_ms'] / base:.2f} |")
    goals = []
    for engine in ("native", "pulley64"):
        new, cached = rows.get((engine, "new")), rows.get((engine, "bytecode cached"))
        if new and cached:
            ok = new["median_ms"] <= 30 and cached["median_ms"] <= 10
            goals.append(f"{engine}: {new['median_ms']:.1f} / {cached['median_ms']:.1f} ms "
                         f"**{'met' if ok else 'not met'}**")
    lines += ["", "Goal: median ≤ 30 ms for a new source, ≤ 10 ms with cached bytecode — " + "; ".join(goals) + "."]
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
    previous = "machine"
    for name in ["machine"] + SECTIONS:
        b, e = BEGIN.format(name), END.format(name)
        if b not in text:
            # A new section goes after the one before it in SECTIONS.
            anchor = END.format(previous)
            text = text.replace(anchor, anchor + f"\n\n{b}\n(not run yet)\n{e}", 1)
        previous = name
    for name, body in sections.items():
        b, e = BEGIN.format(name), END.format(name)
        start, end = text.index(b) + len(b), text.index(e)
        text = text[:start] + "\n" + body.strip() + "\n" + text[end:]
    with open(path, "w") as f:
        f.write(text)
    log(f"wrote {path}")


TITLES = {
    "calls": "### Plugin call overhead: limits on, limits off, CPython",
    "http": "### HTTP: the host against a bare keep-alive responder",
    "sched": "### Schedule accuracy: poll start delay, idle and under HTTP load",
    "idle": "### Idle cost",
    "memory": "### Memory: the host against python3 processes",
    "start": "### Start-up: cold against warm",
    "swap": "### Swap time: new source to first poll, native and Pulley",
    "reload": "### Hot reload through the host: edit → visible, SyntaxError reported, against a restart",
    "flood": "### A fresh request while another client floods the connections",
    "tiny": "### Our HTTP server against tiny_http under attack",
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short smoke run of every section")
    ap.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset of " + ",".join(SECTIONS))
    ap.add_argument("--note", default="", help="a remark printed with the machine details")
    ap.add_argument("--no-write", action="store_true", help="print, do not touch BENCHMARKS.md")
    ap.add_argument("--skip-build", action="store_true", help="do not run cargo build / build-runtime.sh")
    args = ap.parse_args()
    wanted = [s for s in args.sections.split(",") if s]
    for s in wanted:
        if s not in SECTIONS:
            raise SystemExit(f"unknown section {s}; known: {', '.join(SECTIONS)}")
    if ("http" in wanted or "sched" in wanted) and not shutil.which("wrk"):
        raise SystemExit("wrk is missing: run scripts/setup-tests.sh (or apt-get install wrk)")
    command = "python3 bench/all.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    os.makedirs(BENCH_DIR, exist_ok=True)
    if not args.skip_build:
        run(["cargo", "build", *cargo_build_args(), "--bins", "--examples"])
        run([os.path.join(ROOT, "scripts", "build-runtime.sh")], stdout=subprocess.DEVNULL)
    info = machine()
    started = time.monotonic()
    sections = {}
    loads = [info["load"]]

    def attempt(names, f):
        """Runs one part; a failure is written into its sections instead of
        losing the whole run."""
        try:
            f()
        except (Exception, SystemExit) as e:  # noqa: BLE001 - reported in BENCHMARKS.md
            log(f"{', '.join(names)} failed: {e!r}")
            for n in names:
                sections.setdefault(n, f"**This section failed in the last run:** `{e!r}`")
        loads.append(" ".join(f"{x:.2f}" for x in os.getloadavg()))

    def calls():
        sections["calls"] = calls_section(args.quick)[0]

    def host():
        r, idle_s, load_s, rounds = host_sections(args.quick, wanted)
        if "idle" in wanted:
            sections["idle"] = idle_text(r, idle_s)
        if "http" in wanted:
            sections["http"] = http_text(r, load_s, rounds)
        if "sched" in wanted:
            sections["sched"] = sched_text(r, idle_s)

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

    def swap():
        sections["swap"] = swap_section(args.quick)

    def reload():
        runs = ["--runs", "3", "--restarts", "2"] if args.quick else ["--runs", "20", "--restarts", "5"]
        out = script_section([os.path.join(ROOT, "bench", "reload.py"), *runs,
                              "--cache", os.path.join(BENCH_DIR, "cache")])
        sections["reload"] = f"```\npython3 bench/reload.py {' '.join(runs)}\n```\n\n" + tables(out)

    def flood():
        runs = ["--probes", "20"] if args.quick else ["--probes", "42"]
        out = script_section([os.path.join(ROOT, "bench", "flood.py"), *runs])
        sections["flood"] = f"```\npython3 bench/flood.py {' '.join(runs)}\n```\n\n" + tables(out)

    def tiny():
        runs = ["--probes", "10", "--memory-seconds", "10"] if args.quick else ["--probes", "20"]
        out = script_section([os.path.join(ROOT, "bench", "vs_tiny_http.py"), *runs], timeout=600)
        sections["tiny"] = (f"```\npython3 bench/vs_tiny_http.py {' '.join(runs)}\n```\n\n"
                            + out.strip())

    host_parts = [s for s in ("http", "sched", "idle") if s in wanted]
    for names, f in ((["calls"], calls), (host_parts, host), (["memory"], memory), (["start"], start),
                     (["swap"], swap), (["reload"], reload), (["flood"], flood),
                     (["tiny"], tiny)):
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
        f"| load average (1, 5, 15 min) at the start and after each part | {' → '.join(loads)} |\n"
        f"| sections run | {', '.join(wanted)}{' (quick)' if args.quick else ''}, {minutes:.1f} min |\n\n"
        f"Host and examples built with `cargo build --{PROFILE}` (what is deployed).{note}"
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
