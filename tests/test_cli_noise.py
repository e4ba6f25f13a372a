"""``dyna eval RUN --noise SIGMA ... --noise-seed N``: noisy test accuracies in eval.json."""

import json

import pytest
import torch

from dyna.cli import main
from tests.fake_mnist import write_mnist_folder

TINY = ["--set", "n_hidden=4", "--set", "train_samples=64", "--set", "test_samples=32",
        "--set", "validation=16", "--epochs", "1", "--batch-size", "32", "--quiet"]  # fmt: skip


@pytest.fixture(autouse=True)
def _one_thread():
    # Thousands of tiny per-step ops: on a busy two-core machine a second intra-op thread makes
    # `dyna eval` (which keeps torch's default) a hundred times slower, not faster.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny sMNIST HORN run on a fabricated MNIST folder, trained once for the module."""
    root = tmp_path_factory.mktemp("noise")
    data = write_mnist_folder(root / "mnist")
    out = root / "run"
    threads = torch.get_num_threads()
    try:  # training sets the run's --threads (1)
        assert main(["train", "horn-smnist", "--data", str(data), *TINY, "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    return out


def _eval(run, *options) -> dict:
    assert main(["eval", str(run), *options]) == 0
    return json.loads((run / "eval.json").read_text())


def test_noise_levels_are_written_to_eval_json(run, capsys):
    result = _eval(run, "--noise", "0", "0.5", "4", "--noise-seed", "7")
    printed = capsys.readouterr().out
    assert result["noise_seed"] == 7
    assert [level["sigma"] for level in result["noise"]] == [0.0, 0.5, 4.0]
    for level in result["noise"]:
        assert set(level) == {"sigma", "test_loss", "test_accuracy"}
        # 32 test images: accuracies are multiples of 1/32.
        assert level["test_accuracy"] * 32 == pytest.approx(round(level["test_accuracy"] * 32))
        assert level["test_loss"] > 0
    # σ = 0 is the clean test split, to the bit.
    clean = result["noise"][0]
    assert clean["test_accuracy"] == result["test_accuracy"]
    assert clean["test_loss"] == result["test_loss"]
    # Heavy noise changes the loss.
    assert result["noise"][2]["test_loss"] != result["test_loss"]
    assert "test, noise σ = 0.5: loss" in printed and "test, noise σ = 4: loss" in printed
    summary = json.loads((run / "summary.json").read_text())
    assert result["test_accuracy"] == pytest.approx(summary["final_test_accuracy"], abs=1e-12)


def test_same_seed_same_numbers_other_seed_other_numbers(run):
    first = _eval(run, "--noise", "0.3", "1.5", "--noise-seed", "3")
    second = _eval(run, "--noise", "0.3", "1.5", "--noise-seed", "3")
    assert first["noise"] == second["noise"]
    # Another seed draws other noise: at σ = 1.5 the loss cannot stay the same to the bit.
    other = _eval(run, "--noise", "0.3", "1.5", "--noise-seed", "4")
    assert (
        other["noise_seed"] == 4
        and other["noise"][1]["test_loss"] != first["noise"][1]["test_loss"]
    )
    # The default seed is 0, and without --noise there is no noise entry at all.
    assert _eval(run, "--noise", "0.3")["noise_seed"] == 0
    plain = _eval(run)
    assert "noise" not in plain and "noise_seed" not in plain


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["-0.1"], "expected a finite number >= 0, got -0.1"),
        (["abc"], "expected a number >= 0, got 'abc'"),
        (["nan"], "expected a finite number >= 0, got nan"),
        (["inf"], "expected a finite number >= 0, got inf"),
        (["0.1", "-1"], "expected a finite number >= 0, got -1"),
    ],
)
def test_bad_sigma_is_a_one_line_usage_error(run, capsys, values, message):
    (run / "eval.json").unlink(missing_ok=True)
    assert main(["eval", str(run), "--noise", *values]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dyna: error: ")
    assert "--noise" in err[0] and message in err[0]
    assert not (run / "eval.json").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--noise"], "expected at least one argument"),
        (["--noise", "0.1", "--noise-seed", "-1"], "expected an integer >= 0, got -1"),
        (["--noise", "0.1", "--noise-seed", "x"], "expected an integer >= 0, got 'x'"),
        (["--noise", "0.1", "--noise-seed", str(2**31)], "expected a seed below 2**31"),
    ],
)
def test_bad_noise_options_are_usage_errors(run, capsys, options, message):
    assert main(["eval", str(run), *options]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
