"""Spark's floor for a build: the least any build of a project's nodes costs on Spark.

    python bench/spark_floor.py PROJECT_DIR --vars '{"images_path": "/data/images"}'

On a project that has been built, in one fresh process, the way the runner starts a build:
start Spark with the target's settings and the image functions, register the built tables, list
the image folders (how a build learns which files are new), then

- for each model, one Spark job that writes `--rows` rows of its table (from its smallest file)
  to a scratch Parquet folder. That is less than any build of the model does: nothing is decoded,
  joined or merged, and no earlier version is read;
- one query that counts the rows of one small file of every table at once, which is less than
  running the data tests: a test reads at least the new rows of its table, and here all of them
  share one job.

With `--queries`, after those: each model's own compiled SQL, once, over the rows its last build
read as new (the new_rows() views of the files it had not seen before that build), written to a
scratch folder, in build order. That is each model's query with none of the runner's bookkeeping
around it (no merge, no delete_where, no key lookups, no second action): what running the
project's SQL costs at least, beside what the runner's nodes cost in the build.

It prints the seconds of each part, and their sum, as one line of JSON. A build of the same nodes
cannot cost less than that sum, whatever the runner does between Spark jobs. bench/incremental.py
runs it after the +N build and sets the floor beside that build and the full build.
"""
from __future__ import annotations

import argparse
import functools
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def smallest_file(spark, warehouse, name: str):
    """The rows of a built table's smallest Parquet file, read with the table's schema."""
    from imageprep.table_writer import data_files

    version = warehouse.current_version_folder(name)
    smallest = min(data_files(version), key=lambda f: (version / f).stat().st_size)
    return (spark.read.schema(spark.table(name).schema).option("basePath", str(version))
            .parquet(str(version / smallest)))


def each_query_once(spark, project, target, warehouse) -> dict[str, float]:
    """Seconds of each model's compiled SQL, run once over the rows its last build read as new and
    written to a scratch folder, in build order."""
    from imageprep import new_rows
    from imageprep.tasks import compile_project

    compiled = compile_project(project, target, warehouse)
    catalog = warehouse.catalog()
    sources = compiled.sources_by_relation
    scratch = Path(tempfile.mkdtemp(prefix="spark-floor-queries-"))
    each = {}
    for uid in compiled.graph.order:
        model = compiled.graph.nodes[uid]
        entry = catalog.get(getattr(model, "name", ""))
        if model.resource_type != "model" or entry is None or entry.get("kind") != "table":
            continue
        one = time.perf_counter()
        # What the model had seen before its last build: its previous version's _seen.json.
        previous = entry.get("previous_versions", [])
        seen = warehouse.seen_by({"version": previous[0], "seen": entry["seen"]}) if previous and "seen" in entry else None
        new_rows.register(spark, warehouse, model, seen, sources)
        spark.sql(compiled.executable_sql[uid]).write.parquet(str(scratch / model.name))
        new_rows.drop(spark, model)
        each[model.name] = round(time.perf_counter() - one, 3)
    shutil.rmtree(scratch)
    return each


def main() -> None:
    started = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("project_dir", type=Path)
    parser.add_argument("--vars", default="{}", help="the vars the project was built with (JSON)")
    parser.add_argument("--rows", type=int, default=20, help="rows each model's job writes (default 20)")
    parser.add_argument("--queries", action="store_true",
                        help="also run each model's compiled query once over its last build's new rows")
    args = parser.parse_args()

    from imageprep.catalog import register_warehouse
    from imageprep.fingerprint import listing_of
    from imageprep.project import load_project
    from imageprep.render import Renderer
    from imageprep.spark_session import create_session
    from imageprep.warehouse import Warehouse

    project = load_project(args.project_dir, json.loads(args.vars))
    target = project.target(None)
    Renderer(project, target.name, set()).render_sources()  # their locations may use var()
    spark = create_session(target.master, app_name=f"{project.name}-floor", settings=target.spark)
    figures = {"startup": time.perf_counter() - started}

    step = time.perf_counter()
    warehouse = Warehouse(project.warehouse_for(target), spark)
    tables = register_warehouse(spark, warehouse)
    files = sum(len(listing_of(spark, source) or []) for source in project.sources.values())
    smallest = {name: smallest_file(spark, warehouse, name) for name in tables}  # read by both steps below
    figures["register_and_list"] = time.perf_counter() - step

    model_names = {m.name for m in project.models.values()}
    models = [name for name in tables if name in model_names]
    scratch = Path(tempfile.mkdtemp(prefix="spark-floor-"))
    step = time.perf_counter()
    each = {}
    for name in models:
        one = time.perf_counter()
        smallest[name].limit(args.rows).write.parquet(str(scratch / name))
        each[name] = round(time.perf_counter() - one, 3)
    figures["model_writes"] = time.perf_counter() - step
    shutil.rmtree(scratch)

    step = time.perf_counter()
    counts = [smallest[name].groupBy().count() for name in tables]
    functools.reduce(lambda a, b: a.unionAll(b), counts).collect()
    figures["one_query_for_tests"] = time.perf_counter() - step

    figures["total"] = time.perf_counter() - started
    if args.queries:
        step = time.perf_counter()
        figures["each_model_query"] = each_query_once(spark, project, target, warehouse)
        figures["queries"] = time.perf_counter() - step
    figures.update(models=len(models), tables=len(tables), files_listed=files, each_model_write=each)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
