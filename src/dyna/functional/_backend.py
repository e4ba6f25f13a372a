"""Choosing between the torch path and a Triton kernel: the ``backend=`` argument.

Every op with a Triton kernel takes ``backend=None | "torch" | "triton"``:

- ``None`` runs the kernel for CUDA tensors in float32/bfloat16/float16 when ``triton`` imports,
  and the torch path otherwise;
- ``"torch"`` always runs the torch path;
- ``"triton"`` forces the kernel. It needs ``triton`` installed and CUDA tensors, or CPU tensors
  with ``TRITON_INTERPRET=1`` set before the kernel module is first imported (the CI runs the
  kernels this way). float64 still runs the torch path: the kernels accumulate in float32.

A case the kernel cannot take falls back to the torch path and logs why at debug level on the
``dyna.backend`` logger; it is never silently wrong.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os

import torch

logger = logging.getLogger("dyna.backend")

BACKENDS = ("torch", "triton")
_KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


# Looked up once on import, without importing triton: a plain constant for torch.compile (a
# functools.cache wrapper draws a warning from every traced call).
_TRITON_FOUND = importlib.util.find_spec("triton") is not None


def triton_available() -> bool:
    """Whether the ``triton`` package can be imported (checked once, without importing it)."""
    return _TRITON_FOUND


def triton_interpreting() -> bool:
    """Whether ``TRITON_INTERPRET=1`` asks Triton to run kernels on the CPU, in Python."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def check_backend(backend: object) -> str | None:
    """Return ``backend`` if it is None, ``"torch"`` or ``"triton"``; raise otherwise."""
    if backend is None:
        return None
    if not isinstance(backend, str):
        raise TypeError(f"backend must be None, 'torch' or 'triton', got {type(backend).__name__}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be None, 'torch' or 'triton', got {backend!r}")
    return backend


def use_triton(op: str, backend: str | None, tensor: torch.Tensor) -> bool:
    """Decide whether ``op`` runs its Triton kernel on inputs like ``tensor``.

    ``backend`` must already have passed :func:`check_backend`. Raises ``RuntimeError`` when the
    kernel is forced but cannot run at all here (no ``triton``, or CPU tensors without the
    interpreter); returns False, logging why, where the torch path must take the case.
    """
    if backend == "torch":
        return False
    if backend is None:
        if tensor.device.type != "cuda" or not triton_available():
            return False
    elif not triton_available():
        raise RuntimeError(
            f"{op}: backend='triton' needs the triton package (pip install 'dyna[triton]')"
        )
    elif tensor.device.type != "cuda" and not triton_interpreting():
        raise RuntimeError(
            f"{op}: backend='triton' needs CUDA tensors, or TRITON_INTERPRET=1 for CPU tensors; "
            f"got a tensor on {tensor.device}"
        )
    if tensor.dtype not in _KERNEL_DTYPES:
        logger.debug(
            "%s: %s runs on the torch path (the kernel accumulates in float32)", op, tensor.dtype
        )
        return False
    return True


@functools.cache
def prepare_interpreter() -> None:
    """Let Triton's interpreter take loop bounds from kernel arguments under NumPy >= 2.3.

    The interpreter holds a scalar as a one-element array and converts it with ``int(array)``
    when it is used as an index (``range(n)`` in a kernel), which NumPy 2.3 made an error
    ("only 0-dimensional arrays can be converted to Python scalars"). It installs its tensor
    methods afresh at every launch, so the conversion is fixed where they are installed.
    Kernel modules call this on import; it does nothing unless ``TRITON_INTERPRET`` is set.
    """
    if not triton_interpreting():
        return
    from triton.runtime import interpreter

    install = interpreter._patch_lang_tensor

    def install_with_scalar_index(tensor: type) -> None:
        install(tensor)
        tensor.__index__ = lambda self: int(self.handle.data.item())  # type: ignore[attr-defined]

    interpreter._patch_lang_tensor = install_with_scalar_index


def dot_precision(dtype: torch.dtype = torch.float32) -> str:
    """``tl.dot``'s input precision: float32 products in full precision unless the user allowed
    TF32 for matmuls (``torch.backends.cuda.matmul.allow_tf32``), as torch's own matmuls do."""
    if dtype == torch.float32 and not torch.backends.cuda.matmul.allow_tf32:
        return "ieee"
    return "tf32"
