"""The experience-replay benchmark script runs (tiny sizes, one repeat); no timing is asserted."""

import importlib.util
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_replay_benchmark_runs(capsys):
    spec = importlib.util.spec_from_file_location("bench_replay", BENCHMARKS / "replay.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.main(["--num-train", "100", "--buffer-size", "10", "--repeats", "1"])
    assert [name.split(":")[0] for name, _, _ in rows] == [
        "plan (n=100, c=10, k=4)",
        "plan (n=100, c=10, k=4)",
        "stream (n=100)",
        "stream (n=100)",
    ]
    assert all(ours > 0 and base > 0 for _, ours, base in rows)
    assert "ratio" in capsys.readouterr().out
    # The loop and the vectorised plan are different draws of the same process: same shapes.
    plan = module.planned(100, 10, 4)()
    looped = module.looped(100, 10, 4)()
    assert len(looped) == plan.replay_indices.shape[0] == 100
    assert [len(row) for row in looped] == plan.replay_counts()
