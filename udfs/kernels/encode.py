"""Encode uint8 pixels as PNG or JPEG bytes with Pillow, for thumbnails, exports and previews.

PNG is lossless and keeps alpha; JPEG cannot store alpha, so an RGBA image is first
composited on white, as decoding does (``udfs.kernels.color``). No metadata is
written, so the same pixels always give the same bytes (with the same Pillow and
zlib/libjpeg), which keeps tables built from them reproducible.
"""
from __future__ import annotations

import io

import numpy as np

from udfs.kernels.color import flatten_alpha, to_pil

FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "JPG": "JPEG"}


def check_format(fmt: str) -> str:
    """Pillow's format name for ``fmt`` (case-insensitive, ``JPG`` = ``JPEG``), or ``ValueError``."""
    value = fmt.upper() if isinstance(fmt, str) else fmt
    if value not in FORMATS:
        raise ValueError(f"unknown image format {fmt!r}; valid formats: PNG, JPEG")
    return FORMATS[value]


def check_quality(quality: int) -> int:
    """JPEG quality 1..100 (Pillow's scale; above 95 mostly grows files); ignored for PNG."""
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 100:
        raise ValueError(f"quality must be a whole number from 1 to 100, got {quality!r}")
    return int(quality)


def encode(pixels: np.ndarray, fmt: str = "PNG", quality: int = 90) -> bytes:
    """PNG or JPEG bytes of ``(H, W, C)`` uint8 pixels (``quality`` only affects JPEG)."""
    fmt = check_format(fmt)
    quality = check_quality(quality)
    image = to_pil(pixels)
    out = io.BytesIO()
    if fmt == "JPEG":
        flatten_alpha(image).save(out, "JPEG", quality=quality)
    else:
        image.save(out, "PNG")
    return out.getvalue()
