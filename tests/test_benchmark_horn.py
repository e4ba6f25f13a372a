"""The HORN benchmark script runs (tiny sizes, one repeat); timings are never asserted."""

import importlib.util
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_horn_benchmark_runs(capsys):
    spec = importlib.util.spec_from_file_location("bench_horn", BENCHMARKS / "horn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    argv = ["--steps", "6", "--batch", "2", "--hidden", "3", "--repeats", "1", "--warmup", "0"]
    rows = module.main(argv)
    assert [name for name, _, _ in rows] == [
        "n=3 vs LSTM",
        "n=3 vs RNN",
        "n=3 delays vs LSTM",
        "n=3 delays vs RNN",
    ]
    assert all(ours > 0 and base > 0 for _, ours, base in rows)
    assert len(module.main([*argv, "--forward-only"])) == 4
    assert "ratio" in capsys.readouterr().out
