#!/usr/bin/env bash
# Builds component plugins, the escape hatch for a plugin that needs more
# than the shared runtime's standard library: plugins/<name>/<name>.wasm,
# with componentize-py, from its app.py (which must start with a
# `# wit-world: WORLD` line naming its world in wit/plugin.wit), its other
# modules and plugins/common. Configure it with `component =
# "<name>/<name>.wasm"` in its [plugins.<name>] entry. Ordinary plugins are
# Python source and need no build at all.
#
# A plugin whose sources, shared modules and wit/ are unchanged since its
# last build is skipped. Each component is written to a temporary name and
# renamed, so a running host never sees a half-written file.
#
# usage: scripts/build-component.sh [--dir DIR] NAME...
#   DIR defaults to plugins/.
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

if [ $# -eq 0 ]; then
    echo "usage: scripts/build-component.sh [--dir DIR] NAME... (source plugins need no build)" >&2
    exit 2
fi
names=("$@")

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
echo "$(basename "$plugins"): $built built, $(( ${#names[@]} - built )) up to date"
