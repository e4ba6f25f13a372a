"""Tests for ``dyna.functional.horn_triton``: the Triton HORN scan against ``horn_scan_ref``.

Without a GPU the kernels run in Triton's interpreter on CPU tensors (the root conftest sets
``TRITON_INTERPRET=1`` before anything imports a kernel module); the shapes stay small because
the interpreter is slow. The ``cuda`` tests run the compiled kernels where a GPU is present.
"""

import functools
import logging
import subprocess
import sys

import pytest
import torch

from dyna.functional import _backend, horn_scan, horn_scan_ref
from dyna.module.horn import HORNSeqLayer, HORNSeqNetwork

pytest.importorskip("triton")

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
needs_kernels = pytest.mark.skipif(
    not (CUDA or _backend.triton_interpreting()),
    reason="needs a CUDA device or TRITON_INTERPRET=1",
)

FIXED_DELAYS = {
    "zero": torch.zeros(4, 4, dtype=torch.int64),
    "mixed": torch.tensor([[0, 1, 2, 3], [3, 0, 1, 0], [2, 2, 0, 1], [5, 0, 0, 4]]),
}


@pytest.fixture
def tiled(monkeypatch):
    """Run every size on the tiled kernels (the large-n path) instead of the register ones."""
    from dyna.functional import horn_triton

    monkeypatch.setattr(horn_triton, "REGISTER_PATH_MAX_UNITS", 0)


@pytest.fixture
def kernel_calls(monkeypatch):
    """Count the scans that reach the Triton Function (a fallback would not)."""
    from dyna.functional import horn_triton

    calls = []
    forward = horn_triton.HORNScanTriton.forward

    def counted(*args, **kwargs):
        calls.append(args[1].shape)
        return forward(*args, **kwargs)

    monkeypatch.setattr(horn_triton.HORNScanTriton, "forward", staticmethod(counted))
    return calls


def _case(n, batch, steps, dtype, device="cpu", *, delay=None, history=False, feedback=True,
          bias=True, seed=0):  # fmt: skip
    generator = torch.Generator().manual_seed(seed)

    def draw(*shape, scale=1.0, shift=0.0):
        value = torch.randn(*shape, generator=generator, dtype=torch.float64) * scale + shift
        return value.to(device=device, dtype=dtype).requires_grad_()

    def positive(low, high):
        value = low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)
        return value.to(device=device, dtype=dtype).requires_grad_()

    args = {
        "drive": draw(steps, batch, n),
        "weight": draw(n, n, scale=min(0.6, 2.0 / n**0.5)),
        "bias": draw(n, scale=0.1) if bias and delay is None else None,
        "alpha": positive(0.2, 1.2),
        "omega": positive(0.1, 1.1),
        "gamma": positive(0.0, 0.1),
        "v": draw(n, scale=0.3) if feedback else None,
        "x0": draw(batch, n, scale=0.5),
        "y0": draw(batch, n, scale=0.5),
        "history": None,
    }
    if history:
        args["history"] = draw(int(delay.max()) + 1, batch, n, scale=0.5)
    return args


def _run(function, args, delay, *, dt=0.7, scale=0.8):
    return function(
        args["drive"], args["weight"], args["bias"], args["alpha"], args["omega"],
        args["gamma"], args["v"], dt, args["x0"], args["y0"], recurrent_scale=scale,
        delay=delay, history=args["history"],
    )  # fmt: skip


def _loss(x_seq, y_seq, history_out, used=("x", "y", "history")):
    """A loss that weights every output element differently, so no gradient term hides."""
    probe = torch.linspace(-1, 1, x_seq.numel(), device=x_seq.device).reshape(x_seq.shape)
    loss = x_seq.new_zeros(())
    if "x" in used:
        loss = loss + (x_seq * probe.to(x_seq.dtype)).sum()
    if "y" in used:
        loss = loss + (y_seq * probe.flip(0).to(y_seq.dtype)).sum()
    if history_out is not None and "history" in used:
        lags = torch.arange(1, history_out.shape[0] + 1, device=x_seq.device)
        loss = loss + (history_out * lags.to(history_out.dtype).view(-1, 1, 1)).sum()
    return loss


def _outputs_and_grads(function, args, delay, used=("x", "y", "history"), **options):
    x_seq, y_seq, history_out = _run(function, args, delay, **options)
    inputs = [value for value in args.values() if value is not None]
    grads = torch.autograd.grad(_loss(x_seq, y_seq, history_out, used), inputs)
    return (x_seq, y_seq, history_out), dict(zip([k for k, v in args.items() if v is not None],
                                                 grads, strict=True))  # fmt: skip


def _assert_relative(actual, expected, rtol, name=""):
    """|actual - expected| <= rtol * (|expected| + max |expected|): relative to the tensor."""
    actual, expected = actual.detach(), expected.detach().to(actual.dtype)
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    torch.testing.assert_close(
        actual, expected, rtol=rtol, atol=rtol * max(scale, 1e-30), msg=lambda m: f"{name}: {m}"
    )


def _compare(args, delay, rtol, reference_args=None, used=("x", "y", "history"), **options):
    triton_scan = functools.partial(horn_scan, backend="triton")
    ours, our_grads = _outputs_and_grads(triton_scan, args, delay, used, **options)
    expected, expected_grads = _outputs_and_grads(
        horn_scan_ref, reference_args or args, delay, used, **options
    )
    for name, mine, theirs in zip(("x_seq", "y_seq", "history"), ours, expected, strict=True):
        if theirs is None:
            assert mine is None
        else:
            assert mine.dtype == theirs.dtype or reference_args is not None
            _assert_relative(mine, theirs, rtol, name)
    assert our_grads.keys() == expected_grads.keys()
    for name, grad in our_grads.items():
        assert grad.dtype == args[name].dtype, name
        _assert_relative(grad, expected_grads[name], rtol, f"grad {name}")


# ---------------------------------------------------------------------------------------------
# Values and every gradient, in the interpreter (or compiled where a GPU is present)
# ---------------------------------------------------------------------------------------------


@needs_kernels
@pytest.mark.parametrize("path", ["registers", "tiled"])
@pytest.mark.parametrize(
    ("n", "batch", "options"),
    [
        (4, 3, {"feedback": True, "bias": True}),
        (4, 3, {"feedback": False, "bias": False}),
        (20, 17, {"feedback": True, "bias": True}),
        (40, 20, {"feedback": False, "bias": True}),
        (100, 5, {"feedback": True, "bias": True}),
    ],
    ids=["n4", "n4-no-v-no-bias", "n20-two-batch-tiles", "n40-no-v", "n100-padded-to-128"],
)
def test_dense_scan_matches_reference(path, n, batch, options, request, kernel_calls):
    if path == "tiled":
        request.getfixturevalue("tiled")
    args = _case(n, batch, 6, torch.float32, **options)
    _compare(args, None, 1e-5)
    assert len(kernel_calls) == 1


@needs_kernels
@pytest.mark.parametrize(
    ("delay_name", "history", "feedback"),
    [
        ("zero", False, True),
        ("zero", True, False),
        ("mixed", False, True),
        ("mixed", True, True),
        ("mixed", True, False),
    ],
)
def test_delayed_scan_matches_reference(delay_name, history, feedback, kernel_calls):
    delay = FIXED_DELAYS[delay_name]
    args = _case(4, 3, 7, torch.float32, delay=delay, history=history, feedback=feedback)
    _compare(args, delay, 1e-5)
    assert len(kernel_calls) == 1


@needs_kernels
@pytest.mark.parametrize("history", [False, True])
def test_delayed_scan_several_tiles_matches_reference(history, kernel_calls):
    # n = 20 spans two 16-wide unit tiles and B = 11 two 8-row batch tiles (interpreter tiles);
    # lags up to 8 > T, so some connections never read a velocity of this call.
    delay = torch.randint(0, 9, (20, 20), generator=torch.Generator().manual_seed(3))
    args = _case(20, 11, 6, torch.float32, delay=delay, history=history, seed=1)
    _compare(args, delay, 1e-5, dt=1.0, scale=1.0)
    assert len(kernel_calls) == 1


@needs_kernels
@pytest.mark.parametrize("delay_name", ["none", "mixed"])
@pytest.mark.parametrize("used", [("x",), ("y",), ("history",)])
def test_gradients_of_one_output(delay_name, used, kernel_calls):
    # Outputs nobody differentiates reach the backward as None; the kernels skip them.
    delay = FIXED_DELAYS.get(delay_name)
    if delay is None and used == ("history",):
        used = ("x", "y")
    args = _case(4, 3, 5, torch.float32, delay=delay, history=delay is not None)
    _compare(args, delay, 1e-5, used=used)


@needs_kernels
def test_parameters_without_grad():
    # Only the drive requires grad: the backward must not need the others' gradients.
    args = _case(4, 3, 5, torch.float32, delay=None)
    for name in ("weight", "bias", "alpha", "omega", "gamma", "v", "x0", "y0"):
        args[name] = args[name].detach()
    x_seq, _, _ = _run(functools.partial(horn_scan, backend="triton"), args, None)
    ours = torch.autograd.grad(x_seq.sum(), args["drive"])[0]
    x_ref, _, _ = _run(horn_scan_ref, args, None)
    _assert_relative(ours, torch.autograd.grad(x_ref.sum(), args["drive"])[0], 1e-5)


@needs_kernels
@pytest.mark.parametrize("delay_name", ["none", "mixed"])
def test_bfloat16_input_against_float32_reference(delay_name, kernel_calls):
    delay = FIXED_DELAYS.get(delay_name)
    low = _case(4, 3, 6, torch.bfloat16, delay=delay, history=delay is not None)
    # The float32 reference starts from the same (rounded) bfloat16 values.
    high = {
        name: None if value is None else value.detach().float().requires_grad_()
        for name, value in low.items()
    }
    x_seq, y_seq, _ = _run(functools.partial(horn_scan, backend="triton"), low, delay)
    assert x_seq.dtype == y_seq.dtype == torch.bfloat16
    _compare(low, delay, 3e-2, reference_args=high)


@needs_kernels
@pytest.mark.parametrize("delay_name", ["none", "mixed"])
def test_zero_steps(delay_name):
    delay = FIXED_DELAYS.get(delay_name)
    args = _case(4, 3, 0, torch.float32, delay=delay, history=delay is not None)
    ours = _run(functools.partial(horn_scan, backend="triton"), args, delay)
    expected = _run(horn_scan_ref, args, delay)
    for mine, theirs in zip(ours, expected, strict=True):
        if theirs is None:
            assert mine is None
        else:
            assert mine.shape == theirs.shape
            torch.testing.assert_close(mine, theirs)


def test_register_path_up_to_128_units_and_its_warp_band():
    from dyna.functional import horn_triton

    assert horn_triton._uses_registers(100, delayed=False)
    assert horn_triton._uses_registers(128, delayed=False)
    assert not horn_triton._uses_registers(129, delayed=False)
    assert not horn_triton._uses_registers(16, delayed=True)
    configs = [horn_triton._config(warps, BLOCK_B=16) for warps in (4, 8, 16)]
    kept = {
        padded: [c.num_warps for c in horn_triton._keep_spill_free_warps(configs, {}, N_PAD=padded)]
        for padded in (16, 32, 64, 128)
    }
    assert kept == {16: [4, 8], 32: [4, 8], 64: [8], 128: [16]}
    # None in the band: the nearest one is kept rather than none.
    assert [
        c.num_warps for c in horn_triton._keep_spill_free_warps(configs[:1], {}, N_PAD=128)
    ] == [4]
    # The register limit never exceeds the SM's file for the thread count.
    assert all(c.maxnreg * 32 * c.num_warps <= 65536 for c in configs)


# ---------------------------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------------------------


def test_default_backend_on_cpu_runs_torch(kernel_calls):
    args = _case(4, 3, 4, torch.float32)
    for backend in (None, "torch"):
        x_seq, _, _ = _run(functools.partial(horn_scan, backend=backend), args, None)
        expected, _, _ = _run(horn_scan_ref, args, None)
        torch.testing.assert_close(x_seq, expected)
    assert kernel_calls == []


@needs_cuda
def test_default_backend_on_cuda_runs_triton(kernel_calls):
    args = _case(32, 16, 4, torch.float32, device="cuda")
    _run(functools.partial(horn_scan, backend=None), args, None)
    assert len(kernel_calls) == 1


def test_forced_triton_on_cpu_without_interpreter_raises(monkeypatch):
    monkeypatch.setattr(_backend, "triton_interpreting", lambda: False)
    args = _case(4, 3, 4, torch.float32)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        _run(functools.partial(horn_scan, backend="triton"), args, None)
    args = _case(4, 3, 0, torch.float32)  # even with nothing to compute
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        _run(functools.partial(horn_scan, backend="triton"), args, None)


def test_forced_triton_without_triton_raises(monkeypatch):
    monkeypatch.setattr(_backend, "triton_available", lambda: False)
    args = _case(4, 3, 4, torch.float32)
    with pytest.raises(RuntimeError, match="needs the triton package"):
        _run(functools.partial(horn_scan, backend="triton"), args, None)


@pytest.mark.parametrize(
    ("backend", "error"), [("cuda", ValueError), ("Triton", ValueError), (1, TypeError)]
)
def test_bad_backend(backend, error):
    args = _case(4, 3, 4, torch.float32)
    with pytest.raises(error, match="backend"):
        _run(functools.partial(horn_scan, backend=backend), args, None)
    with pytest.raises(error, match="backend"):
        HORNSeqLayer(1, 4, backend=backend)
    with pytest.raises(error, match="backend"):
        HORNSeqNetwork(1, 4, 2, backend=backend)


@needs_kernels
def test_float64_falls_back_to_torch_with_a_debug_log(caplog, kernel_calls):
    args = _case(4, 3, 4, torch.float64)
    with caplog.at_level(logging.DEBUG, logger="dyna.backend"):
        x_seq, _, _ = _run(functools.partial(horn_scan, backend="triton"), args, None)
    assert kernel_calls == []
    assert any("torch.float64" in record.getMessage() for record in caplog.records)
    torch.testing.assert_close(x_seq, _run(horn_scan_ref, args, None)[0])


@needs_kernels
def test_mixed_dtypes_fall_back_with_a_debug_log(caplog, kernel_calls):
    # The kernels would silently compute a float64 weight in float32: the torch path decides.
    args = _case(4, 3, 4, torch.float32)
    args["weight"] = args["weight"].detach().double()
    with caplog.at_level(logging.DEBUG, logger="dyna.backend"), pytest.raises(RuntimeError):
        _run(functools.partial(horn_scan, backend="triton"), args, None)
    assert kernel_calls == []
    assert any("weight has dtype" in record.getMessage() for record in caplog.records)


def test_import_dyna_does_not_import_triton():
    code = (
        "import sys, dyna, dyna.functional, dyna.module; "
        "assert 'triton' not in sys.modules, 'triton imported'; "
        "assert 'dyna.functional.horn_triton' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------


def _layer_pair(make, seed=0):
    torch.manual_seed(seed)
    torch_module = make("torch")
    triton_module = make("triton")
    triton_module.load_state_dict(torch_module.state_dict())
    return torch_module, triton_module


def _module_grads(module, output):
    output.square().sum().backward()
    return {name: p.grad.clone() for name, p in module.named_parameters()}


@needs_kernels
@pytest.mark.parametrize("delay", [None, "random"])
def test_layer_triton_equals_torch(delay, kernel_calls):
    delays = None
    if delay is not None:
        delays = torch.randint(0, 5, (6, 6), generator=torch.Generator().manual_seed(0))

    def make(backend):
        return HORNSeqLayer(
            2, 6, omega=torch.linspace(0.2, 0.6, 6), gamma=0.05, v=0.1, dt=0.5, delay=delays,
            learnable=("alpha", "omega", "gamma", "v"), backend=backend,
        )  # fmt: skip

    torch_layer, triton_layer = _layer_pair(make)
    assert "backend='triton'" in repr(triton_layer)
    assert triton_layer.backend == "triton"
    sequence = torch.randn(5, 3, 2)
    results = []
    for layer in (torch_layer, triton_layer):
        x_seq, y_seq, state = layer(sequence, return_velocity=True)
        loss_terms = x_seq + y_seq
        results.append((x_seq, y_seq, state, _module_grads(layer, loss_terms)))
    assert len(kernel_calls) == 1
    (x_t, y_t, s_t, g_t), (x_k, y_k, s_k, g_k) = results
    _assert_relative(x_k, x_t, 1e-5, "x_seq")
    _assert_relative(y_k, y_t, 1e-5, "y_seq")
    for mine, theirs in zip(s_k, s_t, strict=True):
        if theirs is None:
            assert mine is None
        else:
            _assert_relative(mine, theirs, 1e-5, "state")
    for name, grad in g_t.items():
        _assert_relative(g_k[name], grad, 1e-5, name)


@needs_kernels
def test_network_triton_equals_torch(kernel_calls):
    def make(backend):
        return HORNSeqNetwork(1, [5, 4], 3, delay=[None, torch.ones(4, 4, dtype=torch.int64)],
                              backend=backend)  # fmt: skip

    torch_net, triton_net = _layer_pair(make)
    assert "backend='triton'" in repr(triton_net)
    assert all(layer.backend == "triton" for layer in triton_net.layers)
    sequence = torch.rand(6, 2, 1)
    torch_out, triton_out = torch_net(sequence), triton_net(sequence)
    assert len(kernel_calls) == 2
    _assert_relative(triton_out, torch_out, 1e-5, "logits")
    torch_grads = _module_grads(torch_net, torch_out)
    triton_grads = _module_grads(triton_net, triton_out)
    for name, grad in torch_grads.items():
        _assert_relative(triton_grads[name], grad, 1e-5, name)


def test_layer_backend_default_and_repr():
    layer = HORNSeqLayer(1, 3)
    assert layer.backend is None
    assert "backend" not in repr(layer)
    assert HORNSeqLayer(1, 3, backend="torch").backend == "torch"


# ---------------------------------------------------------------------------------------------
# Compiled kernels on a GPU
# ---------------------------------------------------------------------------------------------


CUDA_SHAPES = [
    # (n, batch, steps): one row and one step (Triton specialises arguments equal to 1), the
    # register path, the tiled path at n = 100, 256 and 1024, ragged batch tiles
    (16, 1, 1),
    (32, 64, 24),
    (64, 40, 24),
    (100, 33, 16),
    (256, 48, 12),
    (1024, 16, 6),
]


@needs_cuda
@pytest.mark.parametrize("delayed", [False, True], ids=["dense", "delays"])
@pytest.mark.parametrize(("n", "batch", "steps"), CUDA_SHAPES, ids=lambda value: str(value))
def test_cuda_kernels_match_reference(n, batch, steps, delayed, kernel_calls):
    delay = None
    if delayed:
        generator = torch.Generator().manual_seed(n)
        delay = torch.randint(0, 9, (n, n), generator=generator).cuda()
    args = _case(n, batch, steps, torch.float32, "cuda", delay=delay, history=delayed)
    _compare(args, delay, 1e-5)
    assert len(kernel_calls) == 1


@needs_cuda
@pytest.mark.parametrize(("n", "batch", "steps"), [(64, 32, 16), (256, 32, 8)])
def test_cuda_bfloat16_against_float32_reference(n, batch, steps):
    low = _case(n, batch, steps, torch.bfloat16, "cuda")
    high = {
        name: None if value is None else value.detach().float().requires_grad_()
        for name, value in low.items()
    }
    _compare(low, None, 3e-2, reference_args=high)


@needs_cuda
def test_cuda_layer_default_backend_is_triton(kernel_calls):
    layer = HORNSeqLayer(1, 32, device="cuda")
    reference = HORNSeqLayer(1, 32, device="cuda", backend="torch")
    reference.load_state_dict(layer.state_dict())
    sequence = torch.rand(20, 8, 1, device="cuda")
    x_seq, _ = layer(sequence)
    assert len(kernel_calls) == 1
    _assert_relative(x_seq, reference(sequence)[0], 1e-5)
