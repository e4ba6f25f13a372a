"""Old public names kept for one release after a move, each access warning where the name went."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Mapping
from typing import Any

# The CNU key projections were exported from ``dyna`` and ``dyna.functional`` before; they live
# in dyna.functional.cnu only (the names are generic, the functions are not).
CNU_PROJECTIONS = {name: "dyna.functional.cnu" for name in ("psi", "resize1d", "resize2d")}


def moved_attribute(package: str, name: str, moved: Mapping[str, str]) -> Any:
    """The object behind ``package.name`` when ``name`` moved to the module ``moved[name]``.

    Called from a package's module-level ``__getattr__`` (so only for names the package does not
    define): warns with a ``DeprecationWarning`` pointing at the caller's line and returns the
    object from its new module; any other name raises ``AttributeError`` as usual.

    Args:
        package: the package's ``__name__``, e.g. ``"dyna"``.
        name: the attribute asked for.
        moved: old name -> the module that now holds it, e.g. ``{"psi": "dyna.functional.cnu"}``.
    """
    if name not in moved:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    warnings.warn(
        f"{package}.{name} is deprecated and will be removed in the next release; "
        f"import it from {moved[name]}",
        DeprecationWarning,
        stacklevel=3,  # the line that used the old name, past __getattr__ and this function
    )
    return getattr(importlib.import_module(moved[name]), name)
