"""Feed a built table to a training loop: NumPy batches, or a PyTorch dataset. No Spark.

A built table is a folder of plain Parquet files, `target/warehouse/<table>` (a link to the
version the last build committed). This module reads it with PyArrow, one row group at a
time, so memory stays bounded by a row group plus one shuffle buffer, however large the
table is. Rows of `train_set` and friends hold the resized image as `image` (our image
struct: RGB uint8 pixels, interleaved HWC, with height, width and nChannels) and the class as
`label_index`; each row is one example (augmented copies are rows too). The table records how
its images become tensors (`meta.normalization`: method, mean, std, layout), and batches are
normalized that way when they are read, bit for bit as SQL's `normalize(image, method)` would
give them.

    from imageprep.training import numpy_batches, table_path

    train = table_path(".", "train_set")          # ./target/warehouse/train_set (the project's warehouse)
    for epoch in range(10):
        for x, y in numpy_batches(train, batch_size=32, shuffle=True, seed=0, epoch=epoch):
            ...  # x: float32 (32, 3, 224, 224), normalized as recorded; y: int64 (32,)

    # The uint8 pixels instead, to normalize on the GPU (4 times less to copy there):
    for x, y in numpy_batches(train, batch_size=32, output="uint8"):
        ...  # x: uint8 (32, 3, 224, 224) in the recorded layout; DeviceNormalize applies the record

    # Any numeric column works as x: colour histograms for a linear model
    for x, y in numpy_batches(train, batch_size=256, columns=("color_histogram", "label_index")):
        ...  # x: float32 (256, n_bins)

A table written with float32 tensors (`tensor` bytes with `tensor_shape`, var
`store_tensors`) is read as before: `columns=("tensor", "label_index")`.

With PyTorch installed (`pip install torch`):

    from torch.utils.data import DataLoader
    from imageprep.training import make_torch_dataset

    dataset = make_torch_dataset(train, shuffle=True, seed=0, batch_size=64)
    loader = DataLoader(dataset, batch_size=None, num_workers=2)   # the dataset makes the batches
    for epoch in range(10):
        dataset.set_epoch(epoch)                  # a new order each epoch, still reproducible
        for x, y in loader:                       # x: float32 (64, 3, 224, 224), y: int64 (64,)
            ...

Without `batch_size` the dataset yields rows and the DataLoader batches them (slower: a
Python step and a copy per row).

Order and shuffling
-------------------
The unit of reading is a row group of a Parquet file. An epoch's rows form one sequence:
the row groups in order of file path and row-group index, or, with `shuffle=True`,
permuted by `(seed, epoch)` (NumPy `default_rng`); each row group's rows in stored order.
Without shuffle, batches follow that sequence exactly. With shuffle, rows are gathered
into buffers of whole row groups, at least `shuffle_buffer` rows each (default
`max(8 * batch_size, 256)`), and each buffer is emitted in a random order drawn from
`(seed, epoch, rank, worker, buffer number)`; batches are cut from that stream.

The same table, seed, epoch, buffer, ranks and number of workers give the same batches, in
the same order. Rows only mix with rows of the row groups that share a buffer, so a buffer
smaller than a few row groups gives a weaker shuffle: a table written in label order then
yields batches dominated by few labels. Raise `shuffle_buffer` (memory: rows x row size,
~150 kB per 224x224 uint8 image), or write the table in a random order.

Several processes (distributed training)
----------------------------------------
With `rank` and `world_size` (for the dataset: read from `torch.distributed` when it is
initialised, unless given), the epoch's sequence is cut into `world_size` contiguous spans
of equal length, one per rank, as `DistributedSampler` does: `shard_remainder="pad"`
(default) repeats the first rows to fill the last span, `"drop"` leaves the last rows
(fewer than `world_size`) out. So every row is read by exactly one rank per epoch (but
those repeats), and ranks get the same number of batches. Within a rank, DataLoader
workers split the rank's span the same way, into parts whose sizes depend only on the
span's length: worker w of every rank yields as many batches as worker w of any other.
With `DataLoader(batch_size=B)` over rows, each worker's last batch may be short
(`drop_last` drops it, on every rank alike).

Resuming mid-epoch
------------------
The dataset has `state_dict()` and `load_state_dict()`, the protocol
`torchdata.stateful_dataloader.StatefulDataLoader` uses with and without workers. A state
is the number of rows one reader (a rank's worker) has yielded in the epoch, with what
fixes their order; after `load_state_dict`, the rest of the epoch yields exactly the
batches the uninterrupted run would have, without reading the rows it skips. Without
workers the dataset's own state is enough (`DataLoader(num_workers=0)` fetches exactly
the rows it yields); with workers, each worker holds its own, and StatefulDataLoader
collects them.

Versions
--------
A pass reads one version of the table from start to end: the one the warehouse catalog
(`_catalog.json`, the committed state) names when the pass starts, else the one the path's
link points to. For the dataset, that is when it is made and at each `set_epoch`, so all
its workers read the same one. A build publishing a new version meanwhile is read by the
next pass. A saved state names the version it was taken on and refuses, saying so, to
resume on another.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from udfs.kernels import normalize as normalize_kernel  # noqa: F401  (the kernel batches are normalized with)

from . import files, loader_version
from .loader_sharding import Shard
from .project import PROJECT_FILE, load_project
from .table_reader import TableNotFoundError, TableReader, check_batch_size, check_seed, default_buffer

__all__ = [
    "TableNotFoundError",
    "table_path",
    "table_normalization",
    "numpy_batches",
    "make_torch_dataset",
    "ImageTableDataset",
    "DeviceNormalize",
]

TORCH_MISSING = ("PyTorch is not installed, and the PyTorch dataset needs it: pip install torch "
                 "(numpy_batches() works without it)")


def table_path(project_dir: str | os.PathLike, name: str, target: str | None = None) -> Path | str:
    """Where a built table of the project is: `<warehouse>/<name>`, in the warehouse the project's
    `target` (its default target if None) builds into; `./target/warehouse/<name>` unless
    project.yml says otherwise. A Path on a local warehouse (a link to the current version), the
    URI on a warehouse named by one. The table must exist."""
    root = Path(project_dir).resolve()
    if (root / PROJECT_FILE).exists():
        project = load_project(root, settings_only=True)
        warehouse = project.warehouse_for(project.target(target))
    else:  # a folder holding a warehouse, but not the project's files
        warehouse = str(root / "target" / "warehouse")
    if files.is_uri(warehouse):
        path = str(files.location(warehouse) / name)
        if loader_version.pin(path) is None:
            raise TableNotFoundError(f"table {name} not built: run python runner.py build in "
                                     f"{root} (the catalog of {warehouse} has no table {name})")
        return path
    path = Path(warehouse) / name
    if not path.is_dir():
        detail = (f"{path} is a link to a missing folder" if path.is_symlink()
                  else f"{path} does not exist")
        raise TableNotFoundError(f"table {name} not built: run python runner.py build "
                                 f"in {root} ({detail})")
    return path


def numpy_batches(table_path: str | os.PathLike, batch_size: int = 32,
                  columns: Sequence[str] | None = None, shuffle: bool = False,
                  seed: int = 0, drop_last: bool = False, *,
                  shuffle_buffer: int | None = None, output: str = "float32",
                  normalization: str | dict | None = None, epoch: int = 0,
                  rank: int = 0, world_size: int = 1,
                  shard_remainder: str = "pad") -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield `(x, y)` batches of a built table, streaming it row group by row group.

    `columns` names the input and the target column; by default `image` (or, in a table
    without one, `tensor`) and `label_index`. The input is one of:

    - an image column (our image struct): with `output="float32"` (the default), x is
      the images normalized as the table records (`table_normalization`), or as
      `normalization` says (a method name such as "imagenet", or a record like the
      table's), shape (B, C, H, W) for layout CHW; bit-identical to SQL
      `normalize(image, method, mean, std, layout)` of the same rows. With
      `output="uint8"`, x is the pixels themselves in the same layout, to normalize
      elsewhere (on the GPU: `DeviceNormalize`);
    - a binary column of raw little-endian float32 (`tensor`), reshaped to each row's
      `<column>_shape` (`tensor_shape`), giving x of shape (B, *shape);
    - a list of numbers (`color_histogram`), giving x of shape (B, length).

    x is always a new, writable array. The target is an integer column (y: int64,
    shape (B,)) or a list of integers such as `label_onehot` (y: int64, shape (B, K)).

    All rows of one batch must share a shape: otherwise ValueError naming the `path`
    of the row that differs. The last batch has fewer rows unless `drop_last`.
    `shuffle`, `seed`, `epoch` and `shuffle_buffer`; `rank`, `world_size` and
    `shard_remainder` (this process's share of the rows): see the module docstring.
    """
    reader = TableReader(table_path, columns, output, normalization)  # errors now, not at the first next()
    batch_size = check_batch_size(batch_size)
    plan = reader.plan(shuffle=shuffle, seed=check_seed(seed), epoch=check_seed(epoch, "epoch"),
                       buffer_rows=default_buffer(shuffle_buffer, batch_size),
                       shard=Shard(rank=rank, world_size=world_size, remainder=shard_remainder))
    return reader.batches(plan, batch_size, drop_last=drop_last)


def table_normalization(table_path: str | os.PathLike, column: str = "image") -> dict | None:
    """How the table's `column` images become tensors, as recorded when it was built, or None.

    A dict with `method`, `mean` and `std` (per channel, on the 0..1 scale; None for
    `standard`, which uses each image's own statistics), `layout` ("CHW" or "HWC"),
    `channel_order`, `dtype` and `formula`. Read from the warehouse catalog beside the
    table folder when there is one, else from the Parquet files' schema metadata.
    """
    return TableReader(table_path, (column, None), "uint8", None).recorded_normalization()


def make_torch_dataset(table_path: str | os.PathLike, columns: Sequence[str] | None = None,
                       shuffle: bool = False, seed: int = 0, *, shuffle_buffer: int | None = None,
                       read_batch_rows: int = 32, output: str = "float32",
                       normalization: str | dict | None = None, batch_size: int | None = None,
                       drop_last: bool = False, rank: int | None = None, world_size: int | None = None,
                       shard_remainder: str = "pad"):
    """An `ImageTableDataset` over the table; ImportError (with the fix) without PyTorch.

    `columns`, `output` and `normalization` as for `numpy_batches`. With `batch_size`, the
    dataset yields whole batches `(x, y)` as tensors (give the DataLoader `batch_size=None`),
    the last one short unless `drop_last`; without, it yields rows `(x, label)` one by one,
    read and decoded `read_batch_rows` at a time (give the DataLoader its own `batch_size`).
    The shuffle buffer defaults to `max(8 * (batch_size or read_batch_rows), 256)` rows per
    worker. `rank` and `world_size` default to `torch.distributed`'s when it is initialised
    (make the dataset after `init_process_group`), else 0 and 1.
    """
    cls = _torch_dataset_class()
    return cls(table_path, columns=columns, shuffle=shuffle, seed=seed, shuffle_buffer=shuffle_buffer,
               read_batch_rows=read_batch_rows, output=output, normalization=normalization,
               batch_size=batch_size, drop_last=drop_last, rank=rank, world_size=world_size,
               shard_remainder=shard_remainder)


def __getattr__(name: str):
    # The PyTorch classes exist only where torch imports; their modules load on first access.
    if name == "ImageTableDataset":
        return _torch_dataset_class()
    if name == "DeviceNormalize":
        _require_torch()
        from .loader_device import DeviceNormalize

        return DeviceNormalize
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _require_torch() -> None:
    try:
        import torch  # noqa: F401  (checked on every call, so a removed torch is noticed)
    except ImportError as exc:
        raise ImportError(TORCH_MISSING) from exc


def _torch_dataset_class():
    _require_torch()
    from .loader_torch import ImageTableDataset

    return ImageTableDataset
