"""The benchmark scripts run (tiny sizes, one repeat); timings are never asserted in tests."""

import importlib.util
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_functional_benchmark_runs(capsys):
    spec = importlib.util.spec_from_file_location("bench_functional", BENCHMARKS / "functional.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.main(["--batch", "4", "--features", "8", "--repeats", "1"])
    assert len(rows) == 5
    assert all(ours > 0 and base > 0 for _, ours, base in rows)
    assert "ratio" in capsys.readouterr().out
