"""A tiny MNIST folder of random 28x28 images written in the standard IDX format.

For tests that run the sequential-MNIST experiments end to end in seconds without the real
data set: the files have the real names, magic numbers and shapes.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import torch

from dyna.data.mnist import FILES


def idx_bytes(values: torch.Tensor) -> bytes:
    """``values`` as an unsigned-byte IDX file: magic 0x801 (1-D) or 0x803 (3-D), big-endian."""
    magic = 0x00000801 if values.dim() == 1 else 0x00000803
    header = struct.pack(f">I{values.dim()}I", magic, *values.shape)
    return header + values.to(torch.uint8).contiguous().numpy().tobytes()


def write_mnist_folder(
    folder: Path,
    n_train: int = 96,
    n_test: int = 48,
    *,
    gz: bool = False,
    test_size: int = 28,
) -> Path:
    """Write ``n_train``/``n_test`` random images with labels 0..9 in turn; returns ``folder``.

    ``gz`` writes every file gzipped, with the ``.gz`` suffix; ``test_size`` makes the test
    images ``test_size`` x ``test_size`` pixels instead of MNIST's 28 x 28.
    """
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    for split, count in (("train", n_train), ("test", n_test)):
        size = test_size if split == "test" else 28
        images = torch.randint(0, 256, (count, size, size), generator=generator)
        labels = torch.arange(count) % 10
        for name, values in zip(FILES[split], (images, labels), strict=True):
            data = idx_bytes(values)
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)
    return folder
