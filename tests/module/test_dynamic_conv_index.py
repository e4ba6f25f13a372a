"""What the dynamic convolutions share (module/_dynamic_conv.py): shape fitting, the kernel
index, and empty batches."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from dyna import DynamicConv2DDelta, DynamicConv2DMobius
from dyna.module._dynamic_conv import (
    create_index,
    fit_shape,
    normalize_output_padding,
    normalize_padding,
)

SIZES = [1, 2, 3, 4, 5, 6, 8, 12, 16, 32]
KERNELS = [1, 2, 3, 4, 5, 7]


def geometry(c_in, c_out, k0, k1):
    shape = fit_shape([c_out * k0, c_in * k1], (k0, k1))
    inversion = shape[0] < shape[1]
    return (shape[::-1] if inversion else shape), inversion


@pytest.mark.parametrize(
    ("c_in", "c_out", "k", "expected", "inversion"),
    [
        (3, 16, 3, [24, 18], False),
        (16, 3, 3, [24, 18], False),
        (16, 16, 3, [48, 48], False),
        (4, 8, 3, [24, 12], False),
        (2, 3, 3, [9, 6], False),
        (3, 2, 3, [9, 6], True),
        (8, 4, 1, [8, 4], True),
        (6, 2, 2, [8, 6], True),
        (2, 6, 2, [8, 6], True),
        (32, 64, 3, [192, 96], False),
        (64, 64, 3, [192, 192], False),
    ],
)
def test_fit_table(c_in, c_out, k, expected, inversion):
    # The fit table of the reference at 01c17ea (its rule tests m**2, not 2m).
    assert geometry(c_in, c_out, k, k) == (expected, inversion)


def reference_tiling(c_in, c_out, k0, k1, shape, inversion):
    """The reference's tile loop, literally: None where its tiles do not cover the matrix."""
    height, width = shape
    th, tw = (k1, k0) if inversion else (k0, k1)
    if height % th or width % tw:
        return None
    base = torch.arange(height * width).reshape(height, width)
    index = torch.full((c_out, c_in, k0, k1), -1, dtype=torch.int64)
    columns = width // tw
    for tile in range(c_out * c_in):
        row, col = tile // columns * th, tile % columns * tw
        block = base[row : row + th, col : col + tw]
        index[tile % c_out, tile // c_out] = block.T if inversion else block
    return index.reshape(height, width)


def test_index_example_of_the_reference():
    expected = [
        [0, 1, 2, 6, 7, 8],
        [12, 13, 14, 21, 22, 23],
        [27, 28, 29, 33, 34, 35],
        [3, 4, 5, 9, 10, 11],
        [15, 16, 17, 36, 37, 38],
        [42, 43, 44, 48, 49, 50],
        [18, 19, 20, 24, 25, 26],
        [30, 31, 32, 39, 40, 41],
        [45, 46, 47, 51, 52, 53],
    ]
    shape, inversion = geometry(2, 3, 3, 3)
    assert create_index([3, 2, 3, 3], shape, inversion).tolist() == expected


@pytest.mark.parametrize(
    ("c_in", "c_out", "k", "shape", "inversion", "expected"),
    [
        (2, 1, [3, 5], [6, 5], True, [list(range(i * 5, i * 5 + 5)) for i in range(6)]),
        (
            4,
            2,
            [1, 3],
            [6, 4],
            False,
            [
                [0, 4, 8, 2],
                [6, 10, 12, 16],
                [20, 14, 18, 22],
                [1, 5, 9, 3],
                [7, 11, 13, 17],
                [21, 15, 19, 23],
            ],
        ),
    ],
)
def test_index_examples_for_non_square_kernels(c_in, c_out, k, shape, inversion, expected):
    assert geometry(c_in, c_out, *k) == (shape, inversion)
    assert create_index([c_out, c_in, *k], shape, inversion).tolist() == expected


def test_index_is_a_permutation_and_matches_the_reference_where_it_covers():
    covered = differing = 0
    for c_in, c_out, k0, k1 in itertools.product(SIZES, SIZES, KERNELS, KERNELS):
        shape, inversion = geometry(c_in, c_out, k0, k1)
        assert math.prod(shape) == c_in * c_out * k0 * k1
        index = create_index([c_out, c_in, k0, k1], shape, inversion)
        assert index.shape == tuple(shape) and index.dtype == torch.int64
        assert torch.equal(index.flatten().sort().values, torch.arange(math.prod(shape)))
        reference = reference_tiling(c_in, c_out, k0, k1, shape, inversion)
        if reference is None:
            assert k0 != k1  # every square kernel is covered
            differing += 1
        else:
            covered += 1
            assert torch.equal(index, reference), (c_in, c_out, k0, k1)
    # The sweep of the reference's bug: 678 of the 3000 non-square configurations.
    assert differing == 678 and covered == 3600 - 678


def test_argument_normalisation():
    assert normalize_padding(1) == [1, 1, 1, 1]
    assert normalize_padding([1, 2]) == [1, 1, 2, 2]
    assert normalize_padding((1, 2, 3, 4)) == [1, 2, 3, 4]
    assert normalize_output_padding(1, True, [2, 2], [1, 1]) == [1, 1]
    assert normalize_output_padding(None, False, [1, 1], [1, 1]) is None
    with pytest.raises(ValueError, match="output_padding must be smaller"):
        normalize_output_padding(2, True, [2, 2], [1, 1])
    with pytest.raises(ValueError, match="padding"):
        normalize_padding([1, 2, 3])


@pytest.mark.parametrize(
    "geometry",
    [
        {},
        {"stride": 2, "dilation": 2, "padding": 1},
        {"transpose": True, "stride": 2, "output_padding": 1},
    ],
)
@pytest.mark.parametrize("shared_context", [False, True])
@pytest.mark.parametrize("layer", [DynamicConv2DDelta, DynamicConv2DMobius])
def test_an_empty_batch_gives_an_empty_result_and_a_backward(layer, geometry, shared_context):
    module = layer(3, 4, 5, kernel_size=3, **geometry)
    x = torch.randn(0, 3, 9, 8, requires_grad=True)
    c = torch.randn(1 if shared_context else 0, 5, requires_grad=True)
    y = module(x, c)
    # The shape a batch of one would have, with no sample.
    assert y.shape == (0, *module(torch.randn(1, 3, 9, 8), torch.randn(1, 5)).shape[1:])
    y.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    # No sample uses the context: its gradient is zero, or None where nothing reached it.
    assert c.grad is None or torch.equal(c.grad, torch.zeros_like(c))
