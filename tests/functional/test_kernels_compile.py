"""Every Triton kernel compiles for an H100/H200 (sm_90) at the benchmark's shapes, on the CPU.

The interpreter tests check what the kernels compute; this checks what only the compiler sees
(block shapes, ``tl.dot`` operands, loop-carried dtypes, shared memory, register spills). Each
op runs forward and backward on CPU tensors in a subprocess without ``TRITON_INTERPRET``; every
launch is compiled for sm_90 with triton's bundled ``ptxas`` instead of run
(``tests/kernel_compile.py``). Autotuned kernels compile every configuration their pruning
keeps, so a case marked spill-free holds for whatever the autotuner picks.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

ROOT = Path(__file__).resolve().parents[2]

# Each case: an op forward + backward at one shape; prints one JSON line per compiled launch.
_SCRIPT = r"""
import json, sys
import torch
import dyna.functional._backend as backend
from dyna.functional import cnu_triton, horn_triton, tensor_composer_mobius_triton  # real kernels
from dyna.functional import signal_stabilization_triton, tensor_composer_delta_triton
from dyna.functional import cnu_key_triton, tensor_composer_delta_mix_triton
from dyna.functional import cnu_linear, horn_scan
from tests.kernel_compile import CompileOnly

backend.triton_interpreting = lambda: True  # let backend="triton" take CPU tensors
torch.manual_seed(0)


def horn(n, batch, delayed, dtype_name):
    # 16 steps: divisible by 16 like the benchmark's 784, so Triton specialises alike.
    steps, dtype = 16, getattr(torch, dtype_name)
    drive = torch.randn(steps, batch, n, dtype=dtype, requires_grad=True)
    weight = torch.randn(n, n, requires_grad=True)
    alpha, omega, gamma, v = (torch.rand(n, requires_grad=True) for _ in range(4))
    x0 = torch.zeros(batch, n, dtype=dtype, requires_grad=True)
    y0 = torch.zeros(batch, n, dtype=dtype, requires_grad=True)
    delay = torch.randint(2, 41, (n, n)) if delayed else None
    bias = None if delayed else torch.zeros(n, requires_grad=True)
    # A history that wants its gradient: the delayed backward's HISTORY_GRAD variant.
    history = None
    if delayed:
        history = torch.zeros(int(delay.max()) + 1, batch, n, dtype=dtype, requires_grad=True)
    xs, ys, _ = horn_scan(drive, weight.to(dtype), bias, alpha, omega, gamma, v, 0.5, x0, y0,
                          delay=delay, history=history, backend="triton")
    (xs.float().sum() + ys.float().sum()).backward()


def cnu(batch, in_features, out_features, m, k):
    x = torch.randn(batch, in_features, requires_grad=True)
    memories = torch.randn(1, m, out_features * (in_features + 1), requires_grad=True)
    indices = torch.stack([torch.randperm(m)[:k] for _ in range(batch)]).view(batch, 1, k)
    weights = torch.softmax(torch.randn(batch, 1, k), -1).requires_grad_()
    out = cnu_linear(x, memories, indices, weights, bias=True, wta=False, backend="triton")
    out.sum().backward()


def cnu_keys(batch, q, m, d, k):
    z = torch.nn.functional.normalize(torch.randn(batch, d), dim=1)
    keys = torch.nn.functional.normalize(torch.randn(q, m, d), dim=2)
    memories = torch.randn(q, m, 4)
    counters = [torch.zeros(q, m), torch.full((q, m), 100.0), torch.zeros(q, dtype=torch.int64)]
    cnu_key_triton.cnu_key_step(z, keys, memories, *counters, k, 0.1, 1e-3, 0.5, 100.0, 100.0,
                                True, True)


def mobius(batch, subspaces, height, width):
    shapes = [(batch, subspaces, height, 2), (batch, subspaces, width, 2),
              (subspaces, height, width), (subspaces, height, width)]
    inputs = [torch.randn(shape, requires_grad=True) for shape in shapes]
    tensor_composer_mobius_triton.mobius_projection(*inputs).sum().backward()


def stabilize(batch, rank, height, width):
    x = torch.randn(batch, rank, height, width, requires_grad=True)
    signal_stabilization_triton.stabilize(x, 1e-12, 1e-3, 1e-6, 1e-4).sum().backward()


def oriented(batch, rank, height, width):
    coefficients = torch.randn(batch, rank, 2, 2, 5, requires_grad=True)
    fields = torch.randn(rank, 2, 4, height * width, requires_grad=True)
    out = tensor_composer_delta_triton.oriented_value(coefficients, fields, 1e-12, 1e-6)
    out.sum().backward()


def decorrelate(batch, rank, n, noisy):
    bank = torch.randn(batch, rank, n, requires_grad=True)
    mixing = torch.softmax(torch.randn(batch, rank), -1).requires_grad_()
    noise = torch.randn(batch, rank, n) if noisy else None
    out, _, _ = tensor_composer_delta_mix_triton.decorrelate_mix(
        bank, mixing, noise, 0.05, 0.1, 0.01, 1e-12, 1e-6
    )
    out.sum().backward()


case = json.loads(sys.argv[1])
with CompileOnly(capability=90) as compiled:
    {"horn": horn, "cnu": cnu, "cnu_keys": cnu_keys, "mobius": mobius, "stabilize": stabilize,
     "oriented": oriented, "decorrelate": decorrelate}[case["op"]](*case["args"])
for launch in compiled.launches:
    print(json.dumps({"kernel": launch.kernel, "shared": launch.shared_bytes,
                      "registers": launch.registers, "spill": launch.spill_store_bytes,
                      "spill_loads": launch.spill_load_bytes,
                      "warps": launch.num_warps, "constants": {
                          name: value for name, value in launch.constants.items()
                          if isinstance(value, (bool, int, str))}}))
"""

# HORN: the GPU benchmark's (T, B, n) shapes, each with and without delays, and bfloat16.
CASES = [
    ("horn", [32, 64, False, "float32"]),
    ("horn", [32, 64, True, "float32"]),
    ("horn", [64, 64, False, "float32"]),
    ("horn", [64, 64, True, "float32"]),
    ("horn", [128, 1024, False, "float32"]),
    ("horn", [128, 1024, True, "float32"]),
    ("horn", [256, 256, False, "float32"]),
    ("horn", [256, 256, True, "float32"]),
    ("horn", [1024, 32, False, "float32"]),
    ("horn", [64, 64, False, "bfloat16"]),
    ("horn", [64, 64, True, "bfloat16"]),
    ("cnu", [64, 512, 256, 16, 2]),
    ("cnu", [64, 512, 256, 64, 4]),
    ("cnu_keys", [64, 1, 16, 512, 2]),  # the benchmark's LinearCNU(512, 256), shared keys
    ("cnu_keys", [1024, 1, 64, 512, 4]),
    ("cnu_keys", [64, 256, 16, 512, 2]),  # unshared keys: one program per output
    ("mobius", [32, 4, 64, 64]),
    ("oriented", [32, 4, 192, 192]),  # the Delta bank of a 64 -> 64 3x3 convolution
    ("stabilize", [32, 4, 192, 192]),  # the Delta bank of a 64 -> 64 3x3 convolution
    ("decorrelate", [32, 4, 192 * 192, True]),  # the same bank, training mode
    ("decorrelate", [32, 16, 192 * 192, False]),  # the largest rank the kernels take
    ("stabilize", [2, 4, 3, 4000]),  # the widest rows the kernels take: one row per program
]


# Ops whose kernels must not spill registers at these shapes, whatever configuration their
# autotuner keeps.
NO_SPILL = {"horn", "stabilize", "oriented", "cnu_keys", "decorrelate"}


def _compile(op: str, args: list) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT, json.dumps({"op": op, "args": args})],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


@pytest.mark.slow
@pytest.mark.parametrize(("op", "args"), CASES, ids=[f"{op}-{a}" for op, a in CASES])
def test_kernels_compile_for_sm90_within_shared_memory(op, args):
    from tests.kernel_compile import SM90_SHARED_MEMORY_BYTES

    launches = _compile(op, args)
    assert launches, f"{op} launched no kernel"
    for launch in launches:
        assert launch["shared"] <= SM90_SHARED_MEMORY_BYTES, launch
        assert 0 < launch["registers"] <= 255, launch
        if op in NO_SPILL:
            # Spilled registers go to local memory (L1/L2), inside the kernels' loops: slow.
            assert launch["spill"] == 0 and launch["spill_loads"] == 0, launch
