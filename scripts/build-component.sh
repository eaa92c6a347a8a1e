#!/usr/bin/env bash
# Builds every plugin under plugins/ (a folder with an app.py) into
# plugins/<name>/<name>.wasm with componentize-py. A plugin whose sources,
# shared modules (plugins/common) and wit/ are unchanged since its last build
# is skipped. Each component is written to a temporary name and renamed, so
# a running host never sees a half-written file.
#
# usage: scripts/build-plugins.sh [--dir DIR] [NAME...]
#   DIR defaults to plugins/; every folder in it with an app.py is a plugin.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
plugins="$root/plugins"
if [ "${1:-}" = "--dir" ]; then
    plugins=$(cd "$2" && pwd)
    shift 2
fi
"$root/scripts/setup.sh"
componentize="$root/.venv/bin/componentize-py"
tool_version=$("$componentize" --version 2>/dev/null || echo unknown)

if [ $# -gt 0 ]; then names=("$@"); else
    names=()
    for dir in "$plugins"/*/; do
        [ -f "$dir/app.py" ] && names+=("$(basename "$dir")")
    done
fi

built=0
for name in "${names[@]}"; do
    dir="$plugins/$name"
    [ -f "$dir/app.py" ] || { echo "error: $plugins/$name/app.py does not exist" >&2; exit 1; }
    world=$(sed -n 's/^# wit-world: *\([a-z0-9-]*\).*/\1/p' "$dir/app.py" | head -n 1)
    if [ -z "$world" ]; then
        echo "error: plugins/$name/app.py must start with a '# wit-world: WORLD' line naming its world in wit/plugin.wit" >&2
        exit 1
    fi
    sources=$(find "$dir" "$root/plugins/common" -maxdepth 1 -name '*.py' ! -name 'test_*' | LC_ALL=C sort)
    hash=$( { echo "$tool_version $world"; cat "$root"/wit/*.wit; for f in $sources; do echo "$f"; cat "$f"; done; } | sha256sum | cut -d' ' -f1)
    out="$dir/$name.wasm"
    if [ -f "$out" ] && [ "$(cat "$dir/.build-hash" 2>/dev/null)" = "$hash" ]; then
        echo "$name: up to date"
        continue
    fi
    echo "$name: building (world $world)"
    # Stage only the plugin's modules and the shared ones: componentize-py
    # bundles its whole Python path, and tests or old outputs do not belong
    # in a plugin.
    stage=$(mktemp -d)
    trap 'rm -rf "$stage"' EXIT
    for f in $sources; do cp "$f" "$stage/"; done
    (cd "$stage" && RUST_BACKTRACE=0 "$componentize" -d "$root/wit" -w "$world" componentize app -o "$stage/out.wasm") \
        || { echo "error: building $name failed (see above)" >&2; exit 1; }
    cp "$stage/out.wasm" "$out.tmp"
    mv -f "$out.tmp" "$out"
    echo "$hash" > "$dir/.build-hash"
    rm -rf "$stage"
    built=$((built + 1))
done
# Typed bindings for editors: the same `wit_world` package componentize-py
# builds into each plugin, as plain Python in plugins/.bindings/<world>/, and
# a pyrightconfig.json (Pylance, pyright, basedpyright) that points each
# plugin folder at its world's bindings and plugins/common, so completion and
# type checking work on app.py without building.
envs=""
for name in "${names[@]}"; do
    dir="$plugins/$name"
    world=$(sed -n 's/^# wit-world: *\([a-z0-9-]*\).*/\1/p' "$dir/app.py" | head -n 1)
    "$root/.venv/bin/python" - "$root" "$world" <<'PY'
import sys
sys.path.insert(0, f"{sys.argv[1]}/plugins/testing")
from fakehost import _bindings
_bindings.ensure(sys.argv[2])
PY
    rel=$(realpath --relative-to="$root" "$dir")
    envs="$envs${envs:+,}
    {\"root\": \"$rel\", \"extraPaths\": [\"plugins/.bindings/$world\", \"plugins/common\"]}"
done
if [ "$plugins" = "$root/plugins" ] && [ $# -eq 0 ]; then
    printf '{\n  "executionEnvironments": [%s\n  ]\n}\n' "$envs" > "$root/pyrightconfig.json"
fi
echo "$(basename "$plugins"): $built built, $(( ${#names[@]} - built )) up to date"
