"""The `wit_world` Python bindings of a world, generated once and cached.

componentize-py writes the same modules a plugin imports inside its
component (`wit_world`, `componentize_py_types`) as plain Python with
`componentize-py bindings`. They are cached in plugins/.bindings/<world>/
and regenerated when wit/*.wit or the componentize-py version changes.
"""

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

PLUGINS_DIR = Path(__file__).resolve().parents[2]
ROOT = PLUGINS_DIR.parent
WIT_DIR = ROOT / "wit"
CACHE_DIR = PLUGINS_DIR / ".bindings"

class BindingsError(RuntimeError):
    """The bindings for a world could not be generated."""


# The shared Python runtime's world: every plugin runs on it, so its
# bindings are the ones every plugin imports.
RUNTIME_WORLD = "python-runtime"


def _componentize_py():
    for candidate in (os.environ.get("COMPONENTIZE_PY"),
                      ROOT / ".venv" / "bin" / "componentize-py",
                      shutil.which("componentize-py")):
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


_version = {}


def _tool_version(tool):
    if tool not in _version:
        try:
            out = subprocess.run([tool, "--version"], capture_output=True, text=True,
                                 timeout=60, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError) as e:
            raise BindingsError(f"{tool} --version failed ({e}); run scripts/setup.sh") from e
        _version[tool] = out
    return _version[tool]


def _wit_hash(world):
    h = hashlib.sha256(world.encode())
    for f in sorted(WIT_DIR.glob("*.wit")):
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def ensure(world):
    """The folder holding `wit_world` for `world`, generating it if needed."""
    if not WIT_DIR.is_dir():
        raise BindingsError(f"no WIT folder at {WIT_DIR}")
    out = CACHE_DIR / world
    stamp = out / ".stamp"
    wit_hash = _wit_hash(world)
    old = stamp.read_text().split("\n") if stamp.is_file() else []
    tool = _componentize_py()
    if tool is None:
        if old[:1] == [wit_hash]:
            return out  # cached, and nothing to compare the tool version with
        raise BindingsError(
            "componentize-py was not found (looked for $COMPONENTIZE_PY, .venv/bin/componentize-py "
            "and PATH), so the Python bindings of world "
            f"`{world}` cannot be generated: run scripts/setup.sh")
    version = _tool_version(tool)
    if old == [wit_hash, version]:
        return out
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{world}-", dir=CACHE_DIR))
    try:
        run = subprocess.run([tool, "-d", str(WIT_DIR), "-w", world, "bindings", str(tmp)],
                             capture_output=True, text=True, timeout=300)
        if run.returncode != 0:
            raise BindingsError(
                f"componentize-py could not generate the bindings of world `{world}`:\n"
                f"{run.stderr.strip() or run.stdout.strip()}")
        (tmp / ".stamp").write_text(f"{wit_hash}\n{version}")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
