"""The GPU benchmark script runs (``--smoke``: tiny shapes, the interpreter without a GPU)."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

pytest.importorskip("triton")


def _load():
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCHMARKS / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_gpu_benchmark_smoke_runs(capsys):
    module = _load()
    rows = module.main(["--smoke", "--only", "horn"])
    cases = [case for _, case, _ in rows]
    assert cases == [
        "T=6 B=3 n=4",
        "T=6 B=3 n=4 delays",
        "T=6 B=3 n=20",
        "T=6 B=3 n=20 delays",
        "step T=6 B=3 n=4",
    ]
    assert set(rows[0][2]) == {"HORN", "HORN-torch", "LSTM", "RNN"}
    assert set(rows[2][2]) == {"HORN", "LSTM", "RNN"}
    assert all(seconds > 0 for _, _, times in rows for seconds in times.values())
    out = capsys.readouterr().out
    assert "HORN/LSTM" in out and "triton" in out


def test_gpu_benchmark_smoke_runs_the_dynamic_layer_sections(capsys):
    module = _load()
    assert {"horn", "dynconv", "cnu", "train"} <= set(module.SECTIONS)
    rows = module.main(["--smoke", "--only", "dynconv", "cnu"])
    assert [(section, case) for section, case, _ in rows] == [
        ("dynconv", "DynamicConv2DDelta B=2"),
        ("dynconv", "DynamicConv2DMobius B=2"),
        ("cnu", "LinearCNU m=4 d=2 b=3"),
    ]
    assert set(rows[0][2]) == {"Delta", "Delta-torch", "Conv2d"}
    assert set(rows[1][2]) == {"Mobius", "Mobius-torch", "Conv2d"}
    assert set(rows[2][2]) == {"LinearCNU", "LinearCNU-torch", "Linear"}
    assert all(seconds > 0 for _, _, times in rows for seconds in times.values())
    out = capsys.readouterr().out
    assert "Delta/Conv2d" in out and "LinearCNU/Linear" in out


def test_gpu_benchmark_failing_row_does_not_stop_the_table(capsys):
    module = _load()
    bench = module.Bench(device=torch.device("cpu"), repeats=1, warmup=0, smoke=True)

    def broken():
        raise RuntimeError("out of shared memory")

    assert bench.row("test", "broken row", lambda: {"A": broken}, "A") is None
    assert bench.row("test", "good row", lambda: {"A": lambda: None}, "A") is not None
    out = capsys.readouterr().out
    assert "broken row" in out and "FAILED: RuntimeError: out of shared memory" in out
    assert [case for _, case, _ in bench.rows] == ["good row"]


def test_gpu_benchmark_needs_a_gpu_without_smoke(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit):
        _load().main(["--only", "horn"])


def test_gpu_benchmark_smoke_runs_the_training_rows(capsys):
    module = _load()
    labels = [label for label, _ in module.TRAINING_COMMANDS]
    assert labels == ["horn-smnist", "horn-smnist --cuda-graph"]
    assert all("--device" in argv and "cuda" in argv for _, argv in module.TRAINING_COMMANDS)
    rows = module.main(["--smoke", "--only", "train"])
    assert [(section, case) for section, case, _ in rows] == [("train", "horn-smnist")]
    out = capsys.readouterr().out
    assert "samples/s" in out and "horn-smnist --cuda-graph       skipped: needs CUDA" in out
