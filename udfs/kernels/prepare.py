"""All the per-image work of a training table in one call: decode, resize, features, tensor.

``prepare`` is ``decode_resize`` followed by ``color_histogram``, ``image_stats``, ``phash``
and (optionally) ``normalize`` on the resized pixels, plus the original image's size, done
in one pass over one decoded image. (``augment.copies_with_histograms`` is the same idea for
augmented copies.)
In Spark that is one Python call per image instead of four: the file bytes cross into
Python once and the resized pixels are not sent back to the JVM only to be sent to
Python again for the tensor and again for the histogram (each round trip of a 224 x 224
image is 150 kB each way, and the JVM copies rows between the calls).

The results equal the separate kernels exactly: the same functions run, in the same
order, on the same pixels.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from udfs.kernels import decode, features, normalize as normalize_kernel

NORMALIZATIONS = ("zero_one", "minus_one_one", "standard", "imagenet")


class Prepared(NamedTuple):
    """What ``prepare`` gives for one good file."""

    pixels: np.ndarray            # (height, width, 3) uint8, RGB
    width: int                    # of the original image, EXIF orientation applied
    height: int
    tensor: np.ndarray | None     # (3, height, width) float32, or None without a normalization
    histogram: np.ndarray | None  # int64 counts, bins per channel (R, G, B), or None without bins
    stats: dict                   # features.image_stats: per-channel mean, std, min, max
    phash: int                    # features.phash: 64-bit perceptual hash, signed


def check_normalization(method: str | None) -> str | None:
    """A normalization method ``prepare`` accepts (``None`` means no tensor), or ``ValueError``."""
    if method is not None and method not in NORMALIZATIONS:
        hint = "; for 'custom' statistics use normalize(image, 'custom', mean, std)" if method == "custom" else ""
        raise ValueError(f"unknown normalization {method!r}; valid: {', '.join(NORMALIZATIONS)} or NULL for no tensor"
                         f"{hint}")
    return method


def check_bins(bins: int | None) -> int | None:
    """Histogram bins ``prepare`` accepts (1..256; ``None`` means no histogram), or ``ValueError``."""
    if bins is not None:
        features._check_bins(bins)
    return bins


def prepare(content: bytes, height: int, width: int, resize_mode: str = "stretch", interpolation: str = "bilinear",
            normalization: str | None = "imagenet", bins: int | None = 32,
            max_pixels: int = decode.DEFAULT_MAX_PIXELS) -> Prepared:
    """Decode ``content`` straight to ``height x width`` RGB (JPEG draft), then its tensor and histogram.

    Raises :class:`udfs.kernels.decode.ImageDecodeError` for a file that is not a usable
    image (the same reasons as ``image_error``), ``ValueError`` for a bad argument.
    """
    check_normalization(normalization)
    check_bins(bins)
    pixels, original_w, original_h = decode.decode_resize_sized(
        content, height, width, resize_mode, interpolation, "RGB", max_pixels)
    tensor = None if normalization is None else normalize_kernel.normalize(pixels, normalization)
    if bins is None:
        histogram, stats = None, features.image_stats(pixels)
    else:
        histogram, stats = features.histogram_and_stats(pixels, bins)
    return Prepared(pixels, original_w, original_h, tensor, histogram, stats, features.phash(pixels))
