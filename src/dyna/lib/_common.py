"""Argument checks and construction helpers shared by the composers and dynamic convolutions."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dyna._validation import check_floating_tensor, check_positive_int


def check_output_shape(value: object, *, min_numel: int = 1) -> list[int]:
    """Return ``output_shape`` as a list of two positive ints whose product is >= min_numel."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(
            f"output_shape must be a sequence of two positive ints, got {type(value).__name__}"
        )
    if len(value) != 2:
        raise ValueError(f"output_shape must have two elements (H, W), got {list(value)}")
    shape = [check_positive_int("output_shape", size) for size in value]
    if shape[0] * shape[1] < min_numel:
        raise ValueError(
            f"output_shape must have H * W >= {min_numel} (the std over one element is NaN), "
            f"got {shape}"
        )
    return shape


def check_context(x: object, context_length: int, name: str = "x") -> torch.Tensor:
    """Return ``x`` if it is a floating (B, context_length) tensor."""
    x = check_floating_tensor(name, x)
    if x.dim() != 2 or x.shape[1] != context_length:
        raise ValueError(
            f"{name} must have shape (B, context_length={context_length}), got {tuple(x.shape)}"
        )
    return x


def linear_without_init(
    in_features: int,
    out_features: int,
    bias: bool,
    *,
    device: torch.device | str | None,
    dtype: torch.dtype,
) -> torch.nn.Linear:
    """An ``nn.Linear`` allocated without running its initialisation.

    The owner calls ``reset_parameters()`` itself, so that the random draws happen once, in
    the reference's order (an ordinary ``nn.Linear`` would draw at construction as well).
    """
    layer = torch.nn.Linear(in_features, out_features, bias=bias, device="meta", dtype=dtype)
    return layer.to_empty(device=device if device is not None else torch.get_default_device())
