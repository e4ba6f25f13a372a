"""The two-dimensional continual-learning streams of "Continual Neural Computation".

Two toy data sets of four classes in two input dimensions, each class drawn from two domains
(Tiezzi, Marullo, Becattini, Melacci, ECML-PKDD 2024; the generator of their repository,
``d2d/generate_2d_datasets.py``):

- **MODES** ("bi-modals"): class c (proportions 0.2 / 0.4 / 0.1 / 0.3) is an isotropic Gaussian
  blob per domain, N(centre_{c,dom}, std_{c,dom}² I).
- **MOONS** ("bi-moons"): two pairs of interleaving half-moons (classes 0/1 and 2/3,
  proportions 0.4 / 0.1 / 0.3 / 0.2), each pair drawn once per domain with its own offset and
  noise.

The 2·n points are scaled per coordinate to [−1, 1] and split by interleaving into n training
points, then half of the rest (about n/2) for validation and the other half for testing, so
every split holds every (class, domain) block in the same proportions. Each split is then put
in one of four orders, the *stream*:

- ``"iid"``: shuffled (the control); one distribution.
- ``"ci"`` (class-incremental): sorted by class, the domain ignored; one distribution per class.
- ``"cdi"`` (class- and domain-incremental): sorted by domain, then by class; each
  (domain, class) block is one distribution.
- ``"cdid"``: ``"cdi"`` with dependent sampling inside each block: the samples of a block
  arrive sorted by their first coordinate.

Validation keeps only the first half of the distributions (the early part of the stream, for
model selection); for ``"iid"``, the first half of its shuffled samples.

Everything is drawn from one seeded ``torch.Generator``: the same seed gives the same stream,
bit for bit, and no file is needed. The geometry (centres, spreads, offsets, proportions,
splits, orders) is the reference's; the random draws are PyTorch's, not scikit-learn's, so the
points themselves differ from the reference's saved files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from dyna._validation import check_choice, check_floating_dtype, check_int

STREAM_NAMES = ("modes", "moons")
STREAM_ORDERS = ("iid", "ci", "cdi", "cdid")

# Geometry of the reference generator (``d2d/generate_2d_datasets.py``), before scaling.
_MODES_RATIOS = (0.2, 0.4, 0.1, 0.3)
_MODES_CENTRES = (
    ((0.25, 0.25), (0.6, 0.65), (0.15, 0.5), (0.85, 0.3)),  # domain 0
    ((0.2, 0.75), (1.0, 0.1), (1.15, 0.75), (0.3, 0.5)),  # domain 1
)
_MODES_STDS = ((0.02, 0.08, 0.015, 0.03), (0.04, 0.02, 0.06, 0.015))
_MOONS_RATIOS = (0.4, 0.1, 0.3, 0.2)
_MOONS_OFFSETS = (((0.0, 0.0), (-3.0, 1.0)), ((2.0, 1.0), (3.0, -1.0)))  # [domain][pair]
_MOONS_NOISE = ((0.08, 0.06), (0.04, 0.03))  # [domain][pair]

_NUM_CLASSES = 4
_NUM_DOMAINS = 2
# The smallest class holds 10 % of the points, half of them per domain; the test split gets a
# quarter of those. 100 training points keep at least two samples of every block in every split.
_MIN_NUM_TRAIN = 100


@dataclass(frozen=True)
class StreamSplit:
    """One split of a stream, in arrival order.

    Attributes:
        inputs: (n, 2) floating points in [−1, 1].
        targets: (n,) int64 class labels in 0 … 3.
        domains: (n,) int64 domain labels in {0, 1} (kept for every order, also where the order
            ignores them).
        distributions: (n,) int64 index of the distribution (block of the stream) each sample
            belongs to: non-decreasing, 0, 1, … without gaps.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    domains: torch.Tensor
    distributions: torch.Tensor

    def __len__(self) -> int:
        return self.inputs.shape[0]

    @property
    def num_distributions(self) -> int:
        """Number of distributions in this split (one host read)."""
        return int(self.distributions[-1]) + 1 if len(self) else 0

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> StreamSplit:
        """Return a copy on ``device`` with floating inputs cast to ``dtype``."""
        return StreamSplit(
            inputs=self.inputs.to(device=device, dtype=dtype),
            targets=self.targets.to(device=device),
            domains=self.domains.to(device=device),
            distributions=self.distributions.to(device=device),
        )


@dataclass(frozen=True)
class ContinualStream:
    """A generated continual-learning stream: its training, validation and test splits.

    Attributes:
        name: ``"modes"`` or ``"moons"``.
        order: ``"iid"``, ``"ci"``, ``"cdi"`` or ``"cdid"``.
        seed: the seed it was generated from.
        num_classes: number of classes (4).
        num_domains: number of domains (2).
        num_distributions: distributions in the training (and test) stream: 1 (iid),
            4 (ci), 8 (cdi, cdid).
        train: the stream a learner sees once, sample by sample.
        validation: held-out samples of the first half of the distributions.
        test: held-out samples of every distribution.
    """

    name: str
    order: str
    seed: int
    num_classes: int
    num_domains: int
    num_distributions: int
    train: StreamSplit
    validation: StreamSplit
    test: StreamSplit

    @property
    def in_features(self) -> int:
        """Input dimension (2)."""
        return self.train.inputs.shape[1]


def _class_counts(total: int, ratios: tuple[float, ...]) -> list[int]:
    # As the reference: int(total * ratio) per class, the last class takes the remainder.
    counts = [int(total * ratio) for ratio in ratios[:-1]]
    return [*counts, total - sum(counts)]


def _gaussian(
    count: int, centre: tuple[float, float], std: float, generator: torch.Generator
) -> torch.Tensor:
    noise = torch.randn(count, 2, generator=generator, dtype=torch.float64)
    return torch.tensor(centre, dtype=torch.float64) + std * noise


def _half_moons(outer: int, inner: int, noise: float, generator: torch.Generator) -> torch.Tensor:
    # scikit-learn's make_moons without shuffling: the outer arc, then the inner one.
    outer_angle = torch.linspace(0.0, math.pi, outer, dtype=torch.float64)
    inner_angle = torch.linspace(0.0, math.pi, inner, dtype=torch.float64)
    points = torch.cat(
        [
            torch.stack([outer_angle.cos(), outer_angle.sin()], dim=1),
            torch.stack([1.0 - inner_angle.cos(), 0.5 - inner_angle.sin()], dim=1),
        ]
    )
    return points + noise * torch.randn(outer + inner, 2, generator=generator, dtype=torch.float64)


def _modes_points(
    total: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    points, targets, domains = [], [], []
    for label, count in enumerate(_class_counts(total, _MODES_RATIOS)):
        for domain, domain_count in enumerate((count // 2, count - count // 2)):
            centre = _MODES_CENTRES[domain][label]
            points.append(_gaussian(domain_count, centre, _MODES_STDS[domain][label], generator))
            targets.append(torch.full((domain_count,), label, dtype=torch.int64))
            domains.append(torch.full((domain_count,), domain, dtype=torch.int64))
    return torch.cat(points), torch.cat(targets), torch.cat(domains)


def _moons_points(
    total: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    counts = _class_counts(total, _MOONS_RATIOS)
    points, targets, domains = [], [], []
    for pair in range(_NUM_CLASSES // 2):
        first, second = counts[2 * pair], counts[2 * pair + 1]
        halves = ((first // 2, second // 2), (first - first // 2, second - second // 2))
        for domain, (outer, inner) in enumerate(halves):
            moons = _half_moons(outer, inner, _MOONS_NOISE[domain][pair], generator)
            points.append(moons + torch.tensor(_MOONS_OFFSETS[domain][pair], dtype=torch.float64))
            targets.append(
                torch.cat(
                    [
                        torch.full((outer,), 2 * pair, dtype=torch.int64),
                        torch.full((inner,), 2 * pair + 1, dtype=torch.int64),
                    ]
                )
            )
            domains.append(torch.full((outer + inner,), domain, dtype=torch.int64))
    return torch.cat(points), torch.cat(targets), torch.cat(domains)


def _block_index(sorted_keys: torch.Tensor) -> torch.Tensor:
    # Consecutive equal keys form one distribution; number the blocks 0, 1, ... in order.
    _, inverse = torch.unique_consecutive(sorted_keys, return_inverse=True)
    return inverse


def _arrange(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    domains: torch.Tensor,
    order: str,
    generator: torch.Generator,
) -> StreamSplit:
    # A random permutation first, so that stable sorts leave each block in random order.
    permutation = torch.randperm(inputs.shape[0], generator=generator)
    inputs, targets, domains = inputs[permutation], targets[permutation], domains[permutation]
    if order == "iid":
        return StreamSplit(inputs, targets, domains, torch.zeros_like(targets))
    keys = targets if order == "ci" else domains * _NUM_CLASSES + targets
    if order == "cdid":
        # Sort by the first coordinate, then stably by block: blocks in order, each sorted by x₁.
        by_coordinate = torch.argsort(inputs[:, 0], stable=True)
        inputs, targets, domains = (
            inputs[by_coordinate],
            targets[by_coordinate],
            domains[by_coordinate],
        )
        keys = keys[by_coordinate]
    by_block = torch.argsort(keys, stable=True)
    return StreamSplit(
        inputs[by_block], targets[by_block], domains[by_block], _block_index(keys[by_block])
    )


def _early_part(split: StreamSplit, order: str) -> StreamSplit:
    if order == "iid":
        keep = torch.arange(len(split), device=split.targets.device) < len(split) // 2
    else:
        keep = split.distributions < split.num_distributions // 2
    return StreamSplit(
        split.inputs[keep], split.targets[keep], split.domains[keep], split.distributions[keep]
    )


def make_stream(
    name: str,
    order: str,
    *,
    seed: int = 0,
    num_train: int = 1000,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> ContinualStream:
    """Generate a MODES or MOONS stream in the given order.

    Args:
        name: ``"modes"`` or ``"moons"`` (case-insensitive).
        order: ``"iid"``, ``"ci"``, ``"cdi"`` or ``"cdid"`` (case-insensitive).
        seed: seed of the private ``torch.Generator`` every draw comes from (default 0); the
            global random state is not touched.
        num_train: n, the number of training samples (default 1000, as the paper); 2·n points
            are drawn, about n/2 are held out for testing and, before the cut to the early
            distributions, n/2 for validation. At least 100.
        device: where the tensors go (generated on the CPU, then moved).
        dtype: floating dtype of the inputs (default: the global default dtype).

    Returns:
        A :class:`ContinualStream`. Shapes for ``num_train=1000``: train (1000, 2), test
        (500, 2), validation (about 250, 2); targets, domains and distributions (n,) int64.

    Example:
        >>> stream = make_stream("modes", "ci", seed=1)
        >>> stream.train.inputs.shape, stream.num_distributions
        (torch.Size([1000, 2]), 4)
        >>> stream.train.targets.unique_consecutive().tolist()
        [0, 1, 2, 3]
    """
    name = check_choice("name", name, STREAM_NAMES)
    order = check_choice("order", order, STREAM_ORDERS)
    seed = check_int("seed", seed, minimum=0)
    num_train = check_int("num_train", num_train, minimum=_MIN_NUM_TRAIN)
    dtype = check_floating_dtype("dtype", dtype) or torch.get_default_dtype()

    generator = torch.Generator().manual_seed(seed)
    total = 2 * num_train
    make_points = _modes_points if name == "modes" else _moons_points
    points, targets, domains = make_points(total, generator)

    # Scale every coordinate to [-1, 1] over the whole data set, as the reference.
    points = points - points.amin(dim=0)
    points = 2.0 * points / points.amax(dim=0) - 1.0

    # Interleaved split, as the reference: even points train, the odd ones alternate
    # validation / test (a trailing odd one is dropped).
    held_out = slice(1, None, 2)
    held = points[held_out], targets[held_out], domains[held_out]
    count = held[0].shape[0]
    raw_splits = {
        "train": (points[0::2], targets[0::2], domains[0::2]),
        "validation": tuple(tensor[0 : count - 1 : 2] for tensor in held),
        "test": tuple(tensor[1:count:2] for tensor in held),
    }
    splits = {
        key: _arrange(inputs, targets, domains, order, generator).to(device=device, dtype=dtype)
        for key, (inputs, targets, domains) in raw_splits.items()
    }
    validation = _early_part(splits["validation"], order)
    return ContinualStream(
        name=name,
        order=order,
        seed=seed,
        num_classes=_NUM_CLASSES,
        num_domains=_NUM_DOMAINS,
        num_distributions=splits["train"].num_distributions,
        train=splits["train"],
        validation=validation,
        test=splits["test"],
    )
