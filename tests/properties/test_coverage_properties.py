"""Every export of dyna and its subpackages has property tests and invalid-argument tests.

Each property module lists the exports it covers in a ``COVERED`` set; a new export without
property tests makes this test fail.
"""

import ast
from pathlib import Path

import dyna
import dyna.data
import dyna.functional
import dyna.lib
import dyna.models
import dyna.module
import dyna.train

HERE = Path(__file__).parent

# Plain constants and the version string: nothing to call, nothing to check beyond their values.
CONSTANTS = {"__version__"}
# Public functions exported by a module rather than a package: the CNU key projections.
MODULE_EXPORTS = {"psi", "resize1d", "resize2d"}


def _exports() -> set[str]:
    names = set()
    packages = (dyna, dyna.functional, dyna.lib, dyna.module, dyna.data, dyna.train, dyna.models)
    for package in packages:
        names |= set(package.__all__)
    return (names | MODULE_EXPORTS) - CONSTANTS


def _covered(path: Path) -> set[str]:
    """The ``COVERED`` set literal of a test module, read without importing it."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "COVERED" for target in node.targets
        ):
            return set(ast.literal_eval(node.value))
    return set()


def test_every_export_has_property_tests():
    modules = [p for p in HERE.glob("test_*_properties.py") if p.name != Path(__file__).name]
    covered = set().union(*(_covered(path) for path in modules))
    assert covered == _exports()


def test_every_export_has_invalid_argument_tests():
    covered = _covered(HERE / "test_invalid_argument_properties.py")
    # Constants, plain data containers and the loaders' exception class (its only argument is
    # its message) take no arguments worth validating.
    containers = {"STREAM_NAMES", "STREAM_ORDERS", "ContinualStream", "StreamSplit", "DataError"}
    assert covered | containers | {"ContinualMetrics"} == _exports()


def test_every_export_is_in_a_covered_set_of_an_existing_test():
    # The names in COVERED must be exports (no stale entries after a rename).
    for path in HERE.glob("test_*_properties.py"):
        assert _covered(path) <= _exports() | CONSTANTS, path.name
