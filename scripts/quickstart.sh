#!/usr/bin/env bash
# The quick start: install what is missing, then run examples/quickstart.py on the
# embedded local server (or on the platform when WRENN_API_KEY is set).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python examples/quickstart.py
