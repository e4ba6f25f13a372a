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

__all__ = ["STREAM_NAMES", "STREAM_ORDERS", "ContinualStream", "StreamSplit", "make_stream"]
