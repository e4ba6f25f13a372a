"""The Triton kernels of the Möbius projection against its twin, ``mobius_projection_ref``.

Without CUDA the kernels run in Triton's interpreter on CPU tensors (the root conftest sets
``TRITON_INTERPRET``); with CUDA the same tests run compiled on the GPU (the CPU cases need the
interpreter, which is off there, and skip).
"""

import pytest
import torch

from dyna.functional import _backend
from dyna.functional.tensor_composer_mobius import mobius_projection_ref

pytest.importorskip("triton")

INTERPRETING = _backend.triton_interpreting()
DEVICES = (["cpu"] if INTERPRETING else []) + (["cuda"] if torch.cuda.is_available() else [])


def _kernel():
    # Imported here, after the conftest has chosen the interpreter.
    from dyna.functional import tensor_composer_mobius_triton

    return tensor_composer_mobius_triton.mobius_projection


def _inputs(batch, subspaces, height, width, device, dtype=torch.float32):
    generator = torch.Generator().manual_seed(batch * 100 + height)
    shapes = [
        (batch, subspaces, height, 2),
        (batch, subspaces, width, 2),
        (subspaces, height, width),
        (subspaces, height, width),
    ]
    return [
        torch.randn(shape, generator=generator, dtype=dtype).to(device).requires_grad_()
        for shape in shapes
    ]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    ("batch", "subspaces", "height", "width"),
    [(2, 3, 5, 7), (3, 2, 40, 33), (1, 1, 1, 17)],  # ragged tiles, several tiles, one row
)
def test_kernel_matches_reference_values_and_every_gradient(
    device, batch, subspaces, height, width
):
    inputs = _inputs(batch, subspaces, height, width, device)
    out = _kernel()(*inputs)
    expected = mobius_projection_ref(*inputs)
    grad = torch.randn_like(out)
    grads = torch.autograd.grad(out, inputs, grad)
    expected_grads = torch.autograd.grad(expected, inputs, grad)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    names = ("u", "v", "plane_re", "plane_im")
    for name, got, want in zip(names, grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.parametrize("device", DEVICES)
def test_kernel_gradients_only_where_needed(device):
    u, v, plane_re, plane_im = _inputs(2, 2, 4, 5, device)
    planes = (plane_re.detach(), plane_im.detach())
    out = _kernel()(u, v, *planes)
    grads = torch.autograd.grad(out.sum(), (u, v))
    expected = torch.autograd.grad(mobius_projection_ref(u, v, *planes).sum(), (u, v))
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_kernel_bfloat16_close_to_float32(device):
    inputs = _inputs(2, 3, 6, 9, device)
    low = [tensor.detach().bfloat16().requires_grad_() for tensor in inputs]
    out = _kernel()(*low)
    assert out.dtype == torch.bfloat16
    expected = mobius_projection_ref(*inputs)
    torch.testing.assert_close(out.float(), expected, rtol=2e-2, atol=5e-2)
    grad = torch.randn_like(expected)
    grads = torch.autograd.grad(out, low, grad.bfloat16())
    expected_grads = torch.autograd.grad(expected, inputs, grad)
    for got, want in zip(grads, expected_grads, strict=True):
        assert got.dtype == torch.bfloat16
        torch.testing.assert_close(got.float(), want, rtol=3e-2, atol=1e-1)


@pytest.mark.skipif(not INTERPRETING, reason="forces the kernels on CPU tensors")
def test_dispatch_by_backend():
    from dyna.functional.tensor_composer_mobius import mobius_projection

    inputs = _inputs(2, 2, 4, 5, "cpu")
    expected = mobius_projection_ref(*inputs)
    for backend in ("torch", "triton"):
        got = mobius_projection(*inputs, backend=backend)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # float64 runs the torch path even when the kernel is asked for.
    double = [tensor.detach().double() for tensor in inputs]
    torch.testing.assert_close(
        mobius_projection(*double, backend="triton"), mobius_projection_ref(*double)
    )
    with pytest.raises(ValueError, match="backend"):
        mobius_projection(*inputs, backend="gpu")
