"""Property tests for the engine's entry point: what a run records is what it was given."""

import json
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

import dyna.train
from dyna.experiments import get_experiment
from dyna.train.config import TRAINING_OPTIONS
from dyna.train.launch import resolve_config

COVERED = {"RunOptions", "run"}

_OPTION_VALUES = {
    "epochs": st.integers(1, 50),
    "batch_size": st.integers(1, 512),
    "lr": st.floats(1e-5, 1.0),
    "weight_decay": st.floats(0.0, 0.1),
    "seed": st.integers(0, 2**31 - 1),
    "eval_batch_size": st.integers(1, 4096),
    "checkpoint_every": st.integers(0, 100),
    "log_every": st.integers(1, 100),
    "threads": st.integers(0, 4),
    "schedule": st.sampled_from(["constant", "cosine"]),
}


@given(
    name=st.sampled_from(["horn-digits", "lstm-digits", "dynconv-digits"]),
    given_options=st.fixed_dictionaries({}, optional=_OPTION_VALUES),
    n_hidden_or_seed=st.integers(1, 64),
)
def test_a_fresh_configuration_is_the_defaults_overridden_by_what_is_given(
    name, given_options, n_hidden_or_seed
):
    experiment = get_experiment(name)
    key = "n_hidden" if "n_hidden" in experiment.params else "split_seed"
    options = dyna.train.RunOptions(training=given_options)
    with tempfile.TemporaryDirectory() as folder:
        config = resolve_config(experiment, {key: n_hidden_or_seed}, Path(folder), options)
        assert not any(Path(folder).iterdir())  # resolving writes nothing
    for option in TRAINING_OPTIONS:
        expected = given_options.get(option, getattr(experiment.defaults, option))
        assert getattr(config, option) == expected
    assert config.params == {**experiment.resolve_params(), key: n_hidden_or_seed}
    assert config.experiment == name and config.device == "auto" and config.data is None


@settings(max_examples=4)
@given(
    models=st.lists(st.sampled_from(["linear", "mlp"]), min_size=1, max_size=2, unique=True),
    seeds=st.lists(st.integers(0, 10_000), min_size=1, max_size=2, unique=True),
    num_train=st.integers(100, 140),
)
def test_an_online_run_records_its_configuration_and_one_row_per_model(models, seeds, num_train):
    experiment = get_experiment("cnu-stream")
    params = {"models": tuple(models), "seeds": tuple(seeds), "num_train": num_train}
    with tempfile.TemporaryDirectory() as folder:
        results = dyna.train.run(experiment, params, folder, dyna.train.RunOptions(quiet=True))
        saved = json.loads((Path(folder) / "results.json").read_text())
    assert [row["model"] for row in results["rows"]] == models
    for row in results["rows"]:
        assert [run["seed"] for run in row["runs"]] == seeds
        assert 0.0 <= row["average_accuracy"] <= 1.0
    assert saved["config"]["params"]["models"] == models
    assert saved["config"]["params"]["num_train"] == num_train
