"""Feed a built table to a training loop: NumPy batches, or a PyTorch dataset. No Spark.

A built table is a folder of plain Parquet files, `target/warehouse/<table>` (often a
symlink to the version the last build wrote). This module reads it with PyArrow, one
row group at a time, so memory stays bounded by a row group plus one shuffle buffer,
however large the table is. Rows of `train_set` and friends hold the image as `tensor`
(raw float32, little-endian, C order) with its shape in `tensor_shape` (e.g. [3,224,224]),
and the class as `label_index`; each row is one example (augmented copies are rows too).

    from imageprep.training import numpy_batches, table_path

    train = table_path(".", "train_set")          # ./target/warehouse/train_set
    for epoch in range(10):
        for x, y in numpy_batches(train, batch_size=32, shuffle=True, seed=epoch):
            ...  # x: float32 (32, 3, 224, 224), y: int64 (32,)

    # Any numeric column works as x: colour histograms for a linear model
    for x, y in numpy_batches(train, batch_size=256, columns=("color_histogram", "label_index")):
        ...  # x: float32 (256, n_bins)

With PyTorch installed (`pip install torch`):

    from torch.utils.data import DataLoader
    from imageprep.training import make_torch_dataset

    dataset = make_torch_dataset(train, shuffle=True, seed=0)
    loader = DataLoader(dataset, batch_size=32, num_workers=2)
    for epoch in range(10):
        dataset.set_epoch(epoch)                  # a new order each epoch, still reproducible
        for x, y in loader:                       # x: float32 (32, 3, 224, 224), y: int64 (32,)
            ...

Order and shuffling
-------------------
The unit of reading is a row group of a Parquet file. Without `shuffle`, row groups are
read in order of file path and then row-group index, and rows in stored order, so
batches follow the table's order exactly. With `shuffle=True`, deterministically from
`seed`:

1. the list of row groups is permuted (NumPy `default_rng(seed)`), then
2. rows are read in that order into a buffer of about `shuffle_buffer` rows (default
   `max(8 * batch_size, 256)`); each time it is full, the buffer is permuted and emitted
   as whole batches; the rows left over (fewer than a batch) stay for the next buffer.

The same table, seed, batch size, buffer and number of workers give the same batches,
in the same order. Rows only mix with rows of the row groups that share a buffer, so a
buffer smaller than a few row groups gives a weaker shuffle: a table written in label
order then yields batches dominated by few labels. Raise `shuffle_buffer` (memory:
rows x row size, ~600 kB per 3x224x224 tensor), or write the table in a random order.
Pass a different seed each epoch (or call `set_epoch` on the PyTorch dataset).

A pass resolves the table's symlink when it starts, so a build that switches the table
to a new version meanwhile does not mix two versions into one pass; the next pass
(the next call) reads the new version.

PyTorch workers
---------------
`ImageTableDataset` is an `IterableDataset`. With `DataLoader(num_workers=N)` each
worker reads every N-th row group of the (permuted) list, so every row is read exactly
once per epoch, and shuffles its rows with a seed derived from (seed, epoch, worker).
A table with fewer row groups than workers leaves some workers idle. Distributed
training (several processes, each with its own DataLoader) is not split here.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from .errors import ProjectError

__all__ = [
    "TableNotFoundError",
    "table_path",
    "numpy_batches",
    "make_torch_dataset",
    "ImageTableDataset",
]

TORCH_MISSING = ("PyTorch is not installed, and the PyTorch dataset needs it: pip install torch "
                 "(numpy_batches() works without it)")


class TableNotFoundError(ProjectError, FileNotFoundError):
    """A table folder that does not exist: the project was not built (or not this table)."""


def table_path(project_dir: str | os.PathLike, name: str) -> Path:
    """`<project_dir>/target/warehouse/<name>`, checked to exist (a symlink must resolve)."""
    path = Path(project_dir) / "target" / "warehouse" / name
    if not path.is_dir():
        detail = (f"{path} is a link to a missing folder" if path.is_symlink()
                  else f"{path} does not exist")
        raise TableNotFoundError(f"table {name} not built: run python runner.py build "
                                 f"in {Path(project_dir).resolve()} ({detail})")
    return path


def numpy_batches(table_path: str | os.PathLike, batch_size: int = 32,
                  columns: Sequence[str] = ("tensor", "label_index"), shuffle: bool = False,
                  seed: int = 0, drop_last: bool = False, *,
                  shuffle_buffer: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield `(x, y)` batches of a built table, streaming it row group by row group.

    `columns` names the input and the target column. The input is either a binary
    column of raw little-endian float32 (`tensor`), reshaped to each row's
    `<column>_shape` (`tensor_shape`), giving x of shape (B, *shape); or a list of
    numbers (`color_histogram`), giving x of shape (B, length). x is always a new,
    writable float32 array. The target is an integer column (y: int64, shape (B,)) or a
    list of integers such as `label_onehot` (y: int64, shape (B, K)).

    All rows of one batch must share a shape: otherwise ValueError naming the `path`
    of the row that differs. The last batch has fewer rows unless `drop_last`.
    `shuffle`, `seed` and `shuffle_buffer`: see the module docstring.
    """
    reader = _TableReader(table_path, columns)  # errors now, not at the first next()
    return reader.batches(batch_size, shuffle=shuffle, seed_key=(_check_seed(seed),),
                          drop_last=drop_last, shuffle_buffer=shuffle_buffer)


def make_torch_dataset(table_path: str | os.PathLike, columns: Sequence[str] = ("tensor", "label_index"),
                       shuffle: bool = False, seed: int = 0, *, shuffle_buffer: int | None = None,
                       read_batch_rows: int = 32):
    """An `ImageTableDataset` over the table; ImportError (with the fix) without PyTorch.

    `read_batch_rows` rows are read and decoded at a time; the shuffle buffer defaults
    to `max(8 * read_batch_rows, 256)` rows per worker. Rows are yielded one by one: give
    the DataLoader its own `batch_size`.
    """
    cls = _torch_dataset_class()
    return cls(table_path, columns=columns, shuffle=shuffle, seed=seed,
               shuffle_buffer=shuffle_buffer, read_batch_rows=read_batch_rows)


def __getattr__(name: str):
    # ImageTableDataset exists only where torch imports; it is built on first access.
    if name == "ImageTableDataset":
        return _torch_dataset_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _torch_dataset_class():
    try:
        import torch  # noqa: F401  (checked on every call, so a removed torch is noticed)
    except ImportError as exc:
        raise ImportError(TORCH_MISSING) from exc
    return _build_torch_dataset_class()


@functools.cache
def _build_torch_dataset_class():
    import torch
    from torch.utils.data import IterableDataset, get_worker_info

    class ImageTableDataset(IterableDataset):
        """Rows of a built table as `(x: torch.Tensor float32, y: int)`, for a DataLoader.

        Iterating yields one example per row. With several DataLoader workers, the row
        groups are split between them (each row once per epoch); `set_epoch(e)` gives a
        new, reproducible shuffle for epoch e. See the module docstring for the order.
        """

        def __init__(self, table_path, columns=("tensor", "label_index"), shuffle=False, seed=0,
                     shuffle_buffer=None, read_batch_rows=32):
            self.table_path = str(table_path)
            self.columns = tuple(columns)
            self.shuffle = bool(shuffle)
            self.seed = _check_seed(seed)
            self.shuffle_buffer = shuffle_buffer
            self.read_batch_rows = int(read_batch_rows)
            self.epoch = 0
            _TableReader(self.table_path, self.columns)  # fail now on a missing table or column

        def set_epoch(self, epoch: int) -> None:
            """Use the shuffle order of this epoch (call before iterating; ignored without shuffle)."""
            self.epoch = int(epoch)

        def __iter__(self):
            info = get_worker_info()
            part, parts = (info.id, info.num_workers) if info is not None else (0, 1)
            reader = _TableReader(self.table_path, self.columns)
            batches = reader.batches(self.read_batch_rows, shuffle=self.shuffle,
                                     seed_key=(self.seed, self.epoch), drop_last=False,
                                     shuffle_buffer=self.shuffle_buffer, part=part, parts=parts)
            for x, y in batches:
                xt = torch.from_numpy(x)
                for i in range(len(y)):
                    yield xt[i], y[i].tolist()

    ImageTableDataset.__module__ = __name__
    ImageTableDataset.__qualname__ = "ImageTableDataset"  # so DataLoader workers can pickle it
    return ImageTableDataset


# --- reading -------------------------------------------------------------------------------

def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    return int(seed)


@dataclass
class _Unit:
    """One row group of one Parquet file: the unit of reading, shuffling and worker splitting."""

    fragment: ds.ParquetFileFragment  # restricted to this row group
    file: str  # relative to the table folder
    row_group: int


@dataclass
class _Segment:
    """Consecutive decoded rows of one row group that share one input shape."""

    x: np.ndarray  # (n, *shape) float32; may be a read-only view of Arrow memory
    y: np.ndarray  # (n,) or (n, K) int64
    paths: pa.Array | None  # the `path` column, for error messages
    unit: _Unit
    first_row: int  # row number of x[0] within its row group

    def where(self, i: int) -> str:
        return _where(self.paths, i, self.unit, self.first_row)


def _where(paths: pa.Array | None, i: int, unit: _Unit, first_row: int) -> str:
    """How an error names a row: its `path`, else its place in the Parquet file."""
    if paths is not None and paths[i].is_valid:
        return f"path {paths[i].as_py()!r}"
    return f"row {first_row + i} of row group {unit.row_group} of {unit.file}"


class _TableReader:
    """A table folder's row groups and the columns to read, checked once."""

    def __init__(self, path: str | os.PathLike, columns: Sequence[str]):
        given = Path(path)
        if not given.is_dir():
            raise TableNotFoundError("table folder not found; build the table first: "
                                     "python runner.py build", path=str(given))
        self.path = given.resolve()  # pin the version a symlink points to now
        columns = tuple(columns)
        if len(columns) != 2:
            raise ValueError(f"columns must be (input column, target column), got {columns!r}")
        self.x_col, self.y_col = columns
        self.dataset = ds.dataset(str(self.path), format="parquet", partitioning="hive",
                                  ignore_prefixes=[".", "_"])
        if not self.dataset.files:
            raise ValueError(f"{given}: no Parquet files in the table folder (an unfinished build?)")
        schema = self.dataset.schema
        for col in columns:
            if col not in schema.names:
                raise ValueError(f"{given}: no column {col!r}; the table has {', '.join(schema.names)}")
        x_type = schema.field(self.x_col).type
        self.x_binary = pa.types.is_binary(x_type) or pa.types.is_large_binary(x_type)
        self.shape_col = f"{self.x_col}_shape"
        if self.x_binary and self.shape_col not in schema.names:
            raise ValueError(f"{given}: binary column {self.x_col!r} needs its shape in a column "
                             f"{self.shape_col!r}, which the table lacks")
        if not self.x_binary and not (_is_list(x_type) and _is_number(x_type.value_type)):
            raise ValueError(f"{given}: column {self.x_col!r} is {x_type}; expected binary float32 "
                             "(with a _shape column) or a list of numbers")
        y_type = schema.field(self.y_col).type
        if not (pa.types.is_integer(y_type)
                or (_is_list(y_type) and pa.types.is_integer(y_type.value_type))):
            raise ValueError(f"{given}: target column {self.y_col!r} is {y_type}; expected integers "
                             "(label_index rather than label)")
        self.read_cols = [self.x_col, self.y_col] + ([self.shape_col] if self.x_binary else [])
        if "path" in schema.names and "path" not in self.read_cols:
            self.read_cols.append("path")
        self.units: list[_Unit] = []
        for fragment in sorted(self.dataset.get_fragments(), key=lambda f: f.path):
            for piece in fragment.split_by_row_group():
                rg = piece.row_groups[0]
                if rg.num_rows:
                    self.units.append(_Unit(piece, os.path.relpath(piece.path, self.path), rg.id))

    # -- batches -------------------------------------------------------------------------

    def batches(self, batch_size: int, *, shuffle: bool, seed_key: tuple, drop_last: bool,
                shuffle_buffer: int | None, part: int = 0, parts: int = 1):
        """The (x, y) batches of this reader's share (`part` of `parts`) of the row groups."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        batch_size = int(batch_size)
        order = np.arange(len(self.units))
        if shuffle:
            order = np.random.default_rng(list(seed_key)).permutation(len(self.units))
        segments = self._segments([self.units[int(i)] for i in order[part::parts]], read_rows=batch_size)
        if not shuffle:
            return self._sequential(segments, batch_size, drop_last)
        if shuffle_buffer is None:
            shuffle_buffer = max(8 * batch_size, 256)
        rng = np.random.default_rng([*seed_key, part, parts])
        return self._shuffled(segments, batch_size, drop_last, max(int(shuffle_buffer), batch_size), rng)

    def _sequential(self, segments, batch_size: int, drop_last: bool):
        parts: list[tuple[_Segment, int, int]] = []  # (segment, start, stop) in output order
        count = 0
        for seg in segments:
            start, n = 0, len(seg.y)
            while start < n:
                take = min(batch_size - count, n - start)
                parts.append((seg, start, start + take))
                count, start = count + take, start + take
                if count == batch_size:
                    yield self._assemble_parts(parts)
                    parts, count = [], 0
        if count and not drop_last:
            yield self._assemble_parts(parts)

    def _assemble_parts(self, parts):
        segs = [seg for seg, _, _ in parts]
        sid = np.repeat(np.arange(len(parts)), [b - a for _, a, b in parts])
        rid = np.concatenate([np.arange(a, b) for _, a, b in parts])
        return self._assemble(segs, sid, rid)

    def _shuffled(self, segments, batch_size: int, drop_last: bool, buffer_rows: int, rng):
        # The buffer: rows (segs[sid[k]], row rid[k]), carried-over rows first.
        segs: list[_Segment] = []
        sids: list[np.ndarray] = []
        rids: list[np.ndarray] = []
        rows = 0
        exhausted = False
        it = iter(segments)
        while not exhausted:
            for seg in it:
                n = len(seg.y)
                sids.append(np.full(n, len(segs)))
                rids.append(np.arange(n))
                segs.append(seg)
                rows += n
                if rows >= buffer_rows:
                    break
            else:
                exhausted = True
            if not rows:
                break
            sid, rid = np.concatenate(sids), np.concatenate(rids)
            perm = rng.permutation(rows)
            sid, rid = sid[perm], rid[perm]
            full = rows // batch_size * batch_size
            for b in range(0, full, batch_size):
                yield self._assemble(segs, sid[b:b + batch_size], rid[b:b + batch_size])
            sid, rid = sid[full:], rid[full:]
            if exhausted:
                if len(sid) and not drop_last:
                    yield self._assemble(segs, sid, rid)
                break
            keep = np.unique(sid)  # carry the rest over; forget fully used segments
            segs = [segs[int(k)] for k in keep]
            sids, rids = [np.searchsorted(keep, sid)], [rid]
            rows = len(rid)

    def _assemble(self, segs: list[_Segment], sid: np.ndarray, rid: np.ndarray):
        """Batch row k = row rid[k] of segs[sid[k]]; all rows must share one shape."""
        first = segs[int(sid[0])]
        shape = first.x.shape[1:]
        used = np.unique(sid)
        bad = [int(s) for s in used if segs[int(s)].x.shape[1:] != shape]
        if bad:
            k = int(np.flatnonzero(np.isin(sid, bad))[0])
            seg = segs[int(sid[k])]
            what = self.shape_col if self.x_binary else f"length of {self.x_col}"
            raise ValueError(
                f"{self.path}: the rows of one batch must share a shape, but the row with "
                f"{seg.where(int(rid[k]))} has {what} {list(seg.x.shape[1:])} while the batch's "
                f"first row ({first.where(int(rid[0]))}) has {list(shape)}. Resize every image "
                "to one size in the model that writes the table, or use batch_size=1.")
        x = np.empty((len(sid), *shape), dtype=np.float32)
        y = np.empty((len(sid), *first.y.shape[1:]), dtype=np.int64)
        for s in used:
            seg = segs[int(s)]
            pos = np.flatnonzero(sid == s)
            x[pos] = seg.x[rid[pos]]
            y[pos] = seg.y[rid[pos]]
        return x, y

    # -- decoding ------------------------------------------------------------------------

    def _segments(self, units: list[_Unit], read_rows: int) -> Iterator[_Segment]:
        for unit in units:
            row = 0
            for batch in unit.fragment.to_batches(columns=self.read_cols, schema=self.dataset.schema,
                                                  batch_size=read_rows, batch_readahead=2,
                                                  fragment_readahead=1):
                if batch.num_rows:
                    yield from self._decode(batch, unit, row)
                row += batch.num_rows

    def _decode(self, batch: pa.RecordBatch, unit: _Unit, row0: int) -> Iterator[_Segment]:
        n = batch.num_rows
        paths = batch.column("path") if "path" in batch.schema.names else None

        def where(i: int) -> str:
            return _where(paths, i, unit, row0)

        y = self._decode_y(batch.column(self.y_col), where)
        xs = batch.column(self.x_col)
        _no_nulls(xs, self.x_col, where, self.path)
        if self.x_binary:
            shapes = self._shapes(batch.column(self.shape_col), where)
            lengths = pc.binary_length(xs).to_numpy(zero_copy_only=False).astype(np.int64)
            expected = np.prod(shapes, axis=1) * 4
            if (lengths != expected).any():
                bad = int(np.flatnonzero(lengths != expected)[0])
                raise ValueError(
                    f"{self.path}: {self.x_col} of the row with {where(bad)} has {lengths[bad]} "
                    f"bytes, but {self.shape_col} {shapes[bad].tolist()} needs {expected[bad]} "
                    "(4 bytes per float32)")
            offset_type = np.int64 if pa.types.is_large_binary(xs.type) else np.int32
            _, offsets_buf, data_buf = xs.buffers()
            offsets = np.frombuffer(offsets_buf, dtype=offset_type)[xs.offset:xs.offset + n + 1]
        else:
            shapes = pc.list_value_length(xs).to_numpy(zero_copy_only=False).astype(np.int64)[:, None]
        # one segment per run of consecutive rows with the same shape (usually the whole batch)
        change = np.flatnonzero(np.any(shapes[1:] != shapes[:-1], axis=1)) + 1
        bounds = [0, *change.tolist(), n]
        for a, b in zip(bounds[:-1], bounds[1:]):
            shape = (b - a, *(int(s) for s in shapes[a]))
            if self.x_binary:
                start, count = int(offsets[a]), int(offsets[b] - offsets[a]) // 4
                x = (np.frombuffer(data_buf, dtype="<f4", count=count, offset=start).reshape(shape)
                     if count else np.zeros(shape, dtype=np.float32))
            else:
                flat = pc.list_flatten(xs.slice(a, b - a)).to_numpy(zero_copy_only=False)
                x = np.asarray(flat, dtype=np.float32).reshape(shape)
            yield _Segment(x, y[a:b], paths.slice(a, b - a) if paths is not None else None, unit, row0 + a)

    def _shapes(self, col: pa.Array, where) -> np.ndarray:
        _no_nulls(col, self.shape_col, where, self.path)
        ndims = pc.list_value_length(col).to_numpy(zero_copy_only=False).astype(np.int64)
        if (ndims != ndims[0]).any():
            bad = int(np.flatnonzero(ndims != ndims[0])[0])
            raise ValueError(
                f"{self.path}: the row with {where(bad)} has {self.shape_col} {col[bad].as_py()}, "
                f"a different number of dimensions than {col[0].as_py()} of the row with {where(0)}")
        flat = pc.list_flatten(col).to_numpy(zero_copy_only=False)
        if np.isnan(flat.astype(np.float64)).any() or (flat < 0).any():
            bad = next(i for i in range(len(col)) if any(v is None or v < 0 for v in col[i].as_py()))
            raise ValueError(f"{self.path}: invalid {self.shape_col} {col[bad].as_py()} in the row "
                             f"with {where(bad)}")
        return flat.astype(np.int64).reshape(len(col), int(ndims[0]))

    def _decode_y(self, col: pa.Array, where) -> np.ndarray:
        _no_nulls(col, self.y_col, where, self.path)
        if not _is_list(col.type):
            return col.to_numpy(zero_copy_only=False).astype(np.int64)
        lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False).astype(np.int64)
        if (lengths != lengths[0]).any():
            bad = int(np.flatnonzero(lengths != lengths[0])[0])
            raise ValueError(f"{self.path}: {self.y_col} of the row with {where(bad)} has "
                             f"{lengths[bad]} values, the row with {where(0)} {lengths[0]}")
        flat = pc.list_flatten(col).to_numpy(zero_copy_only=False)
        return np.asarray(flat, dtype=np.int64).reshape(len(col), int(lengths[0]))


def _no_nulls(col: pa.Array, name: str, where, table: Path) -> None:
    if col.null_count:
        bad = int(np.flatnonzero(~col.is_valid().to_numpy(zero_copy_only=False))[0])
        raise ValueError(f"{table}: {name} is null in the row with {where(bad)}")


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)
