"""Every layer under ``torch.compile`` with the default inductor backend matches eager.

Inductor compiles C++ kernels, which takes seconds per layer on a small CPU: these tests are
marked ``slow`` (they still run in CI). The graph-capture tests with the eager backend live in
``tests/functional/test_compile.py`` and ``tests/module/test_dynamic_conv2d_compiled.py``.
"""

import pytest
import torch

from tests.ecosystem.layers import first_tensor, layer_cases

CASES = layer_cases()


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_inductor_compiled_layer_matches_eager(name):
    torch._dynamo.reset()
    factory, inputs = CASES[name]
    torch.manual_seed(0)
    layer = factory()
    expected = first_tensor(layer(*inputs))
    got = first_tensor(torch.compile(layer)(*inputs))
    assert got.shape == expected.shape and got.dtype == expected.dtype
    # inductor reorders and fuses float32 arithmetic
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    torch._dynamo.reset()
