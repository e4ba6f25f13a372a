"""The benchmark scripts run (tiny sizes, one repeat); timings are never asserted in tests."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_functional_benchmark_runs(capsys):
    spec = importlib.util.spec_from_file_location("bench_functional", BENCHMARKS / "functional.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.main(["--batch", "4", "--features", "8", "--repeats", "1"])
    assert len(rows) == 5
    assert all(ours > 0 and base > 0 for _, ours, base in rows)
    assert "ratio" in capsys.readouterr().out


def _runner():
    spec = importlib.util.spec_from_file_location("bench_run", BENCHMARKS / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_runner_prints_one_table_of_ratios(capsys):
    threads = torch.get_num_threads()
    try:
        rows = _runner().main(["--only", "functional", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert len(rows) == 5 and "ratio" in out and out.count("functional") >= 5
    # The footer says which allocator setting the timings ran under (the runner applies it).
    from dyna.train.allocator import freed_memory_retained

    assert ("freed memory retained" if freed_memory_retained() else "default malloc") in out


def test_runner_refuses_an_unknown_benchmark(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _runner().main(["--only", "nope"])
    assert exit_info.value.code == 2
    assert "unknown benchmark(s) nope" in capsys.readouterr().err


def test_runner_works_from_another_directory(tmp_path):
    # Found by its own path, not by the installed package's location.
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "run.py"), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0 and "--only" in result.stdout


def test_each_row_names_the_threads_its_script_ran_with(capsys):
    # compact_spectral sets one thread itself, whatever the runner was given; the runner's
    # own count is restored after each script, so it cannot be what the table reports.
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        rows = _runner().main(["--only", "functional", "compact_spectral"])
    finally:
        torch.set_num_threads(threads)
    by_script = {name: used for name, _, _, _, used in rows}
    assert by_script == {"functional": 2, "compact_spectral": 1}
    out = capsys.readouterr().out
    assert out.splitlines()[0].endswith("threads")
