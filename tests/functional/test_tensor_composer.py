"""The composers' fast stages against their plain ``*_ref`` twins (outputs and gradients)."""

from __future__ import annotations

import math

import pytest
import torch

from dyna.functional import backward_gradient_normalization
from dyna.functional.tensor_composer import (
    backward_gradient_normalization_multiplicity,
    delta_decorrelate_mix,
    delta_decorrelate_mix_ref,
    delta_oriented_fields,
    delta_oriented_fields_ref,
    lift_small,
    lift_small_ref,
    mobius_latent_expansion,
    mobius_latent_expansion_ref,
    mobius_projection,
    mobius_projection_ref,
    stabilize,
    stabilize_ref,
)

TOL = {torch.float64: 1e-12, torch.float32: 1e-5}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().double() - b.detach().double()).norm() / b.detach().double().norm())


def compare(fast, ref, inputs, dtype, seed=0):
    """Outputs and gradients (for a fixed random upstream) of two functions agree."""
    leaves_fast = [t.detach().clone().requires_grad_() for t in inputs]
    leaves_ref = [t.detach().clone().requires_grad_() for t in inputs]
    out_fast, out_ref = fast(*leaves_fast), ref(*leaves_ref)
    outs_fast = out_fast if isinstance(out_fast, tuple) else (out_fast,)
    outs_ref = out_ref if isinstance(out_ref, tuple) else (out_ref,)
    gen = torch.Generator().manual_seed(seed)
    upstream = [
        torch.randn(o.shape, generator=gen, dtype=torch.float64).to(dtype) for o in outs_ref
    ]
    torch.autograd.backward(outs_fast, upstream)
    torch.autograd.backward(outs_ref, upstream)
    for a, b in zip(outs_fast, outs_ref, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert rel(a, b) <= TOL[dtype]
    for a, b in zip(leaves_fast, leaves_ref, strict=True):
        assert rel(a.grad, b.grad) <= TOL[dtype]


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


@pytest.mark.parametrize("latent_dim", [1, 4, 90])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 6, 2, 3), (3, 10, 4, 4)])
def test_mobius_latent_expansion_matches_materialised(latent_dim, shape):
    gen = torch.Generator().manual_seed(latent_dim)
    re = torch.randn(shape, generator=gen, dtype=torch.float64)
    im = torch.randn(shape, generator=gen, dtype=torch.float64)
    # The upstream gradient of the collapsed form times L-fold copies: gradients scale by L.
    compare(
        lambda a, b: mobius_latent_expansion(a, b, latent_dim, 1e-12),
        lambda a, b: mobius_latent_expansion_ref(a, b, latent_dim, 1e-12),
        [re, im],
        torch.float64,
    )


def test_multiplicity_one_is_bgn():
    x = torch.randn(3, 4, 5, dtype=torch.float64)
    g = torch.randn(3, 4, 5, dtype=torch.float64)
    a = x.clone().requires_grad_()
    b = x.clone().requires_grad_()
    backward_gradient_normalization_multiplicity(a, 1).backward(g)
    backward_gradient_normalization(b).backward(g)
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-14, atol=0)


def test_multiplicity_formula():
    g = torch.tensor([[3.0, 4.0], [0.0, 1.0]], dtype=torch.float64)
    x = torch.zeros(2, 2, dtype=torch.float64, requires_grad=True)
    backward_gradient_normalization_multiplicity(x, 4, eps=0.0).backward(g)
    # g * sqrt(n L) / (||g|| / sqrt(L)) with n = 2, L = 4: rows of norm sqrt(n) * L = 4 sqrt(2).
    expected = g / g.norm(dim=1, keepdim=True) * math.sqrt(2) * 4
    torch.testing.assert_close(x.grad, expected, rtol=1e-14, atol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize(("batch", "subspaces", "height", "width"), [(1, 1, 1, 2), (3, 4, 5, 6)])
def test_mobius_projection_matches_ref(dtype, batch, subspaces, height, width):
    gen = torch.Generator().manual_seed(subspaces)
    inputs = [
        torch.randn(batch, subspaces, height, 2, generator=gen, dtype=torch.float64),
        torch.randn(batch, subspaces, width, 2, generator=gen, dtype=torch.float64),
        torch.randn(subspaces, height, width, generator=gen, dtype=torch.float64),
        torch.randn(subspaces, height, width, generator=gen, dtype=torch.float64),
    ]
    compare(mobius_projection, mobius_projection_ref, [t.to(dtype) for t in inputs], dtype)


def test_mobius_projection_gradcheck():
    gen = torch.Generator().manual_seed(3)
    inputs = [
        torch.randn(2, 3, 4, 2, generator=gen, dtype=torch.float64, requires_grad=True),
        torch.randn(2, 3, 5, 2, generator=gen, dtype=torch.float64, requires_grad=True),
        torch.randn(3, 4, 5, generator=gen, dtype=torch.float64, requires_grad=True),
        torch.randn(3, 4, 5, generator=gen, dtype=torch.float64, requires_grad=True),
    ]
    assert torch.autograd.gradcheck(mobius_projection, inputs)


def test_mobius_projection_hand_value():
    # One sample, one subspace: Re((1 + 2i)(3 - i) conj(p)) with p = i: Re((5 + 5i)(-i)) = 5.
    u = torch.tensor([[[[1.0, 2.0]]]], dtype=torch.float64)
    v = torch.tensor([[[[3.0, -1.0]]]], dtype=torch.float64)
    out = mobius_projection(
        u, v, torch.zeros(1, 1, 1, dtype=torch.float64), torch.ones(1, 1, 1, dtype=torch.float64)
    )
    assert out.shape == (1, 1, 1) and out.item() == 5.0


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("shape", [(1, 1, 2), (3, 4, 5, 6)])
def test_stabilize_matches_ref_and_the_compressor(dtype, shape):
    from dyna.module import SignalStabilizationCompressor

    gen = torch.Generator().manual_seed(len(shape))
    x = torch.randn(shape, generator=gen, dtype=torch.float64) * 2
    x.view(-1)[:3] = torch.tensor([0.0, 1.0, -1.0])[: x.numel()]  # siglog's kinks
    x = x.to(dtype)
    compare(lambda t: stabilize(t, 1e-12), lambda t: stabilize_ref(t, 1e-12), [x], dtype)
    compressor = SignalStabilizationCompressor(True, True, True, eps=1e-12)
    compare(lambda t: stabilize(t, 1e-12), compressor, [x], dtype)


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
