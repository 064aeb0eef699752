"""Normalizing uint8 batches in the loader (NumPy) and on the device (torch), bit for bit as SQL's
`normalize` does: the reference is the kernel behind it, `udfs.kernels.normalize.normalize_batch`."""
from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from imageprep.loader_normalize import Normalizer
from imageprep.training import make_torch_dataset, numpy_batches, table_normalization
from runner_helpers import image_struct_array
from udfs.kernels import normalize as kernel

CASES = [  # method, channels, mean, std
    ("zero_one", 3, None, None),
    ("minus_one_one", 3, None, None),
    ("imagenet", 3, None, None),
    ("imagenet", 1, None, None),  # grayscale: the averaged ImageNet statistics
    ("standard", 3, None, None),
    ("custom", 4, [0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8]),
]


def batch(channels: int, count: int = 9, height: int = 11, width: int = 7, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (count, height, width, channels), dtype=np.uint8)
    pixels[1] = 77  # a flat image: `standard` takes its floor on the standard deviation
    pixels[2] = rng.integers(120, 124, (height, width, channels))  # a narrow range
    return pixels


def spec(method, channels, mean, std, layout) -> dict:
    return {"column": "image", **kernel.describe(method, mean, std, layout, channels)}


@pytest.mark.parametrize("layout", ["CHW", "HWC"])
@pytest.mark.parametrize("method,channels,mean,std", CASES)
def test_the_loader_normalizer_equals_the_kernel_bit_for_bit(method, channels, mean, std, layout):
    pixels = batch(channels)  # 9 images: more than one chunk of the normalizer
    expected = kernel.normalize_batch(pixels, method, mean, std, layout)
    out = np.full(expected.shape, np.nan, dtype=np.float32)
    assert Normalizer(spec(method, channels, mean, std, layout))(pixels, out) is out
    assert out.tobytes() == expected.tobytes()


def torch_or_skip():
    return pytest.importorskip("torch", reason="PyTorch is optional: pip install torch to run this test")


@pytest.mark.parametrize("layout", ["CHW", "HWC"])
@pytest.mark.parametrize("method,channels,mean,std", CASES)
def test_device_normalize_on_the_cpu_equals_the_kernel_bit_for_bit(method, channels, mean, std, layout):
    torch = torch_or_skip()
    from imageprep.training import DeviceNormalize

    for seed, size in ((0, (11, 7)), (1, (224, 224))):  # 224 x 224: large value counts for `standard`
        pixels = batch(channels, 3, *size, seed=seed)
        expected = kernel.normalize_batch(pixels, method, mean, std, layout)
        x = torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)) if layout == "CHW" else pixels)
        got = DeviceNormalize(spec(method, channels, mean, std, layout))(x)
        assert got.dtype == torch.float32 and got.numpy().tobytes() == expected.tobytes()


def test_device_normalize_takes_a_method_name_and_refuses_what_it_cannot_do():
    torch = torch_or_skip()
    from imageprep.training import DeviceNormalize

    pixels = batch(3, 3)
    x = torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)))
    assert DeviceNormalize("imagenet")(x).numpy().tobytes() == kernel.normalize_batch(pixels, "imagenet").tobytes()
    with pytest.raises(ValueError, match="takes a uint8 batch"):
        DeviceNormalize("imagenet")(x.float())
    with pytest.raises(ValueError, match="for 3 channels, the batch has 2"):
        DeviceNormalize("imagenet")(x[:, :2])
    with pytest.raises(ValueError, match="normalization record"):
        DeviceNormalize({"method": "sepia"})


# --- from a table: uint8 batches normalized on the device equal the loader's float32 batches --------

def write_image_table(warehouse, method="imagenet", layout="CHW", count=13):
    """A built-like image table (image struct, label_index) whose normalization the catalog records."""
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (count, 10, 12, 3), dtype=np.uint8)
    paths = [f"img/{i}.png" for i in range(count)]
    table = pa.table({"path": paths, "label_index": pa.array(range(count), pa.int32()),
                      "image": image_struct_array(pixels, paths)})
    version = warehouse / "_versions" / "train_set" / "v1"
    version.mkdir(parents=True)
    pq.write_table(table, version / "part-00000.parquet", row_group_size=4)
    record = {"column": "image", **kernel.describe(method, layout=layout)}
    (warehouse / "_catalog.json").write_text(json.dumps({"train_set": {
        "kind": "table", "version": "_versions/train_set/v1", "meta": {"normalization": record}}}))
    os.symlink("_versions/train_set/v1", warehouse / "train_set")
    return warehouse / "train_set", pixels


@pytest.mark.parametrize("method,layout", [("imagenet", "CHW"), ("standard", "HWC")])
def test_uint8_batches_normalized_on_the_device_equal_the_float32_batches(tmp_path, method, layout):
    torch = torch_or_skip()
    from torch.utils.data import DataLoader

    from imageprep.training import DeviceNormalize

    train, pixels = write_image_table(tmp_path, method, layout)
    assert table_normalization(train)["method"] == method
    normalize = DeviceNormalize(table_normalization(train))
    for kw in ({}, {"shuffle": True, "seed": 1, "shuffle_buffer": 5}):
        floats = [x for x, _ in numpy_batches(train, batch_size=5, **kw)]
        pixels_batches = [x for x, _ in numpy_batches(train, batch_size=5, output="uint8", **kw)]
        assert all(p.dtype == np.uint8 for p in pixels_batches)
        for f, p in zip(floats, pixels_batches, strict=True):
            assert normalize(torch.from_numpy(p)).numpy().tobytes() == f.tobytes()
        loader = DataLoader(make_torch_dataset(train, output="uint8", batch_size=5, **kw), batch_size=None)
        for f, (x, _) in zip(floats, loader, strict=True):
            assert x.dtype == torch.uint8 and normalize(x).numpy().tobytes() == f.tobytes()
    hwc = np.concatenate([x for x, _ in numpy_batches(train, batch_size=4, output="uint8")])
    assert (hwc if layout == "HWC" else hwc.transpose(0, 2, 3, 1)).tobytes() == pixels.tobytes()
