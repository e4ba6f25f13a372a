"""Property tests for the generated continual streams and the continual-learning metrics."""

import math

import torch
from hypothesis import given
from hypothesis import strategies as st

import dyna.data
import dyna.train

COVERED = {
    "ContinualMetrics",
    "ContinualStream",
    "STREAM_NAMES",
    "STREAM_ORDERS",
    "StreamSplit",
    "accuracy_per_distribution",
    "average_accuracy",
    "average_forgetting",
    "continual_metrics",
    "forward_transfer",
    "make_stream",
}

EXPECTED_DISTRIBUTIONS = {"iid": 1, "ci": 4, "cdi": 8, "cdid": 8}


@given(
    name=st.sampled_from(dyna.data.STREAM_NAMES),
    order=st.sampled_from(dyna.data.STREAM_ORDERS),
    seed=st.integers(0, 2**31 - 1),
    num_train=st.integers(100, 400),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.bfloat16]),
)
def test_streams_have_consistent_splits(name, order, seed, num_train, dtype):
    stream = dyna.data.make_stream(name, order.upper(), seed=seed, num_train=num_train, dtype=dtype)
    assert isinstance(stream, dyna.data.ContinualStream)
    assert stream.name == name and stream.order == order and stream.in_features == 2
    assert stream.num_distributions == EXPECTED_DISTRIBUTIONS[order]
    assert len(stream.train) == num_train
    for split in (stream.train, stream.validation, stream.test):
        assert isinstance(split, dyna.data.StreamSplit)
        n = len(split)
        assert split.inputs.shape == (n, 2) and split.inputs.dtype == dtype
        assert (split.inputs.abs() <= 1).all()
        for labels, upper in ((split.targets, 4), (split.domains, 2)):
            assert labels.shape == (n,) and labels.dtype == torch.int64
            assert ((labels >= 0) & (labels < upper)).all()
        steps = split.distributions.diff()
        assert int(split.distributions[0]) == 0 and ((steps == 0) | (steps == 1)).all()
    assert stream.test.num_distributions == stream.num_distributions
    assert stream.validation.num_distributions <= stream.num_distributions
    # every draw comes from the stream's own generator
    again = dyna.data.make_stream(name, order, seed=seed, num_train=num_train, dtype=dtype)
    assert torch.equal(again.train.inputs, stream.train.inputs)


accuracies = st.floats(0.0, 1.0)


@st.composite
def confusion_matrices(draw):
    size = draw(st.integers(1, 6))
    values = draw(st.lists(accuracies, min_size=size * size, max_size=size * size))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    return torch.tensor(values, dtype=dtype).view(size, size)


@given(matrix=confusion_matrices())
def test_metrics_stay_in_their_ranges_and_match_their_definitions(matrix):
    size = matrix.shape[0]
    acc = dyna.train.average_accuracy(matrix)
    forg = dyna.train.average_forgetting(matrix)
    fwd = dyna.train.forward_transfer(matrix)
    for value in (acc, forg, fwd):
        assert value.shape == () and value.dtype == matrix.dtype
    assert 0 <= acc <= 1 and 0 <= fwd <= 1 and -1 <= forg <= 1
    torch.testing.assert_close(acc, matrix[-1].mean())
    if size == 1:
        assert forg == 0 and fwd == 0
    else:
        best = [max(float(matrix[j, i]) for j in range(size - 1)) for i in range(size - 1)]
        expected = sum(b - float(matrix[-1, i]) for i, b in enumerate(best)) / (size - 1)
        assert math.isclose(float(forg), expected, abs_tol=1e-6)
        upper = [float(matrix[j, i]) for j in range(size) for i in range(j + 1, size)]
        assert math.isclose(float(fwd), sum(upper) / len(upper), abs_tol=1e-6)
    summary = dyna.train.continual_metrics(matrix)
    assert isinstance(summary, dyna.train.ContinualMetrics)
    assert math.isclose(summary.average_accuracy, float(acc), rel_tol=1e-6)
    assert math.isclose(summary.average_forgetting, float(forg), rel_tol=1e-6, abs_tol=1e-7)
    assert math.isclose(summary.forward_transfer, float(fwd), rel_tol=1e-6)


@given(
    labels=st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 4)), max_size=40
    ),
    num_distributions=st.integers(1, 6),
)
def test_accuracy_per_distribution_counts_hits_per_distribution(labels, num_distributions):
    predictions = torch.tensor([p for p, _, _ in labels], dtype=torch.int64)
    targets = torch.tensor([t for _, t, _ in labels], dtype=torch.int64)
    distributions = torch.tensor([d % num_distributions for _, _, d in labels], dtype=torch.int64)
    accuracy = dyna.train.accuracy_per_distribution(
        predictions, targets, distributions, num_distributions
    )
    assert accuracy.shape == (num_distributions,) and accuracy.dtype == torch.float32
    for index in range(num_distributions):
        members = [
            (p == t)
            for p, t, d in zip(predictions, targets, distributions, strict=True)
            if d == index
        ]
        if members:
            assert math.isclose(float(accuracy[index]), sum(members) / len(members), rel_tol=1e-6)
        else:
            assert math.isnan(float(accuracy[index]))
