"""Write one model or seed: a Parquet table version, a view, or nothing (ephemeral)."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from . import normalization
from .errors import ProjectError
from .nodes import Model, Seed
from .warehouse import Warehouse


@dataclass
class Written:
    rows: int | None
    location: str | None


def materialize_model(spark, model: Model, sql: str, warehouse: Warehouse, fingerprint: str | None = None,
                      incremental: bool = False, logic: str | None = None,
                      seen: dict[str, list[str]] | None = None) -> Written:
    """`seen`: the files of the tables the model read through new_rows(), remembered with the table."""
    kind = model.materialized
    if kind == "ephemeral":
        return Written(None, None)
    frame = spark.sql(sql)  # parses and analyses: a rejected query fails here, before any write
    if kind == "view":
        spark.sql(f"CREATE OR REPLACE TEMP VIEW `{model.name}` AS {sql}")
        warehouse.publish_view(model.name, sql, fingerprint=fingerprint)
        return Written(None, None)
    if kind == "incremental" and incremental:
        from .incremental import materialize_incremental

        return materialize_incremental(spark, model, sql, warehouse, fingerprint, logic=logic, seen=seen)
    if kind in ("table", "incremental"):
        return write_table(spark, normalization.annotate(frame, model.config), model.name, warehouse,
                           partition_columns(model), fingerprint, logic=logic, seen=seen,
                           options=write_options(model), meta=model.config.get("meta"))
    raise ProjectError(f"model '{model.name}' has unknown materialization '{kind}'", path=model.path)


def partition_columns(model: Model) -> list[str]:
    """The model's `partition_by` config as a list of column names (none when not set)."""
    value = model.config.get("partition_by")
    if not value:
        return []
    return [value] if isinstance(value, str) else list(value)


def write_options(model: Model) -> dict[str, str]:
    """The model's `options` config: Spark's Parquet writer options, as dbt-spark passes them, e.g.
    options={'maxRecordsPerFile': 64} (smaller files: an incremental merge that removes a few rows
    rewrites fewer of the others) or options={'compression': 'zstd'}."""
    options = model.config.get("options") or {}
    if not isinstance(options, dict) or not all(
            isinstance(value, (str, int, float, bool)) for value in options.values()):
        raise ProjectError(f"options of '{model.name}' must map Parquet writer option names to values, "
                           f"e.g. options={{'maxRecordsPerFile': 64}}; got {options!r}", path=model.path)
    return {str(key): str(value).lower() if isinstance(value, bool) else str(value) for key, value in options.items()}


def write_table(spark, frame, name: str, warehouse: Warehouse, partition_by: list[str],
                fingerprint: str | None = None, logic: str | None = None,
                seen: dict[str, list[str]] | None = None, options: dict[str, str] | None = None,
                meta: dict | None = None) -> Written:
    """Write a new version; switch to it only once every file is written. `meta`: the model's
    config meta, kept in the table's catalog entry."""
    version = warehouse.new_version(name)
    try:
        writer = frame.write.mode("errorifexists").options(**(options or {}))
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        writer.parquet(version)
    except BaseException:
        warehouse.discard(version)
        raise
    return publish_written(spark, warehouse, name, version, written_schema=None if partition_by else frame.schema,
                           fingerprint=fingerprint, logic=logic, seen=seen, **({"meta": meta} if meta else {}))


def publish_written(spark, warehouse: Warehouse, name: str, version, seen=None, written_schema=None,
                    **meta) -> Written:
    """Make a fully written version the current table and register it by name. Its schema goes into
    the catalog, so later sessions register the table without reading a Parquet footer.

    `written_schema`: the schema of the frame that wrote the version (not partitioned). With it, and
    a warehouse on the local file system, no Spark job runs here: the files are read with that schema
    (Spark makes every field nullable, as it does reading Parquet) and the rows are counted from their
    footers."""
    try:
        if written_schema is not None and warehouse.is_local:
            rows = count_rows(Path(str(version)))
            table = spark.read.schema(written_schema).parquet(str(version))
        else:  # partitioned (Spark types the partition columns from folder names), or not a local folder
            table = spark.read.parquet(str(version))
            rows = table.count()  # from Parquet footers, in a Spark job
    except BaseException:
        warehouse.discard(str(version))
        raise
    warehouse.publish_table(name, str(version), rows=rows, schema=table.schema.json(), seen=seen, **meta)
    table.createOrReplaceTempView(name)
    return Written(rows, str(version))


def count_rows(version: Path) -> int:
    """Rows of a version folder on the local file system, summed from its Parquet footers."""
    import pyarrow.parquet as pq

    from .incremental import data_files

    return sum(pq.read_metadata(version / relative).num_rows for relative in data_files(version))


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
    return write_table(spark, frame.coalesce(1), seed.name, warehouse, [], fingerprint)
