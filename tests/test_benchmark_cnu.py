"""The CNU benchmark script runs (tiny sizes, one repeat); timings are never asserted in tests."""

import importlib.util
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "cnu.py"


def test_cnu_benchmark_runs(capsys):
    spec = importlib.util.spec_from_file_location("bench_cnu", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    arguments = ["--batch", "4", "--in-features", "8", "--out-features", "3", "--grid", "4:1,6:2"]
    rows = module.main([*arguments, "--repeats", "1", "--strategies", "--reference", "--conv"])
    rows += module.main([*arguments, "--repeats", "1", "--threads", "1", "--breakdown"])
    # Per grid point: auto, dense, grouped, materialising, conv; then auto and three pieces.
    assert len(rows) == 2 * 5 + 2 * 4
    assert all(ours > 0 and base > 0 for _, ours, base in rows)
    output = capsys.readouterr().out
    assert "ratio" in output and "LinearCNU m=6 d=2 grouped vs Linear" in output
    assert "LinearCNU m=4 d=1 key path vs Linear" in output
    assert "LinearCNU m=6 d=2 blend fwd+bwd vs Linear" in output


def test_cnu_benchmark_summarises_several_runs(capsys):
    spec = importlib.util.spec_from_file_location("bench_cnu_runs", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    arguments = ["--batch", "3", "--in-features", "6", "--out-features", "2", "--grid", "4:2"]
    rows = module.main([*arguments, "--repeats", "1", "--threads", "1", "--runs", "2"])
    assert [name for name, _, _ in rows] == ["LinearCNU m=4 d=2 auto vs Linear"] * 2
    output = capsys.readouterr().out
    assert "over 2 runs" in output and "median  lowest highest" in output
