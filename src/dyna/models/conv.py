"""A small image classifier whose second convolution has kernels generated per image.

conv3x3(1 -> c1) -> ReLU -> [2x2 max-pool] -> dynamic conv3x3(c1 -> c2) -> ReLU -> global
average -> linear. The context that generates the dynamic kernels is a linear map (with tanh)
of the globally averaged first-layer features, so each image gets kernels derived from its own
content, the idea of DyNA's dynamic convolutions.

:class:`StaticConvClassifier` is the same network with an ordinary ``nn.Conv2d`` in place of
the dynamic convolution (and no context), the baseline of the comparison;
:func:`matched_static_channels` widens it to the parameter count of a dynamic one.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dyna._validation import (
    check_bool,
    check_choice,
    check_floating_dtype,
    check_floating_tensor,
    check_positive_int,
)
from dyna.module import DynamicConv2DDelta, DynamicConv2DMobius

KINDS = ("mobius", "delta")


def _check_channels(channels: object) -> tuple[int, int]:
    if not isinstance(channels, (tuple, list)) or len(channels) != 2:
        raise TypeError(f"channels must be a pair of ints, got {channels!r}")
    first, second = (check_positive_int("channels", c) for c in channels)
    return first, second


def _check_image(input: object, in_channels: int, dtype: torch.dtype, pool: bool) -> None:
    """Raise unless ``input`` is a (B, in_channels, H, W) image batch of ``dtype`` the net takes."""
    image = check_floating_tensor("input", input)
    smallest = 2 if pool else 1
    if (
        image.dim() != 4
        or image.shape[1] != in_channels
        or image.shape[2] < smallest
        or image.shape[3] < smallest
    ):
        raise ValueError(
            f"input must be (B, C, H, W) with C={in_channels} and H, W >= {smallest}"
            f"{' (the 2x2 max-pool)' if pool else ''}, got shape {tuple(image.shape)}"
        )
    if image.dtype != dtype:
        raise TypeError(f"input must have the model's dtype {dtype}, got {image.dtype}")


def _first_stage(
    input: torch.Tensor, conv: nn.Conv2d, dtype: torch.dtype, pool: bool
) -> torch.Tensor:
    """Both classifiers' shared start: check the image, conv3x3 -> ReLU -> [2x2 max-pool]."""
    _check_image(input, conv.in_channels, dtype, pool)
    features = F.relu(conv(input))
    return F.max_pool2d(features, 2) if pool else features


class _TwoConvClassifier(nn.Module):
    """What both classifiers share: their arguments, the first convolution and the readout.

    conv3x3(in_channels -> c1) -> ReLU -> [2x2 max-pool] -> :meth:`_second_conv` (c1 -> c2, the
    subclass's) -> ReLU -> global average -> linear(c2 -> n_output). A subclass checks its own
    arguments, then registers ``conv``, its second convolution and ``readout`` in that order
    (the order of the random draws of the initialisation and of the state dict).
    """

    conv: nn.Conv2d
    readout: nn.Linear
    # The attributes extra_repr shows, in order.
    _hyper_parameters: tuple[str, ...] = ("in_channels", "n_output", "channels", "pool")

    def __init__(
        self,
        in_channels: int,
        n_output: int,
        channels: tuple[int, int],
        pool: bool,
        dtype: torch.dtype | None,
    ) -> None:
        super().__init__()
        # nn.Conv2d would fail deep inside on an integer or complex parameter.
        check_floating_dtype("dtype", dtype)
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.n_output = check_positive_int("n_output", n_output)
        self.channels = _check_channels(channels)
        self.pool = check_bool("pool", pool)

    def _second_conv(self, features: torch.Tensor) -> torch.Tensor:
        """(B, c1, H', W') first-stage features -> (B, c2, H', W'), before the ReLU."""
        raise NotImplementedError

    def reset_parameters(self) -> None:
        """Re-initialise every part with its own default initialisation, in registration order."""
        for part in self.children():
            # Every part is a torch layer with its own reset_parameters.
            part.reset_parameters()  # type: ignore[operator]

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        features = _first_stage(input, self.conv, self.readout.weight.dtype, self.pool)
        features = F.relu(self._second_conv(features))
        return self.readout(features.mean(dim=(2, 3)))

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={getattr(self, name)!r}" for name in self._hyper_parameters)


class DynamicConvClassifier(_TwoConvClassifier):
    """Static convolution, then a dynamic one (Möbius or Delta composer), then a linear readout.

    Args:
        in_channels: image channels (default 1).
        n_output: classes (default 10).
        channels: (c1, c2) feature maps of the static and the dynamic convolution
            (default (16, 32)).
        context_length: size of the context vector that generates the kernels (default 16).
        kind: ``"mobius"`` (default) or ``"delta"``: the composer of the dynamic convolution.
        pool: 2x2 max-pool after the first convolution (default True; off for 8x8 images
            keeps the resolution).
        device: factory argument: where the parameters live.
        dtype: factory argument: the parameters' floating dtype (default the global default;
            the dynamic convolution's weights use it too, instead of their own bfloat16
            default).

    Shape:
        - input: (B, in_channels, H, W).
        - Output: logits (B, n_output).

    Example:
        >>> model = DynamicConvClassifier(channels=(4, 8), context_length=4)
        >>> model(torch.rand(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """

    _hyper_parameters = ("in_channels", "n_output", "channels", "context_length", "kind", "pool")

    def __init__(
        self,
        in_channels: int = 1,
        n_output: int = 10,
        channels: tuple[int, int] = (16, 32),
        context_length: int = 16,
        kind: str = "mobius",
        pool: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(in_channels, n_output, channels, pool, dtype)
        factory_kwargs: dict[str, Any] = {"device": device, "dtype": dtype}
        self.context_length = check_positive_int("context_length", context_length)
        self.kind = check_choice("kind", kind, KINDS)
        first, second = self.channels
        weight_dtype = dtype if dtype is not None else torch.get_default_dtype()
        self.conv = nn.Conv2d(self.in_channels, first, 3, padding=1, **factory_kwargs)
        self.context = nn.Linear(first, self.context_length, **factory_kwargs)
        dynamic = DynamicConv2DMobius if self.kind == "mobius" else DynamicConv2DDelta
        self.dynamic_conv = dynamic(
            first, second, self.context_length, padding=1, device=device, dtype=weight_dtype
        )
        self.readout = nn.Linear(second, self.n_output, **factory_kwargs)
        self.reset_parameters()

    def _second_conv(self, features: torch.Tensor) -> torch.Tensor:
        context = torch.tanh(self.context(features.mean(dim=(2, 3))))
        return self.dynamic_conv(features, context)


class StaticConvClassifier(_TwoConvClassifier):
    """:class:`DynamicConvClassifier` with a static second convolution: the baseline.

    conv3x3(in_channels -> c1) -> ReLU -> [2x2 max-pool] -> conv3x3(c1 -> c2) -> ReLU ->
    global average -> linear. With the same ``channels`` it has the dynamic network's shape and
    convolution FLOPs; :func:`matched_static_channels` gives the channels that match a dynamic
    network's parameter count instead.

    Args:
        in_channels: image channels (default 1).
        n_output: classes (default 10).
        channels: (c1, c2) feature maps of the two convolutions (default (16, 32)).
        pool: 2x2 max-pool after the first convolution (default True).
        device: factory argument: where the parameters live.
        dtype: factory argument: the parameters' floating dtype.

    Shape:
        - input: (B, in_channels, H, W).
        - Output: logits (B, n_output).

    Example:
        >>> model = StaticConvClassifier(channels=(4, 8), pool=False)
        >>> model(torch.rand(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_output: int = 10,
        channels: tuple[int, int] = (16, 32),
        pool: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(in_channels, n_output, channels, pool, dtype)
        factory_kwargs: dict[str, Any] = {"device": device, "dtype": dtype}
        first, second = self.channels
        self.conv = nn.Conv2d(self.in_channels, first, 3, padding=1, **factory_kwargs)
        self.static_conv = nn.Conv2d(first, second, 3, padding=1, **factory_kwargs)
        self.readout = nn.Linear(second, self.n_output, **factory_kwargs)
        self.reset_parameters()

    def _second_conv(self, features: torch.Tensor) -> torch.Tensor:
        return self.static_conv(features)


def static_parameter_count(in_channels: int, n_output: int, channels: tuple[int, int]) -> int:
    """Parameters of a :class:`StaticConvClassifier` (the pool has none), in closed form.

    Example:
        >>> static_parameter_count(1, 10, (8, 16))
        1418
    """
    first, second = _check_channels(channels)
    in_channels = check_positive_int("in_channels", in_channels)
    n_output = check_positive_int("n_output", n_output)
    return (9 * in_channels + 1) * first + (9 * first + 1) * second + (second + 1) * n_output


def matched_static_channels(
    target: int, in_channels: int, n_output: int, channels: tuple[int, int]
) -> tuple[int, int]:
    """The widest-fitting static channels: scale ``channels`` keeping their ratio c2 / c1.

    Returns the (c1, round(c1 * c2 / c1)) with c1 >= 1 whose parameter count is closest to
    ``target`` (ties: the smaller network), so a static network can be compared with a dynamic
    one of ``target`` parameters at equal size. The count grows with c1, so the search stops
    once it passes ``target``.

    Example:
        >>> matched_static_channels(38036, 1, 10, (8, 16))
        (45, 90)
    """
    target = check_positive_int("target", target)
    first, second = _check_channels(channels)
    ratio = second / first
    best: tuple[int, tuple[int, int]] | None = None
    width = 1
    while True:
        candidate = (width, max(1, round(width * ratio)))
        count = static_parameter_count(in_channels, n_output, candidate)
        if best is None or abs(count - target) < best[0]:
            best = (abs(count - target), candidate)
        if count >= target:
            return best[1]
        width += 1
