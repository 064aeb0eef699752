"""Run a data test: its query returns the failing rows; the count decides pass, warn or fail."""
from __future__ import annotations

from dataclasses import dataclass, field

from .nodes import DataTest
from .status import Status

SHOWN_FAILURES = 5


@dataclass
class TestOutcome:
    status: Status  # PASS, WARN or FAIL
    failures: int
    examples: list[dict] = field(default_factory=list)


def run_test(spark, test: DataTest, sql: str) -> TestOutcome:
    failing = spark.sql(sql)
    # Counted without caching: a pass, the usual outcome, runs one job; a failure runs the query
    # once more for its first rows.
    count = failing.count()
    examples = [_printable(r.asDict()) for r in failing.limit(SHOWN_FAILURES).collect()] if count else []
    if count == 0:
        return TestOutcome(Status.PASS, 0)
    return TestOutcome(Status.WARN if test.severity == "warn" else Status.FAIL, count, examples)


def count_failures_together(failing_rows: list) -> list[int]:
    """The rows of several tests' queries (DataFrames of failing rows), counted in one Spark action:
    tagged by test and counted in one aggregate, one shuffle for all rather than one each."""
    from functools import reduce

    from pyspark.sql import functions as F

    tagged = [rows.select(F.lit(i).alias("test")) for i, rows in enumerate(failing_rows)]
    found = {row["test"]: row["count"]
             for row in reduce(lambda a, b: a.unionAll(b), tagged).groupBy("test").count().collect()}
    return [found.get(i, 0) for i in range(len(failing_rows))]


def _printable(row: dict) -> dict:
    out = {}
    for key, value in row.items():
        if isinstance(value, (bytes, bytearray)):
            value = f"<{len(value)} bytes>"
        out[key] = value if isinstance(value, (int, float, str, type(None))) else str(value)[:80]
    return out
