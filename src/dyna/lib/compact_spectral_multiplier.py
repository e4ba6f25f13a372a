"""Compact Spectral Multiplier (CSM): a fixed-size feature map for the multilinear kernel.

For K modes x = (x_0, …, x_{K-1}), x_k ∈ R^{d_k}, the module holds one hash table
h_k: [d_k] → [D] and one sign table s_k: [d_k] → {±1} per mode and computes

    Φ(x) = D^{(1-K)/2} · irfft( Π_k rfft(CountSketch_k(x_k)), n = D ) ∈ R^D
    Ẑ(x, y) = D^{K-1} · ⟨Φ(x), Φ(y)⟩,     E[Ẑ] = Π_k ⟨x_k, y_k⟩ over the draw of the tables.

Φ is the CountSketch of the flattened outer product ⊗_k x_k (TensorSketch), so it linearises
the multilinear kernel in D numbers per sample instead of Π_k d_k, at O(K·(d + D log D)) time.
It is the estimator of the reference DyNA's CSM document and script (commit 01c17ea), which
are not library code there; the tables are drawn in the script's order (for each mode: hashes,
then signs), so they are reproducible from a seed. The variance grows quickly when the modes of
x and y are weakly correlated: use a larger D (variance ∝ 1/D) or :meth:`exact` there.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dyna._validation import check_floating_dtype
from dyna.functional.compact_spectral import (
    _check_inputs,
    _check_pair,
    _features,
    _inner,
    check_sketch_dim,
    multilinear_kernel,
)

# The range torch.Generator.manual_seed accepts.
_SEED_RANGE = (-(2**63), 2**64 - 1)


def _check_in_features(in_features: object) -> tuple[int, ...]:
    if isinstance(in_features, int) and not isinstance(in_features, bool):
        dims: tuple = (in_features,)
    elif isinstance(in_features, (list, tuple)):
        dims = tuple(in_features)
        if not dims:
            raise ValueError("in_features must hold at least one mode size, got an empty sequence")
    else:
        raise TypeError(
            f"in_features must be a positive int or a sequence of positive ints, "
            f"got {type(in_features).__name__}"
        )
    for k, d in enumerate(dims):
        if isinstance(d, bool) or not isinstance(d, int):
            raise TypeError(f"in_features[{k}] must be a positive int, got {type(d).__name__}")
        if d < 1:
            raise ValueError(f"in_features[{k}] must be a positive int, got {d}")
    return dims


def _check_seed(seed: object) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be None or an int, got {type(seed).__name__}")
    if not _SEED_RANGE[0] <= seed <= _SEED_RANGE[1]:
        raise ValueError(f"seed must lie in [-2**63, 2**64 - 1], got {seed}")
    return seed


class CompactSpectralMultiplier(nn.Module):
    """Unbiased sketch of Π_k ⟨x_k, y_k⟩ through D-dimensional CountSketch + FFT features.

    ``features(xs)`` is the feature map Φ; ``forward(xs, ys)`` the estimate
    Ẑ = D^{K-1}·⟨Φ(x), Φ(y)⟩ (evaluated in the frequency domain, without forming Φ);
    ``exact(xs, ys)`` the exact kernel for comparison. The tables are
    persistent buffers (a saved model keeps its estimator) and the module has no trainable
    parameters; gradients flow to the inputs.

    Args:
        in_features: the mode sizes (d_0, …, d_{K-1}), K ≥ 1 positive ints; an int means K = 1.
        sketch_dim: D, the sketch (feature) dimension, a positive int.
        seed: None (default) draws the tables from PyTorch's global CPU generator; an int draws
            them from a private CPU generator seeded with it, leaving the global state untouched.
        device: device of the tables (drawn on the CPU, then moved).
        dtype: floating dtype of the sign tables (default: the default dtype). Inputs of any
            floating dtype are accepted (signs ±1 cast exactly); the result has the inputs' dtype.

    Buffers:
        ``hash_k`` (d_k,) int64 in [0, D) and ``sign_k`` (d_k,) ±1, for k = 0 … K-1, drawn for each
        k in turn as ``randint(0, D, (d_k,))`` then ``randint(0, 2, (d_k,)) * 2 - 1``.

    Shape:
        - xs, ys: K floating tensors of one dtype, mode k of shape (..., d_k); all leading
          dimensions broadcast.
        - features(xs): (..., D); forward(xs, ys) and exact(xs, ys): (...); in the inputs'
          dtype (bfloat16/float16 computed in float32 and cast back).

    Example:
        >>> csm = CompactSpectralMultiplier([3, 4], 8, seed=0)
        >>> csm.hash_0, csm.sign_1
        (tensor([4, 7, 5]), tensor([ 1., -1., -1.,  1.]))
        >>> xs = [torch.ones(3), torch.ones(4)]
        >>> csm.features(xs).shape, csm.exact(xs, xs)
        (torch.Size([8]), tensor(12.))
    """

    def __init__(
        self,
        in_features: int | Sequence[int],
        sketch_dim: int,
        seed: int | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_features = _check_in_features(in_features)
        self.sketch_dim = check_sketch_dim(sketch_dim)
        self.seed = _check_seed(seed)
        check_floating_dtype("dtype", dtype)
        self.num_factors = len(self.in_features)
        sign_dtype = dtype or torch.get_default_dtype()
        for k, d in enumerate(self.in_features):
            self.register_buffer(f"hash_{k}", torch.empty(d, device=device, dtype=torch.int64))
            self.register_buffer(f"sign_{k}", torch.empty(d, device=device, dtype=sign_dtype))
        # A loaded state_dict must hold valid tables: checked once here, not on every call.
        self.register_load_state_dict_post_hook(_validate_loaded_tables)
        self.reset_parameters()

    @property
    def hashes(self) -> list[torch.Tensor]:
        """The hash tables ``[hash_0, …, hash_{K-1}]``."""
        return [getattr(self, f"hash_{k}") for k in range(self.num_factors)]

    @property
    def signs(self) -> list[torch.Tensor]:
        """The sign tables ``[sign_0, …, sign_{K-1}]``."""
        return [getattr(self, f"sign_{k}") for k in range(self.num_factors)]

    def reset_parameters(self) -> None:
        """Redraw the tables (the same seed gives the same tables)."""
        if self.hash_0.is_meta:
            # Nothing to fill; like torch.nn's initialisers, consume no random numbers.
            return
        generator = None
        if self.seed is not None:
            generator = torch.Generator().manual_seed(self.seed)
        with torch.no_grad():
            for d, hash_table, sign_table in zip(
                self.in_features, self.hashes, self.signs, strict=True
            ):
                # Drawn on the CPU in the reference script's order, so tables do not depend on
                # the device.
                hashes = torch.randint(0, self.sketch_dim, (d,), generator=generator)
                signs = torch.randint(0, 2, (d,), generator=generator) * 2 - 1
                hash_table.copy_(hashes)
                sign_table.copy_(signs)

    def features(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Φ(xs): (..., D) for xs = [x_0 (..., d_0), …, x_{K-1} (..., d_{K-1})]."""
        xs = _check_inputs("xs", xs, self.in_features)
        self._check_device("xs", xs)
        return _features(xs, self.hashes, self.signs, self.sketch_dim).to(xs[0].dtype)

    def forward(self, xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor]) -> torch.Tensor:
        """Ẑ(xs, ys) = D^{K-1}·⟨Φ(xs), Φ(ys)⟩: (...), an unbiased estimate of Π_k ⟨x_k, y_k⟩."""
        xs = _check_inputs("xs", xs, self.in_features)
        ys = _check_pair(xs, ys)
        self._check_device("xs", xs)
        self._check_device("ys", ys)
        return _inner(xs, ys, self.hashes, self.signs, self.sketch_dim)

    @staticmethod
    def exact(xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor]) -> torch.Tensor:
        """Π_k ⟨x_k, y_k⟩ computed exactly: (...) in the inputs' dtype."""
        return multilinear_kernel(xs, ys)

    def _check_device(self, name: str, xs: tuple) -> None:
        device = self.hash_0.device
        for k, x in enumerate(xs):
            if x.device != device:
                raise ValueError(
                    f"{name}[{k}] must be on the module's device {device}, got {x.device}"
                )

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, sketch_dim={self.sketch_dim}, seed={self.seed}"


def _validate_loaded_tables(module: CompactSpectralMultiplier, incompatible_keys: object) -> None:
    for k in range(module.num_factors):
        hashes, signs = getattr(module, f"hash_{k}"), getattr(module, f"sign_{k}")
        if hashes.is_meta:
            continue
        if not bool(((hashes >= 0) & (hashes < module.sketch_dim)).all()):
            raise ValueError(
                f"hash_{k} in the loaded state_dict must hold values in "
                f"[0, sketch_dim) = [0, {module.sketch_dim})"
            )
        if not bool((signs.abs() == 1).all()):
            raise ValueError(f"sign_{k} in the loaded state_dict must hold only -1 and +1")
