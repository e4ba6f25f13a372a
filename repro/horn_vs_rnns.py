"""HORN against tanh-RNN, GRU and LSTM on pixel-by-pixel MNIST, and HORN's structural variants.

The comparison of Effenberger, Carvalho, Dubinin, Singer, "The functional role of oscillatory
dynamics in neocortical circuits: a computational perspective" (PNAS 2025), under the reference
script's recipe (n = 32, AdamW lr 1e-2, batch 64, h = 1, α = 0.04, ω = 0.224, γ = 0.01;
:mod:`dyna.experiments.sequences`), in three tables:

- ``smnist``: ``horn``, ``rnn``, ``gru``, ``lstm`` on sequential MNIST (T = 784).
- ``psmnist``: the same on the permuted variant.
- ``structure``: homogeneous HORN against heterogeneous ω and γ and against random synaptic
  delays, on sequential MNIST, at (nearly) equal parameter count.

Every run is a plain ``dyna train EXPERIMENT --seed S`` into its own folder under ``--runs``,
followed by ``dyna eval RUN --noise ...`` (the final model on the test split with additive
Gaussian input noise), both done through the engine (:func:`dyna.train.run` and
:func:`~dyna.train.evaluation.evaluate_checkpoint`) in a fresh single-threaded process per run.
:func:`collect` reads the run folders into one JSON file (the numbers of ``docs/results.md``)
and :func:`render` turns that file into the page's tables and plot.

Run everything (sequentially by default; finished runs are kept and skipped)::

    python -m repro.horn_vs_rnns --data MNIST_DIR --runs runs/horn-vs-rnns \\
        --json docs/results/horn-vs-rnns.json

or, with ``DYNA_MNIST=MNIST_DIR`` set, ``python -m repro.results horn-vs-rnns --run``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dyna.data.split import DataError
from dyna.experiments import get_experiment
from dyna.train.checkpoint import CheckpointMismatch, write_json_atomic
from dyna.train.config import TRAINING_OPTIONS, ConfigError, TrainingDefaults
from dyna.train.evaluation import evaluate_checkpoint
from dyna.train.metrics import CSVLog
from repro._common import (
    format_mean_std,
    machine_facts,
    markdown_table,
    mean_and_std,
    own_process,
    pyplot,
    train,
)

# The recipe's 10 epochs: about 45 CPU minutes for all three tables on one core.
EPOCHS = 10
SEEDS = (1, 2, 3)
NOISE = (0.1, 0.2, 0.4)
NOISE_SEED = 0
TABLES: dict[str, tuple[str, ...]] = {
    "smnist": ("horn-smnist", "rnn-smnist", "gru-smnist", "lstm-smnist"),
    "psmnist": ("horn-psmnist", "rnn-psmnist", "gru-psmnist", "lstm-psmnist"),
    "structure": ("horn-smnist", "horn-smnist-hetero", "horn-smnist-delays"),
}
TITLES = {
    "smnist": "sMNIST-10k (pixel by pixel, T = 784)",
    "psmnist": "psMNIST-10k (permuted pixels, T = 784)",
    "structure": "HORN's structure, sMNIST-10k",
}
LABELS = {
    "horn-smnist": "HORN",
    "rnn-smnist": "tanh-RNN",
    "gru-smnist": "GRU",
    "lstm-smnist": "LSTM",
    "horn-psmnist": "HORN",
    "rnn-psmnist": "tanh-RNN",
    "gru-psmnist": "GRU",
    "lstm-psmnist": "LSTM",
    "horn-smnist-hetero": "HORN, heterogeneous ω, γ",
    "horn-smnist-delays": "HORN, delays 2–40 steps",
}
DATA_ENVIRONMENT = "DYNA_MNIST"


@dataclass(frozen=True)
class Plan:
    """What to run: experiments, seeds, epochs and noise levels.

    ``extra`` holds options appended to every training command, ``--set KEY=VALUE`` or a
    training option and its value (e.g. ``("--set", "train_samples=64", "--batch-size",
    "32")`` for a short run); it is empty for the published protocol and left out of the
    rendered commands.
    """

    experiments: tuple[str, ...]
    seeds: tuple[int, ...] = SEEDS
    epochs: int = EPOCHS
    noise: tuple[float, ...] = NOISE
    noise_seed: int = NOISE_SEED
    extra: tuple[str, ...] = ()

    def run_name(self, experiment: str, seed: int) -> str:
        return f"{experiment}-s{seed}"

    def train_command(self, experiment: str, seed: int, data: str, runs: str) -> list[str]:
        return [
            "dyna",
            "train",
            experiment,
            "--data",
            data,
            "--epochs",
            str(self.epochs),
            "--seed",
            str(seed),
            "--threads",
            "1",
            "--quiet",
            "--out",
            f"{runs}/{self.run_name(experiment, seed)}",
            *self.extra,
        ]

    def extra_settings(self) -> tuple[dict[str, str], dict[str, Any]]:
        """:attr:`extra` as the engine takes it: ``--set`` values and training options."""
        assignments, training = {}, {}
        words = list(self.extra)
        if len(words) % 2:
            raise ValueError(f"extra must hold option-value pairs, got {self.extra}")
        for flag, text in zip(words[::2], words[1::2], strict=True):
            name = flag.removeprefix("--").replace("-", "_")
            if flag == "--set":
                key, _, value = text.partition("=")
                assignments[key] = value
            elif flag.startswith("--") and name in TRAINING_OPTIONS:
                training[name] = type(getattr(TrainingDefaults(), name))(text)
            else:
                raise ValueError(f"extra must hold --set or training options, got {flag}")
        return assignments, training

    def train(self, experiment: str, seed: int, data: str, runs: str) -> None:
        """Do what :meth:`train_command` says, in this process, through the engine."""
        assignments, training = self.extra_settings()
        train(
            experiment,
            f"{runs}/{self.run_name(experiment, seed)}",
            assignments=assignments,
            training={"epochs": self.epochs, "seed": seed, "threads": 1, **training},
            data=data,
        )

    def evaluate(self, experiment: str, seed: int, runs: str) -> None:
        """Do what :meth:`eval_command` says, in this process, through the engine."""
        evaluate_checkpoint(
            f"{runs}/{self.run_name(experiment, seed)}",
            get_experiment,
            noise=self.noise,
            noise_seed=self.noise_seed,
            report=print,
        )

    def eval_command(self, experiment: str, seed: int, runs: str) -> list[str]:
        return [
            "dyna",
            "eval",
            f"{runs}/{self.run_name(experiment, seed)}",
            "--noise",
            *(f"{sigma:g}" for sigma in self.noise),
            "--noise-seed",
            str(self.noise_seed),
        ]


def experiments_of(tables: Sequence[str]) -> tuple[str, ...]:
    """The experiments of ``tables``, each once, in table order."""
    if isinstance(tables, str):  # a lone name would be read letter by letter
        raise TypeError(f"tables must be a sequence of table names, got str {tables!r}")
    unknown = sorted(set(tables) - set(TABLES))
    if unknown:
        raise ValueError(f"tables must be among {', '.join(TABLES)}, got {', '.join(unknown)}")
    return tuple(dict.fromkeys(name for table in tables for name in TABLES[table]))


# ----------------------------------------------------------------------------------- collect


def read_run(folder: Path) -> dict[str, Any] | None:
    """One finished run folder as a JSON-ready record, or None while it is unfinished.

    The record holds the experiment, seed, parameter count, per-epoch validation and test
    accuracy, the test accuracy at the best-validation epoch and at the last epoch, wall
    seconds per epoch and (after ``dyna eval --noise``) the noisy test accuracies.

    Seconds per epoch are file times: from the creation of ``metrics/`` (the start of training)
    to the last write of ``metrics/epochs.csv``, divided by the epochs; they include each
    epoch's evaluation of the validation and test splits.
    """
    summary_path = folder / "summary.json"
    if not summary_path.is_file():
        return None
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    epochs_path = folder / "metrics" / "epochs.csv"
    rows = CSVLog(epochs_path, ()).read()
    epochs = [
        {
            "epoch": int(row["epoch"]),
            "val_accuracy": float(row["val_accuracy"]) if row.get("val_accuracy") else None,
            "test_accuracy": float(row["test_accuracy"]),
        }
        for row in rows
    ]
    seconds = epochs_path.stat().st_mtime - (folder / "metrics").stat().st_mtime
    record: dict[str, Any] = {
        "experiment": summary["experiment"],
        "seed": config["seed"],
        "parameters": summary["parameters"],
        "epochs": epochs,
        "best_epoch": summary["best_epoch"],
        "test_accuracy_at_best_val": summary["test_accuracy_at_best_val"],
        "final_test_accuracy": summary["final_test_accuracy"],
        "seconds_per_epoch": seconds / max(len(epochs), 1),
        "params": config["params"],
        "noise": {},
    }
    eval_path = folder / "eval.json"
    if eval_path.is_file():
        evaluation = json.loads(eval_path.read_text(encoding="utf-8"))
        record["noise_seed"] = evaluation.get("noise_seed")
        record["noise"] = {
            f"{level['sigma']:g}": level["test_accuracy"] for level in evaluation.get("noise", [])
        }
    return record


def collect(plan: Plan, runs: Path) -> list[dict[str, Any]]:
    """The finished runs of ``plan`` under ``runs`` (unfinished ones are left out)."""
    records = []
    for experiment in plan.experiments:
        for seed in plan.seeds:
            record = read_run(runs / plan.run_name(experiment, seed))
            if record is not None:
                records.append(record)
    return records


# --------------------------------------------------------------------------------------- run


def _finished(folder: Path, plan: Plan) -> bool:
    if not (folder / "summary.json").is_file():
        return False
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    return summary.get("epochs") == plan.epochs


def _has_noise(folder: Path, plan: Plan) -> bool:
    path = folder / "eval.json"
    if not path.is_file():
        return False
    evaluation = json.loads(path.read_text(encoding="utf-8"))
    levels = evaluation.get("noise", [])
    if evaluation.get("noise_seed") != plan.noise_seed:
        return False
    # The eval command passes each level as f"{sigma:g}": compare in that form, or a level
    # such as 0.123456789 would never count as done.
    return [f"{level['sigma']:g}" for level in levels] == [f"{sigma:g}" for sigma in plan.noise]


def _child(work: Callable[..., None], arguments: tuple, log: Path) -> None:
    """The body of a run's process: one thread, output to ``log``, the command's exit codes."""
    # `dyna eval` has no --threads: without this it takes torch's default, and two such
    # processes on two busy cores run the per-step ops many times slower than one thread.
    torch.set_num_threads(1)
    own_process()
    with log.open("a", encoding="utf-8") as stream:
        sys.stdout = sys.stderr = stream
        try:
            work(*arguments)
        except (ConfigError, DataError, CheckpointMismatch) as error:
            print(f"dyna: error: {error}", flush=True)
            sys.exit(2)  # a usage error, as the dyna command reports it
        except Exception as error:
            print(f"dyna: error: {type(error).__name__}: {error}", flush=True)
            sys.exit(1)
        stream.flush()


def _in_fresh_process(
    command: Sequence[str], work: Callable[..., None], arguments: tuple, log: Path
) -> float:
    """Run ``work(*arguments)`` in a fresh interpreter, appending its output to ``log``.

    The process is what ``command`` (the equivalent ``dyna`` command, named in errors) would
    be: a new interpreter that imports DyNA and runs through the engine's entry points.
    Returns its CPU seconds (user + system, from the kernel's accounting of the reaped child).
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    child = multiprocessing.get_context("spawn").Process(target=_child, args=(work, arguments, log))
    child.start()
    child.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if child.exitcode != 0:
        raise RuntimeError(f"`{' '.join(command)}` failed (exit {child.exitcode}); see {log}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def run_plan(plan: Plan, data: str, runs: Path, jobs: int = 1) -> float:
    """Train and noise-evaluate every run of ``plan`` not finished yet; returns the wall seconds.

    ``jobs`` runs go at once (each single-threaded); a run folder that holds a finished run of
    ``plan.epochs`` epochs is kept, one that holds anything else is started over.
    """
    runs.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    def one(task: tuple[str, int]) -> None:
        experiment, seed = task
        folder = runs / plan.run_name(experiment, seed)
        log = runs / f"{plan.run_name(experiment, seed)}.log"
        if not _finished(folder, plan):
            command = [*plan.train_command(experiment, seed, data, runs.as_posix()), "--overwrite"]
            arguments = (experiment, seed, data, runs.as_posix())
            _in_fresh_process(command, plan.train, arguments, log)
        if not _has_noise(folder, plan):
            command = plan.eval_command(experiment, seed, runs.as_posix())
            _in_fresh_process(command, plan.evaluate, (experiment, seed, runs.as_posix()), log)

    tasks = [(experiment, seed) for seed in plan.seeds for experiment in plan.experiments]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for _ in pool.map(one, tasks):
            pass
    return time.perf_counter() - start


TIMING_SEED = 1


def time_epoch(
    experiment: str, data: str, runs: Path, extra: tuple[str, ...] = ()
) -> dict[str, float]:
    """CPU and wall seconds of one single-threaded epoch of ``experiment``, run alone.

    The run's own wall times (the ``s / epoch`` column) depend on what else the machine ran;
    the CPU time of a single-threaded process hardly does, so it is the fair comparison of the
    models' costs. One ``dyna train EXPERIMENT --epochs 1`` into ``RUNS/timing/EXPERIMENT``, in
    a fresh process, whose CPU time (user + system, from the kernel's accounting of the
    finished child) covers the interpreter's start, reading MNIST and one epoch with its
    validation and test evaluation. The record is kept beside that folder
    (``EXPERIMENT-sSEED.json``) and reused.
    ``extra`` is appended to the training command, as :attr:`Plan.extra`.
    """
    timing_plan = Plan((experiment,), (TIMING_SEED,), 1, extra=extra)
    folder = runs / "timing" / timing_plan.run_name(experiment, TIMING_SEED)
    record_path = folder.parent / f"{folder.name}.json"
    if record_path.is_file():
        saved: dict[str, float] = json.loads(record_path.read_text(encoding="utf-8"))
        return saved
    folder.parent.mkdir(parents=True, exist_ok=True)
    timing_runs = folder.parent.as_posix()
    command = [*timing_plan.train_command(experiment, TIMING_SEED, data, timing_runs)]
    command.append("--overwrite")
    log = folder.parent / f"{folder.name}.log"
    start = time.perf_counter()
    arguments = (experiment, TIMING_SEED, data, timing_runs)
    cpu = _in_fresh_process(command, timing_plan.train, arguments, log)
    record = {"cpu_seconds": cpu, "wall_seconds": time.perf_counter() - start}
    write_json_atomic(record_path, record)
    return record


def time_plan(plan: Plan, data: str, runs: Path) -> dict[str, dict[str, float]]:
    """:func:`time_epoch` for every experiment of ``plan``, one after the other."""
    return {
        experiment: time_epoch(experiment, data, runs, plan.extra)
        for experiment in plan.experiments
    }


def _saved_timing(plan: Plan, runs: Path) -> dict[str, dict[str, float]]:
    """The :func:`time_epoch` records already under ``runs`` (none measured here)."""
    timing = {}
    for experiment in plan.experiments:
        path = runs / "timing" / f"{plan.run_name(experiment, TIMING_SEED)}.json"
        if path.is_file():
            timing[experiment] = json.loads(path.read_text(encoding="utf-8"))
    return timing


def save(
    plan: Plan,
    tables: Sequence[str],
    runs: Path,
    json_path: Path,
    command: str,
    wall_seconds: float | None = None,
) -> dict[str, Any]:
    """Collect the runs into ``json_path`` with the facts needed to reproduce them."""
    records = collect(plan, runs)
    result = {
        "metadata": {
            "command": command,
            "tables": list(tables),
            "epochs": plan.epochs,
            "seeds": list(plan.seeds),
            "noise": list(plan.noise),
            "noise_seed": plan.noise_seed,
            "wall_seconds": wall_seconds,
            "train_seconds": sum(r["seconds_per_epoch"] * len(r["epochs"]) for r in records),
            **machine_facts(),
        },
        "runs": records,
        "timing": _saved_timing(plan, runs),
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(json_path, result)
    return result


# ------------------------------------------------------------------------------------ render


def _cell(values: Sequence[float | None], scale: float = 100.0, digits: int = 1) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "–"
    text = format_mean_std(*mean_and_std([scale * v for v in present]), digits)
    return text if len(present) == len(values) else f"{text} ({len(present)} of {len(values)})"


def _epoch_accuracy(record: dict[str, Any], epoch: int) -> float | None:
    for row in record["epochs"]:
        if row["epoch"] == epoch:
            return row["test_accuracy"]
    return None


def _by_experiment(records: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        grouped.setdefault(record["experiment"], []).append(record)
    for group in grouped.values():
        group.sort(key=lambda record: record["seed"])
    return grouped


def format_table(
    experiments: Sequence[str],
    grouped: dict[str, list[dict[str, Any]]],
    epochs: int,
    noise: Sequence[float],
    timing: dict[str, dict[str, float]] | None = None,
) -> str:
    """One Markdown table: a row per experiment with its runs, mean ± std over seeds.

    With ``timing`` (experiment -> :func:`time_epoch` record) a last column gives the CPU
    seconds of one epoch measured alone ("–" for an experiment without a record).
    """
    # Learning speed: after epochs 1, 2 and 5 (those that exist), and the last.
    marks = sorted({mark for mark in (1, 2, 5) if mark <= epochs} | {epochs})
    header = (
        ["model", "params", "seeds", "test @ best val", f"test @ epoch {epochs}"]
        + [f"after {mark} ep" for mark in marks]
        + [f"noise σ={sigma:g}" for sigma in noise]
        + ["s / epoch"]
        + (["CPU s / epoch, alone"] if timing is not None else [])
    )
    rows = []
    for experiment in experiments:
        runs = grouped.get(experiment, [])
        if not runs:
            continue
        counts = sorted({record["parameters"] for record in runs})
        cells = [
            LABELS.get(experiment, experiment),
            "/".join(f"{count:,}" for count in counts),
            ",".join(str(record["seed"]) for record in runs),
            _cell([record["test_accuracy_at_best_val"] for record in runs]),
            _cell([_epoch_accuracy(record, epochs) for record in runs]),
        ]
        cells += [_cell([_epoch_accuracy(record, mark) for record in runs]) for mark in marks]
        cells += [_cell([record["noise"].get(f"{sigma:g}") for record in runs]) for sigma in noise]
        cells.append(_cell([record["seconds_per_epoch"] for record in runs], scale=1, digits=0))
        if timing is not None:
            measured = timing.get(experiment)
            cells.append(f"{measured['cpu_seconds']:.1f}" if measured else "–")
        rows.append(cells)
    return markdown_table(header, rows)


def _plot(
    tables: Sequence[str], grouped: dict[str, list[dict[str, Any]]], epochs: int, path: Path
) -> None:
    """Test accuracy against epoch, mean over seeds (std as a band), one panel per table."""
    plt = pyplot()
    shown = [table for table in tables if any(name in grouped for name in TABLES[table])]
    figure, axes = plt.subplots(1, len(shown), figsize=(3.6 * len(shown), 2.9), dpi=80)
    for axis, table in zip(axes if len(shown) > 1 else [axes], shown, strict=True):
        for experiment in TABLES[table]:
            runs = grouped.get(experiment)
            if not runs:
                continue
            xs, means, lows, highs = [], [], [], []
            for epoch in range(1, epochs + 1):
                values = [_epoch_accuracy(record, epoch) for record in runs]
                present = [100 * v for v in values if v is not None]
                if not present:
                    continue
                mean, std = mean_and_std(present)
                xs.append(epoch)
                means.append(mean)
                lows.append(mean - (std or 0.0))
                highs.append(mean + (std or 0.0))
            label = f"{LABELS.get(experiment, experiment)} ({len(runs)})"
            (line,) = axis.plot(xs, means, marker="o", markersize=3, label=label)
            axis.fill_between(xs, lows, highs, color=line.get_color(), alpha=0.2)
        axis.set_title(TITLES[table], fontsize=9)
        axis.set_xlabel("epoch", fontsize=8)
        axis.set_ylabel("test accuracy (%)", fontsize=8)
        axis.set_xticks(range(1, epochs + 1))
        axis.tick_params(labelsize=7)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def missing_runs(plan: Plan, records: Sequence[dict[str, Any]]) -> list[tuple[str, int]]:
    """The (experiment, seed) pairs of ``plan`` that have no finished run in ``records``."""
    done = {(record["experiment"], record["seed"]) for record in records}
    return [
        (experiment, seed)
        for experiment in plan.experiments
        for seed in plan.seeds
        if (experiment, seed) not in done
    ]


def render(json_path: Path, figures_dir: Path, figures_prefix: str, *, plots: bool = True) -> str:
    """The Markdown block of the comparison (tables, plot, commands) from the saved JSON."""
    saved = json.loads(Path(json_path).read_text(encoding="utf-8"))
    metadata, records = saved["metadata"], saved["runs"]
    tables = metadata["tables"]
    epochs, noise = metadata["epochs"], metadata["noise"]
    grouped = _by_experiment(records)
    plan = Plan(
        experiments_of(tables),
        tuple(metadata["seeds"]),
        epochs,
        tuple(noise),
        metadata.get("noise_seed", NOISE_SEED),
    )
    minutes = metadata["train_seconds"] / 60
    timing = saved.get("timing") or None
    alone = (
        f" *CPU s / epoch, alone*: the CPU time (user + system) of a separate single-threaded "
        f"one-epoch run of seed {TIMING_SEED} (`--epochs 1`), the interpreter's start, reading "
        f"MNIST and the evaluations included; unlike the wall times it does not depend on what "
        f"else the machine was running, so it compares the models' costs."
        if timing
        else ""
    )
    lines = [
        f"Produced by `{metadata['command']}` on {metadata['machine']} (torch "
        f"{metadata['torch']}), every run single-threaded: {len(records)} runs, "
        f"{minutes:.0f} min of training (the sum of the runs' wall times). "
        f"Accuracies in % on the 2,000 test digits, mean ± sample standard deviation over the "
        f"seeds listed; {epochs} epochs per run. *test @ best val*: the test accuracy at the "
        f"epoch of best validation accuracy (the recipe's number); *test @ epoch {epochs}*: at "
        f"the last epoch; *after k ep*: after epoch k (learning speed); *noise σ*: the final "
        f"model on the test digits plus Gaussian noise of that standard deviation on every pixel "
        f"(one draw, seed {metadata['noise_seed']}, shared by all models and levels; no "
        f"clipping); *s / epoch*: wall time of an epoch including its evaluation of the 1,000 "
        f"validation and 2,000 test sequences, on a machine shared with other jobs (one to "
        f"three at a time).{alone}",
        "",
    ]
    for table in tables:
        if not any(name in grouped for name in TABLES[table]):
            continue
        lines += [f"**{TITLES[table]}**", ""]
        lines += [format_table(TABLES[table], grouped, epochs, noise, timing), ""]
    if plots and records:
        name = f"{Path(json_path).stem}.png"
        _plot(tables, grouped, epochs, Path(figures_dir) / name)
        lines += [
            f"![Test accuracy per epoch, mean over seeds (band: ± std)]({figures_prefix}{name})",
            "",
        ]
    lines += [
        "Each number comes from these two commands per run (EXPERIMENT and SEED from the "
        "table; MNIST_DIR: the MNIST-10k folder):",
        "",
        "```",
        " ".join(plan.train_command("EXPERIMENT", 0, "MNIST_DIR", "runs/horn-vs-rnns"))
        .replace("--seed 0", "--seed SEED")
        .replace("EXPERIMENT-s0", "EXPERIMENT-sSEED"),
        " ".join(plan.eval_command("EXPERIMENT", 0, "runs/horn-vs-rnns")).replace(
            "EXPERIMENT-s0", "EXPERIMENT-sSEED"
        ),
        "```",
        "",
    ]
    missing = missing_runs(plan, records)
    if missing:
        lines += ["Planned but not run (not in the tables):", ""]
        lines += [f"- `{experiment}` seed {seed}" for experiment, seed in missing]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# -------------------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command-line entry: run (or, with ``--collect-only``, only gather) and save the JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m repro.horn_vs_rnns",
        description="Train HORN, tanh-RNN, GRU and LSTM on MNIST pixel by pixel (and HORN's "
        "structural variants), evaluate them under input noise and save the results as JSON.",
    )
    parser.add_argument(
        "--data",
        default=os.environ.get(DATA_ENVIRONMENT),
        help=f"MNIST folder (standard IDX files; default ${DATA_ENVIRONMENT})",
    )
    parser.add_argument("--runs", default="runs/horn-vs-rnns", help="folder of the run folders")
    parser.add_argument("--json", required=True, help="where to write the results")
    parser.add_argument(
        "--tables", nargs="+", default=list(TABLES), choices=list(TABLES), help="tables to run"
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS), help="seeds")
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="epochs per run")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (each one thread)")
    parser.add_argument(
        "--collect-only", action="store_true", help="only gather the finished runs into --json"
    )
    arguments = parser.parse_args(argv)
    if arguments.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {arguments.epochs}")
    if arguments.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {arguments.jobs}")
    if any(not 0 <= seed < 2**31 for seed in arguments.seeds):  # what `dyna train --seed` takes
        parser.error(f"--seeds must be >= 0 and < 2**31, got {arguments.seeds}")
    if len(set(arguments.seeds)) != len(arguments.seeds):
        # Two runs of one seed would train into the same folder.
        parser.error(f"--seeds must be distinct, got {arguments.seeds}")
    plan = Plan(experiments_of(arguments.tables), tuple(arguments.seeds), arguments.epochs)
    runs = Path(arguments.runs)
    wall = None
    if not arguments.collect_only:
        if not arguments.data:
            parser.error(f"--data DIR (or ${DATA_ENVIRONMENT}) is needed to train")
        wall = run_plan(plan, arguments.data, runs, arguments.jobs)
        time_plan(plan, arguments.data, runs)
    command = f"python -m repro.horn_vs_rnns --data MNIST_DIR --runs {arguments.runs}"
    if arguments.tables != list(TABLES):
        command += " --tables " + " ".join(arguments.tables)
    if tuple(arguments.seeds) != SEEDS:
        command += " --seeds " + " ".join(str(seed) for seed in arguments.seeds)
    if arguments.epochs != EPOCHS:
        command += f" --epochs {arguments.epochs}"
    command += f" --jobs {arguments.jobs} --json {arguments.json}"
    result = save(plan, arguments.tables, runs, Path(arguments.json), command, wall)
    print(f"{len(result['runs'])} runs saved to {arguments.json}")
    return result


if __name__ == "__main__":
    main()
