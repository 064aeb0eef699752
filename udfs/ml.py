"""Bridge to Spark ML: turn an array column into the vector type `pyspark.ml` estimators take.

PySpark has `pyspark.ml.functions.array_to_vector` for DataFrames only; registering it here makes it
callable from SQL models. Feature vectors are small (tens to hundreds of values), so a row-at-a-time
Arrow UDF is plenty.
"""
from __future__ import annotations


def array_to_vector(values):
    """A dense ML vector of the array's values (NULL stays NULL)."""
    from pyspark.ml.linalg import DenseVector

    return None if values is None else DenseVector([float(v) for v in values])
