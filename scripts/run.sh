#!/usr/bin/env bash
# Sets up everything and runs the host on simulated hardware: installs
# componentize-py (project-local .venv), builds the shared Python runtime,
# builds the host, compiles the runtime once into the artifact cache, and
# starts the host with config/host.toml. Plugins are Python source: edit
# plugins/<name>/app.py while it runs and the host loads each saved version.
#
#   scripts/run.sh [host options, e.g. --listen 127.0.0.1:3000 --hardware sim]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh
scripts/build-runtime.sh
cargo build --locked --bin wasi-python-host
# Once per runtime build (~20 s the first time, then instant).
target/debug/wasi-python-host precompile --config config/host.toml
echo "==> starting (the dashboard is at the address logged below, http://127.0.0.1:3000/ by default; Ctrl-C stops)"
echo "    Beep buttons: log in at /login with the token printed by: target/debug/wasi-python-host token"
exec target/debug/wasi-python-host --config config/host.toml "$@"
