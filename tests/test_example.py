"""The README's main job: the tiny end-to-end example trains and its loss falls."""

import importlib.util
import re
from pathlib import Path

import torch

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tiny_regression.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("tiny_regression", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_regression_loss_falls(capsys):
    example = _load_example()
    assert example.main(["--epochs", "30", "--seed", "0"]) == 0
    losses = [float(v) for v in re.findall(r"test mse ([0-9.]+)", capsys.readouterr().out)]
    assert len(losses) == 31
    assert losses[-1] < 0.25 * losses[0]
    # Falling over the run, not just at the end: the second half beats the first epoch.
    assert max(losses[15:]) < losses[1]


def test_tiny_regression_model_shapes_and_parameters():
    example = _load_example()
    model = example.TinyRegressor()
    out = model(torch.randn(5, 8))
    assert out.shape == (5,)
    names = {name for name, _ in model.named_parameters()}
    assert "compressor.leak_scale" in names and "log_alpha" in names
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
