"""The supervised loop: run folder contents, exact resume after a crash, SIGKILL and SIGINT.

The subprocess tests run the real ``dyna`` command on a tiny configuration of horn-digits.
"""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dyna.cli import main
from dyna.experiments import get_experiment
from dyna.train import trainer as trainer_module
from dyna.train.trainer import TrainConfig, config_differences, learning_rate

TINY = ["--set", "n_hidden=8", "--batch-size", "16", "--log-every", "3", "--quiet"]
RESULT_FILES = ("model.safetensors", "metrics/steps.csv", "metrics/epochs.csv")


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _same_results(a: Path, b: Path) -> None:
    for name in RESULT_FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_a_run_writes_config_metrics_checkpoint_model_and_plots(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "horn-digits", "--epochs", "2", *TINY, "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["experiment"] == "horn-digits" and config["epochs"] == 2
    assert config["params"]["n_hidden"] == 8 and config["params"]["alpha"] == 0.5
    steps = (out / "metrics" / "steps.csv").read_text().splitlines()
    # 1,438 training digits in batches of 16: 90 steps per epoch, one row per step.
    assert steps[0] == "step,epoch,batch,samples,loss,accuracy,lr"
    assert len(steps) == 1 + 180
    assert steps[-1].startswith("180,2,90,2876,")
    epochs = (out / "metrics" / "epochs.csv").read_text().splitlines()
    assert len(epochs) == 3
    first, last = (float(line.split(",")[2]) for line in (epochs[1], epochs[2]))
    assert last < first  # the training loss falls
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 180 and 0.0 < summary["final_test_accuracy"] <= 1.0
    weights = load_file(out / "model.safetensors")
    assert weights["layers.0.h2h.weight"].shape == (8, 8)
    for png in ("learning_curves.png", "horn_traces.png"):
        assert (out / "plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in (out / "checkpoints").iterdir()] != []


class _Crash(Exception):
    pass


def test_resume_after_a_crash_mid_epoch_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    arguments = ["train", "horn-digits", "--epochs", "2", "--checkpoint-every", "7", *TINY]
    assert main([*arguments, "--out", str(tmp_path / "whole")]) == 0
    original = trainer_module.save_checkpoint
    saved = []

    def crash_after_the_third(*args, **kwargs):
        path = original(*args, **kwargs)
        saved.append(path)
        if len(saved) == 3:  # step 21 of 90: mid-epoch, between log intervals
            raise _Crash
        return path

    monkeypatch.setattr(trainer_module, "save_checkpoint", crash_after_the_third)
    with pytest.raises(_Crash):
        main([*arguments, "--out", str(tmp_path / "crashed")])
    monkeypatch.setattr(trainer_module, "save_checkpoint", original)
    steps = tmp_path / "crashed" / "metrics" / "steps.csv"
    assert len(steps.read_text().splitlines()) == 1 + 21
    # Rows logged after the checkpoint are cut back on resume; here, none were.
    assert main([*arguments, "--out", str(tmp_path / "crashed"), "--resume"]) == 0
    _same_results(tmp_path / "whole", tmp_path / "crashed")


def test_resume_options_must_match_the_checkpoint(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["train", "horn-digits", "--epochs", "1", *TINY, "--out", out]) == 0
    assert main(["train", "horn-digits", "--epochs", "1", *TINY, "--out", out]) == 2
    assert "already holds a run" in capsys.readouterr().err
    code = main(["train", "horn-digits", "--lr", "0.5", "--resume", "--out", out, "--quiet"])
    assert code == 2
    assert "lr: 0.02 -> 0.5" in capsys.readouterr().err
    code = main(["train", "rnn-digits", "--resume", "--out", out, "--quiet"])
    assert code == 2
    # Options left out come from the checkpoint: the finished run is simply completed again.
    assert main(["train", "horn-digits", "--resume", "--out", out, "--quiet"]) == 0


def test_config_differences_ignore_device_and_data():
    params = get_experiment("horn-digits").resolve_params({})
    common = {"experiment": "horn-digits", "epochs": 1, "batch_size": 16, "lr": 0.1,
              "weight_decay": 0.0, "seed": 0, "eval_batch_size": 100, "checkpoint_every": 0,
              "log_every": 1}  # fmt: skip
    base = TrainConfig(**common, params=params)
    moved = TrainConfig(**common, params=params, device="cuda", data="/d")
    assert config_differences(base.to_json(), moved.to_json()) == []
    changed = TrainConfig(**common, params=dict(params, n_hidden=9), schedule="cosine")
    assert config_differences(base.to_json(), changed.to_json()) == [
        "--set n_hidden: 64 -> 9",
        "schedule: 'constant' -> 'cosine'",
    ]


def test_cosine_schedule_is_a_pure_function_of_the_step(tmp_path):
    config = TrainConfig("horn-digits", 1, 16, 0.1, 0.0, 0, 100, 0, 1, schedule="cosine")
    assert learning_rate(config, 0, 10) == 0.1
    assert learning_rate(config, 5, 10) == pytest.approx(0.05)
    assert learning_rate(config, 10, 10) == pytest.approx(0.0)
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", *TINY, "--out", str(out)]) == 0
    rates = [
        float(line.split(",")[-1])
        for line in (out / "metrics" / "steps.csv").read_text().splitlines()[1:]
    ]
    expected = [0.02 * 0.5 * (1 + math.cos(math.pi * step / 90)) for step in range(90)]
    assert rates == pytest.approx(expected, rel=1e-12)


def _dyna(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "dyna", *arguments]


def _wait_for(predicate, process, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline, "timed out waiting for the run"
        time.sleep(0.02)


SLOW_RUN = ["train", "horn-digits", "--epochs", "2", "--batch-size", "16", "--log-every", "5",
            "--checkpoint-every", "10", "--set", "n_hidden=16", "--quiet"]  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """SLOW_RUN without interruption (in this process): the reference of the kill test."""
    out = tmp_path_factory.mktemp("whole") / "run"
    threads = torch.get_num_threads()
    try:
        assert main([*SLOW_RUN, "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.mark.slow
def test_sigint_then_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(
    tmp_path, uninterrupted
):
    out = tmp_path / "interrupted"
    steps = out / "metrics" / "steps.csv"
    # 1. SIGINT after a few logged steps: a checkpoint at that step, exit code 130.
    process = subprocess.Popen(
        _dyna(*SLOW_RUN, "--out", str(out)), stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_for(lambda: steps.exists() and len(steps.read_text().splitlines()) > 13, process)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130
    assert "checkpoint written" in err and "--resume" in err
    (interrupted_at,) = (out / "checkpoints").glob("step-*.json")
    assert not list(out.rglob(".tmp-*"))
    # 2. Resume, and SIGKILL as soon as a later checkpoint exists (90 steps per epoch).
    later = int(interrupted_at.stem.split("-")[1]) // 10 * 10 + 20
    process = subprocess.Popen(_dyna(*SLOW_RUN, "--out", str(out), "--resume"))
    try:
        _wait_for(lambda: (out / "checkpoints" / f"step-{later:08d}.json").exists(), process)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    assert not (out / "model.safetensors").exists()
    # 3. Resume to the end: the same weights and metrics files as the uninterrupted run.
    subprocess.run(_dyna(*SLOW_RUN, "--out", str(out), "--resume"), check=True, timeout=600)
    _same_results(uninterrupted, out)


@pytest.mark.slow
def test_two_processes_give_the_weights_of_one_with_the_same_global_batch(tmp_path):
    run = ["train", "horn-digits", "--epochs", "1", "--batch-size", "64", "--set", "n_hidden=8",
           "--quiet", "--device", "cpu", "--threads", "1"]  # fmt: skip
    assert main([*run, "--out", str(tmp_path / "one")]) == 0
    environment = dict(os.environ, OMP_NUM_THREADS="1")
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
    ]
    subprocess.run(
        [*torchrun, "-m", "dyna", *run, "--out", str(tmp_path / "two")],
        check=True,
        timeout=600,
        env=environment,
    )
    one = load_file(tmp_path / "one" / "model.safetensors")
    two = load_file(tmp_path / "two" / "model.safetensors")
    assert one.keys() == two.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=0, atol=1e-6)
    # Logged by rank 0 only, with the global batch's metrics: the same rows.
    rows_one = (tmp_path / "one" / "metrics" / "steps.csv").read_text().splitlines()
    rows_two = (tmp_path / "two" / "metrics" / "steps.csv").read_text().splitlines()
    assert len(rows_one) == len(rows_two) == 1 + 23
    for a, b in zip(rows_one[1:], rows_two[1:], strict=True):
        torch.testing.assert_close(
            torch.tensor([float(v) for v in b.split(",")], dtype=torch.float64),
            torch.tensor([float(v) for v in a.split(",")], dtype=torch.float64),
            rtol=1e-5,
            atol=1e-6,
        )
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["world_size"] == 2


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A one-epoch horn-digits run (45 steps of 32) to copy and damage."""
    out = tmp_path_factory.mktemp("finished") / "run"
    tiny = ["--set", "n_hidden=8", "--quiet", "--epochs", "1"]
    assert main(["train", "horn-digits", *tiny, "--out", str(out)]) == 0
    return out


def _set(path: str, value):
    def change(metadata):
        *parents, last = path.split(".")
        for key in parents:
            metadata = metadata[key]
        if value is _DELETE:
            del metadata[last]
        else:
            metadata[last] = value

    return change


_DELETE = object()


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (_set("config.batch_size", 0), "config.batch_size must be >= 1, got 0"),
        (_set("config.epochs", -3), "config.epochs must be >= 1, got -3"),
        (_set("config.lr", "fast"), "config.lr must be a real number"),
        (_set("config.lr", 0.0), "config.lr must be > 0"),
        (_set("config.schedule", "linear"), "config.schedule must be one of"),
        (_set("config.seed", 2**64), "config.seed must be below"),
        (_set("config.data", 3), "config.data must be a str or null"),
        (_set("config.surprise", 1), "config has unknown fields ['surprise']"),
        (_set("config.epochs", _DELETE), "config lacks the fields ['epochs']"),
        (_set("config.experiment", "rnn-digits"), "config.experiment 'rnn-digits' differs"),
        (_set("config", [1]), "config must be a dict"),
        (_set("experiment", None), "experiment must be a str"),
        (_set("position.step", "abc"), "position.step must be an int, got str"),
        (_set("position.step", -1), "position.step must be >= 0"),
        (_set("position.epoch", 7), "position.epoch must be at most config.epochs = 1"),
        (_set("position.best_val_accuracy", 1.5), "position.best_val_accuracy must be an acc"),
        (_set("position.best_epoch", 9), "position.best_epoch must be below"),
        (_set("position.extra", 0), "position must hold exactly"),
        (_set("optimizer.param_groups", {}), "optimizer.param_groups must be a list"),
        (_set("optimizer.state", {"x": {}}), "optimizer.state keys must be parameter indices"),
        (_set("metrics_bytes.steps", -5), "metrics_bytes.steps must be >= 0"),
        (_set("complete", "yes"), "complete must be a bool"),
    ],
)
def test_a_sidecar_is_checked_field_by_field(finished_run, tmp_path, change, named):
    from dyna.train.checkpoint import CheckpointError, sidecar_checksum
    from dyna.train.trainer import load_training_checkpoint

    (sidecar,) = (finished_run / "checkpoints").glob("step-*.json")
    copy = tmp_path / "checkpoints"
    copy.mkdir()
    (copy / sidecar.with_suffix(".safetensors").name).write_bytes(
        sidecar.with_suffix(".safetensors").read_bytes()
    )
    metadata = json.loads(sidecar.read_text())
    assert load_training_checkpoint(finished_run)[1] == metadata
    change(metadata)
    # Re-signed, so that the content check, not the checksum, is what refuses it.
    metadata["sidecar_sha256"] = sidecar_checksum(metadata)
    (copy / sidecar.name).write_text(json.dumps(metadata))
    with pytest.raises(CheckpointError, match="holds an invalid sidecar") as error:
        load_training_checkpoint(tmp_path)
    assert named in str(error.value)
    assert str(copy / sidecar.name) in str(error.value)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("batch_size", 0, "batch_size must be >= 1, got 0"),
        ("epochs", True, "epochs must be an int, got bool"),
        ("lr", math.inf, "lr must be finite"),
        ("weight_decay", -0.1, "weight_decay must be >= 0.0"),
        ("threads", -1, "threads must be >= 0"),
        ("schedule", "step", "schedule must be one of constant, cosine"),
    ],
)
def test_train_config_refuses_what_cannot_train(field, value, message):
    arguments = {"experiment": "horn-digits", "epochs": 1, "batch_size": 16, "lr": 0.1,
                 "weight_decay": 0.0, "seed": 0, "eval_batch_size": 100, "checkpoint_every": 0,
                 "log_every": 1}  # fmt: skip
    arguments[field] = value
    with pytest.raises((TypeError, ValueError), match=message):
        TrainConfig(**arguments)


def test_a_model_state_that_does_not_fit_names_every_key_that_differs():
    from torch import nn

    from dyna.train.checkpoint import CheckpointMismatch
    from dyna.train.trainer import load_model_state

    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    tensors = {f"model.{key}": value for key, value in model.state_dict().items()}
    tensors["model.0.weight"] = torch.zeros(4, 2)
    tensors["model.2.weight"] = tensors.pop("model.1.weight")
    tensors["optimizer.0.step"] = torch.zeros(())  # not the model's: ignored
    with pytest.raises(CheckpointMismatch) as error:
        load_model_state(model, tensors, "ck.json", "tiny")
    message = str(error.value)
    assert "checkpoint ck.json does not fit the model of tiny" in message
    assert "missing 1.weight; unexpected 2.weight; shapes 0.weight (4, 2) for (3, 2)" in message
    tensors = {f"model.{key}": value + 1 for key, value in model.state_dict().items()}
    load_model_state(model, tensors, "ck.json", "tiny")
    assert torch.equal(model[1].bias, tensors["model.1.bias"])
