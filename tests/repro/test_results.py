"""Tests for ``repro.results``: the generated blocks of the results page and their plots."""

import dataclasses
import re
from pathlib import Path

import pytest

from repro import results
from repro.continual import format_table, load_results
from repro.continual import render as render_continual
from repro.results import SECTIONS, regenerate, replace_block

TINY_ARGUMENTS = (
    "--streams modes --orders ci --models replay --seeds 1 --num-train 100 "
    "--learning-rates 0.1 --weight-decays 0 --hidden-sizes 5 --quiet"
).split()

PAGE = """# Results

Hand-written text.

<!-- begin generated: continual -->
stale numbers
<!-- end generated: continual -->

More hand-written text.
"""


def test_replace_block():
    page = replace_block(PAGE, "continual", "fresh\nnumbers\n")
    assert page == PAGE.replace("stale numbers\n", "fresh\nnumbers\n")
    # The replacement is literal: backslashes and group references are not interpreted.
    assert r"\1 \n" in replace_block(PAGE, "continual", "\\1 \\n\n")
    with pytest.raises(ValueError, match=r"exactly one .* block for 'horn'"):
        replace_block(PAGE, "horn", "x\n")
    with pytest.raises(ValueError, match="exactly one"):
        replace_block(PAGE + PAGE, "continual", "x\n")


def test_sections_registry():
    section = SECTIONS["continual"]
    assert section.name == "continual" and section.arguments == ()
    small = SECTIONS["continual-small-buffer"]
    assert small.arguments[-2:] == ("--buffer-size", "10") and "replay" in small.arguments
    with pytest.raises(ValueError, match="name must be one of"):
        regenerate("gated-rnn")


@pytest.fixture(scope="module")
def tiny_docs(tmp_path_factory):
    # The continual section with a tiny experiment in place of the full one, run once.
    pytest.importorskip("matplotlib")
    docs = tmp_path_factory.mktemp("docs")
    section = dataclasses.replace(SECTIONS["continual"], arguments=tuple(TINY_ARGUMENTS))
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(results.SECTIONS, "continual", section)
        (docs / "results.md").write_text(PAGE)
        page = regenerate("continual", run=True, docs=docs)
    return docs, page


def test_regenerate_runs_and_renders(tiny_docs):
    docs, page = tiny_docs
    assert page == docs / "results.md"
    text = page.read_text()
    assert text.startswith("# Results\n\nHand-written text.\n") and "stale" not in text
    assert text.endswith("<!-- end generated: continual -->\n\nMore hand-written text.\n")
    rows, metadata = load_results(docs / "results" / "continual.json")
    assert [(row.order, row.model) for row in rows] == [("ci", "replay")]
    # Every number of the table with the command that produced it (the output path included).
    command = metadata["command"]
    assert command == "python -m repro.continual " + " ".join(
        [*TINY_ARGUMENTS, "--json", (docs / "results" / "continual.json").as_posix()]
    )
    assert f"Produced by `{command}`" in text
    assert format_table(rows) in text
    assert re.search(r"\| MODES \| CI \| \d+ s \|\n", text)
    assert "![MODES: ACC, FORG, FWD per order and model](results/continual_modes.png)" in text
    assert (
        "![The continual confusion matrix of every model on MODES CI]"
        "(results/continual_matrices_modes_ci.png)" in text
    )
    for name in ("continual_modes.png", "continual_matrices_modes_ci.png"):
        figure = docs / "results" / name
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert figure.stat().st_size < 100_000
    # Redrawing from the saved file alone gives the same page.
    regenerate("continual", docs=docs)
    assert page.read_text() == text


def test_render_from_saved_file(tiny_docs):
    docs, _ = tiny_docs
    figures = docs / "figures"
    figures.mkdir()
    block = render_continual(docs / "results" / "continual.json", figures, "figures/")
    assert "(figures/continual_modes.png)\n" in block
    assert block.endswith("(figures/continual_matrices_modes_ci.png)\n")
    assert (figures / "continual_modes.png").exists()
    assert (figures / "continual_matrices_modes_ci.png").exists()
    # Without plots: the text and the tables only.
    text_only = render_continual(docs / "results" / "continual.json", figures, "x/", plots=False)
    assert text_only == block.split("\n![")[0].rstrip() + "\n" and "png" not in text_only


def test_command_line(tiny_docs, capsys):
    docs, page = tiny_docs
    results.main(["continual", "--docs", str(docs)])
    assert capsys.readouterr().out.strip() == str(page)
    with pytest.raises(SystemExit):
        results.main(["horn", "--docs", str(docs)])
    assert "unknown section(s) horn" in capsys.readouterr().err


ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_page_matches_the_saved_results(name, tmp_path):
    # The committed page shows exactly what its saved results render to, and its figures exist.
    pytest.importorskip("matplotlib")
    page = (ROOT / "docs" / "results.md").read_text()
    begin, end = f"<!-- begin generated: {name} -->\n", f"<!-- end generated: {name} -->"
    assert page.count(begin) == 1 and page.count(end) == 1
    block = page.split(begin)[1].split(end)[0]
    rendered = SECTIONS[name].render(
        ROOT / "docs" / "results" / f"{name}.json", tmp_path, "results/"
    )
    assert block == rendered
    for figure in re.findall(r"\]\(results/([^)]+\.png)\)", block):
        assert (ROOT / "docs" / "results" / figure).is_file()
        assert (tmp_path / figure).is_file()
