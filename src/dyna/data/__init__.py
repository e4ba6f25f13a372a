"""Data sets and streams: generated, shipped or read from standard on-disk formats.

Nothing in ``functional``, ``lib`` or ``module`` imports from here.
"""

from dyna.data.continual_streams import (
    STREAM_NAMES,
    STREAM_ORDERS,
    ContinualStream,
    StreamSplit,
    make_stream,
)
from dyna.data.digits import load_digits_split, load_digits_tensors
from dyna.data.mnist import load_mnist, read_idx
from dyna.data.split import DataError, Split

__all__ = [
    "STREAM_NAMES",
    "STREAM_ORDERS",
    "ContinualStream",
    "DataError",
    "Split",
    "StreamSplit",
    "load_digits_split",
    "load_digits_tensors",
    "load_mnist",
    "make_stream",
    "read_idx",
]
