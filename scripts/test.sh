#!/usr/bin/env bash
# Set up DyNA and run its checks: lint, formatting and the test suite (doctests included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
venv=${DYNA_VENV:-.venv}
"$venv/bin/ruff" check .
"$venv/bin/ruff" format --check .
# pytest exits non-zero on any failure and on a run that collected no tests.
"$venv/bin/python" -m pytest "$@"
