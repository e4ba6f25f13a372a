"""Compact spectral features: CountSketch + FFT feature maps for multilinear kernels.

For K modes x = (x_0, …, x_{K-1}), x_k ∈ R^{d_k}, a sketch dimension D, hashes
h_k: [d_k] → [D] and signs s_k: [d_k] → {±1}:

    CS_k(x_k)[j] = Σ_{t: h_k(t) = j} s_k(t) · x_k[t]                       (CountSketch)
    Φ(x) = D^{(1-K)/2} · irfft( Π_k rfft(CS_k(x_k)), n = D )                 (feature, R^D)
    Ẑ(x, y) = D^{K-1} · ⟨Φ(x), Φ(y)⟩                                         (estimator)

Φ is the circular convolution of the K sketches, which equals the CountSketch of the flattened
outer product x_0 ⊗ … ⊗ x_{K-1} under the combined hash (Σ_k h_k(t_k)) mod D and sign
Π_k s_k(t_k) (TensorSketch, Pham and Pagh 2013), scaled by D^{(1-K)/2}. Hence D^{K-1}·⟨Φ(x), Φ(y)⟩
is the CountSketch estimate of ⟨⊗x_k, ⊗y_k⟩ = Π_k ⟨x_k, y_k⟩ and is unbiased over the draw of
the tables. This is the "Compact Spectral Multiplier" of the reference DyNA's theory document
and script (commit 01c17ea), whose complex feature IFFT(⊙_k FFT(CS_k)) with unitary transforms is
real for real inputs and equals Φ above; we keep the real part only and use real FFTs.

The ``*_ref`` twins are the specification in code: they build the explicit tensor product and
its CountSketch with an explicit (dense) sketch matrix, at O(Π d_k · D) cost per sample.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dyna._validation import check_floating_tensor

# torch.fft has no bfloat16/float16 kernels on CPU: such inputs are computed in float32.
_LOW_PRECISION = (torch.bfloat16, torch.float16)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in _LOW_PRECISION else dtype


def _is_compiling() -> bool:
    return torch.compiler.is_compiling()


# ------------------------------------------------------------------------------ argument checks


def check_sketch_dim(sketch_dim: object) -> int:
    """Return ``sketch_dim`` if it is a positive int (not a bool)."""
    if isinstance(sketch_dim, bool) or not isinstance(sketch_dim, int):
        raise TypeError(f"sketch_dim must be a positive int, got {type(sketch_dim).__name__}")
    if sketch_dim < 1:
        raise ValueError(f"sketch_dim must be a positive int, got {sketch_dim}")
    return sketch_dim


def _check_sequence(name: str, value: object) -> tuple:
    # A tensor is iterable too; refusing it avoids silently treating rows as modes.
    if isinstance(value, torch.Tensor) or not isinstance(value, (list, tuple)):
        raise TypeError(
            f"{name} must be a list or tuple with one entry per mode, got {type(value).__name__}"
        )
    if len(value) == 0:
        raise ValueError(f"{name} must hold at least one mode, got an empty sequence")
    return tuple(value)


def _check_inputs(name: str, xs: object, dims: Sequence[int] | None = None) -> tuple:
    """Check a sequence of K floating tensors of one dtype (and last dims ``dims`` if given)."""
    xs = _check_sequence(name, xs)
    if dims is not None and len(xs) != len(dims):
        raise ValueError(f"{name} must hold {len(dims)} tensors (one per mode), got {len(xs)}")
    for k, x in enumerate(xs):
        check_floating_tensor(f"{name}[{k}]", x, min_dim=1)
        if x.dtype != xs[0].dtype:
            raise TypeError(
                f"{name} must share one dtype: {name}[0] is {xs[0].dtype}, {name}[{k}] is {x.dtype}"
            )
        if dims is not None and x.shape[-1] != dims[k]:
            raise ValueError(
                f"{name}[{k}] must have last dimension d_{k} = {dims[k]}, "
                f"got shape {tuple(x.shape)}"
            )
    _check_broadcast(name, xs)
    return xs


def _check_broadcast(name: str, tensors: Sequence[torch.Tensor]) -> None:
    try:
        torch.broadcast_shapes(*(t.shape[:-1] for t in tensors))
    except RuntimeError:
        shapes = [tuple(t.shape) for t in tensors]
        raise ValueError(
            f"the leading dimensions of {name} must broadcast together, got shapes {shapes}"
        ) from None


def _check_table(
    hashes_name: str,
    hashes: object,
    signs_name: str,
    signs: object,
    x: torch.Tensor,
    x_name: str,
    sketch_dim: int,
    check_values: bool = True,
) -> None:
    """Check one mode's hash and sign tables against its input (types, shapes, devices, values)."""
    d = x.shape[-1]
    if not isinstance(hashes, torch.Tensor):
        raise TypeError(f"{hashes_name} must be a torch.Tensor, got {type(hashes).__name__}")
    if not isinstance(signs, torch.Tensor):
        raise TypeError(f"{signs_name} must be a torch.Tensor, got {type(signs).__name__}")
    for name, table in ((hashes_name, hashes), (signs_name, signs)):
        if table.dim() < 1 or table.shape[-1] != d:
            raise ValueError(
                f"{name} must have last dimension {d} (that of {x_name}), "
                f"got shape {tuple(table.shape)}"
            )
        if table.device != x.device:
            raise ValueError(f"{name} must be on {x_name}'s device {x.device}, got {table.device}")
        try:
            torch.broadcast_shapes(table.shape, x.shape)
        except RuntimeError:
            raise ValueError(
                f"{name} of shape {tuple(table.shape)} must broadcast with {x_name} of shape "
                f"{tuple(x.shape)}"
            ) from None
    if hashes.dtype != torch.int64:
        raise TypeError(f"{hashes_name} must have dtype torch.int64, got {hashes.dtype}")
    if signs.dtype == torch.bool or signs.is_complex():
        raise TypeError(f"{signs_name} must have a real dtype (values ±1), got {signs.dtype}")
    # Value checks read the tables back to the host (one synchronisation on accelerators), so
    # they are skipped while compiling; the module validates its own tables once instead.
    if check_values and not _is_compiling():
        if hashes.numel() and not bool(((hashes >= 0) & (hashes < sketch_dim)).all()):
            raise ValueError(
                f"{hashes_name} must hold values in [0, sketch_dim) = [0, {sketch_dim}), "
                f"got values in [{int(hashes.min())}, {int(hashes.max())}]"
            )
        if signs.numel() and not bool((signs.abs() == 1).all()):
            raise ValueError(f"{signs_name} must hold only the values -1 and +1")


def _check_tables(
    xs: tuple,
    hashes: object,
    signs: object,
    sketch_dim: int,
    inputs_name: str = "xs",
    check_values: bool = True,
) -> tuple:
    hashes = _check_sequence("hashes", hashes)
    signs = _check_sequence("signs", signs)
    for name, tables in (("hashes", hashes), ("signs", signs)):
        if len(tables) != len(xs):
            raise ValueError(f"{name} must hold one table per mode ({len(xs)}), got {len(tables)}")
    for k, x in enumerate(xs):
        _check_table(
            f"hashes[{k}]",
            hashes[k],
            f"signs[{k}]",
            signs[k],
            x,
            f"{inputs_name}[{k}]",
            sketch_dim,
            check_values,
        )
    return hashes, signs


def _check_pair(xs: tuple, ys: object) -> tuple:
    """Check ``ys`` against ``xs``: same number of modes, last dims and dtype; broadcastable."""
    ys = _check_inputs("ys", ys, [x.shape[-1] for x in xs])
    if ys[0].dtype != xs[0].dtype:
        raise TypeError(f"ys must have the dtype of xs ({xs[0].dtype}), got {ys[0].dtype}")
    _check_broadcast("xs and ys", (*xs, *ys))
    return ys


# The arguments of each public function and its ``*_ref`` twin, checked in one place.


def _check_count_sketch_arguments(
    x: torch.Tensor, hashes: object, signs: object, sketch_dim: object
) -> int:
    """Check :func:`count_sketch`'s arguments; return ``sketch_dim``."""
    check_floating_tensor("x", x, min_dim=1)
    sketch_dim = check_sketch_dim(sketch_dim)
    _check_table("hashes", hashes, "signs", signs, x, "x", sketch_dim)
    return sketch_dim


def _check_features_arguments(
    xs: object, hashes: object, signs: object, sketch_dim: object
) -> tuple[tuple, tuple, tuple, int]:
    """Check :func:`compact_spectral_features`'s arguments; return them as tuples and an int."""
    xs = _check_inputs("xs", xs)
    sketch_dim = check_sketch_dim(sketch_dim)
    hash_tables, sign_tables = _check_tables(xs, hashes, signs, sketch_dim)
    return xs, hash_tables, sign_tables, sketch_dim


def _check_inner_arguments(
    xs: object, ys: object, hashes: object, signs: object, sketch_dim: object
) -> tuple[tuple, tuple, tuple, tuple, int]:
    """Check :func:`compact_spectral_inner`'s arguments; return them as tuples and an int."""
    xs = _check_inputs("xs", xs)
    ys = _check_pair(xs, ys)
    sketch_dim = check_sketch_dim(sketch_dim)
    hash_tables, sign_tables = _check_tables(xs, hashes, signs, sketch_dim)
    # Shapes and devices against ys; the values were checked with xs.
    _check_tables(ys, hash_tables, sign_tables, sketch_dim, "ys", check_values=False)
    return xs, ys, hash_tables, sign_tables, sketch_dim


# ---------------------------------------------------------------------------------- fast path


def _count_sketch(
    x: torch.Tensor, hashes: torch.Tensor, signs: torch.Tensor, sketch_dim: int
) -> torch.Tensor:
    """Unchecked CountSketch in x's dtype: one scatter-add over the last axis."""
    batch = torch.broadcast_shapes(x.shape[:-1], hashes.shape[:-1], signs.shape[:-1])
    size = (*batch, x.shape[-1])
    # O(d) per row: a scatter-add, not a dense (d, D) sketch matrix (O(d·D)).
    # The tables are constants: no gradient flows to the signs.
    source = (x * signs.detach().to(x.dtype)).expand(size)
    out = x.new_zeros((*batch, sketch_dim))
    return out.scatter_add(-1, hashes.expand(size), source)


def _sketches(
    xs: Sequence[torch.Tensor],
    hashes: Sequence[torch.Tensor],
    signs: Sequence[torch.Tensor],
    sketch_dim: int,
) -> list[torch.Tensor]:
    compute = _compute_dtype(xs[0].dtype)
    return [
        _count_sketch(x.to(compute), h, s, sketch_dim)
        for x, h, s in zip(xs, hashes, signs, strict=True)
    ]


def _spectrum(sketches: list[torch.Tensor]) -> torch.Tensor:
    """Π_k rfft(CS_k) with unitary transforms (carries D^{-K/2})."""
    spectrum = torch.fft.rfft(sketches[0], norm="ortho")
    for sketch in sketches[1:]:
        spectrum = spectrum * torch.fft.rfft(sketch, norm="ortho")
    return spectrum


def _is_empty(tensors: list[torch.Tensor]) -> bool:
    return any(size == 0 for tensor in tensors for size in tensor.shape)


def _features(
    xs: Sequence[torch.Tensor],
    hashes: Sequence[torch.Tensor],
    signs: Sequence[torch.Tensor],
    sketch_dim: int,
) -> torch.Tensor:
    """Unchecked Φ in the compute dtype (float32 for bfloat16/float16 inputs)."""
    sketches = _sketches(xs, hashes, signs, sketch_dim)
    if len(sketches) == 1:
        # irfft(rfft(u)) = u: a single mode needs no transform (and stays exact).
        return sketches[0]
    if _is_empty(sketches):
        # The FFT backends reject empty batches; an empty result still joins the graph.
        return sum(sketches[1:], sketches[0])
    # The product of K unitary spectra carries D^{-K/2}, the unitary inverse D^{1/2}: exactly the
    # D^{(1-K)/2} of the definition, without a separate scaling pass.
    return torch.fft.irfft(_spectrum(sketches), n=sketch_dim, norm="ortho")


def _inner(
    xs: Sequence[torch.Tensor],
    ys: Sequence[torch.Tensor],
    hashes: Sequence[torch.Tensor],
    signs: Sequence[torch.Tensor],
    sketch_dim: int,
) -> torch.Tensor:
    """Unchecked Ẑ in x's dtype (accumulated in the compute dtype)."""
    scale = float(sketch_dim) ** (len(xs) - 1)
    sketches_x = _sketches(xs, hashes, signs, sketch_dim)
    sketches_y = _sketches(ys, hashes, signs, sketch_dim)
    if len(xs) == 1:
        return ((sketches_x[0] * sketches_y[0]).sum(-1) * scale).to(xs[0].dtype)
    if _is_empty(sketches_x + sketches_y):
        phi_x = sum(sketches_x[1:], sketches_x[0])
        phi_y = sum(sketches_y[1:], sketches_y[0])
        return ((phi_x * phi_y).sum(-1) * scale).to(xs[0].dtype)
    # Parseval on the half spectrum saves both inverse FFTs: ⟨Φx, Φy⟩ = Σ_f w_f Re(conj(Gx_f) Gy_f)
    # with w = 1 at the bins without a mirror image (0, and D/2 for even D) and 2 elsewhere.
    # Re(conj(a)·b) = a_re·b_re + a_im·b_im: one real product of the (Re, Im) views and one
    # matrix-vector product with the weights (twice as fast as a conjugate complex product).
    spectrum_x, spectrum_y = _spectrum(sketches_x), _spectrum(sketches_y)
    bins = spectrum_x.shape[-1]
    weights = torch.full((bins, 2), 2.0, dtype=sketches_x[0].dtype, device=spectrum_x.device)
    weights[0] = 1.0
    if sketch_dim % 2 == 0:
        weights[-1] = 1.0
    products = torch.view_as_real(spectrum_x) * torch.view_as_real(spectrum_y)
    return ((products.flatten(-2) @ weights.flatten()) * scale).to(xs[0].dtype)


def count_sketch(
    x: torch.Tensor, hashes: torch.Tensor, signs: torch.Tensor, sketch_dim: int
) -> torch.Tensor:
    """CountSketch of the last axis.

    ``out[..., j] = Σ_{t: hashes[..., t] = j} signs[..., t] · x[..., t]``, one scatter-add.
    Linear in ``x`` (gradients flow to ``x``, never to the tables). Tables with leading
    dimensions give every row its own sketch; all leading dimensions broadcast.

    Args:
        x: (..., d) floating tensor.
        hashes: int64 tensor (d,) or (..., d) with values in [0, sketch_dim).
        signs: real tensor (d,) or (..., d) with values ±1 (cast to x's dtype).
        sketch_dim: D, a positive int.

    Shape:
        - Output: (broadcast leading dims, D) in x's dtype.

    Example:
        >>> x = torch.tensor([0.5, -1.0, 2.0])
        >>> count_sketch(x, torch.tensor([1, 5, 1]), torch.tensor([1, -1, -1]), 8)
        tensor([ 0.0000, -1.5000,  0.0000,  0.0000,  0.0000,  1.0000,  0.0000,  0.0000])
    """
    sketch_dim = _check_count_sketch_arguments(x, hashes, signs, sketch_dim)
    return _count_sketch(x, hashes, signs, sketch_dim)


def compact_spectral_features(
    xs: Sequence[torch.Tensor],
    hashes: Sequence[torch.Tensor],
    signs: Sequence[torch.Tensor],
    sketch_dim: int,
) -> torch.Tensor:
    """The CSM feature ``Φ(x) = D^{(1-K)/2} · irfft(Π_k rfft(CS_k(x_k)), n=D)``.

    ``D^{K-1}·⟨Φ(x), Φ(y)⟩`` estimates ``Π_k ⟨x_k, y_k⟩`` without bias. float32 is computed with
    complex64, float64 with complex128; bfloat16 and float16 in float32, cast back at the end.
    For K = 1, Φ is the CountSketch itself (no transform).

    Args:
        xs: K ≥ 1 floating tensors of one dtype, mode k of shape (..., d_k).
        hashes: K int64 tables, (d_k,) or (..., d_k), values in [0, sketch_dim).
        signs: K real tables, (d_k,) or (..., d_k), values ±1.
        sketch_dim: D, a positive int.

    Shape:
        - Output: (broadcast leading dims, D), real, in the dtype of xs.

    Example:
        >>> xs = [torch.tensor([0.5, -1.0, 2.0]), torch.tensor([1.5, 0.25, -0.5, 1.0])]
        >>> hashes = [torch.tensor([1, 5, 1]), torch.tensor([0, 7, 3, 3])]
        >>> signs = [torch.tensor([1, -1, -1]), torch.tensor([-1, 1, 1, -1])]
        >>> (compact_spectral_features(xs, hashes, signs, 8) * 8**0.5).round(decimals=4)
        tensor([-1.8750,  2.2500,  0.0000,  0.0000,  2.5000, -1.5000,  0.0000,  0.0000])
    """
    xs, hashes, signs, sketch_dim = _check_features_arguments(xs, hashes, signs, sketch_dim)
    return _features(xs, hashes, signs, sketch_dim).to(xs[0].dtype)


def compact_spectral_inner(
    xs: Sequence[torch.Tensor],
    ys: Sequence[torch.Tensor],
    hashes: Sequence[torch.Tensor],
    signs: Sequence[torch.Tensor],
    sketch_dim: int,
) -> torch.Tensor:
    """The CSM estimate ``Ẑ = D^{K-1} · Σ_j Φ(x)_j · Φ(y)_j`` of ``Π_k ⟨x_k, y_k⟩``.

    x and y are sketched with the same tables. Unbiased over the draw of the tables; its
    variance falls like 1/D and grows quickly when the modes of x and y are weakly correlated.
    Evaluated by Parseval on the half spectra, Σ_f w_f Re(conj(G_x[f]) G_y[f]) with
    G = Π_k rfft(CS_k) (w = 1 at bin 0 and, for even D, bin D/2; 2 elsewhere), which needs no
    inverse FFT.

    Args:
        xs: K ≥ 1 floating tensors of one dtype, mode k of shape (..., d_k).
        ys: K tensors of the dtype of xs, mode k of shape (..., d_k).
        hashes: K int64 tables, (d_k,) or (..., d_k), values in [0, sketch_dim).
        signs: K real tables, (d_k,) or (..., d_k), values ±1.
        sketch_dim: D, a positive int.

    Shape:
        - Output: (broadcast leading dims), in the dtype of xs.

    Example:
        >>> xs = [torch.tensor([0.5, -1.0, 2.0]), torch.tensor([1.5, 0.25, -0.5, 1.0])]
        >>> ys = [torch.tensor([1.0, 0.5, -0.5]), torch.tensor([0.5, -1.0, 2.0, 0.25])]
        >>> hashes = [torch.tensor([1, 5, 1]), torch.tensor([0, 7, 3, 3])]
        >>> signs = [torch.tensor([1, -1, -1]), torch.tensor([-1, 1, 1, -1])]
        >>> compact_spectral_inner(xs, ys, hashes, signs, 8)
        tensor(10.2031)
    """
    xs, ys, hashes, signs, sketch_dim = _check_inner_arguments(xs, ys, hashes, signs, sketch_dim)
    return _inner(xs, ys, hashes, signs, sketch_dim)


# ---------------------------------------------------------------------------- reference twins


def count_sketch_ref(
    x: torch.Tensor, hashes: torch.Tensor, signs: torch.Tensor, sketch_dim: int
) -> torch.Tensor:
    """:func:`count_sketch` as a product with the explicit sketch matrix S[t, j] = s_t·[h_t = j]."""
    sketch_dim = _check_count_sketch_arguments(x, hashes, signs, sketch_dim)
    matrix = torch.nn.functional.one_hot(hashes, sketch_dim).to(x.dtype)
    matrix = matrix * signs.to(x.dtype).unsqueeze(-1)
    return (x.unsqueeze(-1) * matrix).sum(-2)


def _tensor_sketch_ref(
    xs: Sequence[torch.Tensor],
    hashes: Sequence[torch.Tensor],
    signs: Sequence[torch.Tensor],
    sketch_dim: int,
) -> torch.Tensor:
    """D^{(K-1)/2}·Φ: the CountSketch of the flattened ⊗_k x_k, hash Σ h_k mod D, sign Π s_k."""
    compute = _compute_dtype(xs[0].dtype)
    product = xs[0].to(compute)
    combined_hash, combined_sign = hashes[0], signs[0].to(compute)
    for x, h, s in zip(xs[1:], hashes[1:], signs[1:], strict=True):
        product = (product.unsqueeze(-1) * x.to(compute).unsqueeze(-2)).flatten(-2)
        combined_hash = ((combined_hash.unsqueeze(-1) + h.unsqueeze(-2)) % sketch_dim).flatten(-2)
        combined_sign = (combined_sign.unsqueeze(-1) * s.to(compute).unsqueeze(-2)).flatten(-2)
    return count_sketch_ref(product, combined_hash, combined_sign, sketch_dim)


def compact_spectral_features_ref(
    xs: Sequence[torch.Tensor],
    hashes: Sequence[torch.Tensor],
    signs: Sequence[torch.Tensor],
    sketch_dim: int,
) -> torch.Tensor:
    """:func:`compact_spectral_features` through the explicit tensor product (no FFT)."""
    xs, hashes, signs, sketch_dim = _check_features_arguments(xs, hashes, signs, sketch_dim)
    scale = float(sketch_dim) ** ((1 - len(xs)) / 2)
    return (_tensor_sketch_ref(xs, hashes, signs, sketch_dim) * scale).to(xs[0].dtype)


def compact_spectral_inner_ref(
    xs: Sequence[torch.Tensor],
    ys: Sequence[torch.Tensor],
    hashes: Sequence[torch.Tensor],
    signs: Sequence[torch.Tensor],
    sketch_dim: int,
) -> torch.Tensor:
    """:func:`compact_spectral_inner` as ⟨TS(⊗x_k), TS(⊗y_k)⟩ of explicit tensor sketches."""
    xs, ys, hashes, signs, sketch_dim = _check_inner_arguments(xs, ys, hashes, signs, sketch_dim)
    sketch_x = _tensor_sketch_ref(xs, hashes, signs, sketch_dim)
    sketch_y = _tensor_sketch_ref(ys, hashes, signs, sketch_dim)
    return (sketch_x * sketch_y).sum(-1).to(xs[0].dtype)


def multilinear_kernel(xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor]) -> torch.Tensor:
    """Π_k ⟨x_k, y_k⟩ computed exactly, in the dtype of xs (accumulated in float32 at least)."""
    xs = _check_inputs("xs", xs)
    ys = _check_pair(xs, ys)
    compute = _compute_dtype(xs[0].dtype)
    result = (xs[0].to(compute) * ys[0].to(compute)).sum(-1)
    for x, y in zip(xs[1:], ys[1:], strict=True):
        result = result * (x.to(compute) * y.to(compute)).sum(-1)
    return result.to(xs[0].dtype)
