"""Arguments of an Arrow UDF call, one Python value per row, parsed once per batch.

Spark hands an Arrow UDF each SQL argument as a ``pyarrow.Array`` of the batch's length,
even a literal like ``'bilinear'``; an argument the query left out arrives as the
Python default of the wrapper instead (that is how SQL default arguments work for
Python UDFs). :func:`per_row` hides the difference and parses each *distinct* value
once, so an ``ops`` spec or an interpolation name costs one parse per batch, not one
per row.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa


def per_row(value: Any, n: int, parse: Callable[[Any], Any] | None = None) -> list:
    """``n`` values, row by row: an Arrow array's values, or a Python default repeated.

    With ``parse``, each distinct value (``None`` included) is parsed once and the
    result reused; ``parse`` raising ``ValueError`` fails the batch, which is what a bad
    SQL argument should do.
    """
    if isinstance(value, pa.ChunkedArray):
        value = value.combine_chunks()
    if not isinstance(value, pa.Array):
        return [parse(value) if parse else value] * n
    if len(value) != n:
        raise ValueError(f"argument has {len(value)} rows, the batch has {n}")
    values = value.to_pylist()
    if parse is None:
        return values
    parsed: dict = {}
    out = []
    for v in values:
        key = tuple(v) if isinstance(v, list) else v
        if key not in parsed:
            parsed[key] = parse(v)
        out.append(parsed[key])
    return out

