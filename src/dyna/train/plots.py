"""PNG plots of a run: learning curves from the metrics files and HORN x(t) traces.

matplotlib with the non-interactive Agg backend, imported only when a plot is drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _floats(rows: Sequence[dict[str, str]], column: str) -> list[float]:
    return [float(row[column]) if row.get(column) else float("nan") for row in rows]


def plot_learning_curves(
    steps: Sequence[dict[str, str]], epochs: Sequence[dict[str, str]], path: str | Path
) -> Path:
    """Loss per logged step (and per epoch) and accuracy per epoch, side by side."""
    plt = _pyplot()
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
    plt = _pyplot()
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
