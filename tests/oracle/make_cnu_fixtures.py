"""Write the CNU parity fixture by running the reference, unaiverse 0.1.31 (CPU, torch 2.13).

This script imports only the reference's CNU modules, never ours. It needs an environment with
torch and the unaiverse wheel installed without its dependencies (its package ``__init__``
imports far more than the CNU files, so the loader below registers empty namespace packages
and imports ``unaiverse.modules.cnu.*`` directly):

    pip download --no-deps unaiverse==0.1.31        # the cp311 wheel
    pip install --no-deps unaiverse-0.1.31-*.whl    # into a scratch environment with torch
    python tests/oracle/make_cnu_fixtures.py        # from the root of this repository

It writes ``tests/oracle/fixtures/cnu.pt`` (``torch.load(path, weights_only=True)``), read by
``test_cnu_parity.py``. Everything is seeded, so a rerun writes the same values.

Contents:

- ``cases``: a list of dicts, one per run: ``key``, ``layer`` (``"linear"``/``"conv"``),
  ``kwargs`` (the constructor arguments, identical for ours), ``batch``, ``dtype``, ``seed``
  (``torch.manual_seed`` right before construction), ``steps``, ``stream`` (the key of its
  inputs) and ``state`` (the reference state_dict as ``[name, shape, dtype]`` triples).
- ``init/<n>``: M and K after construction, flattened and concatenated; cases whose
  initialisation draws the same shapes share a seed and an entry (the case's ``init``).
- ``<key>/check``: one row per checkpoint step (``CHECKPOINTS``, counted from 1): output and
  input gradient (linear only), then the state after the SGD step, all flattened, in
  state_dict order (``scrambling_count`` included).
- ``<key>/finger``: one row per step: fingerprints Σ wᵢ vᵢ of the output, the input gradient,
  M, K, μ, η and Σ scrambling_count, with the weights of ``fingerprint_weights`` (integers for
  the counters, so those sums are exact).
- ``<key>/eval``: the output of one evaluation-mode forward on the stream's ``eval_x`` after
  the last step.
- ``<stream>/x``, ``<stream>/target``, ``<stream>/eval_x``: the inputs, per step.
- ``psi/<mode>/<shape>/x`` and ``…/out``: ψ on a few shapes (normalised).

The training step, for every step t: ``optimiser.zero_grad()``, ``out = layer(x_t)``,
``mse_loss(out, target_t).backward()``, record, ``SGD(lr=0.1).step()``, record the state.
"""

from __future__ import annotations

import importlib.util
import itertools
import pathlib
import sys
import types

import torch
import torch.nn.functional as F

LINEAR_STEPS = 60
CONV_STEPS = 20
CHECKPOINTS = (2, 60)
CONV_CHECKPOINTS = (20,)
LR = 0.1
# Arguments that change no random draw of the initialisation.
INIT_INDEPENDENT = {
    "delta", "gamma_alpha", "tau_alpha", "tau_mu", "tau_eta", "upd_m", "upd_k", "beta_k",
    "scramble", "psi_fn", "stride", "padding", "padding_mode", "dilation",
}  # fmt: skip
OUT = pathlib.Path(__file__).resolve().parent / "fixtures" / "cnu.pt"


def load_reference():
    root = pathlib.Path(importlib.util.find_spec("unaiverse").submodule_search_locations[0])
    for name, path in (("unaiverse", root), ("unaiverse.modules", root / "modules")):
        if name not in sys.modules:
            stub = types.ModuleType(name)
            stub.__path__ = [str(path)]
            sys.modules[name] = stub
    from unaiverse.modules.cnu.layers import Conv2d, LinearCNU
    from unaiverse.modules.cnu.psi import psi

    return LinearCNU, Conv2d, psi


def fingerprint_weights(n: int, integer: bool = False) -> torch.Tensor:
    """Deterministic weights for the per-step fingerprints (shared with the replay test)."""
    if integer:
        return (torch.arange(n, dtype=torch.float64) % 7) + 1
    return torch.cos(torch.arange(n, dtype=torch.float64) * 1.3 + 0.5)


def fingerprint(tensor: torch.Tensor | None, integer: bool = False) -> float:
    if tensor is None:
        return 0.0
    flat = tensor.detach().to(torch.float64).flatten()
    return float((flat * fingerprint_weights(flat.numel(), integer)).sum())


def linear_stream(batch: int, steps: int, seed: int) -> dict[str, torch.Tensor]:
    """N(0, I) + 3 e_{floor(t/15) mod 6}: the mean jumps to a new axis every 15 steps."""
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.randn(3, 6, generator=generator, dtype=torch.float64)
    x = torch.randn(steps, batch, 6, generator=generator, dtype=torch.float64)
    for t in range(steps):
        x[t, :, (t // 15) % 6] += 3.0
    target = torch.tanh(x @ mixing.t())
    eval_x = torch.randn(batch, 6, generator=generator, dtype=torch.float64)
    # Rounded to float32 once, so that float32 and float64 runs see the same inputs.
    return {"x": x.float(), "target": target.float(), "eval_x": eval_x.float()}


def conv_stream(batch: int, steps: int, seed: int) -> dict[str, torch.Tensor]:
    """Images N(0, 1) + 2 on one channel that changes every 5 steps."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(steps, batch, 3, 10, 10, generator=generator, dtype=torch.float64)
    for t in range(steps):
        x[t, :, (t // 5) % 3] += 2.0
    eval_x = torch.randn(batch, 3, 10, 10, generator=generator, dtype=torch.float64)
    return {"x": x.float(), "eval_x": eval_x.float()}


def conv_target(out_shape: torch.Size, step: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1000 + step)
    return torch.tanh(torch.randn(out_shape, generator=generator, dtype=torch.float64))


def linear_cases() -> list[dict]:
    cases = []
    pairs = [(None, "ad_hoc_WTA"), (None, "grad_WTA"), (None, None), ("WTA", "ad_hoc_WTA")]
    pairs.append(("WTA", "grad_WTA"))
    common = {"gamma_alpha": 5.0, "tau_alpha": 0.9, "tau_mu": 4, "tau_eta": 6, "beta_k": 0.05}
    grid = itertools.product((True, False), (True, False), pairs, (False, True), (1, 4), (1, 3))
    for shared, bias, (upd_m, upd_k), scramble, batch, delta in grid:
        if scramble and upd_k != "ad_hoc_WTA":
            continue
        kwargs = {
            "in_features": 6, "out_features": 3, "bias": bias, "shared_keys": shared,
            "key_mem_units": 5, "delta": delta, "upd_m": upd_m, "upd_k": upd_k,
            "scramble": scramble, **common,
        }  # fmt: skip
        cases.append({"layer": "linear", "kwargs": kwargs, "batch": batch, "dtype": "float32"})
    for psi_fn, key_size in (("sign", None), ("resize1d", 4), ("resize1d", 9)):
        for batch in (1, 4):
            kwargs = {
                "in_features": 6, "out_features": 3, "key_mem_units": 5, "delta": 2,
                "psi_fn": psi_fn, "key_size": key_size, "scramble": True, **common,
            }  # fmt: skip
            cases.append({"layer": "linear", "kwargs": kwargs, "batch": batch, "dtype": "float32"})
    for batch, (upd_m, upd_k, scramble) in itertools.product(
        (1, 4), (("WTA", "ad_hoc_WTA", True), (None, "grad_WTA", False))
    ):
        kwargs = {
            "in_features": 6, "out_features": 3, "key_mem_units": 5, "delta": 3,
            "upd_m": upd_m, "upd_k": upd_k, "scramble": scramble, **common,
        }  # fmt: skip
        cases.append({"layer": "linear", "kwargs": kwargs, "batch": batch, "dtype": "float64"})
    return cases


def conv_cases() -> list[dict]:
    common = {
        "in_channels": 3, "out_channels": 4, "kernel_size": 3, "key_mem_units": 5, "delta": 2,
        "gamma_alpha": 5.0, "tau_alpha": 0.9, "tau_mu": 4, "tau_eta": 6, "beta_k": 0.05,
    }  # fmt: skip
    variants = [
        {"psi_fn": "resize2d", "scramble": True},
        {"psi_fn": "resize2d_sign", "key_size": (3, 4, 4)},
        {"psi_fn": "resize2d", "stride": 2, "padding": 1},
        {"psi_fn": "resize2d", "padding": 2, "padding_mode": "reflect", "dilation": 2},
        {"psi_fn": "resize2d", "shared_keys": False, "bias": False, "scramble": True},
        {"psi_fn": "identity", "key_size": 300, "upd_m": None, "upd_k": "grad_WTA"},
        {"psi_fn": "sign", "key_size": 300, "delta": 1},
        {"psi_fn": "resize2d", "padding": "same", "upd_m": None, "upd_k": None},
    ]
    cases = []
    for variant, batch in itertools.product(variants, (1, 3)):
        kwargs = {**common, **variant}
        cases.append({"layer": "conv", "kwargs": kwargs, "batch": batch, "dtype": "float32"})
    return cases


def state_rows(layer) -> list[torch.Tensor]:
    return [tensor.detach().flatten() for tensor in layer.state_dict().values()]


def run_case(case, reference_classes, streams, fixture) -> None:
    linear_class, conv_class, _ = reference_classes
    dtype = getattr(torch, case["dtype"])
    torch.manual_seed(case["seed"])
    if case["layer"] == "linear":
        layer = linear_class(**case["kwargs"])
        steps, checkpoints = LINEAR_STEPS, CHECKPOINTS
    else:
        layer = conv_class(**case["kwargs"])
        steps, checkpoints = CONV_STEPS, CONV_CHECKPOINTS
    layer = layer.to(dtype)
    layer.train()
    key = case["key"]
    case["state"] = [
        [name, list(tensor.shape), str(tensor.dtype).removeprefix("torch.")]
        for name, tensor in layer.state_dict().items()
    ]
    init = torch.cat([layer.M.detach().flatten(), layer.K.detach().flatten()])
    if case["init"] in fixture:
        assert torch.equal(fixture[case["init"]], init), "same seed, same shapes, other init"
    fixture[case["init"]] = init
    stream = streams[case["stream"]]
    optimiser = torch.optim.SGD(layer.parameters(), lr=LR)
    checks, fingers = [], []
    for t in range(steps):
        x = stream["x"][t].to(dtype).requires_grad_()
        optimiser.zero_grad()
        out = layer(x)
        if case["layer"] == "linear":
            target = stream["target"][t]
        else:
            target = conv_target(out.shape, t)
        F.mse_loss(out, target.to(dtype)).backward()
        optimiser.step()
        fingers.append(
            [
                fingerprint(out),
                fingerprint(x.grad),
                fingerprint(layer.M),
                fingerprint(layer.K),
                fingerprint(getattr(layer, "mu", None), integer=True),
                fingerprint(getattr(layer, "eta", None), integer=True),
                float(layer.scrambling_count.sum()),
            ]
        )
        if t + 1 in checkpoints:
            # Convolution outputs are large: only their fingerprints are kept.
            row = [out.detach().flatten(), x.grad.flatten()] if case["layer"] == "linear" else []
            row += state_rows(layer)
            checks.append(torch.cat([r.to(torch.float64) for r in row]))
    fixture[f"{key}/check"] = torch.stack(checks).to(dtype)
    fixture[f"{key}/finger"] = torch.tensor(fingers, dtype=torch.float32)
    layer.eval()
    with torch.no_grad():
        fixture[f"{key}/eval"] = layer(stream["eval_x"].to(dtype)).flatten()


def main() -> None:
    reference = load_reference()
    fixture: dict = {}
    streams: dict[str, dict[str, torch.Tensor]] = {}
    for batch in (1, 4):
        streams[f"stream/linear/b{batch}"] = linear_stream(batch, LINEAR_STEPS, seed=10 + batch)
    for batch in (1, 3):
        streams[f"stream/conv/b{batch}"] = conv_stream(batch, CONV_STEPS, seed=20 + batch)
    cases = linear_cases() + conv_cases()
    structures: dict[tuple, int] = {}
    for number, case in enumerate(cases):
        case["key"] = f"case{number:03d}"
        # Cases whose initial M and K have the same shapes share a seed and one stored init.
        kept = [(n, v) for n, v in sorted(case["kwargs"].items()) if n not in INIT_INDEPENDENT]
        structure = (case["layer"], case["dtype"], *kept)
        structures.setdefault(structure, len(structures))
        case["seed"] = 1000 + structures[structure]
        case["init"] = f"init/{structures[structure]:02d}"
        case["stream"] = f"stream/{case['layer']}/b{case['batch']}"
        case["steps"] = LINEAR_STEPS if case["layer"] == "linear" else CONV_STEPS
        run_case(case, reference, streams, fixture)
    for name, stream in streams.items():
        for field, tensor in stream.items():
            fixture[f"{name}/{field}"] = tensor
    psi = reference[2]
    generator = torch.Generator().manual_seed(7)
    for mode, shape, key_size in [
        ("resize1d", (3, 10), 4),
        ("resize1d", (2, 5), 13),
        ("resize1d", (2, 7), 7),
        ("sign", (3, 2, 4), 8),
        ("resize2d", (2, 3, 32, 32), 75),
        ("resize2d", (2, 3, 10, 10), 75),
        ("resize2d", (1, 2, 7, 9), 40),
        ("resize2d", (2, 1, 5, 5), 30),
        ("resize2d", (2, 2, 6, 6), 30),
        ("resize2d_sign", (2, 3, 10, 10), 48),
    ]:
        x = torch.randn(shape, generator=generator)
        if mode == "sign":
            x[0, 0, 0] = 0.0
        name = f"psi/{mode}/{'x'.join(map(str, shape))}/{key_size}"
        fixture[f"{name}/x"] = x
        fixture[f"{name}/out"] = psi(x, mode, key_size=key_size)
    fixture["cases"] = cases
    fixture["checkpoints"] = {"linear": list(CHECKPOINTS), "conv": list(CONV_CHECKPOINTS)}
    fixture["lr"] = LR
    OUT.parent.mkdir(exist_ok=True)
    torch.save(fixture, OUT)
    print(f"wrote {len(cases)} cases to {OUT} ({OUT.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
