"""Which rows of a table version hold some keys, found with PyArrow instead of a Spark job.

A merge replaces the rows whose unique_key the query returns. The query's keys are few (the new
and changed rows); the table's are all of its rows. Reading just the key columns of each Parquet
file with PyArrow costs milliseconds; a Spark job that joins them costs a scan planned by file
bytes (a task per 16 MB of images, though only the keys are read) and several stages.

Rows are known by their file and their position in it, as Spark's `_metadata.row_index` counts
them, so the rows a merge rewrites without can be dropped by position.
"""
from __future__ import annotations

from pathlib import Path

from . import files
from .table_writer import data_files


def rows_with_keys(version, keys: list[str], wanted: list[tuple]) -> dict[Path, set[int]]:
    """Positions of the rows of each file of `version` whose `keys` columns equal one of the
    `wanted` tuples (NULL matches nothing, as in SQL); files without such rows are left out."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    filesystem, base = files.arrow_filesystem(version)
    found: dict[Path, set[int]] = {}
    if not wanted:
        return found
    for relative in data_files(version):
        table = pq.read_table(f"{base}/{relative}", columns=keys, filesystem=filesystem)
        if table.num_rows == 0:
            continue
        # The wanted keys typed as the file types them, so the join compares like with like.
        lookup = pa.Table.from_pylist([dict(zip(keys, row)) for row in wanted], schema=table.schema)
        table = table.append_column("__row", pa.array(range(table.num_rows), pa.int64()))
        matched = table.join(lookup, keys, join_type="left semi")
        if matched.num_rows:
            found[relative] = set(matched.column("__row").to_pylist())
    return found
