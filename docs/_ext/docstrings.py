"""Griffe extension: adapt DyNA's docstrings to the API reference of the site.

Two rewrites, made on the docstrings' text before mkdocstrings parses them:

- An ``Example:`` heading becomes ``Examples:``. Griffe's Google parser only knows the plural
  and renders an unknown heading as an admonition of plain text, where ``>>>`` lines would come
  out as nested block quotes instead of code.
- Sphinx roles (``:class:`HORNStep```, ``:func:`~dyna.lib.CNUs```) become links to the object's
  entry in the API reference when it has one (a public name of ``dyna.functional``, ``dyna.lib``,
  ``dyna.module``, ``dyna.data``, ``dyna.train`` or ``dyna.train.online``), else inline code.
  A link whose target disappears fails the strict build.
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Alias, Extension, Module, Object

_SINGULAR_HEADING = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)
_ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|obj):`(?P<tilde>~?)(?P<target>[\w.]+)`")
# The pages of the API reference and the modules whose public names they document.
_DOCUMENTED = (
    "dyna.functional",
    "dyna.lib",
    "dyna.module",
    "dyna.data",
    "dyna.train",
    "dyna.train.online",
)


def _documented_paths(package: Module) -> dict[str, str]:
    """Each documented public name, short and in full, mapped to the id of its API entry."""
    paths: dict[str, str] = {}
    for module_path in _DOCUMENTED:
        module = package[module_path.removeprefix("dyna.")]
        # __all__ if the module has one (names, or name expressions in older griffe versions).
        exports = module.exports if module.exports is not None else list(module.members)
        names = [str(name) for name in exports]
        for name in names:
            if name.startswith("_") or name not in module.members:
                continue
            member = module.members[name]
            if isinstance(member, Module):
                # A function that shares its module's name (``siglog``): the page documents the
                # function under its full path.
                if name not in member.members:
                    continue
                target = f"{member.path}.{name}"
            else:
                target = f"{module_path}.{name}"
            paths.setdefault(name, target)
            paths.setdefault(f"{module_path}.{name}", target)
            if isinstance(member, Alias):
                paths.setdefault(member.target_path, target)
    for module_path in _DOCUMENTED:
        paths.setdefault(module_path, module_path)
    return paths


def _walk(obj: Object) -> list[Object]:
    objects = [obj]
    for member in obj.members.values():
        if not isinstance(member, Alias) and member.parent is obj:
            objects.extend(_walk(member))
    return objects


class DocstringRewrites(Extension):
    """Rename ``Example:`` headings and turn Sphinx roles into links or code."""

    def on_package(self, *, pkg: Module, **kwargs: Any) -> None:
        if pkg.path != "dyna":
            return
        paths = _documented_paths(pkg)

        def replace(match: re.Match[str]) -> str:
            target = match["target"]
            shown = target.rsplit(".", 1)[-1] if match["tilde"] else target
            if target in paths:
                return f"[`{shown}`][{paths[target]}]"
            return f"`{shown}`"

        for obj in _walk(pkg):
            if obj.docstring is not None:
                text = _SINGULAR_HEADING.sub(r"\1Examples:", obj.docstring.value)
                obj.docstring.value = _ROLE.sub(replace, text)
