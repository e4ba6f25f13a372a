"""Recurrent baselines (tanh RNN, GRU, LSTM) with a linear readout of the last step.

The classifier the HORN papers compare against at equal unit count: one ``torch.nn`` recurrent
layer of ``n_hidden`` units reads the sequence, and ``nn.Linear`` maps the last step's hidden
output h_T to class logits, as :class:`~dyna.module.HORNSeqNetwork` maps x_T.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dyna._validation import (
    check_choice,
    check_floating_dtype,
    check_floating_tensor,
    check_positive_int,
)

CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


class RecurrentClassifier(nn.Module):
    """``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` followed by a linear readout of the last step.

    Args:
        n_input: input features per step.
        n_hidden: recurrent units.
        n_output: classes (readout features).
        cell: ``"rnn"`` (tanh), ``"gru"`` or ``"lstm"`` (default ``"lstm"``).
        num_layers: stacked recurrent layers (default 1).
        device: factory argument: where the parameters live.
        dtype: factory argument: the parameters' floating dtype.

    Shape:
        - input: (B, T, n_input).
        - Output: logits (B, n_output).

    Example:
        >>> model = RecurrentClassifier(1, 32, 10, cell="gru")
        >>> model(torch.rand(4, 64, 1)).shape
        torch.Size([4, 10])
    """

    def __init__(
        self,
        n_input: int,
        n_hidden: int,
        n_output: int,
        cell: str = "lstm",
        num_layers: int = 1,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        # nn.RNN would fail deep inside with "Only Tensors of floating point ... gradients".
        check_floating_dtype("dtype", dtype)
        factory_kwargs: dict[str, Any] = {"device": device, "dtype": dtype}
        self.n_input = check_positive_int("n_input", n_input)
        self.n_hidden = check_positive_int("n_hidden", n_hidden)
        self.n_output = check_positive_int("n_output", n_output)
        self.cell = check_choice("cell", cell, tuple(CELLS))
        self.num_layers = check_positive_int("num_layers", num_layers)
        self.recurrent = CELLS[self.cell](
            self.n_input, self.n_hidden, self.num_layers, batch_first=True, **factory_kwargs
        )
        self.readout = nn.Linear(self.n_hidden, self.n_output, **factory_kwargs)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's own initialisation of both parts (uniform in ±1/sqrt(fan))."""
        self.recurrent.reset_parameters()
        self.readout.reset_parameters()

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        check_floating_tensor("input", input)
        # Checked here: nn.RNN reports a wrong width or an empty sequence with a RuntimeError.
        if input.dim() != 3 or input.shape[-1] != self.n_input or input.shape[1] == 0:
            raise ValueError(
                f"input must be (B, T, n_input) with n_input={self.n_input} and T >= 1, "
                f"got shape {tuple(input.shape)}"
            )
        # Contiguous first: PyTorch's recurrent kernels round a strided input differently (in
        # bfloat16, by up to an ulp of the hidden state), and the logits should not depend on
        # the input's memory layout. A no-op for a contiguous input.
        sequence, _ = self.recurrent(input.contiguous())
        return self.readout(sequence[:, -1])

    def extra_repr(self) -> str:
        return (
            f"n_input={self.n_input}, n_hidden={self.n_hidden}, n_output={self.n_output}, "
            f"cell={self.cell!r}, num_layers={self.num_layers}"
        )
