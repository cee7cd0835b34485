#!/usr/bin/env bash
# Install what the project needs on a fresh Debian machine, idempotently:
#   - bubblewrap (real sandboxes for wrenn.local), when running as root with apt;
#   - .venv with the package (editable, extras "local-code-runner": the local server and its
#     kernel, "cli": the `wrenn` command, "pytest": the pytest plugin) and the dev tools.
# Sourced by quickstart.sh and test.sh; safe to run again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v bwrap >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "bootstrap: installing bubblewrap" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null
    else
        echo "bootstrap: bubblewrap is missing; wrenn.local will fall back to plain processes (no isolation)" >&2
    fi
fi

# The generator (build_sync.py) is pinned to Python 3.11, so the dev venv uses it.
PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
    for candidate in python3.11 "$HOME/.pyenv/versions/3.11.7/bin/python3" python3; do
        if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 10))'; then
            PYTHON=$candidate
            break
        fi
    done
fi
if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating .venv with $PYTHON" >&2
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.wrenn-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "bootstrap: installing wrenn[local-code-runner,cli,pytest] and the dev tools into .venv" >&2
    .venv/bin/python -m pip install -q --upgrade "pip>=25.1"
    .venv/bin/python -m pip install -q -e ".[local-code-runner,cli,pytest]" --group dev
    touch "$stamp"
fi
