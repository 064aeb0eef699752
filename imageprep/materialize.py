"""Build one model or seed: what its materialization makes of its query.

- `ephemeral`: nothing; the models that read it inline its SQL as a CTE (render.py).
- `view`: a temporary view, and the view's SQL in the catalog.
- `table`: a new version of the table with every row the query returns.
- `incremental`: the same on a first build or a full refresh; otherwise a new version that keeps
  the current one's valid files and adds the query's rows (incremental.py works out which).

A seed is a CSV file loaded as a table. Tables are written and published by table_writer.
"""
from __future__ import annotations

import csv

from .deletions import unmatched_specs
from .errors import ProjectError
from .incremental import next_version
from .nodes import Model, Seed
from .table_writer import Provenance, TableSpec, Written, write_version
from .warehouse import Warehouse


def materialize_model(spark, model: Model, sql: str, warehouse: Warehouse, fingerprint: str | None = None,
                      incremental: bool = False, logic: str | None = None,
                      seen: dict[str, list[str]] | None = None, confirm=None, folders: dict | None = None) -> Written:
    """Run the model's SQL as its materialization says. `incremental`: add to the existing table
    (an incremental model built before, and not refreshed in full). `fingerprint` and `logic`: the
    node's fingerprints, and `seen`: the files of the tables it read through new_rows(), kept with
    the table for the next build. `confirm`: called, on an incremental build, once the new version
    is written and before it is published; what it raises discards the version. `folders`: the
    image folders the build listed, by relation, (source, listing): delete_unmatched against one
    is answered from its listing where it can be."""
    kind = model.materialized
    if kind == "ephemeral":
        return Written(None)
    query = spark.sql(sql)  # parses and analyses: a rejected query fails here, before any write
    if kind == "view":
        # Its parents are built before it, so a view of the analysed query reads what the view's SQL
        # would; later sessions register it from that SQL (catalog.register_relation).
        query.createOrReplaceTempView(model.name)
        warehouse.publish_view(model.name, sql, fingerprint=fingerprint)
        return Written(None)
    if kind not in ("table", "incremental"):
        raise ProjectError(f"model '{model.name}' has unknown materialization '{kind}'", path=model.path)
    table = TableSpec.of_model(model)
    provenance = Provenance(fingerprint, logic, seen)
    if kind == "incremental":
        unmatched_specs(model)  # a malformed delete_unmatched fails the first build, not a later one
    if kind == "incremental" and incremental:
        with next_version(spark, model, query, warehouse, table.partition_by, folders) as next_one:
            return write_version(spark, warehouse, table, next_one.rows, provenance,
                                 carried=next_one.carried, finish=next_one.finish, confirm=confirm)
    return write_version(spark, warehouse, table, query, provenance)


def load_seed(spark, seed: Seed, project_root, warehouse: Warehouse, fingerprint: str | None = None) -> Written:
    """A CSV file as a table: types inferred by Spark, overridden per column by `column_types`."""
    path = project_root / seed.path
    delimiter = seed.config.get("delimiter", ",")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle, delimiter=delimiter))
    if not rows:
        raise ProjectError("the seed file is empty; it needs at least a header row", path=seed.path)
    header = rows[0]
    for number, row in enumerate(rows[1:], start=2):
        if row and len(row) != len(header):
            raise ProjectError(
                f"row has {len(row)} fields but the header has {len(header)} ({', '.join(header)}); "
                f"fix the row or quote values that contain '{delimiter}'", path=seed.path, line=number)
    unknown = set(seed.column_types) - set(header)
    if unknown:
        raise ProjectError(f"column_types names columns the seed does not have: {', '.join(sorted(unknown))}",
                           path=seed.path)
    frame = (spark.read.option("header", "true").option("inferSchema", "true").option("sep", delimiter)
             .option("mode", "FAILFAST").csv("file:" + str(path.resolve())))
    if seed.column_types:
        frame = frame.select(*[
            frame[f"`{c}`"].cast(seed.column_types[c]).alias(c) if c in seed.column_types else frame[f"`{c}`"]
            for c in frame.columns])
    return write_version(spark, warehouse, TableSpec(seed.name), frame.coalesce(1), Provenance(fingerprint))
