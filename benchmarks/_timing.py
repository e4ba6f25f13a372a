"""Timing helpers shared by the benchmark scripts: alternating runs, medians, ratios."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from dyna.train import allocator


def add_allocator_option(parser: argparse.ArgumentParser) -> None:
    """``--retain-freed-memory``: glibc keeps freed large blocks, as under the ``dyna`` command."""
    parser.add_argument(
        "--retain-freed-memory",
        action="store_true",
        help="keep freed large blocks in glibc's heap for reuse (dyna.train.allocator; "
        "the dyna command does this)",
    )


def allocator_setting(args: argparse.Namespace) -> str:
    """Apply ``--retain-freed-memory`` if given; the allocator's state for the table header."""
    if args.retain_freed_memory:
        allocator.retain_freed_memory()
    return allocator.allocator_setting()


def median_seconds(
    candidate: Callable[[], object],
    baseline: Callable[[], object],
    *,
    repeats: int = 15,
    warmup: int = 3,
) -> tuple[float, float]:
    """Median wall time of ``candidate`` and ``baseline``, run alternately in this process."""
    for _ in range(warmup):
        candidate()
        baseline()
    candidate_times, baseline_times = [], []
    for _ in range(repeats):
        for function, times in ((candidate, candidate_times), (baseline, baseline_times)):
            start = time.perf_counter()
            function()
            times.append(time.perf_counter() - start)
    return statistics.median(candidate_times), statistics.median(baseline_times)


def time_cases(
    cases: list[tuple[str, Callable[[], object], Callable[[], object]]],
    *,
    repeats: int,
    warmup: int = 3,
    baseline_label: str = "base ms",
) -> list[tuple[str, float, float]]:
    """Time each ``(name, candidate, baseline)`` with :func:`median_seconds` and print a table.

    Returns one ``(name, candidate seconds, baseline seconds)`` row per case.
    """
    width = max([len("case"), *(len(name) for name, _, _ in cases)])
    print(f"{'case':<{width}} {'ours ms':>9} {baseline_label:>9} {'ratio':>7}")
    rows = []
    for name, candidate, baseline in cases:
        ours, base = median_seconds(candidate, baseline, repeats=repeats, warmup=warmup)
        rows.append((name, ours, base))
        print(f"{name:<{width}} {ours * 1e3:9.3f} {base * 1e3:9.3f} {ours / base:7.2f}")
    return rows
