"""Normalize uint8 image batches where they are consumed (the GPU), as the table records. Needs torch.

    normalize = DeviceNormalize(table_normalization(train))
    x = normalize(x.to("cuda", non_blocking=True))    # uint8 (B, 3, H, W) -> float32

The arithmetic is the SQL `normalize`'s (udfs/kernels/normalize.py): per channel, float64
`x * scale + offset` rounded once to float32; for `standard`, scale and offset come from each
image's channel value counts exactly as `features._moments` computes them, including NumPy's
pairwise order of the variance sum. Each step is its own tensor operation, so nothing is fused
into a differently rounded multiply-add: on the CPU the result is bit for bit the SQL one (the
tests check), on a GPU the same IEEE operations. Work goes channel by channel, so the float64
scratch is a third of the batch's float32 size.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from udfs.kernels import normalize as kernel

CHANNELS = {"L": 1, "RGB": 3, "RGBA": 4}


class DeviceNormalize(torch.nn.Module):
    """uint8 batches in the recorded layout, (B, C, H, W) or (B, H, W, C), to float32 in the same layout.

    `spec` is what `table_normalization(table)` returns, or a method name ("imagenet", ...).
    Works on the device of its input; has no parameters.
    """

    def __init__(self, spec: dict | str):
        super().__init__()
        if isinstance(spec, str):
            spec = kernel.describe(spec)
        if not isinstance(spec, dict) or spec.get("method") not in kernel.METHODS:
            raise ValueError(f"DeviceNormalize needs a normalization record (table_normalization(table)) or a "
                             f"method name, got {spec!r}")
        self.spec = dict(spec)
        self.method = spec["method"]
        self.channel_dim = 1 if spec.get("layout", "CHW") == "CHW" else 3
        self.affine: tuple[list[float], list[float]] | None = None
        if self.method != "standard":
            probe = np.zeros((1, 1, CHANNELS.get(spec.get("channel_order", "RGB"), 3)), dtype=np.uint8)
            if self.method == "custom":
                scale, offset = kernel.channel_affine(probe, "custom", spec["mean"], spec["std"])
            else:  # the method's own definition, as the SQL function uses it
                scale, offset = kernel.channel_affine(probe, self.method)
            self.affine = (scale.tolist(), offset.tolist())  # Python floats: float64 scalars on any device

    def extra_repr(self) -> str:
        return f"method={self.method!r}, layout={self.spec.get('layout', 'CHW')!r}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.uint8 or x.dim() != 4:
            raise ValueError(f"DeviceNormalize takes a uint8 batch of 4 dimensions in layout "
                             f"{self.spec.get('layout', 'CHW')}, got {x.dtype} of shape {tuple(x.shape)}")
        channels = x.shape[self.channel_dim]
        if self.affine is not None and channels != len(self.affine[0]):
            raise ValueError(f"the normalization is for {len(self.affine[0])} channels, the batch has {channels} "
                             f"(shape {tuple(x.shape)}, layout {self.spec.get('layout', 'CHW')})")
        out = torch.empty(x.shape, dtype=torch.float32, device=x.device)
        if self.affine is None:
            scale, offset = standard_affine(x, self.channel_dim)
        for c in range(channels):
            scratch = x.select(self.channel_dim, c).to(torch.float64)
            if self.affine is None:
                scratch.mul_(scale[:, c, None, None]).add_(offset[:, c, None, None])
            else:
                scratch.mul_(self.affine[0][c]).add_(self.affine[1][c])
            out.select(self.channel_dim, c).copy_(scratch)  # the one rounding to float32
        return out


def standard_affine(x: torch.Tensor, channel_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image and channel float64 (scale, offset) of `standard`, each (B, C)."""
    batch, channels = x.shape[0], x.shape[channel_dim]
    planes = x.movedim(channel_dim, 1).reshape(batch * channels, -1)
    n = planes.shape[1]
    index = planes.to(torch.int64) + 256 * torch.arange(batch * channels, device=x.device)[:, None]
    counts = torch.bincount(index.reshape(-1), minlength=256 * batch * channels).reshape(-1, 256).to(torch.float64)
    values = torch.arange(256, dtype=torch.float64, device=x.device)
    # every product and partial sum is an integer below 2**53: exact in any order, as in the kernel
    mean = (counts * values).sum(dim=1) / n
    deviation = values - mean[:, None]
    variance = _numpy_pairwise_sum(counts * (deviation * deviation)) / n
    adjusted = torch.clamp(torch.sqrt(variance), min=1 / math.sqrt(n))
    return (1 / adjusted).reshape(batch, channels), (-mean / adjusted).reshape(batch, channels)


def _numpy_pairwise_sum(rows: torch.Tensor) -> torch.Tensor:
    """Sums of the 256 values of each row, added in the order NumPy's pairwise summation adds
    them (two halves of 128; each half in eight running sums, combined as a tree)."""
    halves = []
    for half in (rows[:, :128], rows[:, 128:]):
        lanes = half[:, 0:8].clone()
        for k in range(8, 128, 8):
            lanes += half[:, k:k + 8]
        halves.append(((lanes[:, 0] + lanes[:, 1]) + (lanes[:, 2] + lanes[:, 3]))
                      + ((lanes[:, 4] + lanes[:, 5]) + (lanes[:, 6] + lanes[:, 7])))
    return halves[0] + halves[1]
