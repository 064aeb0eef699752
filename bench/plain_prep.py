"""The benchmark's work for one image, written the plain way: Pillow, NumPy, nothing of ours.

Used by the plain ``multiprocessing`` loop (``pool_prep.py``) and by the tutorial-style Spark
UDFs (``tutorial_prep.py``), so that all three contenders compute the same thing:

1. decode the JPEG with Pillow, letting libjpeg shrink by 2, 4 or 8 while decoding
   (``Image.draft``) as long as both sides stay at least 224 (what ``decode_resize`` does);
2. apply EXIF orientation, convert to RGB;
3. resize to 224 x 224 (stretch) with Pillow's bilinear filter, over the box the drafted
   picture covers;
4. ImageNet-normalize to float32, channels first: ``(x / 255 - mean) / std``;
5. 32-bin histogram per channel (bin = value >> 3), R then G then B: 96 integers.

``width``/``height`` are the original (upright) size of the file.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps

SIZE = 224
BINS = 32
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
# (x / 255 - mean) / std == x * scale + offset, per channel
SCALE = (1 / (255 * STD)).astype(np.float32)
OFFSET = (-MEAN / STD).astype(np.float32)


def decode_resize(data: bytes) -> tuple[np.ndarray, int, int]:
    """(224, 224, 3) uint8 pixels and the original (upright) width, height."""
    image = Image.open(io.BytesIO(data))
    width, height = image.size
    orientation = image.getexif().get(0x0112, 1)
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    box = None
    if orientation == 1:  # draft's box is in stored coordinates: only used when nothing rotates
        drafted = image.draft(image.mode, (SIZE, SIZE))
        box = drafted[1] if drafted else None
    image = ImageOps.exif_transpose(image)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image.resize((SIZE, SIZE), Image.Resampling.BILINEAR, box=box)), width, height


def normalize(pixels: np.ndarray) -> np.ndarray:
    """ImageNet float32 tensor, (3, 224, 224)."""
    return (pixels.transpose(2, 0, 1) * SCALE[:, None, None] + OFFSET[:, None, None]).astype(np.float32)


def histogram(pixels: np.ndarray) -> np.ndarray:
    """32 bins per channel, concatenated: int32 (96,)."""
    return np.concatenate([np.bincount((pixels[:, :, c] >> 3).ravel(), minlength=BINS) for c in range(3)]
                          ).astype(np.int32)
