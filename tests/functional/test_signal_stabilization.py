"""The fused signal stabilisation compressor against its twin and the layer."""

from __future__ import annotations

import pytest
import torch

from dyna.functional.signal_stabilization import stabilize, stabilize_ref
from dyna.module import SignalStabilizationCompressor
from tests.functional.twins import compare


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("shape", [(1, 1, 2), (3, 4, 5, 6)])
def test_stabilize_matches_ref_and_the_compressor(dtype, shape):
    gen = torch.Generator().manual_seed(len(shape))
    x = torch.randn(shape, generator=gen, dtype=torch.float64) * 2
    x.view(-1)[:3] = torch.tensor([0.0, 1.0, -1.0])[: x.numel()]  # siglog's kinks
    x = x.to(dtype)
    compare(lambda t: stabilize(t, 1e-12), lambda t: stabilize_ref(t, 1e-12), [x], dtype)
    compressor = SignalStabilizationCompressor(True, True, True, eps=1e-12)
    compare(lambda t: stabilize(t, 1e-12), compressor, [x], dtype)
