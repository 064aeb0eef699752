"""tensor_range: the smallest and largest value of float32 tensors, checked against NumPy in Spark."""
from __future__ import annotations

import numpy as np

from udfs.kernels import tensor


def test_tensor_range_matches_numpy_and_flags_nan(spark):
    rng = np.random.default_rng(7)
    tensors = [rng.normal(size=n).astype(np.float32) * 3 for n in (1, 5, 1000)]
    with_nan = tensors[1].copy()
    with_nan[2] = np.nan
    rows = [(i, tensor.to_bytes(t)) for i, t in enumerate(tensors + [with_nan])] + [(4, b""), (5, None)]
    spark.createDataFrame(rows, "id INT, t BINARY").createOrReplaceTempView("tensors")
    got = {r["id"]: r["r"] for r in spark.sql("SELECT id, tensor_range(t) AS r FROM tensors").collect()}
    for i, values in enumerate(tensors):
        assert (got[i]["min"], got[i]["max"]) == (values.min(), values.max())
    assert np.isnan(got[3]["min"]) and np.isnan(got[3]["max"])
    assert got[4] is None and got[5] is None
    # The way data tests use it: a NaN tensor is out of any range.
    flagged = spark.sql("SELECT id FROM tensors WHERE NOT (tensor_range(t).min >= -100 AND tensor_range(t).max <= 100)")
    assert [r["id"] for r in flagged.collect()] == [3]


def test_tensor_range_rejects_bytes_that_are_not_float32(spark):
    import pytest

    spark.createDataFrame([(b"abc",)], "t BINARY").createOrReplaceTempView("odd_tensors")
    with pytest.raises(Exception, match="multiple of 4 bytes"):
        spark.sql("SELECT tensor_range(t) FROM odd_tensors").collect()
