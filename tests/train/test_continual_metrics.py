"""Tests for ``dyna.train.continual_metrics`` against hand-computed continual confusion matrices.

The definitions are those of the reference (the paper's repository sailab-code/
continual_neural_unit at commit f7ea0ff, ``d2d/utils_2d_datasets.py``): average accuracy is the
mean of the last row, forgetting the mean over all but the last column of (max over all but the
last row) minus the last row, forward transfer the mean of the strict upper triangle.
"""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dyna.train import (
    ContinualMetrics,
    accuracy_per_distribution,
    average_accuracy,
    average_forgetting,
    continual_metrics,
    forward_transfer,
)

# Row j: the model after distribution j; column i: accuracy on distribution i.
MATRIX_3 = [
    [0.9, 0.2, 0.1],
    [0.5, 0.8, 0.3],
    [0.4, 0.6, 0.7],
]
# ACC = (0.4 + 0.6 + 0.7) / 3; FORG = ((0.9 - 0.4) + (0.8 - 0.6)) / 2; FWD = (0.2 + 0.1 + 0.3) / 3.
EXPECTED_3 = (1.7 / 3, 0.35, 0.2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hand_computed_three_distributions(dtype):
    matrix = torch.tensor(MATRIX_3, dtype=dtype)
    for function, expected in zip(
        (average_accuracy, average_forgetting, forward_transfer), EXPECTED_3, strict=True
    ):
        value = function(matrix)
        assert value.shape == () and value.dtype == dtype
        torch.testing.assert_close(value, torch.tensor(expected, dtype=dtype))


def test_best_earlier_accuracy_includes_rows_before_arrival():
    # Column 1 peaks at row 0, before distribution 1 arrived: the reference counts that peak.
    matrix = torch.tensor([[1.0, 0.7, 0.0], [0.0, 0.5, 0.0], [0.0, 0.2, 1.0]], dtype=torch.float64)
    # Column 0: 1.0 - 0.0; column 1: max(0.7, 0.5) - 0.2.
    torch.testing.assert_close(average_forgetting(matrix), torch.tensor(0.75, dtype=torch.float64))


def test_negative_forgetting_is_backward_transfer():
    matrix = torch.tensor([[0.5, 0.9], [0.6, 0.3]], dtype=torch.float64)
    torch.testing.assert_close(average_forgetting(matrix), torch.tensor(-0.1, dtype=torch.float64))
    torch.testing.assert_close(average_accuracy(matrix), torch.tensor(0.45, dtype=torch.float64))
    torch.testing.assert_close(forward_transfer(matrix), torch.tensor(0.9, dtype=torch.float64))


def test_catastrophic_forgetting_class_incremental():
    # A learner that only ever knows its latest class, four classes one after another.
    matrix = torch.eye(4)
    metrics = continual_metrics(matrix)
    assert metrics == ContinualMetrics(
        average_accuracy=0.25, average_forgetting=1.0, forward_transfer=0.0
    )


def test_single_distribution():
    matrix = torch.tensor([[0.8]])
    assert continual_metrics(matrix) == ContinualMetrics(
        pytest.approx(0.8), average_forgetting=0.0, forward_transfer=0.0
    )
    assert average_forgetting(matrix).dtype == torch.float32


def test_cut_matrix_gives_metrics_over_time():
    matrix = torch.tensor(MATRIX_3)
    after_second = continual_metrics(matrix[:2, :2])
    assert after_second.average_accuracy == pytest.approx(0.65)
    assert after_second.average_forgetting == pytest.approx(0.4)
    assert after_second.forward_transfer == pytest.approx(0.2)


@settings(max_examples=40, deadline=None)
@given(size=st.integers(1, 8), seed=st.integers(0, 2**31 - 1))
def test_against_the_reference_formulas(size, seed):
    matrix = np.random.default_rng(seed).random((size, size))
    accuracy = matrix[-1].mean()
    if size == 1:
        forgetting = forward = 0.0
    else:
        forgetting = (matrix[:-1, :-1].max(axis=0) - matrix[-1, :-1]).mean()
        forward = 2.0 * np.triu(matrix, k=1).sum() / (size * (size - 1))
    tensor = torch.from_numpy(matrix)
    assert average_accuracy(tensor).item() == pytest.approx(accuracy, abs=1e-12)
    assert average_forgetting(tensor).item() == pytest.approx(forgetting, abs=1e-12)
    assert forward_transfer(tensor).item() == pytest.approx(forward, abs=1e-12)


def test_no_host_sync_needed_and_compilable():
    compiled = torch.compile(average_forgetting, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(torch.tensor(MATRIX_3)), torch.tensor(0.35))


@pytest.mark.parametrize(
    ("matrix", "error", "match"),
    [
        ([[1.0]], TypeError, "matrix must be a torch.Tensor"),
        (torch.ones(2, 2, dtype=torch.int64), TypeError, "floating-point dtype"),
        (torch.ones(2, 3), ValueError, r"square \(T, T\)"),
        (torch.ones(4), ValueError, r"square \(T, T\)"),
        (torch.ones(0, 0), ValueError, "non-empty"),
        (torch.ones(2, 2, 2), ValueError, r"got shape \(2, 2, 2\)"),
    ],
)
@pytest.mark.parametrize(
    "function", [average_accuracy, average_forgetting, forward_transfer, continual_metrics]
)
def test_bad_matrix(function, matrix, error, match):
    with pytest.raises(error, match=match):
        function(matrix)


def test_accuracy_per_distribution_hand_computed():
    predictions = torch.tensor([0, 1, 1, 3, 3, 3])
    targets = torch.tensor([0, 1, 2, 3, 3, 2])
    distributions = torch.tensor([0, 0, 1, 2, 2, 2])
    row = accuracy_per_distribution(predictions, targets, distributions, 4)
    expected = torch.tensor([1.0, 0.0, 2.0 / 3.0, float("nan")])
    torch.testing.assert_close(row, expected, equal_nan=True)
    row64 = accuracy_per_distribution(predictions, targets, distributions, 3, dtype=torch.float64)
    assert row64.dtype == torch.float64 and row64.shape == (3,)


@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        (([0, 1], "t", "d", 2), TypeError, "predictions must be a torch.Tensor"),
        (("f", "t", "d", 2), TypeError, "predictions must have an integer dtype"),
        (("p", "t2", "d", 2), ValueError, "targets must be 1-D with the shape of predictions"),
        (("p", "t", "dbool", 2), TypeError, "distributions must have an integer dtype"),
        (("p", "t", "d", 0), ValueError, "num_distributions must be >= 1"),
        (("p", "t", "d", 2.0), TypeError, "num_distributions must be an int"),
    ],
)
def test_accuracy_per_distribution_bad_arguments(arguments, error, match):
    tensors = {
        "p": torch.tensor([0, 1]),
        "f": torch.tensor([0.0, 1.0]),
        "t": torch.tensor([0, 0]),
        "t2": torch.tensor([[0, 0]]),
        "d": torch.tensor([0, 1]),
        "dbool": torch.tensor([False, True]),
    }
    resolved = [tensors.get(a, a) if isinstance(a, str) else a for a in arguments]
    with pytest.raises(error, match=match):
        accuracy_per_distribution(*resolved)


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, "float32", None])
def test_accuracy_per_distribution_needs_a_floating_dtype(dtype):
    labels = torch.tensor([0, 1])
    with pytest.raises(TypeError, match=r"dtype must be a floating torch\.dtype"):
        accuracy_per_distribution(labels, labels, labels, 2, dtype=dtype)
