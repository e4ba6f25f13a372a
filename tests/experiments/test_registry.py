"""The experiment registry: --set parsing and checking, lookups, and every declaration builds."""

import math
from pathlib import Path

import pytest
import torch

from dyna.experiments import (
    ConfigError,
    Experiment,
    OnlineExperiment,
    Param,
    SupervisedExperiment,
    experiments,
    get_experiment,
    register,
)
from dyna.experiments.registry import TrainingDefaults

MNIST_10K = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist-10k"
REQUIRED = {
    "horn-digits", "horn-smnist", "horn-psmnist", "lstm-digits", "lstm-smnist", "lstm-psmnist",
    "gru-digits", "gru-smnist", "gru-psmnist", "rnn-digits", "rnn-smnist", "rnn-psmnist",
    "cnu-stream", "dynconv-digits", "dynconv-mnist",
}  # fmt: skip


def test_param_parses_each_type_and_checks_ranges():
    assert Param(3, "n", minimum=1).parse("k", "7") == 7
    assert Param(0.5, "a", minimum=0.0).parse("k", "2") == 2.0
    assert Param(True, "b").parse("k", "off") is False
    assert Param("last", "r", choices=("last", "mean")).parse("k", "mean") == "mean"
    assert Param((1,), "s", minimum=0).parse("k", "4,5") == (4, 5)
    with pytest.raises(ConfigError, match=r"n_hidden=0 is out of range: expected int >= 1"):
        Param(3, "n", minimum=1).parse("n_hidden", "0")
    with pytest.raises(ConfigError, match=r"--set alpha=abc: expected float >= 0"):
        Param(0.5, "a", minimum=0.0).parse("alpha", "abc")
    with pytest.raises(ConfigError, match="expected true or false"):
        Param(True, "b").parse("paper", "maybe")
    with pytest.raises(ConfigError, match="expected one of last, mean"):
        Param("last", "r", choices=("last", "mean")).parse("readout", "first")
    with pytest.raises(ConfigError, match="finite"):
        Param(0.5, "a").parse("alpha", "nan")
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        Param(0.5, "a", minimum=0.0, maximum=1.0).parse("p", "1.5")


def test_resolve_params_names_unknown_keys_and_the_fix():
    experiment = get_experiment("horn-digits")
    values = experiment.resolve_params({"n_hidden": "16", "omega": "0.3"})
    assert values["n_hidden"] == 16 and values["omega"] == 0.3
    assert math.isclose(experiment.resolve_params({})["omega"], 2 * math.pi / 8)
    with pytest.raises(ConfigError, match=r"no hyper-parameter 'width'.*valid keys: .*n_hidden"):
        experiment.resolve_params({"width": "3"})
    with pytest.raises(ConfigError, match="unknown"):
        experiment.check_params({**values, "width": 3})


def test_registry_lookup_and_registration_errors():
    names = {experiment.name for experiment in experiments()}
    assert REQUIRED <= names
    with pytest.raises(ConfigError, match=r"unknown experiment 'horn-cifar'.*dyna list"):
        get_experiment("horn-cifar")
    with pytest.raises(ValueError, match="already registered"):
        register(get_experiment("horn-digits"))
    with pytest.raises(TypeError, match="experiment must be an Experiment"):
        register("horn-digits")


def test_both_kinds_share_one_interface():
    # No kind string decides the fields: each kind needs its own and refuses the other's.
    with pytest.raises(TypeError, match="abstract"):
        Experiment("broken", "neither kind")
    with pytest.raises(TypeError, match="data"):
        SupervisedExperiment("broken", "no builders")
    with pytest.raises(TypeError, match="runner"):
        OnlineExperiment("broken", "no runner")
    with pytest.raises(TypeError, match="kind"):
        SupervisedExperiment("broken", "bad kind", kind="reinforcement")
    for experiment in experiments():
        assert isinstance(experiment, (SupervisedExperiment, OnlineExperiment))
        assert callable(experiment.run) and experiment.summary()
    supervised, online = get_experiment("horn-digits"), get_experiment("cnu-stream")
    assert supervised.option_defaults()["epochs"] == supervised.defaults.epochs
    assert online.option_defaults() == {} and online.summary() == "one online pass"
    assert (supervised.kind, online.kind) == ("supervised", "continual")


def test_the_recipes_defaults():
    # The reference script's sMNIST recipe: n = 32, h = 1, α = 0.04, ω = 0.224, γ = 0.01,
    # AdamW lr 1e-2, batch 64, 10 epochs, seed 1, 1,000 validation images.
    smnist = get_experiment("horn-psmnist")
    params = smnist.resolve_params({})
    assert (params["n_hidden"], params["dt"], params["alpha"]) == (32, 1.0, 0.04)
    assert (params["omega"], params["gamma"], params["validation"]) == (0.224, 0.01, 1000)
    assert params["permuted"] and params["paper"]
    defaults = smnist.defaults
    assert (defaults.lr, defaults.batch_size, defaults.epochs, defaults.seed) == (0.01, 64, 10, 1)
    # Baselines at equal hidden size.
    assert get_experiment("lstm-smnist").resolve_params({})["n_hidden"] == 32
    assert get_experiment("gru-digits").resolve_params({})["n_hidden"] == 64
    assert isinstance(get_experiment("dynconv-digits").defaults, TrainingDefaults)


@pytest.mark.parametrize(
    "name", ["horn-digits", "lstm-digits", "gru-digits", "rnn-digits", "dynconv-digits"]
)
def test_digit_experiments_build_data_and_a_model_that_runs(name):
    experiment = get_experiment(name)
    params = experiment.resolve_params({})
    data = experiment.data(params, None)
    assert (len(data.train), len(data.test), data.num_classes) == (1438, 359, 10)
    model = experiment.model(params, data)
    logits = model(data.train.inputs[:3])
    assert logits.shape == (3, 10)
    expected = (1438, 1, 8, 8) if name.startswith("dynconv") else (1438, 64, 1)
    assert tuple(data.train.inputs.shape) == expected


@pytest.mark.skipif(not MNIST_10K.is_dir(), reason="the shared MNIST-10k folder is absent")
def test_psmnist_applies_one_fixed_permutation_to_every_split():
    small = {"train_samples": "20", "test_samples": "10", "validation": "100"}
    plain = get_experiment("horn-smnist")
    permuted = get_experiment("horn-psmnist")
    a = plain.data(plain.resolve_params(small), MNIST_10K)
    b = permuted.data(permuted.resolve_params(small), MNIST_10K)
    assert a.train.inputs.shape == (20, 784, 1) and len(a.validation) == 10
    order = torch.randperm(784, generator=torch.Generator().manual_seed(1))
    for split in ("train", "test", "validation"):
        torch.testing.assert_close(
            getattr(b, split).inputs, getattr(a, split).inputs[:, order], rtol=0, atol=0
        )
    with pytest.raises(ConfigError, match="--data"):
        plain.data(plain.resolve_params({}), None)
