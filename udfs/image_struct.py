"""The image value as Spark sees it, and its conversion to and from NumPy pixels.

An image travels between Spark and Python as one struct per row::

    struct<origin:string, height:int, width:int, nChannels:int, mode:string, data:binary>

``data`` holds the pixels as interleaved ``HWC`` uint8, row by row, and ``mode`` names
the channel order: ``"L"`` (1 channel), ``"RGB"`` (3) or ``"RGBA"`` (4). The field names
are those of Spark's own image data source (``spark.read.format("image")``) so the two
are easy to mix, but Spark's struct differs in two ways that matter: its ``mode`` is an
*integer* OpenCV type code (0 = CV_8UC1, 16 = CV_8UC3, 24 = CV_8UC4) and its ``data``
is in *BGR(A)* order. :func:`to_numpy` accepts both (it tells them apart by the Arrow
type of ``mode``: integer or string) and always returns RGB(A) order; everything this
package writes is our string-mode, RGB-order struct.

Why binary and not ``array<int>``: one image is one buffer slice instead of ~150,000
boxed numbers, 1 byte per value instead of 4-8, and no per-value work crossing Arrow.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

IMAGE_FIELDS = ("origin", "height", "width", "nChannels", "mode", "data")
IMAGE_DDL = "struct<origin:string,height:int,width:int,nChannels:int,mode:string,data:binary>"
IMAGE_ARROW_TYPE = pa.struct([
    ("origin", pa.string()),
    ("height", pa.int32()),
    ("width", pa.int32()),
    ("nChannels", pa.int32()),
    ("mode", pa.string()),
    ("data", pa.binary()),
])

MODE_OF_CHANNELS = {1: "L", 3: "RGB", 4: "RGBA"}
CHANNELS_OF_MODE = {mode: channels for channels, mode in MODE_OF_CHANNELS.items()}
# Spark's image source: OpenCV type codes of 8-bit images with 1, 3 and 4 channels.
OPENCV_MODES = {0: 1, 16: 3, 24: 4}
# Binary offsets are int32: one Arrow batch of images must stay under 2 GiB.
_MAX_BINARY_BYTES = 2**31 - 1


def to_numpy(images: pa.Array) -> list[np.ndarray | None]:
    """Pixels of every row of an image struct array: ``(H, W, C)`` uint8 RGB(A), ``None`` for null.

    Works on our struct and on Spark's image-source struct (BGR(A), integer ``mode``),
    whose rows for unreadable files (``height = -1``, empty ``data``) also give ``None``.
    For our struct the arrays are read-only views of the Arrow buffer (no copy); Spark's
    struct is converted to RGB order, which copies. A row whose ``data`` length does not
    match ``height * width * nChannels`` is a broken value, not a missing one: it raises
    ``ValueError`` naming the row's origin.
    """
    images = _combine(images)
    if not pa.types.is_struct(images.type):
        raise TypeError(f"expected an image struct ({IMAGE_DDL}), got {images.type}")
    missing = [name for name in IMAGE_FIELDS if images.type.get_field_index(name) < 0]
    if missing:
        raise TypeError(f"image struct lacks field(s) {', '.join(missing)}; expected {IMAGE_DDL}, got {images.type}")
    n = len(images)
    if n == 0:
        return []
    spark_source = pa.types.is_integer(images.field("mode").type)
    heights = _ints(images.field("height"))
    widths = _ints(images.field("width"))
    channels = _ints(images.field("nChannels"))
    modes = images.field("mode").to_pylist()
    data = images.field("data")
    valid = np.asarray(images.is_valid()) & np.asarray(data.is_valid())
    offsets, buffer = binary_buffers(data)
    out: list[np.ndarray | None] = []
    for i in range(n):
        start, end = int(offsets[i]), int(offsets[i + 1])
        h, w, c = heights[i], widths[i], channels[i]
        if not valid[i] or (spark_source and (h < 0 or end == start)):
            out.append(None)
            continue
        _check_row(images, i, h, w, c, modes[i], end - start, spark_source)
        pixels = buffer[start:end].reshape(h, w, c)
        if spark_source and c >= 3:
            pixels = pixels[:, :, [2, 1, 0, 3][:c]]  # BGR(A) -> RGB(A); fancy indexing copies
        out.append(pixels)
    return out


def origins(images: pa.Array) -> list[str | None]:
    """The ``origin`` of every row (``None`` for a null row), to carry through a transformation."""
    images = _combine(images)
    valid = images.is_valid().to_pylist()
    return [o if v else None for o, v in zip(images.field("origin").to_pylist(), valid)]


def from_numpy(pixels: Sequence[np.ndarray | None], origins: Sequence[str | None] | None = None) -> pa.StructArray:
    """Build our image struct array from ``(H, W, C)`` uint8 arrays (``None`` gives a null row).

    ``mode`` follows from the channel count (1 ``L``, 3 ``RGB``, 4 ``RGBA``). All pixels of
    the batch are copied once into a single Arrow data buffer; no per-row Python bytes.
    """
    n = len(pixels)
    origins = list(origins) if origins is not None else [None] * n
    if len(origins) != n:
        raise ValueError(f"got {n} images but {len(origins)} origins")
    heights = np.zeros(n, dtype=np.int32)
    widths = np.zeros(n, dtype=np.int32)
    channels = np.zeros(n, dtype=np.int32)
    modes: list[str | None] = [None] * n
    null = np.zeros(n, dtype=bool)
    for i, p in enumerate(pixels):
        if p is None:
            null[i] = True
            continue
        if not isinstance(p, np.ndarray) or p.dtype != np.uint8 or p.ndim != 3 or p.shape[2] not in MODE_OF_CHANNELS:
            shape = getattr(p, "shape", None)
            dtype = getattr(p, "dtype", type(p).__name__)
            raise ValueError(f"image {origins[i]!r}: pixels must be (H, W, C) uint8 with C in 1, 3, 4; got {dtype} {shape}")
        heights[i], widths[i], channels[i] = p.shape
        modes[i] = MODE_OF_CHANNELS[p.shape[2]]
    data = binary_array([None if p is None else p for p in pixels])
    mask = pa.array(null)
    return pa.StructArray.from_arrays(
        [
            pa.array(origins, pa.string()),
            pa.array(heights, pa.int32()),
            pa.array(widths, pa.int32()),
            pa.array(channels, pa.int32()),
            pa.array(modes, pa.string()),
            data,
        ],
        fields=list(IMAGE_ARROW_TYPE),
        mask=mask,
    )


def binary_array(values: Sequence[np.ndarray | bytes | None]) -> pa.BinaryArray:
    """A binary array whose row ``i`` holds the raw bytes of ``values[i]`` (any NumPy array, C order).

    Copies each value once, straight into the Arrow buffer; ``None`` gives a null row.
    Used for image pixels and float32 tensors alike.
    """
    n = len(values)
    arrays = [None if v is None else np.frombuffer(v, np.uint8) if isinstance(v, (bytes, bytearray, memoryview))
              else v for v in values]
    sizes = np.array([0 if a is None else a.nbytes for a in arrays], dtype=np.int64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    if offsets[-1] > _MAX_BINARY_BYTES:
        raise ValueError(
            f"one Arrow batch holds {offsets[-1]} bytes of binary values, over the 2 GiB limit of a binary column; "
            "lower spark.sql.execution.arrow.maxRecordsPerBatch"
        )
    buffer = np.empty(int(offsets[-1]), dtype=np.uint8)
    for i, a in enumerate(arrays):
        if a is not None and a.nbytes:
            # Assigning through a reshaped view copies a non-contiguous array (e.g. a crop) once.
            buffer[offsets[i]:offsets[i + 1]].view(a.dtype).reshape(a.shape)[...] = a
    validity = None
    null = np.array([a is None for a in arrays], dtype=bool)
    if null.any():
        validity = pa.array(~null).buffers()[1]
    return pa.Array.from_buffers(
        pa.binary(), n, [validity, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(buffer)],
        null_count=int(null.sum()),
    )


def _combine(array):
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def _ints(array: pa.Array) -> list[int]:
    return [-1 if v is None else int(v) for v in array.to_pylist()]


def binary_buffers(data: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, bytes) of a binary or large_binary array, without copying, honouring its slice offset."""
    if pa.types.is_binary(data.type):
        offset_type = np.int32
    elif pa.types.is_large_binary(data.type):
        offset_type = np.int64
    else:
        raise TypeError(f"image data must be binary, got {data.type}")
    buffers = data.buffers()
    offsets = np.frombuffer(buffers[1], dtype=offset_type)[data.offset:data.offset + len(data) + 1]
    buffer = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.empty(0, np.uint8)
    return offsets, buffer


def _check_row(images, i: int, h: int, w: int, c: int, mode, size: int, spark_source: bool) -> None:
    origin = images.field("origin")[i].as_py()
    if spark_source:
        expected_c = OPENCV_MODES.get(mode)
        if expected_c is None or expected_c != c:
            raise ValueError(
                f"image {origin!r}: Spark image mode {mode} with nChannels={c} is not supported; "
                "supported OpenCV modes: 0 (CV_8UC1), 16 (CV_8UC3), 24 (CV_8UC4)"
            )
    elif CHANNELS_OF_MODE.get(mode) != c:
        raise ValueError(f"image {origin!r}: mode {mode!r} does not match nChannels={c}; valid: L=1, RGB=3, RGBA=4")
    if h <= 0 or w <= 0 or size != h * w * c:
        raise ValueError(
            f"image {origin!r}: data has {size} bytes, but height*width*nChannels = {h}*{w}*{c} = {h * w * c}"
        )
