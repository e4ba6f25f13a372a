"""Argument checks shared by every sub-package, with one exception policy.

Every public entry point validates its arguments with these helpers so that bad input fails
early, naming the argument and what was expected, instead of an assertion or an error from deep
inside torch:

- ``TypeError`` when the argument has the wrong type (a float where an int is needed, a bool
  where a number is needed, an integer tensor or dtype where a floating one is needed);
- ``ValueError`` when the type is right but the value is not (out of range, not finite, the
  wrong shape, an unknown choice).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real
from typing import Literal, cast, overload

import torch


def check_floating_tensor(name: str, value: object, *, min_dim: int = 0) -> torch.Tensor:
    """Return ``value`` if it is a floating-point tensor with at least ``min_dim`` dimensions."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must have a floating-point dtype, got {value.dtype}")
    if value.dim() < min_dim:
        raise ValueError(
            f"{name} must have at least {min_dim} dimension(s), got shape {tuple(value.shape)}"
        )
    return value


def check_real(
    name: str,
    value: object,
    *,
    minimum: float | None = None,
    strictly_greater: bool = False,
    finite: bool = True,
) -> float:
    """Return ``value`` as a float if it is a real number (not a bool) within the bounds."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    number = float(value)
    if finite and not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {number}")
    if minimum is not None:
        if strictly_greater and not number > minimum:
            raise ValueError(f"{name} must be > {minimum}, got {number}")
        if not strictly_greater and not number >= minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {number}")
    return number


def check_bool(name: str, value: object) -> bool:
    """Return ``value`` if it is a bool."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def check_int(name: str, value: object, *, minimum: int | None = None) -> int:
    """Return ``value`` as an int if it is an integer (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` if it is an int (not a bool) >= 1."""
    return check_int(name, value, minimum=1)


@overload
def check_floating_dtype(
    name: str, value: object, *, optional: Literal[True] = True
) -> torch.dtype | None: ...


@overload
def check_floating_dtype(name: str, value: object, *, optional: Literal[False]) -> torch.dtype: ...


def check_floating_dtype(name: str, value: object, *, optional: bool = True) -> torch.dtype | None:
    """Return ``value`` if it is a floating-point ``torch.dtype`` (or None when ``optional``).

    None stands for torch's default dtype; the caller resolves it where it allocates.
    """
    if value is None and optional:
        return None
    if not (isinstance(value, torch.dtype) and value.is_floating_point):
        expected = "a floating torch.dtype or None" if optional else "a floating torch.dtype"
        raise TypeError(f"{name} must be {expected}, got {value!r}")
    return value


def check_int_pair(name: str, value: object, *, minimum: int = 1) -> tuple[int, int]:
    """Return ``value`` as two ints >= ``minimum``: an int ``v`` stands for ``(v, v)``.

    A pair is any sequence of two ints other than a string (a tuple, a list, a ``torch.Size``).
    """
    expected = f"an int >= {minimum} or a pair of them"
    if isinstance(value, Integral) and not isinstance(value, bool):
        values: Sequence[object] = (value, value)
    elif isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        values = value
    else:
        raise TypeError(f"{name} must be {expected}, got {value!r}")
    if any(isinstance(v, bool) or not isinstance(v, Integral) for v in values):
        raise TypeError(f"{name} must be {expected}, got {value!r}")
    if len(values) != 2:
        raise ValueError(f"{name} must be {expected}, got {len(values)} values: {value!r}")
    first, second = (int(cast(Integral, v)) for v in values)
    if first < minimum or second < minimum:
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return first, second


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    """Return ``value`` lower-cased if it names one of ``choices`` (case-insensitive)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, one of {list(choices)}, got {type(value).__name__}")
    lowered = value.lower()
    if lowered not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return lowered
