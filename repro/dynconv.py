"""Dynamic against static convolution: train every variant through the engine, save the numbers.

Each run is one ``dynconv-digits`` or ``dynconv-mnist`` run (in this process, single-threaded,
through :func:`dyna.train.run`) into its own run folder, recorded as the equivalent
``dyna train`` command; this module times it, reads the run folder's ``summary.json`` and
``metrics/epochs.csv`` and collects every run, with its command, in one JSON file that
:func:`render` turns into a table and a plot.

The variants (``--models``), all :mod:`dyna.experiments.images` networks with the experiment's
channels:

- ``static``: the network with an ``nn.Conv2d`` in place of the dynamic convolution, the same
  shape and convolution FLOPs (``--set conv=static``);
- ``static-delta`` and ``static-mobius``: the static network widened to the parameter count of
  the Delta or Möbius one (``--set conv=static --set match=delta``, ``match=mobius``);
- ``delta`` and ``mobius``: the dynamic convolution with that composer (``--set conv=...``).

Usage, from the repository root::

    python -m repro.dynconv --datasets digits --json docs/results/dynconv.json
    python -m repro.dynconv --datasets mnist --data DIR --mnist-epochs 3 \\
        --json docs/results/dynconv.json --append

``--append`` keeps the runs already in the file and skips them, so a long protocol can be run
in parts.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from repro._common import (
    format_mean_std,
    machine_facts,
    markdown_table,
    mean_and_std,
    own_process,
    pyplot,
    train,
    write_text_atomic,
)

DATASETS = {"digits": "dynconv-digits", "mnist": "dynconv-mnist"}
# Variant name -> the --set values that select it.
MODELS: dict[str, tuple[str, ...]] = {
    "static": ("conv=static",),
    "static-delta": ("conv=static", "match=delta"),
    "static-mobius": ("conv=static", "match=mobius"),
    "delta": ("conv=delta",),
    "mobius": ("conv=mobius",),
}
SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class Run:
    """One finished ``dyna train`` run.

    Attributes:
        dataset: a key of :data:`DATASETS`.
        model: a key of :data:`MODELS`.
        seed: the ``--seed`` (initialisation and batch order).
        command: the ``dyna train`` command, as it can be pasted (run folder included).
        epochs: passes over the training split.
        parameters: trainable parameters of the model.
        test_accuracy: accuracy on the test split after the last epoch, in [0, 1].
        test_accuracy_per_epoch: the test accuracy after each epoch.
        wall_seconds: wall time of the whole call (data, model, every epoch with its test
            evaluation and checkpoint, final files).
        cpu_seconds: CPU time of this process during the call.
    """

    dataset: str
    model: str
    seed: int
    command: str
    epochs: int
    parameters: int
    test_accuracy: float
    test_accuracy_per_epoch: tuple[float, ...]
    wall_seconds: float
    cpu_seconds: float


@dataclass(frozen=True)
class Settings:
    """One run's settings: what :func:`train_arguments` writes and :func:`train_one` runs."""

    experiment: str
    training: dict[str, Any]
    data: str | None
    assignments: tuple[tuple[str, str], ...]


def run_settings(
    dataset: str,
    model: str,
    seed: int,
    *,
    data: str | Path | None = None,
    epochs: int | None = None,
    train_samples: int = 0,
) -> Settings:
    """The settings of one run (``epochs`` None: the experiment's default)."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {dataset!r}")
    if model not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {model!r}")
    training: dict[str, Any] = {"seed": seed, "threads": 1}
    if epochs is not None:
        training["epochs"] = epochs
    assignments = []
    if dataset == "mnist":
        if data is None:
            raise ValueError("data must name the MNIST folder for dataset 'mnist', got None")
        # Checkpoints at epoch ends only: the mid-epoch ones cost time and are not needed.
        training["checkpoint_every"] = 0
        if train_samples:
            assignments.append(("train_samples", str(train_samples)))
    for assignment in MODELS[model]:
        key, _, value = assignment.partition("=")
        assignments.append((key, value))
    return Settings(
        DATASETS[dataset],
        training,
        None if data is None or dataset != "mnist" else str(data),
        tuple(assignments),
    )


def train_arguments(
    dataset: str,
    model: str,
    seed: int,
    out: str | Path,
    *,
    data: str | Path | None = None,
    epochs: int | None = None,
    train_samples: int = 0,
) -> list[str]:
    """The ``dyna train`` arguments that do what :func:`train_one` does for this run."""
    settings = run_settings(
        dataset, model, seed, data=data, epochs=epochs, train_samples=train_samples
    )
    training = settings.training
    arguments = ["train", settings.experiment, "--seed", str(seed), "--threads", "1"]
    if "epochs" in training:
        arguments += ["--epochs", str(training["epochs"])]
    if settings.data is not None:
        arguments += ["--data", settings.data, "--checkpoint-every", "0"]
    for key, value in settings.assignments:
        arguments += ["--set", f"{key}={value}"]
    return [*arguments, "--out", str(out), "--overwrite", "--quiet"]


def read_run(out: str | Path) -> tuple[int, float, list[float]]:
    """Parameters, final test accuracy and per-epoch test accuracies of a run folder."""
    out = Path(out)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    with open(out / "metrics" / "epochs.csv", newline="", encoding="utf-8") as handle:
        curve = [float(row["test_accuracy"]) for row in csv.DictReader(handle)]
    return int(summary["parameters"]), float(summary["final_test_accuracy"]), curve


def train_one(
    dataset: str,
    model: str,
    seed: int,
    runs: str | Path,
    *,
    data: str | Path | None = None,
    epochs: int | None = None,
    train_samples: int = 0,
) -> Run:
    """Train one variant into ``RUNS/DATASET/MODEL/seed-S`` through the engine, in this process."""
    out = Path(runs) / dataset / model / f"seed-{seed}"
    arguments = train_arguments(
        dataset, model, seed, out, data=data, epochs=epochs, train_samples=train_samples
    )
    settings = run_settings(
        dataset, model, seed, data=data, epochs=epochs, train_samples=train_samples
    )
    wall, cpu = time.perf_counter(), time.process_time()
    train(
        settings.experiment,
        out,
        assignments=dict(settings.assignments),
        training=settings.training,
        data=settings.data,
    )
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    parameters, accuracy, curve = read_run(out)
    return Run(
        dataset=dataset,
        model=model,
        seed=seed,
        command=shlex.join(["dyna", *arguments]),
        epochs=len(curve),
        parameters=parameters,
        test_accuracy=accuracy,
        test_accuracy_per_epoch=tuple(curve),
        wall_seconds=wall,
        cpu_seconds=cpu,
    )


def save(path: str | Path, runs: Sequence[Run], metadata: dict[str, Any]) -> None:
    """Write the runs and the metadata as JSON (rewritten atomically after every run: nothing
    is lost, and a killed run leaves the previous file)."""
    payload = {"metadata": metadata, "runs": [asdict(run) for run in runs]}
    write_text_atomic(path, json.dumps(payload, indent=1) + "\n")


def load(path: str | Path) -> tuple[list[Run], dict[str, Any]]:
    """Read a file written by :func:`save`: the runs and the metadata."""
    payload = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(payload, dict) or "runs" not in payload:
        raise ValueError(f"path must be a results file written by repro.dynconv, got {path!r}")
    runs = [
        Run(**{**run, "test_accuracy_per_epoch": tuple(run["test_accuracy_per_epoch"])})
        for run in payload["runs"]
    ]
    return runs, payload.get("metadata", {})


# How each variant's row is described in the table.
DESCRIPTIONS = {
    "static": "nn.Conv2d, same channels (same conv FLOPs)",
    "static-delta": "nn.Conv2d, widened to the Delta network's parameters",
    "static-mobius": "nn.Conv2d, widened to the Möbius network's parameters",
    "delta": "DynamicConv2DDelta",
    "mobius": "DynamicConv2DMobius",
}
DATASET_NAMES = {"digits": "digits 8x8", "mnist": "MNIST-10k"}


@dataclass(frozen=True)
class Cell:
    """The runs of one (data set, model) over its seeds, summarised."""

    dataset: str
    model: str
    runs: tuple[Run, ...]

    @property
    def accuracy(self) -> tuple[float, float | None]:
        """Mean and sample standard deviation (None for one seed) of the final test accuracy."""
        return mean_and_std([run.test_accuracy for run in self.runs])

    @property
    def curve(self) -> list[float]:
        """Mean test accuracy after each epoch, over the seeds."""
        curves = torch.tensor(
            [run.test_accuracy_per_epoch for run in self.runs], dtype=torch.float64
        )
        return curves.mean(dim=0).tolist()

    def per_epoch(self, clock: str) -> float:
        """Mean seconds per epoch over the seeds, ``clock`` being ``"wall"`` or ``"cpu"``."""
        seconds = [getattr(run, f"{clock}_seconds") / run.epochs for run in self.runs]
        return sum(seconds) / len(seconds)


def cells(runs: Sequence[Run]) -> list[Cell]:
    """Group runs by (data set, model), in the order of :data:`DATASETS` and :data:`MODELS`."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.dataset, run.model), []).append(run)
    order = [(dataset, model) for dataset in DATASETS for model in MODELS]
    return [
        Cell(dataset, model, tuple(sorted(groups[key], key=lambda run: run.seed)))
        for dataset, model in order
        if (key := (dataset, model)) in groups
    ]


def format_table(runs: Sequence[Run]) -> str:
    """A Markdown table: one row per (data set, model), accuracy mean ± std over the seeds.

    Example:
        >>> run = Run("digits", "delta", 0, "dyna train ...", 2, 38036, 0.9, (0.5, 0.9), 4.0, 3.0)
        >>> print(format_table([run]).splitlines()[2])
        | digits 8x8 | delta | DynamicConv2DDelta | 38,036 | 0 | 2 | 90.00 | 2.00 | 1.50 |
    """
    header = [
        "data", "model", "second convolution", "parameters", "seeds", "epochs",
        "test accuracy (%)", "s / epoch (wall)", "s / epoch (CPU)",
    ]  # fmt: skip
    rows = []
    for cell in cells(runs):
        mean, spread = cell.accuracy
        parameters = sorted({run.parameters for run in cell.runs})
        epochs = sorted({run.epochs for run in cell.runs})
        rows.append(
            [
                DATASET_NAMES[cell.dataset],
                cell.model,
                DESCRIPTIONS[cell.model],
                ", ".join(f"{count:,}" for count in parameters),
                ", ".join(str(run.seed) for run in cell.runs),
                ", ".join(map(str, epochs)),
                format_mean_std(100 * mean, None if spread is None else 100 * spread, 2),
                f"{cell.per_epoch('wall'):.2f}",
                f"{cell.per_epoch('cpu'):.2f}",
            ]
        )
    return markdown_table(header, rows, "lllrlrrrr")


def command_pattern(run: Run) -> str:
    """The run's command with its seed written ``S`` (the same for every seed of a cell).

    Example:
        >>> command = "dyna train x --seed 2 --out r/seed-2"
        >>> command_pattern(Run("digits", "delta", 2, command, 1, 1, 0, (0,), 1, 1))
        'dyna train x --seed S --out r/seed-S'
    """
    return run.command.replace(f"--seed {run.seed}", "--seed S").replace(
        f"seed-{run.seed}", "seed-S"
    )


def plot_curves(runs: Sequence[Run], path: str | Path) -> None:
    """Test accuracy after each epoch, mean over the seeds, one panel per data set (PNG)."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    groups = cells(runs)
    datasets = list(dict.fromkeys(cell.dataset for cell in groups))
    figure, axes = plt.subplots(
        1, len(datasets), figsize=(4.6 * len(datasets), 3.2), dpi=80, squeeze=False
    )
    for axis, dataset in zip(axes[0], datasets, strict=True):
        for cell in (cell for cell in groups if cell.dataset == dataset):
            curve = [100 * value for value in cell.curve]
            # Dashed: static; one colour per model in every panel.
            style = "-" if cell.model in ("delta", "mobius") else "--"
            color = f"C{list(MODELS).index(cell.model)}"
            axis.plot(
                range(1, len(curve) + 1), curve, style, marker=".", color=color, label=cell.model
            )
        seeds = sorted({len(cell.runs) for cell in groups if cell.dataset == dataset})
        plural = "" if seeds == [1] else "s"
        axis.set_title(
            f"{DATASET_NAMES[dataset]} (mean of {'/'.join(map(str, seeds))} seed{plural})",
            fontsize=10,
        )
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_xlabel("epoch", fontsize=9)
        axis.set_ylabel("test accuracy (%)", fontsize=9)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def render(json_path: Path, figures_dir: Path, figures_prefix: str) -> str:
    """The results-page block: commands, compute, the table and (saved beside) the plot."""
    runs, metadata = load(json_path)
    if not runs:
        raise ValueError(f"json_path holds no runs: {json_path}")
    commands = " and ".join(f"`{command}`" for command in metadata.get("commands", []))
    lines = [
        f"Produced by {commands} in {metadata['wall_seconds'] / 60:.1f} min wall time "
        f"({metadata['cpu_seconds'] / 60:.1f} min CPU time) on {metadata['machine']} (torch "
        f"{metadata['torch']}; one training process at a time, single-threaded). Test accuracy "
        "after the last epoch, mean ± sample standard deviation over the seeds listed; time per "
        "epoch: the whole `dyna train` call (data, model, every epoch with its test evaluation "
        "and checkpoint) divided by the epochs, mean over the seeds.",
        "",
        format_table(runs),
        "",
        "The command of each row (S: the seed; the run folder holds `config.json`, "
        "`metrics/epochs.csv` and `summary.json`):",
        "",
        "| data | model | command |",
        "|---|---|---|",
    ]
    for cell in cells(runs):
        lines.append(
            f"| {DATASET_NAMES[cell.dataset]} | {cell.model} | `{command_pattern(cell.runs[0])}` |"
        )
    name = f"{json_path.stem}.png"
    plot_curves(runs, figures_dir / name)
    lines += ["", f"![Test accuracy after each epoch per model]({figures_prefix}{name})"]
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m repro.dynconv",
        description="Train the static and dynamic convolution networks with `dyna train` "
        "(one process, one thread) and collect accuracy, parameters and time per run.",
    )
    parser.add_argument("--datasets", nargs="+", choices=tuple(DATASETS), default=["digits"])
    parser.add_argument("--models", nargs="+", choices=tuple(MODELS), default=list(MODELS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument(
        "--data",
        default=os.environ.get("DYNA_MNIST"),
        help="MNIST folder of IDX files, for --datasets mnist (default: $DYNA_MNIST)",
    )
    parser.add_argument(
        "--digits-epochs", type=int, help="epochs on the digits (default: the experiment's)"
    )
    parser.add_argument(
        "--mnist-epochs", type=int, help="epochs on MNIST (default: the experiment's)"
    )
    parser.add_argument(
        "--mnist-train-samples",
        type=int,
        default=0,
        help="train on the first N MNIST training images only (default 0: all)",
    )
    parser.add_argument(
        "--runs", default="runs/dynconv", help="parent of the run folders (default runs/dynconv)"
    )
    parser.add_argument("--json", metavar="PATH", help="write every run to PATH")
    parser.add_argument(
        "--append",
        action="store_true",
        help="keep the runs already in --json and skip them (run a protocol in parts)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> list[Run]:
    """Command-line entry: train every (data set, model, seed), print one line per run."""
    argv = sys.argv[1:] if argv is None else list(argv)
    arguments = _parser().parse_args(argv)
    if "mnist" in arguments.datasets and not arguments.data:
        raise SystemExit("--datasets mnist needs --data DIR (or $DYNA_MNIST): the MNIST folder")
    if arguments.append and not arguments.json:
        raise SystemExit("--append needs --json PATH: the file to extend")
    own_process()
    runs: list[Run] = []
    metadata: dict[str, Any] = {"commands": [], "wall_seconds": 0.0, "cpu_seconds": 0.0}
    if arguments.append and Path(arguments.json).exists():
        runs, metadata = load(arguments.json)
    done = {(run.dataset, run.model, run.seed) for run in runs}
    metadata["commands"] = [
        *metadata.get("commands", []),
        shlex.join(["python", "-m", "repro.dynconv", *argv]),
    ]
    metadata.update(machine_facts())
    for dataset in arguments.datasets:
        epochs = arguments.digits_epochs if dataset == "digits" else arguments.mnist_epochs
        for seed in arguments.seeds:
            for model in arguments.models:
                if (dataset, model, seed) in done:
                    continue
                run = train_one(
                    dataset,
                    model,
                    seed,
                    arguments.runs,
                    data=arguments.data,
                    epochs=epochs,
                    train_samples=arguments.mnist_train_samples,
                )
                runs.append(run)
                metadata["wall_seconds"] = metadata.get("wall_seconds", 0.0) + run.wall_seconds
                metadata["cpu_seconds"] = metadata.get("cpu_seconds", 0.0) + run.cpu_seconds
                print(
                    f"{dataset} {model} seed {seed}: {100 * run.test_accuracy:.2f} % test, "
                    f"{run.parameters} parameters, {run.wall_seconds / run.epochs:.2f} s/epoch "
                    f"wall, {run.cpu_seconds / run.epochs:.2f} s/epoch CPU",
                    flush=True,
                )
                if arguments.json:
                    save(arguments.json, runs, metadata)
    if arguments.json:
        save(arguments.json, runs, metadata)
    return runs


if __name__ == "__main__":
    main()
