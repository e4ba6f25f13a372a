"""Dynamic 2-D convolution whose per-sample kernels come from a :class:`TensorComposerDelta`.

For an input x (B, C_in, H, W) and a context (B, Lc) or (1, Lc):

    y[b] = conv(pad(x[b], padding, value=p), K[b]),   K[b] = gather(TensorComposerDelta(context[b]))

where the padding region takes the learned value p (``padding_dynamic``) and ``conv`` is
``conv2d`` or, with ``transpose``, ``conv_transpose2d`` (padding applied to the input, as in the
reference). The composer generates an (Hd, Wd) matrix per sample; a fixed index maps its tiles
to the (C_out, C_in, k0, k1) kernels. The whole batch runs as one grouped convolution.

Matches the reference DyNA implementation (github.com/Sombressoul/dyna at 01c17ea): same
arguments, defaults (``context_use_bias=False``, unlike the composer), parameter names and
values. Deviations: valid indices for every kernel shape, the index as a non-persistent buffer,
kernels cast to the input's dtype, a 2-element padding accepted, deterministic eval.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dyna._validation import check_bool, check_real
from dyna.functional._backend import check_backend
from dyna.lib.tensor_composer_delta import TensorComposerDelta
from dyna.module._dynamic_conv import DynamicConv2DBase


class DynamicConv2DDelta(DynamicConv2DBase):
    """Conv2d (or transposed) layer with kernels generated per sample by a Delta composer.

    Args:
        in_channels: input channels C_in.
        out_channels: output channels C_out.
        context_length: size Lc of the context vector.
        context_use_bias: bias of the composer's context projection (default False).
        rank: passed to :class:`~dyna.lib.TensorComposerDelta`
            (stored as ``wl_rank``).
        initialization_std: passed to :class:`~dyna.lib.TensorComposerDelta`
            (stored as ``wl_initialization_std``).
        weights_repulsion_strength: passed to :class:`~dyna.lib.TensorComposerDelta`
            (stored as ``wl_weights_repulsion_strength``).
        weights_noise_strength: passed to :class:`~dyna.lib.TensorComposerDelta`
            (stored as ``wl_weights_noise_strength``).
        rank_noise_strength: passed to :class:`~dyna.lib.TensorComposerDelta`
            (stored as ``wl_rank_noise_strength``).
        similarity_penalty_strength: passed to :class:`~dyna.lib.TensorComposerDelta`
            (stored as ``wl_similarity_penalty_strength``).
        kernel_size: int or (k0, k1) (default (3, 3)).
        stride: int or two ints (default (1, 1)).
        padding: int, (horizontal, vertical) meaning (left = right, top = bottom), or
            (left, right, top, bottom) in ``F.pad`` order (default 0). Applied to the input,
            also for transposed convolutions.
        padding_dynamic: fill the padding with a learned value ``padding_dynamic_value``
            (default True; otherwise zeros).
        dilation: int or two ints (default (1, 1)).
        transpose: use a transposed convolution (default False).
        output_padding: int or two ints, required iff ``transpose`` (default None).
        eps: stored only; the composer uses its own default, as in the reference.
        dtype_weights: dtype of the parameters, one of ``dtypes`` (default bfloat16);
            ``dtype``, when given, replaces it.
        device: device of the parameters and the index buffer.
        dtype: see ``dtype_weights``.
        backend: ``None`` (default: Triton kernels for CUDA tensors), ``"torch"`` or
            ``"triton"``: passed to the :class:`~dyna.lib.TensorComposerDelta` (see
            :mod:`dyna.functional._backend`); the grouped convolution is cuDNN's either way.

    Parameters (state_dict): ``padding_dynamic_value`` (1,) (if ``padding_dynamic``) and the
    composer's under ``weights_lib.``. The kernel index ``dynamic_weights_index`` (Hd, Wd) is a
    non-persistent buffer.

    Shape:
        - x: (B, C_in, H, W), floating; context: (B, Lc) or (1, Lc), floating.
        - Output: (B, C_out, H', W') with the usual size for the padded input and no conv
          padding, in the dtype of the padded input (x promoted with the padding value).

    Example:
        >>> conv = DynamicConv2DDelta(2, 3, 5, rank=2, padding=1, dtype=torch.float32).eval()
        >>> conv(torch.randn(4, 2, 8, 8), torch.randn(4, 5)).shape
        torch.Size([4, 3, 8, 8])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        context_length: int,
        context_use_bias: bool = False,
        rank: int = 4,
        initialization_std: float = 1.0e-4,
        weights_repulsion_strength: float = 0.3,
        weights_noise_strength: float = 0.01,
        rank_noise_strength: float = 0.01,
        similarity_penalty_strength: float = 0.1,
        kernel_size: int | Sequence[int] = (3, 3),
        stride: int | Sequence[int] = (1, 1),
        padding: int | Sequence[int] = (0, 0, 0, 0),
        padding_dynamic: bool = True,
        dilation: int | Sequence[int] = (1, 1),
        transpose: bool = False,
        output_padding: int | Sequence[int] | None = None,
        eps: float = 1.0e-12,
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
        self.wl_context_length = self.context_length
        self.wl_context_use_bias = check_bool("context_use_bias", context_use_bias)
        self.wl_rank = rank
        self.wl_initialization_std = initialization_std
        self.wl_weights_repulsion_strength = weights_repulsion_strength
        self.wl_weights_noise_strength = weights_noise_strength
        self.wl_rank_noise_strength = rank_noise_strength
        self.wl_similarity_penalty_strength = similarity_penalty_strength
        self.eps = check_real("eps", eps)  # unused, as in the reference
        self.weights_lib = TensorComposerDelta(
            output_shape=self.dynamic_weights_shape,
            context_length=self.context_length,
            context_use_bias=context_use_bias,
            rank=rank,
            initialization_std=initialization_std,
            weights_repulsion_strength=weights_repulsion_strength,
            weights_noise_strength=weights_noise_strength,
            rank_noise_strength=rank_noise_strength,
            similarity_penalty_strength=similarity_penalty_strength,
            dtype_weights=self.dtype_weights,
            device=device,
            backend=self.backend,
        )
        if self.padding_dynamic:
            self.padding_dynamic_value = nn.Parameter(
                torch.empty(1, device=device, dtype=self.dtype_weights)
            )
        else:
            self.register_parameter("padding_dynamic_value", None)
        self._reset_own_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise the composer, then ``padding_dynamic_value`` ~ N(0, 1e-3^2).

        Also rebuilds the kernel index buffer (derived data, e.g. after ``to_empty()``).
        """
        self.weights_lib.reset_parameters()
        self._reset_own_parameters()
        self._reset_index()

    def _reset_own_parameters(self) -> None:
        if self.padding_dynamic_value is not None:
            nn.init.normal_(self.padding_dynamic_value, mean=0.0, std=1.0e-3)

    def _generate(self, context: torch.Tensor) -> torch.Tensor:
        return self.weights_lib(context)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        self._check_inputs(x, context)
        return self._convolve(x, context, self.padding_dynamic_value, None)

    def extra_repr(self) -> str:
        return (
            f"{self._geometry_repr()}, context_use_bias={self.wl_context_use_bias}, "
            f"rank={self.wl_rank}, initialization_std={self.wl_initialization_std}, "
            f"weights_repulsion_strength={self.wl_weights_repulsion_strength}, "
            f"weights_noise_strength={self.wl_weights_noise_strength}, "
            f"rank_noise_strength={self.wl_rank_noise_strength}, "
            f"similarity_penalty_strength={self.wl_similarity_penalty_strength}, "
            f"{self._shape_repr()}"
        ) + (f", backend={self.backend!r}" if self.backend is not None else "")
