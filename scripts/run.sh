#!/usr/bin/env bash
# Set up DyNA and run the main job: `dyna train` with the default experiment (horn-digits, a
# HORN network reading scikit-learn's 8x8 digits pixel by pixel), into runs/horn-digits.
# Extra arguments go to `dyna train`, e.g. `bash scripts/run.sh --epochs 5`. Run again, it
# never deletes the earlier run: a run with a checkpoint is resumed (a finished one is left as
# it is, its final files rebuilt), and `bash scripts/run.sh --overwrite` starts over.
set -euo pipefail
cd "$(dirname "$0")/.."
DYNA_EXTRAS=${DYNA_EXTRAS-} bash scripts/setup.sh  # the main job needs no test or docs tools
out=runs/horn-digits
resume=()
if [ -d "$out/checkpoints" ] && [[ " $* " != *" --overwrite "* ]]; then
  resume=(--resume)
fi
"${DYNA_VENV:-.venv}/bin/dyna" train horn-digits --out "$out" "${resume[@]}" "$@"
