"""Regenerate the results page: re-run an experiment, then redraw its tables and plots.

``docs/results.md`` is written by hand except for one generated block per section, fenced by
``<!-- begin generated: NAME -->`` and ``<!-- end generated: NAME -->``. A section is one entry
of :data:`SECTIONS`: the command-line arguments of its runner, the runner (which saves every
number as JSON under ``docs/results/``) and a renderer that turns the JSON into the block's
Markdown and its PNG plots. The prose around the blocks (setup, which claims hold) stays as
written; re-read it when the numbers change.

Usage, from the repository root::

    python -m repro.results continual --run   # train again (minutes), then redraw
    python -m repro.results continual         # redraw from docs/results/continual.json

Plots need matplotlib (a development dependency, not a run-time one).
"""

from __future__ import annotations

import argparse
import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from repro import continual, dynconv, horn_vs_rnns


@dataclass(frozen=True)
class Section:
    """One generated section of the results page.

    Attributes:
        name: the name of the block in the page and of its files (``results/NAME.json``).
        arguments: the runner's command-line arguments, without the output file.
        run: the runner's entry point, called with ``arguments`` plus ``--json PATH``.
        render: builds the block's Markdown from the saved file and writes its plots into the
            folder given; called as ``render(json_path, figures_dir, figures_prefix)``.
    """

    name: str
    arguments: tuple[str, ...]
    run: Callable[[Sequence[str]], object]
    render: Callable[[Path, Path, str], str]


SECTIONS: dict[str, Section] = {
    "continual": Section(
        name="continual",
        arguments=(),
        run=continual.main,
        render=continual.render,
    ),
    # Replay with a five times smaller buffer, on the streams that change.
    "continual-small-buffer": Section(
        name="continual-small-buffer",
        arguments=("--orders", "ci", "cdi", "cdid", "--models", "replay", "--buffer-size", "10"),
        run=continual.main,
        render=functools.partial(continual.render, plots=False),
    ),
    # Static against dynamic convolution; MNIST is read from $DYNA_MNIST.
    "dynconv": Section(
        name="dynconv",
        arguments=("--datasets", "digits", "mnist", "--mnist-epochs", "3"),
        run=dynconv.main,
        render=dynconv.render,
    ),
    # HORN against tanh-RNN, GRU and LSTM on (permuted) pixel-by-pixel MNIST, and HORN's
    # structural variants; MNIST is read from $DYNA_MNIST. Two single-threaded runs at a time.
    "horn-vs-rnns": Section(
        name="horn-vs-rnns",
        arguments=("--jobs", "2"),
        run=horn_vs_rnns.main,
        render=horn_vs_rnns.render,
    ),
}


def replace_block(page: str, name: str, block: str) -> str:
    """Put ``block`` between the page's ``begin generated``/``end generated`` markers of ``name``.

    Example:
        >>> page = "intro\\n<!-- begin generated: demo -->\\nold\\n<!-- end generated: demo -->\\n"
        >>> replace_block(page, "demo", "new\\n")
        'intro\\n<!-- begin generated: demo -->\\nnew\\n<!-- end generated: demo -->\\n'
    """
    begin, end = f"<!-- begin generated: {name} -->", f"<!-- end generated: {name} -->"
    pattern = re.compile(re.escape(begin) + r"\n.*?" + re.escape(end), flags=re.DOTALL)
    if len(pattern.findall(page)) != 1:
        raise ValueError(f"page must hold exactly one '{begin}' … '{end}' block for {name!r}")
    return pattern.sub(lambda _: f"{begin}\n{block}{end}", page)


def regenerate(name: str, *, run: bool = False, docs: str | Path = "docs") -> Path:
    """Re-run (optionally) and redraw one section of ``DOCS/results.md``; returns the page.

    Args:
        name: a key of :data:`SECTIONS`.
        run: run the experiment again first (writes ``DOCS/results/NAME.json``); otherwise
            redraw from the saved file.
        docs: the documentation folder (default ``docs``, relative to the working directory).
    """
    if name not in SECTIONS:
        raise ValueError(f"name must be one of {sorted(SECTIONS)}, got {name!r}")
    section = SECTIONS[name]
    docs = Path(docs)
    page_path = docs / "results.md"
    figures = docs / "results"
    json_path = figures / f"{name}.json"
    if run:
        figures.mkdir(parents=True, exist_ok=True)
        # The path is written relative to the working directory so that the recorded command
        # can be pasted as it is.
        section.run([*section.arguments, "--json", json_path.as_posix()])
    block = section.render(json_path, figures, "results/")
    page_path.write_text(replace_block(page_path.read_text(encoding="utf-8"), name, block))
    return page_path


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry: regenerate the named sections (default all)."""
    parser = argparse.ArgumentParser(
        prog="python -m repro.results",
        description="Redraw the generated blocks of docs/results.md (tables and plots) from "
        "the saved results, or re-run the experiments first with --run.",
    )
    parser.add_argument(
        "sections", nargs="*", metavar="SECTION", help=f"any of {', '.join(SECTIONS)} (default all)"
    )
    parser.add_argument("--run", action="store_true", help="re-run the experiments first")
    parser.add_argument("--docs", default="docs", help="documentation folder (default docs)")
    arguments = parser.parse_args(argv)
    unknown = sorted(set(arguments.sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    for name in arguments.sections or SECTIONS:
        print(regenerate(name, run=arguments.run, docs=arguments.docs))


if __name__ == "__main__":
    main()
