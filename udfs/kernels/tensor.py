"""The tensor format of ``normalize``: raw float32, little-endian, C order, in a binary value.

A tensor in a binary column is 4 bytes per value and moves through Arrow and Parquet as
one buffer slice; as ``array<float>`` the same values cost a validity bit and per-value
work in every layer (a whole pipeline ran 2.6x slower; ``bench/udfs_bench.py`` measures
both). The shape is not stored with the bytes: it is ``tensor_shape(image, layout)`` of
the image the tensor came from. SQL converts between the forms with ``tensor_to_array``
and ``array_to_tensor`` (``udfs/spark_functions.py``, on ``DTYPE``); Python readers of
the Parquet files with ``np.frombuffer(value, "<f4").reshape(shape)``.
"""
from __future__ import annotations

import numpy as np

DTYPE = np.dtype("<f4")  # float32, little-endian, whatever the machine's byte order


def to_bytes(tensor: np.ndarray) -> bytes:
    """Raw bytes of a tensor as float32 little-endian, C order."""
    return np.ascontiguousarray(tensor, dtype=DTYPE).tobytes()
