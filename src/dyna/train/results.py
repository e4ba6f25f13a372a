"""Regenerate the results page: re-run an experiment, then redraw its tables and plots.

``docs/results.md`` is written by hand except for one generated block per section, fenced by
``<!-- begin generated: NAME -->`` and ``<!-- end generated: NAME -->``. A section is one entry
of :data:`SECTIONS`: the command-line arguments of its runner, the runner (which saves every
number as JSON under ``docs/results/``) and a renderer that turns the JSON into the block's
Markdown and its PNG plots. The prose around the blocks (setup, which claims hold) stays as
written; re-read it when the numbers change.

Usage, from the repository root::

    python -m dyna.train.results continual --run   # train again (minutes), then redraw
    python -m dyna.train.results continual         # redraw from docs/results/continual.json

Plots need matplotlib (a development dependency, not a run-time one).
"""

from __future__ import annotations

import argparse
import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dyna.train import continual, dynconv, horn_vs_rnns
from dyna.train.continual import ExperimentRow, format_table, load_results

METRICS = (
    ("average_accuracy", "ACC (%) ↑"),
    ("average_forgetting", "FORG (%) ↓"),
    ("forward_transfer", "FWD (%) ↑"),
)


@dataclass(frozen=True)
class Section:
    """One generated section of the results page.

    Attributes:
        name: the name of the block in the page and of its files (``results/NAME.json``).
        arguments: the runner's command-line arguments, without the output file.
        run: the runner's entry point, called with ``arguments`` plus ``--json PATH``.
        render: builds the block's Markdown from the saved file and writes its plots into the
            folder given; called as ``render(json_path, figures_dir, figures_prefix)``.
    """

    name: str
    arguments: tuple[str, ...]
    run: Callable[[Sequence[str]], object]
    render: Callable[[Path, Path, str], str]


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "plots need matplotlib: pip install matplotlib (a development dependency)"
        ) from error
    return plt


def _grouped_bars(rows: Sequence[ExperimentRow], stream: str, path: Path) -> None:
    """Bars of ACC, FORG and FWD per order and model (mean over seeds, std as error bars)."""
    plt = _pyplot()
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
    plt = _pyplot()
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


def render_continual(
    json_path: Path, figures_dir: Path, figures_prefix: str, *, plots: bool = True
) -> str:
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
        "| data | order | " + " | ".join(dict.fromkeys(row.model for row in rows)) + " |",
    ]
    models = list(dict.fromkeys(row.model for row in rows))
    lines.append("|---|---|" + "---|" * len(models))
    cells = {(row.stream, row.order, row.model): row for row in rows}
    for stream, order in dict.fromkeys((row.stream, row.order) for row in rows):
        times = [
            f"{cells[(stream, order, model)].seconds:.0f} s"
            if (stream, order, model) in cells
            else "–"
            for model in models
        ]
        lines.append(f"| {stream.upper()} | {order.upper()} | " + " | ".join(times) + " |")
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


SECTIONS: dict[str, Section] = {
    "continual": Section(
        name="continual",
        arguments=(),
        run=continual.main,
        render=render_continual,
    ),
    # Replay with a five times smaller buffer, on the streams that change.
    "continual-small-buffer": Section(
        name="continual-small-buffer",
        arguments=("--orders", "ci", "cdi", "cdid", "--models", "replay", "--buffer-size", "10"),
        run=continual.main,
        render=functools.partial(render_continual, plots=False),
    ),
    # Static against dynamic convolution; MNIST is read from $DYNA_MNIST.
    "dynconv": Section(
        name="dynconv",
        arguments=("--datasets", "digits", "mnist", "--mnist-epochs", "3"),
        run=dynconv.main,
        render=dynconv.render,
    ),
    # HORN against tanh-RNN, GRU and LSTM on (permuted) pixel-by-pixel MNIST, and HORN's
    # structural variants; MNIST is read from $DYNA_MNIST. Two single-threaded runs at a time.
    "horn-vs-rnns": Section(
        name="horn-vs-rnns",
        arguments=("--jobs", "2"),
        run=horn_vs_rnns.main,
        render=horn_vs_rnns.render,
    ),
}


def replace_block(page: str, name: str, block: str) -> str:
    """Put ``block`` between the page's ``begin generated``/``end generated`` markers of ``name``.

    Example:
        >>> page = "intro\\n<!-- begin generated: demo -->\\nold\\n<!-- end generated: demo -->\\n"
        >>> replace_block(page, "demo", "new\\n")
        'intro\\n<!-- begin generated: demo -->\\nnew\\n<!-- end generated: demo -->\\n'
    """
    begin, end = f"<!-- begin generated: {name} -->", f"<!-- end generated: {name} -->"
    pattern = re.compile(re.escape(begin) + r"\n.*?" + re.escape(end), flags=re.DOTALL)
    if len(pattern.findall(page)) != 1:
        raise ValueError(f"page must hold exactly one '{begin}' … '{end}' block for {name!r}")
    return pattern.sub(lambda _: f"{begin}\n{block}{end}", page)


def regenerate(name: str, *, run: bool = False, docs: str | Path = "docs") -> Path:
    """Re-run (optionally) and redraw one section of ``DOCS/results.md``; returns the page.

    Args:
        name: a key of :data:`SECTIONS`.
        run: run the experiment again first (writes ``DOCS/results/NAME.json``); otherwise
            redraw from the saved file.
        docs: the documentation folder (default ``docs``, relative to the working directory).
    """
    if name not in SECTIONS:
        raise ValueError(f"name must be one of {sorted(SECTIONS)}, got {name!r}")
    section = SECTIONS[name]
    docs = Path(docs)
    page_path = docs / "results.md"
    figures = docs / "results"
    json_path = figures / f"{name}.json"
    if run:
        figures.mkdir(parents=True, exist_ok=True)
        # The path is written relative to the working directory so that the recorded command
        # can be pasted as it is.
        section.run([*section.arguments, "--json", json_path.as_posix()])
    block = section.render(json_path, figures, "results/")
    page_path.write_text(replace_block(page_path.read_text(encoding="utf-8"), name, block))
    return page_path


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry: regenerate the named sections (default all)."""
    parser = argparse.ArgumentParser(
        prog="python -m dyna.train.results",
        description="Redraw the generated blocks of docs/results.md (tables and plots) from "
        "the saved results, or re-run the experiments first with --run.",
    )
    parser.add_argument(
        "sections", nargs="*", metavar="SECTION", help=f"any of {', '.join(SECTIONS)} (default all)"
    )
    parser.add_argument("--run", action="store_true", help="re-run the experiments first")
    parser.add_argument("--docs", default="docs", help="documentation folder (default docs)")
    arguments = parser.parse_args(argv)
    unknown = sorted(set(arguments.sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    for name in arguments.sections or SECTIONS:
        print(regenerate(name, run=arguments.run, docs=arguments.docs))


if __name__ == "__main__":
    main()
