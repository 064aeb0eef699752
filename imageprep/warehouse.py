"""Where built tables live: one folder of Parquet files per version, switched to atomically.

    target/warehouse/
      _catalog.json                       what each name points to now (tables, views, sources)
      _versions/<name>/<version>/*.parquet
      <name> -> _versions/<name>/<version>  a symlink, so DuckDB or pandas can read the table

A build writes a new version beside the current one and switches the symlink and the catalog
(each an atomic rename) only after the write succeeded. Readers that resolved the old version
keep reading it: the previous version is kept until the next switch, older ones are removed.
A failed or killed write leaves an unreferenced folder that the next switch removes.
"""
from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

CATALOG_FILE = "_catalog.json"
VERSIONS_DIR = "_versions"
KEEP_VERSIONS = 2  # the current one and the one before, which a running reader may still read


class Warehouse:
    def __init__(self, location: str):
        if "://" in location and not location.startswith("file:"):
            raise NotImplementedError(f"warehouse '{location}': only local folders are supported yet")
        self.root = Path(location.removeprefix("file://").removeprefix("file:"))

    # -- catalog ---------------------------------------------------------------------------------
    def catalog(self) -> dict[str, dict[str, Any]]:
        path = self.root / CATALOG_FILE
        if not path.exists():
            return {}
        return json.loads(path.read_text(encoding="utf-8"))

    def _write_catalog(self, catalog: dict[str, dict[str, Any]]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{CATALOG_FILE}.{uuid.uuid4().hex}"
        tmp.write_text(json.dumps(catalog, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.root / CATALOG_FILE)

    def table_path(self, name: str) -> str | None:
        """The folder of the current version of a table, or None if it was never built."""
        entry = self.catalog().get(name)
        if not entry or entry.get("kind") != "table":
            return None
        return str(self.root / entry["version"])

    # -- writing -----------------------------------------------------------------------------------
    def new_version(self, name: str) -> str:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        path = self.root / VERSIONS_DIR / name / f"{stamp}-{uuid.uuid4().hex[:8]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        return str(path)

    def publish_table(self, name: str, version_path: str, **meta: Any) -> None:
        """Make a fully written version the current one, then drop versions no reader needs."""
        version = Path(version_path).relative_to(self.root)
        self._switch_link(name, version)
        self._update(name, {"kind": "table", "version": str(version), **meta})
        self._clean_versions(name, keep=version)

    def publish_view(self, name: str, sql: str, **meta: Any) -> None:
        self._remove_link(name)
        self._update(name, {"kind": "view", "sql": sql, **meta})

    def publish_source(self, name: str, **meta: Any) -> None:
        self._update(name, {"kind": "source", **meta})

    def discard(self, version_path: str) -> None:
        shutil.rmtree(version_path, ignore_errors=True)

    def _update(self, name: str, entry: dict[str, Any]) -> None:
        catalog = self.catalog()
        entry["published_at"] = time.time()
        catalog[name] = entry
        self._write_catalog(catalog)

    def _switch_link(self, name: str, version: Path) -> None:
        link = self.root / name
        if link.exists() and not link.is_symlink():
            raise RuntimeError(f"{link} is not a table link of this warehouse; move it away")
        tmp = self.root / f".{name}.{uuid.uuid4().hex}"
        os.symlink(version, tmp)
        os.replace(tmp, link)

    def _remove_link(self, name: str) -> None:
        link = self.root / name
        if link.is_symlink():
            link.unlink()

    def _clean_versions(self, name: str, keep: Path) -> None:
        folder = self.root / VERSIONS_DIR / name
        versions = sorted(p for p in folder.iterdir() if p.is_dir())
        current = self.root / keep
        older = [p for p in versions if p != current]
        for stale in older[: max(0, len(older) - (KEEP_VERSIONS - 1))]:
            shutil.rmtree(stale, ignore_errors=True)

    def drop(self, name: str) -> None:
        catalog = self.catalog()
        catalog.pop(name, None)
        self._write_catalog(catalog)
        self._remove_link(name)
        shutil.rmtree(self.root / VERSIONS_DIR / name, ignore_errors=True)
