"""Write the reference fixture for the functional core and the signal stabilisation compressor.

This script runs against the **reference** DyNA (github.com/Sombressoul/dyna, commit
01c17ea0ef52e66f48a5e09090db56ad29e190be, CPU, torch 2.13), never against ours: both packages
are imported as ``dyna``, so the oracle environment must not have ours installed. From the root
of this repository:

    PYTHONPATH=<reference checkout> python tests/oracle/make_reference_fixtures.py

It writes ``tests/oracle/fixtures/functional.pt``: a flat ``{str: tensor}`` dict saved with
``torch.save`` (load it with ``torch.load(path, weights_only=True)``), read by
``test_functional_parity.py``. Every input is drawn from a generator seeded by its key, so a
rerun writes the same values.

Key layout: ``<function>/<dtype>/<param>=<value>/.../<field>``. A case is the key without its
last segment; the parameters are the ``name=value`` segments. Fields shared by several cases
(inputs ``x``, ``y``, ``alpha`` and the upstream gradient ``g``) are stored once, at the
shortest prefix they apply to; a reader looks a field up from the case towards the root.

Cases:

- ``siglog``: shapes 7, 3x5, 2x3x4, 0 and a 0-d tensor; float64/float32/bfloat16; fields ``y``,
  ``grad_x`` (surrogate gradient for the upstream ``g``).
- ``siglog_parametric``: alpha ``default`` (no argument), ``py0.5`` (Python number), ``t0d``
  (0-d tensor in x's dtype), ``t1d`` ([1] tensor in x's dtype), ``t32`` (0-d float32 tensor;
  not for float32 x, where it equals ``t0d``); ``smoothing``/``smooth_grad`` given or
  ``default``. Per alpha: ``y`` (it does not depend on the smoothing) and, for tensor alphas,
  ``alpha``; per smoothing mode: ``grad_x`` and, for tensor alphas, ``grad_alpha_ref`` (the
  reference's alpha gradient: its step is relative but its divisor is 2h, and in non-smooth mode
  its step is always the class attribute 1e-3). The reference cannot back-propagate with a
  Python alpha; for those cases ``grad_x`` comes from the same call with ``torch.tensor(alpha)``
  (default dtype, the conversion the reference applies to a Python alpha), which gives the same
  x-gradient.
- ``backward_gradient_normalization``: shapes 7, 3x5 (one all-zero gradient slice), 2x3x4 (one
  large slice), 2x0; eps default, 1e-3, 1. Field ``grad_x`` (the forward is the identity, checked
  here and not stored).
- ``log_proportional_error``: shapes 7, 3x5, 2x3x4 (element 0 has x == y); reductions none,
  mean, sum. Fields ``err``, ``grad_x``, ``grad_y_ref`` (the reference's incorrect
  y-gradient).
- ``noisein``: float32/float64, shapes 3x5 and 2x3x4, rates 0.25, 0.5, 1.5, two seeds each;
  ``torch.manual_seed(seed)`` is called right before the function. Fields ``y``, ``grad_x``.
- ``noiseover``: float64/float32/bfloat16, shapes 7, 3x5, 2x3x4, rates 0.1 and 1, seeded as
  noisein. Fields ``y``, ``grad_x``.
- ``ssc`` (``SignalStabilizationCompressor``): x of shape 2x3x5; both modes, ``trainable`` off
  and on, float64/float32/bfloat16/float16, default ``leak``/``eps`` and ``leak=0.05``/
  ``eps=0.001``. Each case stacks the eight combinations of the BGN flags along a new leading
  axis, index ``4 * bgn_input + 2 * bgn_mid + bgn_output``: ``y`` and ``grad_x`` are
  [8, 2, 3, 5], ``grad_leak_scale`` (trainable only) is [8, 1]; ``state_dict.leak_scale``
  (trainable only) is the module's state_dict entry, the same for all eight.

Not recorded because the reference fails (ours is tested against its own rules elsewhere):
0-d and empty-first-axis tensors in ``backward_gradient_normalization`` (IndexError in
backward), empty tensors in ``log_proportional_error`` (``min()`` of an empty tensor),
``noisein`` in bfloat16/float16 (index-put dtype mismatch) and on 1-D or empty tensors,
``noiseover`` on tensors with fewer than two elements (NaN std), backward through
``siglog_parametric`` with a Python alpha.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace

import torch

# Filled by load_reference() (the module itself imports no ``dyna``, so that collecting it, e.g.
# by pytest's doctest run in our environment, neither imports the reference nor fails).
ref = SimpleNamespace()


def load_reference() -> None:
    import dyna

    if hasattr(dyna, "__version__"):  # ours has a version, the reference has none
        raise SystemExit("this script must import the reference DyNA, not ours (see the docstring)")
    from dyna import functional, module

    for name in (
        "backward_gradient_normalization",
        "log_proportional_error",
        "noisein",
        "noiseover",
        "siglog",
        "siglog_parametric",
    ):
        setattr(ref, name, getattr(functional, name))
    ref.SignalStabilizationCompressor = module.SignalStabilizationCompressor


OUT = Path(__file__).resolve().parent / "fixtures" / "functional.pt"

DTYPES = {
    "float64": torch.float64,
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
FUNCTION_DTYPES = ("float64", "float32", "bfloat16")
SHAPES: tuple[tuple[int, ...], ...] = ((7,), (3, 5), (2, 3, 4))

# Values worth hitting exactly: the sign jump at 0, the kink of siglog's surrogate at |x| = 1.
SPECIALS = (0.0, 1.0, -1.0, 0.5, -1e-3, 10.0, -0.0)


def shape_name(shape: Sequence[int]) -> str:
    return "x".join(str(n) for n in shape) if len(shape) else "scalar"


class Fixture:
    def __init__(self) -> None:
        self.data: dict[str, torch.Tensor] = {}
        self.cases: set[str] = set()

    def put(self, key: str, value: torch.Tensor) -> None:
        if key in self.data:
            raise KeyError(f"duplicate key {key}")
        self.data[key] = value.detach().clone().contiguous()

    def case(self, prefix: str, **fields: torch.Tensor | None) -> None:
        self.cases.add(prefix)
        for name, value in fields.items():
            if value is not None:
                self.put(f"{prefix}/{name}", value)


def draw(
    key: str,
    shape: Sequence[int],
    dtype: torch.dtype,
    scale: float = 1.0,
    specials: Sequence[float] = (),
) -> torch.Tensor:
    """Seeded normal values (drawn in float64, then rounded to dtype); leading specials."""
    gen = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    t = torch.randn(tuple(shape), generator=gen, dtype=torch.float64) * scale
    flat = t.view(-1)
    n = min(len(specials), flat.numel())
    if n:
        flat[:n] = torch.tensor(list(specials[:n]), dtype=torch.float64)
    return t.to(dtype)


def leaf(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone().requires_grad_(True)


def grad_of(t: torch.Tensor) -> torch.Tensor:
    return t.grad if t.grad is not None else torch.zeros_like(t)


# --------------------------------------------------------------------------------------------


def gen_siglog(fx: Fixture) -> None:
    for dname in FUNCTION_DTYPES:
        dtype = DTYPES[dname]
        for shape in (*SHAPES, (0,), ()):
            prefix = f"siglog/{dname}/shape={shape_name(shape)}"
            x = draw(prefix + "/x", shape, dtype, 2.0, SPECIALS)
            g = draw(prefix + "/g", shape, dtype)
            xl = leaf(x)
            y = ref.siglog(xl)
            y.backward(g)
            fx.case(prefix, x=x, g=g, y=y, grad_x=grad_of(xl))


def gen_siglog_parametric(fx: Fixture) -> None:
    alpha_kinds = ("default", "py0.5", "t0d", "t1d", "t32")
    modes = (
        ("default", "default"),
        ("0.001", "0"),
        ("0.01", "0"),
        ("0.001", "1"),
        ("0.01", "1"),
    )
    grid = [((3, 5), a, m) for a in alpha_kinds for m in modes]
    for shape in ((7,), (2, 3, 4), (0,), ()):
        grid += [(shape, "t0d", ("0.001", "0")), (shape, "t0d", ("0.01", "1"))]
    grid += [((7,), "default", ("default", "default")), ((7,), "py0.5", ("0.01", "1"))]

    for dname in FUNCTION_DTYPES:
        dtype = DTYPES[dname]
        for shape, kind, (sm, sg) in grid:
            if kind == "t32" and dtype == torch.float32:
                continue  # the same as t0d
            base = f"siglog_parametric/{dname}/shape={shape_name(shape)}"
            if f"{base}/x" not in fx.data:
                fx.put(f"{base}/x", draw(base + "/x", shape, dtype, 2.0, SPECIALS))
                fx.put(f"{base}/g", draw(base + "/g", shape, dtype))
            x, g = fx.data[f"{base}/x"], fx.data[f"{base}/g"]
            alpha_prefix = f"{base}/alpha={kind}"
            prefix = f"{alpha_prefix}/smoothing={sm}/smooth_grad={sg}"

            kwargs: dict[str, object] = {}
            if sm != "default":
                kwargs["smoothing"] = float(sm)
            if sg != "default":
                kwargs["smooth_grad"] = sg == "1"

            tensor_alpha = kind.startswith("t")
            if kind == "default":
                alpha_value: object = None
                alpha_for_grad = torch.tensor(1.0 / math.e)  # the default, through float32
            elif kind == "py0.5":
                alpha_value = 0.5
                alpha_for_grad = torch.tensor(0.5)
            else:
                alpha_value = {
                    "t0d": torch.tensor(0.5, dtype=dtype),
                    "t1d": torch.tensor([1.3], dtype=dtype),
                    "t32": torch.tensor(0.7, dtype=torch.float32),
                }[kind]
                alpha_for_grad = alpha_value

            # forward exactly as a user calls it; it does not depend on smoothing/smooth_grad
            if alpha_value is None:
                y = ref.siglog_parametric(x, **kwargs)
            else:
                y = ref.siglog_parametric(x, alpha_value, **kwargs)
            if f"{alpha_prefix}/y" in fx.data:
                assert torch.equal(fx.data[f"{alpha_prefix}/y"], y), prefix
            else:
                fx.case(alpha_prefix, y=y, alpha=alpha_value if tensor_alpha else None)

            # backward (the reference needs a tensor alpha for it)
            xl, al = leaf(x), leaf(alpha_for_grad)
            y2 = ref.siglog_parametric(xl, al, **kwargs)
            assert torch.equal(y2, y), prefix
            y2.backward(g)
            fx.case(
                prefix,
                grad_x=grad_of(xl),
                grad_alpha_ref=grad_of(al) if tensor_alpha else None,
            )


def gen_bgn(fx: Fixture) -> None:
    for dname in FUNCTION_DTYPES:
        dtype = DTYPES[dname]
        for shape in (*SHAPES, (2, 0)):
            base = f"backward_gradient_normalization/{dname}/shape={shape_name(shape)}"
            x = draw(base + "/x", shape, dtype)
            g64 = draw(base + "/g", shape, torch.float64)
            if shape == (3, 5):
                g64[1] = 0.0  # an all-zero slice stays zero
            if shape == (2, 3, 4):
                g64[0] *= 1e3  # slices are normalised independently
            g = g64.to(dtype)
            fx.put(f"{base}/x", x)
            fx.put(f"{base}/g", g)
            for eps in (None, 1e-3, 1.0):
                xl = leaf(x)
                y = ref.backward_gradient_normalization(xl, eps)
                assert torch.equal(y, x)  # identity forward: y is not stored
                y.backward(g)
                name = "default" if eps is None else repr(eps)
                fx.case(f"{base}/eps={name}", grad_x=grad_of(xl))


def gen_log_proportional_error(fx: Fixture) -> None:
    for dname in FUNCTION_DTYPES:
        dtype = DTYPES[dname]
        for shape in SHAPES:
            base = f"log_proportional_error/{dname}/shape={shape_name(shape)}"
            x = draw(base + "/x", shape, torch.float64, 2.0)
            y = draw(base + "/y", shape, torch.float64, 2.0)
            y.view(-1)[0] = x.view(-1)[0]  # u = 0: the sign is 0 there
            x, y = x.to(dtype), y.to(dtype)
            fx.put(f"{base}/x", x)
            fx.put(f"{base}/y", y)
            for reduction in ("none", "mean", "sum"):
                prefix = f"{base}/reduction={reduction}"
                gshape = shape if reduction == "none" else ()
                g = draw(prefix + "/g", gshape, dtype)
                xl, yl = leaf(x), leaf(y)
                err = ref.log_proportional_error(xl, yl, reduction)
                err.backward(g)
                fx.case(prefix, g=g, err=err, grad_x=grad_of(xl), grad_y_ref=grad_of(yl))


def gen_seeded_noise(
    fx: Fixture,
    name: str,
    fn: Callable[[torch.Tensor, float], torch.Tensor],
    dnames: Sequence[str],
    shapes: Sequence[tuple[int, ...]],
    rates: Sequence[float],
    seeds: Sequence[int],
) -> None:
    for dname in dnames:
        dtype = DTYPES[dname]
        for shape in shapes:
            base = f"{name}/{dname}/shape={shape_name(shape)}"
            x = draw(base + "/x", shape, dtype, 2.0)
            x = x + 0.5  # a non-zero mean
            g = draw(base + "/g", shape, dtype)
            fx.put(f"{base}/x", x)
            fx.put(f"{base}/g", g)
            for rate in rates:
                for seed in seeds:
                    xl = leaf(x)
                    torch.manual_seed(seed)
                    y = fn(xl, rate)
                    y.backward(g)
                    fx.case(f"{base}/rate={rate!r}/seed={seed}", y=y, grad_x=grad_of(xl))


def gen_ssc(fx: Fixture) -> None:
    for dname, dtype in DTYPES.items():
        base = f"ssc/{dname}"
        x = draw(base + "/x", (2, 3, 5), dtype, 2.0, SPECIALS)
        g = draw(base + "/g", (2, 3, 5), dtype)
        fx.put(f"{base}/x", x)
        fx.put(f"{base}/g", g)
        for extra in (None, (0.05, 0.001)):
            kwargs: dict[str, float] = {}
            group = base
            if extra is not None:
                kwargs = {"leak": extra[0], "eps": extra[1]}
                group += f"/leak={extra[0]!r}/eps={extra[1]!r}"
            for mode in ("gating", "dampening"):
                for trainable in (0, 1):
                    prefix = f"{group}/mode={mode}/trainable={trainable}"
                    ys, grads, leak_grads = [], [], []
                    for k in range(8):  # k = 4 * bgn_input + 2 * bgn_mid + bgn_output
                        module = ref.SignalStabilizationCompressor(
                            bgn_input=bool(k & 4),
                            bgn_mid=bool(k & 2),
                            bgn_output=bool(k & 1),
                            mode=mode,
                            trainable=bool(trainable),
                            **kwargs,
                        )
                        state = {f"state_dict.{n}": v for n, v in module.state_dict().items()}
                        xl = leaf(x)
                        y = module(xl)
                        y.backward(g)
                        ys.append(y.detach())
                        grads.append(grad_of(xl))
                        if trainable:
                            leak_grads.append(grad_of(module.leak_scale))
                    fx.case(
                        prefix,
                        y=torch.stack(ys),
                        grad_x=torch.stack(grads),
                        grad_leak_scale=torch.stack(leak_grads) if trainable else None,
                        **state,  # identical for the eight flag combinations
                    )


def main() -> None:
    load_reference()
    torch.set_default_dtype(torch.float32)
    fx = Fixture()
    gen_siglog(fx)
    gen_siglog_parametric(fx)
    gen_bgn(fx)
    gen_log_proportional_error(fx)
    gen_seeded_noise(
        fx,
        "noisein",
        ref.noisein,
        ("float64", "float32"),
        ((3, 5), (2, 3, 4)),
        (0.25, 0.5, 1.5),
        (0, 1234),
    )
    gen_seeded_noise(fx, "noiseover", ref.noiseover, FUNCTION_DTYPES, SHAPES, (0.1, 1.0), (7,))
    gen_ssc(fx)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    torch.save(dict(sorted(fx.data.items())), OUT)
    print(f"{OUT.name}: {len(fx.cases)} cases, {len(fx.data)} tensors, {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main()
