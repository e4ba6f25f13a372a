"""The Triton gather-GEMM of the CNU output blend against its twin, ``cnu_linear_ref``.

Without CUDA the kernels run in Triton's interpreter on CPU tensors (the root conftest sets
``TRITON_INTERPRET``); with CUDA the same tests also run on the GPU.
"""

import logging

import pytest
import torch

from dyna.functional import _backend, cnu_linear, cnu_linear_ref
from dyna.module import Conv2dCNU, LinearCNU

pytest.importorskip("triton")

INTERPRETING = _backend.triton_interpreting()
# The CPU cases force the kernels, which needs the interpreter (off on a GPU machine).
DEVICES = (["cpu"] if INTERPRETING else []) + (["cuda"] if torch.cuda.is_available() else [])


def _case(b, in_features, rows, m, k, bias, *, dtype=torch.float32, device="cpu", seed=0):
    generator = torch.Generator().manual_seed(seed)
    row_size = in_features + (1 if bias else 0)
    x = torch.randn(b, in_features, generator=generator, dtype=dtype).to(device)
    memories = torch.randn(1, m, rows * row_size, generator=generator, dtype=dtype).to(device)
    indices = torch.stack([torch.randperm(m, generator=generator)[:k] for _ in range(b)])
    weights = torch.softmax(torch.randn(b, 1, k, generator=generator, dtype=dtype), dim=-1)
    return (
        x.requires_grad_(),
        memories.requires_grad_(),
        indices.view(b, 1, k).to(device),
        weights.to(device).requires_grad_(),
    )


def _values_and_grads(function, x, memories, indices, weights, grad, **kwargs):
    out = function(x, memories, indices, weights, **kwargs)
    return (out, *torch.autograd.grad(out, (x, memories, weights), grad))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    ("b", "in_features", "rows", "m", "k", "bias", "wta"),
    [
        (5, 7, 3, 4, 2, True, True),  # winner-take-all: one trainable slot of two
        (9, 20, 17, 6, 3, False, False),  # several column and reduction tiles
        (70, 5, 2, 3, 1, True, False),  # two pair tiles, δ = 1
        (3, 4, 2, 5, 3, True, True),  # memories nobody selects get a zero gradient
    ],
)
def test_kernel_matches_reference_values_and_every_gradient(
    device, b, in_features, rows, m, k, bias, wta
):
    x, memories, indices, weights = _case(b, in_features, rows, m, k, bias, device=device)
    grad = torch.randn(b, rows, device=device)
    kernel = _values_and_grads(
        cnu_linear, x, memories, indices, weights, grad, bias=bias, wta=wta, backend="triton"
    )
    reference = _values_and_grads(
        cnu_linear_ref, x, memories, indices, weights, grad, bias=bias, wta=wta
    )
    for name, got, expected in zip(("out", "x", "M", "weights"), kernel, reference, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5, msg=name)
    if wta:
        # Only the winners' memories learn: the others' rows get exactly zero.
        unused = torch.ones(m, dtype=torch.bool, device=device)
        unused[indices[:, 0, 0]] = False
        assert torch.all(kernel[2][0, unused] == 0)


@pytest.mark.parametrize("device", DEVICES)
def test_kernel_bfloat16_close_to_float32(device):
    x, memories, indices, weights = _case(6, 9, 5, 4, 2, True, device=device)
    grad = torch.randn(6, 5, device=device)
    low = [t.detach().bfloat16().requires_grad_() for t in (x, memories, weights)]
    kernel = _values_and_grads(
        cnu_linear, low[0], low[1], indices, low[2], grad.bfloat16(), bias=True, backend="triton"
    )
    reference = _values_and_grads(cnu_linear_ref, x, memories, indices, weights, grad, bias=True)
    assert kernel[0].dtype == torch.bfloat16
    for got, expected in zip(kernel, reference, strict=True):
        assert got.dtype == torch.bfloat16
        torch.testing.assert_close(got.float(), expected, rtol=3e-2, atol=5e-2)


@pytest.mark.skipif(not INTERPRETING, reason="forces the kernels on CPU tensors")
def test_dispatch_rules(caplog):
    x, memories, indices, weights = _case(4, 3, 2, 3, 2, True)
    with pytest.raises(ValueError, match="backend"):
        cnu_linear(x, memories, indices, weights, bias=True, backend="cuda")
    with pytest.raises(TypeError, match="backend"):
        cnu_linear(x, memories, indices, weights, bias=True, backend=1)
    # float64 and unshared keys (q > 1) run the torch path, saying why at debug level.
    double = [t.detach().double() for t in (x, memories, weights)]
    with caplog.at_level(logging.DEBUG, logger="dyna.backend"):
        out = cnu_linear(double[0], double[1], indices, double[2], bias=True, backend="triton")
    torch.testing.assert_close(
        out, cnu_linear(double[0], double[1], indices, double[2], bias=True, backend="torch")
    )
    assert "float64" in caplog.text
    caplog.clear()
    unshared = memories.detach().view(1, 3, 2, 4).transpose(0, 2).reshape(2, 3, 4)
    indices_q2 = indices.expand(4, 2, 2)
    weights_q2 = weights.detach().expand(4, 2, 2)
    with caplog.at_level(logging.DEBUG, logger="dyna.backend"):
        out = cnu_linear(x, unshared, indices_q2, weights_q2, bias=True, backend="triton")
    torch.testing.assert_close(
        out, cnu_linear_ref(x, unshared, indices_q2, weights_q2, bias=True), rtol=1e-5, atol=1e-6
    )
    assert "q = 2" in caplog.text


@pytest.mark.parametrize("device", DEVICES)
def test_layer_triton_equals_torch_over_online_steps(device):
    """Training with scrambling: the state, outputs and gradients follow the torch path."""

    def build(backend):
        torch.manual_seed(3)
        return LinearCNU(
            6, 4, key_mem_units=5, delta=2, scramble=True, tau_alpha=0.9, backend=backend
        ).to(device)

    layers = {backend: build(backend) for backend in ("torch", "triton")}
    torch.manual_seed(4)
    stream = torch.randn(3, 5, 6, device=device)
    for x in stream:
        grads = {}
        for backend, layer in layers.items():
            inputs = x.clone().requires_grad_()
            out = layer(inputs)
            out.square().sum().backward()
            grads[backend] = (out, inputs.grad, layer.M.grad)
            with torch.no_grad():
                layer.M -= 0.1 * layer.M.grad
            layer.M.grad = None
        for got, expected in zip(grads["triton"], grads["torch"], strict=True):
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    for name in ("K", "mu", "eta", "scrambling_count"):
        torch.testing.assert_close(
            getattr(layers["triton"], name), getattr(layers["torch"], name), rtol=1e-5, atol=1e-6
        )


def test_layers_validate_store_and_show_the_backend():
    assert "backend='triton'" in repr(LinearCNU(3, 2, backend="triton"))
    assert "backend" not in repr(LinearCNU(3, 2))
    assert Conv2dCNU(2, 2, 3, backend="torch").backend == "torch"
    with pytest.raises(ValueError, match="backend"):
        LinearCNU(3, 2, backend="gpu")
    with pytest.raises(TypeError, match="backend"):
        Conv2dCNU(2, 2, 3, backend=True)
    state = LinearCNU(3, 2, backend="triton").state_dict()
    assert "backend" not in state
