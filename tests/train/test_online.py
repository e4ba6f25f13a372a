"""Tests for ``dyna.train.online``: the online runner, the search and the paper's protocol.

Everything runs on tiny streams (100 training samples) so that the file takes a few seconds.
"""

import math
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dyna.data import make_stream
from dyna.module import LinearCNU
from dyna.train import continual_metrics, online
from dyna.train.online import (
    DEFAULT_BUFFER_SIZE,
    DEFAULT_REPLAY_SIZE,
    HIDDEN_SIZES,
    LEARNING_RATES,
    PAPER_CNU_HYPERPARAMETERS,
    PAPER_SEEDS,
    WEIGHT_DECAYS,
    CNUHyperparameters,
    ContinualResult,
    ExperimentRow,
    build_model,
    paper_cnu_hyperparameters,
    run_continual,
    run_experiment,
    search_hyperparameters,
)
from dyna.train.replay import reservoir_replay_schedule

TINY = 100


def test_paper_hyperparameters():
    # Table 1 of the paper's supplement (the reference at commit f7ea0ff of its repository).
    assert PAPER_SEEDS == (1234, 123456, 12346578)
    assert LEARNING_RATES == (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    assert WEIGHT_DECAYS == (0.0, 1e-4, 1e-3) and HIDDEN_SIZES == (5, 25)
    table = {
        # (beta_k, rho, gamma, tau_alpha, tau_eta, weight decay)
        ("modes", "ci"): (1e-2, 1e-2, 25.0, 0.95, 50.0, 0.0),
        ("modes", "cdi"): (1e-2, 1e-1, 25.0, 0.95, 50.0, 0.0),
        ("modes", "cdid"): (1e-2, 1e-2, 25.0, 0.95, 50.0, 0.0),
        ("moons", "ci"): (1e-2, 1e-1, 25.0, 0.95, 50.0, 0.0),
        ("moons", "cdi"): (1e-2, 1e-2, 25.0, 0.95, 200.0, 0.0),
        ("moons", "cdid"): (1e-1, 1e-2, 5.0, 0.85, 200.0, 1e-3),
    }
    assert set(PAPER_CNU_HYPERPARAMETERS) == set(table)
    for key, values in table.items():
        config = PAPER_CNU_HYPERPARAMETERS[key]
        assert (config.key_mem_units, config.delta, config.tau_mu) == (8, 2, 50.0)
        assert (
            config.beta_k,
            config.learning_rate,
            config.gamma_alpha,
            config.tau_alpha,
            config.tau_eta,
            config.weight_decay,
        ) == values
    # No IID column: IID uses the class-incremental one.
    assert paper_cnu_hyperparameters("modes", "iid") == PAPER_CNU_HYPERPARAMETERS[("modes", "ci")]
    assert paper_cnu_hyperparameters("MOONS", "CDID").gamma_alpha == 5.0


def test_build_models():
    config = PAPER_CNU_HYPERPARAMETERS[("moons", "cdid")]
    cnu = build_model("cnu", 2, 4, cnu=config, dtype=torch.float64)
    assert isinstance(cnu, LinearCNU)
    assert (cnu.in_features, cnu.out_features, cnu.bias, cnu.shared_keys) == (2, 4, True, True)
    assert (cnu.key_mem_units, cnu.m, cnu.d, cnu.q, cnu.u, cnu.delta) == (8, 8, 2, 1, 12, 2)
    assert (cnu.beta_k, cnu.gamma_alpha, cnu.tau_alpha, cnu.tau_mu, cnu.tau_eta) == (
        0.1,
        5.0,
        0.85,
        50.0,
        200.0,
    )
    assert (cnu.upd_m, cnu.upd_k, cnu.psi_fn, cnu.scramble) == (
        "WTA",
        "ad_hoc_WTA",
        "identity",
        True,
    )
    assert cnu.M.dtype == torch.float64
    linear = build_model("linear", 2, 4)
    assert isinstance(linear, nn.Linear) and linear.weight.shape == (4, 2)
    mlp = build_model("mlp", 2, 4, hidden=5)
    assert [type(layer) for layer in mlp] == [nn.Linear, nn.Tanh, nn.Linear]
    assert mlp[0].weight.shape == (5, 2) and mlp[2].weight.shape == (4, 5)


def _manual_run(stream, learning_rate, seed):
    # The protocol written out plainly: seed, build, one SGD step per sample, a row per block.
    torch.manual_seed(seed)
    model = nn.Linear(2, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate)
    test = stream.test
    rows = []
    train = stream.train
    for index in range(len(train)):
        loss = F.cross_entropy(
            model(train.inputs[index : index + 1]), train.targets[index : index + 1]
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        last = index == len(train) - 1
        if last or train.distributions[index + 1] != train.distributions[index]:
            with torch.no_grad():
                predictions = model(test.inputs).argmax(dim=1)
            row = [
                (
                    predictions[test.distributions == block]
                    == test.targets[test.distributions == block]
                )
                .float()
                .mean()
                for block in range(test.num_distributions)
            ]
            rows.append(torch.stack(row))
    return torch.stack(rows)


@pytest.mark.parametrize("order", ["ci", "cdid"])
def test_runner_follows_the_online_protocol(order):
    stream = make_stream("moons", order, seed=5, num_train=TINY)
    expected = _manual_run(stream, 0.1, seed=5)
    result = run_continual(stream, order, "linear", seed=5, learning_rate=0.1)
    torch.testing.assert_close(result.matrix, expected, rtol=0, atol=1e-6)
    metrics = continual_metrics(expected)
    assert result.average_accuracy == pytest.approx(metrics.average_accuracy)
    assert result.average_forgetting == pytest.approx(metrics.average_forgetting)
    assert result.forward_transfer == pytest.approx(metrics.forward_transfer)


@pytest.mark.parametrize("model", ["cnu", "linear", "mlp", "replay"])
@pytest.mark.parametrize(("order", "rows"), [("iid", 1), ("ci", 4), ("cdi", 8)])
def test_end_to_end_tiny(model, order, rows):
    state = torch.get_rng_state()
    result = run_continual("modes", order, model, seed=3, num_train=TINY)
    assert torch.equal(torch.get_rng_state(), state)
    assert isinstance(result, ContinualResult)
    assert (result.stream, result.order, result.model, result.seed) == ("modes", order, model, 3)
    assert result.split == "test" and result.steps == TINY
    assert result.matrix.shape == (rows, rows) and result.matrix.dtype == torch.float32
    assert ((result.matrix >= 0) & (result.matrix <= 1)).all()
    assert 0.0 <= result.average_accuracy <= 1.0
    if rows == 1:
        assert result.average_forgetting == 0.0 and result.forward_transfer == 0.0
    assert result.hidden == (25 if model in ("mlp", "replay") else None)
    replay = (DEFAULT_BUFFER_SIZE, DEFAULT_REPLAY_SIZE) if model == "replay" else (None, None)
    assert (result.buffer_size, result.replay_size) == replay
    if model == "cnu":
        expected = paper_cnu_hyperparameters("modes", order)
        assert result.cnu == expected and result.learning_rate == expected.learning_rate
    else:
        assert result.cnu is None and result.learning_rate == 1e-2 and result.weight_decay == 0.0
    again = run_continual("modes", order, model, seed=3, num_train=TINY)
    assert torch.equal(again.matrix, result.matrix)


def _manual_replay_run(stream, learning_rate, seed, buffer_size, replay_size, hidden):
    # Experience replay written out plainly from its plan: at each step, the current sample and
    # the samples the plan draws from the buffer; the current sample's loss plus the mean loss of
    # the replayed ones; one SGD step; a row of the matrix at the end of each block.
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(2, hidden), nn.Tanh(), nn.Linear(hidden, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate)
    train, test = stream.train, stream.test
    plan = reservoir_replay_schedule(
        len(train), buffer_size, replay_size, generator=torch.Generator().manual_seed(seed)
    )
    rows = []
    for index in range(len(train)):
        replayed = [j for j in plan.replay_indices[index].tolist() if j >= 0]
        loss = F.cross_entropy(
            model(train.inputs[index : index + 1]), train.targets[index : index + 1]
        )
        if replayed:
            loss = loss + F.cross_entropy(model(train.inputs[replayed]), train.targets[replayed])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        last = index == len(train) - 1
        if last or train.distributions[index + 1] != train.distributions[index]:
            with torch.no_grad():
                predictions = model(test.inputs).argmax(dim=1)
            correct = (predictions == test.targets).float()
            rows.append(
                torch.stack(
                    [
                        correct[test.distributions == block].mean()
                        for block in range(test.num_distributions)
                    ]
                )
            )
    return torch.stack(rows)


@pytest.mark.parametrize(("order", "buffer_size", "replay_size"), [("ci", 50, 4), ("cdi", 6, 6)])
def test_replay_runner_follows_the_protocol(order, buffer_size, replay_size):
    assert (DEFAULT_BUFFER_SIZE, DEFAULT_REPLAY_SIZE) == (50, 4)
    stream = make_stream("modes", order, seed=4, num_train=TINY)
    expected = _manual_replay_run(stream, 0.1, 4, buffer_size, replay_size, hidden=5)
    result = run_continual(
        stream,
        None,
        "replay",
        seed=4,
        learning_rate=0.1,
        hidden=5,
        buffer_size=buffer_size,
        replay_size=replay_size,
    )
    torch.testing.assert_close(result.matrix, expected, rtol=0, atol=1e-6)
    assert (result.buffer_size, result.replay_size, result.hidden) == (buffer_size, replay_size, 5)
    # Replay changes the learning: the plain MLP from the same initialisation ends elsewhere.
    plain = run_continual(stream, None, "mlp", seed=4, learning_rate=0.1, hidden=5)
    assert not torch.equal(plain.matrix, result.matrix)


def test_replay_step_batches_the_current_sample_with_the_buffer(monkeypatch):
    # Record what the model sees in training mode: the current sample first, then the samples
    # the seeded plan draws from the buffer (none at the first step).
    seen = []

    def recording_build_model(*args, **kwargs):
        model = build_model(*args, **kwargs)
        model.register_forward_pre_hook(
            lambda module, inputs: seen.append(inputs[0].clone()) if module.training else None
        )
        return model

    monkeypatch.setattr(online, "build_model", recording_build_model)
    stream = make_stream("moons", "ci", seed=9, num_train=TINY)
    run_continual(stream, None, "replay", seed=9, buffer_size=10, replay_size=3)
    plan = reservoir_replay_schedule(TINY, 10, 3, generator=torch.Generator().manual_seed(9))
    assert len(seen) == TINY
    assert [len(batch) for batch in seen[:5]] == [1, 2, 3, 4, 4]
    for step, batch in enumerate(seen):
        assert torch.equal(batch[0], stream.train.inputs[step])
        replayed = [j for j in plan.replay_indices[step].tolist() if j >= 0]
        assert torch.equal(batch[1:], stream.train.inputs[replayed])


def test_validation_split_trains_on_the_early_stream():
    stream = make_stream("modes", "cdi", seed=0, num_train=TINY)
    result = run_continual(stream, None, "mlp", seed=0, split="validation", learning_rate=0.1)
    assert result.split == "validation"
    assert result.matrix.shape == (4, 4)
    assert result.steps == int((stream.train.domains == 0).sum())
    # IID has a single distribution: model selection trains on the whole stream.
    iid = run_continual("modes", "iid", "linear", seed=0, split="validation", num_train=TINY)
    assert iid.steps == TINY and iid.matrix.shape == (1, 1)


def test_cnu_learns_the_class_incremental_stream_better_than_sgd_linear():
    # The point of the layer, on the paper's full-size stream (1000 steps, about a second): a
    # linear layer trained online on a class-incremental stream only knows the last class; the
    # CNU keeps earlier ones.
    cnu = run_continual("modes", "ci", "cnu", seed=1234)
    linear = run_continual("modes", "ci", "linear", seed=1234, learning_rate=0.1)
    assert linear.average_accuracy == pytest.approx(0.25)
    assert cnu.average_accuracy > 0.5 and cnu.average_forgetting < linear.average_forgetting


def test_overrides_and_dtype():
    config = CNUHyperparameters(key_mem_units=4, delta=1, learning_rate=0.05)
    result = run_continual(
        "moons",
        "ci",
        "cnu",
        seed=1,
        cnu=config,
        weight_decay=1e-3,
        num_train=TINY,
        dtype=torch.float64,
    )
    assert result.cnu.key_mem_units == 4 and result.cnu.weight_decay == 1e-3
    assert result.learning_rate == 0.05 and result.weight_decay == 1e-3
    stream = make_stream("moons", "ci", seed=1, num_train=TINY)
    cast = run_continual(stream, "ci", "linear", seed=1, dtype=torch.float64)
    assert cast.matrix.dtype == torch.float32 and cast.steps == TINY


def test_search_ranks_the_grid():
    streams = [make_stream("modes", "ci", seed=seed, num_train=TINY) for seed in (0, 1)]
    candidates = search_hyperparameters(
        streams, "mlp", learning_rates=(1e-4, 0.5), weight_decays=(0.0,), hidden_sizes=(5, 25)
    )
    assert len(candidates) == 4
    scores = [candidate.score for candidate in candidates]
    assert scores == sorted(scores, reverse=True)
    best = candidates[0]
    expected = sum(
        run_continual(
            stream,
            None,
            "mlp",
            seed=stream.seed,
            learning_rate=best.learning_rate,
            hidden=best.hidden,
            split="validation",
        ).average_accuracy
        for stream in streams
    ) / len(streams)
    assert best.score == pytest.approx(expected)
    linear = search_hyperparameters(
        streams, "linear", learning_rates=(0.1,), weight_decays=(0.0, 1e-3)
    )
    assert [candidate.hidden for candidate in linear] == [None, None]
    # Scored on the test split: the whole stream, measured as a final run would be.
    (upper,) = search_hyperparameters(
        streams, "linear", learning_rates=(0.1,), weight_decays=(0.0,), split="test"
    )
    finals = [
        run_continual(stream, None, "linear", seed=stream.seed, learning_rate=0.1)
        for stream in streams
    ]
    assert upper.score == pytest.approx(sum(r.average_accuracy for r in finals) / len(finals))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"model": "rnn"}, ValueError, "model must be one of"),
        ({"stream": "spirals"}, ValueError, "name must be one of"),
        ({"stream": 3}, TypeError, "stream must be a str or a ContinualStream"),
        ({"order": None}, ValueError, "order must be given"),
        ({"order": "task"}, ValueError, "order must be one of"),
        ({"seed": -2}, ValueError, "seed must be >= 0"),
        ({"split": "train"}, ValueError, "split must be one of"),
        ({"learning_rate": 0.0}, ValueError, "learning_rate must be finite and > 0"),
        ({"learning_rate": float("nan")}, ValueError, "learning_rate must be finite"),
        ({"learning_rate": "0.1"}, TypeError, "learning_rate must be a real number"),
        ({"weight_decay": -1e-3}, ValueError, "weight_decay must be finite and >= 0"),
        ({"hidden": 0}, ValueError, "hidden must be >= 1"),
        ({"cnu": {"delta": 2}}, TypeError, "cnu must be a CNUHyperparameters"),
        ({"num_train": 10}, ValueError, "num_train must be >= 100"),
        ({"buffer_size": 0}, ValueError, "buffer_size must be >= 1"),
        ({"buffer_size": 2.0}, TypeError, "buffer_size must be an int"),
        ({"replay_size": 0}, ValueError, "replay_size must be >= 1"),
        ({"replay_size": 60}, ValueError, r"replay_size must be <= buffer_size \(50\), got 60"),
    ],
)
def test_run_continual_bad_arguments(kwargs, error, match):
    arguments = {"stream": "modes", "order": "ci", "model": "cnu", "num_train": TINY} | kwargs
    with pytest.raises(error, match=match):
        run_continual(**arguments)


def test_ready_stream_order_mismatch():
    stream = make_stream("modes", "ci", seed=0, num_train=TINY)
    with pytest.raises(ValueError, match="order must be None or the stream's order 'ci'"):
        run_continual(stream, "cdi", "linear")


def test_other_bad_arguments():
    streams = [make_stream("modes", "ci", seed=0, num_train=TINY)]
    with pytest.raises(ValueError, match="streams must not be empty"):
        search_hyperparameters([], "linear")
    with pytest.raises(TypeError, match="streams must hold ContinualStream"):
        search_hyperparameters(["modes"], "linear")
    with pytest.raises(ValueError, match="same data set and order"):
        search_hyperparameters([*streams, make_stream("modes", "cdi", num_train=TINY)], "linear")
    with pytest.raises(TypeError, match="learning_rates must be a sequence"):
        search_hyperparameters(streams, "linear", learning_rates=0.1)
    with pytest.raises(ValueError, match="orders must be one of"):
        run_experiment(["modes"], ["ti"])
    with pytest.raises(ValueError, match="selection must be one of"):
        run_experiment(["modes"], ["ci"], selection="train")
    with pytest.raises(ValueError, match="split must be one of"):
        search_hyperparameters(streams, "linear", split="train")
    with pytest.raises(TypeError, match="search_cnu must be a bool"):
        run_experiment(["modes"], ["ci"], search_cnu="yes")
    with pytest.raises(ValueError, match="replay_size must be <= buffer_size"):
        run_experiment(["modes"], ["ci"], buffer_size=2, replay_size=3)
    with pytest.raises(TypeError, match="progress must be callable"):
        run_experiment(["modes"], ["ci"], progress="stderr")
    with pytest.raises(ValueError, match="model must be one of"):
        build_model("cnn", 2, 4)
    with pytest.raises(ValueError, match="in_features must be >= 1"):
        build_model("linear", 0, 4)


def test_experiment_rows_hold_the_settings_and_every_seed():
    progress = []
    rows = run_experiment(
        ["moons"],
        ["cdi"],
        ["cnu", "linear"],
        seeds=[1, 2],
        learning_rates=[0.1],
        weight_decays=[0.0],
        num_train=TINY,
        progress=progress.append,
    )
    assert [(row.model, row.searched, row.selected_on) for row in rows] == [
        ("cnu", False, "paper"),
        ("linear", True, "validation"),
    ]
    assert all(isinstance(row, ExperimentRow) and len(row.results) == 2 for row in rows)
    assert [result.seed for result in rows[1].results] == [1, 2]
    assert len(progress) == 2 and progress[0].startswith("moons cdi cnu")
    mean, spread = rows[1].mean_std("average_accuracy")
    values = [result.average_accuracy for result in rows[1].results]
    assert mean == pytest.approx(sum(values) / 2)
    assert spread == pytest.approx(abs(values[0] - values[1]) / math.sqrt(2))


def test_the_old_module_name_is_a_deprecated_alias():
    import importlib

    sys.modules.pop("dyna.train.continual", None)
    with pytest.warns(DeprecationWarning, match=r"dyna\.train\.online"):
        old = importlib.import_module("dyna.train.continual")
    assert old.run_continual is run_continual and old.ExperimentRow is ExperimentRow
