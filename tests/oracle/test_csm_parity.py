"""Per-trial parity of the compact spectral estimate with the reference DyNA's CSM script.

The expected values come from ``fixtures/csm_script.pt``, written by ``make_csm_fixture.py``,
which runs the reference's ``CSM.py`` (commit 01c17ea) with several configurations. Here the
script's draws are repeated in its order (seed 42: inputs, then for each trial and mode a hash
table and a sign table) and every trial's estimate is compared with the script's: relative error
``||ours - ref|| / ||ref||`` at most 1e-5 (the script computes in float32 with complex FFTs; we
use real FFTs and, for the estimate, Parseval's identity).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from dyna.functional import compact_spectral_inner
from dyna.lib import CompactSpectralMultiplier

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "csm_script.pt"
DATA: dict[str, torch.Tensor] = torch.load(FIXTURE, weights_only=True)
CASES = sorted({key.split("/")[0] for key in DATA})


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny FFTs: avoid waiting for a second MKL thread on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _parse(case: str) -> tuple[int, int, int, float, int]:
    match = re.fullmatch(r"K(\d+)_d(\d+)_D(\d+)_c([\d.]+)_n(\d+)", case)
    K, d, D, corr, trials = match.groups()
    return int(K), int(d), int(D), float(corr), int(trials)


def _script_draws(K: int, d: int, D: int, corr: float, trials: int):
    """The script's inputs and per-trial tables (as per-row tables), in its draw order."""
    torch.manual_seed(42)
    xs = [torch.randn(trials, d) for _ in range(K)]
    ys = [torch.lerp(torch.randn_like(x), x, corr) for x in xs]
    # Each randint element consumes one 32-bit draw on the CPU, so one call over
    # (trials, K, 2, d) yields the script's sequence randint(0, D, (d,)), randint(0, 2, (d,)), …;
    # the signs are the second draw modulo 2, equal to randint(0, 2) for even D.
    assert D % 2 == 0
    draws = torch.randint(0, D, (trials, K, 2, d))
    hashes = [draws[:, k, 0] for k in range(K)]
    signs = [(draws[:, k, 1] % 2) * 2 - 1 for k in range(K)]
    return xs, ys, hashes, signs


def test_fixture_holds_the_expected_cases():
    assert CASES == ["K1_d12_D8_c0.7_n300", "K2_d16_D64_c0.8_n300", "K3_d8_D16_c0.9_n300",
                     "K4_d32_D2048_c0.5_n200"]  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_per_trial_estimates_match_the_reference_script(case):
    K, d, D, corr, trials = _parse(case)
    xs, ys, hashes, signs = _script_draws(K, d, D, corr, trials)
    estimates = compact_spectral_inner(xs, ys, hashes, signs, D)
    assert estimates.dtype == torch.float32 and estimates.shape == (trials,)
    expected = DATA[f"{case}/estimates"]
    error = ((estimates.double() - expected).norm() / expected.norm()).item()
    assert error < 1e-5, f"{case}: relative error {error:.2e}"
    truths = CompactSpectralMultiplier.exact(xs, ys).double()
    expected_truths = DATA[f"{case}/truths"]
    assert ((truths - expected_truths).norm() / expected_truths.norm()).item() < 1e-6


@pytest.mark.parametrize("case", CASES)
def test_first_trial_through_the_module(case):
    """A module built with seed=None right after the script's data draws holds its first tables."""
    K, d, D, corr, _ = _parse(case)
    torch.manual_seed(42)
    trials = int(case.rsplit("_n", 1)[1])
    xs = [torch.randn(trials, d) for _ in range(K)]
    ys = [torch.lerp(torch.randn_like(x), x, corr) for x in xs]
    module = CompactSpectralMultiplier([d] * K, D)
    estimate = module([x[0] for x in xs], [y[0] for y in ys])
    expected = DATA[f"{case}/estimates"][0]
    scale = DATA[f"{case}/estimates"].abs().max()
    assert abs(estimate.double() - expected) <= 1e-5 * scale
