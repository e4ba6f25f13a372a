"""DynamicConvClassifier captures as one graph (a cheap torch.compile test)."""

import torch

from dyna.models import DynamicConvClassifier


def test_compiles_with_the_eager_backend_in_one_graph():
    torch.manual_seed(0)
    model = DynamicConvClassifier(channels=(2, 3), context_length=2).eval()
    x = torch.rand(2, 1, 8, 8)
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), model(x))
