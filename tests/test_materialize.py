"""Materializations on their own: what each makes of a model's query, and what its table's
catalog entry keeps."""
import json

import pytest
from pyspark.sql.types import StructType

from imageprep.materialize import materialize_model
from imageprep.nodes import MODEL, Model
from imageprep.warehouse import Warehouse

QUERY = "select id, 'x' as tag from range(3) as t(id)"


def model(name: str, **config) -> Model:
    return Model(unique_id=f"model.demo.{name}", name=name, resource_type=MODEL, path=f"models/{name}.sql",
                 config=config)


@pytest.fixture(autouse=True)
def drop_new_views(spark):
    """Materializing registers each model by name in the shared session: drop those views after."""
    before = {table.name for table in spark.catalog.listTables() if table.isTemporary}
    yield
    for table in spark.catalog.listTables():
        if table.isTemporary and table.name not in before:
            spark.catalog.dropTempView(table.name)


@pytest.fixture
def query_runs(spark, monkeypatch):
    """How many times each materialization passed QUERY to spark.sql."""
    calls = []
    real = spark.sql

    def spy(text, *args, **kwargs):
        calls.append(QUERY in text)
        return real(text, *args, **kwargs)

    def runs_since_last_asked() -> int:
        count = sum(calls)
        calls.clear()
        return count

    monkeypatch.setattr(spark, "sql", spy)
    return runs_since_last_asked


@pytest.mark.parametrize("materialized, incremental, rows", [
    ("ephemeral", False, None), ("view", False, None), ("table", False, 3),
    ("incremental", False, 3), ("incremental", True, 6),
])
def test_each_materialization_runs_the_query_through_spark_sql_once(spark, tmp_path, query_runs,
                                                                    materialized, incremental, rows):
    warehouse = Warehouse(tmp_path / "warehouse")
    node = model(f"m_{materialized}_{incremental}".lower(), materialized=materialized)
    if incremental:  # adds to the table a first build wrote
        materialize_model(spark, node, QUERY, warehouse)
        query_runs()
    written = materialize_model(spark, node, QUERY, warehouse, fingerprint="f", incremental=incremental)
    assert query_runs() == (0 if materialized == "ephemeral" else 1)
    assert written.rows == rows
    if rows is not None:
        assert spark.table(node.name).count() == rows


def test_a_tables_entry_keeps_its_rows_schema_fingerprints_and_meta(spark, tmp_path):
    warehouse = Warehouse(tmp_path / "warehouse")
    node = model("t", materialized="table", meta={"owner": "data"})
    seen = {"upstream": ["part-0.parquet"]}
    materialize_model(spark, node, QUERY, warehouse, fingerprint="f", logic="l", seen=seen)
    entry = warehouse.catalog()["t"]
    assert (entry["kind"], entry["rows"], entry["fingerprint"], entry["logic"]) == ("table", 3, "f", "l")
    assert entry["meta"] == {"owner": "data"}
    assert StructType.fromJson(json.loads(entry["schema"])).fieldNames() == ["id", "tag"]
    assert warehouse.seen_by(entry) == seen
    plain = model("plain", materialized="table")
    materialize_model(spark, plain, QUERY, warehouse)
    assert "meta" not in warehouse.catalog()["plain"] and "seen" not in warehouse.catalog()["plain"]
