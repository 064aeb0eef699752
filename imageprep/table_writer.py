"""Writing a table: a new version folder of Parquet files, published once every file is written.

Every node that stores rows ends here: a table model, a seed, and an incremental model, full or
incremental build alike. A version is written once and never changed afterwards. An incremental
build starts its version with the files of the current one that stay valid (hard-linked: the same
bytes, nothing copied; copied where there are no links) and writes only the rest. If writing the
version fails, its folder is removed: the catalog never names a partial version.

Publishing records the version in the warehouse's catalog with what later sessions and builds
need: its row count and schema (a session registers the table without reading a Parquet footer),
the fingerprints it was built with, the files its model read through new_rows(), and the model's
`meta`, which also goes into the Parquet schema (see normalization).
"""
from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from . import files, normalization, parquet_rows
from .errors import ProjectError
from .nodes import Model
from .warehouse import Warehouse


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


def write_version(spark, warehouse: Warehouse, table: TableSpec, frame, provenance: Provenance = Provenance(),
                  keep_from=None, keep: Sequence[Path] = (), rewrite: dict[Path, set[int]] | None = None) -> Written:
    """Write `frame` as a new version of `table`, publish it and register it by name.

    `keep`: files of the version folder `keep_from` (the current one), relative to it, that the new
    version takes over as they are; `rewrite`: files of it that the new version takes over without
    the rows at the positions given (copied with PyArrow: parquet_rows.rewrite_without)."""
    # A normalization record in `meta` goes into the files' schema too (annotate reads a model config).
    frame = normalization.annotate(frame, {"meta": table.meta})
    version = warehouse.new_version_folder(table.name)
    try:
        for relative in keep:
            _link_or_copy(keep_from / relative, version / relative)
        if rewrite:  # one file per core at a time: PyArrow decodes and encodes without holding the GIL
            with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
                list(pool.map(lambda item: parquet_rows.rewrite_without(keep_from / item[0], version, *item),
                              sorted(rewrite.items())))
        # Appending only beside the kept files: a version folder is otherwise new and empty.
        # ("error" is Spark Connect's only name for errorifexists.)
        writer = frame.write.mode("append" if keep or rewrite else "error").options(**table.options)
        if table.partition_by:
            writer = writer.partitionBy(*table.partition_by)
        writer.parquet(str(version))
        count, written = _read_back(spark, warehouse, version, None if table.partition_by else frame.schema)
    except BaseException:
        warehouse.discard(str(version))
        raise
    warehouse.publish_table(table.name, str(version), rows=count, schema=written.schema.json(),
                            seen=provenance.seen, fingerprint=provenance.fingerprint, logic=provenance.logic,
                            **({"meta": table.meta} if table.meta else {}))
    written.createOrReplaceTempView(table.name)
    return Written(count)


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
        (version / relative).unlink()
        checksum = version / relative.parent / f".{relative.name}.crc"  # Hadoop's, on a local disk
        if checksum.exists():
            checksum.unlink()


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
