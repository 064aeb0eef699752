"""Incremental models: add to or update the current table instead of rebuilding it, as in dbt.

    {{ config(materialized='incremental', unique_key='path', incremental_strategy='merge') }}
    select ... from {{ source('raw', 'images') }}
    {% if is_incremental() %} where path not in (select path from {{ this }}) {% endif %}

The result is still a new version of the table, switched to atomically: the Parquet files of the
current version that stay valid are hard-linked into the new version (no bytes copied, where the
warehouse is a local folder; copied elsewhere), and only new or changed rows are written. This
module decides which files stay and which rows are written (`next_version`); table_writer writes
and publishes the version, as it does for a full build.

- `append`: the query's rows are added.
- `merge` (needs `unique_key`): rows whose key the query returns are replaced; files holding none
  of those keys are kept as they are, the others are copied without the replaced rows.
- `insert_overwrite` (needs `partition_by`): partitions the query returns are replaced whole.

Where PyArrow reads the warehouse (a local folder, or a URI of its file systems) and the table is
not partitioned, an append or merge is one Spark action: the query's rows are written straight
into the new version; their keys are then read back from the written files, and the rows they
replace found, with PyArrow (parquet_rows), as are the rows `delete_unmatched` removes (deletions);
the files that lose rows are copied without them, and the written files, when the query's
partitions made several small ones, are gathered into one. Elsewhere the query's rows are cached,
their keys found by a Spark action, and written by a second.

A table that rewrites files anyway (`merge`, a deletion rule) also gathers its small files into
few once it has COMPACT_AT_FILES of them: each build adds files, and each scan opens them all.

`on_schema_change`: `fail` (default) stops with the columns that differ; `append_new_columns`
adds the query's new columns (NULL in older rows) and rewrites the table once.

`delete_unmatched` and `delete_where` (with `append` or `merge`, see deletions): the current rows
they name are removed before the query's rows are added. This is how a table that mirrors a folder
forgets files that were deleted or changed:

    delete_unmatched={'in': ref('stg_files'), 'on': ['path', 'size_bytes', 'modified_at']}
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import unquote

from . import deletions, files, parquet_rows
from .catalog import read_table
from .connect import ActionBeside, is_connect
from .errors import ProjectError
from .nodes import Model
from .table_writer import Carried, TableSpec, data_files, max_rows_per_file

STRATEGIES = ("append", "merge", "insert_overwrite")
SCHEMA_CHANGES = ("fail", "append_new_columns")


def strategy_of(model: Model) -> str:
    strategy = model.config.get("incremental_strategy") or ("merge" if model.config.get("unique_key") else "append")
    if strategy not in STRATEGIES:
        raise ProjectError(f"incremental_strategy '{strategy}' of '{model.name}' is not one of "
                           f"{', '.join(STRATEGIES)}", path=model.path)
    if strategy == "merge" and not model.config.get("unique_key"):
        raise ProjectError(f"incremental_strategy 'merge' of '{model.name}' needs a unique_key", path=model.path)
    if strategy == "insert_overwrite" and not model.config.get("partition_by"):
        raise ProjectError(f"incremental_strategy 'insert_overwrite' of '{model.name}' needs partition_by",
                           path=model.path)
    return strategy


@dataclass
class NextVersion:
    """What an incremental build writes: the rows of `rows` beside the files of the current version
    it carries over (`carried`), or, when `finish` is set, beside what `finish` returns once the
    rows are written (it is given the new version folder)."""

    rows: object  # a DataFrame
    carried: Carried | None = None
    finish: Callable[[object], Carried] | None = None


@contextmanager
def next_version(spark, model: Model, query, warehouse, partition_by: tuple[str, ...],
                 folders: dict | None = None) -> Iterator[NextVersion]:
    """The next version of an incremental model's existing table, given the frame of its query.
    What was started to work it out (cached frames, a Spark action running beside the write) is
    released when the block that writes it ends. `folders`: the build's image folder listings,
    by relation, (source, listing)."""
    release: list[Callable[[], None]] = []
    try:
        yield _plan(spark, model, query, warehouse, partition_by, release, folders or {})
    finally:
        for step in release:
            step()


def _plan(spark, model: Model, query, warehouse, partition_by: tuple[str, ...], release: list,
          folders: dict) -> NextVersion:
    strategy = strategy_of(model)
    entry = warehouse.catalog()[model.name]
    current = warehouse.root / entry["version"]
    old = read_table(spark, warehouse, entry)
    incoming, rewritten_old = plan_schema(model, old, query)
    if rewritten_old is not None:  # new columns: the old rows are rewritten once with NULLs for them
        return NextVersion(rewritten_old.unionByName(incoming))
    if strategy == "insert_overwrite":
        replaced = {tuple(str(r[c]) for c in partition_by) for r in incoming.select(*partition_by).distinct().collect()}
        keep = [f for f in data_files(current) if _partition_values(f, partition_by) not in replaced]
        return NextVersion(incoming, Carried(current, keep))
    if files.pyarrow_reads(current) and not partition_by:
        return _written_first(spark, model, strategy, warehouse, current, old, incoming, release, folders)
    return _append_or_merge(spark, model, strategy, current, old, incoming, partition_by, release)


def _written_first(spark, model: Model, strategy: str, warehouse, current, old, incoming, release: list,
                   folders: dict) -> NextVersion:
    """An append or merge where PyArrow reads the warehouse: the query's rows are written first, in
    the build's one Spark action for them (no cache, no second action); the keys they replace are
    then read back from the written files and looked up in the current ones with PyArrow.
    delete_unmatched's rows are found with PyArrow too, before the write; delete_where's (and
    those of a delete_unmatched PyArrow cannot answer) by a Spark action of their own, run while
    the rows are written."""
    keys = _as_list(model.config["unique_key"]) if strategy == "merge" else []
    version_files = data_files(current)
    unmatched: dict[Path, set[int]] = {}
    specs_left = []
    for spec in deletions.unmatched_specs(model):
        found = deletions.unmatched_rows(warehouse, spec, current, version_files, folders)
        if found is None:
            specs_left.append(spec)
        for relative, rows in (found or {}).items():
            unmatched.setdefault(relative, set()).update(rows)
    # Analysed now: a condition Spark rejects fails the build before any write.
    deleted = deletions.rows_to_delete(model, _tag_rows(old), specs_left)
    pending = None
    if deleted is not None:
        pending = ActionBeside(spark, f"model {model.name} (delete_where)", deleted.collect)
        release.append(pending.close)

    most_rows = max_rows_per_file(TableSpec.of_model(model).options)

    def finish(version) -> Carried:
        written = data_files(version)
        leaving = _by_file(pending.result(), current.name) if pending is not None else {}
        for relative, rows in unmatched.items():
            leaving.setdefault(relative, set()).update(rows)
        wanted = parquet_rows.keys_in(version, written, keys) if keys else []
        for relative, rows in parquet_rows.rows_with_keys(current, version_files, keys, wanted).items():
            leaving.setdefault(relative, set()).update(rows)
        compacted: dict[Path, int] = {}
        if strategy == "merge" or deletions.deletes_rows(model):
            compacted = small_files_to_compact(current, [f for f in version_files if f not in leaving])
        # Spark writes a file per partition of the query: a build's few new rows make several
        # small files, gathered into one (with the current version's small files, if those are).
        small_new = sorted(small_files_to_compact(version, written, at_least=1 if compacted else 2))
        gather = [(group, []) for group in _in_groups_by_size(compacted)]
        if small_new:
            gather = gather[:-1] + [(gather[-1][0] if gather else [], small_new)]
        return Carried(current, [f for f in version_files if f not in leaving and f not in compacted], leaving,
                       gather, most_rows)

    return NextVersion(incoming, finish=finish)


def _in_groups_by_size(sizes: dict[Path, int]) -> list[list[Path]]:
    """Files (with their sizes) in groups of at most about GATHERED_FILE_BYTES, one gathered file each."""
    groups: list[list[Path]] = []
    group_bytes = 0
    for relative, size in sorted(sizes.items()):
        if not groups or group_bytes + size > GATHERED_FILE_BYTES:
            groups.append([])
            group_bytes = 0
        groups[-1].append(relative)
        group_bytes += size
    return groups


def _append_or_merge(spark, model: Model, strategy: str, current, old, incoming, partition_by: tuple[str, ...],
                     release: list) -> NextVersion:
    """An append or merge where Spark reads the files (a URI warehouse PyArrow does not reach, or a
    partitioned table): the query's rows are cached, their keys and the deleted rows (delete_where,
    and delete_unmatched as SQL) found in one action, and the rows written in a second, with the rows that stay of the files that lose
    some (or those are copied with PyArrow, where it reads the warehouse)."""
    # Rows leave the table when the query replaces their key (merge) or delete_where holds for
    # them. Files without such rows are kept as they are; the others are rewritten without them.
    # Each row is known by its file and its position in it (stable, unlike generated ids).
    keys = _as_list(model.config["unique_key"]) if strategy == "merge" else []
    if keys:
        incoming = incoming.cache()  # computed once: for its keys, then written
        release.append(incoming.unpersist)
    version_files = data_files(current)
    leaving, new_keys = _deleted_rows_and_new_keys(spark, model, old, incoming, keys, current.name)
    replaced = _rows_with_keys(spark, current, version_files, old, keys, new_keys, partition_by)
    for relative, rows in replaced.items():
        leaving.setdefault(relative, set()).update(rows)
    # A merge's new rows are cached and, once their keys were looked up, computed.
    to_write = _in_files_by_size(incoming) if keys else incoming
    # Only the files that lose rows are read again, and copied without them: with PyArrow where
    # it reads the warehouse (no Spark job), else in the Spark job that writes the new rows.
    rewrite: dict[Path, set[int]] = {}
    if leaving and files.pyarrow_reads(current):
        rewrite = leaving
    elif leaving:
        to_write = _survivors(spark, current, old.schema, leaving).unionByName(to_write)
    # Each build adds a file, and every scan opens every file (about 1 ms each): small files are
    # gathered once there are enough of them. Only where files are rewritten anyway (merge,
    # delete_where): an append-only table stays so, and new_rows() of it gives exactly the rows
    # written since.
    compacted: dict[Path, int] = {}
    if strategy == "merge" or deletions.deletes_rows(model):
        compacted = small_files_to_compact(current, [f for f in version_files if f not in leaving])
    if compacted:
        to_write = _gathered(spark, current, compacted, old.schema).unionByName(to_write)
    return NextVersion(to_write, Carried(current, [f for f in version_files if f not in leaving and f not in compacted],
                                         rewrite))


def _deleted_rows_and_new_keys(spark, model: Model, old, incoming, keys: list[str], version_name: str):
    """In one Spark action: the rows delete_where removes, as {file: positions}, and the distinct
    `keys` of the query's rows (which computes the cached query). Either part may be empty."""
    from functools import reduce

    from pyspark.sql import functions as F

    deleted = deletions.rows_to_delete(model, _tag_rows(old), deletions.unmatched_specs(model))
    key_types = {k: incoming.schema[k].dataType for k in keys}
    parts = []
    if deleted is not None:
        parts.append(deleted.select("__file", "__row", *[F.lit(None).cast(t).alias(k) for k, t in key_types.items()]))
    if keys:
        parts.append(incoming.select(F.lit(None).cast("string").alias("__file"), F.lit(None).cast("long").alias("__row"),
                                     *keys).distinct())
    if not parts:
        return {}, []
    rows = reduce(lambda a, b: a.unionByName(b), parts).collect()
    return (_by_file([r for r in rows if r["__file"] is not None], version_name),
            [tuple(r[k] for k in keys) for r in rows if r["__file"] is None])


def _rows_with_keys(spark, current, version_files: list[Path], old, keys: list[str], wanted: list[tuple],
                    partition_by: tuple[str, ...]) -> dict[Path, set[int]]:
    """{file: positions} of the current rows whose keys the query returns: looked up with PyArrow
    where it reads the warehouse and the keys are columns of the files (not partition folders),
    else with a Spark join."""
    if not wanted:
        return {}
    if files.pyarrow_reads(current) and not set(partition_by) & set(keys):
        return parquet_rows.rows_with_keys(current, version_files, keys, wanted)
    lookup = spark.createDataFrame(wanted, old.select(*keys).schema)
    return _by_file(_tag_rows(old).join(lookup, keys, "left_semi").select("__file", "__row").collect(), current.name)


def _by_file(rows, version_name: str) -> dict[Path, set[int]]:
    """(__file, __row) rows as {file relative to the version folder: positions}."""
    found: dict[Path, set[int]] = {}
    for row in rows:
        found.setdefault(_relative_to_version(row["__file"], version_name), set()).add(row["__row"])
    return found


def _survivors(spark, version, schema, leaving: dict[Path, set[int]]):
    """The rows of the files in `leaving` other than the positions given for each."""
    from functools import reduce

    from pyspark.sql import functions as F

    kept = []
    for relative, rows in sorted(leaving.items()):
        # basePath keeps the partition columns of files read one by one.
        one = spark.read.schema(schema).option("basePath", str(version)).parquet(str(version / relative))
        kept.append(one.where(~F.col("_metadata.row_index").isin(sorted(rows))))
    return reduce(lambda a, b: a.unionByName(b), kept)


def _as_list(value) -> list[str]:
    if not value:
        return []
    return [value] if isinstance(value, str) else list(value)


def plan_schema(model: Model, old_frame, new_frame):
    """The query's rows in the table's column order; the table's rows too if columns were added."""
    from pyspark.sql import functions as F

    old_types = dict((f.name, f.dataType) for f in old_frame.schema.fields)
    new_types = dict((f.name, f.dataType) for f in new_frame.schema.fields)
    added = [c for c in new_types if c not in old_types]
    missing = [c for c in old_types if c not in new_types]
    # Types are compared without nullability: Parquet reads every array and field as nullable.
    retyped = [c for c in new_types if c in old_types and new_types[c].simpleString() != old_types[c].simpleString()]
    mode = model.config.get("on_schema_change", "fail")
    if mode not in SCHEMA_CHANGES:
        raise ProjectError(f"on_schema_change '{mode}' of '{model.name}' is not one of {', '.join(SCHEMA_CHANGES)}",
                           path=model.path)
    if not (added or missing or retyped):
        return new_frame.select(*old_types), None
    changes = "; ".join(part for part in [
        f"new columns: {', '.join(added)}" if added else "",
        f"columns no longer returned: {', '.join(missing)}" if missing else "",
        f"columns with a new type: {', '.join(f'{c} ({old_types[c].simpleString()} -> {new_types[c].simpleString()})' for c in retyped)}" if retyped else "",
    ] if part)
    if mode == "fail" or retyped:
        raise ProjectError(
            f"the columns of incremental model '{model.name}' changed ({changes}). Rebuild it with "
            f"--full-refresh, or set on_schema_change='append_new_columns' to add new columns",
            path=model.path)
    columns = list(old_types) + added
    new_aligned = new_frame.select(*[F.col(c) if c in new_types else F.lit(None).cast(old_types[c]).alias(c)
                                     for c in columns])
    old_aligned = old_frame.select(*[F.col(c) if c in old_types else F.lit(None).cast(new_types[c]).alias(c)
                                     for c in columns])
    return new_aligned, old_aligned


# A table that merges or deletes rows has its small files rewritten together once it has this many.
COMPACT_AT_FILES = 8
SMALL_FILE_BYTES = 4 * 1024 * 1024
GATHERED_FILE_BYTES = 64 * 1024 * 1024


def small_files_to_compact(version, files: list[Path], at_least: int = COMPACT_AT_FILES) -> dict[Path, int]:
    """The small files among a version's `files` with their sizes, if there are `at_least` of them
    to gather; else none. Each size is asked for once (a request each on an object store)."""
    sizes = {f: (version / f).stat().st_size for f in files}
    small = {f: size for f, size in sizes.items() if size < SMALL_FILE_BYTES}
    return small if len(small) >= at_least else {}


def _in_files_by_size(computed):
    """A cached frame in one partition, so one file, per GATHERED_FILE_BYTES of it. It comes out of
    the query in Spark's shuffle partitions (8 locally), and a build's few new rows would otherwise
    be written as that many small files. Called once the cache is computed (a merge looked up its
    keys): the size is the cache's own, read without a job, and merging partitions runs nothing
    again."""
    return _in_gathered_files(computed, _planned_size(computed))


_SIZE_UNITS = {"B": 1, "KiB": 2 ** 10, "MiB": 2 ** 20, "GiB": 2 ** 30, "TiB": 2 ** 40, "PiB": 2 ** 50}


def _planned_size(frame) -> int:
    """The bytes Spark's optimizer estimates for a frame (for a cached one, the cache's own size),
    without running a job: from the plan's statistics on a classic session, from `explain cost`
    (one round trip) over Spark Connect."""
    if not is_connect(frame.sparkSession):
        return int(str(frame._jdf.queryExecution().optimizedPlan().stats().sizeInBytes()))
    found = re.search(r"sizeInBytes=([\d.]+)\s*([KMGTP]?i?B)\b", frame._explain_string(mode="cost"))
    return int(float(found.group(1)) * _SIZE_UNITS.get(found.group(2), 1)) if found else 1


def _gathered(spark, version, sizes: dict[Path, int], schema):
    """The rows of some of a version's files (with their sizes), in partitions of about
    GATHERED_FILE_BYTES, so as many files."""
    # basePath keeps the partition columns of files read one by one.
    rows = spark.read.schema(schema).option("basePath", str(version)).parquet(*[str(version / f) for f in sizes])
    return _in_gathered_files(rows, sum(sizes.values()))


def _in_gathered_files(rows, size: int):
    """`rows`, of about `size` bytes, in one partition (so one file) per GATHERED_FILE_BYTES."""
    return rows.coalesce(max(1, -(-size // GATHERED_FILE_BYTES)))


def _tag_rows(frame):
    """Each row known by its file and its position in it (stable across reads, unlike generated ids)."""
    from pyspark.sql import functions as F

    return frame.select("*", F.col("_metadata.file_path").alias("__file"), F.col("_metadata.row_index").alias("__row"))


def _relative_to_version(uri: str, version_name: str) -> Path:
    """A data file's path inside its version folder, from the URI Spark reports for it."""
    return Path(unquote(uri).split(f"/{version_name}/", 1)[1])


def _partition_values(relative: Path, partition_by: tuple[str, ...]) -> tuple[str, ...]:
    values = dict(part.split("=", 1) for part in relative.parts[:-1] if "=" in part)
    return tuple(unquote(values.get(c, "")) for c in partition_by)
