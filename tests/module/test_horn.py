"""Tests for ``dyna.module.horn``: HORNStep, HORNSeqLayer, HORNSeqNetwork and HORNState.

Golden values: brainmass 0.1.1 in float64 (h = dt / 1 ms = 1), reproduced by an independent
loop written from its equations.
"""

import copy
import math

import pytest
import torch
from torch import nn

from dyna.functional import horn_scan_ref
from dyna.module import HORNSeqLayer, HORNSeqNetwork, HORNState, HORNStep

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

W_IH = [[1.0], [-0.5], [0.25]]
B_IH = [0.1, 0.0, -0.1]
W_HH = [[0.0, 0.5, -0.3], [0.2, 0.0, 0.4], [-0.6, 0.1, 0.0]]
B_HH = [0.05, -0.05, 0.0]
OMEGA_A = [0.2, 0.3, 0.4]
V_A = [0.1, 0.0, -0.1]
DELAY_B = [[0, 1, 2], [3, 0, 1], [2, 2, 0]]
DELAY_G = [[5, 40, 17], [1, 0, 23], [31, 8, 12]]

# Case A: one layer, no delays, input sin(t), t = 1..6 (brainmass 0.1.1, float64).
GOLDEN_A = [
    [0.3789944285, -0.2193966937, 0.0549608938],
    [1.0795035868, -0.5900119903, 0.0322212042],
    [1.7753192903, -0.8652418922, -0.2342935185],
    [2.1046520052, -0.8620480202, -0.7422538187],
    [2.1081923195, -0.6395354789, -1.2968335263],
    [2.1992323086, -0.4470483659, -1.5984822853],
]
GOLDEN_A_Y6 = [0.0910399891, 0.1924871130, -0.3016487590]
# Case B: the weights of case A with delays DELAY_B and no recurrent bias.
GOLDEN_B = [
    [0.3679486818, -0.1987749319, 0.0549608938],
    [1.0745257867, -0.5726389998, 0.1562465023],
    [1.7895404051, -0.8818478891, 0.1823180038],
    [2.0653001447, -0.8827613802, -0.0729281115],
    [1.8886613172, -0.5488573810, -0.6212510956],
    [1.6547261382, -0.1104268709, -1.2721603756],
]
# Case D: the paper model (recurrent scale 1/sqrt(3), v = 0), otherwise case A.
GOLDEN_D = [
    [0.3744264998, -0.2107863105, 0.0549608938],
    [1.0703005157, -0.5831752311, 0.0883571982],
    [1.7314918547, -0.8715204251, -0.0537595614],
    [1.9594213507, -0.8655961867, -0.4176188146],
    [1.7640798479, -0.5954388161, -0.8760412413],
    [1.5211296602, -0.3074987744, -1.1916409764],
]
# Cases E-G (T = 784, input 0.5 + 0.5 sin(0.37 t), weights of case A): x_1, x_392, x_784, y_784.
GOLDEN_E = [
    [0.0272363789, -0.0148683335, 0.0028034732],
    [0.2924864679, -0.0960276632, -0.0209821088],
    [0.2645184694, -0.1215500489, -0.0468246540],
    [-0.0115735114, 0.0060833609, 0.0032807677],
]
GOLDEN_F = [
    [0.0261268028, -0.0131135158, 0.0028034732],
    [0.3069171346, -0.0686307449, -0.0700835482],
    [0.2555311757, -0.0759872802, -0.0592618608],
    [-0.0099036970, 0.0079635865, -0.0014739007],
]
GOLDEN_G = [
    [0.3265850348, -0.1639189474, 0.0350434151],
    [10.5727356221, 0.7337258981, 0.1654705314],
    [10.6005033965, -0.0475579711, 0.2858371809],
    [0.0395080046, -0.6049952394, 0.0905092648],
]


def t64(values):
    return torch.tensor(values, dtype=torch.float64)


def short_input(dtype=torch.float64):
    return torch.sin(torch.arange(1, 7, dtype=torch.float64)).reshape(6, 1).to(dtype)


def long_input(dtype=torch.float64):
    t = torch.arange(1, 785, dtype=torch.float64)
    return (0.5 + 0.5 * torch.sin(0.37 * t)).reshape(784, 1).to(dtype)


def fill(layer, w_ih=W_IH, b_ih=B_IH, w_hh=W_HH, b_hh=B_HH):
    with torch.no_grad():
        layer.i2h.weight.copy_(t64(w_ih))
        if layer.i2h.bias is not None:
            layer.i2h.bias.copy_(t64(b_ih))
        layer.h2h.weight.copy_(t64(w_hh))
        if layer.h2h.bias is not None:
            layer.h2h.bias.copy_(t64(b_hh))
    return layer


def case_a_layer(dtype=torch.float64, **kwargs):
    options = {"alpha": 0.5, "omega": t64(OMEGA_A), "gamma": 0.05, "v": t64(V_A)}
    options.update(kwargs)
    return fill(HORNSeqLayer(1, 3, dtype=dtype, **options))


def assert_rows(actual, expected, dtype, long=False):
    expected = torch.tensor(expected, dtype=torch.float64)
    actual = actual.detach().double()
    if dtype == torch.float64:
        # Golden values are printed to 10 decimals: 1e-10 plus half a unit of the last one.
        atol = (1e-8 if long else 1e-10) + 5e-11
        torch.testing.assert_close(actual, expected, rtol=0, atol=atol)
    else:
        scale = expected.abs().max()
        torch.testing.assert_close(actual, expected, rtol=0, atol=1e-5 * float(scale))


# ---------------------------------------------------------------- golden cases (parity)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_golden_case_a(dtype):
    x_seq, y_seq, state = case_a_layer(dtype)(short_input(dtype), return_velocity=True)
    assert_rows(x_seq, GOLDEN_A, dtype)
    assert_rows(y_seq[-1], GOLDEN_A_Y6, dtype)
    assert_rows(state.y, GOLDEN_A_Y6, dtype)
    assert state.history is None


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_golden_case_b(dtype):
    layer = case_a_layer(dtype, delay=DELAY_B)
    assert layer.h2h.bias is None  # brainmass: no recurrent bias in the delayed path
    x_seq, _ = layer(short_input(dtype))
    assert_rows(x_seq, GOLDEN_B, dtype)


def case_c_network(dtype=torch.float64, **kwargs):
    net = HORNSeqNetwork(1, [3, 2], 2, alpha=0.5, omega=0.3, gamma=0.05, dtype=dtype, **kwargs)
    fill(net.layers[0])
    fill(
        net.layers[1],
        w_ih=[[1.0, -1.0, 0.5], [0.3, 0.2, -0.4]],
        b_ih=[0.0, 0.0],
        w_hh=[[0.0, 0.7], [-0.7, 0.0]],
        b_hh=[0.0, 0.0],
    )
    with torch.no_grad():
        net.h2o.weight.copy_(t64([[1.0, 2.0], [-3.0, 0.5]]))
        net.h2o.bias.copy_(t64([0.01, -0.02]))
    return net


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_golden_case_c_network(dtype):
    net = case_c_network(dtype)
    logits = net(short_input(dtype))
    sequences = net.hidden_sequences(short_input(dtype))
    assert [tuple(s.shape) for s in sequences] == [(6, 3), (6, 2)]
    assert_rows(sequences[1][-1], [5.4567852255, -0.3100378129], dtype)
    assert_rows(logits, [4.8467095998, -16.5453745831], dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_golden_case_d_paper(dtype):
    layer = case_a_layer(dtype, v=0.0, paper=True)
    assert layer.recurrent_scale == pytest.approx(1 / math.sqrt(3), rel=1e-15)
    x_seq, _ = fill(layer)(short_input(dtype))
    assert_rows(x_seq, GOLDEN_D, dtype)
    explicit = case_a_layer(dtype, v=0.0, recurrent_scale=1 / math.sqrt(3))
    assert_rows(explicit(short_input(dtype))[0], GOLDEN_D, dtype)


def test_paper_equals_scaled_default_layer():
    # The original HORN with (W_hh, b_hh) is brainmass with (W_hh / sqrt(n), b_hh / sqrt(n)).
    torch.manual_seed(0)
    paper = HORNSeqLayer(2, 5, paper=True, dtype=torch.float64)
    default = HORNSeqLayer(2, 5, dtype=torch.float64)
    with torch.no_grad():
        default.i2h.load_state_dict(paper.i2h.state_dict())
        default.h2h.weight.copy_(paper.h2h.weight / math.sqrt(5))
        default.h2h.bias.copy_(paper.h2h.bias / math.sqrt(5))
    s = torch.randn(20, 3, 2, dtype=torch.float64)
    torch.testing.assert_close(paper(s)[0], default(s)[0], rtol=0, atol=1e-13)


def long_layer(alpha=0.04, omega=2 * math.pi / 28, gamma=0.01, v=0.0, delay=None):
    layer = HORNSeqLayer(
        1, 3, alpha=alpha, omega=omega, gamma=gamma, v=v, delay=delay, dtype=torch.float64
    )
    return fill(layer)


def long_rows(layer):
    x_seq, y_seq, _ = layer(long_input(), return_velocity=True)
    return torch.stack([x_seq[0], x_seq[391], x_seq[783], y_seq[783]])


def test_golden_case_e_long():
    assert_rows(long_rows(long_layer()), GOLDEN_E, torch.float64, long=True)


def test_golden_case_f_long_delays():
    layer = long_layer(v=t64(V_A), delay=DELAY_B)
    assert_rows(long_rows(layer), GOLDEN_F, torch.float64, long=True)


def test_golden_case_g_long_delays():
    layer = long_layer(alpha=0.5, omega=t64(OMEGA_A), gamma=0.05, v=t64(V_A), delay=DELAY_G)
    assert layer.max_delay == 40
    assert_rows(long_rows(layer), GOLDEN_G, torch.float64, long=True)


@pytest.mark.parametrize("case", ["E", "G"])
def test_golden_long_float32(case):
    # float32 agrees to about 2e-7 relative over 784 steps on these cases.
    if case == "E":
        layer, golden = long_layer(), GOLDEN_E
    else:
        layer = long_layer(0.5, t64(OMEGA_A), 0.05, t64(V_A), DELAY_G)
        golden = GOLDEN_G
    x_seq, y_seq, _ = layer.float()(long_input(torch.float32), return_velocity=True)
    rows = torch.stack([x_seq[0], x_seq[391], x_seq[783], y_seq[783]])
    assert_rows(rows, golden, torch.float32)


# ---------------------------------------------------------------- gradients


def _small_layer(delay=None, learnable=("alpha", "omega", "gamma", "v"), **kwargs):
    torch.manual_seed(1)
    return HORNSeqLayer(
        2,
        3,
        alpha=torch.tensor([0.4, 0.5, 0.6]),
        omega=torch.tensor([0.2, 0.3, 0.4]),
        gamma=torch.tensor([0.05, 0.02, 0.08]),
        v=torch.tensor([0.1, 0.0, -0.1]),
        dt=0.8,
        delay=delay,
        learnable=learnable,
        dtype=torch.float64,
        **kwargs,
    )


@pytest.mark.parametrize("delay", [None, DELAY_B], ids=["plain", "delayed"])
def test_layer_gradcheck_with_state(delay):
    layer = _small_layer(delay, recurrent_scale=0.7)
    parameters = list(layer.parameters())
    names = [name for name, _ in layer.named_parameters()]
    assert {"horn.alpha", "horn.omega", "horn.gamma", "horn.v"} <= set(names)
    torch.manual_seed(2)
    s = torch.randn(5, 2, 2, dtype=torch.float64, requires_grad=True)
    x0 = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    y0 = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    history = None
    if delay is not None:
        history = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)

    def function(s, x0, y0, history, *weights):
        mapping = dict(zip(names, weights, strict=True))
        state = HORNState(x0, y0, history)
        x_seq, y_seq, final = torch.func.functional_call(
            layer, mapping, (s, state), {"return_velocity": True}
        )
        outputs = (x_seq, y_seq, final.x, final.y)
        return outputs if final.history is None else (*outputs, final.history)

    assert torch.autograd.gradcheck(function, (s, x0, y0, history, *parameters))


def test_gradients_against_float64_reference_scan():
    # Gradients of the fast path equal those of the plain loop through autograd.
    layer = _small_layer(DELAY_B)
    s = torch.randn(30, 4, 2, dtype=torch.float64)
    x_seq, _ = layer(s)
    loss = (x_seq * torch.cos(torch.arange(x_seq.numel()).reshape(x_seq.shape))).sum()
    ours = torch.autograd.grad(loss, list(layer.parameters()))
    drive = torch.nn.functional.linear(s, layer.i2h.weight, layer.i2h.bias)
    zeros = torch.zeros(4, 3, dtype=torch.float64)
    horn = layer.horn
    x_ref, _, _ = horn_scan_ref(
        drive, layer.h2h.weight, None, horn.alpha, horn.omega, horn.gamma, horn.v, 0.8,
        zeros, zeros, delay=layer.delay,
    )  # fmt: skip
    loss_ref = (x_ref * torch.cos(torch.arange(x_ref.numel()).reshape(x_ref.shape))).sum()
    expected = torch.autograd.grad(loss_ref, list(layer.parameters()))
    for a, b in zip(ours, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("delay", [None, DELAY_G], ids=["plain", "delayed"])
def test_split_sequence_continuation(delay):
    # Running s[:T1] and then s[T1:] from the returned state equals one call, values and
    # gradients, to 1e-12 in float64.
    layer = _small_layer(delay)
    torch.manual_seed(3)
    s = torch.randn(60, 3, 2, dtype=torch.float64)
    probe = torch.randn(60, 3, 3, dtype=torch.float64)
    x_full, y_full, state_full = layer(s, return_velocity=True)
    grads_full = torch.autograd.grad((x_full * probe).sum(), list(layer.parameters()))
    x1, y1, state1 = layer(s[:23], return_velocity=True)
    x2, y2, state2 = layer(s[23:], state1, return_velocity=True)
    grads_split = torch.autograd.grad((torch.cat([x1, x2]) * probe).sum(), list(layer.parameters()))
    torch.testing.assert_close(torch.cat([x1, x2]), x_full, rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.cat([y1, y2]), y_full, rtol=0, atol=1e-12)
    for a, b in zip(state2, state_full, strict=True):
        if a is None:
            assert b is None
        else:
            torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    for a, b in zip(grads_split, grads_full, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_history_layout_newest_first():
    layer = _small_layer(DELAY_B)
    s = torch.randn(7, 2, 2, dtype=torch.float64)
    _, y_seq, state = layer(s, return_velocity=True)
    assert state.history.shape == (4, 2, 3)
    torch.testing.assert_close(state.history, y_seq.flip(0)[:4], rtol=0, atol=0)
    _, y_short, state_short = layer(s[:2], return_velocity=True)
    # After two updates: y_2, y_1, then zeros for times before the start.
    torch.testing.assert_close(state_short.history[:2], y_short.flip(0), rtol=0, atol=0)
    assert not state_short.history[2:].any()


def test_history_row_zero_makes_initial_velocity_visible():
    # history=None: lag 0 reads zero at the first update even if y0 is given (brainmass);
    # a history whose row 0 is y0 makes it visible, like the non-delayed layer.
    delayed = _small_layer([[0] * 3] * 3, learnable=())
    plain = _small_layer(None, learnable=())
    with torch.no_grad():
        plain.i2h.load_state_dict(delayed.i2h.state_dict())
        plain.h2h.weight.copy_(delayed.h2h.weight)
        plain.h2h.bias.zero_()
    s = torch.randn(5, 2, 2, dtype=torch.float64)
    y0 = torch.randn(2, 3, dtype=torch.float64)
    x0 = torch.zeros(2, 3, dtype=torch.float64)
    expected, _ = plain(s, HORNState(x0, y0, None))
    hidden, _ = delayed(s, HORNState(x0, y0, None))
    visible, _ = delayed(s, HORNState(x0, y0, y0.unsqueeze(0)))
    assert not torch.allclose(hidden, expected)
    torch.testing.assert_close(visible, expected, rtol=0, atol=1e-14)


# ---------------------------------------------------------------- shapes and layouts


@pytest.mark.parametrize("delay", [None, DELAY_B], ids=["plain", "delayed"])
def test_batched_equals_per_sample_and_unbatched(delay):
    layer = _small_layer(delay)
    s = torch.randn(12, 4, 2, dtype=torch.float64)
    x_seq, y_seq, state = layer(s, return_velocity=True)
    assert x_seq.shape == (12, 4, 3) and y_seq.shape == (12, 4, 3)
    assert state.x.shape == (4, 3) and state.y.shape == (4, 3)
    for b in range(4):
        x_one, y_one, state_one = layer(s[:, b], return_velocity=True)
        assert x_one.shape == (12, 3) and state_one.x.shape == (3,)
        torch.testing.assert_close(x_one, x_seq[:, b], rtol=0, atol=1e-14)
        torch.testing.assert_close(y_one, y_seq[:, b], rtol=0, atol=1e-14)
        if delay is not None:
            assert state_one.history.shape == (4, 3)
            torch.testing.assert_close(state_one.history, state.history[:, b], rtol=0, atol=1e-14)
        x_batch_one, _ = layer(s[:, b : b + 1])
        torch.testing.assert_close(x_batch_one[:, 0], x_one, rtol=0, atol=1e-14)


@pytest.mark.parametrize("delay", [None, DELAY_B], ids=["plain", "delayed"])
def test_batch_first(delay):
    layer = _small_layer(delay)
    layer_bf = copy.deepcopy(layer)
    layer_bf.batch_first = True
    s = torch.randn(9, 3, 2, dtype=torch.float64)
    x_seq, y_seq, state = layer(s, return_velocity=True)
    x_bf, y_bf, state_bf = layer_bf(s.transpose(0, 1), return_velocity=True)
    assert x_bf.shape == (3, 9, 3)
    torch.testing.assert_close(x_bf, x_seq.transpose(0, 1), rtol=0, atol=0)
    torch.testing.assert_close(y_bf, y_seq.transpose(0, 1), rtol=0, atol=0)
    assert state_bf.x.shape == (3, 3)  # states stay (B, n), as in nn.RNN
    torch.testing.assert_close(state_bf.x, state.x, rtol=0, atol=0)
    # Unbatched input ignores batch_first.
    x_one, _ = layer_bf(s[:, 0])
    torch.testing.assert_close(x_one, x_seq[:, 0], rtol=0, atol=1e-14)
    # Non-contiguous input.
    x_nc, _ = layer(s.transpose(0, 1).contiguous().transpose(0, 1))
    torch.testing.assert_close(x_nc, x_seq, rtol=0, atol=0)


@pytest.mark.parametrize("delay", [None, DELAY_B], ids=["plain", "delayed"])
def test_empty_sequence(delay):
    layer = _small_layer(delay)
    x_seq, y_seq, state = layer(torch.zeros(0, 4, 2, dtype=torch.float64), return_velocity=True)
    assert x_seq.shape == (0, 4, 3) and y_seq.shape == (0, 4, 3)
    assert not state.x.any() and not state.y.any() and state.x.shape == (4, 3)
    given = HORNState(torch.ones(4, 3, dtype=torch.float64), torch.full((4, 3), 2.0).double())
    x_seq, after = layer(torch.zeros(0, 4, 2, dtype=torch.float64), given)
    torch.testing.assert_close(after.x, given.x)
    torch.testing.assert_close(after.y, given.y)
    if delay is not None:
        assert after.history.shape == (4, 4, 3) and not after.history.any()
    net = HORNSeqNetwork(2, [3, 2], 4, readout="mean")
    assert net(torch.zeros(0, 5, 2)).shape == (5, 4)


def test_fresh_state_every_call():
    layer = _small_layer(DELAY_B)
    s = torch.randn(8, 2, 2, dtype=torch.float64)
    first, _ = layer(s)
    second, _ = layer(s)
    torch.testing.assert_close(first, second, rtol=0, atol=0)


def test_nonfinite_input_propagates_like_rnn():
    # A NaN at step 3 poisons that sample from step 3 on (nn.RNN does the same); other samples
    # and earlier steps are untouched, and backward does not fail.
    for delay in (None, DELAY_B):
        layer = _small_layer(delay)
        s = torch.randn(6, 2, 2, dtype=torch.float64, requires_grad=True)
        poisoned = s.detach().clone()
        poisoned[3, 0, 0] = float("nan")
        poisoned.requires_grad_()
        x_seq, _ = layer(poisoned)
        assert torch.isfinite(x_seq[:3]).all() and torch.isnan(x_seq[3:, 0]).all()
        assert torch.isfinite(x_seq[:, 1]).all()
        x_seq.sum().backward()
        assert poisoned.grad is not None
        rnn = nn.RNN(2, 3, dtype=torch.float64)
        out, _ = rnn(poisoned.detach())
        assert torch.isnan(out[3:, 0]).all() and torch.isfinite(out[:3]).all()
    infinite = torch.zeros(4, 1, 2, dtype=torch.float64)
    infinite[1] = float("inf")
    assert torch.isfinite(_small_layer()(infinite)[0][:1]).all()


# ---------------------------------------------------------------- step module


def test_step_module():
    step = HORNStep(3, alpha=0.5, omega=torch.tensor(OMEGA_A), gamma=0.05, v=torch.tensor(V_A))
    drive = torch.tensor([[0.3, -0.1, 0.2]])
    x, y = step(drive)
    expected_y = 0.5 * torch.tanh(drive)
    torch.testing.assert_close(y, expected_y)
    torch.testing.assert_close(x, expected_y)
    x2, y2 = step(drive, (x, y))
    omega = torch.tensor(OMEGA_A)
    v = torch.tensor(V_A)
    y_expected = y + (0.5 * torch.tanh(drive + v * x) - omega**2 * x - 0.1 * y)
    torch.testing.assert_close(y2, y_expected)
    torch.testing.assert_close(x2, x + y_expected)
    with pytest.raises(ValueError, match="drive"):
        step(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="state x"):
        step(drive, (torch.zeros(2, 3), torch.zeros(1, 3)))
    with pytest.raises(TypeError, match="state"):
        step(drive, torch.zeros(1, 3))
    with pytest.raises(TypeError, match="drive"):
        step(torch.zeros(1, 3, dtype=torch.int64))


def test_step_gradcheck_learnable():
    step = HORNStep(
        3,
        alpha=t64([0.4, 0.5, 0.6]),
        omega=t64(OMEGA_A),
        gamma=0.05,
        v=t64(V_A),
        dt=0.7,
        learnable=("alpha", "omega", "gamma", "v"),
        dtype=torch.float64,
    )
    names = [name for name, _ in step.named_parameters()]
    torch.manual_seed(4)
    drive, x, y = (torch.randn(2, 3, dtype=torch.float64, requires_grad=True) for _ in range(3))

    def function(drive, x, y, *values):
        mapping = dict(zip(names, values, strict=True))
        return torch.func.functional_call(step, mapping, (drive, (x, y)))

    assert torch.autograd.gradcheck(function, (drive, x, y, *step.parameters()))


def test_step_parameters_and_reset():
    shared = nn.Parameter(torch.tensor(0.3))
    step = HORNStep(4, omega=shared, gamma=torch.full((4,), 0.02), learnable=["alpha", "v"])
    assert step.omega is shared
    assert isinstance(step.alpha, nn.Parameter) and step.alpha.shape == ()
    assert isinstance(step.v, nn.Parameter)
    assert "gamma" in dict(step.named_buffers()) and step.gamma.shape == (4,)
    assert set(step.state_dict()) == {"alpha", "omega", "gamma", "v"}
    assert step.learnable == ("alpha", "omega", "v")
    with torch.no_grad():
        step.alpha.add_(1.0)
        step.gamma.zero_()
        shared.fill_(5.0)
    step.reset_parameters()
    assert float(step.alpha.detach()) == pytest.approx(0.04)
    assert float(shared.detach()) == pytest.approx(0.3)
    assert torch.allclose(step.gamma, torch.full((4,), 0.02))
    assert "learnable=('alpha', 'omega', 'v')" in repr(step)
    assert "gamma=tensor(4,)" in repr(step)


def test_step_errors():
    with pytest.raises(ValueError, match="learnable"):
        HORNStep(3, learnable=["beta"])
    with pytest.raises(TypeError, match="learnable"):
        HORNStep(3, learnable="alpha")
    with pytest.raises(ValueError, match="dt"):
        HORNStep(3, dt=0.0)
    with pytest.raises(ValueError, match="dt"):
        HORNStep(3, dt=-1.0)
    with pytest.raises(ValueError, match="dt"):
        HORNStep(3, dt=float("inf"))
    with pytest.raises(TypeError, match="dt"):
        HORNStep(3, dt="1")
    with pytest.raises(ValueError, match="omega"):
        HORNStep(3, omega=torch.ones(2))
    with pytest.raises(ValueError, match="alpha"):
        HORNStep(3, alpha=torch.ones(3, 1))
    with pytest.raises(TypeError, match="gamma"):
        HORNStep(3, gamma=torch.ones(3, dtype=torch.int64))
    with pytest.raises(TypeError, match="v"):
        HORNStep(3, v="0")
    with pytest.raises(ValueError, match="alpha"):
        HORNStep(3, alpha=float("nan"))
    with pytest.raises(ValueError, match="n_units"):
        HORNStep(0)
    with pytest.raises(TypeError, match="n_units"):
        HORNStep(3.0)
    with pytest.raises(TypeError, match="dtype"):
        HORNStep(3, dtype=torch.int32)


# ---------------------------------------------------------------- layer conventions


def test_layer_structure_and_init():
    torch.manual_seed(0)
    layer = HORNSeqLayer(1, 400)
    assert set(layer.state_dict()) == {
        "i2h.weight", "i2h.bias", "h2h.weight", "h2h.bias",
        "horn.alpha", "horn.omega", "horn.gamma", "horn.v",
    }  # fmt: skip
    # brainmass init: N(0, 2 / fan_in), zero biases.
    assert layer.i2h.weight.std().item() == pytest.approx(math.sqrt(2.0), rel=0.1)
    assert layer.h2h.weight.std().item() == pytest.approx(math.sqrt(2.0 / 400), rel=0.02)
    assert not layer.i2h.bias.any() and not layer.h2h.bias.any()
    delayed = HORNSeqLayer(1, 4, delay=torch.randint(2, 41, (4, 4)))
    assert delayed.h2h.bias is None and delayed.delay.dtype == torch.int64
    assert "delay" in delayed.state_dict()
    paper = HORNSeqLayer(3, 400, paper=True)
    bound = 1 / math.sqrt(400)
    assert paper.h2h.weight.abs().max() <= bound and paper.h2h.bias.abs().max() <= bound
    assert paper.h2h.bias.abs().max() > 0.5 * bound
    assert paper.i2h.weight.abs().max() <= 1 / math.sqrt(3)
    no_bias = HORNSeqLayer(2, 3, bias=False)
    assert no_bias.i2h.bias is None and no_bias.h2h.bias is None


def test_layer_parameter_count():
    # brainmass: n_in n + n + n^2 + n trainable weights, minus the recurrent bias with delays.
    layer = HORNSeqLayer(1, 32)
    assert sum(p.numel() for p in layer.parameters()) == 32 + 32 + 32 * 32 + 32
    delayed = HORNSeqLayer(1, 32, delay=torch.randint(2, 41, (32, 32)))
    assert sum(p.numel() for p in delayed.parameters()) == 32 + 32 + 32 * 32


@pytest.mark.parametrize("delay", [None, DELAY_G], ids=["plain", "delayed"])
def test_state_dict_round_trip_and_reset(delay):
    layer = _small_layer(delay, learnable=("omega",))
    with torch.no_grad():
        layer.horn.omega.mul_(2.0)
    zeros = torch.zeros(3)
    other = HORNSeqLayer(
        2, 3, alpha=zeros, omega=zeros, gamma=zeros, v=zeros, dt=0.8,
        delay=[[1] * 3] * 3 if delay else None, learnable=("omega",), dtype=torch.float64,
    )  # fmt: skip
    other.load_state_dict(layer.state_dict())
    s = torch.randn(45, 2, 2, dtype=torch.float64)
    torch.testing.assert_close(other(s)[0], layer(s)[0], rtol=0, atol=0)
    if delay is not None:
        assert other.max_delay == 40
    before = layer.i2h.weight.detach().clone()
    layer.reset_parameters()
    torch.testing.assert_close(layer.horn.omega, torch.tensor([0.2, 0.3, 0.4], dtype=torch.float64))
    assert not torch.equal(layer.i2h.weight, before)


def test_extra_repr():
    text = repr(HORNSeqLayer(1, 3, delay=DELAY_G, batch_first=True, bias=False))
    assert "1, 3, dt=1.0, delay=(3, 3) max 40, bias=False" in text
    assert "batch_first=True" in text
    assert "paper=True" in repr(HORNSeqLayer(1, 4, paper=True))
    assert "recurrent_scale=0.5" in repr(HORNSeqLayer(1, 4, paper=True))
    net_text = repr(HORNSeqNetwork(1, [3, 2], 5, readout="mean"))
    assert "readout='mean'" in net_text and "n_output=5" in net_text
    assert "n_hidden=[3, 2]" in net_text


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
def test_factory_kwargs_and_dtypes(device, dtype):
    layer = case_a_layer(dtype, delay=DELAY_B).to(device)
    fresh = HORNSeqLayer(1, 3, delay=DELAY_B, device=device, dtype=dtype)
    for tensor in (*fresh.parameters(), fresh.i2h.weight, fresh.h2h.weight):
        assert tensor.device.type == device and tensor.dtype == dtype
    assert fresh.delay.device.type == device and fresh.delay.dtype == torch.int64
    # Oscillator constants stay float32 in low-precision layers.
    expected = torch.float32 if dtype == torch.bfloat16 else dtype
    assert fresh.horn.omega.dtype == expected and fresh.horn.omega.device.type == device
    s = short_input(dtype).to(device).requires_grad_()
    x_seq, state = layer(s)
    assert x_seq.dtype == dtype and x_seq.device.type == device
    assert state.history.dtype == dtype
    x_seq.sum().backward()
    assert s.grad.dtype == dtype and layer.h2h.weight.grad.dtype == dtype
    tolerance = 2e-2 if dtype == torch.bfloat16 else 1e-5
    expected_rows = torch.tensor(GOLDEN_B)
    error = (x_seq.detach().double().cpu() - expected_rows).abs().max() / expected_rows.abs().max()
    assert error <= tolerance


def test_meta_device_to_empty_reset():
    layer = HORNSeqLayer(
        1, 3, omega=torch.tensor(OMEGA_A), delay=DELAY_B, learnable=("gamma",), device="meta"
    )
    assert layer.h2h.weight.is_meta and layer.horn.omega.is_meta and layer.delay.is_meta
    layer.to_empty(device="cpu")
    layer.reset_parameters()
    torch.testing.assert_close(layer.horn.omega, torch.tensor(OMEGA_A))
    assert float(layer.horn.gamma.detach()) == pytest.approx(0.01)
    assert layer.delay.tolist() == DELAY_B
    assert torch.isfinite(layer(torch.rand(5, 1))[0]).all()
    net = HORNSeqNetwork(1, [3, 2], 2, device="meta")
    net.to_empty(device="cpu")
    net.reset_parameters()
    assert torch.isfinite(net(torch.rand(5, 2, 1))).all()


@pytest.mark.parametrize("delay", [None, DELAY_B], ids=["plain", "delayed"])
def test_torch_compile_matches_eager(delay):
    layer = case_a_layer(torch.float32, delay=delay)
    compiled = torch.compile(layer, backend="eager", fullgraph=True)
    s = short_input(torch.float32).unsqueeze(1).repeat(1, 2, 1).requires_grad_()
    x_eager, state_eager = layer(s)
    x_compiled, state_compiled = compiled(s)
    torch.testing.assert_close(x_compiled, x_eager, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(state_compiled.y, state_eager.y, rtol=1e-6, atol=1e-6)
    (grad_compiled,) = torch.autograd.grad(x_compiled.sum(), s)
    (grad_eager,) = torch.autograd.grad(x_eager.sum(), s)
    torch.testing.assert_close(grad_compiled, grad_eager, rtol=1e-5, atol=1e-6)


def test_torch_compile_network():
    net = case_c_network(torch.float32, delay=[None, [[0, 2], [1, 0]]])
    compiled = torch.compile(net, backend="eager", fullgraph=True)
    s = short_input(torch.float32).unsqueeze(1).repeat(1, 3, 1)
    torch.testing.assert_close(compiled(s), net(s), rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- layer bad input


def test_layer_constructor_errors():
    with pytest.raises(ValueError, match="delay"):
        HORNSeqLayer(1, 3, delay=[[0, 1, -1], [0, 0, 0], [0, 0, 0]])
    with pytest.raises(TypeError, match="delay"):
        HORNSeqLayer(1, 3, delay=[[0.5, 1, 1], [0, 0, 0], [0, 0, 0]])
    with pytest.raises(TypeError, match="delay"):
        HORNSeqLayer(1, 3, delay=torch.ones(3, 3))
    with pytest.raises(ValueError, match="delay"):
        HORNSeqLayer(1, 3, delay=torch.ones(3, 2, dtype=torch.int64))
    with pytest.raises(TypeError, match="delay"):
        HORNSeqLayer(1, 3, delay=5)
    with pytest.raises(ValueError, match="learnable"):
        HORNSeqLayer(1, 3, learnable=("alpha", "zeta"))
    with pytest.raises(ValueError, match="dt"):
        HORNSeqLayer(1, 3, dt=0.0)
    with pytest.raises(ValueError, match="recurrent_scale"):
        HORNSeqLayer(1, 3, paper=True, recurrent_scale=0.5)
    with pytest.raises(ValueError, match="v"):
        HORNSeqLayer(1, 3, paper=True, v=0.1)
    with pytest.raises(ValueError, match="v"):
        HORNSeqLayer(1, 3, paper=True, v=torch.tensor([0.0, 0.1, 0.0]))
    with pytest.raises(ValueError, match="v"):
        HORNSeqLayer(1, 3, paper=True, learnable=("v",))
    with pytest.raises(TypeError, match="paper"):
        HORNSeqLayer(1, 3, paper=1)
    with pytest.raises(TypeError, match="batch_first"):
        HORNSeqLayer(1, 3, batch_first="yes")
    with pytest.raises(TypeError, match="bias"):
        HORNSeqLayer(1, 3, bias=None)
    with pytest.raises(ValueError, match="recurrent_scale"):
        HORNSeqLayer(1, 3, recurrent_scale=float("nan"))
    with pytest.raises(ValueError, match="n_hidden"):
        HORNSeqLayer(1, 0)
    with pytest.raises(TypeError, match="n_input"):
        HORNSeqLayer("1", 3)
    with pytest.raises(ValueError, match="omega"):
        HORNSeqLayer(1, 3, omega=torch.ones(4))


def test_layer_forward_errors():
    layer = HORNSeqLayer(2, 3, delay=DELAY_B)
    s = torch.randn(5, 4, 2)
    with pytest.raises(ValueError, match="input"):
        layer(torch.randn(5, 4, 3))
    with pytest.raises(ValueError, match="input"):
        layer(torch.randn(5))
    with pytest.raises(ValueError, match="input"):
        layer(torch.randn(5, 4, 2, 1))
    with pytest.raises(TypeError, match="input"):
        layer(s.double())
    with pytest.raises(TypeError, match="input"):
        layer(s.to(torch.int64))
    with pytest.raises(TypeError, match="input"):
        layer(s.numpy())
    good = HORNState(torch.zeros(4, 3), torch.zeros(4, 3), torch.zeros(4, 4, 3))
    layer(s, good)
    with pytest.raises(ValueError, match=r"state\.x"):
        layer(s, good._replace(x=torch.zeros(5, 3)))
    with pytest.raises(ValueError, match=r"state\.y"):
        layer(s, good._replace(y=torch.zeros(3)))
    with pytest.raises(ValueError, match=r"state\.history"):
        layer(s, good._replace(history=torch.zeros(3, 4, 3)))
    with pytest.raises(TypeError, match=r"state\.x"):
        layer(s, good._replace(x=torch.zeros(4, 3, dtype=torch.float64)))
    with pytest.raises(TypeError, match="state"):
        layer(s, (torch.zeros(4, 3), torch.zeros(4, 3)))
    with pytest.raises(ValueError, match=r"state\.history"):
        HORNSeqLayer(2, 3)(s, good)
    with pytest.raises(ValueError, match=r"state\.x"):
        layer(s[:, 0], good)  # unbatched input needs (n,) states


# ---------------------------------------------------------------- network


def test_network_structure_per_layer_arguments_and_sharing():
    shared = nn.Parameter(torch.tensor(0.3))
    net = HORNSeqNetwork(
        2,
        [4, 3],
        5,
        omega=shared,
        gamma=[0.01, torch.full((3,), 0.02)],
        delay=[None, torch.randint(0, 5, (3, 3))],
        recurrent_scale=(1.0, 0.5),
    )
    assert len(net.layers) == 2
    assert net.layers[0].horn.omega is shared and net.layers[1].horn.omega is shared
    assert net.layers[1].horn.gamma.shape == (3,)
    assert net.layers[0].delay is None and net.layers[1].delay is not None
    assert net.layers[1].recurrent_scale == 0.5
    assert net.layers[1].i2h.in_features == 4
    assert net.h2o.in_features == 3 and net.h2o.out_features == 5
    assert not net.h2o.bias.any()
    # Parameter count: sum over layers (minus the delayed recurrent bias) + readout + shared omega.
    expected = (2 * 4 + 4 + 16 + 4) + (4 * 3 + 3 + 9) + (3 * 5 + 5) + 1
    assert sum(p.numel() for p in net.parameters()) == expected
    s = torch.randn(7, 2, 2)
    logits = net(s)
    assert logits.shape == (2, 5)
    logits.sum().backward()
    assert shared.grad is not None and shared.grad.abs() > 0
    assert net(s[:, 0]).shape == (5,)
    single = HORNSeqNetwork(1, 6, 2)
    assert len(single.layers) == 1 and single(torch.randn(4, 1)).shape == (2,)


def test_network_readout_mean_and_batch_first():
    torch.manual_seed(0)
    net = HORNSeqNetwork(1, [3, 2], 4, readout="mean", dtype=torch.float64)
    s = torch.randn(10, 3, 1, dtype=torch.float64)
    expected = net.h2o(net.hidden_sequences(s)[-1].mean(0))
    torch.testing.assert_close(net(s), expected)
    net_bf = copy.deepcopy(net)
    net_bf.batch_first = True
    for layer in net_bf.layers:
        layer.batch_first = True
    torch.testing.assert_close(net_bf(s.transpose(0, 1)), expected, rtol=0, atol=1e-14)
    last = HORNSeqNetwork(1, [3, 2], 4, dtype=torch.float64)
    last.load_state_dict(net.state_dict())
    torch.testing.assert_close(last(s), net.h2o(net.hidden_sequences(s)[-1][-1]))


def test_network_paper_and_state_dict():
    net = case_c_network(paper=False)
    other = HORNSeqNetwork(1, [3, 2], 2, alpha=0.5, omega=0.3, gamma=0.05, dtype=torch.float64)
    other.load_state_dict(net.state_dict())
    torch.testing.assert_close(other(short_input()), net(short_input()), rtol=0, atol=0)
    paper = HORNSeqNetwork(1, [4, 9], 3, paper=True)
    assert paper.layers[1].recurrent_scale == pytest.approx(1 / 3)
    assert paper.h2o.bias.abs().max() > 0  # nn.Linear init


def test_network_errors():
    with pytest.raises(ValueError, match="readout"):
        HORNSeqNetwork(1, 3, 2, readout="max")
    with pytest.raises(TypeError, match="readout"):
        HORNSeqNetwork(1, 3, 2, readout=None)
    with pytest.raises(ValueError, match="alpha"):
        HORNSeqNetwork(1, [3, 2], 2, alpha=[0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="delay"):
        HORNSeqNetwork(1, [3, 2], 2, delay=[None])
    with pytest.raises(ValueError, match="omega"):
        HORNSeqNetwork(1, [3, 2], 2, omega=torch.ones(3))  # must broadcast to every layer
    with pytest.raises(ValueError, match="delay"):
        HORNSeqNetwork(1, [3, 2], 2, delay=torch.zeros(3, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="n_hidden"):
        HORNSeqNetwork(1, [], 2)
    with pytest.raises(ValueError, match="n_hidden"):
        HORNSeqNetwork(1, [3, 0], 2)
    with pytest.raises(ValueError, match="n_output"):
        HORNSeqNetwork(1, 3, 0)
    with pytest.raises(ValueError, match="recurrent_scale"):
        HORNSeqNetwork(1, [3, 2], 2, paper=True, recurrent_scale=0.3)
    with pytest.raises(ValueError, match="input"):
        HORNSeqNetwork(1, 3, 2)(torch.zeros(4, 2, 2))


@pytest.mark.parametrize("name", ["alpha", "omega", "gamma"])
def test_negative_dynamics_are_refused_by_the_layers_and_the_command_line_alike(name):
    from dyna.experiments import get_experiment
    from dyna.experiments.registry import ConfigError
    from dyna.module.horn import DYNAMICS_MINIMUM

    with pytest.raises(ValueError, match=rf"{name} must be >= 0\.0, got -1\.0"):
        HORNSeqLayer(1, 3, **{name: -1.0})
    with pytest.raises(ValueError, match=rf"{name} must be >= 0\.0 everywhere, got minimum -0\.5"):
        HORNStep(3, **{name: torch.tensor([0.1, -0.5, 0.2])})
    with pytest.raises(ValueError, match=rf"{name} must be >= 0\.0"):
        HORNSeqNetwork(1, 3, 2, **{name: nn.Parameter(torch.tensor(-1.0))})
    HORNSeqLayer(1, 3, **{name: 0.0})  # the bound itself is allowed
    for experiment in ("horn-digits", "horn-smnist"):
        assert get_experiment(experiment).params[name].minimum == DYNAMICS_MINIMUM[name]
        with pytest.raises(ConfigError, match=rf"{name}=-1.0 is out of range: expected float >= 0"):
            get_experiment(experiment).resolve_params({name: "-1"})
    HORNStep(3, v=-1.0)  # the amplitude feedback has either sign


def test_dt_follows_one_rule_in_the_layers_and_on_the_command_line():
    from dyna.experiments import get_experiment
    from dyna.experiments.registry import ConfigError

    for dt in (1e-9, 0.5, 1.0):  # any dt > 0, however small
        HORNSeqLayer(1, 3, dt=dt)
        HORNStep(3, dt=dt)
        for experiment in ("horn-digits", "horn-smnist"):
            assert get_experiment(experiment).resolve_params({"dt": str(dt)})["dt"] == dt
    for dt in (0.0, -1e-9, -1.0):
        with pytest.raises(ValueError, match=r"dt must be > 0\.0"):
            HORNSeqLayer(1, 3, dt=dt)
        with pytest.raises(ValueError, match=r"dt must be > 0\.0"):
            HORNStep(3, dt=dt)
        for experiment in ("horn-digits", "horn-smnist"):
            with pytest.raises(ConfigError, match=r"dt=.* is out of range: expected float > 0$"):
                get_experiment(experiment).resolve_params({"dt": str(dt)})


def test_a_delay_whose_history_would_not_fit_is_refused_naming_the_memory():
    from dyna.module.horn import MAX_HISTORY_BYTES

    delay = torch.zeros(8, 8, dtype=torch.int64)
    delay[0, 1] = 10**12
    with pytest.raises(ValueError, match=r"delay must be at most .* 29\.1 TiB per sequence"):
        HORNSeqLayer(1, 8, delay=delay)
    with pytest.raises(ValueError, match="delay must be at most"):
        HORNSeqNetwork(1, 8, 2, delay=delay)
    largest = MAX_HISTORY_BYTES // (8 * 4) - 1  # float32: the history's dtype
    delay[0, 1] = largest
    HORNSeqLayer(1, 8, delay=delay, device="meta")  # the bound itself is allowed
    delay[0, 1] = largest + 1
    with pytest.raises(ValueError, match=rf"at most {largest} steps at n_hidden = 8"):
        HORNSeqLayer(1, 8, delay=delay)
    # float64 halves the steps; bfloat16 keeps its history in float32.
    with pytest.raises(ValueError, match=rf"at most {largest // 2} steps"):
        HORNSeqLayer(1, 8, delay=delay // 2 + 1, dtype=torch.float64)
    delay[0, 1] = largest
    HORNSeqLayer(1, 8, delay=delay, dtype=torch.bfloat16, device="meta")
    # A state dict cannot smuggle one in either.
    layer = HORNSeqLayer(1, 8, delay=torch.ones(8, 8, dtype=torch.int64))
    state = layer.state_dict()
    state["delay"] = torch.full((8, 8), 10**12, dtype=torch.int64)
    with pytest.raises(ValueError, match="delay must be at most"):
        layer.load_state_dict(state)
