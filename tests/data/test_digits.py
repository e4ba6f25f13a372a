"""The scikit-learn digits read straight from the installed wheel, and their seeded split."""

import pytest
import torch

from dyna.data.digits import (
    digits_csv_path,
    load_digits_split,
    load_digits_tensors,
    stratified_split,
)
from dyna.data.split import DataError, Split, holdout


def test_all_digits_load_with_the_published_shape_and_class_counts():
    images, labels = load_digits_tensors()
    assert images.shape == (1797, 8, 8) and images.dtype == torch.float32
    assert labels.dtype == torch.int64
    # 17 grey levels 0..16 scaled by 1/16.
    assert images.min() == 0.0 and images.max() == 1.0
    assert torch.equal(torch.unique(images * 16), torch.arange(17.0))
    # Class counts of scikit-learn's digits (load_digits().target).
    assert labels.bincount().tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    # The first digit of the file is a 0 whose first row is 0 0 5 13 9 1 0 0.
    assert labels[0] == 0
    assert (images[0, 0] * 16).tolist() == [0, 0, 5, 13, 9, 1, 0, 0]


def test_split_is_stratified_seeded_and_disjoint():
    train, test = load_digits_split(test_fraction=0.2, seed=0)
    assert (len(train), len(test)) == (1438, 359)
    again_train, _ = load_digits_split(test_fraction=0.2, seed=0)
    assert torch.equal(train.inputs, again_train.inputs)
    other_train, _ = load_digits_split(test_fraction=0.2, seed=1)
    assert not torch.equal(train.labels, other_train.labels)
    # Each class keeps its share: round(0.2 * count) test samples per class.
    _, labels = load_digits_tensors()
    expected = [round(0.2 * count) for count in labels.bincount().tolist()]
    assert test.labels.bincount().tolist() == expected
    train_index, test_index = stratified_split(labels, 0.2, 0)
    assert set(train_index.tolist()).isdisjoint(test_index.tolist())
    assert len(train_index) + len(test_index) == 1797


@pytest.mark.parametrize("fraction", [1.0, -0.1])
def test_bad_fraction_is_rejected(fraction):
    with pytest.raises(ValueError, match="test_fraction"):
        stratified_split(torch.arange(10) % 2, fraction, 0)


def test_unreadable_digits_file_names_the_file(tmp_path):
    path = tmp_path / "digits.csv.gz"
    path.write_bytes(b"not gzip")
    with pytest.raises(DataError, match=r"digits\.csv\.gz"):
        load_digits_tensors(path)
    assert digits_csv_path().name == "digits.csv.gz"


def test_holdout_takes_a_seeded_disjoint_subset():
    split = Split(torch.arange(10.0).unsqueeze(1), torch.arange(10))
    rest, held = holdout(split, 3, seed=1)
    assert len(rest) == 7 and len(held) == 3
    assert sorted(rest.labels.tolist() + held.labels.tolist()) == list(range(10))
    assert torch.equal(holdout(split, 3, seed=1)[1].labels, held.labels)
    with pytest.raises(ValueError, match="count"):
        holdout(split, 10, seed=1)


def test_split_rejects_disagreeing_or_non_integer_labels():
    with pytest.raises(ValueError, match=r"inputs must be \(N, \.\.\.\) with N = 3"):
        Split(torch.zeros(4, 2), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(TypeError, match="labels must have an integer dtype"):
        Split(torch.zeros(3, 2), torch.zeros(3))
    with pytest.raises(ValueError, match=r"labels must be \(N,\)"):
        Split(torch.zeros(3, 2), torch.zeros(3, 1, dtype=torch.int64))
    with pytest.raises(TypeError, match=r"inputs must be a torch\.Tensor"):
        Split([[0.0]], torch.zeros(1, dtype=torch.int64))
