"""Feed a built table to a training loop: NumPy batches, or a PyTorch dataset. No Spark.

A built table is a folder of plain Parquet files, `target/warehouse/<table>` (often a
symlink to the version the last build wrote). This module reads it with PyArrow, one
row group at a time, so memory stays bounded by a row group plus one shuffle buffer,
however large the table is. Rows of `train_set` and friends hold the resized image as
`image` (our image struct: RGB uint8 pixels, interleaved HWC, with height, width and
nChannels) and the class as `label_index`; each row is one example (augmented copies are
rows too). The table records how its images become tensors (`meta.normalization`: method,
mean, std, layout), and batches are normalized that way when they are read, bit for bit
as SQL's `normalize(image, method)` would give them.

    from imageprep.training import numpy_batches, table_path

    train = table_path(".", "train_set")          # ./target/warehouse/train_set
    for epoch in range(10):
        for x, y in numpy_batches(train, batch_size=32, shuffle=True, seed=epoch):
            ...  # x: float32 (32, 3, 224, 224), normalized as recorded; y: int64 (32,)

    # The uint8 pixels instead, to normalize on the GPU (4 times less to copy there):
    for x, y in numpy_batches(train, batch_size=32, output="uint8"):
        ...  # x: uint8 (32, 3, 224, 224) in the recorded layout; table_normalization(train) says how

    # Any numeric column works as x: colour histograms for a linear model
    for x, y in numpy_batches(train, batch_size=256, columns=("color_histogram", "label_index")):
        ...  # x: float32 (256, n_bins)

A table written with float32 tensors (`tensor` bytes with `tensor_shape`, var
`store_tensors`) is read as before: `columns=("tensor", "label_index")`.

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
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from udfs.kernels import normalize as normalize_kernel

from . import normalization
from .errors import ProjectError
from .warehouse import CATALOG_FILE

__all__ = [
    "TableNotFoundError",
    "table_path",
    "table_normalization",
    "numpy_batches",
    "make_torch_dataset",
    "ImageTableDataset",
]

OUTPUTS = ("float32", "uint8")
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
                  columns: Sequence[str] | None = None, shuffle: bool = False,
                  seed: int = 0, drop_last: bool = False, *,
                  shuffle_buffer: int | None = None, output: str = "float32",
                  normalization: str | dict | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield `(x, y)` batches of a built table, streaming it row group by row group.

    `columns` names the input and the target column; by default `image` (or, in a table
    without one, `tensor`) and `label_index`. The input is one of:

    - an image column (our image struct): with `output="float32"` (the default), x is
      the images normalized as the table records (`table_normalization`), or as
      `normalization` says (a method name such as "imagenet", or a record like the
      table's), shape (B, C, H, W) for layout CHW; bit-identical to SQL
      `normalize(image, method, mean, std, layout)` of the same rows. With
      `output="uint8"`, x is the pixels themselves in the same layout, to normalize
      elsewhere (on the GPU);
    - a binary column of raw little-endian float32 (`tensor`), reshaped to each row's
      `<column>_shape` (`tensor_shape`), giving x of shape (B, *shape);
    - a list of numbers (`color_histogram`), giving x of shape (B, length).

    x is always a new, writable array. The target is an integer column (y: int64,
    shape (B,)) or a list of integers such as `label_onehot` (y: int64, shape (B, K)).

    All rows of one batch must share a shape: otherwise ValueError naming the `path`
    of the row that differs. The last batch has fewer rows unless `drop_last`.
    `shuffle`, `seed` and `shuffle_buffer`: see the module docstring.
    """
    reader = _TableReader(table_path, columns, output, normalization)  # errors now, not at the first next()
    return reader.batches(batch_size, shuffle=shuffle, seed_key=(_check_seed(seed),),
                          drop_last=drop_last, shuffle_buffer=shuffle_buffer)


def table_normalization(table_path: str | os.PathLike, column: str = "image") -> dict | None:
    """How the table's `column` images become tensors, as recorded when it was built, or None.

    A dict with `method`, `mean` and `std` (per channel, on the 0..1 scale; None for
    `standard`, which uses each image's own statistics), `layout` ("CHW" or "HWC"),
    `channel_order`, `dtype` and `formula`. Read from the warehouse catalog beside the
    table folder when there is one, else from the Parquet files' schema metadata.
    """
    return _TableReader(table_path, (column, None), "uint8", None).recorded_normalization()


def make_torch_dataset(table_path: str | os.PathLike, columns: Sequence[str] | None = None,
                       shuffle: bool = False, seed: int = 0, *, shuffle_buffer: int | None = None,
                       read_batch_rows: int = 32, output: str = "float32",
                       normalization: str | dict | None = None):
    """An `ImageTableDataset` over the table; ImportError (with the fix) without PyTorch.

    `columns`, `output` and `normalization` as for `numpy_batches`. `read_batch_rows`
    rows are read and decoded at a time; the shuffle buffer defaults to
    `max(8 * read_batch_rows, 256)` rows per worker. Rows are yielded one by one: give
    the DataLoader its own `batch_size`.
    """
    cls = _torch_dataset_class()
    return cls(table_path, columns=columns, shuffle=shuffle, seed=seed, shuffle_buffer=shuffle_buffer,
               read_batch_rows=read_batch_rows, output=output, normalization=normalization)


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
        """Rows of a built table as `(x: torch.Tensor, y: int)`, for a DataLoader: x float32 (normalized as
        the table records), or uint8 with `output="uint8"`.

        Iterating yields one example per row. With several DataLoader workers, the row
        groups are split between them (each row once per epoch); `set_epoch(e)` gives a
        new, reproducible shuffle for epoch e. See the module docstring for the order.
        """

        def __init__(self, table_path, columns=None, shuffle=False, seed=0,
                     shuffle_buffer=None, read_batch_rows=32, output="float32", normalization=None):
            self.table_path = str(table_path)
            self.shuffle = bool(shuffle)
            self.seed = _check_seed(seed)
            self.shuffle_buffer = shuffle_buffer
            self.read_batch_rows = int(read_batch_rows)
            self.output = output
            self.normalization = normalization
            self.epoch = 0
            # fail now on a missing table or column; keep the columns it chose
            self.columns = _TableReader(self.table_path, columns, output, normalization).columns

        def set_epoch(self, epoch: int) -> None:
            """Use the shuffle order of this epoch (call before iterating; ignored without shuffle)."""
            self.epoch = int(epoch)

        def __iter__(self):
            info = get_worker_info()
            part, parts = (info.id, info.num_workers) if info is not None else (0, 1)
            reader = _TableReader(self.table_path, self.columns, self.output, self.normalization)
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

    x: np.ndarray  # (n, *shape) float32, or uint8 (n, H, W, C) images; may be a read-only view of Arrow memory
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

    def __init__(self, path: str | os.PathLike, columns: Sequence[str] | None, output: str = "float32",
                 normalization: str | dict | None = None):
        given = Path(path)
        if not given.is_dir():
            raise TableNotFoundError("table folder not found; build the table first: "
                                     "python runner.py build", path=str(given))
        self.given = given
        self.path = given.resolve()  # pin the version a symlink points to now
        self.dataset = ds.dataset(str(self.path), format="parquet", partitioning="hive",
                                  ignore_prefixes=[".", "_"])
        if not self.dataset.files:
            raise ValueError(f"{given}: no Parquet files in the table folder (an unfinished build?)")
        schema = self.dataset.schema
        if columns is None:
            columns = ("image" if "image" in schema.names else "tensor", "label_index")
        columns = tuple(columns)
        if len(columns) != 2:
            raise ValueError(f"columns must be (input column, target column), got {columns!r}")
        self.columns = columns
        self.x_col, self.y_col = columns
        for col in columns:
            if col is not None and col not in schema.names:
                raise ValueError(f"{given}: no column {col!r}; the table has {', '.join(schema.names)}")
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
        x_type = schema.field(self.x_col).type
        self.x_image = _is_image(x_type)
        self.x_binary = pa.types.is_binary(x_type) or pa.types.is_large_binary(x_type)
        self.shape_col = f"{self.x_col}_shape"
        if self.x_binary and self.shape_col not in schema.names:
            raise ValueError(f"{given}: binary column {self.x_col!r} needs its shape in a column "
                             f"{self.shape_col!r}, which the table lacks")
        if not (self.x_image or self.x_binary or (_is_list(x_type) and _is_number(x_type.value_type))):
            raise ValueError(f"{given}: column {self.x_col!r} is {x_type}; expected an image, binary float32 "
                             "(with a _shape column) or a list of numbers")
        if output == "uint8" and not self.x_image:
            raise ValueError(f"{given}: output='uint8' needs an image column, and {self.x_col!r} is {x_type}")
        self.output = output
        self.spec = None
        if self.x_image:
            self.spec = _normalization_spec(normalization, self.x_col) if normalization is not None \
                else self.recorded_normalization()
            if self.spec is None and output == "float32":
                raise ValueError(f"{given}: the table records no normalization for {self.x_col!r}; pass "
                                 "normalization='imagenet' (or another method), or output='uint8' for the pixels")
        self.layout = (self.spec or {}).get("layout", "CHW")
        if self.y_col is not None:
            y_type = schema.field(self.y_col).type
            if not (pa.types.is_integer(y_type)
                    or (_is_list(y_type) and pa.types.is_integer(y_type.value_type))):
                raise ValueError(f"{given}: target column {self.y_col!r} is {y_type}; expected integers "
                                 "(label_index rather than label)")
        self.read_cols = [c for c in (self.x_col, self.y_col) if c is not None]
        self.read_cols += [self.shape_col] if self.x_binary else []
        if "path" in schema.names and "path" not in self.read_cols:
            self.read_cols.append("path")
        self.units: list[_Unit] = []
        for fragment in sorted(self.dataset.get_fragments(), key=lambda f: f.path):
            for piece in fragment.split_by_row_group():
                rg = piece.row_groups[0]
                if rg.num_rows:
                    self.units.append(_Unit(piece, os.path.relpath(piece.path, self.path), rg.id))

    def recorded_normalization(self) -> dict | None:
        """The x column's normalization as the build recorded it: the catalog's entry for this table
        (the current version's), else the Parquet files' schema, which must then agree."""
        catalog = self.given.parent / CATALOG_FILE
        if catalog.is_file():
            try:
                entry = json.loads(catalog.read_text(encoding="utf-8")).get(self.given.name) or {}
            except (OSError, ValueError):
                entry = {}
            spec = (entry.get("meta") or {}).get(normalization.KEY)
            if entry.get("version") and (self.given.parent / entry["version"]).resolve() == self.path and spec \
                    and spec.get("column") == self.x_col:
                return spec
        found: dict[str, str] = {}
        for file in sorted(self.dataset.files):
            spec = normalization.from_parquet_schema(pq.read_schema(file).metadata, self.x_col)
            found.setdefault(json.dumps(spec, sort_keys=True), file)
        if len(found) > 1:
            raise ValueError(f"{self.given}: the Parquet files record different normalizations for "
                             f"{self.x_col!r} ({', '.join(os.path.basename(f) for f in found.values())}); "
                             "rebuild the table with --full-refresh, or pass normalization=")
        return json.loads(next(iter(found))) if found else None

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
            what = (self.shape_col if self.x_binary else
                    f"(height, width, nChannels) of {self.x_col}" if self.x_image else f"length of {self.x_col}")
            raise ValueError(
                f"{self.path}: the rows of one batch must share a shape, but the row with "
                f"{seg.where(int(rid[k]))} has {what} {list(seg.x.shape[1:])} while the batch's "
                f"first row ({first.where(int(rid[0]))}) has {list(shape)}. Resize every image "
                "to one size in the model that writes the table, or use batch_size=1.")
        x = np.empty((len(sid), *shape), dtype=first.x.dtype)
        y = np.empty((len(sid), *first.y.shape[1:]), dtype=np.int64)
        for s in used:
            seg = segs[int(s)]
            pos = np.flatnonzero(sid == s)
            x[pos] = seg.x[rid[pos]]
            y[pos] = seg.y[rid[pos]]
        return self._as_output(x), y

    def _as_output(self, x: np.ndarray) -> np.ndarray:
        """Images (B, H, W, C) uint8 as the caller asked: normalized float32, or uint8 in the layout."""
        if not self.x_image:
            return x
        if self.output == "uint8":
            return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if self.layout == "CHW" else x
        method = self.spec["method"]
        if method in normalize_kernel.METHODS and method != "custom":  # the method's own definition
            return normalize_kernel.normalize_batch(x, method, layout=self.layout)
        return normalize_kernel.normalize_batch(x, "custom", self.spec["mean"], self.spec["std"], self.layout)

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
        if self.x_image:
            shapes = np.stack([xs.field(f).to_numpy(zero_copy_only=False).astype(np.int64)
                               for f in ("height", "width", "nChannels")], axis=1)
            xs = xs.field("data")
            _no_nulls(xs, f"{self.x_col}.data", where, self.path)
            lengths = pc.binary_length(xs).to_numpy(zero_copy_only=False).astype(np.int64)
            expected = np.prod(shapes, axis=1)
            if (lengths != expected).any():
                bad = int(np.flatnonzero(lengths != expected)[0])
                raise ValueError(
                    f"{self.path}: {self.x_col}.data of the row with {where(bad)} has {lengths[bad]} bytes, "
                    f"but height x width x nChannels {shapes[bad].tolist()} needs {expected[bad]}")
            offset_type = np.int64 if pa.types.is_large_binary(xs.type) else np.int32
            _, offsets_buf, data_buf = xs.buffers()
            offsets = np.frombuffer(offsets_buf, dtype=offset_type)[xs.offset:xs.offset + n + 1]
        elif self.x_binary:
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
            if self.x_image:
                start, count = int(offsets[a]), int(offsets[b] - offsets[a])
                x = (np.frombuffer(data_buf, dtype=np.uint8, count=count, offset=start).reshape(shape)
                     if count else np.zeros(shape, dtype=np.uint8))
            elif self.x_binary:
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


def _normalization_spec(given: str | dict, column: str) -> dict:
    """A caller's normalization (a method name, or a record like the one a table keeps), completed."""
    if isinstance(given, str):
        given = {"method": given}
    if not isinstance(given, dict) or "method" not in given:
        raise ValueError(f"normalization must be a method name such as 'imagenet' or a dict with 'method', "
                         f"got {given!r}")
    mean, std = (given.get("mean"), given.get("std")) if given["method"] == "custom" else (None, None)
    spec = normalize_kernel.describe(given["method"], mean, std, given.get("layout", "CHW"))
    return {"column": column, **spec}


def _is_image(t: pa.DataType) -> bool:
    """Our image struct (or Spark's image source struct): height, width, nChannels and binary data."""
    return pa.types.is_struct(t) and all(t.get_field_index(f) >= 0 for f in ("height", "width", "nChannels", "data"))


def _no_nulls(col: pa.Array, name: str, where, table: Path) -> None:
    if col.null_count:
        bad = int(np.flatnonzero(~col.is_valid().to_numpy(zero_copy_only=False))[0])
        raise ValueError(f"{table}: {name} is null in the row with {where(bad)}")


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)
