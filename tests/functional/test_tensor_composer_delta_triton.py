"""The Triton kernels of the Delta composer's stages against their twins.

Without CUDA the kernels run in Triton's interpreter on CPU tensors (the root conftest sets
``TRITON_INTERPRET``); with CUDA the same tests run compiled on the GPU (the CPU cases need the
interpreter, which is off there, and skip).
"""

from __future__ import annotations

import logging

import pytest
import torch

from dyna.functional import _backend
from dyna.functional.tensor_composer_delta import (
    delta_oriented_fields,
    delta_oriented_fields_ref,
)
from tests.functional.twins import compare, rel

pytest.importorskip("triton")

INTERPRETING = _backend.triton_interpreting()
DEVICES = (["cpu"] if INTERPRETING else []) + (["cuda"] if torch.cuda.is_available() else [])


def _oriented_inputs(batch, rank, height, width, device, dtype=torch.float32):
    generator = torch.Generator().manual_seed(batch * 100 + rank * 10 + width)
    modulation = torch.randn(batch, rank, 3, 2, 2, generator=generator, dtype=torch.float64)
    weights = torch.randn(1, rank, 2, 2, height, width, 2, generator=generator, dtype=torch.float64)
    return modulation.mul(0.7).to(device, dtype), weights.to(device, dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    ("batch", "rank", "height", "width"),
    [
        (1, 1, 1, 2),  # the smallest bank
        (3, 2, 5, 7),  # one ragged column tile
        (2, 3, 6, 50),  # N = 300: two column tiles, the second ragged
    ],
)
def test_oriented_fields_kernel_matches_reference_values_and_every_gradient(
    device, batch, rank, height, width
):
    inputs = _oriented_inputs(batch, rank, height, width, device)
    compare(
        lambda m, w: delta_oriented_fields(m, w, 1e-12, backend="triton"),
        lambda m, w: delta_oriented_fields_ref(m, w, 1e-12),
        inputs,
        torch.float32,
    )


@pytest.mark.parametrize("device", DEVICES)
def test_oriented_fields_kernel_with_a_zero_gradient_sample(device):
    modulation, weights = _oriented_inputs(3, 2, 4, 5, device)
    grad = torch.randn(3, 2, 4, 5, device=device)
    grad[1] = 0.0
    results = []
    for function in (delta_oriented_fields, delta_oriented_fields_ref):
        leaves = (modulation.clone().requires_grad_(), weights.clone().requires_grad_())
        kwargs = {"backend": "triton"} if function is delta_oriented_fields else {}
        out = function(*leaves, 1e-12, **kwargs)
        results.append((out, *torch.autograd.grad(out, leaves, grad)))
    for got, want in zip(*results, strict=True):
        assert rel(got, want) <= 1e-5
    assert torch.equal(results[0][1][1], torch.zeros_like(results[0][1][1]))


@pytest.mark.parametrize("device", DEVICES)
def test_oriented_fields_kernel_bfloat16_as_accurate_as_the_torch_path(device):
    # The spec's bfloat16 rule for the composers: within 2e-2 of the float64 result or no
    # less accurate than the torch path in bfloat16 (the coefficients' bfloat16 arithmetic
    # outside the kernel rounds too).
    modulation, weights = _oriented_inputs(2, 2, 3, 6, device, torch.float64)
    grad = torch.randn(2, 2, 3, 6, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    grad = grad.to(device)
    results = {}
    for backend, dtype in (("torch", torch.float64), ("torch", torch.bfloat16), ("triton", None)):
        dtype = dtype or torch.bfloat16
        leaves = [modulation.to(dtype).requires_grad_(), weights.to(dtype).requires_grad_()]
        out = delta_oriented_fields(*leaves, 1e-12, backend=backend)
        results[backend, dtype] = (out, *torch.autograd.grad(out, leaves, grad.to(dtype)))
    exact = results["torch", torch.float64]
    torch_path, kernels = results["torch", torch.bfloat16], results["triton", torch.bfloat16]
    for want, base, got in zip(exact, torch_path, kernels, strict=True):
        assert got.dtype == torch.bfloat16
        assert rel(got, want) <= 1.1 * rel(base, want) + 2e-2


@pytest.mark.skipif(not INTERPRETING, reason="forces the kernels on CPU tensors")
def test_oriented_fields_dispatch_rules(caplog):
    modulation, weights = _oriented_inputs(2, 2, 3, 4, "cpu")
    with pytest.raises(ValueError, match="backend"):
        delta_oriented_fields(modulation, weights, 1e-12, backend="gpu")
    # float64 runs the torch path.
    double = (modulation.double(), weights.double())
    with caplog.at_level(logging.DEBUG, logger="dyna.backend"):
        got = delta_oriented_fields(*double, 1e-12, backend="triton")
    assert rel(got, delta_oriented_fields_ref(*double, 1e-12)) <= 1e-12
    assert "float64" in caplog.text
