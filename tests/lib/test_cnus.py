"""Tests for ``dyna.lib.CNUs``, the core of Continual Neural Units."""

import logging
import math

import pytest
import torch

from dyna.lib import CNUAttention, CNUs

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
PAIRS = [(None, "ad_hoc_WTA"), (None, "grad_WTA"), (None, None), ("WTA", "ad_hoc_WTA")]
PAIRS.append(("WTA", "grad_WTA"))


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    # Tiny tensors: on a busy machine a parallel region costs more than the work itself.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def set_keys(cnu, keys, memories=None):
    with torch.no_grad():
        cnu.K.copy_(torch.as_tensor(keys, dtype=cnu.K.dtype))
        if memories is not None:
            cnu.M.copy_(torch.as_tensor(memories, dtype=cnu.M.dtype))


# ----------------------------------------------------------------------------- construction


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"q": 0}, ValueError, "q must be >= 1, got 0"),
        ({"q": True}, TypeError, "q must be an int, got bool"),
        ({"d": 2.0}, TypeError, "d must be an int, got float"),
        ({"m": -1}, ValueError, "m must be >= 1, got -1"),
        ({"u": "4"}, TypeError, "u must be an int, got str"),
        ({"delta": 0}, ValueError, "delta must be >= 1"),
        ({"gamma_alpha": math.inf}, ValueError, "gamma_alpha must be finite, got inf"),
        ({"tau_alpha": math.nan}, ValueError, "tau_alpha must be finite"),
        ({"tau_mu": "100"}, TypeError, "tau_mu must be a real number, got str"),
        ({"tau_eta": None}, TypeError, "tau_eta must be a real number, got NoneType"),
        ({"beta_k": True}, TypeError, "beta_k must be a real number, got bool"),
        ({"upd_m": "wta"}, ValueError, "upd_m must be None or 'WTA'"),
        ({"upd_k": "adhoc"}, ValueError, "upd_k must be None, 'ad_hoc_WTA' or 'grad_WTA'"),
        ({"upd_m": "WTA", "upd_k": None}, ValueError, "upd_m='WTA' needs upd_k"),
        ({"psi_fn": "reduce2d"}, ValueError, "psi_fn must be one of"),
        ({"scramble": 1}, TypeError, "scramble must be a bool"),
        ({"debug": "yes"}, TypeError, "debug must be a bool"),
        ({"dtype": torch.int64}, TypeError, "dtype must be a floating torch.dtype"),
    ],
)
def test_invalid_arguments_raise_type_or_value_error(kwargs, error, message):
    # One policy across the package: TypeError for a wrong type, ValueError for a wrong value.
    with pytest.raises(error, match=message):
        CNUs(**kwargs)


def test_delta_is_clamped_and_scramble_without_online_keys_warns():
    assert CNUs(m=3, delta=10).delta == 3
    with pytest.warns(UserWarning, match="scramble=True has no effect"):
        CNUs(upd_m=None, upd_k=None, scramble=True)


@pytest.mark.parametrize(("upd_m", "upd_k"), PAIRS)
@pytest.mark.parametrize("debug", [False, True])
def test_state_names_shapes_and_kinds_follow_the_reference(upd_m, upd_k, debug):
    cnu = CNUs(q=2, d=3, m=4, u=5, upd_m=upd_m, upd_k=upd_k, debug=debug)
    state = cnu.state_dict()
    online = upd_k == "ad_hoc_WTA"
    expected = ["M", "K"] + (["mu", "eta"] if online else []) + (["key_counter"] if debug else [])
    assert list(state) == [*expected, "scrambling_count"]
    assert state["M"].shape == (2, 4, 5) and state["K"].shape == (2, 4, 3)
    assert isinstance(cnu.M, torch.nn.Parameter)
    assert isinstance(cnu.K, torch.nn.Parameter) != online
    assert state["scrambling_count"].dtype == torch.int64
    if online:
        assert torch.all(cnu.mu == 0) and torch.all(cnu.eta == 100)
    else:
        assert cnu.mu is None and cnu.eta is None


def test_reset_parameters_draws_unit_keys_and_bounded_memories_and_keeps_scrambling_count():
    cnu = CNUs(q=2, d=4, m=6, u=9)
    torch.testing.assert_close(cnu.K.norm(dim=2), torch.ones(2, 6))
    assert cnu.M.abs().max() <= 1 / 3
    with torch.no_grad():
        cnu.mu.fill_(5.0)
        cnu.eta.fill_(1.0)
        cnu.scrambling_count.fill_(7)
    cnu.reset_parameters()
    assert torch.all(cnu.mu == 0) and torch.all(cnu.eta == 100)
    assert cnu.scrambling_count.tolist() == [7, 7]


def test_random_draw_order_keys_then_memories():
    torch.manual_seed(3)
    cnu = CNUs(q=2, d=3, m=4, u=5)
    torch.manual_seed(3)
    keys = torch.empty(2, 4, 3).uniform_(-1 / math.sqrt(3), 1 / math.sqrt(3))
    memories = torch.empty(2, 4, 5).uniform_(-1 / math.sqrt(5), 1 / math.sqrt(5))
    assert torch.equal(cnu.K, torch.nn.functional.normalize(keys, dim=2))
    assert torch.equal(cnu.M, memories)


def test_extra_repr():
    text = repr(CNUs(q=2, d=3, m=4, u=5, delta=2, debug=True))
    assert "q=2, d=3, m=4, u=5, delta=2, gamma_alpha=0.1, tau_alpha=0.5, tau_mu=100" in text
    assert (
        "upd_m='WTA', upd_k='ad_hoc_WTA', beta_k=0.001, psi_fn='identity', scramble=False" in text
    )
    assert text.endswith("debug=True)")


# ----------------------------------------------------------------------------- attention


def test_attention_top_delta_by_hand():
    # Unit keys at 0, 90 and 180 degrees; z = (0.6, 0.8): responses 0.6, 0.8, -0.6.
    cnu = CNUs(d=2, m=3, u=1, delta=2, gamma_alpha=math.sqrt(2)).eval()
    set_keys(cnu, [[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]])
    responses, indices, weights = cnu.attention(torch.tensor([[3.0, 4.0]]))
    assert indices.tolist() == [[[1, 0]]]
    torch.testing.assert_close(responses, torch.tensor([[[0.8, 0.6]]]))
    # softmax(gamma / sqrt(d) * r) with gamma / sqrt(d) = 1.
    expected = torch.softmax(torch.tensor([0.8, 0.6]), 0)
    torch.testing.assert_close(weights, expected.view(1, 1, 2))


def test_compute_weights_multi_unit_on_non_2d_input():
    cnu = CNUs(q=3, d=12, m=4, u=2, delta=2).eval()
    x = torch.randn(5, 3, 4)
    weights = cnu.compute_weights(x)
    assert weights.shape == (5, 3, 2)
    torch.testing.assert_close(cnu(x), weights)
    attention = cnu.attention(x.flatten(1))
    assert isinstance(attention, CNUAttention)
    torch.testing.assert_close(cnu.blend(attention), weights)


def test_eval_mode_changes_no_state_and_training_updates_counters():
    cnu = CNUs(q=1, d=4, m=5, u=2, delta=2, tau_eta=100, scramble=True)
    x = torch.randn(3, 4)
    before = {name: tensor.clone() for name, tensor in cnu.state_dict().items()}
    cnu.eval()
    cnu.compute_weights(x)
    for name, tensor in cnu.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    cnu.train()
    attention = cnu.attention(x)
    winners = attention.indices[:, 0, 0].unique()
    # Winners end the step with age b = 3, the others age by 3 from 100.
    expected_eta = torch.full((5,), 103.0)
    expected_eta[winners] = 3.0
    assert cnu.eta[0].tolist() == expected_eta.tolist()
    assert cnu.mu.sum() == 3


def test_training_step_under_no_grad_still_updates_state():
    cnu = CNUs(q=1, d=4, m=5, u=2, beta_k=0.5)
    keys = cnu.K.clone()
    with torch.no_grad():
        cnu.compute_weights(torch.randn(2, 4))
    assert not torch.equal(cnu.K, keys) and cnu.mu.sum() == 2


def test_empty_batch_returns_empty_weights_without_side_effects():
    cnu = CNUs(q=2, d=4, m=5, u=3, scramble=True)
    before = {name: tensor.clone() for name, tensor in cnu.state_dict().items()}
    out = cnu.compute_weights(torch.randn(0, 4))
    assert out.shape == (0, 2, 3)
    for name, tensor in cnu.state_dict().items():
        assert torch.equal(tensor, before[name]), name


def test_scrambling_replaces_the_oldest_weak_key_by_the_loosest_input():
    # Unit keys along e0, e1, e2 in 4-D; an input along e3 matches none (responses 0).
    cnu = CNUs(d=4, m=3, u=2, delta=1, tau_alpha=0.5, tau_mu=2, tau_eta=3, scramble=True)
    set_keys(cnu, torch.eye(4)[:3].unsqueeze(0), [[[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]])
    with torch.no_grad():
        cnu.eta.copy_(torch.tensor([[3.0, 5.0, 4.0]]))  # key 1 is the oldest weak key
    winner_before = cnu.eval().attention(torch.tensor([[0.0, 0.0, 0.0, 2.0]])).indices[0, 0, 0]
    attention = cnu.train().attention(torch.tensor([[0.0, 0.0, 0.0, 2.0]]))
    assert cnu.scrambling_count.tolist() == [1]
    torch.testing.assert_close(cnu.K[0, 1], torch.tensor([0.0, 0.0, 0.0, 1.0]))
    # The new key's memory is a copy of the previous winner's.
    assert cnu.M[0, 1].tolist() == cnu.M[0, int(winner_before)].tolist()
    assert attention.indices.tolist() == [[[1]]]
    torch.testing.assert_close(attention.responses, torch.ones(1, 1, 1))
    assert cnu.mu.tolist() == [[0.0, 1.0, 0.0]] and cnu.eta.tolist() == [[4.0, 1.0, 5.0]]


def test_debug_counts_pre_update_winners_and_logs_scrambling(caplog):
    cnu = CNUs(d=2, m=3, u=1, delta=1, debug=True, scramble=True, tau_alpha=0.99)
    set_keys(cnu, [[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]])
    x = torch.tensor([[1.0, 0.1], [0.1, 1.0], [0.2, 1.0], [-1.0, 0.0]])
    with caplog.at_level(logging.DEBUG, logger="dyna.cnu"):
        cnu.compute_weights(x)
    # Pre-update winners: key 0 once, key 1 twice, key 2 once.
    assert cnu.key_counter.tolist() == [[1.0, 2.0, 1.0]]
    assert "scrambling" in caplog.text
    cnu.eval().compute_weights(x[:1])  # counted in evaluation mode too
    assert cnu.key_counter.sum() == 5
    cnu.reset_counter()
    assert torch.all(cnu.key_counter == 0)


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("delta", [1, 3])
@pytest.mark.parametrize(("upd_m", "upd_k"), PAIRS)
def test_gradcheck_in_eval_mode(upd_m, upd_k, delta):
    torch.manual_seed(0)
    cnu = CNUs(q=2, d=4, m=5, u=3, delta=delta, gamma_alpha=2.0, upd_m=upd_m, upd_k=upd_k)
    cnu = cnu.double().eval()
    x = torch.randn(3, 4, dtype=torch.float64)
    responses, _, _ = cnu.attention(x)
    if delta > 1:
        # The selection must not be near a tie for finite differences to keep it.
        assert (responses[..., :-1] - responses[..., 1:]).min() > 1e-3
    # The stop-gradients are deliberate: ad_hoc_WTA detaches the key path and WTA the other
    # memories (and, with grad_WTA, their weights). Where they cut a live dependence (δ > 1)
    # the gradient is not the derivative, so only the exact ones are checked there; with
    # δ = 1 the weight is exactly the winner's memory and every gradient is exact.
    check_x = delta == 1 or (upd_m is None and upd_k != "ad_hoc_WTA")
    check_memories = delta == 1 or upd_m is None
    if not (check_x or check_memories):
        # WTA with δ > 1: M's gradient is exactly α₀ g on the winners' rows, nothing else.
        grad = torch.randn(3, 2, 3, dtype=torch.float64)
        (cnu.compute_weights(x) * grad).sum().backward()
        _, indices, weights = cnu.attention(x)
        expected = torch.zeros_like(cnu.M)
        for i in range(3):
            for j in range(2):
                expected[j, indices[i, j, 0]] += weights[i, j, 0] * grad[i, j]
        torch.testing.assert_close(cnu.M.grad, expected, rtol=1e-12, atol=1e-12)
        return
    x.requires_grad_(check_x)
    memories = cnu.M.detach().clone().requires_grad_(check_memories)

    def weights_of(x, memories):
        return torch.func.functional_call(cnu, {"M": memories}, (x,))

    assert torch.autograd.gradcheck(weights_of, (x, memories))


@pytest.mark.parametrize(("upd_m", "upd_k"), [p for p in PAIRS if p[0] == "WTA"])
def test_wta_gives_zero_gradient_to_non_winning_memories(upd_m, upd_k):
    torch.manual_seed(1)
    cnu = CNUs(q=2, d=4, m=5, u=3, delta=3, upd_m=upd_m, upd_k=upd_k).eval()
    x = torch.randn(1, 4)
    attention = cnu.attention(x)
    cnu.compute_weights(x).sum().backward()
    touched = cnu.M.grad.abs().sum(-1) != 0
    expected = torch.zeros(2, 5, dtype=torch.bool)
    expected[[0, 1], attention.indices[0, :, 0]] = True
    assert torch.equal(touched, expected)


def test_online_keys_detach_the_key_path():
    cnu = CNUs(q=1, d=3, m=4, u=3, delta=3, upd_m=None).eval()
    x = torch.randn(2, 3, requires_grad=True)
    cnu.compute_weights(x).sum().backward()
    assert x.grad is None or torch.all(x.grad == 0)
    learnt = CNUs(q=1, d=3, m=4, u=3, delta=3, upd_m=None, upd_k=None).eval()
    learnt.compute_weights(x).sum().backward()
    assert x.grad.abs().sum() > 0 and learnt.K.grad.abs().sum() > 0


def test_keys_learnt_by_gradient_are_renormalised_at_every_call():
    cnu = CNUs(d=3, m=4, u=2, upd_m=None, upd_k=None).eval()
    with torch.no_grad():
        cnu.K.mul_(3.0)
    cnu.compute_weights(torch.randn(2, 3))
    torch.testing.assert_close(cnu.K.norm(dim=2), torch.ones(1, 4))


# ----------------------------------------------------------------------------- input checks


@pytest.mark.parametrize(
    ("x", "error", "message"),
    [
        ([[1.0, 2.0]], TypeError, "x must be a torch.Tensor"),
        (torch.ones(2, 2, dtype=torch.int64), TypeError, "floating-point"),
        (torch.ones(2), ValueError, "batch dimension"),
        (torch.ones(2, 3), ValueError, "3 values, but the key size is 2"),
        (torch.ones(2, 2, dtype=torch.float64), TypeError, "module's dtype"),
    ],
)
def test_bad_input(x, error, message):
    with pytest.raises(error, match=message):
        CNUs().compute_weights(x)


# ----------------------------------------------------------------------------- conventions


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
@pytest.mark.parametrize(("upd_m", "upd_k"), [("WTA", "ad_hoc_WTA"), (None, "grad_WTA")])
def test_factory_kwargs_and_dtypes(device, dtype, upd_m, upd_k):
    cnu = CNUs(
        q=2, d=4, m=5, u=3, delta=2, upd_m=upd_m, upd_k=upd_k, debug=True, device=device,
        dtype=dtype,
    )  # fmt: skip
    for name, tensor in cnu.state_dict().items():
        assert tensor.device.type == device, name
        if name in ("M", "K"):
            assert tensor.dtype == dtype
    counters = torch.float32 if dtype == torch.bfloat16 else dtype
    assert cnu.key_counter.dtype == counters
    x = torch.randn(6, 4, device=device, dtype=dtype)
    out = cnu(x)
    assert out.shape == (6, 2, 3) and out.dtype == dtype and out.device.type == device
    out.float().sum().backward()
    assert cnu.M.grad.dtype == dtype


def test_meta_device_to_empty_and_reset_parameters():
    cnu = CNUs(q=2, d=4, m=5, u=3, device="meta")
    assert cnu.M.device.type == "meta" and cnu.K.device.type == "meta"
    cnu = cnu.to_empty(device="cpu")
    cnu.reset_parameters()
    torch.testing.assert_close(cnu.K.norm(dim=2), torch.ones(2, 5))
    assert torch.all(cnu.eta == 100) and torch.all(cnu.mu == 0)


def test_state_dict_round_trip():
    source = CNUs(q=2, d=4, m=5, u=3, delta=2, scramble=True)
    source.compute_weights(torch.randn(4, 4))
    target = CNUs(q=2, d=4, m=5, u=3, delta=2, scramble=True)
    target.load_state_dict(source.state_dict())
    x = torch.randn(3, 4)
    torch.testing.assert_close(target.eval()(x), source.eval()(x))
    assert torch.equal(target.scrambling_count, source.scrambling_count)


@pytest.mark.parametrize(("upd_m", "upd_k"), PAIRS)
def test_compiles_as_one_graph(upd_m, upd_k):
    cnu = CNUs(q=2, d=4, m=5, u=3, delta=2, upd_m=upd_m, upd_k=upd_k)
    compiled = torch.compile(cnu, backend="eager", fullgraph=True)
    x = torch.randn(3, 4)
    compiled(x).sum().backward()
    assert cnu.M.grad is not None
