"""Ready-made classifiers built from DyNA's layers, used by the experiments of ``dyna train``.

- :class:`RecurrentClassifier`: ``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` with a linear readout of
  the last step, the baselines of the HORN experiments (same interface and hidden size as
  :class:`~dyna.module.HORNSeqNetwork` with ``batch_first=True``).
- :class:`DynamicConvClassifier`: a small CNN whose second convolution is a dynamic one
  (:class:`~dyna.module.DynamicConv2DMobius` or :class:`~dyna.module.DynamicConv2DDelta`) with
  kernels generated per image from a context computed from the image;
  :class:`StaticConvClassifier` is its static baseline (:func:`matched_static_channels` sizes
  it to a dynamic network's parameter count).
"""

from dyna.models.conv import (
    DynamicConvClassifier,
    StaticConvClassifier,
    matched_static_channels,
    static_parameter_count,
)
from dyna.models.recurrent import RecurrentClassifier

__all__ = [
    "DynamicConvClassifier",
    "RecurrentClassifier",
    "StaticConvClassifier",
    "matched_static_channels",
    "static_parameter_count",
]
