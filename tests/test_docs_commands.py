"""Every `dyna` command shown in a fenced block of the README or docs/ still works as written.

The commands are extracted from the pages, not copied here, so a renamed option, a removed
command, an unknown experiment or ``--set`` key, or an option an experiment refuses fails this
test the day it happens. ``dyna list`` commands run for real; ``dyna train`` commands are parsed
by the real parser and resolved by the engine (configuration, keys, ranges, device) without
training; ``dyna eval`` commands are parsed. Placeholders in capitals (``EXPERIMENT``, ``SEED``)
take a sample value. The setup's last line is the activation line the README shows.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from dyna.cli import TRAIN_OPTIONS, _parser, main
from dyna.experiments import get_experiment
from dyna.train.config import RunOptions
from dyna.train.experiment import SupervisedExperiment
from dyna.train.launch import resolve_config

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PLACEHOLDERS = {"EXPERIMENT": "horn-smnist", "SEED": "0"}
_COMMAND = re.compile(
    r"^(?:dyna|python -m dyna|(?:torchrun|python -m torch\.distributed\.run)"
    r"(?: --?[\w-]+(?:[ =]\S+)?)* -m dyna) "
)


def _fenced_commands() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        text = page.read_text()
        for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, re.S | re.M):
            for line in block.replace("\\\n", " ").splitlines():
                command = re.split(r"\s#", line)[0].strip()
                if _COMMAND.match(command):
                    found.append((page.name, " ".join(command.split())))
    return found


COMMANDS = _fenced_commands()


def test_the_pages_show_commands_of_every_kind():
    kinds = {re.sub(_COMMAND, "", command).split()[0] for _, command in COMMANDS}
    assert {"list", "train", "eval"} <= kinds
    assert any("torch.distributed.run" in command for _, command in COMMANDS)


@pytest.mark.parametrize(("page", "command"), COMMANDS, ids=[c for _, c in COMMANDS])
def test_a_documented_command_works_as_written(page, command, tmp_path, capsys):
    words = shlex.split(command)
    for placeholder, value in PLACEHOLDERS.items():
        words = [word.replace(placeholder, value) for word in words]
    arguments = words[words.index("dyna") + 1 :] if words[0] != "dyna" else words[1:]
    if arguments[0] == "list":
        assert main(arguments) == 0, capsys.readouterr().err
        return
    parsed = _parser().parse_args(arguments)  # a UsageError names what is wrong
    if parsed.command != "train":
        return
    experiment = get_experiment(parsed.experiment)
    params = experiment.parse_assignments(dict(parsed.assignments))
    options = RunOptions(
        training={
            attribute: getattr(parsed, attribute)
            for _, attribute, _, _ in TRAIN_OPTIONS
            if getattr(parsed, attribute) is not None
        },
        device=parsed.device,
        data=parsed.data,
        overwrite=parsed.overwrite,
    )
    if not parsed.resume and isinstance(experiment, SupervisedExperiment):
        resolve_config(experiment, params, tmp_path / "run", options)


def test_the_setup_prints_the_activation_line_the_readme_shows():
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    printed = re.findall(r'^echo "setup: .*run: (source \$venv/bin/activate)"$', setup, re.M)
    assert printed == ["source $venv/bin/activate"]
    assert re.search(r"^venv=\$\{DYNA_VENV:-\.venv\}$", setup, re.M)
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## The dyna command\n.*?```bash\n(.*?)```", readme, re.S).group(1)
    assert block.splitlines()[0].split("#")[0].strip() == "source .venv/bin/activate"
