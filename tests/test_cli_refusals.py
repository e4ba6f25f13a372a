"""The ``dyna`` command refuses bad input in one line and leaves earlier runs untouched.

Each case runs the real command in a subprocess (``tests/cli_refusal.py``): a non-zero exit, one
line on stderr without a traceback, naming the cause, and the run folders byte-identical.
"""

import json
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from dyna.cli import main
from dyna.train.checkpoint import sidecar_checksum
from tests.cli_refusal import assert_refused
from tests.fake_mnist import idx_bytes, write_mnist_folder


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A finished one-epoch horn-digits run (n = 8) to copy."""
    out = tmp_path_factory.mktemp("digits") / "run"
    tiny = ["--set", "n_hidden=8", "--quiet", "--epochs", "1"]
    assert main(["train", "horn-digits", *tiny, "--out", str(out)]) == 0
    return out


def _copy(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy


def _edit_sidecar(run, change, *, sign: bool):
    (sidecar,) = (run / "checkpoints").glob("step-*.json")
    metadata = json.loads(sidecar.read_text())
    change(metadata)
    if sign:
        metadata["sidecar_sha256"] = sidecar_checksum(metadata)
    sidecar.write_text(json.dumps(metadata))
    return sidecar


@pytest.mark.parametrize(
    ("path", "value", "sign", "named"),
    [
        ("tensors", None, False, "edited or damaged"),
        ("tensors", "../../x", True, "field 'tensors' must be 'step-00000045.safetensors'"),
        ("tensors", None, True, "got '<missing>'"),
        ("config.batch_size", 0, True, "config.batch_size must be >= 1, got 0"),
        ("config.epochs", -3, True, "config.epochs must be >= 1, got -3"),
        ("position.step", "abc", True, "position.step must be an int, got str"),
    ],
)
def test_an_invalid_sidecar_is_refused_by_resume_and_eval(
    digits_run, tmp_path, path, value, sign, named
):
    run = _copy(digits_run, tmp_path)

    def change(metadata):
        *parents, last = path.split(".")
        for key in parents:
            metadata = metadata[key]
        if value is None:
            del metadata[last]
        else:
            metadata[last] = value

    _edit_sidecar(run, change, sign=sign)
    resume = ["train", "horn-digits", "--out", str(run), "--resume", "--quiet"]
    assert_refused(resume, [named], unchanged=[run], exit_code=1)
    assert_refused(["eval", str(run)], [named], unchanged=[run], exit_code=1)


SMNIST_TINY = ["--set", "n_hidden=4", "--set", "validation=16", "--epochs", "1", "--quiet"]


@pytest.fixture(scope="module")
def smnist_run(tmp_path_factory):
    """A finished one-epoch horn-smnist run on a fake MNIST folder of 28x28 images."""
    folder = tmp_path_factory.mktemp("smnist")
    data = write_mnist_folder(folder / "mnist", 48, 16)
    out = folder / "run"
    assert main(["train", "horn-smnist", "--data", str(data), *SMNIST_TINY, "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("experiment", ["horn-smnist", "horn-psmnist", "dynconv-mnist"])
@pytest.mark.parametrize(
    ("test_size", "test_count", "named"),
    [
        (20, 16, "t10k-images-idx3-ubyte holds 20x20 images, expected 28x28"),
        (28, 0, "t10k-images-idx3-ubyte holds 0 test images, this experiment needs at least 1"),
    ],
)
def test_mnist_of_another_image_size_or_without_test_images_is_refused(
    tmp_path, experiment, test_size, test_count, named
):
    data = write_mnist_folder(tmp_path / "mnist", 48, test_count, test_size=test_size)
    out = tmp_path / "run"
    arguments = ["train", experiment, "--data", str(data), "--out", str(out), "--epochs", "1"]
    assert_refused(arguments, [named], unchanged=[data], exit_code=2)
    assert not out.exists()  # refused before the run folder is made


def test_eval_on_mnist_of_another_image_size_is_refused(smnist_run, tmp_path):
    data = write_mnist_folder(tmp_path / "small", 48, 16, test_size=20)
    assert_refused(
        ["eval", str(smnist_run), "--data", str(data)],
        ["t10k-images-idx3-ubyte holds 20x20 images"],
        unchanged=[smnist_run, data],
        exit_code=2,
    )


def _truncated_gz(folder):
    data = write_mnist_folder(folder, 48, 16, gz=True)
    path = data / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100])
    return data, "t10k-images-idx3-ubyte.gz"


def _count_mismatch(folder):
    data = write_mnist_folder(folder, 48, 16)
    path = data / "train-labels-idx1-ubyte"
    path.write_bytes(idx_bytes(torch.arange(47) % 10))
    return data, "48 images but 47 labels"


def _missing(folder):
    return folder / "nowhere", "does not exist"


def _small_images(folder):
    return write_mnist_folder(folder, 48, 16, test_size=20), "holds 20x20 images"


@pytest.mark.parametrize("bad_data", [_missing, _truncated_gz, _count_mismatch, _small_images])
def test_overwrite_with_bad_data_leaves_the_earlier_run_as_it_was(smnist_run, tmp_path, bad_data):
    run = _copy(smnist_run, tmp_path)
    (run / "notes.txt").write_text("mine")
    data, named = bad_data(tmp_path / "bad")
    arguments = ["train", "horn-smnist", "--data", str(data), *SMNIST_TINY, "--out", str(run)]
    assert_refused([*arguments, "--overwrite"], [named], unchanged=[run], exit_code=2)


def test_overwrite_with_good_data_replaces_the_run_and_keeps_other_files(digits_run, tmp_path):
    run = _copy(digits_run, tmp_path)
    (run / "notes.txt").write_text("mine")
    (run / "eval.json").write_text("{}")
    tiny = ["--set", "n_hidden=4", "--quiet", "--epochs", "1"]
    assert main(["train", "horn-digits", *tiny, "--out", str(run), "--overwrite"]) == 0
    assert json.loads((run / "config.json").read_text())["params"]["n_hidden"] == 4
    assert (run / "notes.txt").read_text() == "mine"
    assert not (run / "eval.json").exists()  # it described the replaced run
    assert not list(run.glob(".replaced-run-*"))


def test_data_is_refused_for_an_experiment_that_reads_none(digits_run, tmp_path):
    out = tmp_path / "new"
    named = "--data does not apply to horn-digits"
    assert_refused(
        ["train", "horn-digits", "--data", "/nope", "--out", str(out)], [named], exit_code=2
    )
    assert not out.exists()
    assert_refused(["eval", str(digits_run), "--data", "/nope"], [named], unchanged=[digits_run])


def test_a_checkpoint_of_another_model_names_the_keys_that_differ(digits_run, tmp_path):
    run = _copy(digits_run, tmp_path)
    _edit_sidecar(run, lambda metadata: metadata["config"]["params"].update(n_hidden=9), sign=True)
    named = [
        "does not fit the model of horn-digits",
        "shapes h2o.weight (10, 8) for (10, 9), layers.0.h2h.bias (8,) for (9,)",
    ]
    resume = ["train", "horn-digits", "--out", str(run), "--resume", "--quiet"]
    assert_refused(resume, named, unchanged=[run], exit_code=2)
    assert_refused(["eval", str(run)], named, unchanged=[run], exit_code=2)


@pytest.mark.parametrize("delay", [0.3, 0.8, 1.5, 2.5, 4.0])
def test_ctrl_c_during_start_up_exits_130_in_one_line(tmp_path, delay):
    # `python -m dyna train` spends its first seconds importing torch and reading the digits.
    process = subprocess.Popen(
        [sys.executable, "-m", "dyna", "train", "--quiet", "--out", str(tmp_path / "run")],
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=300)
    assert "Traceback" not in stderr, stderr
    assert process.returncode == 130, (process.returncode, stderr)
    assert len(stderr.strip().splitlines()) == 1 and stderr.startswith("dyna: "), stderr


def test_eval_of_a_file_that_is_not_a_checkpoint_never_advises_deleting_it(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    line = assert_refused(
        ["eval", str(notes)], [f"{notes} is not a checkpoint"], unchanged=[tmp_path], exit_code=1
    )
    assert "delete" not in line and "corrupt" not in line
