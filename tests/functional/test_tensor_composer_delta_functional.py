"""The Delta composer's fast stages against their plain ``*_ref`` twins (outputs and gradients)."""

from __future__ import annotations

import math

import pytest
import torch

from dyna.functional.tensor_composer_delta import (
    delta_decorrelate_mix,
    delta_decorrelate_mix_ref,
    delta_oriented_fields,
    delta_oriented_fields_ref,
    lift_small,
    lift_small_ref,
)
from tests.functional.twins import compare


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize(
    ("batch", "rank", "height", "width"), [(1, 1, 2, 3), (3, 2, 4, 3), (2, 4, 9, 6)]
)
@pytest.mark.parametrize("std", [1e-4, 0.5])
def test_delta_oriented_fields_matches_ref(dtype, batch, rank, height, width, std):
    gen = torch.Generator().manual_seed(batch * 100 + rank)
    modulation = torch.randn(batch, rank, 3, 2, 2, generator=gen, dtype=torch.float64) * 0.5
    weights = torch.randn(1, rank, 2, 2, height, width, 2, generator=gen, dtype=torch.float64)
    inputs = [modulation.to(dtype), (weights * std).to(dtype)]
    compare(
        lambda m, w: delta_oriented_fields(m, w, 1e-12),
        lambda m, w: delta_oriented_fields_ref(m, w, 1e-12),
        inputs,
        dtype,
    )


def test_delta_oriented_fields_shape_and_unit_orientation():
    modulation = torch.zeros(2, 1, 3, 2, 2, dtype=torch.float64)
    modulation[:, :, 1, 1, 0] = 3.0  # orientation bias 3 + 0i: o = 1 everywhere
    modulation[:, :, 1, 0, 0] = 2.0  # value bias 2 + 0i
    weights = torch.zeros(1, 1, 2, 2, 3, 4, 2, dtype=torch.float64)
    out = delta_oriented_fields(modulation, weights, 1e-12)
    assert out.shape == (2, 1, 3, 4)
    torch.testing.assert_close(out, torch.full_like(out, 2.0), rtol=1e-12, atol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_lift_small_matches_ref(dtype):
    x = torch.tensor([0.0, 1e-13, -1e-13, 2e-12, -3.0, 5e-13], dtype=dtype)
    fast, ref = lift_small(x, 1e-12), lift_small_ref(x, 1e-12)
    assert torch.equal(fast, ref)
    assert fast[0] == 0 and fast[1] == 1e-12 and fast[2] == -1e-12 and fast[3] == x[3]
    compare(lambda t: lift_small(t, 1e-12), lambda t: lift_small_ref(t, 1e-12), [x], dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize(("batch", "rank", "n"), [(1, 1, 2), (3, 2, 12), (2, 4, 54)])
@pytest.mark.parametrize("with_noise", [False, True])
def test_delta_decorrelate_mix_matches_ref(dtype, batch, rank, n, with_noise):
    gen = torch.Generator().manual_seed(batch * 10 + rank)
    bank = torch.randn(batch, rank, n, generator=gen, dtype=torch.float64).to(dtype)
    mixing = torch.softmax(torch.randn(batch, rank, generator=gen, dtype=torch.float64), -1)
    noise = torch.randn(batch, rank, n, generator=gen, dtype=torch.float64).to(dtype)
    noise = noise if with_noise else None
    # The composer's defaults for rank r: a = 0.3 / sqrt(r) / max(r - 1, 1), lambda = 0.1.
    constants = (0.3 / math.sqrt(rank) / max(rank - 1, 1), 0.1, 0.01, 1e-12)

    def fast(x, p):
        return delta_decorrelate_mix(x, p, noise, *constants)

    def ref(x, p):
        return delta_decorrelate_mix_ref(x, p, noise, *constants)

    compare(fast, ref, [bank, mixing.to(dtype)], dtype)


def test_delta_decorrelate_mix_lifts_small_values_straight_through():
    bank = torch.tensor([[[1e-14, -2e-14, 0.0, 1.0]]], dtype=torch.float64)
    mixing = torch.ones(1, 1, dtype=torch.float64)
    out = delta_decorrelate_mix(bank, mixing, None, 0.3, 0.1, 0.0, 1e-12)
    # One filter: no repulsion, so only the lift acts (an exact zero stays zero).
    assert out.tolist() == [[1e-12, -1e-12, 0.0, 1.0]]


def test_delta_decorrelate_mix_gradcheck():
    gen = torch.Generator().manual_seed(4)
    bank = torch.randn(2, 3, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    mixing = torch.rand(2, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    noise = torch.randn(2, 3, 5, generator=gen, dtype=torch.float64)

    def fast(x, p):
        return delta_decorrelate_mix(x, p, noise, 0.2, 0.1, 0.0, 1e-12)

    def ref(x, p):
        return delta_decorrelate_mix_ref(x, p, noise, 0.2, 0.1, 0.0, 1e-12)

    # The BGN and the straight-through terms are not derivatives of the forward map, so the
    # analytical gradient is checked against the plain twin; gradcheck checks the mixture's.
    assert torch.autograd.gradcheck(lambda p: fast(bank.detach(), p), (mixing,))
    out = torch.randn(2, 5, generator=gen, dtype=torch.float64)
    got = torch.autograd.grad(fast(bank, mixing), (bank, mixing), out)
    want = torch.autograd.grad(ref(bank, mixing), (bank, mixing), out)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-13)
