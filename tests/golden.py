"""Comparison of results with golden values computed by the reference DyNA implementation."""

import torch

# Parity tolerances per dtype: relative to the largest magnitude of the listed values.
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5, torch.bfloat16: 2e-2}


def assert_golden(actual: torch.Tensor, expected: list | float, dtype: torch.dtype) -> None:
    """Element-wise comparison at ``TOLERANCE[dtype]`` times the largest listed magnitude.

    The float64 golden values are printed to 10 decimals, so at least half a unit of that last
    decimal (5e-11) is allowed.
    """
    expected_tensor = torch.tensor(expected, dtype=torch.float64)
    scale = float(expected_tensor.abs().max()) if expected_tensor.numel() else 1.0
    torch.testing.assert_close(
        actual.detach().to(torch.float64),
        expected_tensor,
        rtol=0.0,
        atol=max(TOLERANCE[dtype] * scale, 5e-11),
    )
