"""Decode image file bytes to uint8 pixels with Pillow, or say in a few words why not.

One code path, :func:`try_decode`, answers both "what are the pixels" and "why did it
fail", so ``decode_image`` and ``image_error`` can never disagree about a file.

What a decoded image is, whatever the file held:

* ``(H, W, C)`` uint8, C = 3 (``RGB``), 1 (``L``) or 4 (``RGBA``), RGB(A) channel order.
* EXIF orientation applied (``ImageOps.exif_transpose``, all 8 values): ``H x W`` are
  the upright size. An unreadable EXIF block counts as orientation 1.
* Only the first frame of a multi-frame file (GIF, APNG, multi-page TIFF, MPO).
* 16-bit samples (``I;16``, ``I;16B``, 32-bit ``I``) become 8 bit as ``v >> 8`` (the
  high byte), the same rule Pillow itself applies to 48/64-bit RGB(A) PNGs, so all
  16-bit inputs scale alike. Pillow's ``convert("L")`` would clip at 255 instead.
* Palette images with a transparent index go ``P -> RGBA``; images with alpha are
  composited on white (see ``udfs.kernels.color``) unless ``mode="RGBA"`` keeps it.
* ``CMYK`` and ``YCbCr`` go through Pillow's ``convert("RGB")``; 1-bit gives 0/255.
* Float (``F``) images have no agreed 8-bit scale and are refused as unsupported.

Failures, each a short message starting with a stable category:

==================  ============================================================
``empty file``      zero bytes
``not an image``    Pillow cannot identify the format (text, HTML, unknown)
``truncated image`` the data ends early (header fine, pixels missing)
``unsupported format``  known format, but a codec or pixel format Pillow cannot read
``too many pixels`` ``W x H`` above ``max_pixels``, decided from the header before
                    any pixel is decoded (decompression bombs)
``corrupt image``   anything else the decoder raised, with its message
==================  ============================================================

Truncated files are never patched up: ``ImageFile.LOAD_TRUNCATED_IMAGES`` stays off,
so a cut-off JPEG fails instead of coming back half grey.
"""
from __future__ import annotations

import io
import re
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from udfs.kernels.color import flatten_alpha, from_pil
from udfs.kernels.resize import check_interpolation, check_resize_mode, check_size, intermediate_size, resize_image

OUTPUT_MODES = ("RGB", "L", "RGBA")
DEFAULT_MAX_PIXELS = 100_000_000
CATEGORIES = ("empty file", "not an image", "truncated image", "unsupported format", "too many pixels", "corrupt image")
ORIENTATION_TAG = 0x0112
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class ImageDecodeError(ValueError):
    """A file that is not a usable image.

    ``str()`` is ``"<category>"``, ``"<category>: <detail>"``, or for numbers
    ``"<category> (<detail>)"`` as in ``too many pixels (12000 x 12000 > 1000000)``.
    """

    def __init__(self, category: str, detail: str = "", numbers: bool = False):
        if category not in CATEGORIES:
            raise ValueError(f"unknown error category {category!r}")
        self.category = category
        self.detail = detail
        text = f"{category} ({detail})" if numbers else f"{category}: {detail}" if detail else category
        super().__init__(text)


def check_mode(mode: str) -> str:
    """The output mode in upper case (``RGB``, ``L``, ``RGBA``), or ``ValueError`` naming the valid ones."""
    value = mode.upper() if isinstance(mode, str) else mode
    if value not in OUTPUT_MODES:
        raise ValueError(f"unknown image mode {mode!r}; valid modes: {', '.join(OUTPUT_MODES)}")
    return value


def check_max_pixels(max_pixels: int) -> int:
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive whole number, got {max_pixels!r}")
    return int(max_pixels)


def decode(content: bytes, mode: str = "RGB", max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Pixels of an image file as ``(H, W, C)`` uint8; raises :class:`ImageDecodeError` for a bad file.

    A bad *argument* (unknown ``mode``, ``max_pixels < 1``) raises a plain ``ValueError``:
    that is the caller's mistake, not the file's.
    """
    mode = check_mode(mode)
    image = open_image(content, max_pixels)
    return _finish(image, mode, content)


def try_decode(content: bytes, mode: str = "RGB",
               max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray | None, str | None]:
    """``(pixels, None)`` for a good file, ``(None, reason)`` for a bad one: the one path behind
    ``decode_image``, ``image_error`` and ``try_decode_image``."""
    mode = check_mode(mode)
    max_pixels = check_max_pixels(max_pixels)
    try:
        return decode(content, mode, max_pixels), None
    except ImageDecodeError as error:
        return None, str(error)


def image_error(content: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> str | None:
    """``None`` when the file decodes, else the reason (see the module docstring)."""
    return try_decode(content, "RGB", max_pixels)[1]


def decode_resize(content: bytes, height: int, width: int, resize_mode: str = "stretch",
                  interpolation: str = "bilinear", mode: str = "RGB",
                  max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode and resize in one go, letting the JPEG decoder shrink by 2, 4 or 8 first.

    ``Image.draft`` makes libjpeg decode at 1/2, 1/4 or 1/8 scale, picking the strongest
    reduction that still leaves at least the size the resize needs (for ``cover`` the
    size before the crop, for ``fit`` before the pad), so the final resize always
    shrinks or keeps. Much faster for photos far larger than the target; the result is
    close to, not identical with, ``decode`` followed by ``resize`` (the DCT-domain
    downscale is a different filter). Other formats decode fully, then resize.
    Raises :class:`ImageDecodeError` for a bad file, like :func:`decode`.
    """
    return decode_resize_sized(content, height, width, resize_mode, interpolation, mode, max_pixels)[0]


def decode_resize_sized(content: bytes, height: int, width: int, resize_mode: str = "stretch",
                        interpolation: str = "bilinear", mode: str = "RGB",
                        max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, int, int]:
    """:func:`decode_resize`, and the original image's upright ``width`` and ``height``.

    The size is the one :func:`decode` would return (EXIF orientation applied), known
    without a full-size decode: from the header when the JPEG decoder reduced, else from
    the decoded image.
    """
    mode = check_mode(mode)
    height, width = check_size(height, width)
    resize_mode = check_resize_mode(resize_mode)
    resample = check_interpolation(interpolation)
    image = open_image(content, max_pixels)
    box = None
    upright = None
    if image.format in ("JPEG", "MPO"):
        orientation = _header_orientation(image)
        stored_w, stored_h = image.size
        upright = (stored_h, stored_w) if orientation in _TRANSPOSING_ORIENTATIONS else (stored_w, stored_h)
        box = _draft(image, height, width, resize_mode, orientation)
    pil = _finish_image(image, mode, content)
    original_w, original_h = upright if box is not None else pil.size
    return from_pil(resize_image(pil, height, width, resize_mode, resample, box=box)), original_w, original_h


def _draft(image: Image.Image, height: int, width: int, resize_mode: str,
           orientation: int | None = None) -> tuple[float, ...] | None:
    """Ask libjpeg for the smallest 1/2, 1/4, 1/8 scale that keeps what the resize needs.

    Returns the picture's box in the *upright* decoded image (orientation applied), or
    ``None`` when nothing was reduced. The box is fractional (a 427-pixel side at 1/8
    decodes to 54 pixels, of which 53.375 are picture) and its partial edge moves with
    the EXIF rotation/flip, hence the corner mapping. ``orientation`` is the header's EXIF
    orientation when the caller has already read it.
    """
    if orientation is None:
        orientation = _header_orientation(image)
    stored_w, stored_h = image.size
    transposed = orientation in _TRANSPOSING_ORIENTATIONS
    upright = (stored_h, stored_w) if transposed else (stored_w, stored_h)
    need_w, need_h = intermediate_size(upright, height, width, resize_mode)
    if transposed:
        need_w, need_h = need_h, need_w
    drafted = image.draft(image.mode, (need_w, need_h))
    if drafted is None or image.size == (stored_w, stored_h):
        return None
    _, (x0, y0, x1, y1) = drafted
    return _orient_box((x0, y0, x1, y1), image.size, orientation)


def _orient_box(box, size, orientation: int) -> tuple[float, float, float, float]:
    """Where a box of a ``size`` image lands after ``exif_transpose`` for ``orientation``."""
    w, h = size
    point = {
        1: lambda x, y: (x, y),
        2: lambda x, y: (w - x, y),          # FLIP_LEFT_RIGHT
        3: lambda x, y: (w - x, h - y),      # ROTATE_180
        4: lambda x, y: (x, h - y),          # FLIP_TOP_BOTTOM
        5: lambda x, y: (y, x),              # TRANSPOSE
        6: lambda x, y: (h - y, x),          # ROTATE_270 (90 degrees clockwise)
        7: lambda x, y: (h - y, w - x),      # TRANSVERSE
        8: lambda x, y: (y, w - x),          # ROTATE_90 (90 degrees counter-clockwise)
    }[orientation]
    (ax, ay), (bx, by) = point(box[0], box[1]), point(box[2], box[3])
    return min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)


def image_info(content: bytes) -> dict | None:
    """Format, upright size, Pillow mode and EXIF orientation from the header, without decoding pixels.

    ``width``/``height`` are *after* EXIF orientation (the size ``decode`` returns);
    ``mode`` is Pillow's mode of the file (``RGB``, ``P``, ``I;16``, ``CMYK`` ...).
    ``None`` for anything Pillow cannot identify, and for files so large that Pillow
    refuses to open them at all (over twice ``Image.MAX_IMAGE_PIXELS``). A header can
    be fine while the data is truncated: use ``image_error`` to validate a file.
    Orientation is read from EXIF found before the pixel data (always the case for
    JPEG, TIFF, WebP; a PNG ``eXIf`` chunk after the image data is not read).
    """
    if not content:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(content))
    except Exception:  # noqa: BLE001 - any failure to parse a header means "not an image we can describe"
        return None
    orientation = _header_orientation(image)
    width, height = image.size
    if orientation in _TRANSPOSING_ORIENTATIONS:
        width, height = height, width
    return {"format": image.format, "width": width, "height": height, "mode": image.mode,
            "orientation": orientation}


def open_image(content: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open lazily (header only) and refuse empty, unknown and over-large files before any decoding.

    Pillow's own bomb check is left in place (we never touch ``Image.MAX_IMAGE_PIXELS``):
    its warning is silenced because our ``max_pixels`` check is the one that decides,
    and its error (over twice its limit) is reported as ``too many pixels`` too.
    """
    max_pixels = check_max_pixels(max_pixels)
    if content is None or len(content) == 0:
        raise ImageDecodeError("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(content))
    except Image.DecompressionBombError as error:
        found = re.search(r"\((\d+) pixels\) exceeds limit of (\d+)", str(error))
        detail = f"{found.group(1)} pixels > Pillow's limit {found.group(2)}" if found else str(error)
        raise ImageDecodeError("too many pixels", detail, numbers=True) from None
    except UnidentifiedImageError:
        raise ImageDecodeError("not an image", "cannot identify image file") from None
    except Exception as error:  # noqa: BLE001 - a header parser can raise anything on garbage
        raise _classify(error, content) from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageDecodeError("too many pixels", f"{width} x {height} > {max_pixels}", numbers=True)
    return image


def _finish(image: Image.Image, mode: str, content: bytes = b"") -> np.ndarray:
    return from_pil(_finish_image(image, mode, content))


def _riff_truncated(content: bytes) -> bool:
    """A RIFF container (WebP) shorter than its header says: libwebp only reports "could not create decoder"."""
    return (len(content) >= 12 and content[:4] == b"RIFF" and content[8:12] == b"WEBP"
            and int.from_bytes(content[4:8], "little") + 8 > len(content))


def _finish_image(image: Image.Image, mode: str, content: bytes = b"") -> Image.Image:
    """Load pixels, apply EXIF orientation, and convert to ``mode`` (see the module docstring)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
    except Exception as error:  # noqa: BLE001 - decoders raise OSError, SyntaxError, ValueError, ...
        raise _classify(error, content) from None
    try:
        ImageOps.exif_transpose(image, in_place=True)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not lose a good picture
        pass
    try:
        return _convert(image, mode)
    except ImageDecodeError:
        raise
    except Exception as error:  # noqa: BLE001
        raise _classify(error, content) from None


def _convert(image: Image.Image, mode: str) -> Image.Image:
    if image.mode in _SIXTEEN_BIT_MODES:
        samples = np.asarray(image)
        samples = np.clip(samples, 0, 65535).astype(np.uint16) if image.mode == "I" else samples.astype(np.uint16)
        image = Image.fromarray((samples >> 8).astype(np.uint8))
    elif image.mode == "F":
        raise ImageDecodeError("unsupported format", "32-bit float pixels (mode F) have no 8-bit scale")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode == "PA":
        image = image.convert("RGBA")
    if mode == "RGBA":
        return image if image.mode == "RGBA" else image.convert("RGBA")
    image = flatten_alpha(image)
    if image.mode == mode:
        return image
    return image.convert(mode)


def _header_orientation(image: Image.Image) -> int:
    """EXIF orientation (1..8) known from the header; 1 when absent, invalid or unreadable."""
    try:
        if image.format == "PNG" and "exif" not in image.info:
            return 1  # PngImageFile.getexif() would decode the whole image to look for a late eXIf chunk
        value = image.getexif().get(ORIENTATION_TAG, 1)
        return int(value) if value in range(1, 9) else 1
    except Exception:  # noqa: BLE001
        return 1


def _classify(error: BaseException, content: bytes = b"") -> ImageDecodeError:
    """Map a Pillow/decoder exception to a category."""
    message = str(error) or type(error).__name__
    lower = message.lower()
    if _riff_truncated(content):
        return ImageDecodeError("truncated image", f"RIFF data ends early ({message})")
    if isinstance(error, Image.DecompressionBombError):
        return ImageDecodeError("too many pixels", message, numbers=True)
    if isinstance(error, EOFError) or "truncated" in lower or "premature end" in lower:
        return ImageDecodeError("truncated image", message)
    if isinstance(error, OSError) and ("not available" in lower or "unsupported" in lower or "not supported" in lower
                                       or "unknown raw mode" in lower):
        return ImageDecodeError("unsupported format", message)
    if isinstance(error, ValueError) and "conversion" in lower and "not supported" in lower:
        return ImageDecodeError("unsupported format", message)
    if isinstance(error, MemoryError):
        return ImageDecodeError("corrupt image", "out of memory while decoding")
    return ImageDecodeError("corrupt image", f"{type(error).__name__}: {message}")
