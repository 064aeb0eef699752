"""Files a run leaves in target/: manifest.json, run_results.json, compiled SQL and the log.

Their shapes follow dbt's artifacts where a field means the same thing, so tools that read
dbt's manifest and run results find what they expect.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .nodes import MODEL, SOURCE, TEST, Node, ResourceType
from .status import Status

INVOCATION_ID = str(uuid.uuid4())
LOG_FILE = "runner.log"


def sha256(text: str | None) -> str | None:
    return hashlib.sha256(text.encode("utf-8")).hexdigest() if text is not None else None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


@dataclass
class NodeResult:
    unique_id: str
    name: str
    resource_type: ResourceType
    status: Status
    execution_time: float = 0.0
    rows: int | None = None
    failures: int | None = None
    message: str | None = None
    materialized: str | None = None
    compiled_path: str | None = None
    examples: list[dict] = field(default_factory=list)
    project_error: bool = False  # the user's SQL or project was wrong (exit code 2)


def compiled_path(target_path: Path, project_name: str, node: Node) -> Path:
    """Where a node's executable SQL is written: target/compiled/<project>/<its file>[/<test>].sql"""
    base = target_path / "compiled" / project_name
    if node.resource_type == TEST and node.path.endswith((".yml", ".yaml")):
        return base / node.path / f"{node.name}.sql"
    return base / node.path


def write_compiled(path: Path, sql: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(sql.rstrip() + "\n", encoding="utf-8")


def write_manifest(target_path: Path, project, graph, executable_sql: dict[str, str], target_name: str) -> dict:
    """Write target/manifest.json and return it as written (JSON values), as the next run will read it."""
    nodes, sources = {}, {}
    for uid, node in graph.nodes.items():
        entry: dict[str, Any] = {
            "unique_id": uid, "name": node.name, "resource_type": node.resource_type,
            "original_file_path": node.path, "description": node.description,
            "config": _jsonable(node.config), "tags": list(node.tags), "meta": _jsonable(node.config.get("meta") or {}),
            "depends_on": {"nodes": sorted(graph.parents[uid]),
                           "macros": sorted(getattr(node, "used_macros", []))},
        }
        if node.resource_type == SOURCE:
            entry.update(source_name=node.source_name, format=node.format, location=node.location,
                         relation_name=node.relation)
            sources[uid] = entry
            continue
        raw = getattr(node, "raw_sql", "") or None
        compiled = executable_sql.get(uid)
        entry.update(
            relation_name=node.name if node.resource_type != TEST else None,
            raw_code=raw, compiled_code=compiled,
            checksum={"name": "sha256", "raw": sha256(raw), "compiled": sha256(compiled)},
            compiled_path=str(compiled_path(target_path, project.name, node).relative_to(project.root))
            if compiled is not None else None,
        )
        if node.resource_type == MODEL:
            entry.update(columns=node.columns, vars=_jsonable(node.used_vars))
        if node.resource_type == TEST:
            entry.update(test_metadata={"name": node.test_name, "kwargs": _jsonable(node.kwargs)},
                         column_name=node.column_name, attached_node=node.attached_to)
        nodes[uid] = entry
    manifest = {
        "metadata": {"generated_at": _now(), "invocation_id": INVOCATION_ID, "project_name": project.name,
                     "target": target_name},
        "nodes": nodes, "sources": sources,
        "parent_map": {uid: sorted(p) for uid, p in graph.parents.items()},
        "child_map": {uid: sorted(c) for uid, c in graph.children.items()},
    }
    _write_json(target_path / "manifest.json", manifest)
    return _jsonable(manifest)


def write_run_results(target_path: Path, command: str, results: list[NodeResult], elapsed: float,
                      args: dict | None = None) -> Path:
    payload = {
        "metadata": {"generated_at": _now(), "invocation_id": INVOCATION_ID},
        "command": command, "args": args or {}, "elapsed_time": round(elapsed, 3),
        "results": [{**asdict(r), "execution_time": round(r.execution_time, 3)} for r in results],
    }
    return _write_json(target_path / "run_results.json", payload)


def keep_state(target_path: Path) -> None:
    """Keep this build's manifest as the state `state:modified` compares the next one with."""
    state = target_path / "state"
    state.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(target_path / "manifest.json", state / "manifest.json")


def _write_json(path: Path, payload: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    tmp.replace(path)
    return path


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def open_log(target_path: Path) -> logging.Logger:
    """target/runner.log gets every line printed and every error's full detail."""
    target_path.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger("imageprep")
    logger.setLevel(logging.DEBUG)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    handler = logging.FileHandler(target_path / LOG_FILE, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
    return logger
