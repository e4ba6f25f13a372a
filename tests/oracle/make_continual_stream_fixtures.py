"""Write the reference fixture for the MODES/MOONS continual streams.

Reads the eight ``.npz`` files the reference generator saved with its code (the paper's
repository github.com/sailab-code/continual_neural_unit, commit
f7ea0ffcdf629b590d54aff78548225d425dd4ee, ``d2d/generated_datasets/``: ``bi-modals_*`` is
MODES, ``bi-moons_*`` is MOONS) and summarises every split of every stream:

    python tests/oracle/make_continual_stream_fixtures.py <folder with the .npz files>

It writes ``tests/oracle/fixtures/continual_streams.json``: for each ``"<name>/<order>/<split>"``
(split ``train``, ``validation`` or ``test``), the number of samples of each distribution
(``block_sizes``), the class of each distribution (``block_classes``, absent for ``iid``) and
the per-class mean and (population) standard deviation of the points (``class_means``,
``class_stds``: class label -> [x1, x2], for the classes present), and for the
class-and-domain orders the same per distribution (``block_means``, ``block_stds``).
``test_continual_stream_parity.py`` reads it. Only numpy is needed. The reference draws its
points with scikit-learn, ours with PyTorch, so the points differ and only these counts and
statistics are compared.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

NAMES = {"bi-modals": "modes", "bi-moons": "moons"}
ORDERS = ("IID", "CI", "CDI", "CDID")
SPLITS = {"train": "train", "val": "validation", "test": "test"}
OUTPUT = Path(__file__).resolve().parent / "fixtures" / "continual_streams.json"


def summarise(points, targets, distributions, order):
    summary = {
        "block_sizes": np.bincount(distributions).tolist(),
        "class_means": {},
        "class_stds": {},
    }
    for label in np.unique(targets).tolist():
        summary["class_means"][str(label)] = points[targets == label].mean(axis=0).round(6).tolist()
        summary["class_stds"][str(label)] = points[targets == label].std(axis=0).round(6).tolist()
    if order != "IID":
        starts = np.flatnonzero(np.diff(distributions, prepend=-1))
        summary["block_classes"] = targets[starts].tolist()
    if order in ("CDI", "CDID"):
        blocks = [points[distributions == b] for b in range(distributions.max() + 1)]
        summary["block_means"] = [block.mean(axis=0).round(6).tolist() for block in blocks]
        summary["block_stds"] = [block.std(axis=0).round(6).tolist() for block in blocks]
    return summary


def main(folder: str) -> None:
    fixture = {}
    for reference_name, name in NAMES.items():
        for order in ORDERS:
            data = np.load(Path(folder) / f"{reference_name}_{order}.npz", allow_pickle=True)
            for reference_split, split in SPLITS.items():
                fixture[f"{name}/{order.lower()}/{split}"] = summarise(
                    data[f"X_{reference_split}"],
                    data[f"y_{reference_split}"],
                    data[f"distributions_{reference_split}"],
                    order,
                )
    OUTPUT.write_text(json.dumps(fixture, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
