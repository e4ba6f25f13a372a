"""The Python examples of the documentation pages run, so a broken example fails CI.

Every ```python block of a page under ``docs/`` runs, in page order, in one namespace per page
(a later block may use what an earlier one defined), from a fixed seed. A block that is not
meant to run (a signature listing, a fragment, a minutes-long experiment) is preceded by the
line ``<!-- docs-example: skip -->``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

DOCS = Path(__file__).resolve().parents[1] / "docs"
SKIP_MARKER = "<!-- docs-example: skip -->"
# A fenced block at the start of a line: its language and its body.
FENCE = re.compile(r"^```(?P<language>[\w-]*)[^\n]*\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)
FAMILY_PAGES = [
    "functional.md",
    "dynamic_weights.md",
    "compact_spectral.md",
    "cnus.md",
    "continual.md",
    "horn.md",
]


def python_blocks(text: str) -> list[tuple[int, str, bool]]:
    """(line number, code, runs) for each ```python block of a Markdown text."""
    blocks = []
    for match in FENCE.finditer(text):
        if match["language"] != "python":
            continue
        before = text[: match.start()].rstrip().splitlines()
        skipped = bool(before) and before[-1].strip() == SKIP_MARKER
        line = text.count("\n", 0, match.start()) + 1
        blocks.append((line, match["body"], not skipped))
    return blocks


def _pages_with_examples() -> list[str]:
    pages = sorted(path.name for path in DOCS.glob("*.md"))
    return [page for page in pages if any(runs for *_, runs in python_blocks(_read(page)))]


def _read(page: str) -> str:
    return (DOCS / page).read_text(encoding="utf-8")


def test_python_blocks_finds_code_and_honours_the_skip_marker():
    text = (
        "Intro.\n\n```python\na = 1\n```\n\n"
        f"{SKIP_MARKER}\n\n```python\nundefined_name\n```\n\n"
        "```bash\nexit 1\n```\n"
    )
    assert python_blocks(text) == [(3, "a = 1\n", True), (9, "undefined_name\n", False)]


@pytest.mark.parametrize("page", FAMILY_PAGES)
def test_every_family_page_has_a_runnable_example(page):
    assert any(runs for *_, runs in python_blocks(_read(page))), f"{page} has no example that runs"


@pytest.mark.parametrize("page", _pages_with_examples())
def test_examples_run(page, monkeypatch):
    monkeypatch.chdir(DOCS.parent)
    torch.manual_seed(0)
    namespace: dict[str, object] = {"__name__": f"docs_example_{page[:-3]}"}
    for line, code, runs in python_blocks(_read(page)):
        if runs:
            exec(compile(code, f"docs/{page}:{line}", "exec"), namespace)


def _section_block(text: str, heading: str, language: str) -> str:
    """The first ```language block after a ``## heading`` line."""
    match = re.search(rf"^## {heading}\n.*?^```{language}\n(.*?)^```", text, re.M | re.S)
    assert match, f"no {language} block under '## {heading}'"
    return match[1]


def test_getting_started_matches_the_readme():
    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    index = _read("index.md")

    def commands(block: str) -> list[str]:
        return [line.split("#")[0].strip() for line in block.strip().splitlines()]

    setup = "Set up and run"
    assert commands(_section_block(index, setup, "bash")) == commands(
        _section_block(readme, setup, "bash")
    )
    assert _section_block(index, "Five lines", "python") == _section_block(
        readme, "Five lines", "python"
    )
