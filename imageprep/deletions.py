"""The current rows an incremental build removes before it adds the query's: `delete_unmatched`
and `delete_where`.

    delete_unmatched={'in': ref('stg_files'), 'on': ['path', 'size_bytes', 'modified_at']}
    delete_unmatched=[{'in': ref('image_features'), 'on': {'path_a': 'path', 'sha_a': 'content_sha256'}},
                      {'in': ref('image_features'), 'on': {'path_b': 'path', 'sha_b': 'content_sha256'}}]
    delete_unmatched={'in': ref('splits'), 'on': ['path'], 'where': {'split': 'train'}}
    delete_where="not exists (select 1 from " ~ ref('stg_files') ~ " f where f.path = my_model.path)"

`delete_unmatched` removes each row that no row of the relation `in` matches on the `on` columns
(a list of columns named alike in both, or {this table's column: the relation's column}), NULL
matching NULL, among the relation's rows whose `where` columns equal the values given. It is how
a table that mirrors another forgets what left it: a file deleted or changed, an image gone. A
list of them removes the rows any one leaves unmatched. It says no more than its SQL would
(`not exists (select 1 from <in> where <on columns> <=> ...)`), but in a form the runner reads:
where PyArrow reads the warehouse and `in` is a table of it, the rows are found from the `on`
columns of both tables' files, in milliseconds and without a Spark job. Where `in` is an image
folder the build listed, the listing tells whether any row is unmatched: when none is, no Spark
job runs. Elsewhere (some rows unmatched in a folder, another source, a view, a URI warehouse
PyArrow does not reach) that SQL runs on Spark.

`delete_where` is any SQL condition on the table's current rows, which are named after the model;
the rows it holds for are removed. It always runs on Spark.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from . import files, parquet_rows
from .errors import ProjectError
from .nodes import Model
from .sources import row_keys
from .table_writer import data_files

UNMATCHED_KEYS = {"in", "on", "where"}


def unmatched_specs(model: Model) -> list[dict]:
    """delete_unmatched as a list of {'in': relation, 'on': {column: its column}, 'where': {column: value}}."""
    value = model.config.get("delete_unmatched")
    if not value:
        return []
    specs = list(value) if isinstance(value, (list, tuple)) else [value]
    return [_spec(model, spec) for spec in specs]


def _spec(model: Model, spec) -> dict:
    def wrong(why: str) -> ProjectError:
        return ProjectError(f"delete_unmatched of '{model.name}' {why}; e.g. delete_unmatched={{'in': ref('stg_files'), "
                            f"'on': ['path', 'content_sha256'], 'where': {{'split': 'train'}}}}", path=model.path)

    if not isinstance(spec, Mapping) or set(spec) - UNMATCHED_KEYS:
        raise wrong(f"must map 'in', 'on' and optionally 'where', got {spec!r}")
    relation, on, where = spec.get("in"), spec.get("on"), spec.get("where") or {}
    if not isinstance(relation, str) or not relation:
        raise wrong("needs 'in': the relation whose rows the table's rows must match")
    if isinstance(on, str):
        on = [on]
    if isinstance(on, (list, tuple)) and on and all(isinstance(c, str) for c in on):
        on = {c: c for c in on}
    if not isinstance(on, Mapping) or not on or not all(isinstance(k, str) and isinstance(v, str) for k, v in on.items()):
        raise wrong(f"needs 'on': columns, or a mapping of the table's columns to the relation's, got {on!r}")
    if not isinstance(where, Mapping) or not all(
            isinstance(k, str) and isinstance(v, (str, int, float, bool)) for k, v in where.items()):
        raise wrong(f"takes 'where' as a mapping of the relation's columns to values, got {where!r}")
    return {"in": relation, "on": dict(on), "where": dict(where)}


def unmatched_condition(model: Model, spec: dict) -> str:
    """The SQL that says what one delete_unmatched spec says: a condition on the table's rows,
    named after the model (as delete_where's are)."""
    match = [f"__in.`{theirs}` <=> `{model.name}`.`{mine}`" for mine, theirs in spec["on"].items()]
    match += [f"__in.`{column}` = {_literal(value)}" for column, value in spec["where"].items()]
    return f"not exists (select 1 from {spec['in']} __in where {' and '.join(match)})"


def _literal(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return repr(value)


def unmatched_rows(warehouse, spec: dict, current, version_files: list[Path],
                   folders: dict | None = None) -> dict[Path, set[int]] | None:
    """{file: positions} of the rows of the current version (`current`, its `version_files`) that
    no row of `spec['in']` matches, found with PyArrow; None where PyArrow cannot answer (the
    relation is not a table of the warehouse, or a column is not a plain column of the files, or is
    a float column, whose NaN only SQL's <=> matches). `folders`: the image folders the build
    listed, by relation, (source, listing)."""
    if spec["in"] in (folders or {}):
        return _nothing_unmatched_in_folder(spec, *folders[spec["in"]], current, version_files)
    other = warehouse.current_version_folder(spec["in"])
    if other is None or not files.pyarrow_reads(other) or not files.pyarrow_reads(current):
        return None
    try:
        present = parquet_rows.value_tuples(other, data_files(other), list(spec["on"].values()), spec["where"])
        return parquet_rows.rows_not_in(current, version_files, list(spec["on"]), present)
    except Exception:  # noqa: BLE001 - a column PyArrow does not read as such: the SQL decides
        return None


def _nothing_unmatched_in_folder(spec: dict, source, listing, current, version_files: list[Path]) -> dict | None:
    """{} when every current row matches a file of the image folder as its rows give it (path,
    length, modificationTime), told from the build's listing with no Spark job; otherwise None,
    and Spark's SQL finds the rows, as it would have. Only "nothing to remove" is said here (as a
    data test's pass is): the rows a build does remove are always those Spark's SQL names."""
    if spec["where"] or not set(spec["on"].values()) <= set(FOLDER_ROW_KEY) or not files.pyarrow_reads(current):
        return None
    keys = row_keys(source, listing)
    if keys is None:
        return None
    theirs = list(spec["on"].values())
    present = {tuple(key[FOLDER_ROW_KEY.index(column)] for column in theirs) for key in keys}
    try:
        unmatched = parquet_rows.rows_not_in(current, version_files, list(spec["on"]), present, timestamps_in_micros=True)
    except Exception:  # noqa: BLE001 - a column PyArrow does not read as such: the SQL decides
        return None
    return {} if not unmatched else None


# The columns of an image folder's rows that row_keys gives, in its order.
FOLDER_ROW_KEY = ("path", "length", "modificationTime")


def rows_to_delete(model: Model, tagged, unmatched_left: list[dict]):
    """(__file, __row) of the current rows (`tagged`: the table's rows with their file and
    position) that delete_where removes, or one of the delete_unmatched specs `unmatched_left`
    (those PyArrow did not answer) does, found by Spark; None when there is nothing to ask it."""
    from pyspark.errors import PySparkException

    parts = [f"({model.config['delete_where']})"] if model.config.get("delete_where") else []
    parts += [unmatched_condition(model, spec) for spec in unmatched_left]
    if not parts:
        return None
    try:
        # The rows are named after the model, so a condition can correlate: `<model>.path`. No
        # temp view: over Spark Connect a query is analysed only when it runs.
        return tagged.alias(model.name).where(" or ".join(parts)).select("__file", "__row")
    except PySparkException as exc:  # analysed at once on a classic session
        said_by = " and ".join((["delete_where"] if model.config.get("delete_where") else [])
                               + (["delete_unmatched"] if unmatched_left else []))
        raise ProjectError(f"{said_by} of '{model.name}' is not a valid condition on its rows: "
                           f"{str(exc).splitlines()[0]}", path=model.path) from None


def deletes_rows(model: Model) -> bool:
    """Whether the model removes rows on its incremental builds (delete_where or delete_unmatched)."""
    return bool(model.config.get("delete_where") or model.config.get("delete_unmatched"))
