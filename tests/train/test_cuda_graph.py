"""``dyna train --cuda-graph``: its refusals (on the CPU, for online experiments, on resume) and,
where a GPU is present, a captured run that trains as the eager one does."""

import csv
import json

import pytest
import torch

from dyna.cli import main
from dyna.train.config import RunOptions, TrainConfig, config_differences
from tests.cli_refusal import assert_refused

TINY = ["--set", "n_hidden=8", "--batch-size", "64", "--epochs", "1", "--quiet"]


def test_cuda_graph_on_the_cpu_is_refused_in_one_line(tmp_path):
    out = tmp_path / "run"
    assert_refused(
        ["train", "horn-digits", *TINY, "--device", "cpu", "--cuda-graph", "--out", str(out)],
        ["--cuda-graph needs --device cuda", "cpu"],
        exit_code=2,
    )
    assert not out.exists()


def test_cuda_graph_is_refused_by_an_online_experiment(tmp_path):
    assert_refused(
        ["train", "cnu-stream", "--cuda-graph", "--out", str(tmp_path / "run")],
        ["--cuda-graph is not supported by cnu-stream"],
        exit_code=2,
    )


def test_the_option_is_recorded_and_a_resume_must_match_it(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "horn-digits", *TINY, "--device", "cpu", "--out", str(out)]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["cuda_graph"] is False
    assert config_differences(saved, {**saved, "cuda_graph": True}) == ["cuda_graph: False -> True"]
    # A checkpoint written before the option existed ran without it.
    older = {key: value for key, value in saved.items() if key != "cuda_graph"}
    assert config_differences(older, saved) == []
    assert config_differences(older, {**saved, "cuda_graph": True}) != []


def test_run_options_and_config_check_the_option_type():
    with pytest.raises(TypeError, match="cuda_graph"):
        RunOptions(cuda_graph="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cuda_graph"):
        TrainConfig(
            experiment="horn-digits",
            epochs=1,
            batch_size=8,
            lr=0.01,
            weight_decay=0.0,
            seed=0,
            eval_batch_size=8,
            checkpoint_every=0,
            log_every=1,
            cuda_graph=1,  # type: ignore[arg-type]
        )


def _losses(out):
    with (out / "metrics" / "steps.csv").open() as handle:
        return [float(row["loss"]) for row in csv.DictReader(handle)]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_captured_run_trains_as_the_eager_run_does(tmp_path):
    # 1,438 digits in batches of 64: 3 eager warm-up steps, a capture, 18 replays and a ragged
    # last batch of 30 run eagerly, over two epochs.
    arguments = ["train", "horn-digits", "--set", "n_hidden=8", "--batch-size", "64"]
    arguments += ["--epochs", "2", "--log-every", "5", "--checkpoint-every", "10"]
    arguments += ["--quiet", "--device", "cuda"]
    assert main([*arguments, "--out", str(tmp_path / "eager")]) == 0
    assert main([*arguments, "--cuda-graph", "--out", str(tmp_path / "graph")]) == 0
    eager, graph = _losses(tmp_path / "eager"), _losses(tmp_path / "graph")
    assert len(eager) == len(graph) == 46
    assert graph == pytest.approx(eager, rel=1e-3, abs=1e-4)
    config = json.loads((tmp_path / "graph" / "config.json").read_text())
    assert config["cuda_graph"] is True
    # The checkpoints record the rate as a number, as an eager run's do.
    sidecar = sorted((tmp_path / "graph" / "checkpoints").glob("step-*.json"))[-1]
    group = json.loads(sidecar.read_text())["optimizer"]["param_groups"][0]
    assert isinstance(group["lr"], float) and group["capturable"] is True
