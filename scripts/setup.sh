#!/usr/bin/env bash
# Installs what building and running the host needs, idempotently: the C
# toolchain pieces the `pi` backend's rs_ws281x build script uses (clang and
# libclang for bindgen, git), and a project-local virtualenv (.venv) with
# componentize-py, which builds the shared Python runtime. Safe to run again
# and again. What only the tests need is in scripts/setup-tests.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
componentize_version=0.25.1

apt_install() {
    if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
    $sudo apt-get update -qq && $sudo apt-get install -y -qq "$@"
}

# rs_ws281x compiles its C library and runs bindgen (libclang) at build
# time, and its build script calls `git`; without them `cargo build` fails.
missing=()
for pkg in clang libclang-dev; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
command -v git >/dev/null || missing+=(git)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]} (apt-get)"
    apt_install "${missing[@]}"
fi

if ! command -v python3 >/dev/null; then
    echo "setup: installing python3 (apt-get)"
    apt_install python3 python3-venv
fi

if [ ! -x "$venv/bin/python" ]; then
    echo "setup: creating $venv"
    if ! python3 -m venv "$venv" 2>/dev/null; then
        rm -rf "$venv"
        echo "setup: python3 -m venv failed; installing python3-venv (apt-get)"
        apt_install python3-venv
        python3 -m venv "$venv"
    fi
fi

have=$("$venv/bin/python" -m pip show componentize-py 2>/dev/null | sed -n 's/^Version: //p' || true)
if [ "$have" != "$componentize_version" ]; then
    echo "setup: installing componentize-py $componentize_version into .venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "componentize-py==$componentize_version"
fi
