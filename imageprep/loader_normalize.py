"""uint8 image batches to the float32 tensors a table records, written into a given array.

The same arithmetic as `udfs.kernels.normalize.normalize_batch` (per channel, float64
`x * scale + offset`, stored as float32), so the values are bit for bit SQL's `normalize`;
the tests compare the two. What differs is only where the work happens: a few images at a
time, so the float64 scratch stays in the CPU cache (the kernel's whole-batch scratch of
64 images is 25 MB), with each cast its own step, and written straight into the caller's
output. Measured (bench/loader.py: batches of 64 images of 224x224x3, imagenet, CHW, each into a
new array): 192 us an image, against 305 us for the kernel.
"""
from __future__ import annotations

import numpy as np

from udfs.kernels import normalize as kernel

CHUNK = 4  # images per step: 4 x 224 x 224 float64 = 1.6 MB of scratch


class Normalizer:
    """Applies one recorded normalization (`table_normalization`'s dict) to uint8 batches."""

    def __init__(self, spec: dict):
        self.spec = spec
        self.chw = spec.get("layout", "CHW") == "CHW"
        self._affines: dict[int, tuple[np.ndarray, np.ndarray] | None] = {}

    def affine(self, channels: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Per-channel float64 (scale, offset), or None for `standard`, whose statistics are
        each image's own."""
        if channels not in self._affines:
            method = self.spec["method"]
            probe = np.zeros((1, 1, channels), dtype=np.uint8)
            if method == "standard":
                self._affines[channels] = None
            elif method in kernel.METHODS and method != "custom":  # the method's own definition
                self._affines[channels] = kernel.channel_affine(probe, method)
            else:
                self._affines[channels] = kernel.channel_affine(probe, "custom", self.spec["mean"], self.spec["std"])
        return self._affines[channels]

    def __call__(self, pixels: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Normalize a (B, H, W, C) uint8 batch into `out`, float32 (B, C, H, W) or (B, H, W, C)
        as the layout says; returns `out`."""
        batch, height, width, channels = pixels.shape
        fixed = self.affine(channels)
        scratch = np.empty((min(CHUNK, batch), height, width), dtype=np.float64)
        for a in range(0, batch, CHUNK):
            images = pixels[a:a + CHUNK]
            n = len(images)
            if fixed is None:
                affines = [kernel.channel_affine(image, "standard") for image in images]
                scale = np.stack([s for s, _ in affines])[:, :, None, None]
                offset = np.stack([o for _, o in affines])[:, :, None, None]
            else:
                scale, offset = fixed
            part = scratch[:n]
            for c in range(channels):
                # one step per operation: NumPy's casting loops inside a mixed-type ufunc were
                # measured slower than a plain cast followed by same-type ufuncs
                np.copyto(part, images[..., c])
                part *= scale[:, c] if fixed is None else scale[c]
                part += offset[:, c] if fixed is None else offset[c]
                np.copyto(out[a:a + n, c] if self.chw else out[a:a + n, ..., c], part, casting="unsafe")
        return out
