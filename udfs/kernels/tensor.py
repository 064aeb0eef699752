"""The tensor format of ``normalize``: raw float32, little-endian, C order, in a binary value.

A tensor in a binary column is 4 bytes per value and moves through Arrow and Parquet as
one buffer slice; as ``array<float>`` the same values cost a validity bit and per-value
work in every layer (DESIGN.md measured a whole pipeline 2.6x slower). The shape is
not stored with the bytes: it is ``tensor_shape(image, layout)`` of the image the
tensor came from. These helpers convert between the forms, for SQL
(``tensor_to_array``/``array_to_tensor``) and for Python readers of the Parquet files
(``np.frombuffer(value, "<f4").reshape(shape)``).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DTYPE = np.dtype("<f4")  # float32, little-endian, whatever the machine's byte order


def to_bytes(tensor: np.ndarray) -> bytes:
    """Raw bytes of a tensor as float32 little-endian, C order."""
    return np.ascontiguousarray(tensor, dtype=DTYPE).tobytes()


def from_bytes(data: bytes, shape: Sequence[int] | None = None) -> np.ndarray:
    """The float32 tensor stored in ``data``, flat or reshaped to ``shape``; ``ValueError`` on a bad length."""
    if len(data) % DTYPE.itemsize:
        raise ValueError(f"a float32 tensor has a multiple of 4 bytes, got {len(data)} bytes")
    values = np.frombuffer(data, dtype=DTYPE)
    return values if shape is None else values.reshape(shape)
