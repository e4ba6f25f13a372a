"""Parity of the HORN layers with brainmass 0.1.1 (values and gradients).

The expected values come from ``fixtures/horn.npz``, written by ``make_horn_fixtures.py`` with
brainmass in float64 (its docstring lists the cases and fields). Every loss is
``sum(x_seq * probe)`` with the probe below (the network: ``sum(logits * probe)``).
Tolerances: float64 outputs and gradients to 1e-8 relative to the largest magnitude of the
compared tensor over T = 784, 1e-10 on the short cases; float32 to 1e-5 relative on the short
case.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dyna.module import HORNSeqLayer, HORNSeqNetwork

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "horn.npz"
with np.load(FIXTURE) as archive:
    DATA = {key: torch.from_numpy(archive[key]) for key in archive.files}

DYNAMICS = ("alpha", "omega", "gamma", "v")


@pytest.fixture(autouse=True)
def one_thread():
    # Numbers do not depend on the thread count, but on an oversubscribed CPU every small
    # per-step matmul can wait for a descheduled BLAS worker (seconds over T = 784).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def field(case: str, name: str) -> torch.Tensor:
    return DATA[f"{case}/{name}"]


def probe(steps: int, batch: int, n: int) -> torch.Tensor:
    """cos(0.05 t + 0.3 i + 0.7 b) / T, t = 1..T: the generator's loss weights."""
    t = torch.arange(1, steps + 1, dtype=torch.float64).view(-1, 1, 1)
    b = torch.arange(batch, dtype=torch.float64).view(1, -1, 1)
    i = torch.arange(n, dtype=torch.float64).view(1, 1, -1)
    return torch.cos(0.05 * t + 0.3 * i + 0.7 * b) / steps


def assert_relative(actual: torch.Tensor, expected: torch.Tensor, tolerance: float) -> None:
    scale = float(expected.abs().max())
    torch.testing.assert_close(
        actual.detach().to(torch.float64), expected, rtol=0.0, atol=tolerance * max(scale, 1e-30)
    )


def build_layer(case: str, dtype: torch.dtype) -> HORNSeqLayer:
    delayed = f"{case}/delay" in DATA
    layer = HORNSeqLayer(
        1,
        field(case, "w_hh").shape[0],
        **{name: field(case, name) for name in DYNAMICS},
        dt=float(field(case, "dt")),
        delay=field(case, "delay") if delayed else None,
        learnable=DYNAMICS,
        dtype=dtype,
    )
    with torch.no_grad():
        layer.i2h.weight.copy_(field(case, "w_ih"))
        layer.i2h.bias.copy_(field(case, "b_ih"))
        layer.h2h.weight.copy_(field(case, "w_hh"))
        if not delayed:
            layer.h2h.bias.copy_(field(case, "b_hh"))
    return layer


def gradient_names(case: str) -> dict[str, str]:
    names = {"w_ih": "i2h.weight", "b_ih": "i2h.bias", "w_hh": "h2h.weight"}
    if f"{case}/b_hh" in DATA:
        names["b_hh"] = "h2h.bias"
    names.update({name: f"horn.{name}" for name in DYNAMICS})
    return names


@pytest.mark.parametrize("case", ["plain", "delayed"])
def test_long_layer_matches_brainmass(case):
    # n = 32, B = 4, T = 784, per-unit dynamics, delays 2..40 in the delayed case.
    layer = build_layer(case, torch.float64)
    s = field(case, "input")
    x_seq, state = layer(s)
    steps = s.shape[0]
    for name, row in (("x_first", x_seq[0]), ("x_mid", x_seq[steps // 2 - 1])):
        assert_relative(row, field(case, name), 1e-8)
    assert_relative(state.x, field(case, "x_last"), 1e-8)
    assert_relative(state.y, field(case, "y_last"), 1e-8)
    loss = (x_seq * probe(*x_seq.shape)).sum()
    assert_relative(loss, field(case, "loss"), 1e-8)
    parameters = dict(layer.named_parameters())
    names = gradient_names(case)
    grads = torch.autograd.grad(loss, [parameters[ours] for ours in names.values()])
    for theirs, grad in zip(names, grads, strict=True):
        assert_relative(grad, field(case, f"grad/{theirs}"), 1e-8)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_fine_step_with_delays_matches_brainmass(dtype):
    # h = 0.1, delays 0..6 steps (given to brainmass as times just under whole steps).
    layer = build_layer("fine", dtype)
    x_seq, y_seq, _ = layer(field("fine", "input").to(dtype), return_velocity=True)
    tolerance = 1e-10 if dtype == torch.float64 else 1e-5
    assert_relative(x_seq, field("fine", "x_seq"), tolerance)
    assert_relative(y_seq, field("fine", "y_seq"), tolerance)
    loss = (x_seq * probe(*x_seq.shape).to(dtype)).sum()
    parameters = dict(layer.named_parameters())
    names = gradient_names("fine")
    grads = torch.autograd.grad(loss, [parameters[ours] for ours in names.values()])
    for theirs, grad in zip(names, grads, strict=True):
        assert_relative(grad, field("fine", f"grad/{theirs}"), 10 * tolerance)


def test_network_matches_brainmass():
    # Two layers (8, 5), readout 3, one trainable omega shared by both layers.
    omega = torch.nn.Parameter(field("network", "omega").clone())
    net = HORNSeqNetwork(
        1,
        [8, 5],
        3,
        alpha=float(field("network", "alpha")),
        omega=omega,
        gamma=field("network", "gamma"),
        dtype=torch.float64,
    )
    with torch.no_grad():
        for index, layer in enumerate(net.layers):
            layer.i2h.weight.copy_(field("network", f"layer{index}/w_ih"))
            layer.i2h.bias.copy_(field("network", f"layer{index}/b_ih"))
            layer.h2h.weight.copy_(field("network", f"layer{index}/w_hh"))
            layer.h2h.bias.copy_(field("network", f"layer{index}/b_hh"))
        net.h2o.weight.copy_(field("network", "w_ho"))
        net.h2o.bias.copy_(field("network", "b_ho"))
    logits = net(field("network", "input"))
    assert_relative(logits, field("network", "logits"), 1e-10)
    loss = (logits * field("network", "probe")).sum()
    loss.backward()
    assert_relative(omega.grad, field("network", "grad/omega"), 1e-10)
    assert_relative(net.h2o.weight.grad, field("network", "grad/w_ho"), 1e-10)
    assert_relative(net.h2o.bias.grad, field("network", "grad/b_ho"), 1e-10)
    for index, layer in enumerate(net.layers):
        for theirs, ours in gradient_names("network").items():
            if theirs in DYNAMICS:
                continue
            expected = field("network", f"layer{index}/grad/{theirs}")
            assert_relative(layer.get_parameter(ours).grad, expected, 1e-10)
