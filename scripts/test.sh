#!/usr/bin/env bash
# Set up DyNA and run its checks: lint, formatting, type checking, the one-way imports
# between the sub-packages, the documentation build and the test suite (doctests and the
# documentation's examples included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
venv=${DYNA_VENV:-.venv}
python="$venv/bin/python"
# Tools run as modules of the environment's Python, which also finds them when the
# environment reuses another one's site directory (see scripts/setup.sh).
"$python" -m ruff check .
"$python" -m ruff format --check .
"$python" -m mypy
# The layers contract of pyproject.toml ([tool.importlinter]): what `lint-imports` runs.
"$python" -c "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
# Strict: a broken link, cross-reference or docstring section fails the build (into site/).
NO_MKDOCS_2_WARNING=1 "$python" -m mkdocs build --strict
# pytest exits non-zero on any failure and on a run that collected no tests.
"$python" -m pytest "$@"
