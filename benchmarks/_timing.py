"""Timing helpers shared by the benchmark scripts: alternating runs, medians, ratios."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


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
