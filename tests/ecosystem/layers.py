"""Small instances of every layer with matching inputs, shared by the ecosystem tests."""

import torch

import dyna


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def layer_cases():
    """name -> (factory building the layer, inputs). Every layer of dyna.lib and dyna.module."""
    return {
        "SignalStabilizationCompressor": (
            lambda: dyna.SignalStabilizationCompressor(bgn_input=True, trainable=True),
            (_randn(3, 5),),
        ),
        "HORNStep": (lambda: dyna.HORNStep(4, learnable=("omega",)), (_randn(2, 4),)),
        "HORNSeqLayer": (lambda: dyna.HORNSeqLayer(2, 4), (_randn(6, 2, 2),)),
        "HORNSeqNetwork": (lambda: dyna.HORNSeqNetwork(2, [4, 3], 3), (_randn(6, 2, 2),)),
        "CNUs": (lambda: dyna.CNUs(q=2, d=3, m=4, u=2, delta=2).eval(), (_randn(3, 3),)),
        "LinearCNU": (
            lambda: dyna.LinearCNU(3, 2, key_mem_units=3, delta=2).eval(),
            (_randn(3, 3),),
        ),
        "Conv2dCNU": (
            lambda: dyna.Conv2dCNU(2, 2, 3, padding=1, key_mem_units=2).eval(),
            (_randn(2, 2, 5, 5),),
        ),
        "CompactSpectralMultiplier": (
            lambda: dyna.CompactSpectralMultiplier([3, 2], 4, seed=0),
            ([_randn(2, 3), _randn(2, 2, seed=1)], [_randn(2, 3, seed=2), _randn(2, 2, seed=3)]),
        ),
        "TensorComposerDelta": (
            lambda: dyna.TensorComposerDelta([4, 3], 5, rank=2, dtype=torch.float32).eval(),
            (_randn(2, 5),),
        ),
        "TensorComposerMobius": (
            lambda: dyna.TensorComposerMobius([4, 3], 5, n_subspaces=2, dtype=torch.float32),
            (_randn(2, 5),),
        ),
        "DynamicConv2DDelta": (
            lambda: dyna.DynamicConv2DDelta(2, 3, 4, rank=2, padding=1, dtype=torch.float32).eval(),
            (_randn(2, 2, 6, 6), _randn(2, 4, seed=1)),
        ),
        "DynamicConv2DMobius": (
            lambda: dyna.DynamicConv2DMobius(
                2, 3, 4, n_subspaces=2, rank_subspace=2, padding=1, dtype=torch.float32
            ),
            (_randn(2, 2, 6, 6), _randn(2, 4, seed=1)),
        ),
    }


def first_tensor(output):
    """The main output of a layer (HORN layers also return their state)."""
    return output[0] if isinstance(output, tuple) else output
