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

The location is a local folder (a plain path) or any Hadoop file-system URI Spark can write to
(`file:///data/wh`, `hdfs://namenode/wh`, `s3a://bucket/wh`, `abfss://...`, `gs://...`). A URI's
files are read and written through the Hadoop FileSystem API of the SparkSession's JVM, with the
session's Hadoop configuration (credentials, endpoints); the catalog is still switched by a rename
(atomic where the file system's rename is: HDFS, local; on object stores a rename is a copy).
There are no `<name>` symlinks on a URI: readers find the current version in `_catalog.json`.

A table's catalog entry names its version folder, its row count and schema (sessions register the
table without reading a Parquet footer), and its `_seen.json` if it has one. `catalog()` leaves out
table entries that lack these because an older build wrote them in another form: to a build such
a table was never built, so it is built again in full, and readers see it again once it is. Until
then the entry and its files stay where they are.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterable, Iterator

from .staging import DROPPED, PENDING_FILE, StagedEntries

CATALOG_FILE = "_catalog.json"
VERSIONS_DIR = "_versions"
SEEN_FILE = "_seen.json"  # in a version folder: the files its model read through new_rows()
KEEP_VERSIONS = 2  # the current one and the one it replaced, which a running reader may still read

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
# Models built at the same time (--threads) publish through one catalog file: its read-modify-write
# is serialized per location within the process.
_CATALOG_LOCKS: dict[str, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


def _catalog_lock(root) -> threading.RLock:
    with _LOCKS_GUARD:
        return _CATALOG_LOCKS.setdefault(str(root), threading.RLock())


def is_uri(location: str) -> bool:
    """True for `scheme:...` locations (file:, hdfs:, s3a:, ...), False for plain paths."""
    return bool(_SCHEME.match(location)) and not re.match(r"^[A-Za-z]:[\\/]", location)  # not C:\


class Warehouse:
    """The versioned tables under one location; `spark` is needed only for a URI location.

    `spark` may be a SparkSession or a function returning one, called the first time a URI's
    files are touched (so a command that never reads the warehouse starts no Spark).
    """

    def __init__(self, location: str, spark=None):
        location = str(location)
        if is_uri(location):
            self.root: Path | HadoopPath = HadoopPath(location.rstrip("/") or location, HadoopFiles(spark))
        else:
            self.root = Path(location)
        self._staged: StagedEntries | None = None  # set by begin_build()

    @classmethod
    def for_target(cls, project, target, spark=None) -> "Warehouse":
        """The warehouse of a project's target; for a URI, Spark starts (with the target's
        master and settings) only when the warehouse is first read or written."""
        location = project.warehouse_for(target)
        if spark is None and is_uri(location):
            def spark():
                from .spark_session import create_session

                return create_session(target.master, app_name=project.name, settings=target.spark)
        return cls(location, spark)

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
        """A new, empty version folder of a table: a Path, or a HadoopPath on a URI warehouse."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        path = self.root / VERSIONS_DIR / name / f"{stamp}-{uuid.uuid4().hex[:8]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def current_version_folder(self, name: str):
        """The folder of a table's current version (a Path or a HadoopPath), or None if never built."""
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
    if isinstance(path, HadoopPath):
        path.rmtree()
    else:
        shutil.rmtree(path, ignore_errors=True)


# -- Hadoop file systems -----------------------------------------------------------------------------


class HadoopFiles:
    """The Hadoop FileSystem API of a SparkSession's JVM, for the few operations a warehouse needs."""

    def __init__(self, spark=None):
        self._spark = spark

    def session(self):
        spark = self._spark
        if callable(spark):  # a function that starts the session
            spark = self._spark = spark()
        if spark is None:
            from pyspark.sql import SparkSession

            spark = SparkSession.getActiveSession()
        if spark is None:
            from .errors import ProjectError

            raise ProjectError("the warehouse is a Hadoop file-system URI: reading it needs a SparkSession "
                               "(pass spark= to Warehouse, or start one first)")
        return spark

    def _jvm_path(self, uri: str):
        spark = self.session()
        jpath = spark._jvm.org.apache.hadoop.fs.Path(uri)
        return spark, jpath, jpath.getFileSystem(spark._jsc.hadoopConfiguration())

    def exists(self, uri: str) -> bool:
        _, path, fs = self._jvm_path(uri)
        return bool(fs.exists(path))

    def is_dir(self, uri: str) -> bool:
        _, path, fs = self._jvm_path(uri)
        return bool(fs.exists(path) and fs.getFileStatus(path).isDirectory())

    def list(self, uri: str) -> list[str]:
        """Names of the entries of a folder (not recursive)."""
        _, path, fs = self._jvm_path(uri)
        if not fs.exists(path):
            raise FileNotFoundError(uri)
        return [status.getPath().getName() for status in fs.listStatus(path)]

    def mkdirs(self, uri: str) -> None:
        _, path, fs = self._jvm_path(uri)
        fs.mkdirs(path)

    def size(self, uri: str) -> int:
        _, path, fs = self._jvm_path(uri)
        return int(fs.getFileStatus(path).getLen())

    def read_bytes(self, uri: str) -> bytes:
        spark, path, fs = self._jvm_path(uri)
        stream = fs.open(path)
        try:
            return bytes(spark._jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
        finally:
            stream.close()

    def write_bytes(self, uri: str, data: bytes) -> None:
        _, path, fs = self._jvm_path(uri)
        out = fs.create(path, True)
        try:
            out.write(bytearray(data))
        finally:
            out.close()

    def create_new(self, uri: str, data: bytes) -> bool:
        """Write a file that must not exist yet; False if it does. Atomic where the file system's
        create is (HDFS); on object stores and the local file system the check comes first."""
        _, path, fs = self._jvm_path(uri)
        try:
            out = fs.create(path, False)
        except Exception as exc:  # py4j's error names the Java exception
            if "FileAlreadyExistsException" in str(exc):
                return False
            raise
        try:
            out.write(bytearray(data))
        finally:
            out.close()
        return True

    def modified_at(self, uri: str) -> float:
        """Seconds since the epoch, by the file system's clock."""
        _, path, fs = self._jvm_path(uri)
        return fs.getFileStatus(path).getModificationTime() / 1000

    def rename_over(self, source: str, dest: str) -> None:
        """Rename, replacing `dest`: one atomic rename where the file system has one (FileContext's
        rename with OVERWRITE: HDFS, local), else delete then rename."""
        spark, src, fs = self._jvm_path(source)
        jvm = spark._jvm
        dst = jvm.org.apache.hadoop.fs.Path(dest)
        try:
            context = jvm.org.apache.hadoop.fs.FileContext.getFileContext(src.toUri(), spark._jsc.hadoopConfiguration())
            options = spark.sparkContext._gateway.new_array(jvm.org.apache.hadoop.fs.Options.Rename, 1)
            options[0] = jvm.org.apache.hadoop.fs.Options.Rename.OVERWRITE
            context.rename(src, dst, options)
            return
        except Exception as exc:  # no AbstractFileSystem for the scheme, or an unsupported rename
            if "UnsupportedFileSystemException" not in str(exc) and "UnsupportedOperationException" not in str(exc):
                raise
        fs.delete(dst, False)
        if not fs.rename(src, dst):
            raise OSError(f"could not rename {source} to {dest}")

    def delete(self, uri: str) -> None:
        _, path, fs = self._jvm_path(uri)
        fs.delete(path, True)

    def copy(self, source: str, dest: str) -> None:
        """Copy one file (object stores have no hard links: a kept file is copied into a new version)."""
        spark, src, fs = self._jvm_path(source)
        _, dst, dest_fs = self._jvm_path(dest)
        spark._jvm.org.apache.hadoop.fs.FileUtil.copy(fs, src, dest_fs, dst, False, spark._jsc.hadoopConfiguration())


class HadoopPath:
    """A file or folder on a Hadoop file system, with the part of pathlib's API the warehouse uses."""

    def __init__(self, uri: str, files: HadoopFiles):
        self.uri, self.files = uri, files

    def __str__(self) -> str:
        return self.uri

    def __repr__(self) -> str:
        return f"HadoopPath({self.uri!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, HadoopPath) and other.uri == self.uri

    def __hash__(self) -> int:
        return hash(self.uri)

    def __truediv__(self, part) -> "HadoopPath":
        return HadoopPath(f"{self.uri.rstrip('/')}/{str(part).strip('/')}", self.files)

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]

    @property
    def parent(self) -> "HadoopPath":
        return HadoopPath(self.uri.rstrip("/").rsplit("/", 1)[0], self.files)

    def with_suffix(self, suffix: str) -> "HadoopPath":
        stem = self.name.rsplit(".", 1)[0] if "." in self.name.lstrip(".") else self.name
        return self.parent / (stem + suffix)

    def exists(self) -> bool:
        return self.files.exists(self.uri)

    def is_dir(self) -> bool:
        return self.files.is_dir(self.uri)

    def stat(self) -> SimpleNamespace:
        """Only the size, as `st_size`."""
        return SimpleNamespace(st_size=self.files.size(self.uri))

    def iterdir(self) -> Iterator["HadoopPath"]:
        return iter([self / name for name in self.files.list(self.uri)])

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        self.files.mkdirs(self.uri)  # Hadoop's mkdirs makes parents and accepts existing folders

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.files.read_bytes(self.uri).decode(encoding)

    def write_text(self, text: str, encoding: str = "utf-8") -> None:
        self.files.write_bytes(self.uri, text.encode(encoding))

    def replace(self, target) -> "HadoopPath":
        target = target if isinstance(target, HadoopPath) else HadoopPath(str(target), self.files)
        self.files.rename_over(self.uri, target.uri)
        return target

    def rmtree(self) -> None:
        self.files.delete(self.uri)

    def unlink(self, missing_ok: bool = False) -> None:
        if not missing_ok and not self.exists():
            raise FileNotFoundError(self.uri)
        self.files.delete(self.uri)

    def create_new(self, text: str, encoding: str = "utf-8") -> bool:
        """Create the file with `text` unless it exists (then False)."""
        return self.files.create_new(self.uri, text.encode(encoding))

    def modified_at(self) -> float:
        return self.files.modified_at(self.uri)

    def copy_to(self, target: "HadoopPath") -> None:
        self.files.copy(self.uri, target.uri)

