"""In-memory splits shared by the data sets: a (inputs, labels) pair and its errors."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dyna.functional._checks import check_int


class DataError(ValueError):
    """A data set is missing or malformed; the message names the file and the fix."""


@dataclass(frozen=True)
class Split:
    """Inputs and integer labels of one split, held in memory as tensors."""

    inputs: torch.Tensor
    labels: torch.Tensor

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
