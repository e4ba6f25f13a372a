"""Griffe extension: read a Google-style ``Example:`` heading as ``Examples:``.

The docstrings of DyNA head their doctests ``Example:``. Griffe's Google parser only knows the
plural, and renders an unknown heading as an admonition of plain text, so ``>>>`` lines would
come out as nested block quotes. Renaming the heading before parsing makes them code.
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension, Object

_SINGULAR_HEADING = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)


class ExampleSections(Extension):
    """Rename every ``Example:`` section heading to ``Examples:``."""

    def on_object(self, *, obj: Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _SINGULAR_HEADING.sub(r"\1Examples:", obj.docstring.value)
