#!/usr/bin/env bash
# Set up DyNA and run the main job: a tiny model trained end to end on generated data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
"${DYNA_VENV:-.venv}/bin/python" examples/tiny_regression.py "$@"
