"""The engine's one entry point: ``dyna.train.run`` runs both kinds of experiment in-process."""

import json

import pytest

from dyna.experiments import ConfigError, get_experiment
from dyna.train import RunOptions, run

TINY = {"n_hidden": 8}


def test_run_trains_a_supervised_experiment_and_resumes_it(tmp_path):
    experiment = get_experiment("horn-digits")
    options = RunOptions(training={"epochs": 1, "batch_size": 64}, quiet=True)
    summary = run(experiment, TINY, tmp_path / "r", options)
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert summary["epochs"] == 1 and config["params"]["n_hidden"] == 8
    assert config["epochs"] == 1 and config["lr"] == experiment.defaults.lr
    # Resume: what the call leaves out comes from the checkpoint, including --set values.
    resumed = run(experiment, {}, tmp_path / "r", RunOptions(resume=True, quiet=True))
    assert resumed["final_test_accuracy"] == summary["final_test_accuracy"]
    with pytest.raises(ConfigError, match=r"options differ.*--set n_hidden: 8 -> 16"):
        run(experiment, {"n_hidden": 16}, tmp_path / "r", RunOptions(resume=True, quiet=True))
    with pytest.raises(ConfigError, match="already holds a run"):
        run(experiment, TINY, tmp_path / "r", options)


def test_run_runs_an_online_experiment(tmp_path, capsys):
    experiment = get_experiment("cnu-stream")
    results = run(experiment, {"models": ("linear",), "num_train": 100}, tmp_path / "c")
    assert [row["model"] for row in results["rows"]] == ["linear"]
    saved = json.loads((tmp_path / "c" / "results.json").read_text())
    assert saved["config"]["params"]["models"] == ["linear"]
    assert "ACC %" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="--epochs do"):
        run(experiment, {}, tmp_path / "d", RunOptions(training={"epochs": 2}))


def test_run_checks_its_arguments(tmp_path):
    experiment = get_experiment("horn-digits")
    with pytest.raises(TypeError, match="experiment must be an Experiment"):
        run("horn-digits", {}, tmp_path)
    with pytest.raises(TypeError, match="params must be a mapping"):
        run(experiment, [("n_hidden", 8)], tmp_path)
    with pytest.raises(TypeError, match="options must be a RunOptions"):
        run(experiment, {}, tmp_path, {"quiet": True})
    with pytest.raises(ValueError, match="training must hold only"):
        RunOptions(training={"epoch": 3})
    with pytest.raises(ConfigError, match="no hyper-parameter 'width'"):
        experiment.parse_assignments({"width": "3"})
    with pytest.raises(ConfigError, match="contradict"):
        run(experiment, {}, tmp_path, RunOptions(resume=True, overwrite=True))
    assert not any(tmp_path.iterdir())
