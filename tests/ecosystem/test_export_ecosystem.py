"""``torch.export`` of the inference paths of the HORN network and the dynamic convolutions.

The exported programs are run and compared with the eager modules. HORN's scan is unrolled
over time when traced, so a program is exported for one sequence length (the batch size may
vary); see the "Export" notes in docs/horn.md and docs/dynamic_weights.md.
"""

import pytest
import torch

import dyna


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


CASES = {
    "HORNSeqNetwork": (
        lambda: dyna.HORNSeqNetwork(2, [6, 4], 3),
        (_randn(8, 2, 2),),
    ),
    "HORNSeqNetwork_delayed_paper": (
        lambda: dyna.HORNSeqNetwork(2, 4, 3, delay=[[[1, 0, 2, 0]] * 4], paper=True),
        (_randn(8, 2, 2),),
    ),
    "DynamicConv2DDelta": (
        lambda: dyna.DynamicConv2DDelta(2, 3, 4, rank=2, padding=1, dtype=torch.float32),
        (_randn(2, 2, 6, 6), _randn(2, 4, seed=1)),
    ),
    "DynamicConv2DDelta_transposed_bfloat16_weights": (
        lambda: dyna.DynamicConv2DDelta(
            2, 3, 4, rank=2, stride=2, transpose=True, output_padding=1
        ),
        (_randn(2, 2, 5, 5), _randn(1, 4, seed=1)),
    ),
    "DynamicConv2DMobius": (
        lambda: dyna.DynamicConv2DMobius(
            2, 3, 4, n_subspaces=2, rank_subspace=2, padding=1, dtype=torch.float32
        ),
        (_randn(2, 2, 6, 6), _randn(2, 4, seed=1)),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_exported_inference_program_matches_eager(name):
    factory, inputs = CASES[name]
    torch.manual_seed(0)
    module = factory().eval()
    program = torch.export.export(module, inputs)
    expected = module(*inputs)
    got = program.module()(*inputs)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    # the program is reusable on new values of the same shapes
    fresh = tuple(t + 0.5 for t in inputs)
    torch.testing.assert_close(program.module()(*fresh), module(*fresh), rtol=1e-5, atol=1e-6)


def test_exported_dynamic_convolution_takes_a_dynamic_batch():
    torch.manual_seed(0)
    module = dyna.DynamicConv2DMobius(
        2, 3, 4, n_subspaces=2, rank_subspace=2, padding=1, dtype=torch.float32
    ).eval()
    batch = torch.export.Dim("batch", min=2, max=64)
    inputs = (_randn(3, 2, 6, 6), _randn(3, 4, seed=1))
    program = torch.export.export(module, inputs, dynamic_shapes=({0: batch}, {0: batch}))
    larger = (_randn(5, 2, 6, 6, seed=2), _randn(5, 4, seed=3))
    torch.testing.assert_close(program.module()(*larger), module(*larger), rtol=1e-5, atol=1e-6)


def test_exported_horn_network_takes_a_dynamic_batch():
    torch.manual_seed(0)
    module = dyna.HORNSeqNetwork(2, [6, 4], 3).eval()
    batch = torch.export.Dim("batch", min=2, max=64)
    program = torch.export.export(module, (_randn(8, 3, 2),), dynamic_shapes=({1: batch},))
    larger = _randn(8, 7, 2, seed=4)
    torch.testing.assert_close(program.module()(larger), module(larger), rtol=1e-5, atol=1e-6)
