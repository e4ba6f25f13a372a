"""The README's "every X" claims, tied to the code: each list it names is found from the code.

A claim of the form "every layer ..." or "... except A, B" is checked here against the package
(its exports, its ``autograd.Function`` classes) and against the test that backs it, so a new
layer, function or first-order backward makes the text fail until it names it.
"""

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import torch
from torch import nn
from torch.autograd.function import once_differentiable

import dyna.functional
import dyna.lib
import dyna.module
from dyna.functional._autograd import first_order_backward
from tests.ecosystem import test_export_ecosystem, test_vmap_ecosystem
from tests.ecosystem.layers import layer_cases

ROOT = Path(__file__).resolve().parents[1]
README = " ".join((ROOT / "README.md").read_text().split())  # one line: claims wrap freely

# The public name through which each autograd.Function of the package is reached.
REACHED_THROUGH = {
    "SigLog": "siglog",
    "SigLogParametric": "siglog_parametric",
    "BackwardGradientNormalization": "backward_gradient_normalization",
    "_GradientNormalizationMultiplicity": "backward_gradient_normalization",
    "LogProportionalError": "log_proportional_error",
    "HORNScan": "horn_scan",
    "HORNScanTriton": "horn_scan",
    "_OutputSpaceBlend": "cnu_linear",
    "_Stabilize": "SignalStabilizationCompressor",
    "_OrientedValue": "TensorComposerDelta",
    "_LiftSmall": "TensorComposerDelta",
    "_DecorrelateMix": "TensorComposerDelta",
    "_MobiusProjection": "TensorComposerMobius",
}


def _claim(pattern: str) -> set[str]:
    """The backticked names in the README clause that ``pattern``'s group captures."""
    match = re.search(pattern, README)
    assert match, f"README no longer states: {pattern}"
    return set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", match.group(1)))


def _autograd_functions() -> dict[str, type]:
    """Every torch.autograd.Function class defined in the package's first three layers."""
    found = {}
    for package in (dyna.functional, dyna.lib, dyna.module):
        for info in pkgutil.iter_modules(package.__path__):
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            for name, value in vars(module).items():
                if (
                    inspect.isclass(value)
                    and issubclass(value, torch.autograd.Function)
                    and value.__module__ == module.__name__
                ):
                    found[name] = value
    return found


def _is_first_order(function: type) -> bool:
    """Whether the backward is wrapped by once_differentiable or first_order_backward."""
    wrappers = {inspect.getfile(once_differentiable), inspect.getfile(first_order_backward)}
    return function.backward.__code__.co_filename in wrappers


def test_every_autograd_function_is_reached_through_a_named_public_entry():
    assert set(_autograd_functions()) == set(REACHED_THROUGH)


def test_the_first_order_backwards_named_are_those_of_the_code():
    named = _claim(r"\(the first-order ones, (.*?), refuse a second derivative")
    first_order = {
        REACHED_THROUGH[name]
        for name, function in _autograd_functions().items()
        if _is_first_order(function)
    }
    assert named == first_order
    # and each of them is refused a second derivative by the robustness tests
    from tests.robustness import test_custom_gradients_robustness as robustness

    once = set(robustness.ONCE)
    assert {"siglog", "siglog_parametric", "horn_scan", "cnu_linear_dense", "stabilize"} <= once
    assert {"delta_oriented_fields", "delta_decorrelate_mix"} <= once


def test_the_vmap_exceptions_named_are_the_stateless_functions_that_do_not_vmap():
    named = _claim(r"under `torch\.func\.vmap` except (.*?), `torch\.export`") - {"_ref"}
    assert named == set(test_vmap_ecosystem.NOT_VMAPPABLE)
    # "the stateless functions": every function dyna.functional exports is either checked
    # against a loop under vmap or named as an exception
    stateless = {
        name
        for name in dyna.functional.__all__
        if inspect.isfunction(getattr(dyna.functional, name))
    }
    checked = set(test_vmap_ecosystem.CASES) | set(test_vmap_ecosystem.NOT_VMAPPABLE)
    assert stateless <= checked, stateless - checked


def test_every_layer_is_compiled_by_the_compile_test():
    assert "every layer under `torch.compile`" in README
    layers = {
        name
        for package in (dyna.lib, dyna.module)
        for name in package.__all__
        if inspect.isclass(getattr(package, name)) and issubclass(getattr(package, name), nn.Module)
    }
    assert layers == set(layer_cases())


def test_the_exported_layers_named_are_those_the_export_test_exports():
    assert "`torch.export` (the HORN network and the dynamic convolutions)" in README
    exported = {name.split("_")[0] for name in test_export_ecosystem.CASES}
    assert exported == {"HORNSeqNetwork", "DynamicConv2DDelta", "DynamicConv2DMobius"}


def test_each_vmap_exception_is_stated_on_a_family_page():
    sentences = [
        sentence
        for path in (ROOT / "docs").glob("*.md")
        for sentence in " ".join(path.read_text().split()).split(". ")
    ]
    for name in test_vmap_ecosystem.NOT_VMAPPABLE:
        assert any(f"`{name}`" in s and "vmap" in s and " not" in s for s in sentences), name
