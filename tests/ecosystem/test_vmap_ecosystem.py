"""``torch.func.vmap`` over the stateless functions equals a Python loop over the batch.

Functions with a hand-written backward through time or blend (``horn_scan``, ``cnu_linear``)
and the noise functions (which read the input's statistics on the host) do not run under
vmap: the tests below assert the documented error and that the ``*_ref`` twins, or a batch
dimension, are the way to batch them.
"""

import pytest
import torch
from torch.func import grad, vmap

import dyna
import dyna.train
from dyna.functional import cnu

BATCH = 3


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


HASHES = [torch.tensor([0, 1, 1, 3, 2]), torch.tensor([1, 0])]
SIGNS = [
    torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0], dtype=torch.float64),
    torch.tensor([-1.0, 1.0], dtype=torch.float64),
]
INDICES = torch.tensor([[[0, 2]], [[1, 0]], [[2, 1]], [[0, 1]]])

CASES = {
    "siglog": (dyna.siglog, [_randn(BATCH, 4, 5)]),
    "siglog_parametric": (lambda x: dyna.siglog_parametric(x, 0.5), [_randn(BATCH, 4, 5)]),
    "backward_gradient_normalization": (
        dyna.backward_gradient_normalization,
        [_randn(BATCH, 4, 5)],
    ),
    "log_proportional_error": (
        lambda x, y: dyna.log_proportional_error(x, y, "none"),
        [_randn(BATCH, 4, 5), _randn(BATCH, 4, 5, seed=1)],
    ),
    "psi": (lambda x: cnu.psi(x, "sign", 5), [_randn(BATCH, 4, 5)]),
    "resize1d": (lambda x: cnu.resize1d(x, 3), [_randn(BATCH, 4, 5)]),
    "resize2d": (lambda x: cnu.resize2d(x, 4), [_randn(BATCH, 2, 1, 4, 4)]),
    "count_sketch": (lambda x: dyna.count_sketch(x, HASHES[0], SIGNS[0], 4), [_randn(BATCH, 4, 5)]),
    "compact_spectral_features": (
        lambda a, b: dyna.compact_spectral_features([a, b], HASHES, SIGNS, 4),
        [_randn(BATCH, 4, 5), _randn(BATCH, 4, 2, seed=1)],
    ),
    "compact_spectral_inner": (
        lambda a, b: dyna.compact_spectral_inner([a, b], [b.sum() * a, b], HASHES, SIGNS, 4),
        [_randn(BATCH, 4, 5), _randn(BATCH, 4, 2, seed=1)],
    ),
    "horn_step": (
        lambda d, x, y: dyna.horn_step(d, x, y, 0.04, 0.3, 0.01, 0.1, 0.5)[0],
        [_randn(BATCH, 4, 5), _randn(BATCH, 4, 5, seed=1), _randn(BATCH, 4, 5, seed=2)],
    ),
    "horn_scan_ref": (
        lambda d: dyna.horn_scan_ref(
            d,
            torch.eye(5, dtype=d.dtype),
            None,
            0.04,
            0.3,
            0.01,
            0.0,
            1.0,
            torch.zeros(4, 5, dtype=d.dtype),
            torch.zeros(4, 5, dtype=d.dtype),
        )[0],
        [_randn(BATCH, 6, 4, 5)],
    ),
    "cnu_blend_weights": (
        lambda m, w: dyna.cnu_blend_weights(m, INDICES, w),
        [_randn(BATCH, 1, 3, 6), _randn(BATCH, 4, 1, 2, seed=1).softmax(-1)],
    ),
    "cnu_linear_ref": (
        lambda x, m, w: dyna.cnu_linear_ref(x, m, INDICES, w, bias=False),
        [_randn(BATCH, 4, 2), _randn(BATCH, 1, 3, 6, seed=1), _randn(BATCH, 4, 1, 2).softmax(-1)],
    ),
    "average_accuracy": (dyna.train.average_accuracy, [_randn(BATCH, 3, 3).sigmoid()]),
    "average_forgetting": (dyna.train.average_forgetting, [_randn(BATCH, 3, 3).sigmoid()]),
    "forward_transfer": (dyna.train.forward_transfer, [_randn(BATCH, 3, 3).sigmoid()]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_vmap_equals_a_loop(name):
    function, batched = CASES[name]
    got = vmap(function)(*batched)
    expected = torch.stack([function(*(t[i] for t in batched)) for i in range(BATCH)])
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "name",
    ["siglog", "siglog_parametric", "backward_gradient_normalization", "log_proportional_error"],
)
def test_per_sample_gradients_through_custom_backwards(name):
    # vmap(grad(...)): per-sample gradients, equal to one backward per sample
    function, batched = CASES[name]

    def loss(*args):
        return (
            function(*args) * torch.linspace(0.5, 1.5, 20, dtype=torch.float64).view(4, 5)
        ).sum()

    got = vmap(grad(loss))(*batched)
    for i in range(BATCH):
        leaves = [t[i].clone().requires_grad_() for t in batched]
        loss(*leaves).backward()
        torch.testing.assert_close(got[i], leaves[0].grad, rtol=1e-12, atol=1e-12)


def _scan(drive):
    zeros = torch.zeros(4, 5, dtype=drive.dtype)
    return dyna.horn_scan(
        drive, torch.eye(5, dtype=drive.dtype), None, 0.04, 0.3, 0.01, 0.0, 1.0, zeros, zeros
    )[0]


# The stateless functions that do not run under vmap: name -> (function, batched inputs, the
# error's words). The README and the family pages name exactly these (tests/test_doc_claims.py).
NOT_VMAPPABLE = {
    # hand-written backwards: they batch through their own (B) dimension, or vmap the *_ref twin
    "horn_scan": (_scan, [_randn(BATCH, 6, 4, 5)], "setup_context"),
    "cnu_linear": (
        lambda x, m, w: dyna.cnu_linear(x, m, INDICES, w, bias=False),
        CASES["cnu_linear_ref"][1],
        "setup_context",
    ),
    # the noise functions read the input's statistics on the host
    "noisein": (lambda x: dyna.noisein(x, 0.1), [_randn(BATCH, 4, 5)], r"\.item\(\)"),
    "noiseover": (lambda x: dyna.noiseover(x, 0.1), [_randn(BATCH, 4, 5)], r"\.item\(\)"),
    # a configuration helper: it checks the delays' values on the host before rounding them
    "delay_steps": (
        lambda delay: dyna.delay_steps(delay, 0.5),
        [_randn(BATCH, 4, 5).abs()],
        "data-dependent control flow",
    ),
}


@pytest.mark.parametrize("name", list(NOT_VMAPPABLE))
def test_documented_non_vmappable_functions_fail_with_a_runtime_error(name):
    function, batched, words = NOT_VMAPPABLE[name]
    with pytest.raises(RuntimeError, match=words):
        vmap(function)(*batched)
