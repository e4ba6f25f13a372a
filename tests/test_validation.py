"""The shared argument checks (src/dyna/_validation.py): TypeError for a wrong type, ValueError
for a wrong value, the argument named in both."""

from __future__ import annotations

import math

import pytest
import torch

from dyna._validation import (
    check_bool,
    check_choice,
    check_floating_dtype,
    check_floating_tensor,
    check_int,
    check_int_pair,
    check_positive_int,
    check_real,
)


def test_accepted_values_come_back_normalised():
    assert check_int("n", 3, minimum=0) == 3
    assert check_positive_int("n", 1) == 1
    assert check_real("rate", 2) == 2.0 and isinstance(check_real("rate", 2), float)
    assert check_real("rate", math.inf, finite=False) == math.inf
    assert check_real("rate", 0.0, minimum=0.0) == 0.0
    assert check_bool("flag", False) is False
    assert check_choice("mode", "GRU", ["rnn", "gru"]) == "gru"
    tensor = torch.ones(2, 3)
    assert check_floating_tensor("x", tensor, min_dim=2) is tensor
    assert check_floating_dtype("dtype", None) is None
    assert check_floating_dtype("dtype", torch.bfloat16) is torch.bfloat16
    assert check_floating_dtype("dtype", torch.float64, optional=False) is torch.float64


@pytest.mark.parametrize(
    ("value", "minimum", "expected"),
    [
        (3, 1, (3, 3)),
        ((2, 5), 1, (2, 5)),
        ([0, 1], 0, (0, 1)),
        (torch.Size([4, 2]), 1, (4, 2)),
    ],
)
def test_check_int_pair_accepts_an_int_or_two(value, minimum, expected):
    pair = check_int_pair("stride", value, minimum=minimum)
    assert pair == expected
    assert all(type(v) is int for v in pair)


@pytest.mark.parametrize(
    ("check", "error", "message"),
    [
        (lambda: check_int("n", 2.0), TypeError, "n must be an int, got float"),
        (lambda: check_int("n", True), TypeError, "n must be an int, got bool"),
        (lambda: check_int("n", -1, minimum=0), ValueError, "n must be >= 0, got -1"),
        (lambda: check_positive_int("size", 0), ValueError, "size must be >= 1, got 0"),
        (lambda: check_real("rate", "1"), TypeError, "rate must be a real number, got str"),
        (lambda: check_real("rate", False), TypeError, "rate must be a real number, got bool"),
        (lambda: check_real("rate", math.nan), ValueError, "rate must be finite, got nan"),
        (lambda: check_real("rate", -1, minimum=0.0), ValueError, r"rate must be >= 0\.0"),
        (
            lambda: check_real("rate", 0, minimum=0.0, strictly_greater=True),
            ValueError,
            r"rate must be > 0\.0",
        ),
        (lambda: check_bool("flag", 1), TypeError, "flag must be a bool, got int"),
        (lambda: check_choice("mode", 1, ["a"]), TypeError, r"mode must be a str, one of \['a'\]"),
        (lambda: check_choice("mode", "b", ["a"]), ValueError, r"mode must be one of \['a'\]"),
        (lambda: check_floating_tensor("x", [1.0]), TypeError, "x must be a torch.Tensor"),
        (
            lambda: check_floating_tensor("x", torch.ones(2, dtype=torch.int64)),
            TypeError,
            "x must have a floating-point dtype",
        ),
        (
            lambda: check_floating_tensor("x", torch.ones(2), min_dim=2),
            ValueError,
            r"x must have at least 2 dimension\(s\), got shape \(2,\)",
        ),
        (
            lambda: check_floating_dtype("dtype", torch.int64),
            TypeError,
            "dtype must be a floating torch.dtype or None, got torch.int64",
        ),
        (
            lambda: check_floating_dtype("dtype", "float32"),
            TypeError,
            "dtype must be a floating torch.dtype or None",
        ),
        (
            lambda: check_floating_dtype("dtype_weights", None, optional=False),
            TypeError,
            "dtype_weights must be a floating torch.dtype, got None",
        ),
        (lambda: check_int_pair("stride", "2"), TypeError, "stride must be an int >= 1 or a pair"),
        (lambda: check_int_pair("stride", 2.0), TypeError, "stride must be an int >= 1 or a pair"),
        (lambda: check_int_pair("stride", [1, True]), TypeError, "stride must be an int >= 1"),
        (lambda: check_int_pair("stride", (1, 2, 3)), ValueError, "stride .* got 3 values"),
        (lambda: check_int_pair("stride", (1, 0)), ValueError, r"stride .* got \(1, 0\)"),
        (
            lambda: check_int_pair("padding", -1, minimum=0),
            ValueError,
            "padding must be an int >= 0",
        ),
    ],
)
def test_wrong_type_is_type_error_and_wrong_value_is_value_error(check, error, message):
    with pytest.raises(error, match=message):
        check()
