"""The built-in generic tests answered from the Parquet files with PyArrow, without a Spark job.

not_null, unique, accepted_values and relationships read one or two columns of a table. Where
PyArrow reads the warehouse, reading those columns costs milliseconds; a Spark query costs
planning, code generation and jobs (tenths of a second each, even on a few rows, and a build
runs a group of tests after every model). So a build first asks this module: a test it can
answer, and that finds no failing row, passes without Spark. A test it cannot answer, or that
fails here, runs its SQL on Spark as before, which gives the failing rows, their count and the
examples a report shows: this module only ever says "passed".

Only the built-in tests (builtin_tests.sql, not a project's override of them) without a `where`
are answered (the renderer marks them: DataTest.native); only on top-level columns, and only of
types whose equality PyArrow and Spark agree on (integers, strings, binary, booleans, dates,
timestamps; floats are left to Spark, which groups -0.0 with 0.0 and NaN with NaN). Rows are
those the SQL reads: new_rows(model) for not_null and accepted_values (the files the test has not
seen), the whole table for unique and relationships.
"""
from __future__ import annotations

from . import files
from .new_rows import unseen_files
from .table_writer import data_files

CHECKS = ("not_null", "unique", "accepted_values", "relationships")


def passes(warehouse, test, seen_before: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
    """The files of each table the test reads through new_rows(), as a passing run remembers them,
    if the test is answered here and finds no failing row; None when Spark is to run it."""
    spec = test.native
    if not spec:
        return None
    try:
        return _passes(warehouse, test, spec, seen_before)
    except Exception:  # noqa: BLE001 - a column or file PyArrow does not read as expected: Spark decides
        return None


def _passes(warehouse, test, spec: dict, seen_before) -> dict[str, list[str]] | None:
    import pyarrow.compute as pc

    folder, all_files = _table_files(warehouse, spec["model"])
    if folder is None or set(test.new_rows_of) - {spec["model"]}:
        return None
    reads_new_rows = spec["model"] in test.new_rows_of
    read = all_files
    if reads_new_rows and seen_before is not None and spec["model"] in seen_before:
        read = unseen_files(all_files, seen_before[spec["model"]])
    column = _column(folder, read, spec["column"])
    if column is None:
        return None
    check = spec["check"]
    if len(column) == 0:  # no rows, none failing
        ok = True
    elif check == "not_null":
        ok = column.null_count == 0
    elif check == "unique":
        values = column.drop_null()
        ok = pc.count_distinct(values).as_py() == len(values)
    elif check == "accepted_values":
        import pyarrow as pa

        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            return None
        ok = pc.all(pc.is_in(column.drop_null(), value_set=pa.array(spec["values"], column.type))).as_py() is True
    elif check == "relationships":
        parent_folder, parent_files = _table_files(warehouse, spec["to"])
        if parent_folder is None:
            return None
        parent = _column(parent_folder, parent_files, spec["field"])
        if parent is None or parent.type != column.type:
            return None
        ok = pc.all(pc.is_in(column.drop_null(), value_set=parent.drop_null())).as_py() is True
    else:
        return None
    if not ok:
        return None
    return {spec["model"]: all_files} if reads_new_rows else {}


def _table_files(warehouse, name: str):
    """(version folder, its data files as new_rows() names them) of a table PyArrow reads; (None,
    []) otherwise."""
    folder = warehouse.current_version_folder(name)
    if folder is None or not files.pyarrow_reads(folder):
        return None, []
    return folder, [str(f) for f in data_files(folder)]


def _column(folder, relative_files: list, name: str):
    """One top-level column of some files of a version folder, as one chunked array; None when a
    file lacks it (a partition column, a nested field) or its type is one left to Spark."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    filesystem, base = files.arrow_filesystem(folder)
    chunks = []
    for relative in relative_files:
        table = pq.read_table(f"{base}/{relative}", columns=[name], filesystem=filesystem)
        if table.column_names != [name]:
            return None
        chunks.append(table.column(name))
    if not chunks:
        return pa.chunked_array([], pa.null())  # no files: no rows
    if len({chunk.type for chunk in chunks}) != 1 or not _comparable(chunks[0].type):
        return None
    return pa.chunked_array([c for chunk in chunks for c in chunk.chunks], chunks[0].type)


def _comparable(data_type) -> bool:
    """Types whose equality PyArrow and Spark agree on."""
    import pyarrow as pa

    return (pa.types.is_integer(data_type) or pa.types.is_string(data_type) or pa.types.is_large_string(data_type)
            or pa.types.is_binary(data_type) or pa.types.is_boolean(data_type) or pa.types.is_date(data_type)
            or pa.types.is_timestamp(data_type))
