"""Image classification with dynamic convolutions: a small CNN on the digits and on MNIST.

The model is :class:`~dyna.models.DynamicConvClassifier`: a static 3x3 convolution, then a
dynamic 3x3 convolution whose kernels a Möbius (default) or Delta composer generates per image
from a context computed from the image, then a linear readout of the global average.

``--set conv=static`` trains the baseline, :class:`~dyna.models.StaticConvClassifier`: the same
network with an ``nn.Conv2d`` in place of the dynamic convolution. Alone it keeps the channels
(same shape, same convolution FLOPs, far fewer parameters); with ``--set match=delta`` or
``match=mobius`` its channels are widened, in the configured ratio, to the parameter count of
the dynamic network with that composer and the same settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dyna.data.digits import load_digits_split
from dyna.data.split import Split
from dyna.experiments.registry import (
    ConfigError,
    Dataset,
    Param,
    SupervisedExperiment,
    TrainingDefaults,
    register,
)
from dyna.experiments.sequences import _limit, read_mnist
from dyna.models import DynamicConvClassifier, StaticConvClassifier, matched_static_channels

CONVS = ("mobius", "delta", "static")
MATCHES = ("none", "mobius", "delta")


def _as_images(split: Split) -> Split:
    """Images (N, H, W) as one-channel batches (N, 1, H, W)."""
    return Split(split.inputs.unsqueeze(1).contiguous(), split.labels)


def digits_images(params: Mapping[str, Any], data_dir: Path | None) -> Dataset:
    train, test = load_digits_split(test_fraction=0.2, seed=params["split_seed"])
    return Dataset(
        _as_images(train), _as_images(test), 10, description="scikit-learn digits, 8x8 images"
    )


def mnist_images(params: Mapping[str, Any], data_dir: Path | None) -> Dataset:
    train, test = read_mnist(data_dir, min_train=1, min_test=1)
    train = _as_images(_limit(train, params["train_samples"]))
    test = _as_images(_limit(test, params["test_samples"]))
    return Dataset(train, test, 10, description=f"MNIST images from {data_dir}")


def dynamic_parameter_count(params: Mapping[str, Any], in_channels: int, n_output: int) -> int:
    """Parameters of the dynamic network of these settings with the composer ``match``."""
    # Built on the meta device: only the shapes are needed, no memory and no initialisation.
    model = DynamicConvClassifier(
        in_channels=in_channels,
        n_output=n_output,
        channels=(params["channels1"], params["channels2"]),
        context_length=params["context_length"],
        kind=params["match"],
        pool=params["pool"],
        device="meta",
    )
    return sum(parameter.numel() for parameter in model.parameters())


def dynamic_conv_model(
    params: Mapping[str, Any], data: Dataset
) -> DynamicConvClassifier | StaticConvClassifier:
    in_channels, n_output = data.train.inputs.shape[1], data.num_classes
    channels = (params["channels1"], params["channels2"])
    if params["conv"] != "static":
        if params["match"] != "none":
            raise ConfigError(
                f"match applies to conv=static only (it sizes the static baseline), got "
                f"match={params['match']} with conv={params['conv']}"
            )
        return DynamicConvClassifier(
            in_channels=in_channels,
            n_output=n_output,
            channels=channels,
            context_length=params["context_length"],
            kind=params["conv"],
            pool=params["pool"],
        )
    if params["match"] != "none":
        target = dynamic_parameter_count(params, in_channels, n_output)
        channels = matched_static_channels(target, in_channels, n_output, channels)
    return StaticConvClassifier(
        in_channels=in_channels, n_output=n_output, channels=channels, pool=params["pool"]
    )


def _model_params(channels: tuple[int, int], pool: bool) -> dict[str, Param]:
    return {
        "channels1": Param(channels[0], "feature maps of the static convolution", minimum=1),
        "channels2": Param(channels[1], "feature maps of the dynamic convolution", minimum=1),
        "context_length": Param(8, "size of the kernel-generating context", minimum=1),
        "conv": Param(
            "mobius",
            "composer of the dynamic kernels, or static: an nn.Conv2d of the same shape",
            choices=CONVS,
        ),
        "match": Param(
            "none",
            "conv=static only: widen the static network to the parameter count of the "
            "dynamic one with this composer (none: same channels)",
            choices=MATCHES,
        ),
        "pool": Param(pool, "2x2 max-pool after the static convolution"),
    }


register(
    SupervisedExperiment(
        name="dynconv-digits",
        description="CNN with a dynamic (Möbius) convolution on the sklearn 8x8 digits",
        params={
            **_model_params((8, 16), pool=False),
            "split_seed": Param(0, "seed of the stratified train/test split", minimum=0),
        },
        data=digits_images,
        model=dynamic_conv_model,
        defaults=TrainingDefaults(
            epochs=15, batch_size=32, lr=0.01, checkpoint_every=0, threads=1, schedule="cosine"
        ),
    )
)

register(
    SupervisedExperiment(
        name="dynconv-mnist",
        description="CNN with a dynamic (Möbius) convolution on MNIST images",
        params={
            **_model_params((16, 32), pool=True),
            "train_samples": Param(0, "use only the first N training images (0: all)", minimum=0),
            "test_samples": Param(0, "use only the first N test images (0: all)", minimum=0),
        },
        data=mnist_images,
        model=dynamic_conv_model,
        defaults=TrainingDefaults(epochs=5, batch_size=64, lr=0.005, checkpoint_every=50),
        needs_data=True,
    )
)
