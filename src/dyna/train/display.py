"""What a user sees while training: a live progress bar per epoch and a summary table.

rich draws a progress bar per epoch (loss, accuracy, samples/s) when the output is a terminal;
otherwise, or with ``quiet``, each epoch prints one plain line. Only rank 0 prints.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:  # rich is imported when a live bar is drawn
    from rich.console import Console
    from rich.progress import Progress, TaskID


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


class TrainingDisplay:
    """Progress bars (rich, terminal only) and end-of-epoch lines for one run."""

    def __init__(
        self, *, enabled: bool = True, live: bool | None = None, file: TextIO | None = None
    ):
        self.enabled = enabled
        self.file = file if file is not None else sys.stdout
        self.live = enabled and (self.file.isatty() if live is None else live)
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._start = 0.0
        self._samples = 0

    def console(self) -> Console:
        from rich.console import Console

        return Console(file=self.file, highlight=False, soft_wrap=True)

    def start_epoch(self, epoch: int, epochs: int, total: int, done: int) -> None:
        self._start = time.perf_counter()
        self._samples = 0
        if not self.live:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        progress = Progress(
            TextColumn(f"epoch {epoch + 1}/{epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console(),
            transient=False,
        )
        progress.start()
        self._task = progress.add_task("train", total=total, completed=done, stats="")
        self._progress = progress

    def advance(
        self, batches: int, samples: int, loss: float | None, accuracy: float | None
    ) -> None:
        self._samples += samples
        if self._progress is None or self._task is None:
            return
        rate = self._samples / max(time.perf_counter() - self._start, 1e-9)
        stats = f"{rate:,.0f} samples/s"
        if loss is not None:
            stats = f"loss {loss:.4f}  acc {_percent(accuracy)} %  " + stats
        self._progress.update(self._task, advance=batches, stats=stats)

    def end_epoch(self, row: dict[str, Any], epochs: int) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if not self.enabled:
            return
        seconds = time.perf_counter() - self._start
        parts = [
            f"epoch {row['epoch']}/{epochs}",
            f"train loss {row['train_loss']:.4f}",
            f"train acc {_percent(row['train_accuracy'])} %",
        ]
        if row.get("val_accuracy") is not None:
            parts.append(f"val acc {_percent(row['val_accuracy'])} %")
        parts.append(f"test acc {_percent(row['test_accuracy'])} %")
        parts.append(f"{self._samples / max(seconds, 1e-9):,.0f} samples/s")
        parts.append(f"{seconds:.1f} s")
        print(" | ".join(parts), file=self.file, flush=True)

    def message(self, text: str) -> None:
        if self.enabled:
            print(text, file=self.file, flush=True)

    def summary(self, title: str, epochs: Sequence[dict[str, str]], footer: Sequence[str]) -> None:
        """The end-of-run table: one row per epoch, then the footer lines."""
        if not self.enabled:
            return
        from rich.table import Table

        table = Table(title=title)
        for name in ("epoch", "train loss", "train acc %", "val acc %", "test loss", "test acc %"):
            table.add_column(name, justify="right")

        def cell(row: dict[str, str], key: str, percent: bool = False) -> str:
            if not row.get(key):
                return "–"
            value = float(row[key])
            return f"{100 * value:.2f}" if percent else f"{value:.4f}"

        for row in epochs:
            table.add_row(
                row["epoch"],
                cell(row, "train_loss"),
                cell(row, "train_accuracy", True),
                cell(row, "val_accuracy", True),
                cell(row, "test_loss"),
                cell(row, "test_accuracy", True),
            )
        console = self.console()
        console.print(table)
        for line in footer:
            console.print(line)
