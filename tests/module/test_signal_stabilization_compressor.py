"""Tests for ``dyna.module.SignalStabilizationCompressor`` and its mode enum."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn import functional as F

from dyna.functional import backward_gradient_normalization, siglog
from dyna.module import SignalStabilizationCompressor, SignalStabilizationCompressorMode

FLOAT_DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
SHAPES = [(7,), (3, 5), (2, 3, 4)]
FLAGS = ["bgn_input", "bgn_mid", "bgn_output", "trainable"]

# Golden values: reference DyNA at commit 01c17ea (torch 2.13, CPU).
GOLDEN_INPUT = [[-3.0, -1.0, 0.0, 0.5, 2.0], [1.0, 1.0, 1.0, 1.0, 1.0]]
GOLDEN_OUTPUTS = {
    # (mode, dtype, trainable): (output row 1, constant value of row 2)
    ("gating", torch.float32, False): (
        [-0.08793599, -0.2232345, -4.866577e-05, 0.2797121, 1.295223],
        0.4796641,
    ),
    ("gating", torch.float64, False): (
        [-0.09357075, -0.2235309, -4.879809e-05, 0.2788824, 1.288635],
        0.4785732,
    ),
    ("gating", torch.bfloat16, False): (
        [-0.087891, -0.221680, 0.0, 0.283203, 1.296875],
        0.480469,
    ),
    ("gating", torch.float16, False): (
        [-0.048523, -0.221069, 0.0, 0.285400, 1.340820],
        0.487061,
    ),
    ("dampening", torch.float32, False): (
        [-0.09945592, -0.2240977, -4.849200e-05, 0.2787133, 1.290598],
        0.4796641,
    ),
    # The reference gives exactly the gating float64 row here.
    ("dampening", torch.float64, False): (
        [-0.09357075, -0.2235309, -4.879809e-05, 0.2788824, 1.288635],
        0.4785732,
    ),
    ("dampening", torch.bfloat16, False): (
        [-0.098633, -0.224609, 0.0, 0.281250, 1.289062],
        0.480469,
    ),
    ("dampening", torch.float16, False): (
        [-0.139404, -0.228027, 0.0, 0.277588, 1.304688],
        0.487061,
    ),
    ("gating", torch.float32, True): (
        [-0.08616301, -0.2231410, -4.865384e-05, 0.2799725, 1.297292],
        0.4800057,
    ),
}
# Relative parity tolerances (the golden rows are only given to ~7 digits, so float64 rows
# of this table are compared at the precision they are printed with; the full-precision float64
# values are in GOLDEN_GRADIENTS below, compared at 1e-10).
OUTPUT_TOLERANCE = {
    torch.float32: 1e-5,
    torch.float64: 1e-6,
    torch.bfloat16: 2e-2,
    torch.float16: 2e-2,
}

# Float64, loss = sum_i out.flatten()[i] * cos(0.11 i + 0.2); leak_scale is the reference's
# float32 parameter.
GOLDEN_LOSS_WEIGHTS = [
    0.98006658,
    0.95233357,
    0.91308894,
    0.86280707,
    0.80209576,
    0.73168887,
    0.65243747,
    0.56529953,
    0.47132836,
    0.37165987,
]
_DEFAULT_OUTPUT = [
    -0.0935707547,
    -0.2235308808,
    -4.87981e-05,
    0.278882405,
    1.2886346411,
    *[0.4785731971] * 5,
]
_DEFAULT_GRADIENT = [
    -0.0713650832,
    0.2338518933,
    1.5523987573,
    0.8293183446,
    0.5080957732,
    0.4038083966,
    0.3330766897,
    0.2553062658,
    0.1714371986,
    0.0824832811,
]
GOLDEN_GRADIENTS = {
    # (mode, trainable): (output, dX, d leak_scale)
    ("gating", False): (_DEFAULT_OUTPUT, _DEFAULT_GRADIENT, None),
    ("dampening", False): (_DEFAULT_OUTPUT, _DEFAULT_GRADIENT, None),
    ("gating", True): (
        [
            -0.0861630105,
            -0.223141012,
            -4.87477e-05,
            0.2799725232,
            1.2972914138,
            *[0.4800057611] * 5,
        ],
        [
            -0.0783799765,
            0.2312127748,
            1.5579346529,
            0.8259073679,
            0.5083453676,
            0.4047615636,
            0.3338628984,
            0.2559089018,
            0.1718418665,
            0.0826779782,
        ],
        0.0108922012,
    ),
    ("dampening", True): (
        [
            -0.101298718,
            -0.2242752693,
            -4.85193e-05,
            0.2786608639,
            1.2912136591,
            *[0.4800057611] * 5,
        ],
        [
            -0.0647332505,
            0.2356206775,
            1.5413843928,
            0.8316083991,
            0.5125153715,
            0.4047615636,
            0.3338628984,
            0.2559089018,
            0.1718418665,
            0.0826779782,
        ],
        -0.0013353375,
    ),
}
GOLDEN_FLOAT32_GRADIENT = [
    -0.076698,
    0.231845,
    1.556609,
    0.826725,
    0.508291,
    0.404534,
    0.333675,
    0.255765,
    0.171745,
    0.082632,
]


def _assert_close_to_largest(actual, expected, relative):
    """Element-wise comparison with a tolerance relative to the largest listed magnitude."""
    expected = torch.as_tensor(expected, dtype=torch.float64)
    atol = relative * expected.abs().max().item()
    torch.testing.assert_close(actual.detach().to(torch.float64), expected, rtol=0.0, atol=atol)


def _loss_weights(numel: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.cos(0.11 * torch.arange(numel, dtype=torch.float64) + 0.2).to(dtype)


def _siglog(x: torch.Tensor) -> torch.Tensor:
    """siglog written out: s(x) (ln(|x| + e + 1e-4) - 1), s(0) = -1."""
    sign = torch.where(x > 0, 1.0, -1.0).to(x.dtype)
    return sign * (torch.log(x.abs() + (math.e + 1e-4)) - 1.0)


def _ssc_formula(x: torch.Tensor, leak_term: torch.Tensor, dampening: bool, eps: float):
    """The documented forward (no BGN), for a given leak term l."""
    gate_leak = leak_term.abs() if dampening else leak_term
    z = (torch.sigmoid(x) + gate_leak) * (_siglog(x) + leak_term)
    return z / torch.sqrt(z.abs().mean(dim=-1, keepdim=True) + eps)


def _ssc_reference(x, bgn_input, bgn_mid, bgn_output, dampening, leak_scale=None, leak=1e-3):
    """The documented forward step by step in float64 (x float64), with the BGN placements."""
    eps = torch.finfo(torch.float64).smallest_normal
    if bgn_input:
        x = backward_gradient_normalization(x)
    if leak_scale is None:
        leak_term = x * math.sqrt(eps)
    else:
        leak_term = (x * leak) * F.softplus(leak_scale.to(x.dtype))
    gate_leak = leak_term.abs() if dampening else leak_term
    z = (torch.sigmoid(x) + gate_leak) * (siglog(x) + leak_term)
    if bgn_mid:
        z = backward_gradient_normalization(z)
    z = z * torch.rsqrt(z.abs().mean(dim=-1, keepdim=True) + eps)
    if bgn_output:
        z = backward_gradient_normalization(z)
    return z


# ------------------------------------------------------------------------------ golden values


@pytest.mark.parametrize(("mode", "dtype", "trainable"), list(GOLDEN_OUTPUTS))
def test_golden_outputs(mode, dtype, trainable):
    row, constant = GOLDEN_OUTPUTS[(mode, dtype, trainable)]
    module = SignalStabilizationCompressor(mode=mode, trainable=trainable)
    out = module(torch.tensor(GOLDEN_INPUT, dtype=dtype))
    assert out.dtype == dtype and out.shape == (2, 5)
    expected = [row, [constant] * 5]
    _assert_close_to_largest(out, expected, OUTPUT_TOLERANCE[dtype])


def test_golden_float64_dampening_equals_gating():
    x = torch.tensor(GOLDEN_INPUT, dtype=torch.float64)
    gating = SignalStabilizationCompressor(mode="gating")(x)
    dampening = SignalStabilizationCompressor(mode="dampening")(x)
    assert torch.equal(gating, dampening)


@pytest.mark.parametrize(("mode", "trainable"), list(GOLDEN_GRADIENTS))
def test_golden_float64_gradients(mode, trainable):
    expected_output, expected_gradient, expected_leak_gradient = GOLDEN_GRADIENTS[(mode, trainable)]
    module = SignalStabilizationCompressor(mode=mode, trainable=trainable)
    x = torch.tensor(GOLDEN_INPUT, dtype=torch.float64, requires_grad=True)
    weights = _loss_weights(10, torch.float64)
    _assert_close_to_largest(weights, GOLDEN_LOSS_WEIGHTS, 1e-8)
    out = module(x)
    (out.flatten() * weights).sum().backward()
    _assert_close_to_largest(out.flatten(), expected_output, 1e-10)
    _assert_close_to_largest(x.grad.flatten(), expected_gradient, 1e-10)
    if trainable:
        gradient = module.leak_scale.grad
        assert gradient.shape == (1,) and gradient.dtype == torch.float32
        # Tolerance relative to the largest gradient of the row (the ∂X entries).
        atol = 1e-10 * max(abs(v) for v in expected_gradient)
        assert abs(gradient.item() - expected_leak_gradient) <= atol
    else:
        assert list(module.parameters()) == []


def test_golden_float32_default_gradient():
    x = torch.tensor(GOLDEN_INPUT, requires_grad=True)
    out = SignalStabilizationCompressor()(x)
    (out.flatten() * _loss_weights(10, torch.float32)).sum().backward()
    assert x.grad.dtype == torch.float32
    _assert_close_to_largest(x.grad.flatten(), GOLDEN_FLOAT32_GRADIENT, 1e-5)


@pytest.mark.parametrize("shape", [(4, 7), (2, 3, 7), (7,)])
def test_all_bgn_input_gradient_norm_is_sqrt_numel_per_sample(shape):
    generator = torch.Generator().manual_seed(0)
    module = SignalStabilizationCompressor(bgn_input=True, bgn_mid=True, bgn_output=True)
    x = torch.randn(shape, generator=generator, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(shape, generator=generator, dtype=torch.float64) * 10
    module(x).backward(upstream)
    if len(shape) == 1:
        # BGN of a 1-D tensor scales the whole gradient to unit norm (kept from the reference).
        norms, expected = x.grad.norm().reshape(1), 1.0
    else:
        norms = x.grad.flatten(1).norm(dim=1)
        expected = math.sqrt(math.prod(shape[1:]))
    # Exactly sqrt(n) up to BGN's eps = 1e-6 added to the gradient norm.
    torch.testing.assert_close(norms, torch.full_like(norms, expected), rtol=1e-5, atol=0.0)
    if shape == (4, 7):
        # Reference value: 2.645748 for D = 7.
        _assert_close_to_largest(norms, [2.645748] * 4, 1e-5)


@pytest.mark.parametrize("mode", ["GATING", "Gating", "DAMPENING", "gate", ""])
def test_mode_bad_string_raises_value_error_listing_both(mode):
    with pytest.raises(ValueError, match="mode") as info:
        SignalStabilizationCompressor(mode=mode)
    assert "gating" in str(info.value) and "dampening" in str(info.value)


@pytest.mark.parametrize("trainable", [False, True])
@pytest.mark.parametrize("mode", ["gating", "dampening"])
@pytest.mark.parametrize("bgn_output", [False, True])
@pytest.mark.parametrize("bgn_mid", [False, True])
@pytest.mark.parametrize("bgn_input", [False, True])
def test_bgn_placements_match_the_step_by_step_formula(
    bgn_input, bgn_mid, bgn_output, mode, trainable
):
    generator = torch.Generator().manual_seed(9)
    x = torch.randn(3, 6, generator=generator, dtype=torch.float64) * 2
    upstream = torch.randn(3, 6, generator=generator, dtype=torch.float64)
    module = SignalStabilizationCompressor(bgn_input, bgn_mid, bgn_output, mode, trainable)
    leak_scale = None
    if trainable:
        with torch.no_grad():
            module.leak_scale.fill_(0.75)
        leak_scale = torch.tensor([0.75], requires_grad=True)
    x_module = x.clone().requires_grad_(True)
    x_reference = x.clone().requires_grad_(True)
    out_module = module(x_module)
    out_module.backward(upstream)
    out_reference = _ssc_reference(
        x_reference, bgn_input, bgn_mid, bgn_output, mode == "dampening", leak_scale
    )
    out_reference.backward(upstream)
    torch.testing.assert_close(out_module, out_reference, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x_module.grad, x_reference.grad, rtol=1e-12, atol=1e-12)
    if trainable:
        torch.testing.assert_close(module.leak_scale.grad, leak_scale.grad, rtol=1e-6, atol=0.0)


# ---------------------------------------------------------------------- per-dtype constants


def test_float64_uses_smallest_normal_and_ignores_leak_and_eps():
    x = torch.randn(3, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 3
    eps = torch.finfo(torch.float64).smallest_normal
    leak = math.sqrt(eps)
    expected = _ssc_formula(x, x * leak, dampening=False, eps=eps)
    for kwargs in [{}, {"leak": 0.5, "eps": 0.1}]:
        out = SignalStabilizationCompressor(**kwargs)(x)
        torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    # No leak in effect: GATING == DAMPENING bit for bit.
    gating = SignalStabilizationCompressor(mode="gating")(x)
    dampening = SignalStabilizationCompressor(mode="dampening")(x)
    assert torch.equal(gating, dampening)


def test_float16_leak_is_sqrt_of_smallest_normal():
    x = torch.tensor(GOLDEN_INPUT, dtype=torch.float16)
    eps = torch.finfo(torch.float16).smallest_normal
    leak = math.sqrt(eps)
    assert leak == pytest.approx(7.8125e-3)
    x64 = x.to(torch.float64)
    for dampening, mode in [(False, "gating"), (True, "dampening")]:
        expected = _ssc_formula(x64, x64 * leak, dampening=dampening, eps=eps)
        out = SignalStabilizationCompressor(mode=mode, leak=0.3, eps=0.2)(x)
        assert out.dtype == torch.float16
        _assert_close_to_largest(out, expected, 2e-2)
        # The argument leak (1e-3) would give a clearly different first element.
        with_argument_leak = _ssc_formula(x64, x64 * 1e-3, dampening=dampening, eps=1e-12)
        assert abs(with_argument_leak[0, 0].item() - out[0, 0].item()) > 0.03


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_float32_and_bfloat16_use_the_arguments(dtype):
    x = torch.tensor(GOLDEN_INPUT)
    module = SignalStabilizationCompressor(leak=0.05, eps=0.01)
    expected = _ssc_formula(x.double(), x.double() * 0.05, dampening=False, eps=0.01)
    out = module(x.to(dtype))
    _assert_close_to_largest(out, expected, 1e-5 if dtype == torch.float32 else 2e-2)
    default = SignalStabilizationCompressor()(x.to(dtype))
    assert (out.float() - default.float()).abs().max().item() > 0.01


@pytest.mark.parametrize("mode", ["gating", "dampening"])
def test_trainable_path_uses_raw_leak_in_float64(mode):
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 2
    dampening = mode == "dampening"
    eps = torch.finfo(torch.float64).smallest_normal
    trainable = SignalStabilizationCompressor(mode=mode, trainable=True, leak=0.01)
    with torch.no_grad():
        trainable.leak_scale.fill_(0.3)
    # Trainable: l = (x * leak) * softplus(leak_scale), with the raw leak 0.01, not sqrt(eps).
    # leak_scale is the reference's float32 parameter: float32(0.3), cast to x's dtype.
    leak_scale = torch.tensor(0.3, dtype=torch.float32).to(torch.float64)
    raw_leak_term = (x * 0.01) * F.softplus(leak_scale)
    expected_trainable = _ssc_formula(x, raw_leak_term, dampening, eps)
    # Non-trainable: l = x * sqrt(smallest normal), no leak in effect.
    expected_plain = _ssc_formula(x, x * math.sqrt(eps), dampening, eps)
    out_trainable = trainable(x)
    out_plain = SignalStabilizationCompressor(mode=mode, leak=0.01)(x)
    torch.testing.assert_close(out_trainable, expected_trainable, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out_plain, expected_plain, rtol=1e-12, atol=1e-12)
    assert (out_trainable - out_plain).abs().max().item() > 1e-4


# ------------------------------------------------------------------------ module conventions


def test_trainable_has_exactly_one_parameter_leak_scale():
    module = SignalStabilizationCompressor(trainable=True)
    parameters = dict(module.named_parameters())
    assert list(parameters) == ["leak_scale"]
    leak_scale = parameters["leak_scale"]
    assert leak_scale.shape == (1,) and leak_scale.dtype == torch.float32
    assert leak_scale.requires_grad
    assert leak_scale.tolist() == [1.0]
    assert list(module.buffers()) == []


def test_non_trainable_has_no_parameters_or_buffers():
    module = SignalStabilizationCompressor()
    assert list(module.parameters()) == []
    assert list(module.buffers()) == []
    assert not hasattr(module, "leak_scale")


def test_default_attributes():
    module = SignalStabilizationCompressor()
    assert module.input_bgn is False
    assert module.bgn_mid is False
    assert module.bgn_output is False
    assert module.mode is SignalStabilizationCompressorMode.GATING
    assert module.trainable is False
    assert module.leak == 1e-3
    assert module.eps == 1e-12


def test_positional_arguments_and_attributes():
    module = SignalStabilizationCompressor(True, False, True, "dampening", True, 0.02, 1e-8)
    assert module.input_bgn is True
    assert module.bgn_mid is False
    assert module.bgn_output is True
    assert module.mode is SignalStabilizationCompressorMode.DAMPENING
    assert module.trainable is True
    assert module.leak == 0.02
    assert module.eps == 1e-8
    assert not hasattr(module, "bgn_input")


def test_mode_enum_values():
    assert SignalStabilizationCompressorMode.GATING.value == "gating"
    assert SignalStabilizationCompressorMode.DAMPENING.value == "dampening"
    assert len(SignalStabilizationCompressorMode) == 2


@pytest.mark.parametrize("member", list(SignalStabilizationCompressorMode))
def test_mode_accepts_member_and_lower_case_value(member):
    assert SignalStabilizationCompressor(mode=member).mode is member
    assert SignalStabilizationCompressor(mode=member.value).mode is member


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_factory_dtype_honoured(dtype):
    module = SignalStabilizationCompressor(trainable=True, dtype=dtype)
    assert module.leak_scale.dtype == dtype
    assert module.leak_scale.item() == 1.0


def test_factory_device_cpu_honoured():
    module = SignalStabilizationCompressor(trainable=True, device="cpu", dtype=torch.float64)
    assert module.leak_scale.device == torch.device("cpu")
    assert module.leak_scale.dtype == torch.float64
    out = module(torch.tensor(GOLDEN_INPUT, dtype=torch.float64))
    expected_output = GOLDEN_GRADIENTS[("gating", True)][0]
    _assert_close_to_largest(out.flatten(), expected_output, 1e-10)


def test_meta_device_then_to_empty_then_reset_parameters():
    module = SignalStabilizationCompressor(trainable=True, device="meta")
    assert module.leak_scale.device == torch.device("meta")
    module.to_empty(device="cpu")
    assert module.leak_scale.device == torch.device("cpu")
    module.reset_parameters()
    assert module.leak_scale.tolist() == [1.0]
    assert module.leak_scale.dtype == torch.float32
    reference = SignalStabilizationCompressor(trainable=True)
    x = torch.tensor(GOLDEN_INPUT)
    assert torch.equal(module(x), reference(x))


def test_reset_parameters_restores_leak_scale():
    module = SignalStabilizationCompressor(trainable=True)
    x = torch.tensor(GOLDEN_INPUT)
    before = module(x)
    with torch.no_grad():
        module.leak_scale.fill_(-2.5)
    assert not torch.equal(module(x), before)
    module.reset_parameters()
    assert module.leak_scale.tolist() == [1.0]
    assert torch.equal(module(x), before)


def test_reset_parameters_without_parameters_is_a_no_op():
    module = SignalStabilizationCompressor()
    module.reset_parameters()
    assert list(module.parameters()) == []


@pytest.mark.parametrize("trainable", [True, False])
def test_state_dict_round_trip(trainable):
    source = SignalStabilizationCompressor(mode="dampening", trainable=trainable)
    if trainable:
        with torch.no_grad():
            source.leak_scale.fill_(0.37)
    state = source.state_dict()
    assert list(state) == (["leak_scale"] if trainable else [])
    target = SignalStabilizationCompressor(mode="dampening", trainable=trainable)
    target.load_state_dict(state, strict=True)
    if trainable:
        assert target.leak_scale.tolist() == pytest.approx([0.37])
    x = torch.randn(3, 6)
    assert torch.equal(target(x), source(x))


def test_state_dict_from_reference_layout_loads_strictly():
    module = SignalStabilizationCompressor(trainable=True)
    module.load_state_dict({"leak_scale": torch.tensor([0.5])}, strict=True)
    assert module.leak_scale.tolist() == [0.5]
    with pytest.raises(RuntimeError):
        SignalStabilizationCompressor().load_state_dict(
            {"leak_scale": torch.tensor([0.5])}, strict=True
        )


def test_extra_repr():
    module = SignalStabilizationCompressor(True, False, True, "dampening", True, 0.002, 1e-8)
    text = module.extra_repr()
    for piece in [
        "bgn_input=True",
        "bgn_mid=False",
        "bgn_output=True",
        "dampening",
        "trainable=True",
        "leak=0.002",
        "eps=1e-08",
    ]:
        assert piece in text
    assert text in repr(module)
    default = SignalStabilizationCompressor().extra_repr()
    for piece in ["bgn_input=False", "gating", "trainable=False", "leak=0.001", "eps=1e-12"]:
        assert piece in default


@pytest.mark.parametrize("trainable", [False, True])
@pytest.mark.parametrize("mode", ["gating", "dampening"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_output_keeps_dtype_and_shape(dtype, shape, mode, trainable):
    module = SignalStabilizationCompressor(mode=mode, trainable=trainable)
    x = (torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 3).to(dtype)
    x.requires_grad_(True)
    out = module(x)
    assert out.dtype == dtype and out.shape == x.shape
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert x.grad.dtype == dtype and torch.isfinite(x.grad).all()
    if trainable:
        assert module.leak_scale.grad is not None and module.leak_scale.grad.dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_normalises_over_the_last_axis_only(dtype):
    module = SignalStabilizationCompressor(trainable=True)
    x = torch.randn(2, 3, 4, dtype=dtype, generator=torch.Generator().manual_seed(4))
    out = module(x)
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(out[i, j], module(x[i, j]), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("flags", [{}, {"bgn_input": True, "bgn_mid": True, "bgn_output": True}])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_non_contiguous_input_same_as_contiguous(dtype, flags):
    module = SignalStabilizationCompressor(trainable=True, **flags)
    base = torch.randn(6, 4, dtype=dtype, generator=torch.Generator().manual_seed(5))
    strided = base.t().requires_grad_(True)
    assert not strided.is_contiguous()
    contiguous = base.t().contiguous().requires_grad_(True)
    upstream = torch.randn(4, 6, dtype=dtype, generator=torch.Generator().manual_seed(6))
    out_strided = module(strided)
    out_strided.backward(upstream)
    gradient_leak_strided = module.leak_scale.grad.clone()
    module.zero_grad()
    out_contiguous = module(contiguous)
    out_contiguous.backward(upstream)
    tolerance = {"rtol": 1e-6, "atol": 1e-6} if dtype == torch.float32 else {}
    torch.testing.assert_close(out_strided, out_contiguous, **tolerance)
    torch.testing.assert_close(strided.grad, contiguous.grad, **tolerance)
    torch.testing.assert_close(gradient_leak_strided, module.leak_scale.grad, **tolerance)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"mode": "dampening", "trainable": True},
        {"bgn_input": True, "bgn_mid": True, "bgn_output": True, "trainable": True},
    ],
)
def test_torch_compile_fullgraph_equals_eager(kwargs):
    module = SignalStabilizationCompressor(**kwargs)
    compiled = torch.compile(module, backend="eager", fullgraph=True)
    x = torch.randn(3, 7, generator=torch.Generator().manual_seed(7))
    upstream = torch.randn(3, 7, generator=torch.Generator().manual_seed(8))
    x_eager = x.clone().requires_grad_(True)
    x_compiled = x.clone().requires_grad_(True)
    out_eager = module(x_eager)
    out_eager.backward(upstream)
    out_compiled = compiled(x_compiled)
    out_compiled.backward(upstream)
    torch.testing.assert_close(out_compiled, out_eager, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(x_compiled.grad, x_eager.grad, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------- hypothesis


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    scale=st.sampled_from([1e-6, 1e-2, 1.0, 30.0, 1e3]),
    seed=st.integers(0, 2**16),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    mode=st.sampled_from(["gating", "dampening"]),
    trainable=st.booleans(),
)
def test_hypothesis_output_finite_and_shaped(shape, scale, seed, dtype, mode, trainable):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype) * scale
    out = SignalStabilizationCompressor(mode=mode, trainable=trainable)(x)
    assert out.shape == x.shape and out.dtype == dtype
    assert torch.isfinite(out).all()
    if mode == "dampening":
        # The gate sigmoid(x) + |l| is positive, so the sign is that of siglog(x) + l: the sign of
        # x, with s(0) = -1.
        assert torch.equal(out > 0, x > 0)


# ------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", FLAGS)
@pytest.mark.parametrize("value", [1, 0, "True", None, 1.0])
def test_flags_must_be_bool(name, value):
    with pytest.raises(TypeError, match=name):
        SignalStabilizationCompressor(**{name: value})


@pytest.mark.parametrize("mode", [1, None, True, 0.5, SignalStabilizationCompressorMode])
def test_mode_of_wrong_type_raises_type_error(mode):
    with pytest.raises(TypeError, match="mode"):
        SignalStabilizationCompressor(mode=mode)


@pytest.mark.parametrize("name", ["leak", "eps"])
@pytest.mark.parametrize("value", [-1e-3, -1, math.nan, math.inf, -math.inf])
def test_leak_and_eps_bad_values(name, value):
    with pytest.raises(ValueError, match=name):
        SignalStabilizationCompressor(**{name: value})


@pytest.mark.parametrize("name", ["leak", "eps"])
@pytest.mark.parametrize("value", [True, False, "0.1", None, [0.1]])
def test_leak_and_eps_bad_types(name, value):
    with pytest.raises(TypeError, match=name):
        SignalStabilizationCompressor(**{name: value})


@pytest.mark.parametrize("name", ["leak", "eps"])
def test_leak_and_eps_accept_zero_and_integers(name):
    assert getattr(SignalStabilizationCompressor(**{name: 0}), name) == 0.0
    assert getattr(SignalStabilizationCompressor(**{name: 2}), name) == 2.0


@pytest.mark.parametrize("dtype", [torch.int32, torch.bool, "float32"])
def test_dtype_must_be_floating(dtype):
    with pytest.raises(TypeError, match="dtype"):
        SignalStabilizationCompressor(trainable=True, dtype=dtype)


@pytest.mark.parametrize("x", [[[1.0, 2.0]], 1.0, None])
def test_forward_rejects_non_tensor(x):
    with pytest.raises(TypeError, match="x"):
        SignalStabilizationCompressor()(x)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool])
def test_forward_rejects_integer_dtype(dtype):
    with pytest.raises(TypeError, match="x"):
        SignalStabilizationCompressor()(torch.ones(2, 3, dtype=dtype))


def test_forward_rejects_zero_dim():
    with pytest.raises(ValueError, match="x"):
        SignalStabilizationCompressor()(torch.tensor(1.0))
