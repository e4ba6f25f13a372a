"""Parity of the CNU layers and ψ with the reference, unaiverse 0.1.31 (CPU, torch 2.13).

Replays ``fixtures/cnu.pt``, written by ``make_cnu_fixtures.py`` with the reference (its
docstring documents the layout). Every case builds our layer with the reference's arguments and
seed, checks that the initial keys and memories are bit-identical and that the state_dict has
the reference's names, shapes and dtypes (so state dicts load both ways), then runs the same
online SGD stream: per step, fingerprints of the output, the input gradient, M and K agree to
1e-5 per element (float32; 1e-10 in float64) and those of μ, η and ``scrambling_count`` are
equal; at the checkpoints every value is compared. The grid: ``LinearCNU(6 → 3, m = 5)`` over
shared/unshared keys × bias × every valid (upd_m, upd_k) × scrambling × b ∈ {1, 4} × δ ∈ {1, 3}
(60 steps; b = 1 with δ = 3 exercises the stale responses), plus the sign and resize1d
projections and float64 runs, and ``Conv2dCNU(3 → 4, 3×3, m = 5)`` in eight configurations ×
b ∈ {1, 3} (20 steps).
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dyna.functional.cnu import psi
from dyna.module import Conv2dCNU, LinearCNU
from tests.oracle.make_cnu_fixtures import conv_target, fingerprint, fingerprint_weights

FIXTURE = Path(__file__).parent / "fixtures" / "cnu.pt"
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    # Thousands of tiny steps: on a busy machine every parallel region of an intra-op thread
    # pool costs milliseconds, more than the work itself.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.cache
def fixture() -> dict:
    return torch.load(FIXTURE, weights_only=True)


def case_id(case: dict) -> str:
    kwargs = case["kwargs"]
    parts = [case["key"], case["layer"], f"b{case['batch']}", case["dtype"]]
    for name in ("shared_keys", "bias", "upd_m", "upd_k", "scramble", "delta", "psi_fn"):
        if name in kwargs:
            parts.append(f"{name}={kwargs[name]}")
    return "-".join(parts)


CASES = fixture()["cases"]


def build(case: dict):
    torch.manual_seed(case["seed"])
    kwargs = dict(case["kwargs"])
    layer_class = LinearCNU if case["layer"] == "linear" else Conv2dCNU
    # Built in float32 and cast, as the reference was, so the initialisation is comparable.
    return layer_class(**kwargs).to(getattr(torch, case["dtype"]))


def state_row(layer) -> list[torch.Tensor]:
    return [tensor.detach().flatten() for tensor in layer.state_dict().values()]


@pytest.mark.parametrize("case", CASES, ids=[case_id(case) for case in CASES])
def test_online_stream_matches_reference(case):
    data = fixture()
    dtype = getattr(torch, case["dtype"])
    tolerance = TOLERANCE[dtype]
    layer = build(case)

    # Seeded initialisation bit for bit; state_dict names, shapes and dtypes as the reference.
    init = torch.cat([layer.M.detach().flatten(), layer.K.detach().flatten()])
    assert torch.equal(init, data[case["init"]])
    ours = [
        [name, list(tensor.shape), str(tensor.dtype).removeprefix("torch.")]
        for name, tensor in layer.state_dict().items()
    ]
    assert ours == case["state"]
    # The reference's initial state loads into ours with strict=True.
    reference_state = {
        name: tensor.clone() for name, tensor in layer.state_dict().items()
    }  # same names/shapes (checked above), filled below with the fixture's values
    count_m = layer.M.numel()
    reference_state["M"] = data[case["init"]][:count_m].view_as(layer.M).clone()
    reference_state["K"] = data[case["init"]][count_m:].view_as(layer.K).clone()
    fresh = build({**case, "seed": case["seed"] + 1})
    fresh.load_state_dict(reference_state, strict=True)
    assert torch.equal(fresh.M, layer.M) and torch.equal(fresh.K, layer.K)

    stream_x = data[f"{case['stream']}/x"]
    checkpoints = data["checkpoints"][case["layer"]]
    optimiser = torch.optim.SGD(layer.parameters(), lr=data["lr"])
    fingers = data[f"{case['key']}/finger"].to(torch.float64)
    checks = iter(data[f"{case['key']}/check"])
    for step in range(case["steps"]):
        x = stream_x[step].to(dtype).requires_grad_()
        optimiser.zero_grad()
        out = layer(x)
        if case["layer"] == "linear":
            target = data[f"{case['stream']}/target"][step]
        else:
            target = conv_target(out.shape, step)
        F.mse_loss(out, target.to(dtype)).backward()
        optimiser.step()
        values = [out, x.grad, layer.M, layer.K]
        for column, value in enumerate(values):
            # Σ w v agrees to tolerance · Σ|w| when every element agrees to the tolerance.
            scale = float(fingerprint_weights(value.numel()).abs().sum())
            difference = abs(fingerprint(value) - float(fingers[step, column]))
            assert difference <= tolerance * scale + 1e-6 * abs(float(fingers[step, column])), (
                f"step {step + 1}: fingerprint {column} differs by {difference:.3g}"
            )
        counters = [
            fingerprint(layer.mu, integer=True),
            fingerprint(layer.eta, integer=True),
            float(layer.scrambling_count.sum()),
        ]
        assert counters == fingers[step, 4:].tolist(), f"step {step + 1}: counters differ"
        if step + 1 in checkpoints:
            row = [out.detach().flatten(), x.grad.flatten()] if case["layer"] == "linear" else []
            row = torch.cat([r.to(torch.float64) for r in row + state_row(layer)])
            torch.testing.assert_close(
                row.to(dtype), next(checks), rtol=0, atol=tolerance, msg=f"step {step + 1}"
            )
    layer.eval()
    with torch.no_grad():
        evaluated = layer(data[f"{case['stream']}/eval_x"].to(dtype)).flatten()
    torch.testing.assert_close(evaluated, data[f"{case['key']}/eval"], rtol=0, atol=tolerance)


PSI_KEYS = sorted({key.rsplit("/", 1)[0] for key in fixture() if key.startswith("psi/")})


@pytest.mark.parametrize("key", PSI_KEYS)
def test_psi_matches_reference_bit_for_bit(key):
    _, mode, _, key_size = key.split("/")
    data = fixture()
    assert torch.equal(psi(data[f"{key}/x"], mode, int(key_size)), data[f"{key}/out"])
