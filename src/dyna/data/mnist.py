"""A reader for a standard MNIST folder: the four IDX files, gzipped or not.

IDX (LeCun's format) is big-endian: a magic number ``0x0000TTDD`` whose third byte ``TT`` is
the type code (0x08 unsigned byte, 0x09 signed byte, 0x0B 16-bit, 0x0C 32-bit integer, 0x0D
float32, 0x0E float64) and whose fourth byte ``DD`` is the number of dimensions, then the size
of each dimension as a 32-bit integer, then the values. MNIST uses ``0x00000801`` (unsigned
bytes, one dimension: labels) and ``0x00000803`` (unsigned bytes, three dimensions: images);
:func:`read_idx` reads every type code, :func:`load_mnist` insists on those two. The folder holds
``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
``t10k-labels-idx1-ubyte``, each optionally with a ``.gz`` suffix. Every check fails with a
:class:`~dyna.data.split.DataError` naming the file and how to fix it.
"""

from __future__ import annotations

import gzip
import math
import struct
import sys
import zlib
from pathlib import Path

import torch

from dyna._validation import check_int
from dyna.data.split import DataError, Split, check_path

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# IDX type code (third byte of the magic number) -> the tensor dtype it holds.
IDX_DTYPES = {
    0x08: torch.uint8,
    0x09: torch.int8,
    0x0B: torch.int16,
    0x0C: torch.int32,
    0x0D: torch.float32,
    0x0E: torch.float64,
}
# MNIST's images are 28x28; what the experiments read and what load_mnist insists on by default.
IMAGE_SHAPE = (28, 28)
_FIX = "point --data at a folder with the four standard MNIST IDX files (gzipped or not)"


def find_idx_file(folder: str | Path, name: str) -> Path:
    """The path of IDX file ``name`` in ``folder``, plain or ``.gz`` (plain preferred)."""
    folder = check_path("folder", folder)
    if not folder.is_dir():
        raise DataError(f"MNIST folder {folder} does not exist or is not a folder: {_FIX}")
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(f"MNIST file {name}[.gz] is missing from {folder}: {_FIX}")


def read_idx(path: str | Path) -> torch.Tensor:
    """Read one IDX file (``.gz`` is decompressed) into a tensor of its shape and type.

    Args:
        path: the file; a ``.gz`` suffix means gzip-compressed.

    Returns:
        A tensor of the header's shape whose dtype follows the type code: uint8, int8, int16,
        int32, float32 or float64 (the big-endian values converted to the machine's order).

    Raises:
        TypeError: ``path`` is not a str or os.PathLike.
        DataError: the file cannot be read, its magic number is not an IDX one (two zero bytes,
            a known type code, at least one dimension), or its size does not match its header.
    """
    path = check_path("path", path)
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"cannot read MNIST file {path} ({error}): {_FIX}") from None
    if len(raw) < 4:
        raise DataError(f"MNIST file {path} is truncated (no IDX header): {_FIX}")
    (magic,) = struct.unpack(">I", raw[:4])
    type_code, dims = raw[2], raw[3]
    if raw[:2] != b"\x00\x00" or type_code not in IDX_DTYPES or dims == 0:
        raise DataError(
            f"MNIST file {path} has magic number {magic:#010x}, expected 0x00000801 (labels) "
            f"or 0x00000803 (images), or another IDX magic number 0x0000TTDD with a type code "
            f"TT in 08, 09, 0B, 0C, 0D, 0E and DD >= 1 dimensions: is it an IDX file? {_FIX}"
        )
    dtype = IDX_DTYPES[type_code]
    header = 4 + 4 * dims
    if len(raw) < header:
        raise DataError(f"MNIST file {path} is truncated inside its header: {_FIX}")
    shape = struct.unpack(f">{dims}I", raw[4:header])
    itemsize = dtype.itemsize
    expected = header + math.prod(shape) * itemsize
    if len(raw) != expected:
        # A header whose sizes promise far more (or less) than the file holds is most often
        # another file under an IDX name, not a damaged IDX file: say both.
        raise DataError(
            f"MNIST file {path} is not an IDX file of the kind its header says: it holds "
            f"{len(raw)} bytes, but magic {magic:#010x} with sizes {shape} needs {expected} "
            f"(another kind of file, or truncated or corrupt): {_FIX}"
        )
    if expected == header:
        return torch.empty(shape, dtype=dtype)
    # bytearray: frombuffer needs a writable buffer to hand out a tensor that owns its data.
    values = torch.frombuffer(bytearray(raw[header:]), dtype=torch.uint8)
    if itemsize > 1 and sys.byteorder == "little":
        # IDX is big-endian: reverse the bytes of each value before reinterpreting them.
        values = values.view(-1, itemsize).flip(-1).contiguous()
    return values.view(dtype).reshape(shape)


def load_mnist_split(folder: str | Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, H, W) uint8 and labels (N,) int64 of ``split`` (``"train"`` or ``"test"``)."""
    if split not in FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    image_name, label_name = FILES[split]
    image_path = find_idx_file(folder, image_name)
    label_path = find_idx_file(folder, label_name)
    images = read_idx(image_path)
    labels = read_idx(label_path)
    for path, values in ((image_path, images), (label_path, labels)):
        if values.dtype != torch.uint8:
            raise DataError(
                f"MNIST file {path} must hold unsigned bytes (IDX type 0x08), got {values.dtype}: "
                f"{_FIX}"
            )
    if images.dim() != 3:
        raise DataError(f"MNIST file {image_path} must hold images (3 dimensions): {_FIX}")
    if labels.dim() != 1:
        raise DataError(f"MNIST file {label_path} must hold labels (1 dimension): {_FIX}")
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"MNIST files {image_path.name} and {label_path.name} disagree: "
            f"{images.shape[0]} images but {labels.shape[0]} labels: {_FIX}"
        )
    if labels.numel() and int(labels.max()) > 9:
        raise DataError(f"MNIST file {label_path} has labels above 9: {_FIX}")
    return images, labels.long()


def load_mnist(
    folder: str | Path,
    *,
    image_shape: tuple[int, int] = IMAGE_SHAPE,
    min_train: int = 0,
    min_test: int = 0,
) -> tuple[Split, Split]:
    """(train, test) :class:`Split` objects: images (N, 28, 28) float32 in [0, 1], labels.

    Pixels are divided by 255 (no mean/std normalisation, the sMNIST recipe).

    Args:
        folder: the folder of the four IDX files.
        image_shape: the (height, width) every image must have (default MNIST's 28x28).
        min_train: the fewest training images the caller can use (default 0).
        min_test: the fewest test images the caller can use (default 0).

    Raises:
        DataError: a file is missing or malformed, holds images of another shape, or too few.
    """
    if not isinstance(image_shape, (tuple, list)) or len(image_shape) != 2:
        raise TypeError(f"image_shape must be a (height, width) pair, got {image_shape!r}")
    image_shape = (
        check_int("image_shape[0]", image_shape[0], minimum=1),
        check_int("image_shape[1]", image_shape[1], minimum=1),
    )
    minimums = {
        "train": check_int("min_train", min_train, minimum=0),
        "test": check_int("min_test", min_test, minimum=0),
    }
    splits = []
    for split in ("train", "test"):
        images, labels = load_mnist_split(folder, split)
        image_path = find_idx_file(folder, FILES[split][0])
        if tuple(images.shape[1:]) != image_shape:
            height, width = images.shape[1:]
            raise DataError(
                f"MNIST file {image_path} holds {height}x{width} images, expected "
                f"{image_shape[0]}x{image_shape[1]}: {_FIX}"
            )
        if len(labels) < minimums[split]:
            raise DataError(
                f"MNIST file {image_path} holds {len(labels)} {split} images, this experiment "
                f"needs at least {minimums[split]}: {_FIX}"
            )
        splits.append(Split(images.float().div_(255.0), labels))
    return splits[0], splits[1]
