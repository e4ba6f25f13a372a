"""glibc ``malloc`` settings for a training process: keep freed large blocks for reuse.

A training step allocates and frees the same large temporaries every time. Under glibc's
defaults, blocks above a dynamic threshold (128 KiB at start, raised to at most 32 MiB) are
mapped from the kernel one by one (always, above 32 MiB), and the top of the heap is handed
back whenever more than twice that threshold is free there. A step whose temporaries add up to
hundreds of megabytes then gets much of its memory from the kernel again, page by zero-filled
page, on every step: a ``DynamicConv2DDelta`` step at the benchmark's shape (batch 32,
64 -> 64 channels, 32x32, 3x3) takes about 64,000 minor page faults and a third of its time in
them. With the block threshold fixed at 128 MiB and the trim threshold at 1 GiB, the heap keeps
what a step freed and the next step reuses it: no faults once the heap has grown to the step's
peak.

The ``dyna`` command applies this at start-up (it owns its process); a library never changes
its host's allocator behind its back, so importing :mod:`dyna` does not. Programs that want it
call :func:`retain_freed_memory` once, early.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

#: ``mallopt`` parameter numbers (glibc's ``malloc.h``).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

#: Blocks up to this size come from the heap; some glibc versions cap it at 32 MiB, which is
#: then used instead.
MMAP_THRESHOLD = 128 * 1024 * 1024
_MMAP_THRESHOLD_CAPPED = 32 * 1024 * 1024
#: Free memory at the top of the heap is returned to the system only above this size.
TRIM_THRESHOLD = 1024 * 1024 * 1024

_VARIABLES = (
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_MMAP_MAX_",
    "MALLOC_TOP_PAD_",
)
_TUNABLES = ("mmap_threshold", "trim_threshold", "mmap_max", "top_pad")

_applied = False


def allocator_configured_by_user(environ: dict[str, str] | None = None) -> bool:
    """Whether the environment already sets what :func:`retain_freed_memory` would set.

    True when one of glibc's variables for the block and trim thresholds
    (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_MMAP_MAX_``,
    ``MALLOC_TOP_PAD_``) or the matching ``glibc.malloc`` tunables are set, or when
    ``LD_PRELOAD`` loads a library (typically another allocator, such as jemalloc or tcmalloc).
    """
    environ = dict(os.environ) if environ is None else environ
    if environ.get("LD_PRELOAD", "").strip():
        return True
    tunables = environ.get("GLIBC_TUNABLES", "")
    if any(f"glibc.malloc.{name}" in tunables for name in _TUNABLES):
        return True
    return any(name in environ for name in _VARIABLES)


def _libc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    name = ctypes.util.find_library("c")
    return None if name is None else ctypes.CDLL(name)


def retain_freed_memory() -> bool:
    """Keep freed large blocks in the process's heap for reuse (glibc on Linux only).

    Sets glibc's block threshold (``M_MMAP_THRESHOLD``) to 128 MiB (32 MiB where glibc refuses
    more) and its trim threshold (``M_TRIM_THRESHOLD``) to 1 GiB with ``mallopt``. The cost is
    memory the process keeps after a peak, up to 1 GiB beyond what it uses, instead of returning
    it to the system.

    Does nothing, and returns False, on other systems and C libraries, or when the environment
    configures the allocator itself (see :func:`allocator_configured_by_user`). Calling it again
    changes nothing.

    Returns:
        True when the settings are in force in this process.
    """
    global _applied
    if _applied:
        return True
    if allocator_configured_by_user():
        return False
    libc = _libc()
    if libc is None:
        return False
    threshold_set = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) or libc.mallopt(
        _M_MMAP_THRESHOLD, _MMAP_THRESHOLD_CAPPED
    )
    applied = bool(threshold_set) and bool(libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    _applied = applied
    return applied


def freed_memory_retained() -> bool:
    """Whether :func:`retain_freed_memory` has put its settings in force in this process."""
    return _applied


def allocator_setting() -> str:
    """The allocator setting in force, for the headers of timing tables."""
    return "freed memory retained" if _applied else "default malloc"


__all__ = [
    "MMAP_THRESHOLD",
    "TRIM_THRESHOLD",
    "allocator_configured_by_user",
    "allocator_setting",
    "freed_memory_retained",
    "retain_freed_memory",
]
