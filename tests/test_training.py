"""imageprep.training: built tables -> NumPy batches / a PyTorch dataset. No Spark here.

The tables are written with PyArrow the way a build writes them: a versioned folder of
Parquet part files (several row groups each) behind a symlink, next to Spark's `_SUCCESS`
and hidden `.crc` files. Row i holds the tensor 100*i + arange(24) of shape [2,3,4] and
label_index i, so every value says which row it came from.
"""
from __future__ import annotations

import os
import pickle
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from imageprep import training
from imageprep.training import TableNotFoundError, make_torch_dataset, numpy_batches, table_path

SHAPE = (2, 3, 4)
N_ROWS = 10


def tensor(i: int, shape=SHAPE) -> np.ndarray:
    return (np.arange(int(np.prod(shape)), dtype=np.float32) + 100 * i).reshape(shape)


def rows(ids, shapes=None, tensors=None) -> pa.Table:
    shapes = shapes or {}
    tensors = tensors or {}
    return pa.table({
        "path": [f"img/{i}.jpg" for i in ids],
        "label": [f"class{i % 3}" for i in ids],
        "label_index": pa.array(list(ids), pa.int32()),
        "tensor": [tensors.get(i, tensor(i, shapes.get(i, SHAPE)).astype("<f4").tobytes()) for i in ids],
        "tensor_shape": pa.array([list(shapes.get(i, SHAPE)) for i in ids], pa.list_(pa.int32())),
        "color_histogram": pa.array([[float(i), 0.5, 1.0] for i in ids], pa.list_(pa.float64())),
    })


def write_table(project, name="train_set", **kw) -> str:
    """Two part files: rows 0-5 in row groups of 3, rows 6-9 in row groups 3 + 1."""
    version = project / "target" / "warehouse" / f".{name}_versions" / "v0001"
    version.mkdir(parents=True)
    pq.write_table(rows(range(0, 6), **kw), version / "part-00000.parquet", row_group_size=3)
    pq.write_table(rows(range(6, N_ROWS), **kw), version / "part-00001.parquet", row_group_size=3)
    (version / "_SUCCESS").write_bytes(b"")
    (version / ".part-00000.parquet.crc").write_bytes(b"not parquet")
    link = project / "target" / "warehouse" / name
    os.symlink(version, link)
    return str(link)


@pytest.fixture
def table(tmp_path):
    return write_table(tmp_path)


def collect(batches):
    xs, ys = zip(*batches)
    return list(xs), list(ys)


def test_batches_are_the_rows_in_table_order(table):
    xs, ys = collect(numpy_batches(table, batch_size=4))
    assert [x.shape for x in xs] == [(4, *SHAPE), (4, *SHAPE), (2, *SHAPE)]
    assert all(x.dtype == np.float32 and x.flags.writeable for x in xs)
    assert all(y.dtype == np.int64 for y in ys)
    np.testing.assert_array_equal(np.concatenate(ys), np.arange(N_ROWS))
    np.testing.assert_array_equal(np.concatenate(xs), np.stack([tensor(i) for i in range(N_ROWS)]))


def test_drop_last_drops_only_the_short_batch(table):
    xs, ys = collect(numpy_batches(table, batch_size=4, drop_last=True))
    assert [len(y) for y in ys] == [4, 4]
    np.testing.assert_array_equal(np.concatenate(ys), np.arange(8))
    _, ys = collect(numpy_batches(table, batch_size=5, drop_last=True))
    assert [len(y) for y in ys] == [5, 5]  # nothing to drop when the rows divide evenly


def order(batches):
    xs, ys = collect(batches)
    x, y = np.concatenate(xs), np.concatenate(ys)
    # every row stays whole: its tensor is the one of its label
    np.testing.assert_array_equal(x, np.stack([tensor(i) for i in y]))
    return y.tolist(), [len(b) for b in ys]


@pytest.mark.parametrize("shuffle_buffer", [None, 4])  # 4 < rows: several buffers, carried rows
def test_shuffle_is_a_deterministic_permutation(table, shuffle_buffer):
    kw = dict(batch_size=3, shuffle=True, shuffle_buffer=shuffle_buffer)
    first, sizes = order(numpy_batches(table, seed=7, **kw))
    again, _ = order(numpy_batches(table, seed=7, **kw))
    other, _ = order(numpy_batches(table, seed=8, **kw))
    assert first == again
    assert sorted(first) == list(range(N_ROWS))
    assert first != list(range(N_ROWS))
    assert other != first
    assert sorted(other) == list(range(N_ROWS))
    assert sizes == [3, 3, 3, 1]


def test_shuffle_mixes_rows_within_a_row_group(tmp_path):
    version = tmp_path / "one"
    version.mkdir()
    pq.write_table(rows(range(N_ROWS)), version / "part-00000.parquet")  # a single row group
    runs = {seed: order(numpy_batches(version, batch_size=4, shuffle=True, seed=seed))[0]
            for seed in (0, 1)}
    assert all(sorted(y) == list(range(N_ROWS)) for y in runs.values())
    assert runs[0] != list(range(N_ROWS)) and runs[1] != runs[0]


def test_a_rebuild_during_a_pass_does_not_mix_versions(tmp_path):
    table = write_table(tmp_path)
    batches = numpy_batches(table, batch_size=4)
    _, y = next(batches)
    newer = tmp_path / "newer"
    newer.mkdir()
    pq.write_table(rows(range(100, 110)), newer / "part-00000.parquet")
    os.symlink(newer, tmp_path / "link")
    os.replace(tmp_path / "link", table)  # what a build does when it switches versions
    rest = [v for _, ys in batches for v in ys.tolist()]
    assert y.tolist() + rest == list(range(N_ROWS))
    _, ys = collect(numpy_batches(table, batch_size=100))
    assert ys[0].tolist() == list(range(100, 110))  # the next pass reads the new version


def test_shuffle_with_drop_last(table):
    y, sizes = order(numpy_batches(table, batch_size=4, shuffle=True, seed=3, drop_last=True))
    assert sizes == [4, 4]
    assert len(set(y)) == 8 and set(y) <= set(range(N_ROWS))


def test_a_list_column_as_input(table):
    xs, ys = collect(numpy_batches(table, batch_size=6, columns=("color_histogram", "label_index")))
    assert [x.shape for x in xs] == [(6, 3), (4, 3)]
    x = np.concatenate(xs)
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x[:, 0], np.arange(N_ROWS))
    np.testing.assert_array_equal(x[:, 1:], np.tile([0.5, 1.0], (N_ROWS, 1)))


def test_rows_of_different_shapes_in_one_batch_name_the_path(tmp_path):
    table = write_table(tmp_path, shapes={5: (3, 2, 2)})  # row 5: 12 floats, consistent bytes
    batches = numpy_batches(table, batch_size=4)
    x, _ = next(batches)  # rows 0-3 are fine
    assert x.shape == (4, *SHAPE)
    with pytest.raises(ValueError, match=r"img/5\.jpg") as err:
        next(batches)
    assert "[3, 2, 2]" in str(err.value) and "img/4.jpg" in str(err.value)
    # one row per batch is always consistent
    xs, _ = collect(numpy_batches(table, batch_size=1))
    assert xs[5].shape == (1, 3, 2, 2) and xs[4].shape == (1, *SHAPE)
    np.testing.assert_array_equal(xs[5][0], tensor(5, (3, 2, 2)))


def test_tensor_bytes_that_do_not_match_the_shape_name_the_path(tmp_path):
    table = write_table(tmp_path, tensors={7: b"\x00" * 20})
    with pytest.raises(ValueError, match=r"img/7\.jpg.*20 bytes.*needs 96"):
        list(numpy_batches(table, batch_size=4))


def test_missing_table(tmp_path):
    with pytest.raises(TableNotFoundError, match="table train_set not built: run python runner.py build"):
        table_path(tmp_path, "train_set")
    with pytest.raises(FileNotFoundError):  # also an ordinary FileNotFoundError, raised on the call
        numpy_batches(tmp_path / "target" / "warehouse" / "train_set")
    (tmp_path / "target" / "warehouse").mkdir(parents=True)
    os.symlink(tmp_path / "gone", tmp_path / "target" / "warehouse" / "train_set")
    with pytest.raises(TableNotFoundError, match="link to a missing folder"):
        table_path(tmp_path, "train_set")


def test_table_path_finds_a_built_table(tmp_path):
    write_table(tmp_path)
    path = table_path(tmp_path, "train_set")
    assert path == tmp_path / "target" / "warehouse" / "train_set"
    _, ys = collect(numpy_batches(path, batch_size=100))
    assert ys[0].tolist() == list(range(N_ROWS))


def test_unknown_or_unusable_columns_are_reported(table):
    with pytest.raises(ValueError, match="no column 'pixels'.*label_index"):
        numpy_batches(table, columns=("pixels", "label_index"))
    with pytest.raises(ValueError, match="label_index rather than label"):
        numpy_batches(table, columns=("tensor", "label"))


def test_make_torch_dataset_without_torch_says_how_to_install(table, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    with pytest.raises(ImportError, match="pip install torch"):
        make_torch_dataset(table)
    with pytest.raises(ImportError, match="pip install torch"):
        training.ImageTableDataset


# --- PyTorch -------------------------------------------------------------------------------

def torch_or_skip():
    return pytest.importorskip("torch", reason="PyTorch is optional: pip install torch to run this test")


def test_torch_dataset_yields_each_row_as_a_tensor(table):
    torch = torch_or_skip()
    dataset = make_torch_dataset(table)
    assert isinstance(dataset, torch.utils.data.IterableDataset)
    assert isinstance(dataset, training.ImageTableDataset)
    items = list(dataset)
    assert [y for _, y in items] == list(range(N_ROWS))
    assert all(type(y) is int for _, y in items)
    for i, (x, _) in enumerate(items):
        assert isinstance(x, torch.Tensor) and x.dtype == torch.float32
        assert tuple(x.shape) == SHAPE
        np.testing.assert_array_equal(x.numpy(), tensor(i))


@pytest.mark.parametrize("shuffle", [False, True])
def test_dataloader_workers_read_each_row_once(table, shuffle):
    torch = torch_or_skip()
    from torch.utils.data import DataLoader

    dataset = make_torch_dataset(table, shuffle=shuffle, seed=1)
    loader = DataLoader(dataset, batch_size=3, num_workers=2)
    seen = []
    for x, y in loader:
        assert x.dtype == torch.float32 and tuple(x.shape[1:]) == SHAPE
        np.testing.assert_array_equal(x.numpy(), np.stack([tensor(int(i)) for i in y]))
        seen += y.tolist()
    assert sorted(seen) == list(range(N_ROWS))  # every row exactly once
    if shuffle:
        again = [i for _, y in DataLoader(dataset, batch_size=3, num_workers=2) for i in y.tolist()]
        assert again == seen


def test_torch_dataset_epochs_and_pickling(table):
    torch_or_skip()
    dataset = make_torch_dataset(table, shuffle=True, seed=0, shuffle_buffer=4)
    epoch0 = [y for _, y in dataset]
    dataset.set_epoch(1)
    epoch1 = [y for _, y in dataset]
    assert sorted(epoch0) == sorted(epoch1) == list(range(N_ROWS))
    assert epoch0 != epoch1
    copy = pickle.loads(pickle.dumps(dataset))  # what spawn-started DataLoader workers receive
    assert [y for _, y in copy] == epoch1


# -- Image columns: tensors made in the loader, as SQL's normalize() makes them ------------------------

NORMALIZATIONS = ("zero_one", "minus_one_one", "standard", "imagenet")


def generated_photos(folder) -> None:
    """Photo-like JPEGs and PNGs (smooth colour fields with noise, one grayscale, one flat)."""
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(5)
    for i in range(6):
        y, x = np.mgrid[0:90 + 10 * i, 0:120]
        field = np.stack([128 + 90 * np.sin(x / (9.0 + i) + k) * np.cos(y / 13.0 - k) for k in range(3)], axis=2)
        pixels = np.clip(field + rng.normal(0, 8, field.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"photo_{i}.jpg", quality=88)
    Image.fromarray(pixels[:, :, 0]).save(folder / "gray.png")
    Image.new("RGB", (50, 40), (10, 200, 30)).save(folder / "flat.png")


@pytest.fixture(scope="module", params=["generated", "shared photos"])
def image_table(request, spark, tmp_path_factory):
    """A Parquet table of real decoded images (`image`, `label_index`), written by Spark."""
    if request.param == "generated":
        folder = tmp_path_factory.mktemp("generated") / "images"
        generated_photos(folder)
    else:
        folder = request.getfixturevalue("photos_dir")
    out = tmp_path_factory.mktemp("image_table") / "images"
    (spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(str(folder))
     .selectExpr("path", "decode_resize(content, path, 48, 64, 'cover') as image", "0 as label_index")
     .where("image is not null").orderBy("path").coalesce(1).write.parquet(str(out)))
    return out


@pytest.mark.parametrize("method", NORMALIZATIONS)
def test_loader_tensors_equal_sql_normalize_bit_for_bit(spark, image_table, method):
    table = spark.read.parquet(str(image_table))
    expected = [r["t"] for r in table.selectExpr(f"normalize(image, '{method}') as t").collect()]
    x = np.concatenate([b for b, _ in numpy_batches(image_table, batch_size=4, normalization=method)])
    assert x.dtype == np.float32 and x.shape == (len(expected), 3, 48, 64) and len(expected) >= 6
    for i, tensor_bytes in enumerate(expected):
        assert x[i].tobytes() == tensor_bytes, i
    hwc = [r["t"] for r in table.selectExpr(f"normalize(image, '{method}', NULL, NULL, 'HWC') as t").collect()]
    x = np.concatenate([b for b, _ in numpy_batches(image_table, batch_size=5,
                                                     normalization={"method": method, "layout": "HWC"})])
    assert x.shape[1:] == (48, 64, 3) and [row.tobytes() for row in x] == hwc


def test_loader_follows_the_normalization_the_table_records(spark, tmp_path, image_table):
    from imageprep.normalization import complete_meta

    spec = complete_meta({"normalization": {"column": "image", "method": "minus_one_one"}}, "t")["normalization"]
    recorded = tmp_path / "recorded"
    spark.read.parquet(str(image_table)).withMetadata("image", {"normalization": spec}).write.parquet(str(recorded))
    assert training.table_normalization(recorded)["method"] == "minus_one_one"
    expected = [r["t"] for r in spark.read.parquet(str(recorded)).selectExpr(
        "normalize(image, 'minus_one_one') as t").collect()]
    x = np.concatenate([b for b, _ in numpy_batches(recorded, batch_size=4)])  # image column by default
    assert [row.tobytes() for row in x] == expected
    pixels = np.concatenate([b for b, _ in numpy_batches(recorded, batch_size=4, output="uint8")])
    assert pixels.dtype == np.uint8 and pixels.shape == x.shape
    assert np.array_equal(training.normalize_kernel.normalize_batch(pixels.transpose(0, 2, 3, 1), "minus_one_one"), x)


def test_an_image_table_without_a_recorded_normalization_says_what_to_pass(image_table):
    with pytest.raises(ValueError, match="records no normalization for 'image'.*normalization='imagenet'"):
        numpy_batches(image_table)
    x, _ = next(iter(numpy_batches(image_table, batch_size=2, output="uint8")))
    assert x.dtype == np.uint8 and x.shape == (2, 3, 48, 64)
    with pytest.raises(ValueError, match="output must be one of float32, uint8"):
        numpy_batches(image_table, output="float16")


def test_uint8_output_needs_an_image_column(table):
    with pytest.raises(ValueError, match="output='uint8' needs an image column"):
        numpy_batches(table, output="uint8")
