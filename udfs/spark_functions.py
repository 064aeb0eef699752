"""Thin Spark wrappers: one Arrow batch in, one Arrow array out, a kernel call per row.

Each function here is the body of an ``arrow_udf``: Spark passes every SQL argument as
a ``pyarrow.Array`` (or, when the query left out an argument, the Python default
below, which is how SQL default arguments work), and the function returns an Arrow
array of the declared type. The work per row is a kernel from ``udfs.kernels``; all
that happens here is unpacking arguments (``udfs.batch``), moving pixels between
Arrow and NumPy (``udfs.image_struct``) and building the result array. The catalog
(``udfs.catalog``) declares names, SQL signatures and return types; ``udfs.register_all``
registers them.

Conventions, the same for every function:

* A NULL image (or content) gives a NULL result, never an error.
* An unreadable file is data, not an error: NULL image, and a reason from
  ``image_error``/``try_decode_image``.
* A bad argument (unknown mode, negative size, bad ``ops`` spec) is the query's
  mistake: it raises ``ValueError`` naming the valid values, and the query fails.
  A NULL argument other than the image counts as bad, except ``mean``/``std`` of
  ``normalize`` whose NULL means "not given".
* String arguments are parsed once per distinct value in a batch, not once per row.
* Images may be our struct or Spark's image-source struct (BGR, integer mode).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from udfs import image_struct
from udfs.batch import per_row
from udfs.kernels import augment as augment_kernel
from udfs.kernels import color, decode, encode, features, groups, resize as resize_kernel, tensor
from udfs.kernels import normalize as normalize_kernel
from udfs.kernels import prepare as prepare_kernel

DEFAULT_MAX_PIXELS = decode.DEFAULT_MAX_PIXELS

IMAGE_INFO_TYPE = pa.struct([("format", pa.string()), ("width", pa.int32()), ("height", pa.int32()),
                             ("mode", pa.string()), ("orientation", pa.int32())])
IMAGE_STATS_TYPE = pa.struct([("mean", pa.list_(pa.float64())), ("std", pa.list_(pa.float64())),
                              ("min", pa.list_(pa.int32())), ("max", pa.list_(pa.int32()))])
GROUP_TYPE = pa.list_(pa.struct([("path", pa.string()), ("group_id", pa.string())]))
PREPARED_FIELDS = ("width", "height", "image", "tensor", "tensor_shape", "histogram", "image_stats", "phash", "error")


# --------------------------------------------------------------------------- decoding


def decode_image(content: pa.Array, path: pa.Array, mode: pa.Array = "RGB",
                 max_pixels: pa.Array = DEFAULT_MAX_PIXELS) -> pa.Array:
    """``decode_image(content, path, mode, max_pixels)``: image, or NULL for a file that is not a usable image."""
    pixels, _ = _decode_batch(content, mode, max_pixels)
    return image_struct.from_numpy(pixels, per_row(path, len(content)))


def image_error(content: pa.Array, path: pa.Array, max_pixels: pa.Array = DEFAULT_MAX_PIXELS) -> pa.Array:
    """``image_error(content, path, max_pixels)``: NULL when ``decode_image`` succeeds, else its reason."""
    _, errors = _decode_batch(content, "RGB", max_pixels)
    return pa.array(errors, pa.string())


def try_decode_image(content: pa.Array, path: pa.Array, mode: pa.Array = "RGB",
                     max_pixels: pa.Array = DEFAULT_MAX_PIXELS) -> pa.Array:
    """``try_decode_image(...)``: ``struct<image, error>``, both answers from one decode."""
    pixels, errors = _decode_batch(content, mode, max_pixels)
    images = image_struct.from_numpy(pixels, per_row(path, len(content)))
    return pa.StructArray.from_arrays([images, pa.array(errors, pa.string())], names=["image", "error"])


def _decode_batch(content, mode, max_pixels) -> tuple[list, list]:
    """Pixels and error messages of every row. NULL content counts as an empty file."""
    n = len(content)
    modes = per_row(mode, n, decode.check_mode)
    limits = per_row(max_pixels, n, decode.check_max_pixels)
    pixels, errors = [], []
    for data, m, limit in zip(content.to_pylist(), modes, limits):
        p, e = decode.try_decode(data or b"", m, limit)
        pixels.append(p)
        errors.append(e)
    return pixels, errors


def image_info(content: pa.Array) -> pa.Array:
    """``image_info(content)``: format, upright width/height, Pillow mode, EXIF orientation; NULL if not an image."""
    infos = [None if data is None else decode.image_info(data) for data in content.to_pylist()]
    return pa.array(infos, IMAGE_INFO_TYPE)


def decode_resize(content: pa.Array, path: pa.Array, height: pa.Array, width: pa.Array,
                  resize_mode: pa.Array = "stretch", interpolation: pa.Array = "bilinear",
                  mode: pa.Array = "RGB", max_pixels: pa.Array = DEFAULT_MAX_PIXELS) -> pa.Array:
    """``decode_resize(...)``: decode straight to a small size (JPEG draft), NULL for a bad file."""
    n = len(content)
    heights, widths, resize_modes, interpolations = _resize_args(n, height, width, resize_mode, interpolation)
    modes = per_row(mode, n, decode.check_mode)
    limits = per_row(max_pixels, n, decode.check_max_pixels)
    out = []
    for i, data in enumerate(content.to_pylist()):
        resize_kernel.check_size(heights[i], widths[i])
        try:
            out.append(decode.decode_resize(data or b"", heights[i], widths[i], resize_modes[i],
                                            interpolations[i], modes[i], limits[i]))
        except decode.ImageDecodeError:
            out.append(None)
    return image_struct.from_numpy(out, per_row(path, n))


def prepare_image(content: pa.Array, path: pa.Array, height: pa.Array, width: pa.Array,
                  resize_mode: pa.Array = "stretch", interpolation: pa.Array = "bilinear",
                  normalization: pa.Array = "imagenet", histogram_bins: pa.Array = 32,
                  max_pixels: pa.Array = DEFAULT_MAX_PIXELS) -> pa.Array:
    """``prepare_image(...)``: size, resized image, tensor, histogram, statistics and pHash of each file in one
    Python call."""
    n = len(content)
    heights, widths, resize_modes, interpolations = _resize_args(n, height, width, resize_mode, interpolation)
    normalizations = per_row(normalization, n, prepare_kernel.check_normalization)
    bins = per_row(histogram_bins, n, prepare_kernel.check_bins)
    limits = per_row(max_pixels, n, decode.check_max_pixels)
    sizes = np.zeros((2, n), dtype=np.int32)
    pixels, tensors, shapes, histograms, stats, hashes, errors = [], [], [], [], [], [], []
    for i, data in enumerate(content.to_pylist()):
        resize_kernel.check_size(heights[i], widths[i])
        try:
            done = prepare_kernel.prepare(data or b"", heights[i], widths[i], resize_modes[i], interpolations[i],
                                          normalizations[i], bins[i], limits[i])
        except decode.ImageDecodeError as error:
            for column in (pixels, tensors, shapes, histograms, stats, hashes):
                column.append(None)
            errors.append(str(error))
            continue
        sizes[:, i] = done.width, done.height
        pixels.append(done.pixels)
        tensors.append(done.tensor)
        shapes.append(None if done.tensor is None else list(done.tensor.shape))
        histograms.append(done.histogram)
        stats.append(done.stats)
        hashes.append(done.phash)
        errors.append(None)
    bad = np.array([e is not None for e in errors], dtype=bool)
    arrays = [
        pa.array(sizes[0], pa.int32(), mask=bad),
        pa.array(sizes[1], pa.int32(), mask=bad),
        image_struct.from_numpy(pixels, per_row(path, n)),
        image_struct.binary_array([None if t is None else t.astype(tensor.DTYPE, copy=False) for t in tensors]),
        pa.array(shapes, pa.list_(pa.int32())),
        _int32_lists(histograms),
        pa.array(stats, IMAGE_STATS_TYPE),
        pa.array(hashes, pa.int64()),
        pa.array(errors, pa.string()),
    ]
    return pa.StructArray.from_arrays(arrays, names=list(PREPARED_FIELDS))


def _int32_lists(rows: list) -> pa.Array:
    """``array<int>`` from int NumPy arrays (``None`` gives NULL), one concatenation for the batch."""
    lengths = np.array([0 if r is None else len(r) for r in rows], dtype=np.int32)
    offsets = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    present = [r for r in rows if r is not None]
    values = np.concatenate(present).astype(np.int32) if present else np.empty(0, np.int32)
    mask = pa.array([r is None for r in rows], pa.bool_())
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, pa.int32()), mask=mask)


def _resize_args(n: int, height, width, resize_mode, interpolation) -> tuple[list, list, list, list]:
    """Per-row target sizes, resize modes and interpolation names: the arguments every resizing function takes."""
    heights, widths = per_row(height, n), per_row(width, n)
    resize_modes = per_row(resize_mode, n, resize_kernel.check_resize_mode)
    return heights, widths, resize_modes, per_row(interpolation, n, _check_interpolation_name)


def _check_interpolation_name(name):
    resize_kernel.check_interpolation(name)
    return name.lower()


# --------------------------------------------------------------------------- geometry and colour


def resize(image: pa.Array, height: pa.Array, width: pa.Array, mode: pa.Array = "stretch",
           interpolation: pa.Array = "bilinear", pad_color: pa.Array = "#000000") -> pa.Array:
    """``resize(image, height, width, mode, interpolation, pad_color)``."""
    n = len(image)
    heights, widths, modes, interpolations = _resize_args(n, height, width, mode, interpolation)
    pad_colors = per_row(pad_color, n, resize_kernel.check_pad_color)
    return _map_images(image, lambda px, i: resize_kernel.resize(
        px, heights[i], widths[i], modes[i], interpolations[i], pad_colors[i]))


def center_crop(image: pa.Array, height: pa.Array, width: pa.Array) -> pa.Array:
    """``center_crop(image, height, width)``."""
    n = len(image)
    heights, widths = per_row(height, n), per_row(width, n)
    return _map_images(image, lambda px, i: resize_kernel.center_crop(px, heights[i], widths[i]))


def to_grayscale(image: pa.Array) -> pa.Array:
    """``to_grayscale(image)``: mode L (ITU-R 601-2 luma)."""
    return _map_images(image, lambda px, i: color.to_grayscale(px))


def encode_image(image: pa.Array, format: pa.Array = "PNG", quality: pa.Array = 90) -> pa.Array:  # noqa: A002 - SQL name
    """``encode_image(image, format, quality)``: PNG or JPEG bytes."""
    n = len(image)
    formats = per_row(format, n, encode.check_format)
    qualities = per_row(quality, n, encode.check_quality)
    pixels = image_struct.to_numpy(image)
    return pa.array([None if px is None else encode.encode(px, formats[i], qualities[i])
                     for i, px in enumerate(pixels)], pa.binary())


def _map_images(image: pa.Array, kernel) -> pa.Array:
    """``kernel(pixels, row_index)`` for each non-null image; NULL stays NULL; origins are kept."""
    pixels = image_struct.to_numpy(image)
    out = [None if px is None else kernel(px, i) for i, px in enumerate(pixels)]
    return image_struct.from_numpy(out, image_struct.origins(image))


# --------------------------------------------------------------------------- tensors


def normalize(image: pa.Array, method: pa.Array = "zero_one", mean: pa.Array = None, std: pa.Array = None,
              layout: pa.Array = "CHW") -> pa.Array:
    """``normalize(image, method, mean, std, layout)``: float32 little-endian bytes, CHW or HWC."""
    n = len(image)
    methods, layouts = per_row(method, n, _require("method")), per_row(layout, n, _require("layout"))
    means, stds = per_row(mean, n), per_row(std, n)
    pixels = image_struct.to_numpy(image)
    out = [None if px is None else normalize_kernel.normalize(px, methods[i], means[i], stds[i], layouts[i]).astype(
        tensor.DTYPE, copy=False) for i, px in enumerate(pixels)]
    return image_struct.binary_array(out)


def tensor_shape(image: pa.Array, layout: pa.Array = "CHW") -> pa.Array:
    """``tensor_shape(image, layout)``: ``[C, H, W]`` or ``[H, W, C]`` of the tensor ``normalize`` gives."""
    layouts = per_row(layout, len(image), _require("layout"))
    pixels = image_struct.to_numpy(image)
    return pa.array([None if px is None else normalize_kernel.tensor_shape(*px.shape, layouts[i])
                     for i, px in enumerate(pixels)], pa.list_(pa.int32()))


def tensor_to_array(tensor_bytes: pa.Array) -> pa.Array:
    """``tensor_to_array(tensor)``: the float32 values of a binary tensor as ``array<float>``.

    Vectorised over the batch: the binary buffer *is* the float32 values, so this only
    reinterprets it and divides the offsets by 4.
    """
    tensor_bytes = tensor_bytes.combine_chunks() if isinstance(tensor_bytes, pa.ChunkedArray) else tensor_bytes
    offsets, buffer = image_struct.binary_buffers(tensor_bytes)
    valid = np.asarray(tensor_bytes.is_valid())
    sizes = np.diff(offsets)
    bad = np.flatnonzero(valid & (sizes % tensor.DTYPE.itemsize != 0))
    if bad.size:
        raise ValueError(f"tensor_to_array: a float32 tensor has a multiple of 4 bytes, "
                         f"got {int(sizes[bad[0]])} bytes in row {int(bad[0])} of the batch")
    # Keep only the bytes of valid rows so that every list's slice is whole float32 values.
    keep = [np.asarray(buffer[offsets[i]:offsets[i + 1]]) for i in range(len(sizes)) if valid[i]]
    values = np.frombuffer(b"".join(k.tobytes() for k in keep), dtype=tensor.DTYPE) if keep else np.empty(0, tensor.DTYPE)
    counts = np.where(valid, sizes // tensor.DTYPE.itemsize, 0)
    list_offsets = np.zeros(len(sizes) + 1, dtype=np.int32)
    np.cumsum(counts, out=list_offsets[1:])
    return pa.ListArray.from_arrays(pa.array(list_offsets), pa.array(values.astype(np.float32), pa.float32()),
                                    mask=pa.array(~valid))


def tensor_range(tensor_bytes: pa.Array) -> pa.Array:
    """``tensor_range(tensor)``: smallest and largest value of each float32 tensor (NaN if it holds one)."""
    tensor_bytes = tensor_bytes.combine_chunks() if isinstance(tensor_bytes, pa.ChunkedArray) else tensor_bytes
    offsets, buffer = image_struct.binary_buffers(tensor_bytes)
    valid = np.asarray(tensor_bytes.is_valid())
    n = len(valid)
    lows, highs = np.full(n, np.nan, np.float32), np.full(n, np.nan, np.float32)
    empty = np.zeros(n, dtype=bool)
    for i in range(n):
        if not valid[i]:
            continue
        size = int(offsets[i + 1] - offsets[i])
        if size % tensor.DTYPE.itemsize:
            raise ValueError(f"tensor_range: a float32 tensor has a multiple of 4 bytes, got {size} bytes "
                             f"in row {i} of the batch")
        values = np.frombuffer(buffer, dtype=tensor.DTYPE, count=size // 4, offset=int(offsets[i]))
        if values.size == 0:
            empty[i] = True
            continue
        lows[i], highs[i] = values.min(), values.max()  # NaN propagates: a NaN tensor fails range checks
    missing = ~valid | empty
    return pa.StructArray.from_arrays([pa.array(lows, pa.float32(), mask=missing), pa.array(highs, pa.float32(), mask=missing)],
                                      names=["min", "max"], mask=pa.array(missing))


def array_to_tensor(values: pa.Array) -> pa.Array:
    """``array_to_tensor(values)``: ``array<float>`` to float32 little-endian bytes; NULL elements become NaN."""
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    n = len(values)
    valid = np.asarray(values.is_valid())
    offsets = np.asarray(values.offsets)
    flat = values.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
    floats = flat.cast(pa.float32()).fill_null(float("nan")).to_numpy(zero_copy_only=False).astype(tensor.DTYPE)
    rows = [floats[offsets[i] - offsets[0]:offsets[i + 1] - offsets[0]] if valid[i] else None for i in range(n)]
    return image_struct.binary_array(rows)


# --------------------------------------------------------------------------- features


def color_histogram(image: pa.Array, bins: pa.Array = 32, normalized: pa.Array = False) -> pa.Array:
    """``color_histogram(image, bins, normalized)``: per-channel histograms, concatenated."""
    n = len(image)
    bins_, normalized_ = per_row(bins, n), per_row(normalized, n, _require("normalized"))
    pixels = image_struct.to_numpy(image)
    return pa.array([None if px is None else features.color_histogram(px, bins_[i], bool(normalized_[i]))
                     for i, px in enumerate(pixels)], pa.list_(pa.float64()))


def image_stats(image: pa.Array) -> pa.Array:
    """``image_stats(image)``: per-channel mean, std, min, max."""
    pixels = image_struct.to_numpy(image)
    return pa.array([None if px is None else features.image_stats(px) for px in pixels], IMAGE_STATS_TYPE)


def phash(image: pa.Array) -> pa.Array:
    """``phash(image)``: 64-bit perceptual hash as a signed bigint."""
    pixels = image_struct.to_numpy(image)
    return pa.array([None if px is None else features.phash(px) for px in pixels], pa.int64())


# --------------------------------------------------------------------------- groups


def duplicate_groups(pairs: pa.Array) -> pa.Array:
    """``duplicate_groups(pairs)``: the connected components of each row's ``array<struct<a, b>>`` of pairs,
    as ``array<struct<path, group_id>>`` (group_id: the component's smallest path). NULL gives NULL."""
    out = []
    for row in pairs.to_pylist():
        if row is None:
            out.append(None)
            continue
        found = groups.duplicate_groups(None if p is None else (p["a"], p["b"]) for p in row)
        out.append([{"path": path, "group_id": group_id} for path, group_id in found])
    return pa.array(out, GROUP_TYPE)


# --------------------------------------------------------------------------- augmentation


def augment(image: pa.Array, ops: pa.Array, seed: pa.Array, copy_index: pa.Array = 0,
            identity: pa.Array = None) -> pa.Array:
    """``augment(image, ops, seed, copy_index, identity)``: one augmented copy, seeded by
    (identity or the image's origin, seed, copy_index)."""
    n = len(image)
    parsed = per_row(ops, n, augment_kernel.parse_ops)
    seeds = per_row(seed, n, _require("seed"))
    indices = per_row(copy_index, n, _require("copy_index"))
    keys = _augment_keys(image_struct.origins(image), identity, n)
    return _map_images(image, lambda px, i: augment_kernel.augment(px, parsed[i], seeds[i], keys[i], indices[i]))


def augment_copies(image: pa.Array, ops: pa.Array, seed: pa.Array, k: pa.Array,
                   identity: pa.Array = None) -> pa.Array:
    """``augment_copies(image, ops, seed, k, identity)``: ``array<image>`` of copies 0..k-1, as ``augment``
    gives them."""
    images, _, offsets, mask = _copies(image, ops, seed, k, identity, [None] * len(image))
    return pa.ListArray.from_arrays(offsets, images, mask=mask)


def prepare_augmented(image: pa.Array, ops: pa.Array, seed: pa.Array, k: pa.Array, identity: pa.Array = None,
                      histogram_bins: pa.Array = 32) -> pa.Array:
    """``prepare_augmented(image, ops, seed, k, identity, histogram_bins)``: ``array<struct<image, histogram>>``,
    the copies of ``augment_copies`` each with its histogram counts, from one Python call."""
    bins = per_row(histogram_bins, len(image), prepare_kernel.check_bins)
    images, histograms, offsets, mask = _copies(image, ops, seed, k, identity, bins)
    values = pa.StructArray.from_arrays([images, _int32_lists(histograms)], names=["image", "histogram"])
    return pa.ListArray.from_arrays(offsets, values, mask=mask)


def _copies(image: pa.Array, ops, seed, k, identity, bins: list):
    """The augmented copies of every row, flattened: (images, their histograms, list offsets, null mask).
    ``bins[i]`` of None leaves row i's histograms None."""
    n = len(image)
    parsed = per_row(ops, n, augment_kernel.parse_ops)
    seeds = per_row(seed, n, _require("seed"))
    counts = per_row(k, n, _check_copies)
    origins = image_struct.origins(image)
    keys = _augment_keys(origins, identity, n)
    flat, flat_origins, histograms, offsets = [], [], [], [0]
    pixels = image_struct.to_numpy(image)
    for i, px in enumerate(pixels):
        if px is not None:
            for copy, histogram in augment_kernel.copies_with_histograms(px, parsed[i], seeds[i], keys[i], counts[i],
                                                                         bins[i]):
                flat.append(copy)
                flat_origins.append(origins[i])
                histograms.append(histogram)
        offsets.append(len(flat))
    mask = pa.array([px is None for px in pixels], pa.bool_())
    return image_struct.from_numpy(flat, flat_origins), histograms, pa.array(offsets, pa.int32()), mask


def _augment_keys(origins: list, identity, n: int) -> list[str]:
    """What each row's random choices are keyed on: ``identity`` where given, else the image's origin.

    The origin is where the file is, so copies keyed on it change when the images folder moves;
    a path below the folder (``stg_files.relative_path``) keeps them.
    """
    return [key if key is not None else (origin or "") for key, origin in zip(per_row(identity, n), origins)]


def _check_copies(k):
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= 1000:
        raise ValueError(f"augment_copies: k must be a whole number of copies from 0 to 1000, got {k!r}")
    return k


def _require(name: str):
    """A ``per_row`` parser that refuses NULL for an argument that has no NULL meaning."""
    def check(value):
        if value is None:
            raise ValueError(f"{name} must not be NULL")
        return value
    return check
