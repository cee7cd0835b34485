#!/usr/bin/env bash
# The test command: generated-code check, lint, strict types, then the whole suite
# (unit, sync/async parity, end-to-end on wrenn.local) on every supported Python, then
# (as root) wrenn.local's attack tests with the server as an unprivileged user.
#   bash scripts/test.sh           everything (Python 3.10 to 3.13 through nox)
#   bash scripts/test.sh --quick   the suite on the .venv Python only
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh
# QEMU, a guest kernel and the guest image for the microVM backend's tests (root + apt only).
bash scripts/install_vm_host.sh

# pyenv keeps the other interpreters off PATH unless asked; expose the ones installed.
if command -v pyenv >/dev/null 2>&1; then
    versions=$(pyenv versions --bare 2>/dev/null | grep -E '^3\.(10|11|12|13)\.[0-9]+$' | sort -t. -k2,2nr | tr '\n' ':')
    export PYENV_VERSION="${versions%:}"
fi

.venv/bin/python build_sync.py --check
if [ "${1:-}" = "--quick" ]; then
    exec .venv/bin/python -m pytest -q
fi
.venv/bin/nox -s lint typecheck
.venv/bin/nox -s tests --error-on-missing-interpreters
# As root: the sandbox's attack tests again with the server as an unprivileged user.
bash scripts/test_unprivileged.sh
