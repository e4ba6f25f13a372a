"""The --set parameters' descriptions, as `dyna list NAME` prints them."""

import pytest

from dyna.cli import main
from dyna.train.config import ConfigError, Param


def test_integer_ranges_are_written_as_integers():
    assert Param(0, "seed", minimum=0, maximum=2**32 - 1).describe() == "int in [0, 4294967295]"
    assert Param((1, 2), "seeds", minimum=0).describe() == "int,... >= 0"
    assert Param(1.0, "step", minimum=1e-6).describe() == "float >= 1e-06"
    assert Param(40.0, "delay", minimum=0.0, maximum=1e4).describe() == "float in [0, 10000]"


def test_a_strict_minimum_refuses_the_bound_itself():
    step = Param(1.0, "step", minimum=0.0, strictly_greater=True)
    assert step.describe() == "float > 0"
    assert step.check("dt", 1e-12) == 1e-12
    with pytest.raises(ConfigError, match=r"dt=0.0 is out of range: expected float > 0"):
        step.check("dt", 0.0)
    bounded = Param(1.0, "rate", minimum=0.0, maximum=1.0, strictly_greater=True)
    assert bounded.describe() == "float in (0, 1]"
    assert bounded.check("rate", 1.0) == 1.0
    with pytest.raises(ConfigError, match=r"expected float in \(0, 1\]"):
        bounded.check("rate", 0)


def test_dyna_list_prints_no_float_notation_for_integers(capsys):
    assert main(["list", "horn-smnist"]) == 0
    out = capsys.readouterr().out
    assert "structure_seed=0  [int in [0, 4294967295]]" in out
    assert "e+" not in out


def test_dyna_list_states_what_an_mnist_experiment_needs(capsys):
    assert main(["list", "dynconv-mnist"]) == 0
    assert "needs --data DIR: a standard MNIST folder of IDX files, 28x28 images" in (
        capsys.readouterr().out
    )
