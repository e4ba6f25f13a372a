"""Invalid arguments raise ``ValueError`` or ``TypeError`` naming the argument, nothing else.

Every case takes a valid call, replaces one argument by a value drawn from a strategy of wrong
types (strings, None, floats for ints, bools for ints, integer or complex tensors for floating
ones) and out-of-range values (zero or negative sizes, NaN and infinities for rates and steps),
and checks that the call fails with one of the two documented exception types and a message
that names the argument. Any other exception, or no exception at all, fails the test.
"""

from __future__ import annotations

import atexit
import functools
import gzip
import math
import shutil
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import dyna
import dyna.data
import dyna.models
import dyna.train
from dyna.data.mnist import FILES
from dyna.functional import cnu

COVERED = {
    "CNUAttention",
    "RunOptions",
    "run",
    "CNUs",
    "CompactSpectralMultiplier",
    "Conv2dCNU",
    "DynamicConv2DDelta",
    "DynamicConv2DMobius",
    "DynamicConvClassifier",
    "HORNSeqLayer",
    "HORNSeqNetwork",
    "HORNState",
    "HORNStep",
    "LinearCNU",
    "RecurrentClassifier",
    "SignalStabilizationCompressor",
    "SignalStabilizationCompressorMode",
    "Split",
    "StaticConvClassifier",
    "TensorComposerDelta",
    "TensorComposerMobius",
    "accuracy_per_distribution",
    "average_accuracy",
    "average_forgetting",
    "backward_gradient_normalization",
    "cnu_blend_weights",
    "cnu_linear",
    "cnu_linear_ref",
    "compact_spectral_features",
    "compact_spectral_inner",
    "continual_metrics",
    "count_sketch",
    "delay_steps",
    "forward_transfer",
    "horn_scan",
    "horn_scan_ref",
    "horn_step",
    "load_digits_split",
    "load_digits_tensors",
    "load_mnist",
    "log_proportional_error",
    "make_stream",
    "matched_static_channels",
    "noisein",
    "noiseover",
    "psi",
    "read_idx",
    "resize1d",
    "resize2d",
    "siglog",
    "siglog_parametric",
    "static_parameter_count",
}

# ------------------------------------------------------------------------ bad-value strategies

junk = st.sampled_from([None, "x", "", b"1", object(), [], {}])
nan_inf = st.sampled_from([math.nan, math.inf, -math.inf])
bools = st.booleans()
non_integral_floats = st.floats(allow_nan=True, allow_infinity=True).filter(
    lambda v: not (math.isfinite(v) and v == int(v))
)

BAD = {
    # an int >= 1
    "positive_int": st.one_of(junk, bools, st.integers(max_value=0), st.floats(-5, 5)),
    # an int >= 0
    "nonnegative_int": st.one_of(junk, bools, st.integers(max_value=-1), non_integral_floats),
    # a finite real > 0
    "positive_real": st.one_of(junk, bools, nan_inf, st.floats(max_value=0.0)),
    # a finite real >= 0
    "nonnegative_real": st.one_of(junk, bools, nan_inf, st.floats(max_value=-1e-300)),
    # any finite real
    "finite_real": st.one_of(junk, bools, nan_inf),
    "bool": st.one_of(junk, st.integers(), st.floats(0, 1)),
    "floating_tensor": st.one_of(
        junk,
        st.floats(),
        st.just([1.0, 2.0]),
        st.sampled_from(
            [
                torch.arange(6).view(2, 3),
                torch.ones(2, 3, dtype=torch.bool),
                torch.ones(2, 3, dtype=torch.complex64),
            ]
        ),
    ),
    "dtype": st.sampled_from(["float32", 3, torch.int64, torch.bool, torch.complex64, None]),
}


def choice(valid: list[str]) -> st.SearchStrategy:
    """Anything but one of ``valid`` (case-insensitively)."""
    lowered = {v.lower() for v in valid if isinstance(v, str)}
    text = st.text(max_size=8).filter(lambda s: s.lower() not in lowered)
    return st.one_of(text, st.integers(), st.sampled_from([[], 1.5, b"WTA"]))


def one_of_values(*values: Any) -> st.SearchStrategy:
    return st.sampled_from(list(values))


@dataclass
class Case:
    """``call(**valid)`` succeeds; ``call(**{**valid, argument: bad})`` must fail cleanly."""

    name: str
    call: Callable[..., Any]
    valid: Callable[[], dict]
    argument: str
    bad: st.SearchStrategy
    mentions: tuple[str, ...] = field(default=())

    @property
    def id(self) -> str:
        return f"{self.name}-{self.argument}"


def cases_for(name, call, valid, bad_by_argument, mentions=None):
    mentions = mentions or {}
    return [
        Case(name, call, valid, argument, bad, mentions.get(argument, (argument,)))
        for argument, bad in bad_by_argument.items()
    ]


# ------------------------------------------------------------------------- valid argument sets


def _x(*shape, dtype=torch.float32):
    return torch.linspace(-2, 2, math.prod(shape), dtype=dtype).view(shape)


def _cnu_selection():
    memories = _x(2, 3, 6)
    indices = torch.tensor([[[0, 2], [1, 0]]] * 4)
    weights = torch.full((4, 2, 2), 0.5)
    return {"memories": memories, "indices": indices, "weights": weights}


def _sketch_tables():
    return {
        "hashes": [torch.tensor([0, 3, 1]), torch.tensor([2, 2])],
        "signs": [torch.tensor([1.0, -1.0, 1.0]), torch.tensor([-1.0, 1.0])],
        "sketch_dim": 4,
    }


def _horn_scan_args():
    return {
        "drive": _x(5, 2, 3),
        "weight": _x(3, 3),
        "bias": _x(3),
        "alpha": 0.04,
        "omega": 0.3,
        "gamma": 0.01,
        "v": 0.0,
        "dt": 1.0,
        "x0": torch.zeros(2, 3),
        "y0": torch.zeros(2, 3),
    }


def _horn_call(function):
    def call(**kwargs):
        keyword_only = {k: kwargs.pop(k) for k in ("delay", "history") if k in kwargs}
        order = ["drive", "weight", "bias", "alpha", "omega", "gamma", "v", "dt", "x0", "y0"]
        return function(*(kwargs[k] for k in order), **keyword_only)

    return call


def _call_with(function, order):
    def call(**kwargs):
        return function(
            *(kwargs[k] for k in order), **{k: kwargs[k] for k in kwargs if k not in order}
        )

    return call


tensor = BAD["floating_tensor"]
wrong_shape_1d = one_of_values(torch.zeros(()), torch.zeros(0))

CASES: list[Case] = []

# ---------------------------------------------------------------------------- functional
CASES += cases_for("siglog", dyna.siglog, lambda: {"x": _x(3)}, {"x": tensor})
CASES += cases_for(
    "siglog_parametric",
    dyna.siglog_parametric,
    lambda: {"x": _x(3), "alpha": 0.5, "smoothing": 1e-3, "smooth_grad": False},
    {
        "x": tensor,
        # None selects the class default
        "alpha": st.one_of(
            BAD["positive_real"].filter(lambda v: v is not None),
            one_of_values(torch.tensor(-1.0), torch.ones(2)),
        ),
        "smoothing": BAD["positive_real"].filter(lambda v: v is not None),
        "smooth_grad": st.one_of(st.integers(), st.text(max_size=3)),
    },
)
CASES += cases_for(
    "backward_gradient_normalization",
    dyna.backward_gradient_normalization,
    lambda: {"x": _x(2, 3), "eps": 1e-6},
    {
        "x": st.one_of(tensor, one_of_values(torch.tensor(1.0))),
        "eps": st.one_of(BAD["nonnegative_real"].filter(lambda v: v is not None)),
    },
)
for _noise in (dyna.noisein, dyna.noiseover):
    CASES += cases_for(
        _noise.__name__,
        _noise,
        lambda: {"x": _x(2, 3), "rate": 0.3},
        {
            "x": st.one_of(tensor, one_of_values(torch.tensor(1.0), torch.full((2, 3), math.nan))),
            "rate": BAD["finite_real"],
        },
    )
CASES += cases_for(
    "log_proportional_error",
    dyna.log_proportional_error,
    lambda: {"x": _x(2, 3), "y": _x(2, 3).flip(0), "reduction": "mean"},
    {
        "x": st.one_of(tensor, one_of_values(_x(3, 2), _x(2, 3, dtype=torch.float64))),
        "y": st.one_of(tensor, one_of_values(_x(6))),
        "reduction": choice(["mean", "sum", "none"]),
    },
)
CASES += cases_for(
    "psi",
    cnu.psi,
    lambda: {"x": _x(2, 4), "mode": "identity", "key_size": 4, "normalize": True},
    {
        "x": st.one_of(tensor, one_of_values(_x(4), _x(2, 5))),
        "mode": choice(["identity", "sign", "resize1d", "resize2d", "resize2d_sign"]),
        "key_size": BAD["positive_int"],
        "normalize": BAD["bool"],
    },
    mentions={"mode": ("psi_fn", "mode"), "x": ("x", "key size")},
)
CASES += cases_for(
    "resize1d",
    cnu.resize1d,
    lambda: {"x": _x(2, 5), "key_size": 3},
    {"x": st.one_of(tensor, one_of_values(_x(5), _x(2, 2, 2))), "key_size": BAD["positive_int"]},
)
CASES += cases_for(
    "resize2d",
    cnu.resize2d,
    lambda: {"x": _x(2, 1, 4, 4), "key_size": 4},
    {
        "x": st.one_of(tensor, one_of_values(_x(5), _x(2, 4, 4), _x(2, 0, 4, 4))),
        "key_size": BAD["positive_int"],
    },
)
_selection_bad = {
    "memories": st.one_of(tensor, one_of_values(_x(3, 6), _x(3, 3, 6))),
    "indices": st.one_of(
        junk, one_of_values(torch.zeros(4, 2, 2), torch.zeros(4, 2, 2, dtype=torch.int32))
    ),
    "weights": st.one_of(tensor, one_of_values(_x(4, 2, 3), _x(4, 2))),
}
CASES += cases_for(
    "cnu_blend_weights",
    _call_with(dyna.cnu_blend_weights, ["memories", "indices", "weights"]),
    lambda: {**_cnu_selection(), "wta": False},
    {**_selection_bad, "wta": BAD["bool"]},
    # a memory bank of the wrong q is reported as a mismatch with indices and weights
    mentions={"memories": ("M", "q ="), "indices": ("indices",), "weights": ("weights",)},
)
for _linear in (dyna.cnu_linear, dyna.cnu_linear_ref):
    CASES += cases_for(
        _linear.__name__,
        _call_with(_linear, ["x", "memories", "indices", "weights"]),
        lambda: {"x": _x(4, 2), **_cnu_selection(), "bias": False},
        {
            "x": st.one_of(tensor, one_of_values(_x(4, 4), _x(3, 2), _x(8))),
            **_selection_bad,
            "bias": BAD["bool"],
        },
        mentions={"memories": ("M", "q ="), "x": ("x", "in_features")},
    )
CASES += cases_for(
    "cnu_linear",
    _call_with(dyna.cnu_linear, ["x", "memories", "indices", "weights"]),
    lambda: {"x": _x(4, 2), **_cnu_selection(), "bias": False, "strategy": "auto"},
    {"strategy": choice(["auto", "dense", "grouped"])},
)
CASES += cases_for(
    "count_sketch",
    _call_with(dyna.count_sketch, ["x", "hashes", "signs", "sketch_dim"]),
    lambda: {
        "x": _x(2, 3),
        "hashes": torch.tensor([0, 3, 1]),
        "signs": torch.tensor([1.0, -1.0, 1.0]),
        "sketch_dim": 4,
    },
    {
        "x": st.one_of(tensor, one_of_values(_x(2, 4))),
        "hashes": st.one_of(
            junk, one_of_values(torch.tensor([0.0, 1.0, 2.0]), torch.tensor([0, 1]))
        ),
        "signs": st.one_of(junk, one_of_values(torch.tensor([1.0, 1.0]))),
        "sketch_dim": BAD["positive_int"],
    },
)
CASES += cases_for(
    "compact_spectral_features",
    _call_with(dyna.compact_spectral_features, ["xs", "hashes", "signs", "sketch_dim"]),
    lambda: {"xs": [_x(3), _x(2)], **_sketch_tables()},
    {
        "xs": st.one_of(junk, one_of_values([_x(3)], [_x(3), _x(3)], [_x(3), torch.arange(2)])),
        "hashes": st.one_of(junk, one_of_values([torch.tensor([0, 1, 2])])),
        "signs": st.one_of(junk, one_of_values([torch.ones(3)])),
        "sketch_dim": BAD["positive_int"],
    },
    # a wrong number of modes is reported against the tables
    mentions={"xs": ("xs", "hashes", "signs")},
)
CASES += cases_for(
    "compact_spectral_inner",
    _call_with(dyna.compact_spectral_inner, ["xs", "ys", "hashes", "signs", "sketch_dim"]),
    lambda: {"xs": [_x(3), _x(2)], "ys": [_x(3), _x(2)], **_sketch_tables()},
    {
        "xs": st.one_of(junk, one_of_values([_x(3)], [_x(4), _x(2)])),
        "ys": st.one_of(junk, one_of_values([_x(3)], [_x(3), _x(2, dtype=torch.float64)])),
        "sketch_dim": BAD["positive_int"],
    },
    mentions={"xs": ("xs", "ys", "hashes", "signs")},
)
CASES += cases_for(
    "delay_steps",
    _call_with(dyna.delay_steps, ["delay", "dt"]),
    lambda: {"delay": torch.tensor([0.5, 1.0]), "dt": 0.1},
    {
        "delay": st.one_of(
            st.sampled_from([None, "x", object(), {}, [1.0, "a"], -1.0, math.nan, math.inf]),
            one_of_values(torch.tensor([-1.0]), torch.tensor([True]), torch.tensor([1j])),
        ),
        "dt": BAD["positive_real"],
    },
)
CASES += cases_for(
    "horn_step",
    _call_with(dyna.horn_step, ["drive", "x", "y", "alpha", "omega", "gamma", "v", "dt"]),
    lambda: {
        "drive": _x(2, 3),
        "x": torch.zeros(2, 3),
        "y": torch.zeros(2, 3),
        "alpha": 0.04,
        "omega": 0.3,
        "gamma": 0.01,
        "v": 0.0,
        "dt": 1.0,
    },
    {
        "drive": tensor,
        "x": st.one_of(tensor, one_of_values(torch.zeros(3, 2))),
        "y": st.one_of(tensor, one_of_values(torch.zeros(2, 4))),
        "dt": BAD["positive_real"],
    },
)
for _scan in (dyna.horn_scan, dyna.horn_scan_ref):
    CASES += cases_for(
        _scan.__name__,
        _horn_call(_scan),
        _horn_scan_args,
        {
            "drive": st.one_of(tensor, one_of_values(_x(2, 3))),
            "weight": st.one_of(tensor, one_of_values(_x(3, 2), _x(3))),
            "bias": st.one_of(tensor.filter(lambda v: v is not None), one_of_values(_x(2))),
            "x0": st.one_of(tensor, one_of_values(torch.zeros(3, 3), torch.zeros(3))),
            "y0": st.one_of(tensor, one_of_values(torch.zeros(2, 2))),
            "dt": BAD["positive_real"],
            "delay": one_of_values(
                torch.zeros(3, 3),
                torch.zeros(2, 2, dtype=torch.int64),
                torch.full((3, 3), -1),
                "x",
            ),
        },
        mentions={"delay": ("delay", "bias")},
    )

# -------------------------------------------------------------------------------- layers


def _forward(factory, *inputs_names):
    """Build the layer from the constructor arguments, then call it on the named inputs."""

    def call(**kwargs):
        inputs = [kwargs.pop(name) for name in inputs_names]
        return factory(**kwargs)(*inputs)

    return call


CASES += cases_for(
    "SignalStabilizationCompressor",
    dyna.SignalStabilizationCompressor,
    lambda: {},
    {
        "bgn_input": BAD["bool"],
        "bgn_mid": BAD["bool"],
        "bgn_output": BAD["bool"],
        "mode": choice(["gating", "dampening"]),
        "trainable": BAD["bool"],
        "leak": BAD["finite_real"],
        "eps": BAD["nonnegative_real"],
        "dtype": BAD["dtype"].filter(lambda v: v is not None),
    },
)
CASES += cases_for(
    "SignalStabilizationCompressor.forward",
    _forward(dyna.SignalStabilizationCompressor, "x"),
    lambda: {"x": _x(2, 3)},
    {"x": st.one_of(tensor, one_of_values(torch.tensor(1.0)))},
)
CASES += cases_for(
    "SignalStabilizationCompressorMode",
    dyna.SignalStabilizationCompressorMode,
    lambda: {"value": "gating"},
    {"value": choice(["gating", "dampening"])},
    mentions={"value": ("SignalStabilizationCompressorMode",)},
)
CASES += cases_for(
    "CNUs",
    dyna.CNUs,
    lambda: {"q": 2, "d": 3, "m": 4, "u": 2, "delta": 2},
    {
        **{n: BAD["positive_int"] for n in ("q", "d", "m", "u", "delta")},
        **{n: BAD["finite_real"] for n in ("gamma_alpha", "tau_alpha", "tau_mu", "tau_eta")},
        "beta_k": BAD["finite_real"],
        "upd_m": choice(["WTA"]).filter(lambda v: v is not None),
        "upd_k": choice(["ad_hoc_WTA", "grad_WTA"]).filter(lambda v: v is not None),
        "psi_fn": choice(["identity", "sign", "resize1d", "resize2d", "resize2d_sign"]),
        "scramble": BAD["bool"],
        "debug": BAD["bool"],
        "dtype": BAD["dtype"].filter(lambda v: v is not None),
    },
)
CASES += cases_for(
    "CNUAttention",
    lambda x: dyna.CNUs(q=2, d=3, m=4, u=2, delta=2).attention(x),
    lambda: {"x": _x(2, 3)},
    {"x": st.one_of(tensor, one_of_values(_x(3), _x(2, 4), _x(2, 3, dtype=torch.float64)))},
    mentions={"x": ("x", "key size")},
)
CASES += cases_for(
    "LinearCNU",
    dyna.LinearCNU,
    lambda: {"in_features": 3, "out_features": 2, "key_mem_units": 3, "delta": 2},
    {
        "in_features": BAD["positive_int"],
        "out_features": BAD["positive_int"],
        "bias": BAD["bool"],
        "shared_keys": BAD["bool"],
        "key_mem_units": BAD["positive_int"],
        "psi_fn": choice(["identity", "sign", "resize1d"]),
        "key_size": BAD["positive_int"].filter(lambda v: v is not None),
        "delta": BAD["positive_int"],
        "gamma_alpha": BAD["finite_real"],
        "dtype": BAD["dtype"].filter(lambda v: v is not None),
        "not_an_option": st.integers(),
    },
)
CASES += cases_for(
    "LinearCNU.forward",
    _forward(dyna.LinearCNU, "x"),
    lambda: {"in_features": 3, "out_features": 2, "x": _x(2, 3)},
    {"x": st.one_of(tensor, one_of_values(_x(2, 4), _x(2, 3, 1), torch.tensor(1.0)))},
)
CASES += cases_for(
    "Conv2dCNU",
    dyna.Conv2dCNU,
    lambda: {"in_channels": 2, "out_channels": 2, "kernel_size": 3},
    {
        "in_channels": BAD["positive_int"],
        "out_channels": BAD["positive_int"],
        "kernel_size": st.one_of(BAD["positive_int"], one_of_values((3,), (3, 0), (3, 3, 3))),
        "stride": st.one_of(BAD["positive_int"], one_of_values((1, 0))),
        "padding": st.one_of(
            junk,
            st.integers(max_value=-1),
            st.text(max_size=5).filter(lambda v: v not in ("same", "valid")),
        ),
        "padding_mode": choice(["zeros", "reflect", "replicate", "circular"]),
        "dilation": BAD["positive_int"],
        "groups": st.one_of(BAD["positive_int"], st.just(3)),
        "bias": BAD["bool"],
        "shared_keys": BAD["bool"],
        "key_mem_units": BAD["positive_int"],
        "psi_fn": choice(["identity", "sign", "resize1d", "resize2d", "resize2d_sign"]),
    },
    mentions={"groups": ("groups",)},
)
CASES += cases_for(
    "Conv2dCNU.forward",
    _forward(dyna.Conv2dCNU, "x"),
    lambda: {"in_channels": 2, "out_channels": 2, "kernel_size": 3, "x": _x(1, 2, 5, 5)},
    {"x": st.one_of(tensor, one_of_values(_x(1, 3, 5, 5), _x(5, 5), _x(1, 2, 2, 2)))},
    mentions={"x": ("x", "input", "kernel")},
)
CASES += cases_for(
    "CompactSpectralMultiplier",
    dyna.CompactSpectralMultiplier,
    lambda: {"in_features": [3, 2], "sketch_dim": 4, "seed": 0},
    {
        "in_features": st.one_of(
            junk.filter(lambda v: v != []), BAD["positive_int"], one_of_values([3, 0], [2.0])
        ),
        "sketch_dim": BAD["positive_int"],
        # torch seeds span [-2**63, 2**64 - 1]
        "seed": st.one_of(
            st.integers(max_value=-(2**63) - 1),
            st.integers(min_value=2**64),
            st.floats(),
            st.text(max_size=2),
            bools,
        ),
        "dtype": BAD["dtype"].filter(lambda v: v is not None),
    },
)
CASES += cases_for(
    "CompactSpectralMultiplier.forward",
    _forward(dyna.CompactSpectralMultiplier, "xs", "ys"),
    lambda: {"in_features": [3, 2], "sketch_dim": 4, "xs": [_x(3), _x(2)], "ys": [_x(3), _x(2)]},
    {
        "xs": st.one_of(junk, one_of_values([_x(3)], [_x(2), _x(2)], [_x(3), torch.ones(3, 3)])),
        "ys": st.one_of(junk, one_of_values([_x(3), _x(3)])),
    },
)
_composer_bad = {
    "output_shape": st.one_of(
        junk, BAD["positive_int"], one_of_values([4], [4, 0], [4, 2.0], [4, 3, 2])
    ),
    "context_length": BAD["positive_int"],
    "context_use_bias": BAD["bool"],
    "eps": BAD["positive_real"],
    "dtype_weights": BAD["dtype"].filter(lambda v: v is not None),
}
CASES += cases_for(
    "TensorComposerDelta",
    dyna.TensorComposerDelta,
    lambda: {"output_shape": [4, 3], "context_length": 5, "rank": 2},
    {
        **_composer_bad,
        "rank": BAD["positive_int"],
        "initialization_std": BAD["finite_real"],
        "weights_repulsion_strength": BAD["finite_real"],
        "weights_noise_strength": BAD["finite_real"],
        "rank_noise_strength": BAD["finite_real"],
        "similarity_penalty_strength": BAD["finite_real"],
    },
)
CASES += cases_for(
    "TensorComposerMobius",
    dyna.TensorComposerMobius,
    lambda: {"output_shape": [4, 3], "context_length": 5, "n_subspaces": 2},
    {
        **_composer_bad,
        "n_subspaces": BAD["positive_int"],
        "rank_subspace": BAD["positive_int"],
        "rank_transformations": BAD["positive_int"],
        "asymmetry": BAD["finite_real"],
    },
)
for _composer in (dyna.TensorComposerDelta, dyna.TensorComposerMobius):
    CASES += cases_for(
        f"{_composer.__name__}.forward",
        _forward(_composer, "x"),
        lambda: {"output_shape": [4, 3], "context_length": 5, "x": _x(2, 5)},
        {"x": st.one_of(tensor, one_of_values(_x(5), _x(2, 4)))},
    )
_conv_bad = {
    "in_channels": BAD["positive_int"],
    "out_channels": BAD["positive_int"],
    "context_length": BAD["positive_int"],
    "kernel_size": st.one_of(BAD["positive_int"], one_of_values((3,), (3, 0), "3")),
    "stride": st.one_of(BAD["positive_int"], one_of_values((1, 0))),
    "padding": st.one_of(
        junk, st.integers(max_value=-1), one_of_values((1, 2, 3), (1, -1), (1.0, 1))
    ),
    "padding_dynamic": BAD["bool"],
    "dilation": BAD["positive_int"],
    "transpose": BAD["bool"],
    "output_padding": st.one_of(st.integers(), one_of_values((0, 0), "0")),
    "dtype_weights": BAD["dtype"].filter(lambda v: v is not None),
}
CASES += cases_for(
    "DynamicConv2DDelta",
    dyna.DynamicConv2DDelta,
    lambda: {"in_channels": 2, "out_channels": 3, "context_length": 4, "rank": 2},
    {**_conv_bad, "rank": BAD["positive_int"], "eps": BAD["finite_real"]},
)
CASES += cases_for(
    "DynamicConv2DMobius",
    dyna.DynamicConv2DMobius,
    lambda: {"in_channels": 2, "out_channels": 3, "context_length": 4, "n_subspaces": 2},
    {
        **_conv_bad,
        "n_subspaces": BAD["positive_int"],
        "rank_subspace": BAD["positive_int"],
        "rank_transformations": BAD["positive_int"],
        # bias_dynamic is coerced with bool(), as in the reference: no invalid value
        "bias_static": BAD["finite_real"].filter(lambda v: v is not None),
        "offset_dynamic": BAD["bool"],
        "asymmetry": BAD["finite_real"],
    },
)
for _conv in (dyna.DynamicConv2DDelta, dyna.DynamicConv2DMobius):
    CASES += cases_for(
        f"{_conv.__name__}.forward",
        _forward(_conv, "x", "context"),
        lambda: {
            "in_channels": 2,
            "out_channels": 3,
            "context_length": 4,
            "dtype": torch.float32,
            "x": _x(2, 2, 5, 5),
            "context": _x(2, 4),
        },
        {
            "x": st.one_of(tensor, one_of_values(_x(2, 3, 5, 5), _x(2, 5, 5), _x(2, 2, 1, 1))),
            "context": st.one_of(tensor, one_of_values(_x(2, 5), _x(3, 4), _x(4))),
        },
        mentions={"x": ("x", "input", "kernel")},
    )
_dynamics_bad = {
    "alpha": st.one_of(junk, nan_inf, one_of_values(torch.ones(5), torch.tensor([math.nan]))),
    "omega": st.one_of(junk, nan_inf),
    "gamma": st.one_of(junk, nan_inf),
    "v": st.one_of(junk, nan_inf),
    "dt": BAD["positive_real"],
    "learnable": st.one_of(st.integers(), one_of_values(["beta"], "alpha", [3])),
}
CASES += cases_for(
    "HORNStep",
    dyna.HORNStep,
    lambda: {"n_units": 3},
    {
        "n_units": BAD["positive_int"],
        **_dynamics_bad,
        "dtype": BAD["dtype"].filter(lambda v: v is not None),
    },
)
CASES += cases_for(
    "HORNStep.forward",
    _forward(dyna.HORNStep, "drive", "state"),
    lambda: {"n_units": 3, "drive": _x(2, 3), "state": None},
    {
        "drive": st.one_of(tensor, one_of_values(_x(2, 4), torch.tensor(1.0))),
        "state": st.one_of(
            st.sampled_from(["x", 1, (torch.zeros(2, 3),)]),
            one_of_values((torch.zeros(2, 3), torch.zeros(3, 3)), (torch.zeros(2, 3), "y")),
        ),
    },
)
_layer_bad = {
    "n_input": BAD["positive_int"],
    **_dynamics_bad,
    "delay": st.one_of(
        st.sampled_from(["x", object(), {}]),
        one_of_values([[1, 2], [3]], [[-1.0] * 4] * 4, torch.zeros(3, 3), [[math.nan] * 4] * 4),
    ),
    "bias": BAD["bool"],
    "recurrent_scale": BAD["finite_real"],
    "batch_first": BAD["bool"],
    "paper": BAD["bool"],
    "dtype": BAD["dtype"].filter(lambda v: v is not None),
}
CASES += cases_for(
    "HORNSeqLayer",
    dyna.HORNSeqLayer,
    lambda: {"n_input": 2, "n_hidden": 4},
    {**_layer_bad, "n_hidden": BAD["positive_int"]},
)
CASES += cases_for(
    "HORNSeqLayer.forward",
    _forward(dyna.HORNSeqLayer, "input", "state"),
    lambda: {"n_input": 2, "n_hidden": 4, "input": _x(5, 3, 2), "state": None},
    {
        "input": st.one_of(
            tensor,
            one_of_values(_x(5, 3, 3), _x(2), _x(5, 3, 2, 1), _x(5, 3, 2, dtype=torch.float64)),
        ),
        "state": st.one_of(
            st.sampled_from(["x", 1, (torch.zeros(3, 4),)]),
            one_of_values(
                dyna.HORNState(torch.zeros(3, 5), torch.zeros(3, 5), None),
                dyna.HORNState(torch.zeros(3, 4), "y", None),
            ),
        ),
    },
)
CASES += cases_for(
    "HORNSeqNetwork",
    dyna.HORNSeqNetwork,
    lambda: {"n_input": 2, "n_hidden": [4, 3], "n_output": 5},
    {
        **_layer_bad,
        "n_hidden": st.one_of(BAD["positive_int"], one_of_values([], [4, 0], [4, "3"])),
        "n_output": BAD["positive_int"],
        "readout": choice(["last", "mean"]),
        "gamma": st.one_of(junk, nan_inf, one_of_values([0.1], [0.1, 0.2, 0.3])),
    },
)
CASES += cases_for(
    "HORNSeqNetwork.forward",
    _forward(dyna.HORNSeqNetwork, "input"),
    lambda: {"n_input": 2, "n_hidden": 4, "n_output": 3, "input": _x(5, 3, 2)},
    {"input": st.one_of(tensor, one_of_values(_x(5, 3, 3), _x(2)))},
)
CASES += cases_for(
    "HORNState",
    _forward(dyna.HORNSeqLayer, "input", "state"),
    lambda: {
        "n_input": 2,
        "n_hidden": 3,
        "delay": [[1, 0, 2]] * 3,
        "input": _x(5, 2, 2),
        "state": None,
    },
    {
        "state": one_of_values(
            dyna.HORNState(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 2, 3)),
            dyna.HORNState(torch.zeros(2, 3), torch.zeros(2, 3), "history"),
        )
    },
    mentions={"state": ("history", "state")},
)

# ---------------------------------------------------------------------------- data, train
CASES += cases_for(
    "make_stream",
    dyna.data.make_stream,
    lambda: {"name": "modes", "order": "ci", "num_train": 100},
    {
        "name": choice(list(dyna.data.STREAM_NAMES)),
        "order": choice(list(dyna.data.STREAM_ORDERS)),
        "seed": st.one_of(junk, bools, st.integers(max_value=-1), st.floats()),
        "num_train": st.one_of(junk, bools, st.integers(max_value=99), st.floats()),
        "dtype": BAD["dtype"].filter(lambda v: v is not None),
    },
)
_matrix_bad = st.one_of(
    junk,
    one_of_values(
        torch.ones(2, 3), torch.ones(0, 0), torch.ones(3), torch.ones(2, 2, dtype=torch.int64)
    ),
)
for _metric in (
    dyna.train.average_accuracy,
    dyna.train.average_forgetting,
    dyna.train.forward_transfer,
    dyna.train.continual_metrics,
):
    CASES += cases_for(
        _metric.__name__, _metric, lambda: {"matrix": torch.eye(3)}, {"matrix": _matrix_bad}
    )
CASES += cases_for(
    "accuracy_per_distribution",
    dyna.train.accuracy_per_distribution,
    lambda: {
        "predictions": torch.tensor([0, 1, 1]),
        "targets": torch.tensor([0, 1, 0]),
        "distributions": torch.tensor([0, 0, 1]),
        "num_distributions": 2,
    },
    {
        "predictions": st.one_of(junk, one_of_values(torch.tensor([0.0, 1.0, 1.0]), torch.ones(2))),
        "targets": st.one_of(junk, one_of_values(torch.ones(3, 1, dtype=torch.int64))),
        "distributions": st.one_of(junk, one_of_values(torch.tensor([0, 0]))),
        "num_distributions": BAD["positive_int"],
        "dtype": BAD["dtype"],
    },
)


# ------------------------------------------------------------------------- loaders, Split


@functools.cache
def _tiny_mnist() -> Path:
    """A folder with the four MNIST IDX files (two images each), made once per session."""
    folder = Path(tempfile.mkdtemp(prefix="dyna-idx-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    for split in ("train", "test"):
        image_name, label_name = FILES[split]
        images = struct.pack(">IIII", 0x00000803, 2, 28, 28) + bytes(2 * 28 * 28)
        labels = struct.pack(">II", 0x00000801, 2) + bytes([3, 7])
        (folder / image_name).write_bytes(images)
        (folder / f"{label_name}.gz").write_bytes(gzip.compress(labels))
    return folder


# Not a path at all, or a path to nothing readable: "" is the current folder.
_path_bad = st.one_of(
    junk,
    one_of_values("", "no-such-file.idx", "no-such-folder/x.gz", 3, 1.5, True),
)
CASES += cases_for(
    "read_idx",
    dyna.data.read_idx,
    lambda: {"path": _tiny_mnist() / FILES["train"][0]},
    {"path": _path_bad},
    mentions={"path": ("path", "MNIST file")},
)
CASES += cases_for(
    "load_mnist",
    dyna.data.load_mnist,
    lambda: {"folder": _tiny_mnist()},
    {"folder": st.one_of(_path_bad, st.builds(lambda: _tiny_mnist() / FILES["test"][0]))},
    mentions={"folder": ("folder", "MNIST folder")},
)
CASES += cases_for(
    "load_digits_tensors",
    dyna.data.load_digits_tensors,
    lambda: {"path": None},
    # None is the default (scikit-learn's copy), so it is not among the bad values.
    {"path": st.one_of(junk.filter(lambda v: v is not None), one_of_values("", "no-such.csv.gz"))},
    mentions={"path": ("path", "digits file")},
)
CASES += cases_for(
    "load_digits_split",
    dyna.data.load_digits_split,
    lambda: {"test_fraction": 0.25, "seed": 3},
    {
        "test_fraction": st.one_of(
            junk, bools, nan_inf, st.floats(max_value=-1e-300), st.floats(min_value=1.0)
        ),
        "seed": BAD["nonnegative_int"],
    },
)
CASES += cases_for(
    "Split",
    dyna.data.Split,
    lambda: {"inputs": _x(4, 3), "labels": torch.tensor([0, 1, 2, 1])},
    {
        "inputs": st.one_of(junk, one_of_values(_x(3, 3), _x(5), torch.tensor(1.0), [[0.0]] * 4)),
        "labels": st.one_of(
            junk,
            one_of_values(
                torch.tensor([0.0, 1.0, 2.0, 1.0]),
                torch.zeros(4, 1, dtype=torch.int64),
                torch.zeros((), dtype=torch.int64),
                torch.tensor([0, 1, 2]),
                [0, 1, 2, 1],
            ),
        ),
    },
    mentions={"inputs": ("inputs",), "labels": ("labels", "inputs")},
)

# ---------------------------------------------------------------------------------- models
_model_dtype_bad = st.sampled_from(["float32", 3, torch.int64, torch.bool, torch.complex64])
_bad_channel_pairs = st.one_of(
    junk,
    st.integers(),
    one_of_values((2,), (2, 3, 4), (0, 3), (2, -1), (2, 1.5), (True, 3)),
)
# (B, 1, 8, 8) float32 is valid: wrong rank, channel count, size for the pool or dtype.
_bad_images = one_of_values(
    _x(1, 8, 8),
    _x(8, 8),
    _x(2, 1, 1, 8, 8),
    _x(2, 3, 8, 8),
    _x(2, 1, 1, 1),
    _x(2, 1, 8, 8, dtype=torch.float64),
)
CASES += cases_for(
    "RecurrentClassifier",
    dyna.models.RecurrentClassifier,
    lambda: {"n_input": 2, "n_hidden": 3, "n_output": 4},
    {
        "n_input": BAD["positive_int"],
        "n_hidden": BAD["positive_int"],
        "n_output": BAD["positive_int"],
        "num_layers": BAD["positive_int"],
        "cell": choice(["rnn", "gru", "lstm"]),
        "dtype": _model_dtype_bad,
    },
)
CASES += cases_for(
    "RecurrentClassifier.forward",
    _forward(dyna.models.RecurrentClassifier, "input"),
    lambda: {"n_input": 2, "n_hidden": 3, "n_output": 4, "cell": "lstm", "input": _x(3, 5, 2)},
    {
        "input": st.one_of(
            tensor,
            one_of_values(
                _x(3, 5, 3), _x(3, 0, 2), _x(5, 2), _x(1, 3, 5, 2), _x(3, 5, 2, dtype=torch.float64)
            ),
        )
    },
)
CASES += cases_for(
    "DynamicConvClassifier",
    dyna.models.DynamicConvClassifier,
    lambda: {"channels": (2, 3), "context_length": 2},
    {
        "in_channels": BAD["positive_int"],
        "n_output": BAD["positive_int"],
        "channels": _bad_channel_pairs,
        "context_length": BAD["positive_int"],
        "kind": choice(["mobius", "delta"]),
        "pool": BAD["bool"],
        "dtype": _model_dtype_bad,
    },
)
CASES += cases_for(
    "DynamicConvClassifier.forward",
    _forward(dyna.models.DynamicConvClassifier, "input"),
    lambda: {"channels": (2, 3), "context_length": 2, "input": _x(2, 1, 8, 8)},
    {"input": st.one_of(tensor, _bad_images)},
)
CASES += cases_for(
    "StaticConvClassifier",
    dyna.models.StaticConvClassifier,
    lambda: {"channels": (2, 3)},
    {
        "in_channels": BAD["positive_int"],
        "n_output": BAD["positive_int"],
        "channels": _bad_channel_pairs,
        "pool": BAD["bool"],
        "dtype": _model_dtype_bad,
    },
)
CASES += cases_for(
    "StaticConvClassifier.forward",
    _forward(dyna.models.StaticConvClassifier, "input"),
    lambda: {"channels": (2, 3), "input": _x(2, 1, 8, 8)},
    {"input": st.one_of(tensor, _bad_images)},
)
CASES += cases_for(
    "static_parameter_count",
    dyna.models.static_parameter_count,
    lambda: {"in_channels": 1, "n_output": 10, "channels": (8, 16)},
    {
        "in_channels": BAD["positive_int"],
        "n_output": BAD["positive_int"],
        "channels": _bad_channel_pairs,
    },
)
CASES += cases_for(
    "matched_static_channels",
    dyna.models.matched_static_channels,
    lambda: {"target": 38036, "in_channels": 1, "n_output": 10, "channels": (8, 16)},
    {
        "target": BAD["positive_int"],
        "in_channels": BAD["positive_int"],
        "n_output": BAD["positive_int"],
        "channels": _bad_channel_pairs,
    },
)


# ---------------------------------------------------------------------------------- engine


def _online_run(**kwargs):
    experiment = kwargs.pop("experiment")
    with tempfile.TemporaryDirectory() as folder:
        out = kwargs.pop("out", folder)
        return dyna.train.run(experiment, out=out, **kwargs)


def _valid_online_run():
    from dyna.experiments import get_experiment

    return {
        "experiment": get_experiment("cnu-stream"),
        "params": {"models": ("linear",), "num_train": 100},
        "options": dyna.train.RunOptions(quiet=True),
    }


CASES += cases_for(
    "run",
    _online_run,
    _valid_online_run,
    {
        "experiment": st.one_of(junk, one_of_values("cnu-stream")),
        "params": st.one_of(junk.filter(lambda v: v is not None and v != {}), st.just([("a", 1)])),
        "out": st.one_of(junk.filter(lambda v: v != "x"), one_of_values(3, 1.5)),
        "options": junk.filter(lambda v: v is not None),
    },
)
CASES += cases_for(
    "RunOptions",
    dyna.train.RunOptions,
    lambda: {"training": {"epochs": 2}, "device": "cpu", "data": None, "quiet": True},
    {
        "training": st.one_of(
            junk.filter(lambda v: v != {}), one_of_values({"epoch": 3}, {3: 1}, [("epochs", 2)])
        ),
        "device": st.one_of(junk.filter(lambda v: v not in (None, "x")), st.integers()),
        "data": st.one_of(junk.filter(lambda v: v not in (None, "x")), st.integers()),
        "resume": BAD["bool"],
        "overwrite": BAD["bool"],
        "quiet": BAD["bool"],
        "tensorboard": BAD["bool"],
    },
)


# --------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_valid_call_succeeds(case):
    case.call(**case.valid())


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
@given(data=st.data())
def test_invalid_argument_raises_value_or_type_error_naming_it(case, data):
    bad = data.draw(case.bad, label=case.argument)
    kwargs = {**case.valid(), case.argument: bad}
    with pytest.raises((ValueError, TypeError)) as caught:
        case.call(**kwargs)
    message = str(caught.value)
    assert any(mention in message for mention in case.mentions), (
        f"{case.id}: the message {message!r} does not name {case.mentions}"
    )
