#!/usr/bin/env bash
# Sets up everything and runs the host on simulated hardware:
# installs componentize-py (project-local .venv), builds the plugins,
# builds the host and starts it with config/host.toml.
#
#   scripts/run.sh [host options, e.g. --listen 127.0.0.1:3000 --hardware sim]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh
scripts/build-plugins.sh
cargo build --locked --bin wasi-python-host
echo "==> starting (the dashboard is at the address logged below, http://127.0.0.1:3000/ by default; Ctrl-C stops)"
echo "    Beep buttons: log in at /login with the token printed by: target/debug/wasi-python-host token"
exec target/debug/wasi-python-host --config config/host.toml "$@"
