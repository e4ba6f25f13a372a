"""Train a tiny model built from DyNA's functional core on generated data.

The task is a smooth non-linear regression, y = sin(x @ a) + 0.5 * tanh(x @ b), on 8-dimensional
Gaussian inputs generated from a seed. The model is

    x -> noiseover (training only) -> Linear(8, 32) -> SignalStabilizationCompressor
      -> backward_gradient_normalization -> Linear(32, 1)
      -> siglog_parametric with a learned alpha

trained with Adam (cosine learning-rate decay) on the mean squared error; the log-proportional
error is reported beside it.
The script prints the loss of every epoch and exits with status 1 if the loss did not fall.

Usage: python examples/tiny_regression.py [--epochs N] [--seed S]
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import torch
from torch import nn

import dyna


class TinyRegressor(nn.Module):
    """Two linear layers around a signal stabilisation compressor; output siglog-compressed."""

    def __init__(self, n_input: int = 8, n_hidden: int = 32) -> None:
        super().__init__()
        self.input_layer = nn.Linear(n_input, n_hidden)
        self.compressor = dyna.SignalStabilizationCompressor(trainable=True)
        self.output_layer = nn.Linear(n_hidden, 1)
        # alpha = exp(log_alpha) stays positive; 1/e makes the output ~ sign(y) * ln(1 + |y|).
        self.log_alpha = nn.Parameter(torch.tensor(-1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, n_input) -> (B,)."""
        if self.training:
            x = dyna.noiseover(x, 0.01)
        hidden = dyna.backward_gradient_normalization(self.compressor(self.input_layer(x)))
        return dyna.siglog_parametric(self.output_layer(hidden).squeeze(-1), self.log_alpha.exp())


def make_data(n_samples: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (n_samples, 8) and targets (n_samples,) of the generated regression task."""
    directions = torch.randn(2, 8, generator=generator) / math.sqrt(8)
    x = torch.randn(n_samples, 8, generator=generator)
    y = torch.sin(x @ directions[0] * 2.0) + 0.5 * torch.tanh(x @ directions[1] * 3.0)
    return x, y


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30, help="passes over the data (30)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data and model (0)")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    x, y = make_data(4096, torch.Generator().manual_seed(args.seed))
    x_test, y_test = x[3584:], y[3584:]
    x_train, y_train = x[:3584], y[:3584]
    model = TinyRegressor()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-2)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    batch_size = 64

    def evaluate() -> tuple[float, float]:
        model.eval()
        with torch.no_grad():
            prediction = model(x_test)
            mse = torch.mean((prediction - y_test) ** 2)
            lpe = dyna.log_proportional_error(prediction, y_test)
        model.train()
        return float(mse), float(lpe)

    first_mse, first_lpe = evaluate()
    print(f"dyna {dyna.__version__}, torch {torch.__version__}: {model}")
    print(f"epoch  0  test mse {first_mse:.4f}  test log-proportional error {first_lpe:.4f}")
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        order = torch.randperm(len(x_train))
        for batch in order.split(batch_size):
            loss = torch.mean((model(x_train[batch]) - y_train[batch]) ** 2)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step()
        mse, lpe = evaluate()
        print(f"epoch {epoch:2d}  test mse {mse:.4f}  test log-proportional error {lpe:.4f}")
    elapsed = time.perf_counter() - start
    alpha = float(model.log_alpha.detach().exp())
    print(f"trained {args.epochs} epochs in {elapsed:.1f} s; alpha = {alpha:.4f}")
    if not mse < 0.5 * first_mse:
        print(f"the loss did not fall enough: {first_mse:.4f} -> {mse:.4f}", file=sys.stderr)
        return 1
    print(f"test mse fell from {first_mse:.4f} to {mse:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
