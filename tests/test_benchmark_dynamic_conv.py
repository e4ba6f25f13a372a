"""The dynamic-convolution benchmark script runs (tiny sizes, one repeat); no timing is asserted."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "dynamic_conv.py"


def test_dynamic_conv_benchmark_runs(capsys):
    spec = importlib.util.spec_from_file_location("bench_dynamic_conv", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.main(
        ["--batch", "2", "--channels", "2", "--size", "5", "--context", "4", "--repeats", "1",
         "--warmup", "0"]
    )  # fmt: skip
    assert [name for name, _, _ in rows][:2] == ["DynamicConv2DDelta", "DynamicConv2DMobius"]
    assert len(rows) == 9
    assert all(ours > 0 and base > 0 for _, ours, base in rows)
    assert "ratio" in capsys.readouterr().out
