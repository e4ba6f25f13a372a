"""The 8x8 handwritten digits that ship inside scikit-learn's wheel, as tensors.

1,797 images of 8x8 pixels with 17 grey levels (0..16), 10 classes (the UCI optical
recognition of handwritten digits test set, as bundled by scikit-learn in
``sklearn/datasets/data/digits.csv.gz``). The file is read directly (scikit-learn itself is not
imported, which would cost about a second); pixels are scaled to [0, 1] by dividing by 16.

The split is stratified and seeded: within each class the samples are shuffled by a generator
seeded with ``seed`` and the first ``round(test_fraction * count)`` go to the test set, so every
class keeps its share in both splits and the split is the same on every machine.
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import torch

from dyna._validation import check_int, check_real
from dyna.data.split import DataError, Split, check_path

NUM_CLASSES = 10
IMAGE_SIZE = 8
NUM_SAMPLES = 1797


def digits_csv_path() -> Path:
    """Where the installed scikit-learn keeps ``digits.csv.gz`` (without importing it)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "the digits data set needs scikit-learn's data files: "
            "install it with `pip install scikit-learn`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    path = path / "digits.csv.gz"
    if not path.is_file():
        raise DataError(f"{path} is missing: reinstall scikit-learn (`pip install scikit-learn`)")
    return path


def load_digits_tensors(path: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits: images (N, 8, 8) float32 in [0, 1] and labels (N,) int64.

    Args:
        path: the ``digits.csv.gz`` to read (default: the one in the installed scikit-learn).
    """
    path = digits_csv_path() if path is None else check_path("path", path)
    try:
        with gzip.open(path, "rt") as handle:
            rows = [line.split(",") for line in handle.read().splitlines() if line.strip()]
        values = torch.tensor([[float(cell) for cell in row] for row in rows])
    except (OSError, EOFError, ValueError) as error:
        raise DataError(
            f"{path} is not a readable digits file ({error}): reinstall scikit-learn"
        ) from None
    if values.dim() != 2 or values.shape[1] != IMAGE_SIZE * IMAGE_SIZE + 1:
        raise DataError(
            f"{path} must have 65 columns (64 pixels and a label), got shape "
            f"{tuple(values.shape)}: reinstall scikit-learn"
        )
    images = (values[:, :-1] / 16.0).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
    labels = values[:, -1].long()
    return images.contiguous(), labels


def _check_fraction_and_seed(test_fraction: object, seed: object) -> tuple[float, int]:
    test_fraction = check_real("test_fraction", test_fraction, minimum=0.0)
    if not test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    return test_fraction, check_int("seed", seed, minimum=0)


def stratified_split(
    labels: torch.Tensor, test_fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, test) of a seeded split that keeps each class's share in both parts.

    Each part is sorted by sample index, so the split does not depend on class order.
    """
    test_fraction, seed = _check_fraction_and_seed(test_fraction, seed)
    generator = torch.Generator().manual_seed(seed)
    train, test = [], []
    for label in torch.unique(labels).tolist():
        members = torch.nonzero(labels == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        count = round(test_fraction * len(members))
        test.append(members[:count])
        train.append(members[count:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


def load_digits_split(test_fraction: float = 0.2, seed: int = 0) -> tuple[Split, Split]:
    """The digits as (train, test) :class:`Split` objects of images (N, 8, 8) and labels.

    Args:
        test_fraction: share of each class held out for testing (default 0.2: 1,438 / 359).
        seed: seed of the stratified split (default 0).
    """
    # Checked before reading the file, so that a bad argument fails at once.
    test_fraction, seed = _check_fraction_and_seed(test_fraction, seed)
    images, labels = load_digits_tensors()
    train, test = stratified_split(labels, test_fraction, seed)
    return Split(images[train], labels[train]), Split(images[test], labels[test])
