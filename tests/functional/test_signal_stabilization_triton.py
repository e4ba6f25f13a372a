"""The Triton kernels of the stabiliser against its twin, ``stabilize_ref``.

Without CUDA the kernels run in Triton's interpreter on CPU tensors (the root conftest sets
``TRITON_INTERPRET``); with CUDA the same tests run compiled on the GPU (the CPU cases need the
interpreter, which is off there, and skip).
"""

from __future__ import annotations

import logging

import pytest
import torch

from dyna.functional import _backend
from dyna.functional.signal_stabilization import stabilize, stabilize_ref
from tests.functional.twins import compare, rel

pytest.importorskip("triton")

INTERPRETING = _backend.triton_interpreting()
DEVICES = (["cpu"] if INTERPRETING else []) + (["cuda"] if torch.cuda.is_available() else [])


def _input(shape, device, dtype=torch.float32):
    generator = torch.Generator().manual_seed(len(shape) * 10 + shape[-1])
    x = torch.randn(shape, generator=generator, dtype=torch.float64) * 2
    x.view(-1)[:4] = torch.tensor([0.0, 1.0, -1.0, 0.5])[: x.numel()]  # siglog's kinks
    return x.to(dtype).to(device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "shape",
    [
        (1, 1, 2),  # one row narrower than a block
        (3, 4, 5, 6),  # many rows per block, rows of one sample spread over blocks
        (2, 3, 300),  # padded width (512), several blocks
        (5, 7),  # one row per sample
    ],
)
def test_kernel_matches_reference_values_and_gradient(device, shape):
    x = _input(shape, device)
    compare(
        lambda t: stabilize(t, 1e-12, backend="triton"),
        lambda t: stabilize_ref(t, 1e-12),
        [x],
        torch.float32,
    )


@pytest.mark.parametrize("device", DEVICES)
def test_kernel_with_a_zero_gradient_sample_and_zero_inputs(device):
    # z = 0 rows (sign 0) and a sample whose gradient is zero (every BGN keeps it zero).
    x = _input((3, 2, 8), device)
    x[1, 0] = 0.0
    grad = torch.randn(3, 2, 8, device=device)
    grad[2] = 0.0
    results = []
    for function in (lambda t: stabilize(t, 1e-12, backend="triton"), stabilize_ref):
        leaf = x.clone().requires_grad_()
        out = function(leaf) if function is not stabilize_ref else function(leaf, 1e-12)
        (grad_x,) = torch.autograd.grad(out, leaf, grad)
        results.append((out, grad_x))
    (out, grad_x), (expected, expected_grad) = results
    assert rel(out, expected) <= 1e-5 and rel(grad_x, expected_grad) <= 1e-5
    assert torch.equal(grad_x[2], torch.zeros_like(grad_x[2]))


@pytest.mark.parametrize("device", DEVICES)
def test_kernel_bfloat16_close_to_float32(device):
    x = _input((2, 3, 10), device)
    low = x.bfloat16().requires_grad_()
    out = stabilize(low, 1e-12, backend="triton")
    assert out.dtype == torch.bfloat16
    leaf = x.clone().requires_grad_()
    expected = stabilize_ref(leaf, 1e-12)
    assert rel(out, expected) <= 2e-2
    grad = torch.randn_like(expected)
    (grad_low,) = torch.autograd.grad(out, low, grad.bfloat16())
    (grad_expected,) = torch.autograd.grad(expected, leaf, grad)
    assert grad_low.dtype == torch.bfloat16
    assert rel(grad_low, grad_expected) <= 2e-2


@pytest.mark.skipif(not INTERPRETING, reason="forces the kernels on CPU tensors")
def test_dispatch_rules(caplog):
    x = _input((2, 3, 4), "cpu")
    with pytest.raises(ValueError, match="backend"):
        stabilize(x, 1e-12, backend="gpu")
    # float64 and 1-D inputs (BGN's whole-vector case) run the torch path.
    for case in (x.double(), x[0, 0]):
        with caplog.at_level(logging.DEBUG, logger="dyna.backend"):
            got = stabilize(case, 1e-12, backend="triton")
        torch.testing.assert_close(got, stabilize(case, 1e-12, backend="torch"))
    assert "float64" in caplog.text and "shape (4,)" in caplog.text
