"""The compact spectral benchmark runs (tiny sizes, one repeat); timings are never asserted."""

import importlib.util
import math
from pathlib import Path

import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load():
    spec = importlib.util.spec_from_file_location(
        "bench_compact_spectral", BENCHMARKS / "compact_spectral.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compact_spectral_benchmark_runs(capsys):
    bench = _load()
    threads = torch.get_num_threads()
    try:
        arguments = "--batch 4 --repeats 1 --warmup 0 --factors 2 3 --sketch-dims 8 16"
        rows = bench.main([*arguments.split(), "--span", "4", "--points", "3", "--backward"])
    finally:
        torch.set_num_threads(threads)
    assert {(row.factors, row.sketch_dim) for row in rows} == {(2, 8), (2, 16), (3, 8), (3, 16)}
    assert all(row.csm_seconds > 0 and row.explicit_seconds > 0 for row in rows)
    for row in rows:
        assert row.product_dim == row.mode_dim**row.factors
        assert row.crossover_model == row.factors * row.sketch_dim * math.log2(row.sketch_dim)
    out = capsys.readouterr().out
    assert "measured crossover" in out and "CSM faster for every P >= 4 P*" in out


def test_sweep_spans_the_model_crossover_and_caps_the_batch():
    bench = _load()
    # K = 2, D = 256: P* = 4096, d = 16 … 256 gives P = 256 … 65 536 = P*/16 … 16 P*.
    assert bench.mode_dims(2, 256, 16.0, 5) == [16, 32, 64, 128, 256]
    # The smallest d with P ≥ each target, so the 4 P* point counts for the requirement.
    p_star = 3 * 4096 * 12
    dims = bench.mode_dims(3, 4096, 16.0, 5)
    targets = [p_star / 16, p_star / 4, p_star, 4 * p_star, 16 * p_star]
    assert all(d**3 >= t > (d - 1) ** 3 for d, t in zip(dims, targets, strict=True))
    xs = [torch.arange(2.0).reshape(1, 2), torch.tensor([[1.0, 10.0, 100.0]])]
    expected = [[0.0, 0.0, 0.0, 1.0, 10.0, 100.0]]
    assert bench.explicit_product(xs).tolist() == expected


def test_crossover_interpolation():
    bench = _load()

    def row(product_dim, ratio):
        return bench.Row(2, 16, 1, product_dim, 128.0, 1, ratio, 1.0)

    assert bench.crossover([row(100, 0.5), row(400, 0.1)]) == "< 100"
    assert bench.crossover([row(100, 2.0), row(400, 1.5)]) == "> 400"
    # log ratio 2 → 1/2 between P = 128 and 512: crosses halfway in log P, at 256 = 2 P*.
    assert bench.crossover([row(128, 2.0), row(512, 0.5)]) == "256 = 2.00 P*"
