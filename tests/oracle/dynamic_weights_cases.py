"""The configurations of the dynamic-weights parity fixture (plain data, no ``dyna`` import).

Shared by ``make_dynamic_weights_fixtures.py`` (run against the reference) and
``test_dynamic_weights_parity.py`` (run against ours). Each case names the class, its
positional and keyword arguments (``dtype_weights`` is added from ``dtype``), the batch, the
context batch, the input shape (convolutions), the dtypes of the input and context (default:
``dtype``), the mode (eval, or training with ``torch.manual_seed(1234)`` right before the
forward) and the seed of the construction (the stored state_dict is the seeded initial one,
with the composer filters optionally rescaled by ``scale_weights`` to leave the linear regime).

The Delta composers' filters start at std 1e-4 around a per-sample constant that can be close to
zero; siglog's sign jump at 0 (kept from the reference) then makes outputs depend on the
rounding of values within a few ulps of zero. The cases therefore use a larger
``initialization_std`` or ``scale_weights`` where they compare float32 results.
"""

from __future__ import annotations

from typing import Any

F64, F32, BF16 = "float64", "float32", "bfloat16"


def _case(name: str, kind: str, args: tuple, dtypes: tuple[str, ...], **spec: Any) -> list[dict]:
    return [
        {"name": f"{name}/{dtype}", "kind": kind, "args": args, "dtype": dtype, **spec}
        for dtype in dtypes
    ]


CASES: list[dict] = [
    # Tensor composer Delta: eval cases run the reference with rank_noise_strength = 0.
    *_case("tcd_4x3_r2", "TCD", ([4, 3], 5), (F64, F32, BF16), kwargs={"rank": 2}, batch=3),
    *_case(
        "tcd_4x3_r2_train", "TCD", ([4, 3], 5), (F64, F32), kwargs={"rank": 2}, batch=3, train=True
    ),
    *_case(
        "tcd_9x6_r1_nobias",
        "TCD",
        ([9, 6], 16),
        (F64, F32),
        kwargs={"rank": 1, "context_use_bias": False, "initialization_std": 0.05},
        batch=1,
    ),
    *_case(
        "tcd_12x9_r4",
        "TCD",
        ([12, 9], 16),
        (F64, F32),
        kwargs={"rank": 4, "initialization_std": 0.5},
        batch=3,
    ),
    # Tensor composer Mobius.
    *_case(
        "tcm_4x3_111",
        "TCM",
        ([4, 3], 6),
        (F64, F32, BF16),
        kwargs={"n_subspaces": 1, "rank_subspace": 1, "rank_transformations": 1},
        batch=3,
    ),
    *_case(
        "tcm_9x6_232_nobias",
        "TCM",
        ([9, 6], 6),
        (F64, F32),
        kwargs={
            "n_subspaces": 2,
            "rank_subspace": 3,
            "rank_transformations": 2,
            "context_use_bias": False,
        },
        batch=1,
    ),
    *_case(
        "tcm_9x6_324",
        "TCM",
        ([9, 6], 16),
        (F64, BF16),
        kwargs={"n_subspaces": 3, "rank_subspace": 2, "rank_transformations": 4},
        batch=3,
    ),
    *_case(
        "tcm_12x9_445",
        "TCM",
        ([12, 9], 6),
        (F64,),
        kwargs={"n_subspaces": 4, "rank_subspace": 4, "rank_transformations": 5},
        batch=3,
    ),
    # Dynamic convolution Delta.
    *_case(
        "dcd_2_3_k3_pad1201",
        "DCD",
        (2, 3, 5),
        (F64, F32, BF16),
        kwargs={"rank": 2, "kernel_size": 3, "padding": [1, 2, 0, 1]},
        x_shape=(2, 2, 6, 5),
        context_batch=2,
        scale_weights=2000.0,
    ),
    *_case(
        "dcd_3_2_k1_s2_d2",
        "DCD",
        (3, 2, 5),
        (F64, F32),
        kwargs={"rank": 2, "kernel_size": 1, "stride": 2, "padding": 1, "dilation": 2},
        x_shape=(3, 3, 7, 6),
        context_batch=1,
        scale_weights=2000.0,
    ),
    *_case(
        "dcd_3_3_k5_pad2",
        "DCD",
        (3, 3, 6),
        (F64,),
        kwargs={"rank": 1, "kernel_size": 5, "padding": 2, "context_use_bias": True},
        x_shape=(2, 3, 6, 6),
        context_batch=2,
        scale_weights=2000.0,
    ),
    *_case(
        "dcd_2_3_transposed",
        "DCD",
        (2, 3, 5),
        (F64, F32),
        kwargs={
            "rank": 2,
            "kernel_size": 3,
            "stride": 2,
            "padding": [1, 0, 1, 0],
            "transpose": True,
            "output_padding": 1,
            "padding_dynamic": False,
        },
        x_shape=(2, 2, 4, 5),
        context_batch=2,
        scale_weights=2000.0,
    ),
    *_case(
        "dcd_2_3_k3_train",
        "DCD",
        (2, 3, 5),
        (F64,),
        kwargs={"rank": 2, "kernel_size": 3, "padding": 1},
        x_shape=(2, 2, 5, 5),
        context_batch=2,
        train=True,
        scale_weights=2000.0,
    ),
    *_case(
        "dcd_3_2_k1x3",
        "DCD",
        (3, 2, 5),
        (F64,),
        kwargs={"rank": 2, "kernel_size": [1, 3], "padding": [1, 1, 0, 0]},
        x_shape=(2, 3, 4, 5),
        context_batch=2,
        scale_weights=2000.0,
    ),
    *_case(
        "dcd_2_4_k3x1",
        "DCD",
        (2, 4, 5),
        (F64,),
        kwargs={"rank": 2, "kernel_size": [3, 1], "stride": [1, 2]},
        x_shape=(2, 2, 5, 6),
        context_batch=1,
        scale_weights=2000.0,
    ),
    *_case(
        "dcd_mixed_bf16_module",
        "DCD",
        (2, 3, 5),
        (BF16,),
        kwargs={"rank": 2, "kernel_size": 3, "padding": 1},
        x_shape=(2, 2, 5, 5),
        context_batch=2,
        x_dtype=F32,
        context_dtype=F32,
        scale_weights=2000.0,
    ),
    # Dynamic convolution Mobius.
    *_case(
        "dcm_2_3_k3_static",
        "DCM",
        (2, 3, 6),
        (F64, F32, BF16),
        kwargs={
            "n_subspaces": 2,
            "rank_subspace": 3,
            "rank_transformations": 2,
            "kernel_size": 3,
            "padding": [1, 2, 0, 1],
            "bias_static": 0.25,
        },
        x_shape=(2, 2, 6, 5),
        context_batch=2,
    ),
    *_case(
        "dcm_3_2_transposed",
        "DCM",
        (3, 2, 6),
        (F64, F32),
        kwargs={
            "n_subspaces": 2,
            "rank_subspace": 3,
            "rank_transformations": 2,
            "kernel_size": 3,
            "stride": 2,
            "padding": 1,
            "transpose": True,
            "output_padding": 1,
        },
        x_shape=(2, 3, 4, 5),
        context_batch=1,
    ),
    *_case(
        "dcm_4_4_k1_plain",
        "DCM",
        (4, 4, 6),
        (F64,),
        kwargs={
            "n_subspaces": 2,
            "rank_subspace": 2,
            "rank_transformations": 3,
            "kernel_size": 1,
            "stride": 2,
            "bias_dynamic": False,
            "offset_dynamic": False,
            "padding_dynamic": False,
        },
        x_shape=(3, 4, 5, 5),
        context_batch=3,
    ),
    *_case(
        "dcm_2_3_k5_dilated",
        "DCM",
        (2, 3, 6),
        (F64,),
        kwargs={
            "n_subspaces": 3,
            "rank_subspace": 2,
            "rank_transformations": 4,
            "kernel_size": 5,
            "dilation": 2,
            "padding": 2,
            "bias_dynamic": False,
            "padding_dynamic": False,
        },
        x_shape=(2, 2, 9, 8),
        context_batch=2,
    ),
    *_case(
        "dcm_mixed_bf16_module",
        "DCM",
        (2, 3, 6),
        (BF16,),
        kwargs={
            "n_subspaces": 2,
            "rank_subspace": 3,
            "rank_transformations": 2,
            "kernel_size": 3,
            "padding": 1,
            "bias_dynamic": False,
        },
        x_shape=(2, 2, 5, 5),
        context_batch=2,
        x_dtype=F32,
        context_dtype=F32,
    ),
]
