"""Compact Spectral Multiplier features against the explicit tensor product, CPU, one process.

For each K (modes) and D (sketch dimension) the script sweeps equal mode sizes d so that
P = d^K spans P*/16 … 16·P* around the cost model's crossover P* = K·D·log₂D, and times
``CompactSpectralMultiplier.features`` (D numbers per sample) against the flattened tensor
product ⊗_k x_k (P numbers per sample) alternately in this process (median of the repeats after
warm-up). Times are per sample; the batch shrinks for the largest P so that the explicit product
stays under ``--max-bytes``. It prints the table, the measured crossover per (K, D) (log-linear
interpolation of the time ratio) and whether CSM is faster for every P ≥ 4·P*.

Usage: python benchmarks/compact_spectral.py [--batch 512] [--repeats 7] [--warmup 2]
       [--threads 1] [--factors 2 3] [--sketch-dims 256 1024 4096] [--span 16] [--backward]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import NamedTuple

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _timing import median_seconds

from dyna.lib import CompactSpectralMultiplier

BYTES_PER_VALUE = 4  # float32


class Row(NamedTuple):
    factors: int  # K
    sketch_dim: int  # D
    mode_dim: int  # d, every mode
    product_dim: int  # P = d^K
    crossover_model: float  # P* = K·D·log₂D
    batch: int
    csm_seconds: float  # per sample
    explicit_seconds: float  # per sample

    @property
    def ratio(self) -> float:
        """CSM time over explicit time (< 1: CSM faster)."""
        return self.csm_seconds / self.explicit_seconds


def explicit_product(xs: list[torch.Tensor]) -> torch.Tensor:
    """The flattened outer product ⊗_k x_k: (B, Π d_k)."""
    product = xs[0]
    for x in xs[1:]:
        product = (product.unsqueeze(-1) * x.unsqueeze(-2)).flatten(-2)
    return product


def mode_dims(factors: int, sketch_dim: int, span: float, points: int) -> list[int]:
    """Equal mode sizes d whose P = d^K reach log-even targets P*/span … span·P* (no repeats)."""
    crossover = factors * sketch_dim * math.log2(sketch_dim)
    exponents = [-1 + 2 * i / (points - 1) for i in range(points)] if points > 1 else [0.0]
    dims: list[int] = []
    for exponent in exponents:
        # The smallest d with P ≥ the target, so the 4·P* point counts for the requirement.
        d = max(1, math.ceil((crossover * span**exponent) ** (1 / factors) - 1e-9))
        if d not in dims:
            dims.append(d)
    return dims


def crossover(rows: list[Row]) -> str:
    """The P where the time ratio crosses 1, interpolated in log P and log ratio."""
    if all(row.ratio < 1 for row in rows):
        return f"< {rows[0].product_dim}"
    last_slower = max(i for i, row in enumerate(rows) if row.ratio >= 1)
    if last_slower == len(rows) - 1:
        return f"> {rows[-1].product_dim}"
    below, above = rows[last_slower], rows[last_slower + 1]
    fraction = math.log(below.ratio) / (math.log(below.ratio) - math.log(above.ratio))
    log_p = math.log(below.product_dim) + fraction * (
        math.log(above.product_dim) - math.log(below.product_dim)
    )
    value = math.exp(log_p)
    return f"{value:,.0f} = {value / below.crossover_model:.2f} P*"


def settle_allocator() -> None:
    """Let glibc's malloc serve batch-sized buffers from its heap, as in a long-running process.

    glibc maps every allocation above its mmap threshold (initially 128 KiB) afresh, paying a
    page fault per 4 KiB on first touch, and raises the threshold to the size of the largest
    mapped block freed so far (at most 32 MiB). Without this, whichever configuration runs first
    pays those faults on every call (measured 3-4x on CSM's 0.5 MiB spectra); buffers above
    32 MiB (the large explicit products) are mapped afresh on every call either way.
    """
    block = torch.empty(4 * 2**20)  # 16 MiB
    block.fill_(0.0)
    del block


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description="CSM features vs the explicit tensor product")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--factors", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--sketch-dims", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--span", type=float, default=16.0, help="sweep P*/span … span·P*")
    parser.add_argument("--points", type=int, default=5, help="sizes per (K, D)")
    parser.add_argument("--max-bytes", type=int, default=2**30, help="explicit product cap")
    parser.add_argument("--backward", action="store_true", help="time forward + backward")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    settle_allocator()

    mode = "forward + backward" if args.backward else "forward"
    print(
        f"CSM features vs explicit tensor product ({mode}), float32, CPU, "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); times per sample"
    )
    header = (
        f"{'K':>2} {'D':>5} {'d':>5} {'P':>10} {'P/P*':>6} {'batch':>5} "
        f"{'CSM us':>9} {'explicit us':>11} {'ratio':>6} {'CSM B':>6} {'explicit B':>10} "
        f"{'saved':>7}"
    )
    print(header)
    rows: list[Row] = []
    summaries = []
    for factors in args.factors:
        for sketch_dim in args.sketch_dims:
            group = []
            p_star = factors * sketch_dim * math.log2(sketch_dim)
            for d in mode_dims(factors, sketch_dim, args.span, args.points):
                product_dim = d**factors
                budget = args.max_bytes // (BYTES_PER_VALUE * product_dim)
                batch = max(1, min(args.batch, budget))
                module = CompactSpectralMultiplier([d] * factors, sketch_dim, seed=0)
                xs = [torch.randn(batch, d, requires_grad=args.backward) for _ in range(factors)]

                def run(function, xs=xs):
                    if not args.backward:
                        with torch.no_grad():
                            return function(xs)
                    for x in xs:
                        x.grad = None
                    function(xs).sum().backward()

                csm, explicit = median_seconds(
                    lambda run=run, module=module: run(module.features),
                    lambda run=run: run(explicit_product),
                    repeats=args.repeats,
                    warmup=args.warmup,
                )
                row = Row(factors, sketch_dim, d, product_dim, p_star, batch, csm / batch,
                          explicit / batch)  # fmt: skip
                group.append(row)
                csm_bytes = BYTES_PER_VALUE * sketch_dim
                explicit_bytes = BYTES_PER_VALUE * product_dim
                print(
                    f"{factors:>2} {sketch_dim:>5} {d:>5} {product_dim:>10,} "
                    f"{product_dim / p_star:>6.2f} {batch:>5} {row.csm_seconds * 1e6:>9.2f} "
                    f"{row.explicit_seconds * 1e6:>11.2f} {row.ratio:>6.2f} {csm_bytes:>6,} "
                    f"{explicit_bytes:>10,} {explicit_bytes / csm_bytes:>6.0f}x"
                )
            rows.extend(group)
            summaries.append((factors, sketch_dim, p_star, crossover(group)))
    print("\nmeasured crossover (CSM faster above):")
    for factors, sketch_dim, p_star, where in summaries:
        print(f"  K={factors} D={sketch_dim:<5} P*={p_star:>9,.0f}: P ≈ {where}")
    slower = [row for row in rows if row.product_dim >= 4 * row.crossover_model and row.ratio >= 1]
    required = [row for row in rows if row.product_dim >= 4 * row.crossover_model]
    verdict = (
        "met"
        if not slower
        else "NOT met for "
        + ", ".join(f"K={r.factors} D={r.sketch_dim} P={r.product_dim}" for r in slower)
    )
    print(f"CSM faster for every P >= 4 P* ({len(required)} configurations): {verdict}")
    return rows


if __name__ == "__main__":
    main()
