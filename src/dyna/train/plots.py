"""PNG plots of a run: learning curves, HORN x(t) traces, continual confusion matrices.

matplotlib with the non-interactive Agg backend, imported only when a plot is drawn
(:func:`pyplot`; every plot of the package and of the reproductions loads it there).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend; ImportError naming the fix without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "plots need matplotlib: pip install matplotlib (a development dependency)"
        ) from error
    return plt


def _floats(rows: Sequence[dict[str, str]], column: str) -> list[float]:
    return [float(row[column]) if row.get(column) else float("nan") for row in rows]


def plot_learning_curves(
    steps: Sequence[dict[str, str]], epochs: Sequence[dict[str, str]], path: str | Path
) -> Path:
    """Loss per logged step (and per epoch) and accuracy per epoch, side by side."""
    plt = pyplot()
    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(10, 4))
    if steps:
        loss_axes.plot(
            _floats(steps, "step"), _floats(steps, "loss"), lw=0.8, alpha=0.6, label="train (step)"
        )
    if epochs:
        epoch_steps = _floats(epochs, "step")
        for split in ("train", "val", "test"):
            losses = _floats(epochs, f"{split}_loss")
            if any(value == value for value in losses):
                loss_axes.plot(epoch_steps, losses, marker="o", label=f"{split} (epoch)")
            accuracies = _floats(epochs, f"{split}_accuracy")
            if any(value == value for value in accuracies):
                accuracy_axes.plot(
                    _floats(epochs, "epoch"),
                    [100 * value for value in accuracies],
                    marker="o",
                    label=split,
                )
    loss_axes.set(xlabel="step", ylabel="cross-entropy", title="loss")
    accuracy_axes.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for axes in (loss_axes, accuracy_axes):
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend()
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot_traces(positions: torch.Tensor, path: str | Path, title: str = "") -> Path:
    """x(t) of a few oscillators for one input: ``positions`` is (T, units)."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(8, 4))
    values = positions.detach().float().cpu()
    for unit in range(values.shape[1]):
        axes.plot(values[:, unit].tolist(), lw=1.0, label=f"unit {unit}")
    axes.set(xlabel="step t", ylabel="x(t)", title=title or "HORN oscillator positions")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small", ncol=2)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot_continual_matrices(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """The first seed's continual confusion matrix of every model, side by side.

    ``rows`` are an online run's result rows: each has ``"model"``, ``"average_accuracy"`` and
    ``"runs"``, whose first entry holds the (T, T) ``"matrix"`` as nested lists.
    """
    plt = pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axes = plt.subplots(1, len(rows), figsize=(3.2 * len(rows), 3.2), squeeze=False)
    for ax, row in zip(axes[0], rows, strict=True):
        ax.imshow(row["runs"][0]["matrix"], vmin=0, vmax=1, cmap="viridis")
        ax.set(
            title=f"{row['model']}: ACC {100 * row['average_accuracy']:.1f} %",
            xlabel="distribution",
            ylabel="after distribution",
        )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
