#!/usr/bin/env bash
# Runs the plugins' Python tests in plain CPython, without WebAssembly: each
# plugin's app.py runs against plugins/testing/fakehost, a fake of the host's
# side of wit/plugin.wit (see plugins/README.md). Takes seconds.
#
#   scripts/test-plugins.sh [pytest args, e.g. plugins/dht22 or -k hysteresis]
#
# docs/plugin-sdk.md is the reference of what plugins and their tests use;
# plugins/testing/test_sdk_doc.py runs every example in it.
#
# Installs what it needs, idempotently: the .venv, componentize-py (which
# generates the Python bindings) and pytest (scripts/setup-tests.sh). Leaves
# no .pytest_cache or __pycache__ in the tree; the generated bindings are
# cached in plugins/.bindings/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
pytest_version=8.4.2

scripts/setup-tests.sh >/dev/null
python="$root/.venv/bin/python"

# Test everything under plugins/ and examples/plugins/ (the worked examples
# of docs/plugin-sdk.md) unless a test path is named.
paths=0
for a in "$@"; do [ -e "${a%%::*}" ] && paths=1; done
[ "$paths" = 1 ] || set -- "$@" plugins examples/plugins
export PYTHONDONTWRITEBYTECODE=1
exec "$python" -m pytest -c plugins/pytest.ini -p no:cacheprovider -q "$@"
