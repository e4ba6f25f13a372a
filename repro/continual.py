"""The CNU's online continual-learning comparison: the paper's tables, results file and command.

Runs :func:`dyna.train.online.run_experiment` (a ``LinearCNU`` against linear, MLP and MLP with
experience replay on the MODES/MOONS streams, one pass, batch 1, plain SGD, the baselines
selected on the early validation stream) and prints its table, mean ± standard deviation over
seeds. With ``--json PATH`` it saves every seed's matrix and metrics, which :func:`render`
turns into the results page's block (``python -m repro.results continual``)::

    python -m repro.continual --json docs/results/continual.json
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from dyna.data.continual_streams import STREAM_NAMES, STREAM_ORDERS
from dyna.train.online import (
    DEFAULT_BUFFER_SIZE,
    DEFAULT_REPLAY_SIZE,
    HIDDEN_SIZES,
    LEARNING_RATES,
    MODEL_KINDS,
    PAPER_SEEDS,
    SPLITS,
    WEIGHT_DECAYS,
    CNUHyperparameters,
    ContinualResult,
    ExperimentRow,
    run_experiment,
)
from repro._common import (
    format_mean_std,
    machine_facts,
    markdown_table,
    own_process,
    pyplot,
    write_text_atomic,
)

METRICS = (
    ("average_accuracy", "ACC (%) ↑"),
    ("average_forgetting", "FORG (%) ↓"),
    ("forward_transfer", "FWD (%) ↑"),
)


def _check_rows(rows: object) -> tuple[ExperimentRow, ...]:
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence):
        raise TypeError(f"rows must be a sequence (list or tuple), got {type(rows).__name__}")
    if len(rows) == 0:
        raise ValueError("rows must not be empty")
    for row in rows:
        if not isinstance(row, ExperimentRow):
            raise TypeError(f"rows must hold ExperimentRow objects, got {type(row).__name__}")
    return tuple(rows)


def format_table(rows: Sequence[ExperimentRow]) -> str:
    """A Markdown table of the rows: settings and mean ± std (in %) of ACC, FORG and FWD."""
    header = ["data", "order", "model", "lr", "wd", "h", "ACC (%) ↑", "FORG (%) ↓", "FWD (%) ↑"]
    lines = []
    for row in _check_rows(rows):
        cells = [row.stream.upper(), row.order.upper(), row.model]
        cells += [f"{row.learning_rate:g}", f"{row.weight_decay:g}", str(row.hidden or "–")]
        for metric in ("average_accuracy", "average_forgetting", "forward_transfer"):
            mean, spread = row.mean_std(metric)
            cells.append(format_mean_std(100 * mean, 100 * spread, 1))
        lines.append(cells)
    return markdown_table(header, lines)


def _result_to_dict(result: ContinualResult) -> dict[str, object]:
    values = {
        name: getattr(result, name)
        for name in ContinualResult.__dataclass_fields__
        if name not in ("matrix", "cnu")
    }
    values["matrix"] = result.matrix.tolist()
    values["cnu"] = None if result.cnu is None else asdict(result.cnu)
    return values


def _result_from_dict(values: dict[str, Any]) -> ContinualResult:
    values = dict(values)
    values["matrix"] = torch.tensor(values["matrix"], dtype=torch.float32)
    if values["cnu"] is not None:
        values["cnu"] = CNUHyperparameters(**values["cnu"])
    return ContinualResult(**values)


def save_results(
    path: str | os.PathLike,
    rows: Sequence[ExperimentRow],
    metadata: dict[str, object] | None = None,
) -> None:
    """Write the rows (every seed's matrix and metrics) and free-form metadata as JSON.

    The file is what :func:`render` turns into tables and plots, so that they can be redrawn
    without training again. It is written atomically: a killed run leaves the previous file.

    Args:
        path: the JSON file to write (its folder must exist).
        rows: rows from :func:`run_experiment`.
        metadata: JSON-serialisable facts about the run (command, time, machine).
    """
    rows = _check_rows(rows)
    if metadata is not None and not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict or None, got {type(metadata).__name__}")
    payload = {
        "metadata": metadata or {},
        "rows": [
            {
                **{
                    name: getattr(row, name)
                    for name in ExperimentRow.__dataclass_fields__
                    if name != "results"
                },
                "results": [_result_to_dict(result) for result in row.results],
            }
            for row in rows
        ],
    }
    # One line per row (a cell and its seeds): small, and a re-run diffs cell by cell.
    rows_text = ",\n  ".join(json.dumps(row, ensure_ascii=False) for row in payload["rows"])
    metadata_text = json.dumps(payload["metadata"], indent=1, ensure_ascii=False)
    metadata_text = metadata_text.replace("\n", "\n ")
    write_text_atomic(
        path, f'{{\n "metadata": {metadata_text},\n "rows": [\n  {rows_text}\n ]\n}}\n'
    )


def load_results(path: str | os.PathLike) -> tuple[list[ExperimentRow], dict[str, Any]]:
    """Read a file written by :func:`save_results`: the rows and the metadata."""
    with open(path, encoding="utf-8") as handle:
        payload = json.load(handle)
    if not isinstance(payload, dict) or "rows" not in payload:
        raise ValueError(f"path must be a results file written by save_results, got {path!r}")
    rows = [
        ExperimentRow(
            **{
                **values,
                "results": tuple(_result_from_dict(result) for result in values["results"]),
            }
        )
        for values in payload["rows"]
    ]
    return rows, payload.get("metadata", {})


def _grouped_bars(rows: Sequence[ExperimentRow], stream: str, path: Path) -> None:
    """Bars of ACC, FORG and FWD per order and model (mean over seeds, std as error bars)."""
    plt = pyplot()
    rows = [row for row in rows if row.stream == stream]
    orders = list(dict.fromkeys(row.order for row in rows))
    models = list(dict.fromkeys(row.model for row in rows))
    cells = {(row.order, row.model): row for row in rows}
    width = 0.8 / len(models)
    figure, axes = plt.subplots(1, len(METRICS), figsize=(10, 3.1), dpi=80)
    for axis, (metric, label) in zip(axes, METRICS, strict=True):
        lowest = 0.0
        for index, model in enumerate(models):
            positions, means, spreads = [], [], []
            for order_index, order in enumerate(orders):
                if (order, model) in cells:
                    mean, spread = cells[(order, model)].mean_std(metric)
                    positions.append(order_index + (index - (len(models) - 1) / 2) * width)
                    means.append(100 * mean)
                    spreads.append(100 * spread)
                    lowest = min(lowest, 100 * (mean - spread))
            axis.bar(positions, means, width, yerr=spreads, capsize=2, label=model)
        axis.set_xticks(range(len(orders)), [order.upper() for order in orders])
        axis.set_title(label, fontsize=10)
        # Forgetting is negative where the final model beats every earlier one.
        axis.set_ylim(min(0.0, lowest - 5.0), 100)
        axis.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncols=len(models), fontsize=9)
    figure.suptitle(f"{stream.upper()}: mean ± std over seeds", fontsize=10)
    figure.tight_layout(rect=(0, 0.08, 1, 1))
    figure.savefig(path)
    plt.close(figure)


def _matrices(rows: Sequence[ExperimentRow], stream: str, order: str, path: Path) -> None:
    """Heat maps of every model's continual confusion matrix on one stream, first seed."""
    plt = pyplot()
    rows = [row for row in rows if (row.stream, row.order) == (stream, order)]
    figure, axes = plt.subplots(
        1, len(rows), figsize=(2.4 * len(rows), 2.9), dpi=80, layout="constrained"
    )
    for axis, row in zip(axes if len(rows) > 1 else [axes], rows, strict=True):
        result = row.results[0]
        matrix = (100 * result.matrix).tolist()
        axis.imshow(matrix, vmin=0, vmax=100, cmap="viridis")
        size = len(matrix)
        if size <= 4:
            for j, values in enumerate(matrix):
                for i, value in enumerate(values):
                    color = "black" if value > 60 else "white"
                    axis.text(
                        i, j, f"{value:.0f}", ha="center", va="center", fontsize=8, color=color
                    )
        axis.set_title(f"{row.model}: ACC {100 * result.average_accuracy:.0f} %", fontsize=9)
        axis.set_xticks(range(size))
        axis.set_yticks(range(size))
        axis.set_xlabel("tested on distribution", fontsize=8)
        axis.tick_params(labelsize=7)
    axes_list = axes if len(rows) > 1 else [axes]
    axes_list[0].set_ylabel("after distribution", fontsize=8)
    figure.suptitle(
        f"{stream.upper()} {order.upper()}, seed {rows[0].results[0].seed}: accuracy (%)",
        fontsize=10,
    )
    figure.savefig(path)
    plt.close(figure)


def render(json_path: Path, figures_dir: Path, figures_prefix: str, *, plots: bool = True) -> str:
    """A continual-learning block: command, compute, table and (``plots``) a bar plot per data
    set and the confusion matrices of one stream, named after the JSON file."""
    rows, metadata = load_results(json_path)
    lines = [
        f"Produced by `{metadata['command']}` in {metadata['wall_seconds'] / 60:.1f} min wall "
        f"time ({metadata['cpu_seconds'] / 60:.1f} min CPU time) on {metadata['machine']} "
        f"(torch {metadata['torch']}; each run single-threaded); values in %, mean ± "
        "sample standard deviation over the seeds; lr, wd, h: the settings used (searched on "
        "the validation stream, or the paper's for the CNU).",
        "",
        format_table(rows),
        "",
        "Compute per cell (hyper-parameter search and the final runs):",
        "",
    ]
    models = list(dict.fromkeys(row.model for row in rows))
    cells = {(row.stream, row.order, row.model): row for row in rows}
    compute = [
        [stream.upper(), order.upper()]
        + [
            f"{cells[(stream, order, model)].seconds:.0f} s"
            if (stream, order, model) in cells
            else "–"
            for model in models
        ]
        for stream, order in dict.fromkeys((row.stream, row.order) for row in rows)
    ]
    lines.append(markdown_table(["data", "order", *models], compute))
    lines.append("")
    if not plots:
        return "\n".join(lines).rstrip() + "\n"
    for stream in dict.fromkeys(row.stream for row in rows):
        name = f"{json_path.stem}_{stream}.png"
        _grouped_bars(rows, stream, figures_dir / name)
        lines.append(
            f"![{stream.upper()}: ACC, FORG, FWD per order and model]({figures_prefix}{name})"
        )
        lines.append("")
    # One run in detail: the class-incremental MODES stream if it was run, else the first one.
    streams = list(dict.fromkeys((row.stream, row.order) for row in rows))
    stream, order = ("modes", "ci") if ("modes", "ci") in streams else streams[0]
    name = f"{json_path.stem}_matrices_{stream}_{order}.png"
    _matrices(rows, stream, order, figures_dir / name)
    lines.append(
        f"![The continual confusion matrix of every model on {stream.upper()} {order.upper()}]"
        f"({figures_prefix}{name})"
    )
    return "\n".join(lines).rstrip() + "\n"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m repro.continual",
        description=(
            "Online continual learning on the MODES/MOONS streams: LinearCNU vs linear, MLP and "
            "MLP with experience replay, one pass, batch 1, plain SGD; prints mean ± std over "
            "seeds."
        ),
    )
    parser.add_argument("--streams", nargs="+", default=list(STREAM_NAMES), choices=STREAM_NAMES)
    parser.add_argument("--orders", nargs="+", default=list(STREAM_ORDERS), choices=STREAM_ORDERS)
    parser.add_argument("--models", nargs="+", default=list(MODEL_KINDS), choices=MODEL_KINDS)
    parser.add_argument("--seeds", nargs="+", type=int, default=list(PAPER_SEEDS))
    parser.add_argument("--num-train", type=int, default=1000)
    parser.add_argument("--learning-rates", nargs="+", type=float, default=list(LEARNING_RATES))
    parser.add_argument("--weight-decays", nargs="+", type=float, default=list(WEIGHT_DECAYS))
    parser.add_argument("--hidden-sizes", nargs="+", type=int, default=list(HIDDEN_SIZES))
    parser.add_argument(
        "--buffer-size",
        type=int,
        default=DEFAULT_BUFFER_SIZE,
        help="capacity of the replay model's reservoir buffer (default %(default)s)",
    )
    parser.add_argument(
        "--replay-size",
        type=int,
        default=DEFAULT_REPLAY_SIZE,
        help="samples the replay model draws from its buffer per step (default %(default)s)",
    )
    parser.add_argument(
        "--search-cnu",
        action="store_true",
        help="also search the CNU's learning rate and weight decay (default: the paper's)",
    )
    parser.add_argument(
        "--select-on",
        choices=SPLITS[::-1],
        default="validation",
        help="score the searched settings on the early validation stream (default, fair) or on "
        "the test split (an upper bound of the searched models)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument(
        "--json",
        metavar="PATH",
        help="also write every seed's matrix and metrics, the command and its compute time to "
        "PATH (rendered by python -m repro.results)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> list[ExperimentRow]:
    """Command-line entry: run :func:`run_experiment` and print :func:`format_table`."""
    argv = sys.argv[1:] if argv is None else list(argv)
    arguments = _parser().parse_args(argv)
    own_process()
    wall_start, cpu_start = time.perf_counter(), time.process_time()

    def report(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    rows = run_experiment(
        arguments.streams,
        arguments.orders,
        arguments.models,
        seeds=arguments.seeds,
        search_cnu=arguments.search_cnu,
        selection=arguments.select_on,
        learning_rates=arguments.learning_rates,
        weight_decays=arguments.weight_decays,
        hidden_sizes=arguments.hidden_sizes,
        num_train=arguments.num_train,
        buffer_size=arguments.buffer_size,
        replay_size=arguments.replay_size,
        progress=None if arguments.quiet else report,
    )
    print(format_table(rows))
    if arguments.json is not None:
        metadata = {
            "command": shlex.join(["python", "-m", "repro.continual", *argv]),
            "wall_seconds": time.perf_counter() - wall_start,
            "cpu_seconds": time.process_time() - cpu_start,
            **machine_facts(),
            "threads": torch.get_num_threads(),
        }
        save_results(arguments.json, rows, metadata)
    return rows


if __name__ == "__main__":
    main()
