"""HORN's structural variants in ``dyna.experiments.sequences``: the draws, the built models and
the experiments that name them."""

import json
import math

import pytest
import torch

from dyna.cli import main
from dyna.data.split import Split
from dyna.experiments import ConfigError, get_experiment
from dyna.experiments.registry import Dataset
from dyna.experiments.sequences import heterogeneous_dynamics, horn_model, random_delays
from dyna.module import HORNSeqNetwork
from tests.fake_mnist import write_mnist_folder

VARIANT_EXPERIMENTS = {
    "horn-smnist-hetero": (True, "none", False),
    "horn-smnist-delays": (False, "uniform", False),
    "horn-psmnist-hetero": (True, "none", True),
    "horn-psmnist-delays": (False, "uniform", True),
}


def _dataset(steps: int = 784) -> Dataset:
    split = Split(torch.zeros(2, steps, 1), torch.tensor([0, 1]))
    return Dataset(split, split, 10)


def _model(name: str = "horn-smnist", **assignments: str) -> HORNSeqNetwork:
    params = get_experiment(name).resolve_params(assignments)
    return horn_model(params, _dataset())


def _trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_heterogeneous_draws_lie_in_half_to_twice_the_set_values():
    omega, gamma = heterogeneous_dynamics(0.224, 0.01, 4096, seed=0)
    assert omega.shape == gamma.shape == (4096,)
    assert omega.dtype == gamma.dtype == torch.float64
    assert 0.112 <= float(omega.min()) and float(omega.max()) < 0.448
    assert 0.005 <= float(gamma.min()) and float(gamma.max()) < 0.02
    # Uniform over the interval: 4096 draws reach close to both ends, mean 1.25 x the set value.
    assert float(omega.min()) < 0.113 and float(omega.max()) > 0.447
    assert float(omega.mean()) == pytest.approx(1.25 * 0.224, rel=0.02)
    # ω is drawn first, then γ, from one generator: the spreads are the first and second rows
    # of one (2, n) uniform draw.
    spread = torch.rand(2, 4096, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(omega, 0.224 * (0.5 + 1.5 * spread[0]), rtol=1e-15, atol=0)
    torch.testing.assert_close(gamma, 0.01 * (0.5 + 1.5 * spread[1]), rtol=1e-15, atol=0)


def test_delays_are_whole_steps_between_the_ceilings():
    defaults = random_delays(32, 1.0, 40.0, 1.0, seed=0)
    assert defaults.shape == (32, 32) and defaults.dtype == torch.int64
    # U(1, 40) then ceil: 2 to 40 steps (1 needs a draw within 1e-9 of 1).
    assert int(defaults.min()) == 2 and int(defaults.max()) == 40
    assert set(defaults.unique().tolist()) == set(range(2, 41))
    # In general [ceil(low / dt), ceil(high / dt)]: 2.5..7.5 at dt 0.5 is 5..15 steps.
    halves = random_delays(64, 2.5, 7.5, 0.5, seed=3)
    assert int(halves.min()) >= 5 and int(halves.max()) <= 15
    assert set(halves.unique().tolist()) == set(range(6, 16))
    # low == high: every delay is that one value.
    assert torch.equal(random_delays(4, 3.0, 3.0, 1.0, seed=0), torch.full((4, 4), 3))
    # The lower end is reached only by a draw of exactly ``low`` (here forced by high == low).
    assert torch.equal(random_delays(2, 1.0, 1.0, 1.0, seed=0), torch.ones(2, 2, dtype=torch.long))
    # The draw: U(low, high) from a generator seeded with seed + 1, then ceil.
    times = 1.0 + 39.0 * torch.rand(
        32, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    assert torch.equal(defaults, times.ceil().long())


def test_same_seed_same_draws_other_seed_other_draws():
    assert torch.equal(random_delays(8, 1.0, 40.0, 1.0, 5), random_delays(8, 1.0, 40.0, 1.0, 5))
    assert not torch.equal(random_delays(8, 1.0, 40.0, 1.0, 5), random_delays(8, 1, 40, 1, 6))
    first, second = heterogeneous_dynamics(0.2, 0.01, 8, 5), heterogeneous_dynamics(0.2, 0.01, 8, 5)
    other = heterogeneous_dynamics(0.2, 0.01, 8, 6)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert not any(torch.equal(a, b) for a, b in zip(first, other, strict=True))
    # Through the experiment: structure_seed picks the draws.
    a = _model(delays="uniform", structure_seed="4").layers[0].delay
    b = _model(delays="uniform", structure_seed="4").layers[0].delay
    c = _model(delays="uniform", structure_seed="9").layers[0].delay
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_delays_do_not_change_when_heterogeneity_is_toggled():
    delays = _model(delays="uniform").layers[0]
    both = _model(delays="uniform", heterogeneous="true").layers[0]
    hetero = _model(heterogeneous="true").layers[0]
    assert torch.equal(delays.delay, both.delay)
    torch.testing.assert_close(both.horn.omega, hetero.horn.omega, rtol=0, atol=0)
    torch.testing.assert_close(both.horn.gamma, hetero.horn.gamma, rtol=0, atol=0)
    assert torch.equal(delays.delay, random_delays(32, 1.0, 40.0, 1.0, 0))


def test_models_carry_the_draws_and_count_their_parameters():
    plain, hetero, delays = _model(), _model("horn-smnist-hetero"), _model("horn-smnist-delays")
    n = 32
    # One HORN layer of 32 oscillators on one input and a 10-way readout:
    # i2h 32 + 32, h2h 32 x 32 + 32, h2o 10 x 32 + 10.
    assert _trainable(plain) == 2 * n + n * n + n + 10 * n + 10 == 1450
    # Heterogeneous ω and γ are fixed buffers: no trainable parameter added.
    assert _trainable(hetero) == _trainable(plain)
    assert not hetero.layers[0].horn.omega.requires_grad
    expected_omega, expected_gamma = heterogeneous_dynamics(0.224, 0.01, n, 0)
    torch.testing.assert_close(hetero.layers[0].horn.omega, expected_omega.float())
    torch.testing.assert_close(hetero.layers[0].horn.gamma, expected_gamma.float())
    # Delays: the delayed coupling has no recurrent bias, n parameters fewer.
    assert _trainable(delays) == _trainable(plain) - n == 1418
    assert delays.layers[0].h2h.bias is None and plain.layers[0].h2h.bias is not None
    assert torch.equal(delays.layers[0].delay, random_delays(n, 1.0, 40.0, 1.0, 0))
    assert plain.layers[0].delay is None and plain.layers[0].horn.omega.numel() == 1
    # The delays are a buffer, saved with the model.
    assert "layers.0.delay" in delays.state_dict()
    output = delays(torch.rand(2, 50, 1))
    assert output.shape == (2, 10) and bool(torch.isfinite(output).all())


@pytest.mark.parametrize("name", sorted(VARIANT_EXPERIMENTS))
def test_variant_experiments_set_their_keys(name):
    heterogeneous, delays, permuted = VARIANT_EXPERIMENTS[name]
    experiment = get_experiment(name)
    params = experiment.resolve_params({})
    assert (params["heterogeneous"], params["delays"], params["permuted"]) == (
        heterogeneous,
        delays,
        permuted,
    )
    assert experiment.needs_data
    assert (params["delay_low"], params["delay_high"], params["structure_seed"]) == (1.0, 40.0, 0)
    words = "heterogeneous ω and γ" if heterogeneous else "random synaptic delays of 2-40 steps"
    assert experiment.description.endswith(words)
    # The other HORN recipe values are the plain experiment's.
    base = get_experiment(name.rsplit("-", 1)[0]).resolve_params({})
    for key in ("n_hidden", "alpha", "omega", "gamma", "dt", "paper", "readout"):
        assert params[key] == base[key]


def test_plain_experiments_take_the_variants_as_keys():
    params = get_experiment("horn-smnist").resolve_params(
        {"heterogeneous": "true", "delays": "uniform", "delay_low": "2", "delay_high": "4"}
    )
    assert params["heterogeneous"] is True and params["delays"] == "uniform"
    model = horn_model(params, _dataset())
    assert set(model.layers[0].delay.unique().tolist()) <= {2, 3, 4}
    # Baselines and the digits HORN have no structural keys.
    for name in ("lstm-smnist", "horn-digits"):
        with pytest.raises(ConfigError, match="no hyper-parameter 'delays'"):
            get_experiment(name).resolve_params({"delays": "uniform"})


def test_bad_structure_settings_are_config_errors():
    params = get_experiment("horn-smnist-delays").resolve_params(
        {"delay_low": "10", "delay_high": "5"}
    )
    with pytest.raises(ConfigError, match=r"delay_high=5\.0 must be >= delay_low=10\.0"):
        horn_model(params, _dataset())
    # Without delays the pair is not read.
    horn_model(dict(params, delays="none"), _dataset())
    experiment = get_experiment("horn-smnist")
    with pytest.raises(ConfigError, match="delays"):
        experiment.resolve_params({"delays": "gaussian"})
    with pytest.raises(ConfigError, match="delay_low"):
        experiment.resolve_params({"delay_low": "-1"})
    with pytest.raises(ConfigError, match="delay_high"):
        experiment.resolve_params({"delay_high": "inf"})
    # Seeds beyond what torch's generator takes are refused up front, not deep in torch.
    for key in ("structure_seed", "permutation_seed", "split_seed"):
        with pytest.raises(ConfigError, match=key):
            experiment.resolve_params({key: str(2**64 - 1)})
        assert experiment.resolve_params({key: str(2**32 - 1)})[key] == 2**32 - 1


def test_cli_refuses_reversed_delays_and_lists_the_variants(capsys, tmp_path):
    data = write_mnist_folder(tmp_path / "mnist", n_train=24, n_test=8)
    argv = ["train", "horn-smnist-delays", "--data", str(data), "--set", "delay_low=30",
            "--set", "delay_high=20", "--set", "validation=4", "--epochs", "1", "--quiet",
            "--out", str(tmp_path / "r")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dyna: error: ")
    assert "delay_high=20.0 must be >= delay_low=30.0" in err[0]
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in VARIANT_EXPERIMENTS:
        assert name in out
    assert main(["list", "horn-smnist-delays"]) == 0
    out = capsys.readouterr().out
    for key in ("heterogeneous=False", "delays=uniform", "delay_low=1.0", "delay_high=40.0",
                "structure_seed=0"):  # fmt: skip
        assert key in out


def test_variant_trains_end_to_end(tmp_path):
    data = write_mnist_folder(tmp_path / "mnist", n_train=40, n_test=8)
    out = tmp_path / "r"
    argv = ["train", "horn-smnist", "--data", str(data), "--set", "heterogeneous=true",
            "--set", "delays=uniform", "--set", "n_hidden=4", "--set", "validation=8",
            "--batch-size", "32", "--epochs", "1", "--quiet", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    # n = 4: i2h 8, h2h 16 (no bias with delays), h2o 40 + 10.
    assert summary["parameters"] == 8 + 16 + 50
    assert math.isfinite(summary["final_test_accuracy"])
