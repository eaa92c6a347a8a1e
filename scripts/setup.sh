#!/usr/bin/env bash
# Installs what building the plugins needs, idempotently: a project-local
# virtualenv (.venv) with componentize-py. Safe to run again and again.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
componentize_version=0.25.1

apt_install() {
    if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
    $sudo apt-get update -qq && $sudo apt-get install -y -qq "$@"
}

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
