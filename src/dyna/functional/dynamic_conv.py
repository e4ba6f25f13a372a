"""Per-sample 2-D convolutions and the learned-value padding of the dynamic convolutions.

:func:`per_sample_conv2d` convolves every sample with its own kernels in one grouped
convolution (the batch folded into the groups), which costs about one static convolution of
the same shape; :func:`per_sample_conv2d_ref` is its plain twin, one convolution per sample.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def pad_with_value(
    x: torch.Tensor, padding: Sequence[int], value: torch.Tensor | None
) -> torch.Tensor:
    """Zero-pad ``x`` in ``F.pad`` order (left, right, top, bottom), then add ``value`` there.

    Args:
        x: (B, C, H, W).
        padding: four non-negative ints, (left, right, top, bottom).
        value: a one-element tensor (the learned padding value, differentiable) or None for
            plain zero padding. ``x`` and ``value`` combine by type promotion, as in the
            reference (``pad(x, 1) - pad(x, 0)`` times the value).

    Returns:
        (B, C, H + top + bottom, W + left + right).
    """
    padded = F.pad(x, list(padding))
    if value is None:
        return padded
    left, right, top, bottom = padding
    height, width = x.shape[-2:]
    mask = x.new_ones((height + top + bottom, width + left + right))
    mask[top : top + height, left : left + width] = 0
    return padded + mask * value


def pad_with_value_ref(
    x: torch.Tensor, padding: Sequence[int], value: torch.Tensor | None
) -> torch.Tensor:
    """Literal twin of :func:`pad_with_value` (the reference's two paddings)."""
    if value is None:
        return F.pad(x, list(padding), mode="constant", value=0.0)
    ones = F.pad(x, list(padding), mode="constant", value=1.0)
    zeros = F.pad(x, list(padding), mode="constant", value=0.0)
    return zeros + (ones - zeros) * value


def _empty_output(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: Sequence[int],
    dilation: Sequence[int],
    transpose: bool,
    output_padding: Sequence[int],
) -> torch.Tensor:
    """The (0, C_out, H', W') result of an empty batch, joined to the graph of its inputs.

    A grouped convolution with ``groups=0`` is an error, so the size comes from the formulas
    of ``conv2d`` / ``conv_transpose2d``; adding the (zero) sums of the inputs makes backward
    run and give zero gradients, as it would for a batch of samples that all vanished.
    """
    kernel = weight.shape[-2:]
    if transpose:
        out_channels = weight.shape[2]
        size = [
            (x.shape[2 + axis] - 1) * stride[axis]
            + dilation[axis] * (kernel[axis] - 1)
            + output_padding[axis]
            + 1
            for axis in (0, 1)
        ]
    else:
        out_channels = weight.shape[1]
        size = [
            (x.shape[2 + axis] - dilation[axis] * (kernel[axis] - 1) - 1) // stride[axis] + 1
            for axis in (0, 1)
        ]
    anchor = x.sum() + weight.sum() + (0.0 if bias is None else bias.sum() * 0.0)
    return x.new_zeros((0, out_channels, *size)) + anchor


def _conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: Sequence[int],
    dilation: Sequence[int],
    transpose: bool,
    output_padding: Sequence[int],
    groups: int = 1,
) -> torch.Tensor:
    """``F.conv2d``, or ``F.conv_transpose2d`` (with ``output_padding``) when ``transpose``.

    Args:
        x: (N, groups·C_in, H, W).
        weight: (groups·C_out, C_in, k0, k1), or (groups·C_in, C_out, k0, k1) when
            ``transpose``.
        bias: (groups·C_out,) or None.

    Returns:
        (N, groups·C_out, H', W').
    """
    if transpose:
        return F.conv_transpose2d(
            x,
            weight,
            bias,
            stride=tuple(stride),
            output_padding=tuple(output_padding),
            groups=groups,
            dilation=tuple(dilation),
        )
    return F.conv2d(x, weight, bias, stride=tuple(stride), dilation=tuple(dilation), groups=groups)


def per_sample_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    stride: Sequence[int] = (1, 1),
    dilation: Sequence[int] = (1, 1),
    transpose: bool = False,
    output_padding: Sequence[int] = (0, 0),
) -> torch.Tensor:
    """Convolve sample b of ``x`` with kernels ``weight[b]`` (no padding: pad beforehand).

    Args:
        x: (B, C_in, H, W).
        weight: (B, C_out, C_in, k0, k1), or (B, C_in, C_out, k0, k1) when ``transpose``.
        bias: (C_out,) shared by all samples, or None.
        stride, dilation: two ints each.
        transpose: use ``conv_transpose2d`` (with ``output_padding``) instead of ``conv2d``.
        output_padding: two ints (transposed only).

    Returns:
        (B, C_out, H', W'): the batch folded into groups, one grouped convolution.
    """
    batch, in_channels = x.shape[:2]
    if batch == 0:
        return _empty_output(x, weight, bias, stride, dilation, transpose, output_padding)
    folded_input = x.reshape(1, batch * in_channels, *x.shape[2:])
    folded_weight = weight.reshape(batch * weight.shape[1], *weight.shape[2:])
    folded_bias = None if bias is None else bias.repeat(batch)
    out = _conv2d(
        folded_input,
        folded_weight,
        folded_bias,
        stride,
        dilation,
        transpose,
        output_padding,
        groups=batch,
    )
    return out.view(batch, -1, *out.shape[2:])


def per_sample_conv2d_ref(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    stride: Sequence[int] = (1, 1),
    dilation: Sequence[int] = (1, 1),
    transpose: bool = False,
    output_padding: Sequence[int] = (0, 0),
) -> torch.Tensor:
    """Plain twin of :func:`per_sample_conv2d`: one convolution per sample."""
    outputs = [
        _conv2d(sample[None], kernels, bias, stride, dilation, transpose, output_padding)
        for sample, kernels in zip(x.unbind(0), weight.unbind(0), strict=True)
    ]
    return torch.cat(outputs, dim=0)
