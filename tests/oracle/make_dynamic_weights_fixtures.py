"""Write the reference fixture for the tensor composers and the dynamic convolutions.

This script runs against the **reference** DyNA (github.com/Sombressoul/dyna, commit
01c17ea0ef52e66f48a5e09090db56ad29e190be, CPU, torch 2.13), never against ours: both packages
are imported as ``dyna``, so the oracle environment must not have ours installed. From the root
of this repository:

    PYTHONPATH=<reference checkout> python tests/oracle/make_dynamic_weights_fixtures.py

It writes ``tests/oracle/fixtures/dynamic_weights.pt``, a flat ``{str: tensor}`` dict (load it
with ``torch.load(path, weights_only=True)``) read by ``test_dynamic_weights_parity.py``. The
cases are listed in ``dynamic_weights_cases.py``. Per case ``<name>/<dtype>``:

- ``state_dict.<key>``: the module's state_dict right after ``torch.manual_seed(seed)`` and
  construction (``seed`` = 1000 + the case's position), with the Delta convolutions' composer
  filters multiplied by ``scale_weights`` (their initial std of 1e-4 makes the composer almost
  linear);
- ``context`` and, for convolutions, ``x``: seeded normal inputs (contexts times 1.5);
- ``y``: the output; the loss is ``sum(y * cos(0.11 i + 0.2))`` over the flattened output, the
  weights cast to y's dtype;
- ``grad.<name>``: the gradients of the loss for every parameter, ``grad_context`` and
  ``grad_x``;
- for bfloat16 cases also ``ref64/...``: the same fields computed by the reference in float64
  from the bfloat16 parameters and inputs, the yardstick of the "no less accurate" criterion.

Eval cases of the Delta classes run the reference with ``rank_noise_strength = 0`` (its eval
mode draws rank noise otherwise); training cases call ``torch.manual_seed(1234)`` right before
the forward.
"""

from __future__ import annotations

import math
import sys
import zlib
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from dynamic_weights_cases import CASES  # noqa: E402

OUT = HERE / "fixtures" / "dynamic_weights.pt"


def normal(key: str, shape, dtype: torch.dtype, scale: float = 1.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    return (torch.randn(tuple(shape), generator=gen, dtype=torch.float64) * scale).to(dtype)


def loss_weights(numel: int, dtype: torch.dtype) -> torch.Tensor:
    i = torch.arange(numel, dtype=torch.float64)
    return torch.cos(0.11 * i + 0.2).to(dtype)


def build(ref, case: dict, dtype: torch.dtype, seed: int) -> torch.nn.Module:
    kwargs = dict(case.get("kwargs", {}))
    if case["kind"] in ("TCD", "DCD") and not case.get("train", False):
        kwargs["rank_noise_strength"] = 0.0
    classes = {
        "TCD": ref.lib.TensorComposerDelta,
        "TCM": ref.lib.TensorComposerMobius,
        "DCD": ref.module.DynamicConv2DDelta,
        "DCM": ref.module.DynamicConv2DMobius,
    }
    torch.manual_seed(seed)
    module = classes[case["kind"]](*case["args"], **kwargs, dtype_weights=dtype)
    if "scale_weights" in case:
        with torch.no_grad():
            module.weights_lib.weights.mul_(case["scale_weights"])
    return module.train(case.get("train", False))


def run(module, case, inputs):
    params = dict(module.named_parameters())
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    if case.get("train", False):
        torch.manual_seed(1234)
    y = module(*leaves)
    (y * loss_weights(y.numel(), y.dtype).view(y.shape)).sum().backward()
    out = {"y": y.detach()}
    for name, param in params.items():
        out[f"grad.{name}"] = param.grad.detach()
    names = ["grad_x", "grad_context"] if len(leaves) == 2 else ["grad_context"]
    for name, leaf in zip(names, leaves, strict=True):
        out[name] = leaf.grad.detach()
    return out


def main() -> None:
    import dyna as ref

    if hasattr(ref, "__version__"):  # ours has a version, the reference has none
        raise SystemExit("this script must import the reference DyNA, not ours (see the docstring)")
    import dyna.lib
    import dyna.module

    data: dict[str, torch.Tensor] = {}
    for position, case in enumerate(CASES):
        name = case["name"]
        dtype = getattr(torch, case["dtype"])
        module = build(ref, case, dtype, 1000 + position)
        for key, value in module.state_dict().items():
            data[f"{name}/state_dict.{key}"] = value.detach().clone()
        lc = case["args"][2] if case["kind"] in ("DCD", "DCM") else case["args"][1]
        batch = case.get("context_batch", case.get("batch"))
        context_dtype = getattr(torch, case.get("context_dtype", case["dtype"]))
        context = normal(f"{name}/context", (batch, lc), context_dtype, 1.5)
        data[f"{name}/context"] = context
        inputs = [context]
        if "x_shape" in case:
            x = normal(
                f"{name}/x", case["x_shape"], getattr(torch, case.get("x_dtype", case["dtype"]))
            )
            data[f"{name}/x"] = x
            inputs = [x, context]
        for key, value in run(module, case, inputs).items():
            data[f"{name}/{key}"] = value
        if dtype == torch.bfloat16:
            module64 = build(ref, case, torch.float64, 1000 + position)
            module64.load_state_dict(module.state_dict())
            for key, value in run(module64, case, [t.to(torch.float64) for t in inputs]).items():
                data[f"{name}/ref64/{key}"] = value
    OUT.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, OUT)
    size = sum(t.numel() * t.element_size() for t in data.values())
    print(f"wrote {len(data)} tensors ({size / 1024:.0f} KiB of data) to {OUT}")
    assert math.isfinite(size)


if __name__ == "__main__":
    main()
