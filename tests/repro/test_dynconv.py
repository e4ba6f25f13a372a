"""The static-versus-dynamic convolution comparison: experiment keys, runner, rendered block."""

import json
from pathlib import Path

import pytest
import torch

from dyna.cli import main as dyna_main
from dyna.experiments.images import digits_images, dynamic_conv_model
from dyna.experiments.registry import ConfigError, get_experiment
from dyna.models import DynamicConvClassifier, StaticConvClassifier
from repro import dynconv, results
from repro.dynconv import Run, command_pattern, format_table, load, save, train_arguments


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _count(model):
    return sum(parameter.numel() for parameter in model.parameters())


def _digits_model(**assignments):
    experiment = get_experiment("dynconv-digits")
    params = experiment.resolve_params({key: str(value) for key, value in assignments.items()})
    return dynamic_conv_model(params, digits_images(params, None))


def test_conv_and_match_keys_build_the_variants():
    static = _digits_model(conv="static")
    assert isinstance(static, StaticConvClassifier) and static.channels == (8, 16)
    assert _count(static) == 1418  # the closed form, checked by hand in tests/models
    for kind, channels in (("delta", (45, 90)), ("mobius", (141, 282))):
        dynamic = _digits_model(conv=kind)
        assert isinstance(dynamic, DynamicConvClassifier) and dynamic.kind == kind
        matched = _digits_model(conv="static", match=kind)
        assert isinstance(matched, StaticConvClassifier) and matched.channels == channels
        # Within 0.5 % of the dynamic network's parameter count.
        assert abs(_count(matched) - _count(dynamic)) / _count(dynamic) < 0.005
    with pytest.raises(ConfigError, match="match applies to conv=static only"):
        _digits_model(conv="delta", match="mobius")


def test_dyna_train_reports_a_misplaced_match_in_one_line(tmp_path, capsys):
    argv = ["train", "dynconv-digits", "--set", "match=delta", "--quiet",
            "--out", str(tmp_path / "r")]  # fmt: skip
    assert dyna_main(argv) == 2
    assert "match applies to conv=static only" in capsys.readouterr().err


def test_train_arguments():
    assert train_arguments("digits", "static-mobius", 2, "r/x") == [
        "train", "dynconv-digits", "--seed", "2", "--threads", "1",
        "--set", "conv=static", "--set", "match=mobius",
        "--out", "r/x", "--overwrite", "--quiet",
    ]  # fmt: skip
    assert train_arguments("mnist", "delta", 0, "o", data="d", epochs=3, train_samples=500) == [
        "train", "dynconv-mnist", "--seed", "0", "--threads", "1", "--epochs", "3",
        "--data", "d", "--checkpoint-every", "0", "--set", "train_samples=500",
        "--set", "conv=delta", "--out", "o", "--overwrite", "--quiet",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="dataset must be one of"):
        train_arguments("cifar", "delta", 0, "o")
    with pytest.raises(ValueError, match="model must be one of"):
        train_arguments("digits", "lstm", 0, "o")
    with pytest.raises(ValueError, match="data must name the MNIST folder"):
        train_arguments("mnist", "delta", 0, "o")


def test_runner_trains_records_and_appends(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["--models", "static", "--seeds", "3", "--digits-epochs", "1", "--runs", "runs",
            "--json", "out.json"]  # fmt: skip
    (run,) = dynconv.main(argv)
    assert (run.dataset, run.model, run.seed, run.epochs, run.parameters) == (
        "digits", "static", 3, 1, 1418,
    )  # fmt: skip
    summary = json.loads(Path("runs/digits/static/seed-3/summary.json").read_text())
    assert run.test_accuracy == summary["final_test_accuracy"]
    assert run.test_accuracy_per_epoch == (summary["final_test_accuracy"],)
    assert run.command == (
        "dyna train dynconv-digits --seed 3 --threads 1 --epochs 1 --set conv=static "
        "--out runs/digits/static/seed-3 --overwrite --quiet"
    )
    assert run.wall_seconds > 0 and run.cpu_seconds > 0
    # --append skips what the file holds and records the second command.
    assert dynconv.main([*argv, "--append"]) == [run]
    runs, metadata = load("out.json")
    assert runs == [run] and len(metadata["commands"]) == 2
    assert metadata["commands"][0] == "python -m repro.dynconv " + " ".join(argv)
    with pytest.raises(SystemExit, match="needs --data"):
        dynconv.main(["--datasets", "mnist", "--data", ""])
    with pytest.raises(SystemExit, match="--append needs --json"):
        dynconv.main(["--append"])


def _fake_runs():
    runs = []
    for seed, accuracy in enumerate((0.9, 0.8, 0.7)):
        runs.append(
            Run("digits", "delta", seed, f"dyna train dynconv-digits --seed {seed} --out "
                f"r/seed-{seed}", 2, 38036, accuracy, (0.5, accuracy), 4.0 + 2 * seed, 2.0)
        )  # fmt: skip
    runs.append(Run("digits", "static", 0, "dyna train s --seed 0", 2, 1418, 0.75, (0.6, 0.75),
                    1.0, 0.5))  # fmt: skip
    return runs


def test_table_by_hand():
    lines = format_table(_fake_runs()).splitlines()
    assert len(lines) == 4
    # static before delta (the order of MODELS); one seed: no spread.
    assert lines[2] == (
        "| digits 8x8 | static | nn.Conv2d, same channels (same conv FLOPs) | 1,418 | 0 | 2 "
        "| 75.00 | 0.50 | 0.25 |"
    )
    # Accuracies 90, 80, 70: mean 80, sample std 10; wall 4, 6, 8 s over 2 epochs: 3 s/epoch.
    assert lines[3] == (
        "| digits 8x8 | delta | DynamicConv2DDelta | 38,036 | 0, 1, 2 | 2 | 80.00 ± 10.00 "
        "| 3.00 | 1.00 |"
    )
    assert command_pattern(_fake_runs()[1]) == "dyna train dynconv-digits --seed S --out r/seed-S"


def test_render_and_regenerate(tmp_path):
    pytest.importorskip("matplotlib")
    docs = tmp_path / "docs"
    (docs / "results").mkdir(parents=True)
    metadata = {"commands": ["python -m repro.dynconv --json x"], "wall_seconds": 90.0,
                "cpu_seconds": 60.0, "machine": "x86_64, 2 CPU cores", "torch": "2.x"}  # fmt: skip
    save(docs / "results" / "dynconv.json", _fake_runs(), metadata)
    page = "# R\n\n<!-- begin generated: dynconv -->\nstale\n<!-- end generated: dynconv -->\nend\n"
    (docs / "results.md").write_text(page)
    text = results.regenerate("dynconv", docs=docs).read_text()
    assert "stale" not in text and text.endswith("<!-- end generated: dynconv -->\nend\n")
    assert (
        "Produced by `python -m repro.dynconv --json x` in 1.5 min wall time (1.0 min CPU" in text
    )
    assert "| digits 8x8 | delta | `dyna train dynconv-digits --seed S --out r/seed-S` |" in text
    assert format_table(_fake_runs()) in text
    assert "![Test accuracy after each epoch per model](results/dynconv.png)" in text
    figure = docs / "results" / "dynconv.png"
    assert figure.read_bytes()[:4] == b"\x89PNG" and figure.stat().st_size < 100_000


def test_section_and_bad_files(tmp_path):
    section = results.SECTIONS["dynconv"]
    assert section.run is dynconv.main and section.render is dynconv.render
    assert section.arguments == ("--datasets", "digits", "mnist", "--mnist-epochs", "3")
    path = tmp_path / "x.json"
    path.write_text("[]")
    with pytest.raises(ValueError, match=r"written by repro\.dynconv"):
        load(path)
    save(path, [], {})
    with pytest.raises(ValueError, match="holds no runs"):
        dynconv.render(path, tmp_path, "")
