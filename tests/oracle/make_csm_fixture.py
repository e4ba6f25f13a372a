"""Write the reference fixture for the Compact Spectral Multiplier: per-trial estimates of CSM.py.

This script runs the **reference** DyNA's demonstration script
``docs/Compact-Spectral-Multiplier-(CSM)/CSM.py`` (github.com/Sombressoul/dyna, commit
01c17ea0ef52e66f48a5e09090db56ad29e190be, CPU, torch 2.13), never ours. From the root of this
repository:

    PYTHONPATH=<reference checkout> python tests/oracle/make_csm_fixture.py

The reference script is executed as it is, except that its configuration constants (``K``,
``d_k``, ``d_prime``, ``n_trials``, ``xy_correlation``) are replaced before it runs and its
plotting (matplotlib) and Pearson (scipy) imports are served by stand-ins, so only torch and
numpy are needed. Its per-trial lists ``dot_estimates`` (the float32 estimates) and
``ground_truths`` are saved to ``tests/oracle/fixtures/csm_script.pt``: a flat ``{str: tensor}``
dict (``torch.load(path, weights_only=True)``) with, per configuration
``K<K>_d<d>_D<D>_c<corr>_n<n>``, the fields ``estimates`` and ``truths`` (float64, [n]). The seed
stays the script's (42), so the inputs and tables can be redrawn by the reader.
"""

from __future__ import annotations

import os
import re
import sys
import types
from pathlib import Path

import numpy as np
import torch

SCRIPT = Path("docs") / "Compact-Spectral-Multiplier-(CSM)" / "CSM.py"
OUT = Path(__file__).resolve().parent / "fixtures" / "csm_script.pt"

# (K, d_k, D, xy_correlation, trials): the script's own configuration with fewer trials, and
# smaller ones (one mode, odd sizes, stronger correlation).
CONFIGS = [
    (4, 32, 2048, 0.5, 200),
    (3, 8, 16, 0.9, 300),
    (2, 16, 64, 0.8, 300),
    (1, 12, 8, 0.7, 300),
]


def _stand_ins() -> None:
    """matplotlib.pyplot (does nothing) and scipy.stats.pearsonr (numpy) for the script."""
    pyplot = types.ModuleType("matplotlib.pyplot")
    pyplot.__getattr__ = lambda name: lambda *args, **kwargs: None
    matplotlib = types.ModuleType("matplotlib")
    matplotlib.pyplot = pyplot
    stats = types.ModuleType("scipy.stats")
    stats.pearsonr = lambda a, b: (float(np.corrcoef(a, b)[0, 1]), 0.0)
    scipy = types.ModuleType("scipy")
    scipy.stats = stats
    sys.modules.update(
        {
            "matplotlib": matplotlib,
            "matplotlib.pyplot": pyplot,
            "scipy": scipy,
            "scipy.stats": stats,
        }
    )


def _configured(source: str, K: int, d: int, D: int, corr: float, trials: int) -> str:
    values = {"K": K, "d_k": d, "d_prime": D, "xy_correlation": corr, "n_trials": trials}
    for name, value in values.items():
        source, count = re.subn(rf"(?m)^{name} = .*$", f"{name} = {value!r}", source)
        if count != 1:
            raise RuntimeError(f"expected one assignment of {name} in the reference script")
    return source


def main() -> None:
    reference_root = next(
        (Path(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p), Path(".")
    )
    source = (reference_root / SCRIPT).read_text()
    _stand_ins()
    fixture: dict[str, torch.Tensor] = {}
    for K, d, D, corr, trials in CONFIGS:
        namespace: dict = {"__name__": "csm_reference"}
        exec(compile(_configured(source, K, d, D, corr, trials), str(SCRIPT), "exec"), namespace)
        key = f"K{K}_d{d}_D{D}_c{corr}_n{trials}"
        fixture[f"{key}/estimates"] = torch.tensor(namespace["dot_estimates"], dtype=torch.float64)
        fixture[f"{key}/truths"] = torch.tensor(namespace["ground_truths"], dtype=torch.float64)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    torch.save(fixture, OUT)
    print(f"wrote {OUT} ({len(fixture)} tensors)")


if __name__ == "__main__":
    main()
