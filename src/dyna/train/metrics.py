"""Metrics files: one CSV row per logged step and per epoch, truncatable for exact resume.

Also :func:`mean_and_std`, the one summary over seeds that runners and reports share.

The files hold only values that a rerun reproduces exactly (no wall-clock times), written with
``repr`` of Python floats, so a resumed run's files equal an uninterrupted run's byte for byte.
:meth:`CSVLog.size` is recorded in each checkpoint; on resume :meth:`CSVLog.truncate` cuts the
file back to it, dropping the rows logged after the checkpoint.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

STEP_COLUMNS = ("step", "epoch", "batch", "samples", "loss", "accuracy", "lr")
EPOCH_COLUMNS = (
    "epoch",
    "step",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "test_loss",
    "test_accuracy",
)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


class CSVLog:
    """An append-only CSV file with a fixed header."""

    def __init__(self, path: str | Path, columns: Sequence[str]) -> None:
        self.path = Path(path)
        self.columns = tuple(columns)

    def start(self) -> None:
        """Create the file with its header (a new run)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("w", newline="") as handle:
            handle.write(",".join(self.columns) + "\n")

    def append(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        for row in rows:
            writer.writerow([_cell(row.get(column)) for column in self.columns])
        with self.path.open("a", newline="") as handle:
            handle.write(buffer.getvalue())
            handle.flush()
            os.fsync(handle.fileno())

    def size(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def truncate(self, size: int) -> None:
        """Cut the file back to ``size`` bytes (the size recorded by a checkpoint)."""
        if not self.path.exists() or self.path.stat().st_size < size:
            raise FileNotFoundError(
                f"metrics file {self.path} is missing or shorter than its checkpoint records"
            )
        with self.path.open("r+b") as handle:
            handle.truncate(size)

    def read(self) -> list[dict[str, str]]:
        if not self.path.exists():
            return []
        with self.path.open(newline="") as handle:
            return list(csv.DictReader(handle))


def mean_and_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation of ``values`` (None for a single value).

    Example:
        >>> mean_and_std([1.0, 2.0, 3.0])
        (2.0, 1.0)
        >>> mean_and_std([0.5])
        (0.5, None)
    """
    if len(values) == 0:
        raise ValueError("values must not be empty")
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((value - mean) ** 2 for value in values) / (len(values) - 1))
