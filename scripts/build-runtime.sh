#!/usr/bin/env bash
# Builds the shared Python runtime, runtime/python-runtime.wasm, with
# componentize-py: CPython, the standard-library modules of
# runtime/allowlist.py and the bindings of every interface in wit/. Every
# plugin written in Python runs on it, one instance each; plugins themselves
# are never built. Skipped when its inputs (wit/, runtime/*.py, the
# componentize-py version) are unchanged since the last build. Written to a
# temporary name and renamed, so a host never sees half a file.
#
# Also writes the `wit_world` bindings to plugins/.bindings/python-runtime/
# and a pyrightconfig.json pointing every plugin at them and at
# plugins/common, so editors (Pylance, pyright) complete and type-check
# app.py.
#
# usage: scripts/build-runtime.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
world=python-runtime
"$root/scripts/setup.sh"
componentize="$root/.venv/bin/componentize-py"
tool_version=$("$componentize" --version 2>/dev/null || echo unknown)
out="$root/runtime/python-runtime.wasm"
stamp="$root/runtime/.build-hash"
hash=$( { echo "$tool_version $world"; cat "$root"/wit/*.wit;
          for f in $(find "$root/runtime" -maxdepth 1 -name '*.py' | LC_ALL=C sort); do
              echo "$(basename "$f")"; cat "$f"; done; } | sha256sum | cut -d' ' -f1)
if [ -f "$out" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$hash" ]; then
    echo "python runtime: up to date ($(( $(stat -c %s "$out") / 1024 )) KiB)"
else
    echo "python runtime: building (componentize-py, ~15-40 s)"
    started=$(date +%s)
    stage=$(mktemp -d)
    trap 'rm -rf "$stage"' EXIT
    # Only the runtime's own modules: componentize-py bundles its whole
    # Python path.
    cp "$root"/runtime/*.py "$stage/"
    (cd "$stage" && RUST_BACKTRACE=0 "$componentize" -d "$root/wit" -w "$world" componentize whp_runtime -o "$stage/out.wasm") \
        || { echo "error: building the Python runtime failed (see above)" >&2; exit 1; }
    mv "$stage/out.wasm" "$out.tmp"
    mv "$out.tmp" "$out"
    echo "$hash" > "$stamp"
    echo "python runtime: built runtime/python-runtime.wasm ($(( $(stat -c %s "$out") / 1024 )) KiB) in $(( $(date +%s) - started )) s"
fi
"$root/.venv/bin/python" - "$root" "$world" <<'PY'
import sys
sys.path.insert(0, f"{sys.argv[1]}/plugins/testing")
from fakehost import _bindings
_bindings.ensure(sys.argv[2])
PY
printf '{\n  "executionEnvironments": [\n    {"root": "plugins", "extraPaths": ["plugins/.bindings/%s", "plugins/common"]}\n  ]\n}\n' "$world" > "$root/pyrightconfig.json"
