"""In-memory splits shared by the data sets: a (inputs, labels) pair and its errors."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from dyna._validation import check_int


class DataError(ValueError):
    """A data set is missing or malformed; the message names the file and the fix."""


def check_path(name: str, value: object) -> Path:
    """Return ``value`` as a Path if it is a str or os.PathLike."""
    # Path(None) or Path(3) fails with a TypeError that does not say which argument was wrong.
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike, got {type(value).__name__}")
    return Path(value)


@dataclass(frozen=True)
class Split:
    """Inputs and integer labels of one split, held in memory as tensors.

    Args:
        inputs: one row per sample, (N, ...).
        labels: integer class of each sample, (N,).

    Raises:
        TypeError: either is not a tensor, or ``labels`` is not of an integer dtype.
        ValueError: ``labels`` is not one-dimensional or ``inputs`` has not N rows.
    """

    inputs: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        # A split whose inputs and labels disagree in length would otherwise be cut silently
        # by the first loop that zips them.
        for name, value in (("inputs", self.inputs), ("labels", self.labels)):
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        if self.labels.is_floating_point() or self.labels.is_complex():
            raise TypeError(f"labels must have an integer dtype, got {self.labels.dtype}")
        if self.labels.dim() != 1:
            raise ValueError(f"labels must be (N,), got shape {tuple(self.labels.shape)}")
        if self.inputs.dim() == 0 or self.inputs.shape[0] != self.labels.shape[0]:
            raise ValueError(
                f"inputs must be (N, ...) with N = {self.labels.shape[0]} rows like labels, "
                f"got shape {tuple(self.inputs.shape)}"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: torch.Tensor) -> Split:
        """The samples at ``indices``, in that order."""
        return Split(self.inputs[indices], self.labels[indices])


def holdout(split: Split, count: int, seed: int) -> tuple[Split, Split]:
    """Split off ``count`` random samples (seeded): returns (rest, held_out), each in index order.

    The paper's sMNIST recipe holds out 1,000 training images for validation this way.
    """
    count = check_int("count", count, minimum=0)
    seed = check_int("seed", seed, minimum=0)
    if count >= len(split):
        raise ValueError(
            f"count must be smaller than the split's {len(split)} samples, got {count}"
        )
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))
    held_out = order[:count].sort().values
    rest = order[count:].sort().values
    return split.subset(rest), split.subset(held_out)
