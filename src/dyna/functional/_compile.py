"""Helpers that keep the functional core ``torch.compile``-friendly without slowing its import."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

Result = TypeVar("Result")


def constant_result(function: Callable[[], Result]) -> Callable[[], Result]:
    """Mark ``function`` as returning a constant for ``torch.compile``.

    Dynamo cannot read attributes of an ``autograd.Function`` class while tracing, so the class
    defaults (``SigLog.eps`` and friends) are read through such functions, which the compiler
    calls once at trace time. This sets the marker that ``torch.compiler.assume_constant_result``
    sets; calling that instead would import ``torch._dynamo`` (about a second) on ``import dyna``.
    ``tests/functional/test_compile.py`` checks that the marker still works.
    """
    function._dynamo_marked_constant = True  # type: ignore[attr-defined]
    return function
