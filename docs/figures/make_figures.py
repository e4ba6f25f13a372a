"""Draw the figures of the documentation site into this folder.

Run from the repository root, with DyNA and matplotlib installed (the ``docs`` extra)::

    python docs/figures/make_figures.py

Every figure is drawn from fixed seeds on the CPU in float32, so running the script again gives
the same pictures. It writes

- ``horn_traces.png``: positions x(t) of HORN oscillators, free (released from a displacement)
  and driven (a HORN layer fed a burst of input, then left to ring);
- ``cnu_key_usage.png``: which memory of a ``LinearCNU`` wins, over an online MODES CI stream;
- ``dynamic_kernels.png``: the 5x5 kernels a ``DynamicConv2DDelta`` and a
  ``DynamicConv2DMobius`` generate for two different contexts.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

import dyna
from dyna.data import make_stream
from dyna.train.online import paper_cnu_hyperparameters

HERE = Path(__file__).resolve().parent
# No software version in the PNG metadata: the same script gives byte-identical files.
PNG_METADATA = {"Software": None}
DPI = 90


def _save(figure: plt.Figure, path: Path) -> None:
    figure.savefig(path, dpi=DPI, metadata=PNG_METADATA)
    plt.close(figure)
    print(f"wrote {path.name} ({path.stat().st_size / 1024:.0f} KB)")


def horn_traces(path: Path) -> None:
    """Free and driven HORN oscillators: the damped oscillation the network computes with."""
    steps = 300
    periods = torch.tensor([12.0, 20.0, 28.0, 40.0])
    dampings = torch.tensor([0.005, 0.01, 0.02, 0.04])
    free = dyna.HORNStep(4, omega=2 * math.pi / periods, gamma=dampings, dtype=torch.float32)
    # Released at x = 1 with no input: y' = y + h(-ω²x - 2γy), a damped linear oscillator.
    x, y = torch.ones(4), torch.zeros(4)
    free_positions = []
    with torch.no_grad():
        for _ in range(steps):
            x, y = free(torch.zeros(4), (x, y))
            free_positions.append(x)
    free_trace = torch.stack(free_positions)

    torch.manual_seed(0)
    # The original HORN's scaling (recurrent term over sqrt(n)): the network settles after the
    # input stops; the brainmass initialisation at this size keeps exciting itself instead.
    layer = dyna.HORNSeqLayer(1, 16, paper=True, dtype=torch.float32)
    time = torch.arange(steps, dtype=torch.float32)
    # A 60-step burst of a slow sine, then nothing: the units are driven, then ring down.
    burst = torch.where(time < 60, torch.sin(2 * math.pi * time / 30), torch.zeros(()))
    with torch.no_grad():
        driven_trace, _ = layer(burst.view(steps, 1, 1))
    driven_trace = driven_trace[:, 0, :4]

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(7.5, 4.6), sharex=True)
    for unit in range(4):
        top.plot(
            free_trace[:, unit],
            lw=1.0,
            label=f"T = {periods[unit]:.0f}, γ = {dampings[unit]:g}",
        )
    top.set_title("free: released from x = 1 (HORNStep, no input)", fontsize=10)
    top.set_ylabel("x(t)")
    top.legend(fontsize=7, ncol=2, loc="upper right", frameon=False)
    for unit in range(4):
        bottom.plot(driven_trace[:, unit], lw=1.0, label=f"unit {unit}")
    bottom.axvspan(0, 60, color="0.9", zorder=0)
    bottom.text(3, 0.02, "input burst", fontsize=8, transform=bottom.get_xaxis_transform())
    bottom.set_title(
        "driven: HORNSeqLayer(1, 16, paper=True), a sine burst then silence", fontsize=10
    )
    bottom.set_xlabel("time step t")
    bottom.set_ylabel("x(t)")
    bottom.legend(fontsize=7, ncol=4, loc="upper right", frameon=False)
    figure.tight_layout()
    _save(figure, path)


def cnu_key_usage(path: Path) -> None:
    """Which memory wins each step of an online MODES CI stream, with the paper's settings."""
    torch.manual_seed(1234)
    stream = make_stream("modes", "ci", seed=1234)
    settings = paper_cnu_hyperparameters("modes", "ci")
    # debug=True counts the pre-update winner of every call in the key_counter buffer.
    layer = dyna.LinearCNU(2, 4, **settings.layer_kwargs(), debug=True)
    optimizer = torch.optim.SGD(
        layer.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    memories = settings.key_mem_units
    winners = []
    previous = layer.key_counter.clone()
    for sample, label in zip(
        stream.train.inputs.unsqueeze(1).unbind(0),
        stream.train.targets.unsqueeze(1).unbind(0),
        strict=True,
    ):
        loss = F.cross_entropy(layer(sample), label)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        # One unit (shared keys), one sample: exactly one counter went up by one.
        winners.append(int((layer.key_counter - previous).argmax()))
        previous = layer.key_counter.clone()
    winners_tensor = torch.tensor(winners)
    steps = winners_tensor.numel()

    # Wins of each memory in windows of 25 steps, as a share of the window.
    window = 25
    usable = steps - steps % window
    shares = F.one_hot(winners_tensor[:usable], memories).float()
    shares = shares.view(-1, window, memories).mean(1).t()

    figure, axes = plt.subplots(figsize=(7.5, 3.2))
    image = axes.imshow(
        shares,
        aspect="auto",
        interpolation="nearest",
        cmap="Blues",
        vmin=0.0,
        vmax=1.0,
        extent=(0, usable, memories - 0.5, -0.5),
    )
    # Where the stream moves to its next distribution (class in CI order).
    boundaries = torch.nonzero(torch.diff(stream.train.distributions)).flatten() + 1
    for boundary in boundaries.tolist():
        axes.axvline(boundary, color="tab:red", lw=1.0, ls="--")
    axes.set_xlabel("online training step (one sample each)")
    axes.set_ylabel("memory (key) index")
    axes.set_yticks(range(memories))
    axes.set_title(
        f"LinearCNU(2, 4), m = {memories}, δ = {settings.delta}: share of wins per "
        f"{window} steps; dashed: next class",
        fontsize=10,
    )
    figure.colorbar(image, ax=axes, fraction=0.03, pad=0.02)
    figure.tight_layout()
    _save(figure, path)


def dynamic_kernels(path: Path) -> None:
    """The kernels of one dynamic convolution for two contexts, Delta and Mobius composers."""
    torch.manual_seed(0)
    kwargs = {"kernel_size": 5, "dtype": torch.float32}
    # A wider initial filter bank than the default 1e-4, whose kernels start almost flat: the
    # structure a trained layer has is visible at once.
    delta = dyna.DynamicConv2DDelta(1, 8, 16, initialization_std=0.1, **kwargs)
    mobius = dyna.DynamicConv2DMobius(1, 8, 16, **kwargs)
    contexts = torch.randn(2, 16)
    rows = []
    with torch.no_grad():
        for layer in (delta, mobius):
            kernels = layer.get_weights(contexts)  # (2, C_out = 8, C_in = 1, 5, 5)
            rows.extend(kernels[:, :, 0])
    names = ["Delta, context A", "Delta, context B", "Möbius, context A", "Möbius, context B"]
    names[:2] = [f"{name}\n(init. std 0.1)" for name in names[:2]]

    figure, axes = plt.subplots(4, 8, figsize=(7.5, 4.3))
    for row, (kernels, name) in enumerate(zip(rows, names, strict=True)):
        # One colour scale per layer (both contexts), symmetric around zero.
        limit = float(torch.stack(rows[2 * (row // 2) : 2 * (row // 2) + 2]).abs().max())
        for column in range(8):
            axis = axes[row, column]
            axis.imshow(kernels[column], cmap="RdBu_r", vmin=-limit, vmax=limit)
            axis.set_xticks([])
            axis.set_yticks([])
        axes[row, 0].set_ylabel(name, fontsize=8, rotation=0, ha="right", va="center")
    for column in range(8):
        axes[0, column].set_title(f"out {column}", fontsize=8)
    figure.suptitle("5×5 kernels generated per sample from a 16-dim context", fontsize=10)
    figure.tight_layout()
    _save(figure, path)


FIGURES = {
    "horn_traces.png": horn_traces,
    "cnu_key_usage.png": cnu_key_usage,
    "dynamic_kernels.png": dynamic_kernels,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write into")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)  # the same float results whatever the machine's core count
    for name, draw in FIGURES.items():
        draw(args.out / name)


if __name__ == "__main__":
    main()
