"""The continual-learning benchmark script runs (tiny sizes, one repeat); no timing is asserted."""

import importlib.util
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_continual_benchmark_runs(capsys):
    spec = importlib.util.spec_from_file_location("bench_continual", BENCHMARKS / "continual.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.main(["--steps", "5", "--num-train", "100", "--repeats", "1"])
    assert len(rows) == 3
    assert all(ours > 0 and base > 0 for _, ours, base in rows)
    assert "ratio" in capsys.readouterr().out
