"""Tests for ``dyna.module.LinearCNU`` and ``dyna.module.Conv2dCNU``."""

import pytest
import torch
import torch.nn.functional as F

from dyna.module import LinearCNU
from tests.golden import assert_golden

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

# Golden trace 1, computed with the reference (unaiverse 0.1.31, float64): defaults (WTA +
# ad_hoc_WTA) with scrambling, shared keys; SGD lr 0.5 on the mean squared error.
TRACE1_STEPS = [
    ([[0.6, 0.8]], [[1.0]]),
    ([[-0.8, 0.6]], [[-1.0]]),
    ([[0.5, 0.9]], [[0.5]]),
    ([[1.0, 0.1], [-0.2, -1.0]], [[0.0], [2.0]]),
]
TRACE1 = [
    {
        "out": [0.46],
        "dx": [0.324, -0.864],
        "K": [0.6, 0.8, 0.0, 1.0, -1.0, 0.0],
        "M": [-0.0550262581, 1.1266316558, 0.4082895698, -0.3, 0.8, 0.0, 0.2, 0.2, -0.5],
        "mu": [1, 0, 0],
        "eta": [1, 4, 4],
        "scrambling_count": [1],
    },
    {
        "out": [-0.54],
        "dx": [0.184, 0.184],
        "K": [0.6, 0.8, -0.8, 0.6, -1.0, 0.0],
        "M": [
            -0.0550262581,
            1.1266316558,
            0.4082895698,
            0.4782417809,
            -0.0086813357,
            -0.8478022261,
            0.2,
            0.2,
            -0.5,
        ],
        "mu": [1, 1, 0],
        "eta": [2, 1, 5],
        "scrambling_count": [2],
    },
    {
        "out": [1.2313420702],
        "dx": [-0.0171148279, 1.5129906975],
        "K": [0.5816913891, 0.8134095696, -0.8, 0.6, -1.0, 0.0],
        "M": [
            -0.3909884027,
            0.5218997956,
            -0.2636347194,
            0.4782417809,
            -0.0086813357,
            -0.8478022261,
            0.2,
            0.2,
            -0.5,
        ],
        "mu": [2, 1, 0],
        "eta": [1, 2, 6],
        "scrambling_count": [2],
    },
    {
        "out": [-0.5865101801, -0.7433392776],
        "dx": [0.2122012427, -0.2967760114, -0.5617546717, -0.5388527434],
        "K": [0.6836942503, 0.7297685743, -0.8, 0.6, -0.1961161351, -0.9805806757],
        "M": [
            -0.1122153531,
            0.5497771006,
            0.0151383303,
            0.4782417809,
            -0.0086813357,
            -0.8478022261,
            -0.0696305305,
            -1.1481526527,
            0.8481526527,
        ],
        "mu": [3, 1, 1],
        "eta": [2, 4, 2],
        "scrambling_count": [3],
    },
]
TRACE1_EVAL = ([[0.3, -0.7]], [1.569351058])

# Golden trace 2, same reference: vanilla blend, keys learnt by gradient, unshared keys, no
# bias. K.grad before the SGD step; K (off the unit sphere) and M after it.
TRACE2_STEPS = [
    ([[0.6, 0.8], [-1.0, 0.2]], [[1.0, 0.0], [0.0, 1.0]]),
    ([[0.3, -0.9], [0.7, 0.7]], [[-1.0, 0.5], [0.5, 0.5]]),
]
TRACE2 = [
    {
        "out": [0.3295961253, 0.5451679881, 0.0050149016, -0.3287297932],
        "dx": [0.3260711339, -0.1968998406, -0.2671943478, -0.2439261902],
        "K.grad": [
            0.0473102577,
            0.0630803436,
            -0.0481524076,
            -0.0629119136,
            0.0008421499,
            -0.00016843,
            0.0084921758,
            0.0356709404,
            -0.0243713319,
            -0.0324951092,
            0.0158791561,
            -0.0031758312,
        ],
        "K": [
            0.9763448712,
            -0.0315401718,
            0.0240762038,
            1.0314559568,
            -0.7075278561,
            -0.7070225662,
            0.7028606933,
            0.689271311,
            0.7192924471,
            -0.6908592266,
            -1.0079395781,
            0.0015879156,
        ],
        "M": [
            0.5364263595,
            -0.2014315206,
            -0.2355320955,
            0.885445559,
            0.2009200425,
            0.1998159915,
            0.9171630511,
            -0.1039103109,
            -0.0032027847,
            -1.0042703797,
            0.0720820871,
            0.4655835826,
        ],
    },
    {
        "out": [0.0788283078, 0.8609891863, 0.3508698201, 0.49421301],
        "dx": [0.5316203863, -0.0427098688, 0.0000522775, -0.0394703383],
        "K.grad": [
            0.0627871727,
            -0.15558922,
            -0.0081930745,
            -0.0081930745,
            -0.0545940982,
            0.1637822945,
            -0.0004088098,
            -0.0004088098,
            0.0069541351,
            -0.0192271659,
            -0.0065453253,
            0.0196359758,
        ],
        "K": [
            0.9680850367,
            0.0455071178,
            0.0274321411,
            1.003824225,
            -0.6800622718,
            -0.7887452986,
            0.7141796367,
            0.7003753615,
            0.7177406815,
            -0.6830948394,
            -0.9967260964,
            -0.0082425823,
        ],
        "M": [
            0.5139856367,
            -0.0848270372,
            -0.2217548927,
            0.8992227617,
            0.154769221,
            0.3382684561,
            0.9181161286,
            -0.1029572334,
            -0.0293450351,
            -0.9256050456,
            0.0712097943,
            0.4682004611,
        ],
    },
]


def trace1_layer(dtype):
    layer = LinearCNU(
        2, 1, key_mem_units=3, delta=2, gamma_alpha=4.0, tau_alpha=0.95, tau_mu=2, tau_eta=3,
        beta_k=0.2, scramble=True, dtype=dtype,
    )  # fmt: skip
    with torch.no_grad():
        layer.K.copy_(torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]], dtype=torch.float64))
        layer.M.copy_(
            torch.tensor(
                [[[0.5, -0.25, 0.1], [-0.3, 0.8, 0.0], [0.2, 0.2, -0.5]]], dtype=torch.float64
            )
        )
    return layer


def trace2_layer(dtype):
    layer = LinearCNU(
        2, 2, bias=False, shared_keys=False, key_mem_units=3, delta=2, gamma_alpha=4.0,
        upd_m=None, upd_k=None, dtype=dtype,
    )  # fmt: skip
    with torch.no_grad():
        layer.K.copy_(
            torch.tensor(
                [[[2.0, 0], [0, 1], [-1, -1]], [[1, 1], [0.5, -0.5], [-3, 0]]], dtype=torch.float64
            )
        )
        layer.M.copy_(
            torch.tensor(
                [[[0.5, -0.25], [-0.3, 0.8], [0.2, 0.2]], [[1, 0], [0, -1], [0.4, 0.4]]],
                dtype=torch.float64,
            )
        )
    return layer


def run_trace(layer, steps, expected, dtype):
    optimiser = torch.optim.SGD(layer.parameters(), lr=0.5)
    for (x_values, target), record in zip(steps, expected, strict=True):
        x = torch.tensor(x_values, dtype=dtype, requires_grad=True)
        optimiser.zero_grad()
        out = layer(x)
        F.mse_loss(out, torch.tensor(target, dtype=dtype)).backward()
        assert_golden(out.flatten(), record["out"], dtype)
        assert_golden(x.grad.flatten(), record["dx"], dtype)
        if "K.grad" in record:
            assert_golden(layer.K.grad.flatten(), record["K.grad"], dtype)
        optimiser.step()
        for name in ("K", "M", "mu", "eta"):
            if name in record:
                assert_golden(getattr(layer, name).flatten(), record[name], dtype)
        if "scrambling_count" in record:
            assert layer.scrambling_count.tolist() == record["scrambling_count"]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_golden_trace_1_wta_ad_hoc_with_scrambling(dtype):
    layer = trace1_layer(dtype)
    run_trace(layer, TRACE1_STEPS, TRACE1, dtype)
    state = {name: tensor.clone() for name, tensor in layer.state_dict().items()}
    layer.eval()
    x, expected = TRACE1_EVAL
    assert_golden(layer(torch.tensor(x, dtype=dtype)).flatten(), expected, dtype)
    for name, tensor in layer.state_dict().items():
        assert torch.equal(tensor, state[name]), name


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_golden_trace_2_vanilla_gradient_keys_unshared(dtype):
    layer = trace2_layer(dtype)
    run_trace(layer, TRACE2_STEPS, TRACE2, dtype)
    assert list(layer.state_dict()) == ["M", "K", "scrambling_count"]
