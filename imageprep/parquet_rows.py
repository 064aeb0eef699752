"""Rows of a table version's Parquet files by position, with PyArrow instead of Spark jobs.

An incremental merge replaces the rows whose unique_key the query returns and removes those
delete_where names. The query's keys are few (the new and changed rows); the table's are all of
its rows. Reading just the key columns of each file with PyArrow costs milliseconds, where a
Spark job costs a scan planned by file bytes (a task per 16 MB of images, though only the keys
are read) and several stages. A file that loses rows is copied without them, again with PyArrow:
a copy of Parquet to Parquet with the same schema, footer metadata and compression, rather than
a Spark job that decodes the file into rows and encodes them again.

Rows are known by their file and their position in it, as Spark's `_metadata.row_index` counts
them. A copy is named after the file it was copied from (`<origin>.rewrite-<id>.parquet`): its rows
are some of that file's, so a node that read any file of the same origin has read all of them
(new_rows() uses that: deleting one image does not make its neighbours in the file new rows for
every table downstream).
"""
from __future__ import annotations

import re
import uuid
from pathlib import Path

from . import files


def rows_with_keys(version, data_files: list[Path], keys: list[str], wanted: list[tuple]) -> dict[Path, set[int]]:
    """Positions of the rows of each of `data_files` (relative to the folder `version`) whose `keys`
    columns equal one of the `wanted` tuples (NULL matches nothing, as in SQL); files without
    such rows are left out."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    filesystem, base = files.arrow_filesystem(version)
    found: dict[Path, set[int]] = {}
    if not wanted:
        return found
    lookup = None
    for relative in data_files:
        table = pq.read_table(f"{base}/{relative}", columns=keys, filesystem=filesystem)
        if table.num_rows == 0:
            continue
        if lookup is None:  # the wanted keys typed as the files type them, so the join compares like with like
            lookup = pa.Table.from_pylist([dict(zip(keys, row)) for row in wanted], schema=table.schema)
        table = table.append_column("__row", pa.array(range(table.num_rows), pa.int64()))
        matched = table.join(lookup, keys, join_type="left semi")
        if matched.num_rows:
            found[relative] = set(matched.column("__row").to_pylist())
    return found


def value_tuples(version, data_files: list[Path], columns: list[str], where: dict | None = None) -> set[tuple]:
    """The distinct `columns` tuples of the rows of `data_files` (relative to `version`) whose
    `where` columns equal the values given (NULL equals nothing there, as in SQL)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    filesystem, base = files.arrow_filesystem(version)
    where = where or {}
    found: set[tuple] = set()
    for relative in data_files:
        table = pq.read_table(f"{base}/{relative}", columns=list(dict.fromkeys([*columns, *where])),
                              filesystem=filesystem)
        for column, value in where.items():
            table = table.filter(pc.equal(table.column(column), value))
        _require_exact_equality(table, columns)
        found.update(zip(*(table.column(c).to_pylist() for c in columns)))
    return found


def rows_not_in(version, data_files: list[Path], columns: list[str], present: set[tuple],
                timestamps_in_micros: bool = False) -> dict[Path, set[int]]:
    """Positions of the rows of each of `data_files` whose `columns` tuple is not in `present`
    (NULL equal to NULL); files without such rows are left out. `timestamps_in_micros`: timestamp
    columns are compared as integer microseconds since the epoch."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    filesystem, base = files.arrow_filesystem(version)
    found: dict[Path, set[int]] = {}
    for relative in data_files:
        table = pq.read_table(f"{base}/{relative}", columns=columns, filesystem=filesystem)
        if table.num_columns != len(set(columns)):
            raise KeyError(f"{relative} lacks one of {columns}")
        _require_exact_equality(table, columns)
        if timestamps_in_micros:
            table = pa.table({c: table.column(c).cast(pa.timestamp("us")).cast(pa.int64())
                              if pa.types.is_timestamp(table.column(c).type) else table.column(c)
                              for c in table.column_names})
        rows = {i for i, row in enumerate(zip(*(table.column(c).to_pylist() for c in columns))) if row not in present}
        if rows:
            found[relative] = rows
    return found


def _require_exact_equality(table, columns: list[str]) -> None:
    """Raise for float columns: Python's == says NaN differs from NaN, where SQL's <=> matches them."""
    import pyarrow as pa

    floats = [c for c in columns if pa.types.is_floating(table.column(c).type)]
    if floats:
        raise TypeError(f"float columns {floats} are compared by Spark")


def origin_of(name: str) -> str:
    """The file a data file's rows all come from: itself, or the file a rewrite copied them from
    (a file name or a path relative to its version folder)."""
    return _REWRITE_MARK.sub("", name)


_REWRITE_MARK = re.compile(r"\.rewrite-[0-9a-f]+(?=\.parquet$)")


def keys_in(version, data_files: list[Path], keys: list[str]) -> list[tuple]:
    """The distinct `keys` tuples of the rows of `data_files` (relative to the folder `version`),
    rows with a NULL key left out (it matches nothing)."""
    import pyarrow.parquet as pq

    filesystem, base = files.arrow_filesystem(version)
    found: set[tuple] = set()
    for relative in data_files:
        table = pq.read_table(f"{base}/{relative}", columns=keys, filesystem=filesystem)
        found.update(row for row in zip(*(table.column(k).to_pylist() for k in keys)) if None not in row)
    return sorted(found, key=repr)


def rewrite_without(source, target_folder, relative: Path, positions: set[int]) -> Path | None:
    """Copy the Parquet file `source` into `target_folder` (at `relative`'s folder, under a new
    name) without the rows at `positions`; its path relative to `target_folder`, or None when no
    row is left (no file is written). Schema, footer metadata (Spark's schema, a normalization
    record), compression and INT96 timestamps are kept, so Spark and PyArrow read the copy as
    they read the original. Row groups that lose no row are copied as bytes (parquet_splice);
    when every group loses rows, the file is decoded and written again whole."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from . import parquet_splice

    filesystem, path = files.arrow_filesystem(source)
    with filesystem.open_input_file(path) as original:
        parquet = pq.ParquetFile(original)
        metadata = parquet.metadata
        if len(positions) >= metadata.num_rows:
            return None

        def write_group(table):
            sink = pa.BufferOutputStream()
            _write_like(metadata, table, sink, max(1, table.num_rows))
            return sink.getvalue()

        written = relative.parent / f"{origin_of(relative.name).removesuffix('.parquet')}.rewrite-{uuid.uuid4().hex}.parquet"
        out_filesystem, target = _output(target_folder, written)
        with out_filesystem.open_output_stream(target) as out:
            spliced = parquet_splice.copy_without(parquet, original, out, positions, write_group)
        if spliced:
            return written
        out_filesystem.delete_file(target)
        table = parquet.read(use_threads=False)  # the callers copy one file per core already
    table = parquet_splice.without_rows(table, positions)
    rows_per_group = max((metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)), default=1)
    _write_like(metadata, table, (out_filesystem, target), rows_per_group)
    return written


def gather(sources: list, target_folder, new_name, max_rows_per_file: int | None = None) -> list[Path]:
    """Copy the rows of several small Parquet files (paths of one table's versions, one schema) into
    one file of `target_folder` (or one per `max_rows_per_file` rows), kept as rewrite_without
    keeps them, each named by calling `new_name`; their paths relative to `target_folder`. Row
    groups of about ROW_GROUP_BYTES."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquets = [pq.ParquetFile(path, filesystem=filesystem)
                for filesystem, path in map(files.arrow_filesystem, sources)]
    table = pa.concat_tables([parquet.read(use_threads=False) for parquet in parquets])
    rows_per_group = max(1, ROW_GROUP_BYTES // max(1, table.nbytes // max(1, table.num_rows)))
    step = max_rows_per_file or max(1, table.num_rows)
    written = []
    for start in range(0, max(1, table.num_rows), step):
        written.append(Path(new_name()))
        _write_like(parquets[0].metadata, table.slice(start, step), _output(target_folder, written[-1]), rows_per_group)
    return written


# The project's Parquet row groups, Spark's (spark.hadoop.parquet.block.size) and PyArrow's.
ROW_GROUP_BYTES = 2 * 1024 * 1024


def _output(target_folder, relative: Path) -> tuple:
    """Where PyArrow writes `relative` in `target_folder`, its folder made: (filesystem, path)."""
    out_filesystem, out_base = files.arrow_filesystem(target_folder)
    out_filesystem.create_dir(f"{out_base}/{relative.parent}", recursive=True)
    return out_filesystem, f"{out_base}/{relative}"


def _write_like(metadata, table, output, rows_per_group: int) -> None:
    """Write `table` to `output` (a (filesystem, path) pair, or a PyArrow output stream) with the
    compression and timestamp type of the file whose footer is `metadata` (the schema's metadata
    travels with the table)."""
    import pyarrow.parquet as pq

    column_types = [metadata.schema.column(i).physical_type for i in range(len(metadata.schema))]
    compression = metadata.row_group(0).column(0).compression if metadata.num_row_groups else "SNAPPY"
    compression = "none" if compression == "UNCOMPRESSED" else compression.lower()
    # Dictionaries and min/max statistics only where the original has them: an image column has
    # neither (the project turns dictionaries off; Spark drops statistics of large values), and
    # making them hashes and compares its large values, half of a copy's time.
    first = metadata.row_group(0) if metadata.num_row_groups else None
    columns = [first.column(i) for i in range(first.num_columns)] if first is not None else []
    dictionary = [c.path_in_schema for c in columns if any("DICTIONARY" in e for e in c.encodings)]
    statistics = [c.path_in_schema for c in columns if c.is_stats_set and c.statistics.has_min_max]
    filesystem, where = output if isinstance(output, tuple) else (None, output)
    pq.write_table(table, where, filesystem=filesystem, compression=compression,
                   use_dictionary=dictionary if first is not None else True,
                   write_statistics=statistics if first is not None else True,
                   row_group_size=max(1, rows_per_group), use_deprecated_int96_timestamps="INT96" in column_types)
