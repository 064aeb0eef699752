"""Read built tables with PyArrow, without Spark: columns and types, row counts and samples.

A table is the folder of its current version (from the warehouse's `_catalog.json`). Column
types are Spark's, from the schema Spark stores in every Parquet file's metadata, so the docs
say `int`, `array<double>` or `vector` as Spark SQL does; a file without it (written by another
tool) falls back to Arrow's type names.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

SPARK_SCHEMA_KEY = b"org.apache.spark.sql.parquet.row.metadata"
IMAGE_FIELDS = {"height", "width", "nChannels", "mode", "data"}
_SPARK_NAMES = {"integer": "int", "long": "bigint", "short": "smallint", "byte": "tinyint"}


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool = True


def spark_type(spec) -> str:
    """Spark SQL's name of a type from Spark's JSON schema (`{"type": "array", ...}` -> `array<int>`)."""
    if isinstance(spec, str):
        return _SPARK_NAMES.get(spec, spec)
    kind = spec.get("type")
    if kind == "struct":
        return "struct<" + ", ".join(f"{f['name']}: {spark_type(f['type'])}" for f in spec["fields"]) + ">"
    if kind == "array":
        return f"array<{spark_type(spec['elementType'])}>"
    if kind == "map":
        return f"map<{spark_type(spec['keyType'])}, {spark_type(spec['valueType'])}>"
    if kind == "udt":  # e.g. Spark ML's VectorUDT, which Spark SQL shows as `vector`
        return str(spec.get("class", "udt")).rsplit(".", 1)[-1].removesuffix("UDT").lower()
    return str(kind)


def is_text(arrow_type: pa.DataType) -> bool:
    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)


def is_image_type(arrow_type: pa.DataType) -> bool:
    """A struct with the image fields (height, width, nChannels, mode, data), ours or Spark's."""
    return pa.types.is_struct(arrow_type) and IMAGE_FIELDS <= {arrow_type.field(i).name
                                                               for i in range(arrow_type.num_fields)}


class StoredTable:
    """One version folder of Parquet files (hive-style partition folders included)."""

    def __init__(self, name: str, folder: str, filesystem=None):
        self.name = name
        self.dataset = ds.dataset(folder, format="parquet", partitioning="hive", filesystem=filesystem)

    @cached_property
    def schema(self) -> pa.Schema:
        return self.dataset.schema

    @cached_property
    def row_count(self) -> int:
        return self.dataset.count_rows()  # from the Parquet footers, no data read

    @cached_property
    def columns(self) -> list[Column]:
        spark_fields = {}
        metadata = self.schema.metadata or {}
        if SPARK_SCHEMA_KEY in metadata:
            try:
                spark_fields = {f["name"]: f for f in json.loads(metadata[SPARK_SCHEMA_KEY])["fields"]}
            except (ValueError, KeyError, TypeError):
                spark_fields = {}
        columns = []
        for field in self.schema:
            spark = spark_fields.get(field.name)
            if spark is not None:
                columns.append(Column(field.name, spark_type(spark["type"]), bool(spark.get("nullable", True))))
            else:
                columns.append(Column(field.name, str(field.type), field.nullable))
        return columns

    def has(self, name: str, check=None) -> bool:
        index = self.schema.get_field_index(name)
        return index >= 0 and (check is None or check(self.schema.field(index).type))

    @property
    def image_columns(self) -> list[str]:
        return [f.name for f in self.schema if is_image_type(f.type)]

    def value_counts(self, column: str) -> list[tuple[str | None, int]]:
        """(value, rows) of a column over the whole table, in value order, NULL last."""
        counts = pc.value_counts(self.dataset.to_table(columns=[column]).column(column)).to_pylist()
        return sorted(((c["values"], c["counts"]) for c in counts), key=lambda vc: (vc[0] is None, str(vc[0])))

    def mean_histogram(self, column: str) -> np.ndarray | None:
        """The mean of every row's histogram, each normalized to fractions per channel: (channels, bins).

        The histogram is `color_histogram`'s concatenation R, G, B (3 channels when its length divides
        by 3, else 4, else 1). None when the table has no non-null rows or the lengths differ."""
        values = self.dataset.to_table(columns=[column]).column(column).combine_chunks().drop_null()
        if len(values) == 0:
            return None
        lengths = pc.list_value_length(values).to_numpy(zero_copy_only=False)
        length = int(lengths[0])
        if length == 0 or (lengths != length).any():
            return None
        flat = values.flatten().fill_null(0).to_numpy(zero_copy_only=False).astype(np.float64)
        channels = 3 if length % 3 == 0 else 4 if length % 4 == 0 else 1
        rows = flat.reshape(len(values), channels, length // channels)
        sums = rows.sum(axis=2, keepdims=True)
        fractions = np.divide(rows, sums, out=np.zeros_like(rows), where=sums > 0)
        return fractions.mean(axis=0)

    def sample(self, columns: list[str], non_null: str, n: int) -> pa.Table:
        """The first `n` rows with `non_null` set, in order of `path` then the other scalar columns.

        Only the keys are read for the whole table; the wide columns are read for the chosen paths
        (Parquet statistics skip row groups that cannot hold them). A table without `path` gives its
        first rows in file order."""
        valid = pc.field(non_null).is_valid()
        keys = [f.name for f in self.schema if is_text(f.type) or pa.types.is_integer(f.type)]
        if "path" not in keys:
            return self.dataset.head(n, columns=columns, filter=valid)
        keys.remove("path")
        keys.insert(0, "path")
        order = [(k, "ascending") for k in keys]
        first = self.dataset.to_table(columns=keys, filter=valid).sort_by(order).slice(0, n)
        paths = [p for p in first.column("path").to_pylist() if p is not None]
        chosen = pc.field("path").isin(paths)
        if len(paths) < first.num_rows:
            chosen = chosen | pc.field("path").is_null()
        wanted = list(dict.fromkeys([*keys, *columns]))
        rows = self.dataset.to_table(columns=wanted, filter=valid & chosen).sort_by(order).slice(0, n)
        return rows.select(columns)

    def read(self, columns: list[str], limit: int | None = None) -> pa.Table:
        if limit is not None:
            return self.dataset.head(limit, columns=columns)
        return self.dataset.to_table(columns=columns)
