"""Read a built table's Parquet row groups into batches: the machinery behind imageprep.training.

`TableReader` opens one version of a table, plans which row groups (and rows) a reader takes in an
epoch (imageprep.loader_sharding), reads them with PyArrow one row group at a time, decodes image
and tensor columns into NumPy arrays and assembles batches, normalized as the table records
(imageprep.loader_normalize). imageprep.training and imageprep.loader_torch are its two faces.
"""
from __future__ import annotations

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

from . import files, loader_version, normalization
from .errors import ProjectError
from .loader_normalize import Normalizer
from .loader_sharding import Piece, Plan, Shard, pieces, reader_span, unit_order

OUTPUTS = ("float32", "uint8")
# Row groups are read without pre-buffering their column chunks, and (in _read_piece) without
# PyArrow's threads, so a process is one core's worth of work: each measured as fast or faster
# here for 150 kB image rows, and DataLoader workers then scale instead of competing.
SCAN_OPTIONS = ds.ParquetFragmentScanOptions(pre_buffer=False)


class TableNotFoundError(ProjectError, FileNotFoundError):
    """A table folder that does not exist: the project was not built (or not this table)."""


def default_buffer(shuffle_buffer: int | None, batch_size: int) -> int:
    """The shuffle buffer in rows: as given, else eight batches and at least 256 rows."""
    if shuffle_buffer is None:
        return max(8 * int(batch_size), 256)
    if isinstance(shuffle_buffer, bool) or not isinstance(shuffle_buffer, (int, np.integer)) or shuffle_buffer < 1:
        raise ValueError(f"shuffle_buffer must be a positive integer, got {shuffle_buffer!r}")
    return int(shuffle_buffer)


# --- reading -------------------------------------------------------------------------------

def check_seed(seed, name: str = "seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {seed!r}")
    return int(seed)


def check_batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


@dataclass
class _Unit:
    """One row group of one Parquet file: the unit of reading, shuffling and splitting."""

    fragment: ds.ParquetFileFragment  # restricted to this row group
    file: str  # relative to the table folder
    row_group: int
    rows: int
    has_path: bool  # the table has a `path` column, which names rows in errors


@dataclass
class _Segment:
    """Consecutive decoded rows of one row group that share one input shape."""

    x: np.ndarray  # (n, *shape) float32, or uint8 (n, H, W, C) images; may be a read-only view of Arrow memory
    y: np.ndarray  # (n,) or (n, K) int64
    unit: _Unit
    first_row: int  # row number of x[0] within its row group

    def where(self, i: int) -> str:
        return _where(self.unit, self.first_row + i)


def _where(unit: _Unit, row: int) -> str:
    """How an error names a row: its `path`, else its place in the Parquet file. The path is read
    only now: only errors need it, and reading it with every batch cost 4 % of the reading."""
    if unit.has_path:
        path = unit.fragment.to_table(columns=["path"]).column("path")[row]
        if path.is_valid:
            return f"path {path.as_py()!r}"
    return f"row {row} of row group {unit.row_group} of {unit.file}"


class TableReader:
    """One version of a table: its row groups and the columns to read, checked once."""

    def __init__(self, path: str | os.PathLike, columns: Sequence[str] | None, output: str = "float32",
                 normalization: str | dict | None = None, version: loader_version.TableVersion | None = None):
        version = version or loader_version.pin(path)
        if version is None or not version.folder.is_dir():
            given = path
            detail = " (its version folder was removed: set_epoch() moves to the current one)" if version else ""
            raise TableNotFoundError("table folder not found; build the table first: "
                                     f"python runner.py build{detail}", path=str(given))
        self.version = version
        given = self.given = version.given
        self.path = version.folder
        self.filesystem, base = files.arrow_filesystem(self.path)
        self.dataset = ds.dataset(base, filesystem=self.filesystem,
                                  format=ds.ParquetFileFormat(default_fragment_scan_options=SCAN_OPTIONS),
                                  partitioning="hive", ignore_prefixes=[".", "_"])
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
        self.normalizer = Normalizer(self.spec) if self.spec is not None and output == "float32" else None
        if self.y_col is not None:
            y_type = schema.field(self.y_col).type
            if not (pa.types.is_integer(y_type)
                    or (_is_list(y_type) and pa.types.is_integer(y_type.value_type))):
                raise ValueError(f"{given}: target column {self.y_col!r} is {y_type}; expected integers "
                                 "(label_index rather than label)")
        self.read_cols = [c for c in (self.x_col, self.y_col) if c is not None]
        self.read_cols += [self.shape_col] if self.x_binary else []
        has_path = "path" in schema.names
        self.units: list[_Unit] = []
        sizes = []
        for fragment in sorted(self.dataset.get_fragments(), key=lambda f: f.path):
            file = fragment.path[len(base.rstrip("/")) + 1:]
            size = self.filesystem.get_file_info(fragment.path).size
            for piece in fragment.split_by_row_group():
                rg = piece.row_groups[0]
                sizes.append((file, size, rg.id, rg.num_rows))
                if rg.num_rows:
                    self.units.append(_Unit(piece, file, rg.id, rg.num_rows, has_path))
        self.fingerprint = loader_version.fingerprint(sizes)

    def recorded_normalization(self) -> dict | None:
        """The x column's normalization as the build recorded it: the catalog's entry for this table
        (when the catalog names the version read), else the Parquet files' schema, which must then agree."""
        spec = ((self.version.entry or {}).get("meta") or {}).get(normalization.KEY)
        if spec and spec.get("column") == self.x_col:
            return spec
        found: dict[str, str] = {}
        for file in sorted(self.dataset.files):
            spec = normalization.from_parquet_schema(pq.read_schema(file, filesystem=self.filesystem).metadata, self.x_col)
            found.setdefault(json.dumps(spec, sort_keys=True), file)
        if len(found) > 1:
            raise ValueError(f"{self.given}: the Parquet files record different normalizations for "
                             f"{self.x_col!r} ({', '.join(os.path.basename(f) for f in found.values())}); "
                             "rebuild the table with --full-refresh, or pass normalization=")
        return json.loads(next(iter(found))) if found else None

    # -- batches -------------------------------------------------------------------------

    def plan(self, *, shuffle: bool, seed: int, epoch: int, buffer_rows: int, shard: Shard) -> Plan:
        """This reader's rows of the epoch (loader_sharding)."""
        unit_rows = [u.rows for u in self.units]
        order = unit_order(len(self.units), shuffle, seed, epoch)
        begin, end = reader_span(sum(unit_rows), shard)
        key = (seed, epoch, shard.world_size, shard.rank, shard.workers, shard.worker)
        return Plan(pieces(unit_rows, order, begin, end), shuffle, buffer_rows, key)

    def batches(self, plan: Plan, batch_size: int, *, drop_last: bool, start_row: int = 0):
        """The (x, y) batches of the plan's rows from its `start_row`-th on."""
        return self._batched(self._chunks(plan, start_row, batch_size), batch_size, drop_last)

    def _chunks(self, plan: Plan, start_row: int, read_rows: int):
        """The plan's rows from `start_row` on, as chunks (segments, sid, rid): row k of a chunk is
        row rid[k] of segments[sid[k]]."""
        block, skip = plan.locate(start_row)
        for b in range(block, len(plan.blocks)):
            order = plan.order(b)
            if order is None:  # stored order: stream the piece
                segments = self._read_piece(plan.blocks[b][0], read_rows, skip)
                for seg in segments:
                    yield [seg], np.zeros(len(seg.y), dtype=np.intp), np.arange(len(seg.y))
            else:  # the whole buffer, then its permutation
                segs = [seg for piece in plan.blocks[b] for seg in self._read_piece(piece, piece.rows, 0)]
                sid = np.repeat(np.arange(len(segs)), [len(s.y) for s in segs])
                rid = np.concatenate([np.arange(len(s.y)) for s in segs])
                yield segs, sid[order[skip:]], rid[order[skip:]]
            skip = 0

    def _batched(self, chunks, batch_size: int, drop_last: bool):
        segs: list[_Segment] = []
        sids: list[np.ndarray] = []
        rids: list[np.ndarray] = []
        count = 0
        for chunk_segs, sid, rid in chunks:
            base = len(segs)
            segs = segs + chunk_segs
            at = 0
            while at < len(sid):
                take = min(batch_size - count, len(sid) - at)
                sids.append(sid[at:at + take] + base)
                rids.append(rid[at:at + take])
                count, at = count + take, at + take
                if count == batch_size:
                    yield self._assemble(segs, np.concatenate(sids), np.concatenate(rids))
                    # the rest of this chunk refers to its own segments only
                    segs, base, sids, rids, count = (list(chunk_segs) if at < len(sid) else []), 0, [], [], 0
        if count and not drop_last:
            yield self._assemble(segs, np.concatenate(sids), np.concatenate(rids))

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
        y = np.empty((len(sid), *first.y.shape[1:]), dtype=np.int64)
        for s in used:
            pos = np.flatnonzero(sid == s)
            y[pos] = segs[int(s)].y[rid[pos]]
        breaks = np.flatnonzero((np.diff(sid) != 0) | (np.diff(rid) != 1)) + 1
        if len(breaks) < len(sid) // 8:
            # a few runs of consecutive rows (reading in order): from the segments' memory straight
            # into the batch, without gathering the pixels first
            bounds = [0, *breaks.tolist(), len(sid)]
            runs = [(segs[int(sid[a])].x, int(rid[a]), b - a) for a, b in zip(bounds[:-1], bounds[1:])]
            return self._as_output(runs, len(sid), shape, fresh=False), y
        x = np.empty((len(sid), *shape), dtype=first.x.dtype)
        for s in used:
            pos = np.flatnonzero(sid == s)
            x[pos] = segs[int(s)].x[rid[pos]]
        return self._as_output([(x, 0, len(x))], len(x), shape, fresh=True), y

    def _as_output(self, runs: list[tuple[np.ndarray, int, int]], rows: int, shape: tuple, fresh: bool) -> np.ndarray:
        """The batch of `runs` (array, first row, count), as the caller asked: images (H, W, C) uint8
        normalized to float32 or in the recorded layout; other inputs as they are. Always a new,
        writable array."""
        chw = self.x_image and self.layout == "CHW"
        if fresh and self.normalizer is None and not chw:
            return runs[0][0]  # gathered: already a new array as asked
        out_shape = (rows, shape[2], shape[0], shape[1]) if chw else (rows, *shape)
        out = np.empty(out_shape, np.float32 if self.normalizer is not None else runs[0][0].dtype)
        at = 0
        for x, first, count in runs:
            part = x[first:first + count]
            if self.normalizer is not None:
                self.normalizer(part, out[at:at + count])
            else:
                np.copyto(out[at:at + count], part.transpose(0, 3, 1, 2) if chw else part)
            at += count
        return out

    # -- decoding ------------------------------------------------------------------------

    def _read_piece(self, piece: Piece, read_rows: int, skip: int) -> Iterator[_Segment]:
        """The decoded rows `piece.start + skip` to `piece.stop` of a unit, `read_rows` at a time."""
        unit = self.units[piece.unit]
        first, row = piece.start + skip, 0
        for batch in unit.fragment.to_batches(columns=self.read_cols, schema=self.dataset.schema,
                                              batch_size=max(int(read_rows), 1), use_threads=False):
            n = batch.num_rows
            a, b = max(first - row, 0), min(piece.stop - row, n)
            if b > a:
                yield from self._decode(batch.slice(a, b - a), unit, row + a)
            row += n
            if row >= piece.stop:
                break

    def _decode(self, batch: pa.RecordBatch, unit: _Unit, row0: int) -> Iterator[_Segment]:
        n = batch.num_rows

        def where(i: int) -> str:
            return _where(unit, row0 + i)

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
            yield _Segment(x, y[a:b], unit, row0 + a)

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
