"""Fingerprints: a hash of everything that decides a node's result, so an unchanged node is skipped.

A model's fingerprint covers its executable SQL (rendered, ephemeral CTEs injected), its config,
the values of the vars and the source of the macros it uses, the code of the image functions
its SQL calls (and the Pillow/NumPy versions they run on), and the fingerprints of its parents.
A source of files is fingerprinted by its listing (path, size, modification time); a seed by its
bytes. A change anywhere upstream therefore changes exactly the fingerprints it reaches.
A node whose inputs cannot be fingerprinted (a source naming a table outside the project) gets
None and is always rebuilt.
"""
from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from .errors import ProjectError
from .nodes import MODEL, SEED, SOURCE, TEST

FORMAT_VERSION = "1"  # bump when what a fingerprint covers changes


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode("utf-8")).hexdigest()


@lru_cache(maxsize=1)
def function_fingerprints() -> dict[str, str]:
    """Image function name -> hash of the code it runs and the image libraries' versions."""
    import numpy
    import PIL

    import udfs

    versions = {"pillow": PIL.__version__, "numpy": numpy.__version__}
    result = {}
    for spec in udfs.FUNCTIONS:
        code = {str(path.name): hashlib.sha256(path.read_bytes()).hexdigest()
                for path in udfs.function_source_files(spec.name)}
        result[spec.name] = _digest({"signature": spec.signature, "code": code, "body": spec.sql_body,
                                     "versions": versions})
    return result


def functions_called(sql: str) -> list[str]:
    """The image functions a SQL text calls, by name."""
    known = function_fingerprints()
    return sorted({name for name in re.findall(r"\b([a-z_][a-z0-9_]*)\s*\(", sql.lower()) if name in known})


def compute(graph, project, executable: dict[str, str], macro_sources: dict[str, str],
            list_source: Callable, logic: dict[str, str] | None = None) -> dict[str, str | None]:
    """Fingerprint every node, parents first. `list_source(source)` gives its file listing or None.

    `logic`, when given, receives each node's fingerprint without the files of its sources: what it
    computes, and how everything upstream of it is computed, apart from which files there are. An
    incremental model whose logic changed is rebuilt in full, since the rows it holds were made the
    old way (e.g. images resized to another image_size upstream).
    """
    logic = {} if logic is None else logic
    functions = function_fingerprints()
    prints: dict[str, str | None] = {}
    for uid in graph.order:
        node = graph.nodes[uid]
        parents = sorted(graph.parents[uid])
        parent_prints = {p: prints.get(p) for p in parents}
        if any(v is None for v in parent_prints.values()):
            prints[uid] = None
            continue
        if node.resource_type == SOURCE:
            listing = list_source(node)
            where = {"v": FORMAT_VERSION, "format": node.format, "location": node.location, "options": node.options}
            prints[uid] = None if listing is None else _digest({**where, "files": listing})
            logic[uid] = _digest(where)
        elif node.resource_type == SEED:
            data = (project.root / node.path).read_bytes()
            shape = {"v": FORMAT_VERSION, "config": node.config, "types": node.column_types}
            prints[uid] = _digest({**shape, "seed": hashlib.sha256(data).hexdigest()})
            logic[uid] = _digest(shape)  # a seed's rows are data, like a source's files
        elif node.resource_type in (MODEL, TEST):
            sql = executable.get(uid, "")
            used_macros = getattr(node, "used_macros", [])
            own = {
                "v": FORMAT_VERSION, "sql": sql, "config": _stable_config(node.config),
                "vars": getattr(node, "used_vars", {}),
                "macros": {m: macro_sources.get(m) for m in used_macros},
                "functions": {f: functions[f] for f in functions_called(sql)},
            }
            prints[uid] = _digest({**own, "parents": parent_prints})
            logic[uid] = _digest({**own, "parents": {p: logic.get(p) for p in parents}})
    return prints


def _stable_config(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in ("description", "docs", "meta")}


def listing_of(spark, source, listings: dict | None = None) -> list | None:
    """(path, size, mtime) of a source's files, or None where a listing cannot stand for the data.

    `listings`: where an image folder's listing is kept for the rest of the build (by relation),
    so every node reads the files this fingerprint was made from."""
    from .files import to_uri
    from .sources import list_files, list_image_folder

    if source.format == "table" or not source.location:
        return None
    if source.format == "images":
        try:
            listing = list_image_folder(spark, source)
        except ProjectError:
            return None  # the node that reads the folder reports it
        if listings is not None:
            listings[source.relation] = listing
    else:
        listing = list_files(spark, to_uri(source.location), True)
        if listing is None:
            return None
    return [list(f.key) for f in listing.files]


def macro_sources(renderer) -> dict[str, str]:
    """Macro name -> the text of the file that defines it (a change anywhere in the file counts)."""
    return {name: renderer.sources.get(shown, "") for name, shown in renderer.macro_names.items()}


class TestState:
    """Fingerprints and outcomes of tests that passed, kept beside the tables they checked; with the
    files each read through new_rows(), so the next run checks only rows it has not seen."""

    FILE = "_test_state.json"

    def __init__(self, warehouse_root: Path):
        # A local folder, or a warehouse's StoragePath when the warehouse is a URI (same methods).
        self.path = (warehouse_root if hasattr(warehouse_root, "iterdir") else Path(warehouse_root)) / self.FILE
        self.data: dict[str, dict] = json.loads(self.path.read_text()) if self.path.exists() else {}

    def passed_with(self, uid: str, fingerprint: str | None) -> bool:
        entry = self.data.get(uid)
        return bool(fingerprint) and entry is not None and entry["fingerprint"] == fingerprint

    def seen_when_passed(self, uid: str, logic: str | None) -> dict[str, list[str]] | None:
        """The files a test read when it last passed, if it checked the same way then."""
        entry = self.data.get(uid)
        if not logic or entry is None or entry.get("logic") != logic:
            return None
        return entry.get("seen")

    def record(self, uid: str, fingerprint: str | None, status: str, logic: str | None = None,
               seen: dict[str, list[str]] | None = None) -> None:
        if fingerprint and status == "pass":
            self.data[uid] = {"fingerprint": fingerprint, "logic": logic, "seen": seen or {}}
        else:
            self.data.pop(uid, None)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True))
        tmp.replace(self.path)
