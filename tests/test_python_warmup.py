"""The job that starts a local session's Python workers ahead of a build's first Python function."""
from __future__ import annotations

import pytest

from imageprep import python_warmup


@pytest.mark.parametrize("sql, calls", [
    ("select prepare_image(s.content, s.path, 224, 224) from s", True),
    ("SELECT Decode_Image (content, path) AS image FROM f", True),           # any case, a space before (
    ("select hamming(a.phash, b.phash) as d from a join b", False),          # a SQL-bodied function
    ("select resize_mode, decode_image_errors from t", False),               # names, not calls
    ("select count(*) from stg_images", False),
])
def test_a_build_calls_a_python_function_only_where_its_sql_does(sql, calls):
    assert python_warmup.calls_python_function([None, "select 1", sql]) is calls


def test_the_warmup_query_runs_one_decode_per_worker_on_the_catalogs_function(spark):
    """The warm-up swallows its errors (it is only a head start), so a call that no longer matches
    the catalog's function would silently start nothing: run it here."""
    rows = spark.sql(python_warmup.warmup_sql(2)).collect()
    assert [row.width for row in rows] == [16, 16]
    assert spark.sql(python_warmup.warmup_sql(2)).rdd.getNumPartitions() == 2


def test_the_workers_of_a_session_are_started_once_and_only_for_python_functions(spark, monkeypatch):
    monkeypatch.setattr(python_warmup, "_started_for", set())
    assert python_warmup.start(spark, ["select count(*) from t"]) is None
    warmup = python_warmup.start(spark, ["select decode_image(content, path) from f"])
    assert warmup is not None
    warmup.close()
    assert python_warmup._started_for == {spark.sparkContext.applicationId}
    assert python_warmup.start(spark, ["select decode_image(content, path) from f"]) is None
