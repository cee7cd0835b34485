#!/usr/bin/env bash
# The sandbox's attack tests once more, with the server running as an unprivileged
# user (no cgroups, no disk images: what holds then is what the local README says).
# Run as root (it makes the user `wrenn-unpriv` once); as anyone else it says so and
# does nothing. Everything runs from a copy of the tree in a fresh directory under
# /tmp that the user can read, with a venv made from the system's Python (the
# pyenv interpreters live under /root, which other users cannot enter), and that
# directory is removed at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "$(id -u)" != 0 ]; then
    echo "test_unprivileged: not root, nothing to compare against; skipped" >&2
    exit 0
fi
USER_NAME=wrenn-unpriv
if ! id -u "$USER_NAME" >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$USER_NAME"
fi
PYTHON=${UNPRIV_PYTHON:-/usr/bin/python3}

work=$(mktemp -d /tmp/wrenn-unpriv.XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
# The working tree as it is (tracked and new files alike), without venvs or caches.
tar --exclude=.venv --exclude=.nox --exclude=.git --exclude=__pycache__ --exclude=bench \
    -cf - src tests pyproject.toml README.md | tar -xf - -C "$work"
"$PYTHON" -m venv "$work/venv"
"$work/venv/bin/pip" install -q --disable-pip-version-check -e "$work[local-code-runner]" \
    "pytest>=8" "trio>=0.27" "httpx-ws>=0.9" "pyyaml>=6" "jsonschema>=4.18"
mkdir -p "$work/tmp" "$work/home"
chown "$USER_NAME" "$work/tmp" "$work/home"

cd "$work"
# The files whose tests attack the sandbox or its edges; their root-only tests skip.
exec runuser -u "$USER_NAME" -- env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$work/home" \
    "$work/venv/bin/python" -m pytest -q -p no:cacheprovider --basetemp="$work/tmp/pytest" \
    tests/local/test_local_security.py tests/local/test_local_isolation.py \
    tests/local/test_local_edge.py tests/local/test_local_disk.py tests/local/test_local_modes.py
