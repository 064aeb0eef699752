"""A training table read without this project: plain PyArrow, DuckDB, Hugging Face `datasets`.

What the README shows for each; they must give the pixels and labels the loader gives. DuckDB
and `datasets` are optional (bench/requirements.txt installs them): their tests skip without.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from imageprep.training import numpy_batches
from runner_helpers import image_struct_array
from udfs.kernels import normalize as kernel

COUNT = 6


@pytest.fixture
def train(tmp_path):
    """`target/warehouse/train_set` as a build leaves it: a version folder (with Spark's _SUCCESS and
    .crc files), the link, and the catalog recording the normalization."""
    warehouse = tmp_path / "target" / "warehouse"
    version = warehouse / "_versions" / "train_set" / "v1"
    version.mkdir(parents=True)
    rng = np.random.default_rng(4)
    pixels = rng.integers(0, 256, (COUNT, 8, 6, 3), dtype=np.uint8)
    paths = [f"img/{i}.png" for i in range(COUNT)]
    table = pa.table({"path": paths, "label_index": pa.array([i % 2 for i in range(COUNT)], pa.int32()),
                      "image": image_struct_array(pixels, paths)})
    pq.write_table(table.slice(0, 4), version / "part-00000-a.snappy.parquet")
    pq.write_table(table.slice(4), version / "part-00001-a.snappy.parquet")
    (version / "_SUCCESS").write_bytes(b"")
    (version / ".part-00000-a.snappy.parquet.crc").write_bytes(b"not parquet")
    record = {"column": "image", **kernel.describe("imagenet")}
    (warehouse / "_catalog.json").write_text(json.dumps({"train_set": {
        "kind": "table", "version": "_versions/train_set/v1", "meta": {"normalization": record}}}))
    os.symlink("_versions/train_set/v1", warehouse / "train_set")
    return warehouse / "train_set"


def loader_view(train):
    """What the loader gives: pixels (B, H, W, C), labels, and the float32 tensors."""
    pixels = np.concatenate([x for x, _ in numpy_batches(train, batch_size=COUNT, output="uint8")])
    tensors, labels = next(iter(numpy_batches(train, batch_size=COUNT)))
    return pixels.transpose(0, 2, 3, 1), labels, tensors


def image_array(image: dict) -> np.ndarray:
    """Our image struct as a (H, W, C) uint8 array: interleaved RGB bytes."""
    return np.frombuffer(image["data"], np.uint8).reshape(image["height"], image["width"], image["nChannels"])


def test_plain_pyarrow(train):
    table = pq.read_table(train, columns=["path", "image", "label_index"]).sort_by("path")  # skips _SUCCESS, .crc
    pixels = np.stack([image_array(im) for im in table.column("image").to_pylist()])
    norm = json.loads((train.parent / "_catalog.json").read_text())["train_set"]["meta"]["normalization"]
    expected_pixels, labels, tensors = loader_view(train)
    assert pixels.tobytes() == expected_pixels.tobytes()
    assert table.column("label_index").to_pylist() == labels.tolist()
    x = kernel.normalize_batch(pixels, "custom", norm["mean"], norm["std"], norm["layout"])
    assert x.tobytes() == tensors.tobytes()


def test_duckdb(train):
    duckdb = pytest.importorskip("duckdb", reason="DuckDB is optional: pip install duckdb (bench/requirements.txt)")
    rows = duckdb.sql(f"SELECT image, label_index FROM read_parquet('{train}/*.parquet') ORDER BY path").fetchall()
    pixels = np.stack([image_array(image) for image, _ in rows])
    expected_pixels, labels, _ = loader_view(train)
    assert pixels.tobytes() == expected_pixels.tobytes()
    assert [label for _, label in rows] == labels.tolist()


def test_hugging_face_datasets(train, tmp_path):
    datasets = pytest.importorskip("datasets", reason="Hugging Face datasets is optional: pip install datasets "
                                                      "(bench/requirements.txt)")
    files = sorted(str(f) for f in train.glob("*.parquet"))
    dataset = datasets.Dataset.from_parquet(files, cache_dir=str(tmp_path / "hf_cache"))
    dataset.set_transform(lambda batch: {"pixels": [image_array(im) for im in batch["image"]],
                                         "label_index": batch["label_index"]})
    rows = [dataset[i] for i in range(len(dataset))]
    expected_pixels, labels, _ = loader_view(train)
    assert np.stack([row["pixels"] for row in rows]).tobytes() == expected_pixels.tobytes()
    assert [row["label_index"] for row in rows] == labels.tolist()
