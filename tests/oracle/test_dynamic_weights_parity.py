"""Parity of the tensor composers and dynamic convolutions with the reference DyNA.

The expected values come from ``fixtures/dynamic_weights.pt``, written by
``make_dynamic_weights_fixtures.py`` with the reference implementation at 01c17ea (its
docstring documents the layout; ``dynamic_weights_cases.py`` lists the cases). For every case
the reference's state_dict loads into ours with ``strict=True``, our seeded construction
reproduces it bit for bit, and outputs and gradients (every parameter, the input, the context)
match with relative error ``||ours - ref|| / ||ref||`` of at most 1e-10 (float64) and 1e-5
(float32). bfloat16 through the composers accumulates many roundings whose order differs
between equivalent formulas, so there ours must be within 2e-2 of the reference's bfloat16
result or no less accurate than it against the reference's float64 computation from the same
bfloat16 values: ``||ours - ref64|| <= 1.1 ||ref_bf16 - ref64|| + 2e-2 ||ref64||``.

Eval cases of the Delta classes: the reference ran with ``rank_noise_strength = 0`` (its eval
mode is random otherwise); ours keeps the default strength, since our eval mode draws nothing.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

import dyna

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from dynamic_weights_cases import CASES  # noqa: E402

FIXTURE = HERE / "fixtures" / "dynamic_weights.pt"
DATA: dict[str, torch.Tensor] = torch.load(FIXTURE, weights_only=True)
TOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.bfloat16: 2e-2}
CLASSES = {
    "TCD": dyna.TensorComposerDelta,
    "TCM": dyna.TensorComposerMobius,
    "DCD": dyna.DynamicConv2DDelta,
    "DCM": dyna.DynamicConv2DMobius,
}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a64, b64 = a.detach().double(), b.detach().double()
    num, den = (a64 - b64).norm().item(), b64.norm().item()
    if den == 0.0:
        return 0.0 if num == 0.0 else math.inf
    return num / den


def build(case: dict, position: int) -> torch.nn.Module:
    torch.manual_seed(1000 + position)
    module = CLASSES[case["kind"]](
        *case["args"], **case.get("kwargs", {}), dtype_weights=getattr(torch, case["dtype"])
    )
    if "scale_weights" in case:
        with torch.no_grad():
            module.weights_lib.weights.mul_(case["scale_weights"])
    return module.train(case.get("train", False))


def run(module: torch.nn.Module, case: dict, inputs: list[torch.Tensor]) -> dict:
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    if case.get("train", False):
        torch.manual_seed(1234)
    y = module(*leaves)
    i = torch.arange(y.numel(), dtype=torch.float64)
    (y * torch.cos(0.11 * i + 0.2).to(y.dtype).view(y.shape)).sum().backward()
    out = {"y": y.detach()}
    out.update({f"grad.{n}": p.grad for n, p in module.named_parameters()})
    names = ["grad_x", "grad_context"] if len(leaves) == 2 else ["grad_context"]
    out.update({n: leaf.grad for n, leaf in zip(names, leaves, strict=True)})
    return out


def inputs_of(name: str) -> list[torch.Tensor]:
    context = DATA[f"{name}/context"]
    x = DATA.get(f"{name}/x")
    return [context] if x is None else [x, context]


@pytest.mark.parametrize(
    ("position", "case"), list(enumerate(CASES)), ids=[case["name"] for case in CASES]
)
def test_matches_reference(position, case):
    name = case["name"]
    dtype = getattr(torch, case["dtype"])
    reference_state = {
        key.removeprefix(f"{name}/state_dict."): value
        for key, value in DATA.items()
        if key.startswith(f"{name}/state_dict.")
    }
    module = build(case, position)
    # Seeded initialisation equals the reference's bit for bit; the state_dicts have the same
    # keys (no kernel index) and load both ways with strict=True.
    ours = module.state_dict()
    assert list(ours) == list(reference_state)
    for key, value in reference_state.items():
        assert ours[key].dtype == value.dtype, key
        assert torch.equal(ours[key], value), key
    module.load_state_dict(reference_state, strict=True)

    inputs = inputs_of(name)
    result = run(module, case, inputs)
    expected_keys = {
        key.removeprefix(f"{name}/")
        for key in DATA
        if key.startswith(f"{name}/")
        and ("grad" in key or key.endswith("/y"))
        and "/ref64/" not in key
    }
    assert set(result) == expected_keys
    for key, value in result.items():
        reference = DATA[f"{name}/{key}"]
        assert value.dtype == reference.dtype and value.shape == reference.shape, key
        error = rel_err(value, reference)
        if dtype != torch.bfloat16 or error <= TOL[torch.bfloat16]:
            assert error <= TOL[dtype], f"{key}: relative error {error:.2e}"
            continue
        reference64 = DATA[f"{name}/ref64/{key}"]
        ours_error = (value.double() - reference64).norm()
        reference_error = (reference.double() - reference64).norm()
        bound = 1.1 * reference_error + 2e-2 * reference64.norm()
        assert ours_error <= bound, (
            f"{key}: {rel_err(value, reference64):.2e} from float64 vs the reference's "
            f"{rel_err(reference, reference64):.2e}"
        )


def test_fixture_is_small():
    assert FIXTURE.stat().st_size < 1_000_000
