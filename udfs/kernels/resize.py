"""Geometry: resize (stretch, fit, cover) and centre crop, all by Pillow's resampler.

Pillow's ``Image.resize`` is the reference: its filters are antialiased when shrinking
(the filter support grows with the scale factor) and it runs SIMD code paths, so we do
not write any resampling ourselves. The three resize modes follow ``PIL.ImageOps``:

* ``stretch``: ``image.resize((width, height))``; the aspect ratio may change.
* ``fit``: like ``ImageOps.pad``: scale the whole image to fit inside the target,
  keeping its aspect ratio, then centre it on a ``pad_color`` canvas.
* ``cover``: like ``ImageOps.fit``: take the largest centred region of the target's
  aspect ratio and scale it to the target (i.e. scale the shorter side to the target
  and centre-crop). The crop is a sub-pixel box handed to ``resize``, not a rounded
  pixel crop.

The formulas are those of ``ImageOps.pad``/``ImageOps.fit`` (the tests check equality),
written out here because those functions cannot take a *content box*: after a JPEG
``draft`` decode the picture covers a fractional ``(w / scale, h / scale)`` part of
the decoded pixels, and resizing exactly that box keeps ``decode_resize`` aligned with
a full decode followed by ``resize``.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageColor

from udfs.kernels.color import from_pil, to_pil

RESIZE_MODES = ("stretch", "fit", "cover")
INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
MAX_SIDE = 65500  # a sanity bound on target sides (also JPEG's limit): a typo should not allocate gigabytes


def check_resize_mode(mode: str) -> str:
    """The resize mode in lower case, or ``ValueError`` naming the valid ones."""
    value = mode.lower() if isinstance(mode, str) else mode
    if value not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {mode!r}; valid modes: {', '.join(RESIZE_MODES)}")
    return value


def check_interpolation(interpolation: str) -> Image.Resampling:
    """Pillow's resampling filter for an interpolation name, or ``ValueError`` naming the valid ones."""
    value = interpolation.lower() if isinstance(interpolation, str) else interpolation
    if value not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {interpolation!r}; valid interpolations: {', '.join(INTERPOLATIONS)}")
    return INTERPOLATIONS[value]


def check_pad_color(color: str) -> str:
    """A colour Pillow understands (``#rrggbb``, ``#rrggbbaa``, ``rgb(...)``, a CSS name), or ``ValueError``."""
    try:
        ImageColor.getrgb(color)
    except (ValueError, AttributeError, TypeError):
        raise ValueError(f"invalid pad_color {color!r}; use '#rrggbb' (e.g. '#000000'), '#rrggbbaa' or a CSS colour name") from None
    return color


def check_size(height: int, width: int) -> tuple[int, int]:
    """Target ``(height, width)`` as ints in 1..MAX_SIDE, or ``ValueError``."""
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= MAX_SIDE:
            raise ValueError(f"{name} must be a whole number of pixels from 1 to {MAX_SIDE}, got {value!r}")
    return int(height), int(width)


def resize(pixels: np.ndarray, height: int, width: int, mode: str = "stretch",
           interpolation: str = "bilinear", pad_color: str = "#000000") -> np.ndarray:
    """Resize ``(H, W, C)`` uint8 pixels to ``(height, width, C)``; see the module docstring for the modes."""
    image = resize_image(to_pil(pixels), height, width, mode, check_interpolation(interpolation), pad_color)
    return from_pil(image)


def resize_image(image: Image.Image, height: int, width: int, mode: str, resample: Image.Resampling,
                 pad_color: str = "#000000",
                 box: tuple[float, float, float, float] | None = None) -> Image.Image:
    """The Pillow-level resize behind :func:`resize`, for an image whose picture fills ``box``.

    ``box`` ``(left, top, right, bottom)`` defaults to the whole image; a JPEG drafted
    by a factor ``s`` passes the fractional box its picture covers (``Image.draft``
    returns it).
    """
    height, width = check_size(height, width)
    mode = check_resize_mode(mode)
    x0, y0, x1, y1 = box or (0, 0, *image.size)
    cw, ch = x1 - x0, y1 - y0
    if mode == "stretch":
        return image.resize((width, height), resample, box=(x0, y0, x1, y1))
    if mode == "cover":  # ImageOps.fit with centering (0.5, 0.5), bleed 0
        if cw / ch >= width / height:
            crop_w, crop_h = width / height * ch, ch
        else:
            crop_w, crop_h = cw, cw / (width / height)
        left, top = x0 + (cw - crop_w) * 0.5, y0 + (ch - crop_h) * 0.5
        return image.resize((width, height), resample, box=(left, top, left + crop_w, top + crop_h))
    # fit: ImageOps.pad (ImageOps.contain, then paste centred on a pad_color canvas)
    check_pad_color(pad_color)
    new_w, new_h = width, height
    if cw / ch > width / height:
        new_h = max(1, round(ch / cw * width))
    elif cw / ch < width / height:
        new_w = max(1, round(cw / ch * height))
    inner = image.resize((new_w, new_h), resample, box=(x0, y0, x1, y1))
    if (new_w, new_h) == (width, height):
        return inner
    canvas = Image.new(image.mode, (width, height), ImageColor.getcolor(pad_color, image.mode))
    canvas.paste(inner, (round((width - new_w) * 0.5), round((height - new_h) * 0.5)))
    return canvas


def intermediate_size(size: tuple[int, int], height: int, width: int, mode: str) -> tuple[int, int]:
    """``(w, h)`` the whole picture is scaled to before any crop or pad: what a draft decode must keep.

    ``stretch``: the target; ``cover``: scaled so both sides cover the target;
    ``fit``: scaled so both sides fit inside it. Rounded up, at least 1.
    """
    w0, h0 = size
    mode = check_resize_mode(mode)
    if mode == "stretch":
        return width, height
    scale = (max if mode == "cover" else min)(width / w0, height / h0)
    return max(1, int(np.ceil(w0 * scale))), max(1, int(np.ceil(h0 * scale)))


def center_crop(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """The centred ``height x width`` region; a side larger than the image is padded with zeros (black).

    The top-left corner is at ``((H - height) // 2, (W - width) // 2)`` (floor division, as
    torchvision rounds), so an odd leftover pixel is cut at the bottom/right, or padded
    at the top/left. Pillow's ``crop`` does the padding for boxes outside the image.
    """
    height, width = check_size(height, width)
    h, w = pixels.shape[:2]
    top, left = (h - height) // 2, (w - width) // 2
    if height <= h and width <= w:
        return pixels[top:top + height, left:left + width]  # a view: from_numpy copies it once
    return from_pil(to_pil(pixels).crop((left, top, left + width, top + height)))
