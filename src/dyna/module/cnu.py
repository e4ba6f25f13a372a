"""Layers whose weights are generated per input by Continual Neural Units: linear and 2-D conv.

Each layer is a :class:`dyna.lib.CNUs` bank whose memories are whole weight vectors (with a
bias column): the input selects its top-δ keys, and the layer applies the attention-weighted
blend of the matching memories,

    o_i = Σ_a α_ia · M[idx_ia] [x_i; 1].

``shared_keys=True`` (default) gives one bank for the layer (q = 1, a memory is a full weight
matrix); ``shared_keys=False`` makes every output neuron (or output channel) its own CNU with
its own keys (q = out). Matches unaiverse 0.1.31 (``unaiverse.modules.cnu.layers``:
``LinearCNU`` and ``Conv2d``): same state-dict names and shapes, same initialisation and order
of random draws, same outputs to rounding. ``LinearCNU`` blends in output space (no per-sample
weight matrices, see :func:`dyna.functional.cnu_linear`); ``Conv2dCNU`` convolves the whole
batch with per-sample filters in one grouped convolution.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dyna._validation import check_bool, check_floating_tensor, check_int_pair, check_positive_int
from dyna.functional.cnu import cnu_linear
from dyna.lib.cnu import CNUs

_RESERVED = {
    "q": "it is out_features or out_channels with unshared keys, else 1",
    "d": "set key_size instead",
    "m": "set key_mem_units instead",
    "u": "it follows from the layer's shape",
    "psi_fn": "it is an argument of the layer",
}


def _check_cnu_kwargs(cnu_kwargs: dict) -> None:
    for name, hint in _RESERVED.items():
        if name in cnu_kwargs:
            raise ValueError(f"{name} cannot be passed to a CNU layer: {hint}")


def _cnu_repr(cnu: CNUs) -> str:
    return CNUs.extra_repr(cnu)


class _CNULayer(CNUs):
    """The bank behind a CNU layer, sized from the layer's shape.

    With ``shared_keys`` one unit (q = 1) holds whole weight matrices, (out, per_row) flattened;
    otherwise every output neuron or channel is its own unit (q = out) holding one row. A row is
    the ``in_features`` input features plus the bias column when there is one. The layer calls
    :meth:`_set_bank_arguments` among its own argument checks, then this.
    """

    bias: bool
    shared_keys: bool
    key_mem_units: int

    def _set_bank_arguments(
        self, bias: object, shared_keys: object, key_mem_units: object, cnu_kwargs: dict
    ) -> None:
        """Check and keep the arguments that size the bank, the same for both layers.

        It sets plain attributes only, so it may run before ``nn.Module.__init__``.
        """
        self.bias = check_bool("bias", bias)
        self.shared_keys = check_bool("shared_keys", shared_keys)
        self.key_mem_units = check_positive_int("key_mem_units", key_mem_units)
        _check_cnu_kwargs(cnu_kwargs)

    def __init__(
        self,
        out: int,
        in_features: int,
        d: int,
        psi_fn: str,
        device: torch.device | str | None,
        dtype: torch.dtype | None,
        backend: str | None,
        cnu_kwargs: dict[str, Any],
    ) -> None:
        per_row = in_features + (1 if self.bias else 0)
        q, u = (1, out * per_row) if self.shared_keys else (out, per_row)
        super().__init__(
            q=q,
            d=d,
            m=self.key_mem_units,
            u=u,
            psi_fn=psi_fn,
            device=device,
            dtype=dtype,
            backend=backend,
            **cnu_kwargs,
        )


class LinearCNU(_CNULayer):
    """Fully connected layer whose weight matrix and bias are blended from CNU memories.

    Args:
        in_features: size of each input sample.
        out_features: size of each output sample.
        bias: every memory carries a bias (default True).
        shared_keys: one key bank for the layer, each memory a whole (out, in + 1) matrix
            (default True); False makes every output neuron its own CNU (q = out_features).
        key_mem_units: keys (= memories) per unit, m (default 2).
        psi_fn: ψ, ``"identity"`` (default), ``"sign"`` or ``"resize1d"``.
        key_size: key size d (default in_features; other sizes need ``"resize1d"``).
        device: device of the parameters and buffers.
        dtype: dtype of the floating parameters and buffers.
        backend: ``None`` (default), ``"torch"`` or ``"triton"``: where the output blend runs
            (the Triton gather-GEMM takes shared keys; see :func:`dyna.functional.cnu_linear`).
        **cnu_kwargs: the other :class:`~dyna.lib.CNUs` arguments: ``delta, gamma_alpha,
            tau_alpha, tau_mu, tau_eta, upd_m, upd_k, beta_k, scramble, debug``.

    Every memory is initialised like a fresh ``nn.Linear`` (weights and bias U(±1/√in)).
    Attributes ``M`` (q, m, u) with u = out·(in + bias) (shared) or in + bias (unshared),
    laid out row-major as (out, in [+ 1]); ``K``, ``mu``, ``eta``, ``scrambling_count`` as in
    :class:`~dyna.lib.CNUs`.

    Shape:
        - Input: (b, in_features) or (in_features,).
        - Output: (b, out_features) or (out_features,).

    Example:
        >>> layer = LinearCNU(6, 3, key_mem_units=4, delta=2)
        >>> layer(torch.randn(5, 6)).shape
        torch.Size([5, 3])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        shared_keys: bool = True,
        key_mem_units: int = 2,
        psi_fn: str = "identity",
        key_size: int | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        backend: str | None = None,
        **cnu_kwargs: Any,
    ) -> None:
        self.in_features = check_positive_int("in_features", in_features)
        self.out_features = check_positive_int("out_features", out_features)
        self._set_bank_arguments(bias, shared_keys, key_mem_units, cnu_kwargs)
        d = in_features if key_size is None else check_positive_int("key_size", key_size)
        if psi_fn in ("identity", "sign") and d != in_features:
            raise ValueError(
                f"key_size {d} differs from in_features {in_features}: psi_fn {psi_fn!r} keeps "
                "the input size; use psi_fn='resize1d'"
            )
        if psi_fn in ("resize2d", "resize2d_sign"):
            raise ValueError(
                f"psi_fn {psi_fn!r} needs 4-D input; LinearCNU takes 'identity', 'sign' or "
                "'resize1d'"
            )
        super().__init__(out_features, in_features, d, psi_fn, device, dtype, backend, cnu_kwargs)

    @torch.no_grad()
    def _reset_memories(self) -> None:
        # Memory by memory, as a fresh nn.Linear would be initialised, drawn on the CPU in
        # float32 in the reference's order (outer loop over units, inner over memories).
        rows = self.out_features if self.shared_keys else 1
        bound = 1.0 / math.sqrt(self.in_features)
        self.M.zero_()
        for unit in range(self.q):
            for memory in range(self.m):
                weight = torch.empty(rows, self.in_features, dtype=torch.float32)
                nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
                if self.bias:
                    bias = torch.empty(rows, dtype=torch.float32)
                    nn.init.uniform_(bias, -bound, bound)
                    weight = torch.cat([weight, bias.unsqueeze(1)], dim=1)
                self.M[unit, memory].copy_(weight.flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_floating_tensor("x", x)
        unbatched = x.dim() == 1
        if unbatched:
            x = x.unsqueeze(0)
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(
                f"x must have shape (b, {self.in_features}) or ({self.in_features},), got "
                f"{tuple(x.shape)}; flatten leading dimensions first"
            )
        attention = self.attention(x)
        out = cnu_linear(
            x,
            self.M,
            attention.indices,
            self.blend_weights(attention),
            bias=self.bias,
            wta=self.upd_m == "WTA",
            backend=self.backend,
        )
        return out.squeeze(0) if unbatched else out

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias}, "
            f"shared_keys={self.shared_keys}, key_mem_units={self.key_mem_units}, "
            + _cnu_repr(self)
        )


class Conv2dCNU(_CNULayer):
    """2-D convolution whose filters and biases are blended per sample from CNU memories.

    ψ sees the whole input map, so each sample matches the keys once and gets one filter bank,
    applied at every position. The batch is convolved in one grouped convolution
    (groups = b·groups), each sample with its own filters.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output.
        kernel_size: int or (kh, kw).
        stride: int or pair (default 1).
        padding: int, pair, ``"same"`` or ``"valid"`` (default 0).
        padding_mode: ``"zeros"`` (default), ``"reflect"``, ``"replicate"`` or ``"circular"``.
        dilation: int or pair (default 1).
        groups: blocked connections, dividing in_channels and out_channels (default 1).
        bias: every memory carries one bias per output channel (default True).
        shared_keys: one key bank for the layer (default True); False makes every output
            channel its own CNU (q = out_channels).
        key_mem_units: keys (= memories) per unit, m (default 2).
        psi_fn: ψ, ``"resize2d"`` (default), ``"resize2d_sign"``, or ``"identity"``/``"sign"``
            with key_size = c·h·w.
        key_size: key size d, an int or a shape whose product is taken (default
            25·in_channels, a 5×5 map per channel).
        device: device of the parameters and buffers.
        dtype: dtype of the floating parameters and buffers.
        backend: ``None`` (default), ``"torch"`` or ``"triton"``, stored for the kernels of
            the CNU core; the filters are blended and convolved by torch.
        **cnu_kwargs: the other :class:`~dyna.lib.CNUs` arguments: ``delta, gamma_alpha,
            tau_alpha, tau_mu, tau_eta, upd_m, upd_k, beta_k, scramble, debug``.

    Memories have u = out·(in_features + bias) (shared) or in_features + bias (unshared) with
    in_features = kh·kw·in_channels/groups, initialised U(±1/√u) as in the reference.

    Shape:
        - Input: (b, in_channels, h, w) or (in_channels, h, w).
        - Output: (b, out_channels, h', w') or (out_channels, h', w'), h' and w' as for
          ``nn.Conv2d``.

    Example:
        >>> conv = Conv2dCNU(3, 4, 3, padding=1, key_mem_units=3)
        >>> conv(torch.randn(2, 3, 10, 10)).shape
        torch.Size([2, 4, 10, 10])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        padding_mode: str = "zeros",
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        shared_keys: bool = True,
        key_mem_units: int = 2,
        psi_fn: str = "resize2d",
        key_size: int | tuple[int, ...] | list[int] | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        backend: str | None = None,
        **cnu_kwargs: Any,
    ) -> None:
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.out_channels = check_positive_int("out_channels", out_channels)
        self.kernel_size = check_int_pair("kernel_size", kernel_size)
        self.stride = check_int_pair("stride", stride)
        self.dilation = check_int_pair("dilation", dilation)
        self.groups = check_positive_int("groups", groups)
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"groups {groups} must divide in_channels {in_channels} and "
                f"out_channels {out_channels}"
            )
        if padding_mode not in ("zeros", "reflect", "replicate", "circular"):
            raise ValueError(
                "padding_mode must be 'zeros', 'reflect', 'replicate' or 'circular', "
                f"got {padding_mode!r}"
            )
        self.padding_mode = padding_mode
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(
                    f"padding must be an int, a pair, 'same' or 'valid', got {padding!r}"
                )
            if padding == "same" and padding_mode == "zeros" and self.stride != (1, 1):
                raise ValueError(
                    f"padding='same' needs stride 1 with padding_mode 'zeros', got stride "
                    f"{self.stride}"
                )
            self.padding: str | tuple[int, int] = padding
            # The F.pad amounts for the non-zero modes: per spatial dimension a total of
            # dilation·(k - 1), left half rounded down ('same'), nothing ('valid').
            pad = [0, 0, 0, 0]
            if padding == "same":
                for axis, position in ((1, 0), (0, 2)):
                    total = self.dilation[axis] * (self.kernel_size[axis] - 1)
                    pad[position], pad[position + 1] = total // 2, total - total // 2
        else:
            padding_pair = self.padding = check_int_pair("padding", padding, minimum=0)
            pad = [padding_pair[1], padding_pair[1], padding_pair[0], padding_pair[0]]
        self._pad = tuple(pad)
        self._set_bank_arguments(bias, shared_keys, key_mem_units, cnu_kwargs)
        if psi_fn == "resize1d":
            raise ValueError(
                "psi_fn 'resize1d' needs 2-D input; Conv2dCNU takes 'resize2d', "
                "'resize2d_sign', 'identity' or 'sign'"
            )
        if key_size is None:
            d = 25 * in_channels
        elif isinstance(key_size, (tuple, list)):
            sizes = [check_positive_int("key_size", size) for size in key_size]
            d = math.prod(sizes)
        else:
            d = check_positive_int("key_size", key_size)
        self.in_features = self.kernel_size[0] * self.kernel_size[1] * in_channels // groups
        super().__init__(
            out_channels, self.in_features, d, psi_fn, device, dtype, backend, cnu_kwargs
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_floating_tensor("x", x)
        unbatched = x.dim() == 3
        if unbatched:
            x = x.unsqueeze(0)
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"x must have shape (b, {self.in_channels}, h, w) or ({self.in_channels}, h, w), "
                f"got {tuple(x.shape)}"
            )
        b, c, h, w = x.shape
        # conv2d would fail deep inside torch; _pad is what any padding mode adds
        left, right, top, bottom = self._pad
        padded = (h + top + bottom, w + left + right)
        reach = [d * (k - 1) + 1 for d, k in zip(self.dilation, self.kernel_size, strict=True)]
        if padded[0] < reach[0] or padded[1] < reach[1]:
            raise ValueError(
                f"x is too small: its padded size {padded} is smaller than the dilated kernel "
                f"{tuple(reach)}"
            )
        weights = self.compute_weights(x).reshape(b, self.out_channels, -1)
        bias = None
        if self.bias:
            weights, bias = weights[:, :, :-1], weights[:, :, -1].reshape(-1)
        kh, kw = self.kernel_size
        filters = weights.reshape(b * self.out_channels, c // self.groups, kh, kw)
        # One grouped convolution for the whole batch: sample i's channels are groups
        # i·g .. i·g + g - 1, matched with its own block of filters.
        stacked = x.reshape(1, b * c, h, w)
        if self.padding_mode == "zeros":
            padding = self.padding
        else:
            stacked = F.pad(stacked, self._pad, mode=self.padding_mode)
            padding = (0, 0)
        out = F.conv2d(
            stacked, filters, bias, self.stride, padding, self.dilation, groups=b * self.groups
        )
        out = out.view(b, self.out_channels, out.shape[2], out.shape[3])
        return out.squeeze(0) if unbatched else out

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding!r}, "
            f"padding_mode={self.padding_mode!r}, dilation={self.dilation}, groups={self.groups}, "
            f"bias={self.bias}, shared_keys={self.shared_keys}, "
            f"key_mem_units={self.key_mem_units}, in_features={self.in_features}, "
            + _cnu_repr(self)
        )
