"""torch.compile(fullgraph=True) captures the functional core whole and matches eager."""

import pytest
import torch

import dyna
from dyna.functional.gradient_normalization import BackwardGradientNormalization
from dyna.functional.siglog import SigLog, SigLogParametric

CASES = {
    "siglog": lambda x: dyna.siglog(x),
    "siglog_parametric_defaults": lambda x: dyna.siglog_parametric(x, None, None, None),
    "siglog_parametric_tensor_alpha": lambda x: dyna.siglog_parametric(
        x, torch.tensor(0.6, dtype=x.dtype), 1e-2, True
    ),
    "backward_gradient_normalization": lambda x: dyna.backward_gradient_normalization(x),
    "log_proportional_error": lambda x: dyna.log_proportional_error(x, x.flip(0) * 0.5),
    "compressor": dyna.SignalStabilizationCompressor(
        bgn_input=True, bgn_mid=True, bgn_output=True, trainable=True
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_fullgraph_compile_matches_eager(name):
    torch._dynamo.reset()
    function = CASES[name]
    x_eager = torch.linspace(-4, 4, 35, dtype=torch.float64).reshape(5, 7).requires_grad_()
    x_compiled = x_eager.detach().clone().requires_grad_()
    weights = torch.cos(torch.arange(35.0, dtype=torch.float64)).reshape(5, 7)
    expected = function(x_eager)
    got = torch.compile(function, backend="eager", fullgraph=True)(x_compiled)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    for out in (expected, got):
        (out if out.dim() == 0 else out * weights).sum().backward()
    assert x_eager.grad.abs().sum() > 0
    torch.testing.assert_close(x_compiled.grad, x_eager.grad, rtol=1e-12, atol=1e-12)


def test_class_defaults_are_read_when_compiling(monkeypatch):
    # The defaults are constants of the compiled graph, read at trace time.
    torch._dynamo.reset()
    monkeypatch.setattr(SigLog, "eps", 0.5)
    monkeypatch.setattr(SigLogParametric, "alpha", 2.0)
    monkeypatch.setattr(BackwardGradientNormalization, "eps", 3.0)
    x = torch.tensor([[0.0, 1.0]], dtype=torch.float64, requires_grad=True)

    def function(x):
        y = dyna.siglog(dyna.backward_gradient_normalization(x))
        return y + dyna.siglog_parametric(x, None)

    out = torch.compile(function, backend="eager", fullgraph=True)(x)
    torch.testing.assert_close(out, function(x.detach()), rtol=1e-12, atol=0)
    # siglog(0) with eps = 0.5: -(ln(e + 0.5) - 1); siglog_parametric(0) = -0.0
    expected_zero = -(torch.log(torch.tensor(torch.e + 0.5, dtype=torch.float64)) - 1)
    torch.testing.assert_close(out[0, 0], expected_zero, rtol=1e-12, atol=0)
    out.sum().backward()
    # BGN with eps = 3 scales the (1, 2) gradient g to g / (|g| + 3) * sqrt(2).
    assert float(x.grad.norm()) < 1.0


def test_compiled_alpha_check_runs_in_graph():
    torch._dynamo.reset()
    compiled = torch.compile(
        lambda x, alpha: dyna.siglog_parametric(x, alpha), backend="eager", fullgraph=True
    )
    x = torch.randn(4)
    torch.testing.assert_close(compiled(x, torch.tensor(0.4)), dyna.siglog_parametric(x, 0.4))
    with pytest.raises(RuntimeError, match="alpha"):
        compiled(x, torch.tensor(-0.4))
