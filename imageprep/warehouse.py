"""Where built tables live: one folder of Parquet files per version, switched to atomically.

    target/warehouse/
      _catalog.json                       what each name points to now (tables and views)
      _versions/<name>/<version>/*.parquet
      _versions/<name>/<version>/_seen.json  the files its model read through new_rows()
      <name> -> _versions/<name>/<version>  a symlink, so DuckDB or pandas can read the table
      _pending.json                       what a build wrote and has not committed (staging.py)
      _build.lock                         held by the running build (build_lock.py)

A table is written as a new version beside the current one. Outside a build, publishing it
switches the catalog and the symlink at once (each an atomic rename). A build (`begin_build`)
stages what it publishes instead, and `commit_build` makes all of it visible with one write of
the catalog when the build ends well: readers see the tables of the previous build or of the new
one, never a mix. The versions readers may still be on (the current one and the one it replaced:
KEEP_VERSIONS) and the staged ones are kept; other versions of a committed name are removed,
which also clears folders that a failed or killed write left.

The location is a local folder (a plain path) or a URI Spark can write to (`file:///data/wh`,
`hdfs://namenode/wh`, `s3a://bucket/wh`, `gs://...`). A URI's files are read and written through
the file layer (imageprep.files: PyArrow, no JVM needed); the catalog is still switched by a
rename (atomic where the file system's rename is: HDFS, local; on object stores a rename is a
copy). There are no `<name>` symlinks on a URI: readers find the current version in `_catalog.json`.

A table's catalog entry names its version folder, its row count and schema (sessions register the
table without reading a Parquet footer), and its `_seen.json` if it has one. `catalog()` leaves out
table entries that lack these because an older build wrote them in another form: to a build such
a table was never built, so it is built again in full, and readers see it again once it is. Until
then the entry and its files stay where they are.
"""
from __future__ import annotations

import json
import os
import shutil
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from . import files
from .files import StoragePath
from .staging import DROPPED, PENDING_FILE, StagedEntries

CATALOG_FILE = "_catalog.json"
VERSIONS_DIR = "_versions"
SEEN_FILE = "_seen.json"  # in a version folder: the files its model read through new_rows()
KEEP_VERSIONS = 2  # the current one and the one it replaced, which a running reader may still read

# Models built at the same time (--threads) publish through one catalog file: its read-modify-write
# is serialized per location within the process.
_CATALOG_LOCKS: dict[str, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


def _catalog_lock(root) -> threading.RLock:
    with _LOCKS_GUARD:
        return _CATALOG_LOCKS.setdefault(str(root), threading.RLock())


class Warehouse:
    """The versioned tables under one location (a plain path, or a URI: see imageprep.files).

    `spark` (a SparkSession, or a function returning one) is used only for a URI that PyArrow
    cannot open, through Hadoop; `settings`: the target's Spark settings (S3 endpoint and keys).
    """

    def __init__(self, location: str, spark=None, settings: dict[str, Any] | None = None):
        self.root: Path | StoragePath = files.location(location, spark, settings)
        self._staged: StagedEntries | None = None  # set by begin_build()

    @classmethod
    def for_target(cls, project, target, spark=None) -> "Warehouse":
        """The warehouse of a project's target. When a URI needs Hadoop, Spark starts (with the
        target's settings) only when the warehouse is first read or written."""
        location = project.warehouse_for(target)
        if spark is None and files.is_uri(location):
            def spark():
                from .spark_session import create_session

                return create_session(target.master, app_name=project.name, settings=target.spark)
        return cls(location, spark, target.spark)

    @property
    def is_local(self) -> bool:
        return isinstance(self.root, Path)

    # -- catalog ---------------------------------------------------------------------------------
    def begin_build(self) -> "Warehouse":
        """Stage what this warehouse object publishes from now on, until commit_build(). Its own
        catalog() then shows the committed entries with the staged ones on top, including those a
        failed or killed build left pending; other readers keep seeing only committed entries.
        Call it while holding the build lock."""
        self._staged = StagedEntries(self.root / PENDING_FILE)
        return self

    def catalog(self) -> dict[str, dict[str, Any]]:
        """Every name's entry: as committed, or during a build as this build sees it; tables only
        in the form this code writes them (see the module's docstring)."""
        entries = self._committed()
        if self._staged is not None:
            with _catalog_lock(self.root):
                entries = self._staged.over(entries)
        return {name: entry for name, entry in entries.items() if _readable(entry)}

    def _committed(self) -> dict[str, dict[str, Any]]:
        """The catalog of the last committed build, every entry as stored."""
        path = self.root / CATALOG_FILE
        if not path.exists():
            return {}
        return json.loads(path.read_text(encoding="utf-8"))

    def pending(self) -> dict[str, dict[str, Any]]:
        """Entries staged and not committed: this build's, or those a failed build left."""
        if self._staged is not None:
            with _catalog_lock(self.root):
                return dict(self._staged.entries)
        return StagedEntries(self.root / PENDING_FILE).entries

    def _write_catalog(self, catalog: dict[str, dict[str, Any]]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{CATALOG_FILE}.{uuid.uuid4().hex}"
        tmp.write_text(json.dumps(catalog, indent=1, sort_keys=True), encoding="utf-8")
        tmp.replace(self.root / CATALOG_FILE)

    def table_path(self, name: str) -> str | None:
        """The folder (path or URI) of the current version of a table, or None if it was never built."""
        entry = self.catalog().get(name)
        if not entry or entry.get("kind") != "table":
            return None
        return str(self.root / entry["version"])

    # -- writing -----------------------------------------------------------------------------------
    def new_version_folder(self, name: str):
        """A new, empty version folder of a table: a Path, or a StoragePath on a URI warehouse."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        path = self.root / VERSIONS_DIR / name / f"{stamp}-{uuid.uuid4().hex[:8]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def current_version_folder(self, name: str):
        """The folder of a table's current version (a Path or a StoragePath), or None if never built."""
        entry = self.catalog().get(name)
        return self.root / entry["version"] if entry and entry.get("kind") == "table" else None

    def publish_table(self, name: str, version_path: str, rows: int, schema: str,
                      seen: dict[str, list[str]] | None = None, **about: Any) -> None:
        """Make a fully written version the current one (staged during a build). `schema`: its
        Spark schema as JSON. `about`: more to keep in the entry (fingerprints, meta).

        `seen`: the files the model read through new_rows(), per relation. It grows with the data
        (one key per image file), and the catalog is read and rewritten at every publish, so it is
        kept in the version folder (Spark's readers skip names starting with `_`); the catalog
        only names the file."""
        version = self._relative(version_path)
        entry = {"kind": "table", "version": version, "rows": rows, "schema": schema, **about}
        if seen:
            (self.root / version / SEEN_FILE).write_text(json.dumps(seen, sort_keys=True), encoding="utf-8")
            entry["seen"] = SEEN_FILE
        self._publish(name, entry)

    def seen_by(self, entry: dict[str, Any]) -> dict[str, list[str]] | None:
        """The files a table's model had read through new_rows() when it wrote the current version."""
        if "seen" not in entry:
            return None
        path = self.root / entry["version"] / entry["seen"]
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    def publish_view(self, name: str, sql: str, **meta: Any) -> None:
        self._publish(name, {"kind": "view", "sql": sql, **meta})

    def drop(self, name: str) -> None:
        """Remove a name and its versions (when the build commits, during a build)."""
        self._publish(name, {"kind": DROPPED})

    def discard(self, version_path: str) -> None:
        _rmtree(self.root / self._relative(version_path))

    def _relative(self, path: str) -> str:
        """`path` (a version folder, as a string) relative to the root, e.g. `_versions/t/2024...`."""
        if self.is_local:
            return str(Path(path).relative_to(self.root))
        root = str(self.root) + "/"
        if not str(path).startswith(root):
            raise ValueError(f"{path} is not inside the warehouse {self.root}")
        return str(path)[len(root):].strip("/")

    def _publish(self, name: str, entry: dict[str, Any]) -> None:
        entry["published_at"] = time.time()
        with _catalog_lock(self.root):
            if self._staged is None:
                self._commit({name: entry})
                return
            replaced = self._staged.entries.get(name)
            self._staged.record(name, entry)
            if replaced and replaced.get("kind") == "table" and replaced["version"] != entry.get("version"):
                # Staged by an earlier, failed build and written again by this one: no reader
                # has seen it (unless it was committed after all: then it stays).
                if replaced["version"] not in _kept(self._committed().get(name)):
                    _rmtree(self.root / replaced["version"])

    # -- committing --------------------------------------------------------------------------------
    def commit_build(self, names: Iterable[str]) -> list[str]:
        """Make the staged entries of `names` visible together, with one write of the catalog; then
        switch the `<name>` links and remove versions no reader needs. Staged entries of other
        names stay pending. Returns the names committed."""
        if self._staged is None:
            raise RuntimeError("commit_build() needs begin_build() first")
        wanted = set(names)
        with _catalog_lock(self.root):
            changes = {name: entry for name, entry in self._staged.entries.items() if name in wanted}
            if changes:
                self._commit(changes)
            else:  # nothing new; still repair links a build killed while switching them left behind
                self._sync_links(self._committed(), removed=[])
        return sorted(changes)

    def _commit(self, changes: dict[str, dict[str, Any]]) -> None:
        catalog = self._committed()
        for name, entry in changes.items():
            if entry.get("kind") == DROPPED:
                catalog.pop(name, None)
            else:
                catalog[name] = _with_history(entry, catalog.get(name))
        self._write_catalog(catalog)  # the switch: readers see every change from here on
        if self._staged is not None:
            self._staged.forget(changes)
            self._staged.save()
        self._sync_links(catalog, removed=[n for n in changes if catalog.get(n, {}).get("kind") != "table"])
        for name in changes:
            if name in catalog:
                self._clean_versions(name, _kept(catalog[name]))
            else:
                _rmtree(self.root / VERSIONS_DIR / name)

    def _sync_links(self, catalog: dict[str, dict[str, Any]], removed: list[str]) -> None:
        """Point each table's link at its committed version (the links follow the catalog, so a
        build killed between the two is repaired by the next commit)."""
        if not self.is_local:
            return
        for name in removed:
            self._remove_link(name)
        for name, entry in sorted(catalog.items()):
            if entry.get("kind") != "table":
                continue
            link = self.root / name
            if not (link.is_symlink() and os.readlink(link) == entry["version"]):
                self._switch_link(name, Path(entry["version"]))

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

    def _clean_versions(self, name: str, keep: set[str]) -> None:
        """Remove the version folders of `name` that are neither in `keep` nor staged."""
        folder = self.root / VERSIONS_DIR / name
        if not folder.exists():
            return
        staged = self._staged.versions_of(name) if self._staged is not None else \
            StagedEntries(self.root / PENDING_FILE).versions_of(name)
        for path in folder.iterdir():
            if f"{VERSIONS_DIR}/{name}/{path.name}" not in keep | staged and path.is_dir():
                _rmtree(path)


def _readable(entry: dict[str, Any]) -> bool:
    """False for a table entry this code cannot read: one without its schema, or with the files its
    model read through new_rows() kept in the entry instead of in SEEN_FILE."""
    if entry.get("kind") != "table":
        return True
    return "schema" in entry and entry.get("seen", SEEN_FILE) == SEEN_FILE


def _with_history(entry: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    """`entry` as it replaces `old` in the catalog, naming the versions readers may still be on."""
    history = [old["version"], *old.get("previous_versions", [])] if old and old.get("kind") == "table" else []
    history = [v for v in dict.fromkeys(history) if v != entry.get("version")][:KEEP_VERSIONS - 1]
    return {**entry, "previous_versions": history} if history else entry


def _kept(entry: dict[str, Any] | None) -> set[str]:
    """The versions of a committed entry that must stay: its own and those readers may still be on."""
    if not entry:
        return set()
    return {v for v in [entry.get("version"), *entry.get("previous_versions", [])] if v}


def _rmtree(path) -> None:
    if isinstance(path, StoragePath):
        path.rmtree()
    else:
        shutil.rmtree(path, ignore_errors=True)
