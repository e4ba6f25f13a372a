"""Every custom ``torch.autograd.Function`` of the package, first and second derivatives.

Three kinds of backward pass live in the package:

- exact derivatives (HORN scan, CNU output-space blend, parametric siglog in x, the
  log-proportional error, the Möbius projection, the straight-through lift): ``gradcheck``
  passes in float64;
- designed gradients (siglog's surrogate, backward gradient normalisation and the composer
  kernels that contain it): not the derivative of the forward by construction, so they are
  checked against their documented formula or their plain-autograd ``*_ref`` twin instead;
- second derivatives: ``gradgradcheck`` where the backward is itself differentiable;
  backwards marked ``once_differentiable`` refuse a double backward with a ``RuntimeError``
  rather than return a wrong second derivative.
"""

import importlib
import inspect

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

import dyna
from dyna.functional import (
    gradient_normalization,
    signal_stabilization,
    tensor_composer_delta,
    tensor_composer_mobius,
)

DOUBLE = torch.float64


def _leaf(*shape, scale=1.0, seed=0, offset=0.0):
    generator = torch.Generator().manual_seed(seed + 17 * len(shape) + sum(shape))
    values = torch.randn(*shape, generator=generator, dtype=DOUBLE) * scale + offset
    return values.requires_grad_()


ANCHOR = torch.full((1,), -10.0, dtype=DOUBLE)
DELAY = torch.tensor([[0, 1, 2], [2, 0, 1], [1, 1, 0]])
INDICES = torch.tensor([[[0, 2]], [[1, 3]], [[3, 0]]])


def _weights():
    return torch.tensor([[[0.7, 0.3]], [[0.4, 0.6]], [[0.9, 0.1]]], dtype=DOUBLE).requires_grad_()


# name -> (function of leaves, leaf factory). The log-proportional error is evaluated with a
# fixed, untouched minimum (an anchor element) so that the shift it holds constant does not
# move under the finite differences of gradcheck.
EXACT = {
    "siglog_parametric": (
        lambda x, alpha: dyna.siglog_parametric(x, alpha, 1e-3),
        lambda: [_leaf(6, offset=0.5), torch.tensor(0.7, dtype=DOUBLE, requires_grad=True)],
    ),
    "log_proportional_error": (
        lambda x, y: dyna.log_proportional_error(
            torch.cat([ANCHOR, x]), torch.cat([ANCHOR, y + 3.0]), "none"
        ),
        lambda: [_leaf(5), _leaf(5, seed=1)],
    ),
    "horn_scan": (
        lambda drive, weight, bias, alpha, omega, gamma, v, x0, y0: dyna.horn_scan(
            drive, weight, bias, alpha, omega, gamma, v, 0.5, x0, y0, recurrent_scale=0.7
        )[:2],
        lambda: [
            _leaf(4, 2, 3),
            _leaf(3, 3, scale=0.5),
            _leaf(3),
            _leaf(3, seed=1),
            _leaf(3, seed=2),
            _leaf(3, scale=0.1, seed=3),
            _leaf(3, seed=4),
            _leaf(2, 3, seed=5),
            _leaf(2, 3, seed=6),
        ],
    ),
    "horn_scan_delayed": (
        lambda drive, weight, history, x0, y0: dyna.horn_scan(
            drive, weight, None, 0.04, 0.3, 0.01, 0.1, 0.5, x0, y0, delay=DELAY, history=history
        ),
        lambda: [_leaf(5, 2, 3), _leaf(3, 3), _leaf(3, 2, 3), _leaf(2, 3, seed=1), _leaf(2, 3)],
    ),
    "cnu_linear_dense": (
        lambda x, memories, weights: dyna.cnu_linear(
            x, memories, INDICES, weights, bias=True, strategy="dense"
        ),
        lambda: [_leaf(3, 2), _leaf(1, 4, 6), _weights()],
    ),
    "cnu_linear_grouped": (
        lambda x, memories, weights: dyna.cnu_linear(
            x, memories, INDICES, weights, bias=True, strategy="grouped"
        ),
        lambda: [_leaf(3, 2), _leaf(1, 4, 6), _weights()],
    ),
    "mobius_projection": (
        tensor_composer_mobius.mobius_projection,
        lambda: [_leaf(2, 3, 4, 2), _leaf(2, 3, 5, 2), _leaf(3, 4, 5), _leaf(3, 4, 5, seed=1)],
    ),
    "lift_small": (
        lambda x: tensor_composer_delta.lift_small(x, 1e-3),
        lambda: [_leaf(6)],
    ),
}


@pytest.mark.parametrize("name", list(EXACT))
def test_exact_backward_passes_gradcheck(name):
    function, leaves = EXACT[name]
    assert gradcheck(function, leaves(), atol=1e-6, rtol=1e-5)


def _gradient(function, leaves, seed=3):
    outputs = function(*leaves)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    generator = torch.Generator().manual_seed(seed)
    upstream = [torch.randn(o.shape, generator=generator, dtype=DOUBLE) for o in outputs]
    return torch.autograd.grad(outputs, leaves, upstream)


def _twin_leaves(leaves):
    return [leaf.detach().clone().requires_grad_() for leaf in leaves]


# Designed gradients against the plain-autograd twin that specifies them.
DESIGNED = {
    # winner-take-all: only the winning memory receives gradient
    "cnu_linear_wta": (
        lambda x, memories, weights: dyna.cnu_linear(
            x, memories, INDICES, weights, bias=True, wta=True, strategy="grouped"
        ),
        lambda x, memories, weights: dyna.cnu_linear_ref(
            x, memories, INDICES, weights, bias=True, wta=True
        ),
        lambda: [_leaf(3, 2), _leaf(1, 4, 6), _weights()],
    ),
    "delta_oriented_fields": (
        lambda m, w: tensor_composer_delta.delta_oriented_fields(m, w, 1e-12),
        lambda m, w: tensor_composer_delta.delta_oriented_fields_ref(m, w, 1e-12),
        lambda: [_leaf(2, 2, 3, 2, 2), _leaf(1, 2, 2, 2, 3, 4, 2)],
    ),
    "stabilize": (
        lambda x: signal_stabilization.stabilize(x, 1e-12),
        lambda x: signal_stabilization.stabilize_ref(x, 1e-12),
        lambda: [_leaf(2, 3, 5)],
    ),
    "delta_decorrelate_mix": (
        lambda bank, mixing: tensor_composer_delta.delta_decorrelate_mix(
            bank, mixing, None, 0.3, 0.1, 0.0, 1e-12
        ),
        lambda bank, mixing: tensor_composer_delta.delta_decorrelate_mix_ref(
            bank, mixing, None, 0.3, 0.1, 0.0, 1e-12
        ),
        lambda: [_leaf(2, 3, 5), _leaf(2, 3)],
    ),
    "backward_gradient_normalization_multiplicity": (
        lambda x: gradient_normalization.backward_gradient_normalization_multiplicity(x, 3),
        # L copies, each receiving g / L, then plain BGN of the expanded tensor
        lambda x: dyna.backward_gradient_normalization(x.unsqueeze(1).expand(-1, 3, -1)).mean(1),
        lambda: [_leaf(3, 4)],
    ),
}


@pytest.mark.parametrize("name", list(DESIGNED))
def test_designed_backward_equals_its_plain_twin(name):
    fast, ref, leaves = DESIGNED[name]
    inputs = leaves()
    twins = _twin_leaves(inputs)
    torch.testing.assert_close(fast(*inputs), ref(*twins))
    for got, expected in zip(_gradient(fast, inputs), _gradient(ref, twins), strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)


def test_siglog_backward_is_the_documented_surrogate():
    x = torch.tensor([-3.0, -1.0, -0.25, 0.0, 0.04, 0.5, 1.0, 7.0], dtype=DOUBLE)
    x.requires_grad_()
    dyna.siglog(x).sum().backward()
    magnitude = x.detach().abs()
    exponent = torch.where(magnitude < 1, 1 + magnitude.sqrt(), torch.ones_like(magnitude))
    torch.testing.assert_close(x.grad, 1 / (magnitude**exponent + 1), rtol=1e-15, atol=0)


def test_backward_gradient_normalization_backward_is_its_formula():
    x = _leaf(3, 4)
    upstream = torch.randn(3, 4, dtype=DOUBLE, generator=torch.Generator().manual_seed(0))
    dyna.backward_gradient_normalization(x, 1e-6).backward(upstream)
    norm = upstream.norm(dim=1, keepdim=True)
    torch.testing.assert_close(x.grad, upstream / (norm + 1e-6) * 2.0, rtol=1e-14, atol=0)


# Second derivatives: the backward passes written with differentiable torch ops.
TWICE = {
    "backward_gradient_normalization": (
        lambda x: dyna.backward_gradient_normalization(x) * 1.0,
        lambda: [_leaf(3, 4)],
    ),
    "backward_gradient_normalization_multiplicity": (
        lambda x: gradient_normalization.backward_gradient_normalization_multiplicity(x, 3) * 1.0,
        lambda: [_leaf(3, 4)],
    ),
    "log_proportional_error": EXACT["log_proportional_error"],
    "mobius_projection": EXACT["mobius_projection"],
    "lift_small": EXACT["lift_small"],
}


@pytest.mark.parametrize("name", list(TWICE))
def test_differentiable_backward_passes_gradgradcheck(name):
    function, leaves = TWICE[name]
    assert gradgradcheck(function, leaves(), atol=1e-6, rtol=1e-5)


# once_differentiable backwards: a second derivative is refused, never silently wrong.
ONCE = {
    "siglog": (lambda x: dyna.siglog(x), lambda: [_leaf(5)]),
    "siglog_parametric": EXACT["siglog_parametric"],
    "horn_scan": EXACT["horn_scan"],
    "horn_scan_delayed": EXACT["horn_scan_delayed"],
    "cnu_linear_dense": EXACT["cnu_linear_dense"],
    "cnu_linear_grouped": EXACT["cnu_linear_grouped"],
    **{name: (fast, leaves) for name, (fast, _, leaves) in DESIGNED.items()},
}
ONCE.pop("backward_gradient_normalization_multiplicity")


@pytest.mark.parametrize("name", list(ONCE))
def test_once_differentiable_backward_refuses_a_second_derivative(name):
    function, leaves = ONCE[name]
    inputs = leaves()
    outputs = function(*inputs)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    # an upstream gradient that itself requires grad, as in gradgradcheck and Hessian-vector
    # products: the double backward reaches the once-differentiable node and is refused
    # products: the double backward reaches the once-differentiable node and is refused (the
    # backwards of FIRST_ORDER already refuse to build the graph of the first derivative)
    upstream = [torch.ones_like(o).requires_grad_() for o in outputs]
    with pytest.raises(RuntimeError, match="differentiate twice"):
        first = torch.autograd.grad(outputs, inputs, upstream, create_graph=True, allow_unused=True)
        first = [g for g in first if g is not None]
        sum((g * g).sum() for g in first).backward()


# The hand-written backwards whose parameters reach the output through the backward itself:
# with a constant upstream gradient, once_differentiable alone would let create_graph=True
# build first derivatives whose graph silently lacks every term through the backward.
FIRST_ORDER = [
    "horn_scan",
    "horn_scan_delayed",
    "cnu_linear_dense",
    "cnu_linear_grouped",
    "delta_oriented_fields",
    "stabilize",
    "delta_decorrelate_mix",
]


@pytest.mark.parametrize("name", FIRST_ORDER)
def test_first_order_backward_refuses_create_graph_with_constant_upstream(name):
    function, leaves = ONCE[name]
    inputs = leaves()
    outputs = function(*inputs)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    upstream = [torch.ones_like(o) for o in outputs]  # constant: does not require grad
    with pytest.raises(RuntimeError, match=r"cannot differentiate twice .*_ref"):
        torch.autograd.grad(outputs, inputs, upstream, create_graph=True, allow_unused=True)
    # a plain first derivative is unaffected
    again = function(*inputs)
    again = again if isinstance(again, tuple) else (again,)
    plain = torch.autograd.grad(sum(o.sum() for o in again), inputs, allow_unused=True)
    assert any(g is not None for g in plain)


def test_every_autograd_function_of_the_package_is_checked_here():
    # by import_module: dyna.functional re-exports functions under some module names
    modules = [
        importlib.import_module(f"dyna.functional.{name}")
        for name in (
            "cnu",
            "gradient_normalization",
            "horn",
            "log_proportional_error",
            "signal_stabilization",
            "siglog",
            "tensor_composer_delta",
            "tensor_composer_mobius",
        )
    ]
    found = {
        name
        for module in modules
        for name, value in vars(module).items()
        if inspect.isclass(value)
        and issubclass(value, torch.autograd.Function)
        and value.__module__ == module.__name__
    }
    # which test above covers each class
    checked_by = {
        "SigLog": "siglog",
        "SigLogParametric": "siglog_parametric",
        "BackwardGradientNormalization": "backward_gradient_normalization",
        "LogProportionalError": "log_proportional_error",
        "HORNScan": "horn_scan",
        "_OutputSpaceBlend": "cnu_linear_dense",
        "_GradientNormalizationMultiplicity": "backward_gradient_normalization_multiplicity",
        "_OrientedValue": "delta_oriented_fields",
        "_Stabilize": "stabilize",
        "_LiftSmall": "lift_small",
        "_DecorrelateMix": "delta_decorrelate_mix",
        "_MobiusProjection": "mobius_projection",
    }
    assert found == set(checked_by)
    every_check = set(EXACT) | set(DESIGNED) | set(TWICE) | set(ONCE)
    assert set(checked_by.values()) <= every_check
