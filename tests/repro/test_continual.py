"""Tests for ``repro/continual.py``: the paper's table, its results file and its command."""

import json
import subprocess
import sys

import pytest
import torch

from dyna.train.online import run_experiment
from repro.continual import format_table, load_results, main, save_results

TINY = 100


def test_experiment_table_and_command_line(capsys):
    rows = run_experiment(
        ["moons"],
        ["cdi"],
        ["cnu", "linear"],
        seeds=[1, 2],
        learning_rates=[0.1],
        weight_decays=[0.0],
        num_train=TINY,
    )
    mean, spread = rows[1].mean_std("average_accuracy")
    table = format_table(rows)
    lines = table.splitlines()
    assert lines[0].startswith("| data | order | model |") and len(lines) == 4
    assert lines[2].startswith("| MOONS | CDI | cnu | 0.01 | 0 | – |")
    assert f"{100 * mean:.1f} ± {100 * spread:.1f}" in lines[3]

    printed = main(
        "--streams modes --orders ci --models linear mlp --seeds 7 --num-train 100 "
        "--learning-rates 0.1 --weight-decays 0 --hidden-sizes 5 --quiet".split()
    )
    output = capsys.readouterr()
    assert len(printed) == 2 and output.err == ""
    assert "| MODES | CI | mlp | 0.1 | 0 | 5 |" in output.out


def test_module_entry_point():
    completed = subprocess.run(
        [sys.executable, "-m", "repro.continual", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("usage: python -m repro.continual")
    assert "--select-on" in completed.stdout and "--search-cnu" in completed.stdout


def test_results_file_round_trip(tmp_path, capsys):
    path = tmp_path / "results.json"
    rows = main(
        f"--streams moons --orders ci --models cnu replay --seeds 3 4 --num-train 100 "
        f"--learning-rates 0.1 --weight-decays 0 --hidden-sizes 5 --buffer-size 20 "
        f"--replay-size 2 --quiet --json {path}".split()
    )
    capsys.readouterr()
    loaded, metadata = load_results(path)
    assert metadata["command"].startswith("python -m repro.continual --streams moons")
    assert metadata["wall_seconds"] > 0 and metadata["cpu_seconds"] > 0
    assert metadata["torch"] == torch.__version__
    assert [row.model for row in loaded] == ["cnu", "replay"]
    for original, copy in zip(rows, loaded, strict=True):
        assert copy.seconds == original.seconds > 0
        for first, second in zip(original.results, copy.results, strict=True):
            assert torch.equal(first.matrix, second.matrix)
            assert first.cnu == second.cnu
            assert (first.buffer_size, first.replay_size) == (
                second.buffer_size,
                second.replay_size,
            )
            assert first.average_accuracy == second.average_accuracy
    assert loaded[1].results[0].buffer_size == 20 and loaded[1].results[0].replay_size == 2
    assert format_table(loaded) == format_table(rows)
    # Saved from the API with metadata of one's own.
    other = tmp_path / "other.json"
    save_results(other, rows[:1], {"note": "one row"})
    assert json.loads(other.read_text())["metadata"] == {"note": "one row"}
    with pytest.raises(TypeError, match="rows must hold ExperimentRow"):
        save_results(other, ["row"])
    with pytest.raises(TypeError, match="metadata must be a dict or None"):
        save_results(other, rows, "note")
    other.write_text("[1, 2]")
    with pytest.raises(ValueError, match="path must be a results file"):
        load_results(other)


def test_table_refuses_what_is_not_a_row():
    with pytest.raises(TypeError, match="rows must hold ExperimentRow"):
        format_table(["row"])
