"""What the two dynamic convolutions share: argument checks, shape fitting, the kernel index,
the kernel gather and the padded per-sample (transposed) convolution.

A composer generates one (Hd, Wd) matrix per sample; the index maps it onto the
(C_out, C_in, k0, k1) kernels tile by tile. (Hd, Wd) is chosen by the reference's fit rule, so
the composer's parameter shapes, and with them the state_dict, match the reference.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dyna._validation import check_bool, check_floating_tensor, check_int_pair, check_positive_int
from dyna.functional.dynamic_conv import pad_with_value, per_sample_conv2d
from dyna.lib._common import check_context

DTYPES = [torch.bfloat16, torch.float16, torch.float32, torch.float64]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def normalize_padding(value: object) -> list[int]:
    """int p -> [p] * 4; [horizontal, vertical] -> [h, h, v, v]; [left, right, top, bottom]."""
    if _is_int(value):
        value = [value] * 4
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"padding must be an int or a sequence of 2 or 4 ints, got {value!r}")
    if len(value) not in (2, 4) or not all(_is_int(v) for v in value):
        raise ValueError(f"padding must be an int or a sequence of 2 or 4 ints, got {list(value)}")
    if any(v < 0 for v in value):
        raise ValueError(f"padding must be >= 0, got {list(value)}")
    if len(value) == 2:
        value = [value[0], value[0], value[1], value[1]]
    return [int(v) for v in value]


def normalize_output_padding(
    value: object, transpose: bool, stride: list[int], dilation: list[int]
) -> list[int] | None:
    """Required (int or 2 ints >= 0, each < stride or dilation) iff ``transpose``, else None."""
    if not transpose:
        if value is not None:
            raise ValueError(f"output_padding must be None unless transpose=True, got {value!r}")
        return None
    if value is None:
        raise ValueError("output_padding must be given (int or two ints) when transpose=True")
    pair = list(check_int_pair("output_padding", value, minimum=0))
    for padding, step, spacing in zip(pair, stride, dilation, strict=True):
        if padding >= step and padding >= spacing:
            raise ValueError(
                f"output_padding must be smaller than stride or dilation, got output_padding="
                f"{pair}, stride={stride}, dilation={dilation}"
            )
    return pair


def fit_shape(shape: Sequence[int], kernel_size: Sequence[int]) -> list[int]:
    """The reference's fit rule: halve the long side and double the short one while it fits.

    The divisibility test uses the short side squared (m**2) where 2m was probably meant; it
    is kept, because the fitted shape sets the composer's parameter shapes.
    """
    a, b = int(shape[0]), int(shape[1])
    while True:
        big, small = max(a, b), min(a, b)
        half = big // 2
        if (
            big % 2 == 0
            and big / 2 > small
            and (
                (half % kernel_size[0] == 0 and small**2 % kernel_size[1] == 0)
                or (half % kernel_size[1] == 0 and small**2 % kernel_size[0] == 0)
            )
        ):
            a, b = half, small * 2
        else:
            return [a, b]


def create_index(
    conv_weights_shape: Sequence[int], dynamic_weights_shape: Sequence[int], inversion: bool
) -> torch.Tensor:
    """(Hd, Wd) int64 map: flat conv-weight element p reads flat generated element index[p].

    Tiles of the generated matrix, enumerated row-major, become the kernels of output channel
    t mod C_out and input channel t // C_out. The tile is (k1, k0) and transposed if
    ``inversion``, else (k0, k1) (the reference's rule); where those tiles do not cover the
    matrix (some non-square kernels) the other orientation is used, and if neither covers it,
    the identity. The result is always a permutation.
    """
    out_channels, in_channels, k0, k1 = (int(v) for v in conv_weights_shape)
    height, width = (int(v) for v in dynamic_weights_shape)
    if inversion:
        orientations = (((k1, k0), True), ((k0, k1), False))
    else:
        orientations = (((k0, k1), False), ((k1, k0), True))
    fitting = [o for o in orientations if height % o[0][0] == 0 and width % o[0][1] == 0]
    if not fitting:
        return torch.arange(height * width, dtype=torch.int64).reshape(height, width)
    (tile_height, tile_width), transposed = fitting[0]
    tiles = torch.arange(out_channels * in_channels)
    tile_columns = width // tile_width
    row0 = (tiles // tile_columns * tile_height).view(-1, 1, 1)
    col0 = (tiles % tile_columns * tile_width).view(-1, 1, 1)
    u = torch.arange(k0).view(1, -1, 1)
    v = torch.arange(k1).view(1, 1, -1)
    rows, cols = (row0 + v, col0 + u) if transposed else (row0 + u, col0 + v)
    values = rows * width + cols  # (tiles, k0, k1)
    index = torch.empty(out_channels, in_channels, k0, k1, dtype=torch.int64)
    index[tiles % out_channels, tiles // out_channels] = values
    return index.reshape(height, width)


class DynamicConv2DBase(nn.Module):
    """Shared state and methods of ``DynamicConv2DDelta`` and ``DynamicConv2DMobius``."""

    dtypes: list[torch.dtype] = DTYPES
    dynamic_weights_index: torch.Tensor

    def _setup_geometry(
        self,
        in_channels: object,
        out_channels: object,
        context_length: object,
        kernel_size: object,
        stride: object,
        padding: object,
        padding_dynamic: object,
        dilation: object,
        transpose: object,
        output_padding: object,
        dtype_weights: object,
        device: torch.device | str | None,
    ) -> None:
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.out_channels = check_positive_int("out_channels", out_channels)
        self.context_length = check_positive_int("context_length", context_length)
        self.kernel_size = list(check_int_pair("kernel_size", kernel_size))
        self.stride = list(check_int_pair("stride", stride))
        self.dilation = list(check_int_pair("dilation", dilation))
        self.padding = normalize_padding(padding)
        self.padding_dynamic = check_bool("padding_dynamic", padding_dynamic)
        self.transpose = check_bool("transpose", transpose)
        self.output_padding = normalize_output_padding(
            output_padding, self.transpose, self.stride, self.dilation
        )
        if dtype_weights not in self.dtypes:
            raise TypeError(f"dtype_weights must be one of {self.dtypes}, got {dtype_weights!r}")
        self.dtype_weights = dtype_weights

        self.conv_weights_shape = [self.out_channels, self.in_channels, *self.kernel_size]
        shape = self._fit_shape(
            [self.out_channels * self.kernel_size[0], self.in_channels * self.kernel_size[1]]
        )
        self.dynamic_weights_inversion = shape[0] < shape[1]
        self.dynamic_weights_shape = shape[::-1] if self.dynamic_weights_inversion else shape
        self.register_buffer(
            "dynamic_weights_index", self._create_index().to(device), persistent=False
        )

    def _reset_index(self) -> None:
        """Rebuild the index buffer (after ``to_empty()`` it holds uninitialised memory)."""
        with torch.no_grad():
            self.dynamic_weights_index.copy_(self._create_index())

    def _fit_shape(self, shape: list[int]) -> list[int]:
        """The reference's fit rule for this module's kernel size (see :func:`fit_shape`)."""
        return fit_shape(shape, self.kernel_size)

    def _create_index(self) -> torch.Tensor:
        """The kernel index of this module (see :func:`create_index`)."""
        return create_index(
            self.conv_weights_shape, self.dynamic_weights_shape, self.dynamic_weights_inversion
        )

    def _generate(self, context: torch.Tensor) -> torch.Tensor:
        """The composer's (Bc, Hd, Wd) matrices (plus any dynamic bias), in context's dtype."""
        raise NotImplementedError  # each subclass has its own composer

    def get_weights(self, context: torch.Tensor, batch_dim: int | None = None) -> torch.Tensor:
        """Per-sample kernels generated from ``context``.

        Args:
            context: (Bc, context_length) floating, Bc = 1 or ``batch_dim``.
            batch_dim: number of samples (default Bc); a context batch of 1 is shared.

        Returns:
            (batch_dim, C_out, C_in, k0, k1), or (batch_dim, C_in, C_out, k0, k1) when
            ``transpose``, in the context's dtype.
        """
        context = check_context(context, self.context_length, name="context")
        if batch_dim is None:
            batch_dim = context.shape[0]
        # a SymInt when traced with a dynamic batch (torch.export, torch.compile)
        if isinstance(batch_dim, bool) or not isinstance(batch_dim, (int, torch.SymInt)):
            raise TypeError(f"batch_dim must be an int or None, got {type(batch_dim).__name__}")
        if batch_dim < 1:
            raise ValueError(f"batch_dim must be greater than or equal to 1, got {batch_dim}")
        if context.shape[0] not in (1, batch_dim):
            raise ValueError(
                f"context.shape[0] must be equal to 1 or batch_dim ({batch_dim}), "
                f"got {context.shape[0]}"
            )
        return self._kernels(context, batch_dim)

    def _kernels(self, context: torch.Tensor, batch_dim: int) -> torch.Tensor:
        """:meth:`get_weights` without its checks; ``batch_dim`` may be 0 (an empty batch)."""
        generated = self._generate(context)
        flat = generated.flatten(1)  # reshape(B, -1) is ambiguous for an empty batch
        kernels = flat.index_select(1, self.dynamic_weights_index.view(-1))
        kernels = kernels.view(generated.shape[0], *self.conv_weights_shape)
        if kernels.shape[0] != batch_dim:
            kernels = kernels.expand(batch_dim, *self.conv_weights_shape)
        return kernels.transpose(1, 2) if self.transpose else kernels

    def _check_inputs(self, x: object, context: object) -> None:
        x = check_floating_tensor("x", x)
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"x must have shape (B, in_channels={self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        context = check_context(context, self.context_length, name="context")
        if context.shape[0] not in (1, x.shape[0]):
            raise ValueError(
                f"context.shape[0] must be equal to 1 or x.shape[0]; got "
                f"context.shape[0]={context.shape[0]} and x.shape[0]={x.shape[0]}"
            )
        if not self.transpose:
            left, right, top, bottom = self.padding
            padded = (x.shape[2] + top + bottom, x.shape[3] + left + right)
            reach = [d * (k - 1) + 1 for d, k in zip(self.dilation, self.kernel_size, strict=True)]
            if padded[0] < reach[0] or padded[1] < reach[1]:
                raise ValueError(
                    f"x is too small: its padded size {padded} is smaller than the dilated "
                    f"kernel {tuple(reach)}"
                )

    def _convolve(
        self,
        x: torch.Tensor,
        context: torch.Tensor,
        padding_value: torch.Tensor | None,
        bias: torch.Tensor | None,
    ) -> torch.Tensor:
        """Pad (with the learned value), generate the kernels, one grouped convolution."""
        x = pad_with_value(x, self.padding, padding_value)
        # _check_inputs has checked context against x; an empty batch needs no kernel.
        kernels = self._kernels(context, x.shape[0])
        # The convolution runs in the padded input's dtype (the reference's type promotion);
        # kernels and bias follow it, where the reference would fail on a mismatch.
        kernels = kernels.to(x.dtype)
        if bias is not None:
            bias = bias.to(x.dtype)
        return per_sample_conv2d(
            x,
            kernels,
            bias,
            stride=self.stride,
            dilation=self.dilation,
            transpose=self.transpose,
            output_padding=self.output_padding or (0, 0),
        )

    def _geometry_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, context_length={self.context_length}, "
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, transpose={self.transpose}, "
            f"output_padding={self.output_padding}, padding_dynamic={self.padding_dynamic}"
        )

    def _shape_repr(self) -> str:
        return (
            f"dynamic_weights_shape={self.dynamic_weights_shape}, "
            f"dtype_weights={self.dtype_weights}"
        )
