"""Writing a table: a new version folder of Parquet files, published once every file is written.

Every node that stores rows ends here: a table model, a seed, and an incremental model, full or
incremental build alike. A version is written once and never changed afterwards. An incremental
build writes its new rows with Spark, then adds the files of the current version that stay valid
(hard-linked: the same bytes, nothing copied; copied where there are no links) and copies, made
with PyArrow, of those that lose rows. If writing the version fails, its folder is removed: the
catalog never names a partial version.

Publishing records the version in the warehouse's catalog with what later sessions and builds
need: its row count and schema (a session registers the table without reading a Parquet footer),
the fingerprints it was built with, the files its model read through new_rows(), and the model's
`meta`, which also goes into the Parquet schema (see normalization).
"""
from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from . import files, normalization, parquet_rows
from .errors import ProjectError
from .nodes import Model
from .warehouse import Warehouse

log = logging.getLogger("imageprep")


@dataclass(frozen=True)
class TableSpec:
    """A table as its node configures it: its name, partition columns, Spark's Parquet writer
    options, and the model's `meta`."""

    name: str
    partition_by: tuple[str, ...] = ()
    options: dict[str, str] = field(default_factory=dict)
    meta: dict | None = None

    @classmethod
    def of_model(cls, model: Model) -> "TableSpec":
        return cls(model.name, _partition_columns(model), _write_options(model), model.config.get("meta"))


@dataclass(frozen=True)
class Provenance:
    """What the catalog remembers about how a version was made, for the next build to compare."""

    fingerprint: str | None = None  # of everything the node was built from
    logic: str | None = None  # of what the model computes, its parents left out
    seen: dict[str, list[str]] | None = None  # the files the model read through new_rows(), per relation


@dataclass
class Written:
    rows: int | None  # None for a view or an ephemeral model


@dataclass
class Carried:
    """Files of the current version (the folder `source`) that a new version takes over: as they
    are (`keep`, hard-linked) and without the rows at some positions (`rewrite`); and small files
    copied together, one file per group (`gather`: files of `source`, and files of the new version
    itself, which are removed once copied). Paths are relative to their version folder; copies
    are made with PyArrow (parquet_rows)."""

    source: object  # a Path, or a StoragePath on a URI warehouse
    keep: Sequence[Path] = ()
    rewrite: dict[Path, set[int]] = field(default_factory=dict)
    gather: list[tuple[list[Path], list[Path]]] = field(default_factory=list)
    max_rows_per_file: int | None = None  # of a gathered file: the model's maxRecordsPerFile option


def write_version(spark, warehouse: Warehouse, table: TableSpec, frame, provenance: Provenance = Provenance(),
                  carried: Carried | None = None, finish=None, confirm=None) -> Written:
    """Write `frame` as a new version of `table`, publish it and register it by name.

    `carried`: files of the current version the new one takes over. `finish`: called with the new
    version folder once the frame's rows are in it, returns what is carried over instead (an
    incremental merge that reads the keys of the rows it wrote). `confirm`: called once the
    version is complete, before it is published; what it raises discards the version."""
    # A normalization record in `meta` goes into the files' schema too (annotate reads a model config).
    frame = normalization.annotate(frame, {"meta": table.meta})
    version = warehouse.new_version_folder(table.name)
    try:
        # ("error" is Spark Connect's only name for errorifexists: the folder is new.)
        writer = frame.write.mode("error").options(**table.options)
        if table.partition_by:
            writer = writer.partitionBy(*table.partition_by)
        writer.parquet(str(version))
        if finish is not None:
            carried = finish(version)
        if carried is not None:
            _carry_over(carried, version)
        count, written = _read_back(spark, warehouse, version, None if table.partition_by else frame.schema)
        if confirm is not None:
            confirm()
    except BaseException:
        warehouse.discard(str(version))
        raise
    warehouse.publish_table(table.name, str(version), rows=count, schema=written.schema.json(),
                            seen=provenance.seen, fingerprint=provenance.fingerprint, logic=provenance.logic,
                            **({"meta": table.meta} if table.meta else {}))
    written.createOrReplaceTempView(table.name)
    return Written(count)


def _carry_over(carried: Carried, version) -> None:
    """Link, copy without some rows, and gather the carried files into the new version folder."""
    started = time.perf_counter()
    source = carried.source
    for relative in carried.keep:
        _link_or_copy(source / relative, version / relative)
    copies = [lambda item=item: parquet_rows.rewrite_without(source / item[0], version, *item)
              for item in sorted(carried.rewrite.items())]
    copies += [lambda old=old, new=new: parquet_rows.gather([source / f for f in old] + [version / f for f in new],
                                                            version, _gathered_file_name, carried.max_rows_per_file)
               for old, new in carried.gather]
    if copies:  # one file per core at a time: PyArrow decodes and encodes without holding the GIL
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            list(pool.map(lambda copy: copy(), copies))
    for _, new in carried.gather:
        for relative in new:
            _remove_data_file(version, relative)
    if copies:
        log.info("%s: %d files kept, %d copied without some rows, %d groups gathered, in %.2fs", version,
                 len(carried.keep), len(carried.rewrite), len(carried.gather), time.perf_counter() - started)


def _gathered_file_name() -> str:
    """A new name for a file that gathers the rows of several, in Spark's style."""
    return f"part-gathered-{uuid.uuid4().hex}.parquet"


def _remove_data_file(version, relative: Path) -> None:
    """Remove a data file of a version folder being written, with Hadoop's checksum beside it."""
    (version / relative).unlink()
    checksum = version / relative.parent / f".{relative.name}.crc"  # Hadoop's, on a local disk
    if checksum.exists():
        checksum.unlink()


def _read_back(spark, warehouse: Warehouse, version, written_schema):
    """The rows of a written version folder, and the frame that reads it.

    `written_schema`: the schema of the frame that wrote the version (None when partitioned). With
    it, and a warehouse PyArrow reads (local, or a URI of the file layer), no Spark job runs: the
    files are read with that schema (Spark makes every field nullable, as it does reading Parquet)
    and the rows are counted from their footers."""
    if written_schema is not None and files.pyarrow_reads(version):
        rows = _rows_by_file(version)
        _remove_empty_files(version, rows)
        return sum(rows.values()), spark.read.schema(written_schema).parquet(str(version))
    # Partitioned (Spark types the partition columns from folder names), or reached through Hadoop.
    table = spark.read.parquet(str(version))
    return table.count(), table  # counted from Parquet footers, in a Spark job


def _rows_by_file(version) -> dict[Path, int]:
    """Rows of each Parquet file of a version folder, from their footers (read with PyArrow)."""
    import pyarrow.parquet as pq

    filesystem, base = files.arrow_filesystem(version)
    return {relative: pq.read_metadata(f"{base}/{relative}", filesystem=filesystem).num_rows
            for relative in data_files(version)}


def _remove_empty_files(version, rows: dict[Path, int]) -> None:
    """Spark writes a file even for no rows (to keep the schema); where other files of the version
    hold rows, such a file is only one more file for every later scan to open. A version with no
    rows at all keeps one, for its schema (an empty incremental table would otherwise gain one
    each build)."""
    empty = [relative for relative, count in rows.items() if count == 0]
    if not any(rows.values()):
        empty = empty[1:]
    for relative in empty:
        _remove_data_file(version, relative)


def data_files(version) -> list[Path]:
    """Parquet files of a version folder (a Path or a StoragePath), relative to it, leaving out
    Spark's _SUCCESS and .crc files and the runner's _seen.json."""
    found = []
    if isinstance(version, Path):
        for folder, _, names in os.walk(version):
            found += [(Path(folder) / name).relative_to(version) for name in names]
    else:  # a folder named by a URI
        pending = [(version, Path())]
        while pending:
            folder, relative = pending.pop()
            for entry in folder.iterdir():
                if entry.is_dir():
                    pending.append((entry, relative / entry.name))
                else:
                    found.append(relative / entry.name)
    return sorted(f for f in found if not f.name.startswith(("_", ".")))


def _link_or_copy(source, target) -> None:
    """Hard-link a kept file into the new version (same bytes, no copy); copy across devices and on
    file systems named by a URI, which have no links."""
    if not isinstance(source, Path):
        source.copy_to(target)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _partition_columns(model: Model) -> tuple[str, ...]:
    """The model's `partition_by` config as column names (none when not set)."""
    value = model.config.get("partition_by")
    if not value:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def max_rows_per_file(options: dict[str, str]) -> int | None:
    """The rows a file may hold by Spark's maxRecordsPerFile writer option (None: no limit)."""
    value = {key.lower(): v for key, v in options.items()}.get("maxrecordsperfile")
    return int(value) if value and int(value) > 0 else None


def _write_options(model: Model) -> dict[str, str]:
    """The model's `options` config: Spark's Parquet writer options, as dbt-spark passes them, e.g.
    options={'maxRecordsPerFile': 64} (smaller files: an incremental merge that removes a few rows
    rewrites fewer of the others) or options={'compression': 'zstd'}."""
    options = model.config.get("options") or {}
    if not isinstance(options, dict) or not all(
            isinstance(value, (str, int, float, bool)) for value in options.values()):
        raise ProjectError(f"options of '{model.name}' must map Parquet writer option names to values, "
                           f"e.g. options={{'maxRecordsPerFile': 64}}; got {options!r}", path=model.path)
    return {str(key): str(value).lower() if isinstance(value, bool) else str(value) for key, value in options.items()}
