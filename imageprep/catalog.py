"""Make built tables queryable by name in a SparkSession, and hand analysts such a session.

    from imageprep.catalog import project_session
    spark = project_session(".")            # local Spark, tables and image functions registered
    spark.sql("select label, count(*) from stg_images group by label").show()
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from .warehouse import Warehouse


def register_relation(spark, name: str, entry: dict, warehouse: Warehouse) -> None:
    """One catalog entry as a temp view: a table reads its current version, a view runs its SQL."""
    if entry["kind"] == "table":
        # The resolved version folder, not the symlink: a build switching the link mid-query
        # must not change the files under a running reader.
        read_table(spark, warehouse, entry).createOrReplaceTempView(name)
    elif entry["kind"] == "view":
        spark.sql(f"CREATE OR REPLACE TEMP VIEW `{name}` AS {entry['sql']}")


def read_table(spark, warehouse: Warehouse, entry: dict):
    """A table's version as the catalog entry names it, with the schema the build kept in the
    entry, so no Parquet footer is read to infer it."""
    return spark.read.schema(table_schema(entry)).parquet(str(warehouse.root / entry["version"]))


def table_schema(entry: dict):
    """The Spark schema a table's catalog entry keeps (partition columns included)."""
    from pyspark.sql.types import StructType

    return StructType.fromJson(json.loads(entry["schema"]))


def empty_frame(spark, schema):
    """No rows, with `schema`: planned by the JVM alone (a frame made from a Python list runs a
    Python worker to read it), and known to be empty, so Spark skips what reads it."""
    from pyspark.sql import functions as F

    return spark.range(0).select(*[F.lit(None).cast(f.dataType).alias(f.name) for f in schema.fields])


def register_warehouse(spark, warehouse: Warehouse) -> list[str]:
    """Register every table and view of the warehouse; returns the names registered."""
    catalog = warehouse.catalog()
    registered = []
    for name, entry in sorted(catalog.items()):
        if entry["kind"] == "table":
            register_relation(spark, name, entry, warehouse)
            registered.append(name)
    views = {n: e for n, e in catalog.items() if e["kind"] == "view"}
    return registered + create_views_in_rounds(
        views, lambda name, entry: register_relation(spark, name, entry, warehouse))


def create_views_in_rounds(views: dict[str, dict], create: Callable[[str, dict], None]) -> list[str]:
    """Views may read other views: `create(name, entry)` each in rounds, until none is left or a
    round adds none (one that reads a view not created yet, or a source, raises and waits for the
    next round). Returns the names created, in order."""
    pending, created = dict(views), []
    while pending:
        added = []
        for name, entry in sorted(pending.items()):
            try:
                create(name, entry)
            except Exception:  # noqa: BLE001 - a view it reads is not there yet
                continue
            added.append(name)
            del pending[name]
        if not added:
            break
        created += added
    return created


def project_session(project_dir: str | Path = ".", target: str | None = None, vars: dict | None = None):
    """A SparkSession with the project's image functions and every built table registered."""
    from .project import load_project
    from .spark_session import create_session

    project = load_project(Path(project_dir), vars)
    chosen = project.target(target)
    spark = create_session(chosen.master, app_name=f"{project.name}-query", settings=chosen.spark)
    register_warehouse(spark, Warehouse.for_target(project, chosen, spark))
    return spark
