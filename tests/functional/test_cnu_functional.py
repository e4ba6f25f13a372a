"""Tests for ``dyna.functional.cnu``: the ψ projections and the CNU memory blends."""

from functools import partial

import pytest
import torch

from dyna.functional import cnu_blend_weights, cnu_linear, cnu_linear_ref
from dyna.functional.cnu import _layout, psi, resize1d, resize2d

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    # Tiny tensors: on a busy machine a parallel region costs more than the work itself.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- psi


def test_psi_identity_flattens_and_normalises():
    x = torch.tensor([[[3.0, 0.0], [0.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]]])
    out = psi(x, "identity", 4)
    torch.testing.assert_close(out, torch.tensor([[0.6, 0.0, 0.0, 0.8], [0.0, 0.0, 0.0, 0.0]]))
    torch.testing.assert_close(psi(x, "identity", 4, normalize=False), x.flatten(1))


def test_psi_sign_keeps_zero():
    out = psi(torch.tensor([[-2.0, 0.0, 5.0, 1.0]]), "sign", 4, normalize=False)
    assert out.tolist() == [[-1.0, 0.0, 1.0, 1.0]]
    torch.testing.assert_close(
        psi(torch.tensor([[-2.0, 0.0, 5.0]]), "sign", 3).norm(), torch.tensor(1.0)
    )


def test_resize1d_linear_interpolation_by_hand():
    # Length 4 -> 2, align_corners False: samples at 0.5 and 2.5.
    x = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    torch.testing.assert_close(resize1d(x, 2), torch.tensor([[0.5, 2.5]]))
    assert resize1d(x, 4) is x  # already the right length: no copy


def test_resize2d_sizes_and_zero_padding():
    # (3, 32, 32) with key 75: 25 values per channel, a 5x5 map, no padding.
    assert resize2d(torch.randn(2, 3, 32, 32), 75).shape == (2, 75)
    # (2, 6, 6) with key 30: 15 per channel, width round(sqrt(15/36)*6) = 4, height 3 -> 24
    # values and 6 zeros.
    x = torch.randn(2, 2, 6, 6)
    out = resize2d(x, 30)
    assert out.shape == (2, 30) and torch.all(out[:, 24:] == 0)
    # Constant maps stay constant under bilinear scaling.
    torch.testing.assert_close(resize2d(torch.full((1, 1, 4, 4), 2.0), 4), torch.full((1, 4), 2.0))


def test_resize2d_failure_modes_raise_value_error():
    # Budget filled but key 61 is not a multiple of 3 channels: short output, named by psi.
    with pytest.raises(ValueError, match=r"psi_fn 'resize2d' maps .* to 60 values.* 61"):
        psi(torch.randn(1, 3, 7, 9), "resize2d", 61)
    # A budget of 5 values cannot hold one row of width 22.
    with pytest.raises(ValueError, match="key_size 5 is too small for resize2d"):
        resize2d(torch.randn(1, 1, 1, 100), 5)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: psi([[1.0]], "identity", 1), TypeError, "x must be a torch.Tensor"),
        (lambda: psi(torch.ones(2, 2, dtype=torch.int64), "identity", 2), TypeError, "floating"),
        (lambda: psi(torch.ones(2, 2), "reduce2d", 2), ValueError, "psi_fn must be one of"),
        (lambda: psi(torch.ones(3), "identity", 3), ValueError, "batch dimension"),
        (lambda: psi(torch.ones(2, 3), "identity", 4), ValueError, "3 values, but the key size"),
        (lambda: psi(torch.ones(2, 3), "identity", 0), ValueError, "key_size must be >= 1"),
        (lambda: psi(torch.ones(2, 3), "identity", 3.0), TypeError, "key_size must be an int"),
        (lambda: resize1d(torch.ones(2, 3, 4), 2), ValueError, "resize1d needs a 2-D input"),
        (lambda: resize2d(torch.ones(2, 3), 2), ValueError, "resize2d needs a 4-D input"),
    ],
)
def test_psi_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


# ----------------------------------------------------------------------------- blends


def test_cnu_blend_weights_by_hand():
    memories = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]]])
    indices = torch.tensor([[[2, 0]], [[1, 1]]])
    weights = torch.tensor([[[0.75, 0.25]], [[0.5, 0.5]]])
    out = cnu_blend_weights(memories, indices, weights)
    assert out.tolist() == [[[1.75, 1.5]], [[0.0, 1.0]]]
    assert cnu_blend_weights(memories, indices, weights, wta=True).tolist() == out.tolist()


def test_cnu_blend_weights_wta_gradient_reaches_only_winners():
    memories = torch.randn(2, 4, 3, requires_grad=True)
    indices = torch.tensor([[[0, 1, 2], [3, 2, 1]]])
    weights = torch.softmax(torch.randn(1, 2, 3), dim=2)
    cnu_blend_weights(memories, indices, weights, wta=True).sum().backward()
    nonzero = memories.grad.abs().sum(-1) != 0
    assert nonzero.tolist() == [[True, False, False, False], [False, False, False, True]]
    # Vanilla: every selected memory, weighted by its attention.
    memories.grad = None
    cnu_blend_weights(memories, indices, weights).sum().backward()
    torch.testing.assert_close(memories.grad[0, 2], weights[0, 0, 2].expand(3))


def make_blend_inputs(q, m, k, rows, bias, batch, dtype, device="cpu", seed=0):
    generator = torch.Generator().manual_seed(seed)
    in_features = 5
    per_row = in_features + (1 if bias else 0)
    memories = torch.randn(q, m, rows * per_row, generator=generator, dtype=dtype)
    x = torch.randn(batch, in_features, generator=generator, dtype=dtype)
    scores = torch.rand(batch, q, m, generator=generator)
    indices = scores.topk(k, dim=2).indices
    if batch > 1 and k > 1:
        indices[1, 0, 1] = indices[1, 0, 0]  # a duplicate, as the b = 1 stale path can give
    weights = torch.softmax(torch.randn(batch, q, k, generator=generator, dtype=dtype), dim=2)
    tensors = [t.to(device) for t in (x, memories, indices, weights)]
    for tensor in (tensors[0], tensors[1], tensors[3]):
        tensor.requires_grad_()
    return tensors


STRATEGY_CASES = [
    # (q, m, k, rows, strategy)
    (1, 6, 1, 3, "dense"),
    (1, 6, 1, 3, "grouped"),
    (1, 6, 3, 3, "dense"),
    (1, 6, 3, 3, "grouped"),
    (1, 8, 2, 4, "auto"),
    (3, 5, 2, 1, "dense"),
    (3, 5, 1, 1, "auto"),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("wta", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(("q", "m", "k", "rows", "strategy"), STRATEGY_CASES)
def test_cnu_linear_matches_reference_twin(q, m, k, rows, strategy, bias, wta, dtype, device):
    x, memories, indices, weights = make_blend_inputs(q, m, k, rows, bias, 7, dtype, device)
    grad = torch.randn(7, q * rows, dtype=dtype, generator=torch.Generator().manual_seed(1))
    grad = grad.to(device)
    fast = cnu_linear(x, memories, indices, weights, bias=bias, wta=wta, strategy=strategy)
    fast_grads = torch.autograd.grad((fast * grad).sum(), (x, memories, weights))
    ref = cnu_linear_ref(x, memories, indices, weights, bias=bias, wta=wta)
    ref_grads = torch.autograd.grad((ref * grad).sum(), (x, memories, weights))
    tolerance = {torch.float32: 1e-5, torch.float64: 1e-12}[dtype]
    assert fast.shape == (7, q * rows) and fast.dtype == dtype
    torch.testing.assert_close(fast, ref, rtol=tolerance, atol=tolerance)
    for ours, expected in zip(fast_grads, ref_grads, strict=True):
        torch.testing.assert_close(ours, expected, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize(("q", "m", "k", "rows", "strategy"), STRATEGY_CASES)
@pytest.mark.parametrize("wta", [False, True])
def test_cnu_linear_gradcheck(q, m, k, rows, strategy, wta):
    x, memories, indices, weights = make_blend_inputs(q, m, k, rows, True, 4, torch.float64)
    if wta:
        # Winner-take-all is a deliberate stop-gradient on the other memories: the memory
        # gradient is not the derivative (the comparison with the twin covers it).
        memories = memories.detach()

    def function(x, memories, weights):
        return cnu_linear(x, memories, indices, weights, bias=True, wta=wta, strategy=strategy)

    assert torch.autograd.gradcheck(function, (x, memories, weights))


@pytest.mark.parametrize("wta", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_grouped_blend_on_uneven_segments(bias, wta):
    # The grouped blend multiplies each memory's sorted segment of (sample, slot) pairs on its
    # own: segments of very different lengths (one memory chosen by most samples, one chosen
    # once, several never), duplicates within a sample, and winners that are not the busiest
    # memory must all give the twin's values and gradients.
    generator = torch.Generator().manual_seed(3)
    batch, m, k, rows, in_features = 23, 9, 3, 4, 5
    per_row = in_features + (1 if bias else 0)
    memories = torch.randn(1, m, rows * per_row, generator=generator, dtype=torch.float64)
    x = torch.randn(batch, in_features, generator=generator, dtype=torch.float64)
    indices = torch.full((batch, 1, k), 2, dtype=torch.int64)
    indices[:, 0, 0] = torch.arange(batch) % 3  # winners on memories 0, 1, 2
    indices[5, 0, 1] = 7  # memory 7: a single pair
    indices[9, 0, 2] = indices[9, 0, 0]  # a duplicate inside one sample
    weights = torch.softmax(torch.randn(batch, 1, k, generator=generator), dim=2).double()
    for tensor in (x, memories, weights):
        tensor.requires_grad_()
    grad = torch.randn(batch, rows, generator=generator, dtype=torch.float64)
    results = []
    for blend in (partial(cnu_linear, strategy="grouped"), cnu_linear_ref):
        out = blend(x, memories, indices, weights, bias=bias, wta=wta)
        results.append((out, *torch.autograd.grad((out * grad).sum(), (x, memories, weights))))
    for ours, expected in zip(*results, strict=True):
        torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-12)
    memory_grad = results[0][2][0]
    used = sorted({0, 1, 2} if wta else {0, 1, 2, 7})
    assert (memory_grad.abs().sum(-1) != 0).nonzero().flatten().tolist() == used


@pytest.mark.parametrize("strategy", ["dense", "grouped"])
def test_cnu_linear_non_contiguous_memories(strategy):
    generator = torch.Generator().manual_seed(4)
    memories = torch.randn(1, 6, 36, generator=generator, dtype=torch.float64)[..., ::2]
    memories.requires_grad_()
    x = torch.randn(5, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    indices = torch.tensor([[[0, 3]], [[3, 5]], [[5, 0]], [[3, 1]], [[0, 5]]])
    weights = torch.tensor([[[0.7, 0.3]]], dtype=torch.float64).expand(5, 1, 2)
    outputs, grads = [], []
    for blend in (partial(cnu_linear, strategy=strategy), cnu_linear_ref):
        out = blend(x, memories, indices, weights, bias=True, wta=True)
        outputs.append(out)
        grads.append(torch.autograd.grad(out.sum(), (x, memories)))
    assert not memories.is_contiguous()
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-12, atol=1e-12)
    for ours, expected in zip(*grads, strict=True):
        torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-12)


def test_cnu_linear_wta_keeps_non_winning_memories_out_of_the_gradient():
    x, memories, indices, weights = make_blend_inputs(1, 6, 3, 2, True, 1, torch.float64)
    for strategy in ("dense", "grouped"):
        memories.grad = None
        cnu_linear(
            x, memories, indices, weights, bias=True, wta=True, strategy=strategy
        ).sum().backward()
        touched = (memories.grad[0].abs().sum(-1) != 0).nonzero().flatten().tolist()
        assert touched == [int(indices[0, 0, 0])]


def test_cnu_linear_empty_batch():
    x, memories, indices, weights = make_blend_inputs(1, 4, 2, 3, True, 3, torch.float32)
    for strategy in ("dense", "grouped"):
        out = cnu_linear(x[:0], memories, indices[:0], weights[:0], bias=True, strategy=strategy)
        assert out.shape == (0, 3)
        out.sum().backward()
        assert torch.all(memories.grad == 0)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"strategy": "fast"}, ValueError, "strategy must be"),
        ({"x": torch.ones(3, 5)}, ValueError, "x must have shape"),
        ({"memories": torch.ones(1, 4, 7)}, ValueError, "not a multiple of in_features"),
        ({"indices": torch.zeros(2, 1, 2, dtype=torch.int32)}, TypeError, "int64"),
        ({"weights": torch.ones(2, 1, 3)}, ValueError, "indices and weights must both"),
        ({"memories": torch.ones(4, 6)}, ValueError, "M must have shape"),
    ],
)
def test_cnu_linear_bad_input(change, error, message):
    arguments = {
        "x": torch.ones(2, 5),
        "memories": torch.ones(1, 4, 6),
        "indices": torch.zeros(2, 1, 2, dtype=torch.int64),
        "weights": torch.ones(2, 1, 2),
    }
    strategy = change.pop("strategy", "auto")
    arguments.update(change)
    with pytest.raises(error, match=message):
        cnu_linear(
            arguments["x"], arguments["memories"], arguments["indices"], arguments["weights"],
            bias=True, strategy=strategy,
        )  # fmt: skip


def test_grouped_strategy_needs_shared_keys():
    x, memories, indices, weights = make_blend_inputs(3, 4, 2, 1, True, 2, torch.float32)
    with pytest.raises(ValueError, match="needs q = 1"):
        cnu_linear(x, memories, indices, weights, bias=True, strategy="grouped")


def test_grouped_layout_puts_trainable_pairs_first():
    # Pairs i·k + a sorted by memory (stable), winners first within each memory's group.
    indices = torch.tensor([[[2, 0]], [[0, 2]], [[2, 2]]])
    order, sizes, heads = _layout(indices, 4, trainable_slots=1)
    assert order.tolist() == [2, 1, 0, 4, 3, 5]
    assert sizes == [2, 0, 4, 0] and heads == [1, 0, 2, 0]
    order, sizes, heads = _layout(indices, 4, trainable_slots=2)
    assert order.tolist() == [1, 2, 0, 3, 4, 5]
    assert sizes == heads == [2, 0, 4, 0]


@pytest.mark.parametrize("strategy", ["dense", "grouped"])
@pytest.mark.parametrize("wanted", ["x", "memories", "weights"])
def test_cnu_linear_gradient_of_one_input_only(strategy, wanted):
    # The backward skips the GEMMs of inputs that need no gradient: each gradient on its own
    # must still be the twin's.
    x, memories, indices, weights = make_blend_inputs(1, 5, 2, 3, True, 6, torch.float64)
    inputs = {"x": x, "memories": memories, "weights": weights}
    for name, tensor in inputs.items():
        tensor.requires_grad_(name == wanted)
    grad = torch.randn(6, 3, dtype=torch.float64)
    ours = cnu_linear(x, memories, indices, weights, bias=True, wta=True, strategy=strategy)
    expected = cnu_linear_ref(x, memories, indices, weights, bias=True, wta=True)
    (ours_grad,) = torch.autograd.grad((ours * grad).sum(), inputs[wanted])
    (expected_grad,) = torch.autograd.grad((expected * grad).sum(), inputs[wanted])
    torch.testing.assert_close(ours_grad, expected_grad, rtol=1e-12, atol=1e-12)


def _edge_indices(case, batch, m, k):
    """Index layouts that stress the grouped blend's per-memory segments."""
    if case == "one memory":
        # Every winner on memory 3, every other slot on memory 1: two non-empty groups.
        indices = torch.empty(batch, 1, k, dtype=torch.int64)
        indices[..., 0] = 3
        indices[..., 1:] = 1
    elif case == "mostly empty":
        # Only memories 0 and m - 1 in use; the last only ever as a non-winning slot.
        indices = torch.zeros(batch, 1, k, dtype=torch.int64)
        indices[..., 1:] = m - 1
    else:  # "permuted": all memories in use, groups of different lengths
        generator = torch.Generator().manual_seed(batch)
        indices = torch.stack([torch.randperm(m, generator=generator)[:k] for _ in range(batch)])
        indices = indices.view(batch, 1, k)
    return indices


@pytest.mark.parametrize("wta", [False, True])
@pytest.mark.parametrize("case", ["one memory", "mostly empty", "permuted"])
@pytest.mark.parametrize("batch", [1, 2, 9])
def test_grouped_blend_edge_layouts_match_twin(batch, case, wta):
    # The grouped path (its sorted outputs summed per sample, the input gradient unsorted from
    # the sorted order) against the materialising twin: values and every gradient, with empty
    # memories, all samples on one memory, memories only used by non-winning slots and b = 1.
    m, k, rows, in_features = 5, 2, 3, 4
    generator = torch.Generator().manual_seed(11)
    x = torch.randn(batch, in_features, generator=generator, dtype=torch.float64)
    memories = torch.randn(1, m, rows * (in_features + 1), generator=generator).double()
    weights = torch.softmax(torch.randn(batch, 1, k, generator=generator), dim=2).double()
    indices = _edge_indices(case, batch, m, k)
    for tensor in (x, memories, weights):
        tensor.requires_grad_()
    grad = torch.randn(batch, rows, generator=generator, dtype=torch.float64)
    results = []
    for blend in (partial(cnu_linear, strategy="grouped"), cnu_linear_ref):
        out = blend(x, memories, indices, weights, bias=True, wta=wta)
        results.append((out, *torch.autograd.grad((out * grad).sum(), (x, memories, weights))))
    for ours, expected in zip(*results, strict=True):
        assert ours.shape == expected.shape
        torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-12)
    trained = set(indices[:, 0, 0].tolist()) if wta else set(indices.flatten().tolist())
    memory_grad = results[0][2][0]
    assert set((memory_grad.abs().sum(-1) != 0).nonzero().flatten().tolist()) == trained


@pytest.mark.parametrize("case", ["one memory", "mostly empty", "permuted"])
def test_grouped_blend_edge_layouts_gradcheck(case):
    m, k, rows, in_features, batch = 4, 2, 2, 3, 3
    generator = torch.Generator().manual_seed(12)
    x = torch.randn(batch, in_features, generator=generator, dtype=torch.float64)
    memories = torch.randn(1, m, rows * (in_features + 1), generator=generator).double()
    weights = torch.softmax(torch.randn(batch, 1, k, generator=generator), dim=2).double()
    indices = _edge_indices(case, batch, m, k)

    def function(x, memories, weights):
        return cnu_linear(x, memories, indices, weights, bias=True, strategy="grouped")

    inputs = tuple(t.requires_grad_() for t in (x, memories, weights))
    assert torch.autograd.gradcheck(function, inputs)


def test_grouped_blend_bfloat16_close_to_float32_twin():
    x, memories, indices, weights = make_blend_inputs(1, 6, 2, 8, True, 16, torch.float32)
    grad = torch.randn(16, 8, generator=torch.Generator().manual_seed(2))
    low = [t.detach().bfloat16().requires_grad_() for t in (x, memories, weights)]
    ours = cnu_linear(low[0], low[1], indices, low[2], bias=True, wta=True, strategy="grouped")
    ours_grads = torch.autograd.grad((ours * grad.bfloat16()).sum(), low)
    high = [t.detach().float().requires_grad_() for t in low]
    expected = cnu_linear_ref(high[0], high[1], indices, high[2], bias=True, wta=True)
    expected_grads = torch.autograd.grad((expected * grad).sum(), high)
    assert ours.dtype == torch.bfloat16
    torch.testing.assert_close(ours.float(), expected, rtol=2e-2, atol=5e-2)
    for got, want in zip(ours_grads, expected_grads, strict=True):
        assert got.dtype == torch.bfloat16
        torch.testing.assert_close(got.float(), want, rtol=2e-2, atol=5e-2)


def test_flags_must_be_bools():
    # None and 0/1 were taken for False/True before
    memories = torch.zeros(1, 3, 4)
    indices = torch.zeros(2, 1, 2, dtype=torch.int64)
    weights = torch.full((2, 1, 2), 0.5)
    with pytest.raises(TypeError, match="normalize must be a bool"):
        psi(torch.ones(2, 4), "identity", 4, normalize=None)
    with pytest.raises(TypeError, match="wta must be a bool"):
        cnu_blend_weights(memories, indices, weights, wta=1)
    for linear in (cnu_linear, cnu_linear_ref):
        with pytest.raises(TypeError, match="bias must be a bool"):
            linear(torch.ones(2, 4), memories, indices, weights, bias=None)
