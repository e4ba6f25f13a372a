"""The Mobius composer's fast stages against their plain ``*_ref`` twins (outputs and gradients)."""

from __future__ import annotations

import pytest
import torch

from dyna.functional.tensor_composer_mobius import (
    mobius_latent_expansion,
    mobius_latent_expansion_ref,
    mobius_projection,
    mobius_projection_ref,
)
from tests.functional.twins import compare


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
