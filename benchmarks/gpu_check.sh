#!/usr/bin/env bash
# The GPU checks in one command, a few minutes on one GPU: the CUDA tests of the Triton
# kernels (compiled, against their torch references), then the GPU benchmark table.
# Usage: bash benchmarks/gpu_check.sh [benchmark options, e.g. --only horn]
# PYTHON picks the interpreter (default: python on PATH).
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=src
python="${PYTHON:-python}"
status=0

"$python" -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, \
'cuda', torch.cuda.is_available() and torch.cuda.get_device_name())"

echo "== CUDA tests"
# Every test with "cuda" in its name under the kernels' test folders (they skip without a GPU).
timeout 200 "$python" -m pytest -q -p no:cacheprovider -k cuda \
    tests/functional tests/module tests/train || status=1

echo "== benchmarks/gpu.py"
timeout 260 "$python" benchmarks/gpu.py "$@" || status=1
exit "$status"
