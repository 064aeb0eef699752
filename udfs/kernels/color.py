"""Colour handling shared by the kernels: pixels <-> Pillow, alpha flattening, grayscale.

Transparent pixels are composited on **white** (``BACKGROUND``) wherever an image must
lose its alpha channel: decoding to ``RGB`` or ``L``, ``to_grayscale`` of an RGBA image,
JPEG encoding. White, because transparent images in the wild are mostly logos, icons
and product shots drawn dark-on-transparent, meant to be seen on a light page;
dropping alpha instead would show whatever colour the encoder left under transparent
pixels (often black, sometimes garbage), and compositing on black would make dark
drawings vanish. Compositing is Pillow's ``Image.alpha_composite``:
``out = c * a/255 + 255 * (1 - a/255)``, rounded.

Grayscale is Pillow's ``convert("L")``, ITU-R 601-2 luma:
``L = R * 299/1000 + G * 587/1000 + B * 114/1000``.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

BACKGROUND = (255, 255, 255)
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def to_pil(pixels: np.ndarray) -> Image.Image:
    """Pillow image of ``(H, W, C)`` uint8 pixels: ``L`` for C=1, ``RGB`` for 3, ``RGBA`` for 4."""
    if pixels.ndim != 3 or pixels.dtype != np.uint8 or pixels.shape[2] not in (1, 3, 4):
        raise ValueError(f"pixels must be (H, W, C) uint8 with C in 1, 3, 4; got {pixels.dtype} {pixels.shape}")
    if pixels.shape[2] == 1:
        return Image.fromarray(np.ascontiguousarray(pixels[:, :, 0]))
    return Image.fromarray(np.ascontiguousarray(pixels))


def from_pil(image: Image.Image) -> np.ndarray:
    """``(H, W, C)`` uint8 pixels of an ``L``, ``RGB`` or ``RGBA`` Pillow image (grayscale as C=1)."""
    if image.mode not in ("L", "RGB", "RGBA"):
        raise ValueError(f"expected a Pillow image in mode L, RGB or RGBA, got {image.mode}")
    pixels = np.asarray(image)
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


def flatten_alpha(image: Image.Image) -> Image.Image:
    """Composite an image with alpha on ``BACKGROUND``: ``RGB`` out (``L`` for ``LA``); others unchanged."""
    if image.mode not in ALPHA_MODES:
        return image
    background = Image.new("RGBA", image.size, BACKGROUND + (255,))
    flat = Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    return flat.convert("L") if image.mode in ("LA", "La") else flat


def to_grayscale(pixels: np.ndarray) -> np.ndarray:
    """``(H, W, 1)`` luma of an image; RGBA is composited on ``BACKGROUND`` first, L is returned as is."""
    if pixels.shape[2] == 1:
        return pixels
    return from_pil(flatten_alpha(to_pil(pixels)).convert("L"))
