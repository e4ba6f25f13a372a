"""Both dynamic convolutions under ``torch.compile``: full-graph capture, compiled == eager.

The ``aot_eager`` backend traces forward and backward as inductor would (including the traced
code paths of the hand-written backwards) but runs them with eager kernels, so it is cheap enough
for every run of the suite; the inductor speed is measured in ``benchmarks/dynamic_conv.py``.
"""

import pytest
import torch

from dyna import DynamicConv2DDelta, DynamicConv2DMobius
from dyna.functional.standard_normal import standard_normal_like
from dyna.functional.tensor_composer_delta import (
    delta_oriented_fields,
    delta_oriented_fields_ref,
    std_mean_last,
)

F64 = torch.float64


def make(cls, dtype):
    torch.manual_seed(3)
    if cls is DynamicConv2DDelta:
        return cls(2, 3, 5, rank=2, padding=1, dtype=dtype)
    return cls(2, 3, 5, padding=1, n_subspaces=2, rank_subspace=3, dtype=dtype)


def forward_backward(module, x, c, seed):
    x = x.detach().requires_grad_(True)
    c = c.detach().requires_grad_(True)
    module.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    out = module(x, c)
    # A non-uniform loss, so that the BGN of the output gradient is not trivial.
    (out * torch.linspace(-1.0, 2.0, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
    grads = {
        name.removeprefix("_orig_mod."): p.grad.clone()
        for name, p in module.named_parameters()
        if p.grad is not None
    }
    return out.detach(), x.grad, c.grad, grads


@pytest.mark.parametrize("cls", [DynamicConv2DDelta, DynamicConv2DMobius])
@pytest.mark.parametrize("train", [False, True])
def test_compiled_equals_eager_values_and_gradients(cls, train):
    module = make(cls, F64).train(train)
    torch.manual_seed(0)
    x = torch.randn(3, 2, 6, 5, dtype=F64)
    c = torch.randn(3, 5, dtype=F64)
    compiled = torch.compile(module, backend="aot_eager", fullgraph=True)
    # Same seed: in training mode the compiled Delta layer draws the same noise as eager.
    expected = forward_backward(module, x, c, seed=11)
    got = forward_backward(compiled, x, c, seed=11)
    for want, have in zip(expected[:3], got[:3], strict=True):
        torch.testing.assert_close(have, want, rtol=1e-9, atol=1e-12)
    assert got[3].keys() == expected[3].keys()
    for name in expected[3]:
        torch.testing.assert_close(got[3][name], expected[3][name], rtol=1e-9, atol=1e-12)


def test_compiled_oriented_fields_gradient_matches_plain_twin():
    torch.manual_seed(5)
    modulation = torch.randn(3, 2, 3, 2, 2, dtype=F64, requires_grad=True)
    weights = torch.randn(1, 2, 2, 2, 4, 3, 2, dtype=F64, requires_grad=True)
    grad_out = torch.randn(3, 2, 4, 3, dtype=F64)
    compiled = torch.compile(delta_oriented_fields, backend="aot_eager", fullgraph=True)
    got = torch.autograd.grad(compiled(modulation, weights, 1e-12), (modulation, weights), grad_out)
    want = torch.autograd.grad(
        delta_oriented_fields_ref(modulation, weights, 1e-12), (modulation, weights), grad_out
    )
    for have, expected in zip(got, want, strict=True):
        torch.testing.assert_close(have, expected, rtol=1e-10, atol=1e-12)


def test_standard_normal_like_draws_as_randn_like_and_stays_opaque():
    x = torch.zeros(4, 6, requires_grad=True)
    y = torch.zeros(3, dtype=F64)
    torch.manual_seed(7)
    noise, other = standard_normal_like(x, y)
    torch.manual_seed(7)
    torch.testing.assert_close(noise, torch.randn_like(x), rtol=0.0, atol=0.0)
    torch.testing.assert_close(other, torch.randn_like(y), rtol=0.0, atol=0.0)
    assert not noise.requires_grad
    assert noise.shape == x.shape and noise.dtype == x.dtype and other.dtype == F64

    graphs = []

    def capture(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward

    compiled = torch.compile(lambda t: standard_normal_like(t)[0] * 2.0, backend=capture)
    torch.manual_seed(7)
    doubled = compiled(x)
    torch.manual_seed(7)
    torch.testing.assert_close(doubled, torch.randn_like(x) * 2.0, rtol=0.0, atol=0.0)
    targets = [str(node.target) for node in graphs[0].graph.nodes]
    assert any("standard_normal_like" in target for target in targets)
    assert not any("randn" in target for target in targets)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_std_mean_equals_torch_std_mean(dtype):
    torch.manual_seed(2)
    x = torch.randn(3, 4, 37, dtype=dtype) * 0.02 + 0.5
    std, mean = std_mean_last(x)
    want_std, want_mean = torch.std_mean(x, dim=-1, keepdim=True)
    tolerance = 1e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(std, want_std, rtol=tolerance, atol=0.0)
    torch.testing.assert_close(mean, want_mean, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("magnitude", [5e19, 1e30, 1e-20, 1e-40, 0.0])
def test_std_mean_stays_finite_where_the_squares_would_overflow(magnitude):
    # float32 rows whose squares overflow (or underflow to zero): the std is still the float64
    # std of the same numbers to float32 precision (to a few subnormal ulps, 1.4e-45 each, for
    # subnormal rows), and a constant row has std 0.
    pattern = torch.tensor([[1.0, -0.6, 0.2, 0.9, -1.0]], dtype=F64)
    rows = torch.cat([pattern * magnitude, torch.randn(2, 5, dtype=F64)])
    std, mean = std_mean_last(rows.float())
    want_std, want_mean = torch.std_mean(rows.float().double(), dim=-1, keepdim=True)
    assert torch.isfinite(std).all() and torch.isfinite(mean).all()
    torch.testing.assert_close(std.double(), want_std, rtol=1e-6, atol=1e-44)
    torch.testing.assert_close(mean.double(), want_mean, rtol=1e-6, atol=1e-44)
