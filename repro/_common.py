"""What the reproductions share: training through the engine, run facts, mean ± std, files, tables.

- :func:`train`: one ``dyna train`` run, in this process, through the engine's one entry point
  :func:`dyna.train.run` (each reproduction records the equivalent ``dyna train`` command).
- :func:`machine_facts`: torch, Python and the machine, for the results' metadata.
- :func:`mean_and_std` and :func:`format_mean_std`: the summary over seeds and its text.
- :func:`write_text_atomic`, :func:`write_json_atomic`: results files that a killed run never
  leaves half written.
- :func:`markdown_table`: the tables of the results page.
- :func:`pyplot`: matplotlib on the Agg backend, for the plots.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from dyna.experiments import get_experiment
from dyna.train import RunOptions, run
from dyna.train.allocator import retain_freed_memory
from dyna.train.checkpoint import write_bytes_atomic, write_json_atomic
from dyna.train.metrics import mean_and_std
from dyna.train.plots import pyplot

__all__ = [
    "format_mean_std",
    "machine_facts",
    "markdown_table",
    "mean_and_std",
    "own_process",
    "pyplot",
    "train",
    "write_json_atomic",
    "write_text_atomic",
]


def own_process() -> None:
    """Set up this process as the ``dyna`` command sets up its own (the allocator setting).

    A reproduction owns its process: large per-step temporaries are then reused from the heap
    instead of being faulted in from the kernel on every step, as under ``dyna train``.
    """
    retain_freed_memory()


def train(
    experiment: str,
    out: str | Path,
    *,
    assignments: Mapping[str, str] | None = None,
    training: Mapping[str, Any] | None = None,
    data: str | Path | None = None,
) -> dict[str, Any]:
    """``dyna train EXPERIMENT --set K=V ... --out OUT --overwrite --quiet``, in this process.

    Args:
        experiment: the registered experiment's name.
        out: the run folder (a run already there is replaced).
        assignments: the ``--set`` texts, key -> value text.
        training: training options by name (``{"seed": 1, "threads": 1}``).
        data: the data folder (``--data``).

    Returns:
        The run's summary.
    """
    declared = get_experiment(experiment)
    options = RunOptions(
        training=dict(training or {}),
        data=None if data is None else str(data),
        overwrite=True,
        quiet=True,
    )
    return run(declared, declared.parse_assignments(assignments or {}), out, options)


def machine_facts() -> dict[str, str]:
    """torch's and Python's versions and the machine, as the results files record them."""
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
    }


def format_mean_std(mean: float, std: float | None, digits: int) -> str:
    """``"mean ± std"`` with ``digits`` decimals, or the mean alone when ``std`` is None.

    Example:
        >>> format_mean_std(91.234, 0.5, 1), format_mean_std(91.234, None, 2)
        ('91.2 ± 0.5', '91.23')
    """
    text = f"{mean:.{digits}f}"
    return text if std is None else f"{text} ± {std:.{digits}f}"


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically: a temporary file renamed over it."""
    write_bytes_atomic(Path(path), text.encode("utf-8"))


def markdown_table(
    header: Sequence[str],
    rows: Iterable[Sequence[str]],
    alignments: Sequence[str] | None = None,
) -> str:
    """A Markdown table: the header, its rule (``---``, or ``---:`` for a right-aligned
    column from ``alignments``, one ``"l"``/``"r"`` per column) and one line per row.

    Example:
        >>> print(markdown_table(["a", "b"], [["1", "2"]], "lr"))
        | a | b |
        |---|---:|
        | 1 | 2 |
    """
    rule = "".join("|---:" if align == "r" else "|---" for align in alignments or "l" * len(header))
    lines = ["| " + " | ".join(header) + " |", rule + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)
