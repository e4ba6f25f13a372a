"""Run every benchmark script of this folder and print one table of ratios against PyTorch.

Each script times DyNA against a PyTorch baseline, alternately in one process, and returns its
rows; this runner calls them in turn (``--quick``: small sizes, a few seconds each on two
cores; ``--full``: each script's own default sizes) and prints one table. Like the ``dyna``
command, it keeps freed large blocks in glibc's heap (:mod:`dyna.train.allocator`); the table's
last line names the setting in force.

It needs DyNA installed (editable or not) and this folder, which is not part of the wheel::

    python benchmarks/run.py [--quick | --full] [--only NAME ...] [--threads N] [--verbose]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import sys
from collections.abc import Sequence

import torch

# The scripts import their helpers (_timing) as siblings, also when this file is imported.
FOLDER = os.path.dirname(os.path.abspath(__file__))
if FOLDER not in sys.path:
    sys.path.insert(0, FOLDER)

from dyna.train.allocator import allocator_setting, retain_freed_memory  # noqa: E402

# Each script with small sizes for --quick (a few seconds each on two cores).
QUICK_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "functional": ("--batch", "64", "--features", "256", "--repeats", "5"),
    "horn": ("--steps", "64", "--batch", "16", "--hidden", "32", "--repeats", "5", "--warmup", "1"),
    "cnu": (
        "--batch", "16", "--in-features", "64", "--out-features", "32", "--grid", "8:1",
        "--repeats", "5",
    ),
    "dynamic_conv": (
        "--batch", "4", "--channels", "8", "--size", "8", "--context", "8", "--repeats", "5",
        "--warmup", "1", "--no-extra",
    ),
    "compact_spectral": (
        "--batch", "16", "--repeats", "3", "--warmup", "1", "--factors", "2", "--sketch-dims",
        "64", "--points", "2",
    ),
    "continual": ("--steps", "50", "--num-train", "200", "--repeats", "3"),
}  # fmt: skip

# (script, case, our seconds, the baseline's seconds), and a row of the table: the same and the
# intra-op threads the script ran with.
Timing = tuple[str, str, float, float]
Row = tuple[str, str, float, float, int]


def table_rows(name: str, rows: Sequence) -> list[Timing]:
    """A script's rows as (script, case, ours seconds, baseline seconds)."""
    table = []
    for row in rows:
        if hasattr(row, "csm_seconds"):
            case = f"K={row.factors} D={row.sketch_dim} d={row.mode_dim}"
            table.append((name, case, row.csm_seconds, row.explicit_seconds))
        else:
            case, ours, base = row[:3]
            table.append((name, str(case), ours, base))
    return table


def run_scripts(
    names: Sequence[str], *, full: bool = False, threads: int | None = None, verbose: bool = False
) -> list[Row]:
    """Run the named scripts (quick sizes unless ``full``) and gather their rows."""
    table: list[Row] = []
    default_threads = torch.get_num_threads()
    for name in names:
        module = importlib.import_module(name)
        argv = [] if full else list(QUICK_ARGUMENTS[name])
        if threads:
            torch.set_num_threads(threads)
        print(f"running benchmarks/{name}.py {' '.join(argv)}", file=sys.stderr, flush=True)
        with contextlib.redirect_stdout(sys.stdout if verbose else io.StringIO()):
            rows = module.main(argv)
        # Read before restoring: a script may set its own count (compact_spectral uses one).
        used = torch.get_num_threads()
        table.extend((*row, used) for row in table_rows(name, rows))
        torch.set_num_threads(default_threads)
    return table


def format_ratios(table: Sequence[Row]) -> str:
    """The table of ratios, each row with its threads, and a last line naming torch and the
    allocator."""
    width = max([len("case"), *(len(case) for _, case, _, _, _ in table)])
    lines = [
        f"{'script':<16} {'case':<{width}} {'ours ms':>10} {'base ms':>10} {'ratio':>7} threads"
    ]
    for name, case, ours, base, threads in table:
        lines.append(
            f"{name:<16} {case:<{width}} {ours * 1e3:10.4f} {base * 1e3:10.4f} "
            f"{ours / base:7.2f} {threads:>7}"
        )
    lines.append(
        f"ratio = ours / baseline (below 1: DyNA is faster); threads: torch's intra-op threads "
        f"each script ran with; torch {torch.__version__}, {allocator_setting()}"
    )
    return "\n".join(lines)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> list[Row]:
    """Command-line entry: run the scripts, print the table, return its rows."""
    parser = argparse.ArgumentParser(
        prog="python benchmarks/run.py",
        description="Run the benchmark scripts (each times DyNA against a PyTorch baseline, "
        "alternately in one process) and print one table of ratios.",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small sizes, few repeats (default)")
    size.add_argument("--full", action="store_true", help="each script's own default sizes")
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        help=f"run only these ({', '.join(QUICK_ARGUMENTS)})",
    )
    parser.add_argument(
        "--threads",
        type=_positive_int,
        metavar="N",
        help="torch intra-op threads for every script (default: torch's); on a busy machine "
        "--threads 1 gives steadier ratios",
    )
    parser.add_argument("--verbose", action="store_true", help="also print each script's output")
    arguments = parser.parse_args(argv)
    names = arguments.only or list(QUICK_ARGUMENTS)
    unknown = [name for name in names if name not in QUICK_ARGUMENTS]
    if unknown:
        parser.error(
            f"--only: unknown benchmark(s) {', '.join(unknown)}: choose from "
            f"{', '.join(QUICK_ARGUMENTS)}"
        )
    # Like the dyna command, the runner owns its process: large per-step temporaries are
    # reused from the heap instead of being faulted in from the kernel on every step.
    retain_freed_memory()
    table = run_scripts(
        names, full=arguments.full, threads=arguments.threads, verbose=arguments.verbose
    )
    print(format_ratios(table))
    return table


if __name__ == "__main__":
    main()
