"""What the benchmark scripts share: a config derived from the shipped one,
starting the real host binary, reading /api."""

import json
import os
import re
import subprocess
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# cargo's target folder: CARGO_TARGET_DIR when set, as for cargo itself.
BINARY = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")),
                      "debug", "wasi-python-host")


def write_config(path, state_dir, cache_dir, extra="", **replace):
    """config/host.toml pointed at this run's folders, on a free port, with
    simulated hardware; `replace` sets other top-level keys of a table
    (e.g. recycle="true"), `extra` is appended."""
    text = open(os.path.join(ROOT, "config", "host.toml")).read()
    text = re.sub(r'(?m)^plugins_dir = .*$', f'plugins_dir = "{ROOT}/plugins"', text)
    text = re.sub(r'(?m)^state_dir = .*$', f'state_dir = "{state_dir}"\ncache_dir = "{cache_dir}"', text)
    text = re.sub(r'(?m)^listen = .*$', 'listen = "127.0.0.1:0"', text)
    text = re.sub(r'(?m)^hardware = .*$', 'hardware = "sim"', text)
    for key, value in replace.items():
        text, n = re.subn(rf'(?m)^{key} = .*$', f'{key} = {value}', text)
        assert n == 1, f"config/host.toml has one `{key}`"
    with open(path, "w") as f:
        f.write(text + extra)
    return path


def start_host(config, log="warn,wasi_python_host::app=info"):
    """Starts the host; returns (process, "ADDR:PORT") once it listens."""
    proc = subprocess.Popen([BINARY, "--config", config], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "RUST_LOG": log})
    for line in proc.stderr:
        m = re.search(r"listening on http://(\S+)", line)
        if m:
            return proc, m.group(1)
    raise SystemExit("the host did not start: " + " ".join(proc.args))


def api(addr):
    """GET /api as JSON, or None when the host does not answer."""
    try:
        with urllib.request.urlopen(f"http://{addr}/api", timeout=2) as r:
            return json.load(r)
    except OSError:
        return None
