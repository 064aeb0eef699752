"""How a table's stored uint8 images become the model's tensors: recorded with the table.

Training tables hold images, not float32 tensors (a quarter of the bytes); the tensor is made
where it is used. A model says how in its config, as dbt's `meta`:

    {{ config(meta={'normalization': {'column': 'image', 'method': 'imagenet', 'layout': 'CHW'}}) }}

The runner completes that record from the image functions' own definition
(`udfs.kernels.normalize.describe`: mean and std per channel on the 0..1 scale, layout, channel
order, dtype, formula) when it reads the model, and keeps it in three places, so every reader
finds it: the model's entry in `manifest.json` (`meta`), the table's entry in the warehouse
catalog (`meta`), and the Parquet files themselves, as the metadata of the image column in the
schema Spark writes into each file's key-value metadata
(`org.apache.spark.sql.parquet.row.metadata`). `imageprep.training` reads it to normalize
batches exactly as SQL's `normalize(image, method)` does.
"""
from __future__ import annotations

import json
from typing import Any

from .errors import ProjectError

KEY = "normalization"
SPARK_SCHEMA_KEY = b"org.apache.spark.sql.parquet.row.metadata"
_GIVEN = {"column", "method", "mean", "std", "layout"}


def complete_meta(meta: Any, model_name: str, path: str | None = None) -> Any:
    """`meta` with its `normalization` record checked and completed; other keys as they are."""
    if not isinstance(meta, dict) or KEY not in meta:
        return meta
    given = meta[KEY]
    if not isinstance(given, dict) or not isinstance(given.get("column"), str) or not given.get("method"):
        raise ProjectError(f"meta.normalization of '{model_name}' must name the image column and the method, "
                           f"e.g. {{'column': 'image', 'method': 'imagenet'}}; got {given!r}", path=path)
    from udfs.kernels.normalize import describe

    try:
        spec = describe(given["method"], given.get("mean"), given.get("std"), given.get("layout", "CHW"))
    except ValueError as exc:
        raise ProjectError(f"meta.normalization of '{model_name}': {exc}", path=path) from None
    return {**meta, KEY: {"column": given["column"], **spec,
                          **{k: v for k, v in given.items() if k not in _GIVEN and k not in spec}}}


def of_model(config: dict) -> dict | None:
    """The completed normalization record of a model's config, or None."""
    meta = config.get("meta")
    return meta.get(KEY) if isinstance(meta, dict) else None


def annotate(frame, config: dict):
    """`frame` with the normalization record as the Spark metadata of its image column, so that
    Spark writes it into every Parquet file's schema. Unchanged when there is none."""
    spec = of_model(config)
    if spec is None:
        return frame
    column = spec["column"]
    if column not in frame.columns:
        raise ProjectError(f"meta.normalization names column '{column}', which the query does not return; "
                           f"it returns {', '.join(frame.columns)}")
    return frame.withMetadata(column, {KEY: spec})


def from_parquet_schema(key_value_metadata: dict | None, column: str) -> dict | None:
    """The record a Parquet file carries for `column`, from Spark's schema in its key-value metadata."""
    raw = (key_value_metadata or {}).get(SPARK_SCHEMA_KEY)
    if raw is None:
        return None
    for field in json.loads(raw).get("fields", []):
        if field.get("name") == column:
            return (field.get("metadata") or {}).get(KEY)
    return None
