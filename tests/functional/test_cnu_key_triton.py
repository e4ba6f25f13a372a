"""The fused CNU key-path kernel against the torch path, its specification.

Several online steps on a drifting stream with scrambling on: the same selected indices, keys
and responses within 1e-6, memories, μ, η and ``scrambling_count`` equal. Without CUDA the
kernel runs in Triton's interpreter on CPU tensors (the root conftest sets
``TRITON_INTERPRET``).
"""

import logging

import pytest
import torch

from dyna.functional import _backend
from dyna.lib.cnu import CNUs
from dyna.module import LinearCNU

pytest.importorskip("triton")

INTERPRETING = _backend.triton_interpreting()
BACKENDS = ("torch", "triton")
DEVICES = (["cpu"] if INTERPRETING else []) + (["cuda"] if torch.cuda.is_available() else [])


def _bank(backend, q, m, d, delta, scramble, device):
    torch.manual_seed(3)
    return CNUs(
        q=q,
        d=d,
        m=m,
        u=5,
        delta=delta,
        scramble=scramble,
        tau_alpha=0.9,
        tau_mu=4,
        tau_eta=6,
        beta_k=0.05,
        backend=backend,
        device=device,
    )


def _stream(steps, b, d, device):
    # The mean jumps to a new axis every two steps: poorly matched inputs, so keys scramble.
    generator = torch.Generator().manual_seed(4)
    axes = torch.eye(d)[[(t // 2) % d for t in range(steps)]]
    return (torch.randn(steps, b, d, generator=generator) + 3 * axes[:, None, :]).to(device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    ("b", "q", "m", "d", "delta", "scramble"),
    [
        (1, 1, 5, 6, 3, True),  # b = 1: stale responses, duplicate indices after scrambling
        (4, 1, 5, 6, 2, True),
        (4, 3, 5, 6, 3, True),  # unshared keys: one program per unit
        (40, 2, 20, 70, 2, True),  # two batch tiles, two key-column tiles
        (3, 2, 4, 6, 1, False),
    ],
)
def test_key_step_matches_torch_over_online_steps(device, b, q, m, d, delta, scramble):
    banks = {backend: _bank(backend, q, m, d, delta, scramble, device) for backend in BACKENDS}
    for x in _stream(6, b, d, device):
        got, expected = banks["triton"].attention(x), banks["torch"].attention(x)
        assert torch.equal(got.indices, expected.indices)
        torch.testing.assert_close(got.responses, expected.responses, rtol=0, atol=1e-6)
        torch.testing.assert_close(got.weights, expected.weights, rtol=0, atol=1e-6)
    fused, reference = banks["triton"], banks["torch"]
    torch.testing.assert_close(fused.K, reference.K, rtol=0, atol=1e-6)
    assert torch.equal(fused.M, reference.M)
    assert torch.equal(fused.mu, reference.mu)
    assert torch.equal(fused.eta, reference.eta)
    assert torch.equal(fused.scrambling_count, reference.scrambling_count)
    if scramble:
        assert reference.scrambling_count.sum() > 0  # the case exercised scrambling


@pytest.mark.parametrize("device", DEVICES)
def test_key_step_in_eval_mode_changes_no_state(device):
    banks = {backend: _bank(backend, 2, 5, 6, 2, True, device).eval() for backend in BACKENDS}
    fused = banks["triton"]
    state = [t.clone() for t in (fused.K, fused.mu, fused.eta)]
    x = _stream(1, 7, 6, device)[0]
    got, expected = banks["triton"].attention(x), banks["torch"].attention(x)
    assert torch.equal(got.indices, expected.indices)
    torch.testing.assert_close(got.weights, expected.weights, rtol=0, atol=1e-6)
    for before, after in zip(state, (fused.K, fused.mu, fused.eta), strict=True):
        assert torch.equal(before, after)
    assert fused.scrambling_count.sum() == 0


@pytest.mark.parametrize("device", DEVICES)
def test_layer_bfloat16_key_step_close_to_torch(device):
    layers = {}
    for backend in BACKENDS:
        torch.manual_seed(3)
        layers[backend] = LinearCNU(
            6,
            4,
            key_mem_units=5,
            delta=2,
            scramble=True,
            tau_alpha=0.9,
            backend=backend,
            dtype=torch.bfloat16,
            device=device,
        )
    x = _stream(1, 5, 6, device)[0].bfloat16()
    got, expected = layers["triton"](x), layers["torch"](x)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), expected.float(), rtol=3e-2, atol=5e-2)
    assert torch.equal(layers["triton"].eta, layers["torch"].eta)


@pytest.mark.skipif(not INTERPRETING, reason="forces the kernels on CPU tensors")
def test_debug_and_many_keys_take_the_torch_path(caplog):
    x = _stream(1, 3, 6, "cpu")[0]
    for kwargs in ({"debug": True}, {"m": 300}):
        settings = {"q": 1, "d": 6, "m": 5, "u": 2, "delta": 2, "debug": False} | kwargs
        banks = {}
        for backend in BACKENDS:
            torch.manual_seed(3)
            banks[backend] = CNUs(**settings, backend=backend)
        with caplog.at_level(logging.DEBUG, logger="dyna.backend"):
            got = banks["triton"].attention(x)
        assert "cnu_key_step" in caplog.text
        caplog.clear()
        expected = banks["torch"].attention(x)
        # The torch path itself: bit for bit.
        assert torch.equal(got.responses, expected.responses)
        assert torch.equal(banks["triton"].K, banks["torch"].K)
