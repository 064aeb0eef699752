"""Image structs to thumbnails and colour histograms, with NumPy and Pillow.

The struct's `data` is interleaved height x width x channels uint8. Our `mode` is a string
('L', 'RGB', 'RGBA', channels in that order); Spark's own image source uses integer OpenCV
modes with BGR(A) data, which is turned around here.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

THUMBNAIL_SIZE = 96
HISTOGRAM_BINS = 32


@dataclass(frozen=True)
class Thumbnail:
    jpeg: bytes
    width: int
    height: int
    source_width: int
    source_height: int


def to_rgb(image: dict | None) -> np.ndarray | None:
    """An image struct as an (H, W, 3) uint8 RGB array; alpha composited on white. None if unusable."""
    if not image or image.get("data") is None:
        return None
    height, width, channels = image.get("height"), image.get("width"), image.get("nChannels")
    if not height or not width or channels not in (1, 3, 4):
        return None
    data = np.frombuffer(image["data"], dtype=np.uint8)
    if data.size != height * width * channels:
        return None
    pixels = data.reshape(height, width, channels)
    if not isinstance(image.get("mode"), str) and channels >= 3:  # Spark's image source: BGR(A)
        pixels = pixels[..., [2, 1, 0, 3][:channels]]
    if channels == 1:
        return np.repeat(pixels, 3, axis=2)
    if channels == 4:
        alpha = pixels[..., 3:4].astype(np.float32) / 255.0
        blended = pixels[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        return np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(pixels)


def thumbnail(rgb: np.ndarray, size: int = THUMBNAIL_SIZE) -> Thumbnail:
    """A JPEG at most `size` pixels on its longer side (smaller images are kept as they are)."""
    picture = Image.fromarray(rgb, "RGB")
    picture.thumbnail((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    picture.save(out, format="JPEG", quality=85, optimize=True)
    return Thumbnail(out.getvalue(), picture.width, picture.height, rgb.shape[1], rgb.shape[0])


def histogram(rgb: np.ndarray, bins: int = HISTOGRAM_BINS) -> np.ndarray:
    """Per-channel fractions of pixels in `bins` equal bins over 0-255: shape (3, bins)."""
    pixels = rgb.reshape(-1, 3)
    index = (pixels.astype(np.uint16) * bins) >> 8
    counts = np.stack([np.bincount(index[:, c], minlength=bins) for c in range(3)]).astype(np.float64)
    return counts / max(len(pixels), 1)
