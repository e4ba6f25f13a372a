"""Dynamic 2-D convolution whose per-sample kernels come from a :class:`TensorComposerMobius`.

For an input x (B, C_in, H, W) and a context (B, Lc) or (1, Lc), with o the learned offset,
p the learned padding value, b the dynamic conv bias and s the static bias:

    y[b] = conv(pad(x[b] + o, padding, value=p), K[b], bias=b) - o + s
    K[b] = gather(TensorComposerMobius(context[b]) + bias_dynamic_weights_lib)

``conv`` is ``conv2d`` or, with ``transpose``, ``conv_transpose2d`` (padding applied to the
input, as in the reference). The offset is added before the padding and subtracted after the
convolution (not an inverse; kept from the reference). The whole batch runs as one grouped
convolution.

Matches the reference DyNA implementation (github.com/Sombressoul/dyna at 01c17ea): same
arguments, defaults (``asymmetry=1e-3``, unlike the composer), parameter names and values.
Deviations: valid indices for every kernel shape, the index as a non-persistent buffer, kernels
and conv bias cast to the input's dtype, a 2-element padding and an int ``bias_static``
accepted, the dynamic bias added without a batch-times-batch broadcast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from dyna._validation import check_positive_int, check_real
from dyna.functional._backend import check_backend
from dyna.lib.tensor_composer_mobius import TensorComposerMobius
from dyna.module._dynamic_conv import DynamicConv2DBase


class DynamicConv2DMobius(DynamicConv2DBase):
    """Conv2d (or transposed) layer with kernels generated per sample by a Mobius composer.

    Args:
        in_channels: input channels C_in.
        out_channels: output channels C_out.
        context_length: size Lc of the context vector.
        n_subspaces: C of :class:`~dyna.lib.TensorComposerMobius` (default 16).
        rank_subspace: R of :class:`~dyna.lib.TensorComposerMobius` (default 16).
        rank_transformations: Rz of :class:`~dyna.lib.TensorComposerMobius` (default 16).
        kernel_size: int or (k0, k1) (default (3, 3)).
        stride: int or two ints (default (1, 1)).
        padding: int, (horizontal, vertical) meaning (left = right, top = bottom), or
            (left, right, top, bottom) in ``F.pad`` order (default 0). Applied to the input,
            also for transposed convolutions.
        padding_dynamic: fill the padding with a learned value (default True; otherwise zeros).
        dilation: int or two ints (default (1, 1)).
        bias_dynamic: learn a bias added to the generated matrix and a conv bias (default True;
            coerced with ``bool()`` as in the reference).
        bias_static: a real number added to every output element, or None (default).
        offset_dynamic: learn an offset added to the input and subtracted from the output
            (default True).
        transpose: use a transposed convolution (default False).
        output_padding: int or two ints, required iff ``transpose`` (default None).
        asymmetry: the composer's lower bound in its complex division, and the range of the
            initial dynamic matrix bias (default 1e-3).
        dtype_weights: dtype of the parameters, one of ``dtypes`` (default bfloat16);
            ``dtype``, when given, replaces it.
        device: device of the parameters and buffers.
        dtype: see ``dtype_weights``.
        backend: ``None`` (default: Triton kernels for CUDA tensors), ``"torch"`` or
            ``"triton"``: passed to the :class:`~dyna.lib.TensorComposerMobius` (see
            :mod:`dyna.functional._backend`); the grouped convolution is cuDNN's either way.

    Parameters (state_dict): ``bias_dynamic_weights_lib`` (1, Hd, Wd) and ``bias_dynamic_conv``
    (C_out,) if ``bias_dynamic``; ``padding_dynamic_value`` (1,); ``offset_dynamic_value`` (1,);
    the buffer ``bias_static_buffer`` (1,) if ``bias_static`` is given; the composer's under
    ``weights_lib.``. The kernel index ``dynamic_weights_index`` is a non-persistent buffer.

    Shape:
        - x: (B, C_in, H, W), floating; context: (B, Lc) or (1, Lc), floating.
        - Output: (B, C_out, H', W'), in the dtype of the padded input (promoted by the static
          bias as in the reference).

    Example:
        >>> conv = DynamicConv2DMobius(2, 3, 6, n_subspaces=2, rank_subspace=3,
        ...                            rank_transformations=2, padding=1, dtype=torch.float32)
        >>> conv(torch.randn(4, 2, 8, 8), torch.randn(1, 6)).shape
        torch.Size([4, 3, 8, 8])
    """

    bias_static_buffer: torch.Tensor

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        context_length: int,
        n_subspaces: int = 16,
        rank_subspace: int = 16,
        rank_transformations: int = 16,
        kernel_size: int | Sequence[int] = (3, 3),
        stride: int | Sequence[int] = (1, 1),
        padding: int | Sequence[int] = (0, 0, 0, 0),
        padding_dynamic: bool = True,
        dilation: int | Sequence[int] = (1, 1),
        bias_dynamic: bool = True,
        bias_static: float | None = None,
        offset_dynamic: bool = True,
        transpose: bool = False,
        output_padding: int | Sequence[int] | None = None,
        asymmetry: float = 1.0e-3,
        dtype_weights: torch.dtype = torch.bfloat16,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        backend: str | None = None,
    ) -> None:
        super().__init__()
        self.backend = check_backend(backend)
        self._setup_geometry(
            in_channels,
            out_channels,
            context_length,
            kernel_size,
            stride,
            padding,
            padding_dynamic,
            dilation,
            transpose,
            output_padding,
            dtype if dtype is not None else dtype_weights,
            device,
        )
        self.n_subspaces = check_positive_int("n_subspaces", n_subspaces)
        self.rank_subspace = check_positive_int("rank_subspace", rank_subspace)
        self.rank_transformations = check_positive_int("rank_transformations", rank_transformations)
        self.bias_dynamic = bool(bias_dynamic)
        if bias_static is not None:
            bias_static = check_real("bias_static", bias_static)
        self.bias_static = bias_static
        if not isinstance(offset_dynamic, bool):
            raise TypeError(f"offset_dynamic must be a bool, got {type(offset_dynamic).__name__}")
        self.offset_dynamic = offset_dynamic
        self.asymmetry = check_real("asymmetry", asymmetry, minimum=0.0, strictly_greater=True)
        factory_kwargs: dict[str, Any] = {"device": device, "dtype": self.dtype_weights}

        if self.bias_static is not None:
            self.register_buffer("bias_static_buffer", torch.empty(1, **factory_kwargs))
        self.weights_lib = TensorComposerMobius(
            output_shape=self.dynamic_weights_shape,
            context_length=self.context_length,
            n_subspaces=self.n_subspaces,
            rank_subspace=self.rank_subspace,
            rank_transformations=self.rank_transformations,
            asymmetry=self.asymmetry,
            dtype_weights=self.dtype_weights,
            device=device,
            backend=self.backend,
        )

        def optional(flag: bool, shape: Sequence[int]) -> nn.Parameter | None:
            return nn.Parameter(torch.empty(*shape, **factory_kwargs)) if flag else None

        self.bias_dynamic_weights_lib = optional(
            self.bias_dynamic, [1, *self.dynamic_weights_shape]
        )
        self.bias_dynamic_conv = optional(self.bias_dynamic, [self.out_channels])
        self.padding_dynamic_value = optional(self.padding_dynamic, [1])
        self.offset_dynamic_value = optional(self.offset_dynamic, [1])
        self._reset_own_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise the composer, then the module's own parameters in the reference's order.

        ``bias_dynamic_weights_lib`` ~ U(-asymmetry, asymmetry), ``bias_dynamic_conv`` ~
        U(+-sqrt(1 / (C_in k0 k1))), ``padding_dynamic_value`` and ``offset_dynamic_value`` ~
        N(0, 1e-3^2); ``bias_static_buffer`` holds ``bias_static``. Also rebuilds the kernel
        index buffer (derived data, e.g. after ``to_empty()``).
        """
        self.weights_lib.reset_parameters()
        self._reset_own_parameters()
        self._reset_index()

    def _reset_own_parameters(self) -> None:
        with torch.no_grad():
            if self.bias_static is not None:
                self.bias_static_buffer.fill_(self.bias_static)
            if self.bias_dynamic_weights_lib is not None:
                nn.init.uniform_(self.bias_dynamic_weights_lib, -self.asymmetry, self.asymmetry)
            if self.bias_dynamic_conv is not None:
                bound = math.sqrt(1 / (self.in_channels * math.prod(self.kernel_size)))
                nn.init.uniform_(self.bias_dynamic_conv, -bound, bound)
            for value in (self.padding_dynamic_value, self.offset_dynamic_value):
                if value is not None:
                    nn.init.normal_(value, mean=0.0, std=1.0e-3)

    def _generate(self, context: torch.Tensor) -> torch.Tensor:
        generated = self.weights_lib(context)
        if self.bias_dynamic_weights_lib is not None:
            generated = generated + self.bias_dynamic_weights_lib
        return generated

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        self._check_inputs(x, context)
        offset = self.offset_dynamic_value
        if offset is not None:
            x = x + offset
        y = self._convolve(x, context, self.padding_dynamic_value, self.bias_dynamic_conv)
        if offset is not None:
            y = y - offset
        if self.bias_static is not None:
            y = y + self.bias_static_buffer
        return y

    def extra_repr(self) -> str:
        return (
            f"{self._geometry_repr()}, n_subspaces={self.n_subspaces}, "
            f"rank_subspace={self.rank_subspace}, "
            f"rank_transformations={self.rank_transformations}, asymmetry={self.asymmetry}, "
            f"bias_dynamic={self.bias_dynamic}, bias_static={self.bias_static}, "
            f"offset_dynamic={self.offset_dynamic}, {self._shape_repr()}"
        ) + (f", backend={self.backend!r}" if self.backend is not None else "")
