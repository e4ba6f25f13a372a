"""The README's promises: the five-line example runs, and its two commands exist."""

import re
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_five_line_example_runs_and_normalises_the_gradient(capsys):
    code = re.search(r"## Five lines\n\n```python\n(.*?)```", README, re.S).group(1)
    assert len([line for line in code.splitlines() if line.strip()]) == 5
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert "torch.Size([4, 16])" in capsys.readouterr().out
    # bgn_input=True: every sample's input gradient has norm sqrt(16) up to BGN's eps.
    torch.testing.assert_close(
        namespace["x"].grad.norm(dim=1), torch.full((4,), 4.0), rtol=1e-3, atol=0
    )


def test_exactly_two_setup_commands_which_exist():
    block = re.search(r"## Set up and run\n.*?```bash\n(.*?)```", README, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["bash scripts/run.sh", "bash scripts/test.sh"]
    for command in commands:
        assert (ROOT / command.split()[1]).is_file()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in ci


def test_import_is_cheap_and_exposes_version():
    # Beyond torch itself, importing dyna only defines functions and classes: in particular
    # it does not pull in the compiler stack (torch._dynamo, sympy), which costs about a second.
    code = "import sys, torch, dyna; print(dyna.__version__, 'torch._dynamo' in sys.modules)"
    version, dynamo_imported = subprocess.check_output(
        [sys.executable, "-c", code], text=True
    ).split()
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    assert dynamo_imported == "False"


def test_import_dyna_defers_torch_until_a_name_is_used():
    # The dyna command must start without importing torch (a Ctrl-C during that import would
    # otherwise print a traceback); every public name still resolves, from its sub-package.
    code = (
        "import sys, dyna; before = 'torch' in sys.modules; "
        "names = [getattr(dyna, name) for name in dyna.__all__]; "
        "print(before, 'torch' in sys.modules, set(dir(dyna)) >= set(dyna.__all__))"
    )
    output = subprocess.check_output([sys.executable, "-c", code], text=True).split()
    assert output == ["False", "True", "True"]
    import dyna
    import dyna.functional
    import dyna.module

    assert dyna.siglog is dyna.functional.siglog and dyna.HORNStep is dyna.module.HORNStep
