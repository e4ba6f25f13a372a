"""The dynamic-convolution benchmark's compiled rows run (tiny sizes, eager capture backend)."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "dynamic_conv.py"


def test_dynamic_conv_benchmark_compiled_rows_run(capsys):
    spec = importlib.util.spec_from_file_location("bench_dynamic_conv_compile", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.main(
        ["--batch", "2", "--channels", "2", "--size", "5", "--context", "4", "--repeats", "1",
         "--warmup", "0", "--no-extra", "--compile", "--compile-backend", "eager"]
    )  # fmt: skip
    assert [name for name, _, _ in rows] == [
        "DynamicConv2DDelta",
        "DynamicConv2DMobius",
        "Delta compiled",
        "Mobius compiled",
        "Delta compiled vs compiled conv",
        "Mobius compiled vs compiled conv",
    ]
    assert all(ours > 0 and base > 0 for _, ours, base in rows)
    assert "ratio" in capsys.readouterr().out
