"""Continual-learning metrics from the continual confusion matrix.

The continual confusion matrix of a stream with T distributions (intervals) is the T × T matrix

    A[j, i] = accuracy, on held-out data of distribution i, of the model as it is at the end of
              distribution j of the stream,

so row j is filled when the learner leaves distribution j; entries above the diagonal measure
distributions not seen yet. The three summaries are those of the supplement (section C) of
Tiezzi, Marullo, Becattini, Melacci, "Continual Neural Computation" (ECML-PKDD 2024) and its
code (``d2d/utils_2d_datasets.py``), evaluated on the whole matrix (the end of the stream):

    average accuracy     ACC  = 1/T · Σ_{i<T} A[T−1, i]
    average forgetting   FORG = 1/(T−1) · Σ_{i<T−1} ( max_{l<T−1} A[l, i] − A[T−1, i] )
    forward transfer     FWD  = 2/(T(T−1)) · Σ_{j<i} A[j, i]

FORG and FWD are 0 for T = 1. As in the reference, the best-so-far accuracy in FORG is the
maximum over all earlier rows, also those before distribution i arrived, and FWD is the plain
mean of the strictly upper triangle (no random-initialisation baseline is subtracted). To get
the metrics after distribution t of the stream, pass ``A[: t + 1, : t + 1]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dyna._validation import check_floating_dtype


def _check_matrix(matrix: object) -> torch.Tensor:
    if not isinstance(matrix, torch.Tensor):
        raise TypeError(f"matrix must be a torch.Tensor, got {type(matrix).__name__}")
    if not matrix.is_floating_point():
        raise TypeError(f"matrix must have a floating-point dtype, got {matrix.dtype}")
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise ValueError(
            f"matrix must be a non-empty square (T, T) tensor, got shape {tuple(matrix.shape)}"
        )
    return matrix


def average_accuracy(matrix: torch.Tensor) -> torch.Tensor:
    """ACC: mean accuracy of the final model over all distributions (the last row).

    Args:
        matrix: (T, T) floating continual confusion matrix, ``matrix[j, i]`` the accuracy on
            distribution i after distribution j.

    Returns:
        A 0-d tensor in ``matrix.dtype`` (no host synchronisation).

    Example:
        >>> average_accuracy(torch.tensor([[0.9, 0.1], [0.6, 0.8]]))
        tensor(0.7000)
    """
    matrix = _check_matrix(matrix)
    return matrix[-1].mean()


def average_forgetting(matrix: torch.Tensor) -> torch.Tensor:
    """FORG: mean drop from the best earlier accuracy to the final one, over all but the last.

    FORG = 1/(T−1) · Σ_{i<T−1} (max_{l<T−1} A[l, i] − A[T−1, i]), and 0 for T = 1.

    Args:
        matrix: (T, T) floating continual confusion matrix.

    Returns:
        A 0-d tensor in ``matrix.dtype``; negative when the final model is better than every
        earlier one (backward transfer).

    Example:
        >>> average_forgetting(torch.tensor([[0.9, 0.1], [0.6, 0.8]]))
        tensor(0.3000)
    """
    matrix = _check_matrix(matrix)
    if matrix.shape[0] == 1:
        return matrix.new_zeros(())
    best_earlier = matrix[:-1, :-1].amax(dim=0)
    return (best_earlier - matrix[-1, :-1]).mean()


def forward_transfer(matrix: torch.Tensor) -> torch.Tensor:
    """FWD: mean accuracy on distributions not seen yet (the strictly upper triangle).

    FWD = 2/(T(T−1)) · Σ_{j<i} A[j, i], and 0 for T = 1.

    Args:
        matrix: (T, T) floating continual confusion matrix.

    Returns:
        A 0-d tensor in ``matrix.dtype``.

    Example:
        >>> forward_transfer(torch.tensor([[0.9, 0.1], [0.6, 0.8]]))
        tensor(0.1000)
    """
    matrix = _check_matrix(matrix)
    size = matrix.shape[0]
    if size == 1:
        return matrix.new_zeros(())
    return 2.0 * matrix.triu(diagonal=1).sum() / (size * (size - 1))


@dataclass(frozen=True)
class ContinualMetrics:
    """The three summaries of a continual confusion matrix, as Python floats in [0, 1] scale."""

    average_accuracy: float
    average_forgetting: float
    forward_transfer: float


def continual_metrics(matrix: torch.Tensor) -> ContinualMetrics:
    """ACC, FORG and FWD of a continual confusion matrix (one host read for all three).

    Args:
        matrix: (T, T) floating continual confusion matrix.

    Example:
        >>> continual_metrics(torch.tensor([[1.0, 0.0], [0.5, 1.0]]))
        ContinualMetrics(average_accuracy=0.75, average_forgetting=0.5, forward_transfer=0.0)
    """
    values = torch.stack(
        [average_accuracy(matrix), average_forgetting(matrix), forward_transfer(matrix)]
    ).tolist()
    return ContinualMetrics(*values)


def accuracy_per_distribution(
    predictions: torch.Tensor,
    targets: torch.Tensor,
    distributions: torch.Tensor,
    num_distributions: int,
    *,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Accuracy of ``predictions`` within each distribution: one row of the matrix.

    Computed with two scatter-adds, no loop over distributions and no host synchronisation.

    Args:
        predictions: (n,) integer predicted labels.
        targets: (n,) integer true labels.
        distributions: (n,) integer distribution index of each sample, in 0 … D−1.
        num_distributions: D.
        dtype: floating dtype of the result (default float32).

    Returns:
        (D,) accuracies; NaN for a distribution without samples.

    Example:
        >>> predictions, targets = torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 2])
        >>> accuracy_per_distribution(predictions, targets, torch.tensor([0, 0, 1, 1]), 2)
        tensor([1.0000, 0.5000])
    """
    tensors = {"predictions": predictions, "targets": targets, "distributions": distributions}
    for name, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
        if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
            raise TypeError(f"{name} must have an integer dtype, got {tensor.dtype}")
        if tensor.dim() != 1 or tensor.shape != predictions.shape:
            raise ValueError(
                f"{name} must be 1-D with the shape of predictions {tuple(predictions.shape)}, "
                f"got {tuple(tensor.shape)}"
            )
    if isinstance(num_distributions, bool) or not isinstance(num_distributions, int):
        raise TypeError(f"num_distributions must be an int, got {type(num_distributions).__name__}")
    if num_distributions < 1:
        raise ValueError(f"num_distributions must be >= 1, got {num_distributions}")
    check_floating_dtype("dtype", dtype, optional=False)
    correct = (predictions == targets).to(dtype)
    hits = correct.new_zeros(num_distributions).index_add_(0, distributions, correct)
    counts = correct.new_zeros(num_distributions).index_add_(
        0, distributions, torch.ones_like(correct)
    )
    return hits / counts
