"""The ``dyna`` command: help, list, every bad-input path of train, eval and continual."""

import errno
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dyna.cli import main
from dyna.train import checkpoint as ckpt

MNIST_10K = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-10k"
TINY = ["--set", "n_hidden=8", "--batch-size", "32", "--quiet"]


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _error(capsys, argv) -> str:
    """Run ``dyna argv``, expect exit code 2, return the single line on stderr."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("dyna: error: ")
    return err[0]


@pytest.mark.parametrize("command", [[], ["train"], ["eval"], ["list"]])
def test_help_is_complete(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    expected = {
        (): ["train", "eval", "list"],
        ("train",): ["--epochs", "--batch-size", "--lr", "--seed", "--device", "--out",
                     "--data", "--resume", "--set", "--checkpoint-every", "--quiet"],
        ("eval",): ["checkpoint", "--data", "--device"],
        ("list",): ["experiment"],
    }[tuple(command)]  # fmt: skip
    for word in expected:
        assert word in text


def test_python_dash_m_dyna_runs_the_command():
    result = subprocess.run(
        [sys.executable, "-m", "dyna", "list"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and "horn-digits *" in result.stdout


def test_list_shows_experiments_and_their_keys(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("horn-digits", "horn-psmnist", "lstm-smnist", "cnu-stream", "dynconv-digits"):
        assert name in out
    assert main(["list", "horn-smnist"]) == 0
    out = capsys.readouterr().out
    assert "--lr 0.01" in out and "alpha=0.04" in out and "needs --data" in out


def test_usage_errors_are_one_line_with_exit_code_2(capsys, tmp_path):
    out = ["--out", str(tmp_path / "r")]
    assert "unknown experiment 'horn-cifar'" in _error(capsys, ["train", "horn-cifar", *out])
    assert "unrecognized arguments: --epoch" in _error(capsys, ["train", "--epoch", "3", *out])
    line = _error(capsys, ["train", "--set", "width=3", *out])
    assert "no hyper-parameter 'width'" in line and "valid keys" in line
    assert "n_hidden=0 is out of range" in _error(capsys, ["train", "--set", "n_hidden=0", *out])
    assert "expected key=value" in _error(capsys, ["train", "--set", "alpha", *out])
    assert "positive integer" in _error(capsys, ["train", "--epochs", "0", *out])
    assert "positive" in _error(capsys, ["train", "--lr", "-1", *out])
    assert "invalid choice" in _error(capsys, ["frobnicate"])
    assert "required: COMMAND" in _error(capsys, [])
    assert "--device" in _error(capsys, ["train", "--device", "tpu", "--epochs", "1", *TINY, *out])
    if importlib.util.find_spec("tensorboard") is None:
        assert "pip install tensorboard" in _error(capsys, ["train", "--tensorboard", *out])
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_data_folder_errors_name_the_problem_and_the_fix(capsys, tmp_path):
    out = ["--out", str(tmp_path / "r")]
    assert "pass --data DIR" in _error(capsys, ["train", "horn-smnist", *out])
    line = _error(capsys, ["train", "horn-smnist", "--data", str(tmp_path / "none"), *out])
    assert "does not exist" in line and "--data" in line
    (tmp_path / "empty").mkdir()
    line = _error(capsys, ["train", "horn-smnist", "--data", str(tmp_path / "empty"), *out])
    assert "train-images-idx3-ubyte[.gz] is missing" in line
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):  # fmt: skip
        (bad / name).write_bytes(b"<html>not mnist</html>")
    line = _error(capsys, ["train", "horn-smnist", "--data", str(bad), *out])
    assert "magic number" in line
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_full_disk_is_a_one_line_error_and_leaves_no_partial_checkpoint(
    capsys, tmp_path, monkeypatch
):
    real_fsync = ckpt.os.fsync

    def fsync(descriptor):
        # Metrics files still sync; the checkpoint writer's temporary file finds the disk full.
        folder = tmp_path / "r" / "checkpoints"
        if folder.is_dir() and any(p.name.startswith(".tmp-step-") for p in folder.iterdir()):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(descriptor)

    monkeypatch.setattr(ckpt.os, "fsync", fsync)
    code = main(["train", "--epochs", "1", *TINY, "--out", str(tmp_path / "r")])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no space left to write" in err[0] and "free disk space" in err[0]
    assert list((tmp_path / "r" / "checkpoints").iterdir()) == []


def test_corrupt_checkpoint_on_resume_is_a_clear_error(capsys, tmp_path):
    out = str(tmp_path / "r")
    assert main(["train", "--epochs", "1", *TINY, "--out", out]) == 0
    (tensors,) = (tmp_path / "r" / "checkpoints").glob("*.safetensors")
    tensors.write_bytes(tensors.read_bytes()[:-10])
    assert main(["train", "--resume", "--out", out, "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "corrupt" in err[0] and "sha256" in err[0]
    line = _error(capsys, ["train", "--resume", "--out", str(tmp_path / "none")])
    assert "no checkpoint" in line


def test_eval_reproduces_the_final_test_accuracy(capsys, tmp_path):
    out = tmp_path / "r"
    assert main(["train", "--epochs", "1", *TINY, "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    capsys.readouterr()
    assert main(["eval", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"accuracy {100 * summary['final_test_accuracy']:.2f} %" in printed
    result = json.loads((out / "eval.json").read_text())
    assert result["test_accuracy"] == pytest.approx(summary["final_test_accuracy"], abs=1e-12)
    assert main(["eval", str(tmp_path / "nothing")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_dynamic_conv_experiment_trains(tmp_path):
    out = tmp_path / "r"
    argv = ["train", "dynconv-digits", "--epochs", "1", "--batch-size", "128", "--quiet",
            "--set", "channels1=2", "--set", "channels2=4", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert json.loads((out / "summary.json").read_text())["steps"] == 12


@pytest.mark.skipif(not MNIST_10K.is_dir(), reason="the shared MNIST-10k folder is absent")
def test_psmnist_reads_an_mnist_folder_and_reports_the_best_validation_epoch(tmp_path):
    out = tmp_path / "r"
    argv = ["train", "horn-psmnist", "--data", str(MNIST_10K), "--epochs", "2",
            "--batch-size", "32", "--set", "train_samples=64", "--set", "test_samples=32",
            "--set", "n_hidden=4", "--quiet", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["best_epoch"] in (1, 2)
    assert summary["test_accuracy_at_best_val"] is not None
    config = json.loads((out / "config.json").read_text())
    assert config["data"] == str(MNIST_10K.resolve())


def test_continual_stream_runs_and_rejects_what_does_not_apply(capsys, tmp_path):
    out = tmp_path / "c"
    argv = ["train", "cnu-stream", "--set", "models=linear", "--set", "num_train=100",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "linear" in printed and "ACC %" in printed
    results = json.loads((out / "results.json").read_text())
    assert [row["model"] for row in results["rows"]] == ["linear"]
    assert 0.0 <= results["rows"][0]["average_accuracy"] <= 1.0
    assert (out / "plots" / "continual_matrix.png").read_bytes()[:4] == b"\x89PNG"
    assert "without --resume" in _error(capsys, [*argv, "--resume"])
    assert "--epochs" in _error(capsys, ["train", "cnu-stream", "--epochs", "2"])
    line = _error(capsys, ["train", "cnu-stream", "--set", "models=transformer"])
    assert "transformer" in line


def test_bench_is_the_benchmark_runner_script_not_a_command(capsys):
    # The benchmarks are not in the wheel: `python benchmarks/run.py` runs them.
    assert "invalid choice: 'bench'" in _error(capsys, ["bench"])
