"""TensorComposerDelta: golden values of the reference DyNA at 01c17ea, the deterministic eval
mode, initialisation, conventions and argument checks."""

from __future__ import annotations

import pytest
import torch

from dyna import TensorComposerDelta
from dyna.lib import tensor_composer_delta
from tests.golden import assert_golden
from tests.recipe import context, fill, loss, probe

# Reference eval output (run with rank_noise_strength = 0), float64.
EVAL_F64 = [
    0.132467474404, 0.169841940124, 0.0701912023849, 0.108019569163, -0.0901655041749,
    -0.166521545217, -0.160777961507, 0.0395403824811, 0.151080687901, 0.212299849517,
    -0.0416045184946, 0.122365678063, 0.0992383251553, -0.111043011111, 0.0471865954888,
    0.0120593422583, -0.13255988909, -0.181313175879, -0.135161926941, 0.0079778713538,
    0.0954266356286, -0.13980956316, -0.0687495522773, 0.0938923541146,
]  # fmt: skip
EVAL_F64_PROBES = [-36.8206275755, 0.0182987563312, 71.3620026147, -0.447995779332, 30.8269747647]
TRAIN_F64 = [
    0.131858892548, 0.170187266639, 0.0717610652327, 0.110278959082, -0.0890919563148,
    -0.166139341404, -0.161975232565, 0.0389942334524, 0.152933192773, 0.211636119588,
    -0.0414627871541, 0.122930604865, 0.0993040220696, -0.111217823123, 0.0470308607035,
    0.0132530495837, -0.133354629142, -0.181065179193, -0.135766459408, 0.0105249333438,
    0.0930296175586, -0.140589316545, -0.0692742121755, 0.0944422912023,
]  # fmt: skip
TRAIN_F64_PROBES = [-36.8220857667, 0.0183451604098, 71.355666758, -0.44921095997, 30.827340767]
EVAL_F32 = [
    0.1330093, 0.1703687, 0.070731, 0.10872, -0.0903054, -0.1664868,
    -0.1609205, 0.039599, 0.1515385, 0.2132161, -0.0413341, 0.1229765,
    0.0997494, -0.1110183, 0.0475312, 0.012265, -0.1326118, -0.1814491,
    -0.1353176, 0.0079836, 0.0957728, -0.1399628, -0.068683, 0.0942617,
]  # fmt: skip
EVAL_F32_PROBES = [-36.8148127, 0.0183309, 71.1625455, -0.4717082, 30.8478140]


def golden_module(dtype: torch.dtype) -> TensorComposerDelta:
    module = TensorComposerDelta([4, 3], 5, context_use_bias=True, rank=2, dtype_weights=dtype)
    fill(module.context_transform.weight, 0, 0.3)
    fill(module.context_transform.bias, 1, 0.1)
    fill(module.weights, 2, 0.5)
    with torch.no_grad():
        module.extras.fill_(3.0)
    return module


def run_golden(module, dtype):
    c = context(2, 5, dtype).requires_grad_()
    y = module(c)
    loss(y).backward()
    grads = [
        module.weights.grad,
        module.extras.grad,
        module.context_transform.weight.grad,
        module.context_transform.bias.grad,
        c.grad,
    ]
    return y, [probe(g) for g in grads]


@pytest.mark.parametrize(
    ("dtype", "expected", "probes"),
    [(torch.float64, EVAL_F64, EVAL_F64_PROBES), (torch.float32, EVAL_F32, EVAL_F32_PROBES)],
    ids=["float64", "float32"],
)
def test_golden_eval(dtype, expected, probes):
    # Default rank_noise_strength (0.01): our eval mode draws no noise, so it equals the
    # reference's eval run with rank_noise_strength = 0.
    y, got = run_golden(golden_module(dtype).eval(), dtype)
    assert y.shape == (2, 4, 3) and y.dtype == dtype
    assert_golden(y.flatten(), expected, dtype)
    assert_golden(torch.tensor(got, dtype=torch.float64), probes, dtype)


def test_golden_training_seeded():
    module = golden_module(torch.float64).train()
    torch.manual_seed(1234)
    y, got = run_golden(module, torch.float64)
    assert_golden(y.flatten(), TRAIN_F64, torch.float64)
    assert_golden(torch.tensor(got, dtype=torch.float64), TRAIN_F64_PROBES, torch.float64)


def test_eval_is_deterministic_and_draws_nothing():
    module = golden_module(torch.float32).eval()
    c = context(2, 5, torch.float32)
    state = torch.get_rng_state()
    first, second = module(c), module(c)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first, second)


def test_training_draws_twice_in_reference_order():
    module = golden_module(torch.float32).train()
    c = context(2, 5, torch.float32)
    torch.manual_seed(5)
    module(c)
    after = torch.get_rng_state()
    torch.manual_seed(5)
    torch.randn(2, 2, 12)  # filters (B, r, H*W)
    torch.randn(2, 3)  # rank logits (B, r + 1)
    assert torch.equal(torch.get_rng_state(), after)
    # Training differs from eval (noise), and with zero strengths it equals eval.
    quiet = golden_module(torch.float32)
    quiet.weights_noise_strength = quiet.rank_noise_strength = 0.0
    torch.testing.assert_close(quiet.train()(c), quiet.eval()(c), rtol=0, atol=0)


def test_gradients_reach_every_parameter_and_are_not_scale_invariant():
    module = golden_module(torch.float64).eval()
    c = context(2, 5)
    grads = []
    for scale in (1.0, 10.0):
        module.zero_grad()
        (loss(module(c)) * scale).backward()
        grads.append(module.weights.grad.clone())
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    # Not invariant to the loss scale (the Gram paths carry unnormalised gradient).
    assert not torch.allclose(grads[1], grads[0], rtol=1e-3)


def test_parameters_and_counts():
    module = TensorComposerDelta([48, 48], 256, rank=4, device="meta")
    assert sum(p.numel() for p in module.parameters()) == 100_971
    assert [name for name, _ in module.state_dict().items()] == [
        "weights",
        "extras",
        "context_transform.weight",
        "context_transform.bias",
    ]
    small = TensorComposerDelta([4, 3], 5, rank=2)
    assert sum(p.numel() for p in small.parameters()) == 517
    assert small.weights.shape == (1, 2, 2, 2, 4, 3, 2)
    assert small.context_transform.weight.shape == (54, 5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
def test_extras_stay_float32_and_fp16_eps_floor(dtype):
    module = TensorComposerDelta([4, 3], 5, rank=2, dtype_weights=dtype)
    assert module.extras.dtype == torch.float32 and module.extras.item() == 5.0
    assert module.weights.dtype == dtype and module.context_transform.weight.dtype == dtype
    assert module.eps == (6e-8 if dtype == torch.float16 else 1e-12)
    assert module.stabilizer.eps == module.eps


def test_seeded_reset_reproduces_construction():
    torch.manual_seed(3)
    module = TensorComposerDelta([9, 6], 7, rank=3, dtype_weights=torch.float32)
    initial = {k: v.clone() for k, v in module.state_dict().items()}
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()
    torch.manual_seed(3)
    module.reset_parameters()
    for key, value in module.state_dict().items():
        assert torch.equal(value, initial[key]), key
    # Xavier-uniform re-initialisation of the projection, bank std initialization_std.
    bound = (6 / (7 + 26 * 3 + 2)) ** 0.5
    assert module.context_transform.weight.abs().max() <= bound
    assert 0.5e-4 < module.weights.std() < 2e-4


def test_factory_kwargs_meta_and_to():
    module = TensorComposerDelta([4, 3], 5, rank=2, device="meta", dtype=torch.float64)
    assert all(p.device.type == "meta" for p in module.parameters())
    assert module.dtype_weights == torch.float64
    assert module.weights.dtype == torch.float64 and module.extras.dtype == torch.float64
    module.to_empty(device="cpu")
    module.reset_parameters()
    assert module.extras.item() == 5.0
    assert module.eval()(torch.randn(2, 5, dtype=torch.float64)).dtype == torch.float64
    # The working dtype follows the parameters after .to().
    converted = TensorComposerDelta([4, 3], 5, rank=2).to(torch.float64).eval()
    assert converted(torch.randn(3, 5)).dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
def test_dtypes_and_float32_context_on_bfloat16_module(dtype):
    module = golden_module(dtype).eval()
    reference = golden_module(torch.float64).eval()(context(2, 5))
    out = module(context(2, 5, torch.float32))
    assert out.dtype == torch.float32
    tolerance = {torch.float64: 1e-2, torch.float32: 1e-2, torch.bfloat16: 1e-1}[dtype]
    assert (out.double() - reference).norm() / reference.norm() < tolerance


def test_bfloat16_parameters_are_computed_with_in_float32():
    # Documented deviation: the bfloat16 module is the float32 module on the same (rounded)
    # parameters, bit for bit, and its parameters get bfloat16 gradients.
    half = golden_module(torch.bfloat16).eval()
    full = TensorComposerDelta([4, 3], 5, rank=2, dtype_weights=torch.float32).eval()
    full.load_state_dict({key: value.float() for key, value in half.state_dict().items()})
    x = context(3, 5, torch.float32)
    assert torch.equal(half(x), full(x))
    assert half(x.to(torch.bfloat16)).dtype == torch.bfloat16
    half.train()(x).square().sum().backward()
    for name, parameter in half.named_parameters():
        assert parameter.grad is not None and parameter.grad.dtype == parameter.dtype, name
        assert torch.isfinite(parameter.grad).all(), name


def test_bfloat16_training_noise_is_drawn_in_bfloat16(monkeypatch):
    # The reference draws its filter and rank-logit noise in the parameters' dtype; the same
    # seed must give the same draws here although the maths runs in float32.
    module = golden_module(torch.bfloat16).train()
    x = context(3, 5, torch.float32)
    torch.manual_seed(7)
    out = module(x)
    torch.manual_seed(7)
    bank = torch.randn(3, module.rank, 4 * 3, dtype=torch.bfloat16).float()
    logits = torch.randn(3, module.rank + 1, dtype=torch.bfloat16).float()
    drawn = []
    original = tensor_composer_delta.standard_normal_like

    def recording(*tensors):
        result = original(*tensors)
        drawn.extend(result)
        return result

    monkeypatch.setattr(tensor_composer_delta, "standard_normal_like", recording)
    torch.manual_seed(7)
    again = module(x)
    assert torch.equal(out, again)
    assert [tensor.dtype for tensor in drawn] == [torch.bfloat16, torch.bfloat16]
    assert torch.equal(drawn[0].float().reshape(bank.shape), bank)
    assert torch.equal(drawn[1].float(), logits)


def test_state_dict_round_trip_and_noncontiguous_input():
    source = golden_module(torch.float32).eval()
    target = TensorComposerDelta([4, 3], 5, rank=2, dtype_weights=torch.float32).eval()
    target.load_state_dict(source.state_dict(), strict=True)
    wide = context(2, 10, torch.float32)[:, ::2]
    assert not wide.is_contiguous()
    assert torch.equal(target(wide), source(wide.contiguous()))


def test_empty_batch():
    module = golden_module(torch.float32).train()
    state = torch.get_rng_state()
    out = module(torch.zeros(0, 5))
    assert out.shape == (0, 4, 3) and torch.equal(torch.get_rng_state(), state)


def test_extra_repr():
    text = repr(TensorComposerDelta([4, 3], 5, rank=2, dtype_weights=torch.float32))
    for part in (
        "output_shape=[4, 3]",
        "context_length=5",
        "rank=2",
        "context_use_bias=True",
        "weights_repulsion_strength=0.3",
        "weights_noise_strength=0.01",
        "rank_noise_strength=0.01",
        "similarity_penalty_strength=0.1",
        "initialization_std=0.0001",
        "eps=1e-12",
        "dtype_weights=torch.float32",
    ):
        assert part in text


def test_compiles_with_fullgraph():
    module = golden_module(torch.float32).eval()
    compiled = torch.compile(module, backend="eager", fullgraph=True)
    c = context(2, 5, torch.float32)
    torch.testing.assert_close(compiled(c), module(c))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"output_shape": [4]}, ValueError, "output_shape"),
        ({"output_shape": [1, 1]}, ValueError, "output_shape"),
        ({"output_shape": 4}, TypeError, "output_shape"),
        ({"output_shape": [4, 0]}, ValueError, "output_shape"),
        ({"context_length": 0}, ValueError, "context_length"),
        ({"context_length": 2.0}, TypeError, "context_length"),
        ({"rank": 0}, ValueError, "rank"),
        ({"rank": True}, TypeError, "rank"),
        ({"context_use_bias": 1}, TypeError, "context_use_bias"),
        ({"initialization_std": 0.0}, ValueError, "initialization_std"),
        ({"weights_repulsion_strength": -1.0}, ValueError, "weights_repulsion_strength"),
        ({"weights_noise_strength": float("inf")}, ValueError, "weights_noise_strength"),
        ({"rank_noise_strength": -0.1}, ValueError, "rank_noise_strength"),
        ({"similarity_penalty_strength": "a"}, TypeError, "similarity_penalty_strength"),
        ({"eps": 0.0}, ValueError, "eps"),
        ({"dtype_weights": torch.int32}, TypeError, "dtype_weights"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    arguments = {"output_shape": [4, 3], "context_length": 5, **kwargs}
    with pytest.raises(error, match=match):
        TensorComposerDelta(**arguments)


def test_bad_input():
    module = TensorComposerDelta([4, 3], 5, rank=2)
    with pytest.raises(ValueError, match="x must have shape"):
        module(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="x must have shape"):
        module(torch.zeros(5))
    with pytest.raises(TypeError, match="floating"):
        module(torch.zeros(2, 5, dtype=torch.int64))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        module([[0.0] * 5])
