"""Long sequences and large inputs: finite where the maths is stable, as the docs state.

The limits asserted here are the ones written in the "Numerical range" sections of
``docs/horn.md``, ``docs/functional.md``, ``docs/dynamic_weights.md`` and
``docs/compact_spectral.md``.
"""

import math

import pytest
import torch

import dyna

T_LONG = 10_000


def _layers(paper, n_hidden=8):
    torch.manual_seed(0)
    reference = dyna.HORNSeqLayer(1, n_hidden, paper=paper, dtype=torch.float64)
    copies = {}
    for dtype in (torch.float32, torch.bfloat16):
        copies[dtype] = dyna.HORNSeqLayer(1, n_hidden, paper=paper, dtype=dtype)
        copies[dtype].load_state_dict(reference.state_dict())
    return reference, copies


@pytest.mark.parametrize("paper", [False, True], ids=["brainmass", "paper"])
def test_horn_layer_over_ten_thousand_steps(paper):
    reference, copies = _layers(paper)
    generator = torch.Generator().manual_seed(1)
    sequence = torch.rand(T_LONG, 2, 1, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        expected, _ = reference(sequence)
        single, _ = copies[torch.float32](sequence.float())
        half, _ = copies[torch.bfloat16](sequence.bfloat16())
    amplitude = float(expected.abs().max())
    assert torch.isfinite(single).all() and torch.isfinite(half).all()
    # float32 follows float64 over the whole sequence (measured: 1e-4 of the amplitude with
    # brainmass's recurrent scale 1, 1e-6 with the paper's 1/sqrt(n))
    single_error = float((single.double() - expected).abs().max())
    assert single_error <= 1e-3 * amplitude
    # bfloat16 stays bounded but drifts: with the paper's scaling by 6e-3 of the amplitude
    # after 10,000 steps; with brainmass's recurrent scale 1 its phase decorrelates (errors of
    # the order of the amplitude); the docs advise float32 for long sequences
    assert float(half.double().abs().max()) <= 2.0 * amplitude
    if paper:
        assert float((half.double() - expected).abs().max()) <= 2e-2 * amplitude


def test_horn_gradients_over_ten_thousand_steps_are_finite():
    torch.manual_seed(0)
    layer = dyna.HORNSeqLayer(1, 8, learnable=("omega", "gamma"))
    sequence = torch.rand(T_LONG, 2, 1, generator=torch.Generator().manual_seed(2))
    out, _ = layer(sequence)
    out[-1].square().sum().backward()
    for name, parameter in layer.named_parameters():
        assert torch.isfinite(parameter.grad).all(), name


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_horn_state_stays_bounded_inside_the_stability_region(dtype):
    # stable: 0 <= gamma dt < 1 and (dt omega)**2 + 4 gamma dt < 4; the tanh bounds the drive
    # by alpha whatever the input and the recurrent weights, so the state stays bounded
    generator = torch.Generator().manual_seed(3)
    n = 6
    dt = 1.0
    omega = torch.linspace(0.1, 1.5, n)
    gamma = torch.linspace(0.005, 0.4, n)
    assert bool((((dt * omega) ** 2 + 4 * gamma * dt) < 4).all())
    drive = 1e6 * torch.randn(T_LONG, 2, n, generator=generator)
    weight = 100 * torch.randn(n, n, generator=generator)
    x0 = torch.zeros(2, n)
    positions, velocities, _ = dyna.horn_scan(
        drive.to(dtype),
        weight.to(dtype),
        None,
        0.5,
        omega,
        gamma,
        0.0,
        dt,
        x0.to(dtype),
        x0.to(dtype),
    )
    assert torch.isfinite(positions).all() and torch.isfinite(velocities).all()
    # |alpha tanh| <= alpha: the forced response of a damped oscillator stays within
    # alpha / (omega gamma)-scale bounds; a loose bound that still catches any blow-up
    bound = 0.5 / float((omega * gamma).min()) * 10
    assert float(positions.abs().max()) < bound


def test_horn_diverges_outside_the_stability_region_as_documented():
    # dt * omega = 2.5 > 2: the symplectic Euler step is unstable and float32 overflows
    drive = torch.zeros(T_LONG, 1, 1)
    x0 = torch.ones(1, 1)
    positions, _, _ = dyna.horn_scan(
        drive, torch.zeros(1, 1), None, 0.04, 2.5, 0.0, 0.0, 1.0, x0, torch.zeros(1, 1)
    )
    assert not torch.isfinite(positions[-1]).all()
    assert float(positions[:20].abs().max()) > 1e3  # fast exponential growth


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_siglog_and_the_compressor_for_large_inputs(dtype):
    finfo = torch.finfo(dtype)
    x = torch.tensor([-finfo.max, -1e20, -1.0, 0.0, 1e-30, 1e20, finfo.max]).to(dtype)
    assert torch.isfinite(dyna.siglog(x)).all()
    assert torch.isfinite(dyna.siglog_parametric(x)).all()
    # log growth: siglog(max float32) = ln(3.4e38) - 1 = 87.7
    assert float(dyna.siglog(x).abs().max()) < 90
    leaky = dyna.SignalStabilizationCompressor(dtype=dtype)
    no_leak = dyna.SignalStabilizationCompressor(leak=0.0, dtype=dtype)
    assert torch.isfinite(no_leak(x)).all()
    # with the default leak 1e-3 the gate and value grow like 1e-3 |x| each: finite up to
    # |x| ~ 1e22, overflow beyond (documented)
    assert torch.isfinite(leaky(torch.tensor([-1e21, 1.0, 1e21]).to(dtype))).all()
    assert not torch.isfinite(leaky(torch.tensor([-1e24, 1.0, 1e24]).to(dtype))).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_composers_for_large_contexts(dtype):
    torch.manual_seed(0)
    context = torch.randn(4, 5)
    delta = dyna.TensorComposerDelta([4, 3], 5, rank=2, dtype=dtype).eval()
    mobius = dyna.TensorComposerMobius([4, 3], 5, n_subspaces=2, dtype=dtype).eval()
    # documented: Delta finite up to |context| ~ 1e6 (its modulation enters cubed), Mobius up
    # to ~1e17
    for scale in (1.0, 1e3, 1e6):
        assert torch.isfinite(delta((context * scale).to(dtype))).all(), scale
    for scale in (1.0, 1e6, 1e16):
        assert torch.isfinite(mobius((context * scale).to(dtype))).all(), scale
    # documented: beyond, the output overflows to non-finite values in both dtypes (bfloat16
    # parameters are computed with in float32), never to a finite wrong answer
    for scale in (1e9, 1e12):
        assert not torch.isfinite(delta((context * scale).to(dtype))).all(), scale


def test_csm_overflows_only_when_the_product_does():
    csm = dyna.CompactSpectralMultiplier([3, 3, 3], 8, seed=0)
    generator = torch.Generator().manual_seed(0)
    xs = [torch.randn(3, generator=generator) for _ in range(3)]
    # the estimate is a degree-2K polynomial: |x|^6 stays below float32's max up to ~1e6
    assert torch.isfinite(csm([x * 1e5 for x in xs], [x * 1e5 for x in xs])).all()
    exact = csm.exact([x.double() * 1e7 for x in xs], [x.double() * 1e7 for x in xs])
    assert math.isfinite(float(exact)) and abs(float(exact)) > torch.finfo(torch.float32).max
