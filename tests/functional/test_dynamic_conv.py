"""The grouped per-sample convolution and the learned-value padding against their plain twins."""

from __future__ import annotations

import pytest
import torch

from dyna.functional.dynamic_conv import (
    pad_with_value,
    pad_with_value_ref,
    per_sample_conv2d,
    per_sample_conv2d_ref,
)

CONFIGS = [
    # (C_in, C_out, k, stride, dilation, transpose, output_padding, bias)
    (2, 3, (3, 3), (1, 1), (1, 1), False, (0, 0), False),
    (3, 2, (1, 3), (2, 1), (1, 2), False, (0, 0), True),
    (2, 3, (3, 3), (2, 2), (1, 1), True, (1, 0), True),
    (3, 3, (2, 3), (1, 2), (2, 1), True, (0, 1), False),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("config", CONFIGS)
def test_grouped_matches_per_sample_loop(dtype, config):
    c_in, c_out, k, stride, dilation, transpose, output_padding, use_bias = config
    gen = torch.Generator().manual_seed(c_in * 10 + c_out)
    x = torch.randn(3, c_in, 6, 7, generator=gen, dtype=torch.float64).to(dtype)
    shape = (3, c_in, c_out, *k) if transpose else (3, c_out, c_in, *k)
    weight = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
    bias = torch.randn(c_out, generator=gen, dtype=torch.float64).to(dtype) if use_bias else None
    kwargs = {
        "stride": stride,
        "dilation": dilation,
        "transpose": transpose,
        "output_padding": output_padding,
    }
    leaves = [t.clone().requires_grad_() for t in (x, weight)]
    ref_leaves = [t.clone().requires_grad_() for t in (x, weight)]
    out = per_sample_conv2d(*leaves, bias, **kwargs)
    expected = per_sample_conv2d_ref(*ref_leaves, bias, **kwargs)
    tolerance = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {}
    torch.testing.assert_close(out, expected, **tolerance)
    upstream = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(dtype)
    out.backward(upstream)
    expected.backward(upstream)
    for a, b in zip(leaves, ref_leaves, strict=True):
        torch.testing.assert_close(a.grad, b.grad, **tolerance)


def test_grouped_gradcheck():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 2, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 2, 2, 2, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, w, b: per_sample_conv2d(x, w, b), (x, w, b), fast_mode=True
    )
    wt = torch.randn(2, 2, 1, 2, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, w: per_sample_conv2d(x, w, stride=(2, 2), transpose=True, output_padding=(1, 1)),
        (x, wt),
        fast_mode=True,
    )


@pytest.mark.parametrize("padding", [(0, 0, 0, 0), (1, 2, 0, 1), (2, 2, 2, 2)])
@pytest.mark.parametrize("with_value", [True, False])
def test_pad_with_value_matches_ref(padding, with_value):
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    value = torch.tensor([0.7], dtype=torch.float64, requires_grad=True) if with_value else None
    out = pad_with_value(x, padding, value)
    expected = pad_with_value_ref(x, padding, value)
    assert out.shape == (2, 3, 4 + padding[2] + padding[3], 5 + padding[0] + padding[1])
    assert torch.equal(out, expected)
    if with_value:
        grads = torch.autograd.grad(out.sum(), (x, value))
        expected_grads = torch.autograd.grad(expected.sum(), (x, value))
        for a, b in zip(grads, expected_grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-14, atol=0)
        # d/d value = number of padded elements
        border = out.numel() - x.numel()
        assert grads[1].item() == border


def test_pad_with_value_promotes_like_the_reference():
    x = torch.ones(1, 1, 2, 2, dtype=torch.float32)
    value = torch.tensor([0.5], dtype=torch.bfloat16)
    out = pad_with_value(x, (1, 0, 0, 0), value)
    assert out.dtype == torch.float32
    assert out[0, 0, :, 0].tolist() == [0.5, 0.5] and out[0, 0, :, 1:].eq(1).all()


@pytest.mark.parametrize("transpose", [False, True])
def test_per_sample_conv2d_of_an_empty_batch_has_the_static_convolution_shape(transpose):
    # Three output channels from two input channels, kernel 3x2.
    kernels = (2, 3, 3, 2) if transpose else (3, 2, 3, 2)
    geometry = {"stride": (2, 1), "dilation": (1, 2)}
    extra = {"output_padding": (1, 0)} if transpose else {}
    x = torch.randn(0, 2, 7, 6, requires_grad=True)
    weight = torch.randn(0, *kernels, requires_grad=True)
    bias = torch.randn(3, requires_grad=True)
    out = per_sample_conv2d(x, weight, bias, transpose=transpose, **geometry, **extra)
    convolve = torch.nn.functional.conv_transpose2d if transpose else torch.nn.functional.conv2d
    static = convolve(torch.zeros(1, 2, 7, 6), torch.zeros(kernels), **geometry, **extra)
    assert out.shape == (0, *static.shape[1:])
    out.sum().backward()
    assert torch.equal(bias.grad, torch.zeros_like(bias)) and x.grad.shape == x.shape
