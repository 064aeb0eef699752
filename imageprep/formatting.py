"""Print query results as a table, CSV or JSON, with image and tensor columns kept readable."""
from __future__ import annotations

import base64
import csv
import json
import sys
from datetime import date, datetime
from decimal import Decimal

MAX_CELL = 60


def to_plain(value):
    """A value JSON can hold: bytes as base64, rows as objects, lists as lists."""
    if hasattr(value, "asDict"):
        return {k: to_plain(v) for k, v in value.asDict().items()}
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if hasattr(value, "toArray"):  # Spark ML vectors
        return [float(v) for v in value.toArray()]
    return value


def short(value) -> str:
    """A cell for the terminal: images as `image 224x224x3 RGB`, bytes as their size."""
    if value is None:
        return "NULL"
    if hasattr(value, "asDict"):
        d = value.asDict()
        if {"height", "width", "nChannels", "data"} <= set(d):
            return f"image {d['height']}x{d['width']}x{d['nChannels']} {d.get('mode')}"
        text = "{" + ", ".join(f"{k}: {short(v)}" for k, v in d.items()) + "}"
    elif isinstance(value, (bytes, bytearray)):
        text = f"<{len(value)} bytes>"
    elif isinstance(value, (list, tuple)):
        items = [short(v) for v in value[:6]]
        text = "[" + ", ".join(items) + (f", ... ({len(value)})" if len(value) > 6 else "") + "]"
    elif isinstance(value, float):
        text = f"{value:.6g}"
    elif hasattr(value, "toArray"):
        return short(list(value.toArray()))
    else:
        text = str(value)
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 3] + "..."


def print_rows(columns: list[str], rows, fmt: str, out=None) -> None:
    out = out or sys.stdout
    if fmt == "json":
        for row in rows:
            out.write(json.dumps({c: to_plain(row[i]) for i, c in enumerate(columns)}, ensure_ascii=False) + "\n")
        return
    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([json.dumps(to_plain(v)) if isinstance(to_plain(v), (list, dict)) else
                             ("" if v is None else to_plain(v)) for v in row])
        return
    cells = [[short(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out.write(line + "\n")
    out.write("| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)) + " |\n")
    out.write(line + "\n")
    for r in cells:
        out.write("| " + " | ".join(v.ljust(w) for v, w in zip(r, widths)) + " |\n")
    out.write(line + "\n")
    out.write(f"{len(rows)} row{'s' * (len(rows) != 1)}\n")
