"""The one file layer: every file the runner touches outside Spark's own reads and writes.

The warehouse's catalog and version folders, the build lock, the listing of image folders, the few
image files read on the driver and the training loader all go through here, with one rule for
what a URI is (`is_uri`).

- A plain path is a local folder: `pathlib.Path`, with symlinks and hard links.
- A URI (`file:`, `s3://`, `s3a://`, `gs://`, `hdfs://`, `abfss://`, ...) is a `StoragePath`. Its
  files are read and written with `pyarrow.fs`, which needs no JVM, so this works the same on a
  classic Spark session, over Spark Connect, and in a training process without Spark. `s3a`/`s3n`
  are S3 to PyArrow; the target's `spark.hadoop.fs.s3a.*` endpoint and keys are passed on.
- Where PyArrow cannot open a scheme (no client library for it, or HDFS without libhdfs) and a
  classic session is at hand, the same operations go through that session's Hadoop FileSystem API
  (`files_hadoop.HadoopFiles`); without one the error names the scheme and what to do.
"""
from __future__ import annotations

import os
import re
import threading
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator

from .errors import ProjectError
from .file_info import FileInfo, Files

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")  # C:\ is a path, not a URI
# Hadoop's names for schemes PyArrow knows by another.
_ARROW_SCHEME = {"s3a": "s3", "s3n": "s3", "gcs": "gs"}
# Spark settings of the S3A connector that PyArrow's S3 client takes too.
_S3A_SETTINGS = {
    "spark.hadoop.fs.s3a.endpoint": "endpoint_override",
    "spark.hadoop.fs.s3a.access.key": "access_key",
    "spark.hadoop.fs.s3a.secret.key": "secret_key",
    "spark.hadoop.fs.s3a.session.token": "session_token",
    "spark.hadoop.fs.s3a.endpoint.region": "region",
}


def is_uri(location: str | os.PathLike) -> bool:
    """True for `scheme:...` locations (file:, hdfs:, s3a:, ...), False for plain paths."""
    text = str(location)
    return bool(_SCHEME.match(text)) and not _DRIVE.match(text)


def scheme(uri: str) -> str:
    return _SCHEME.match(uri).group(1).lower()


def canonical_uri(uri: str) -> str:
    """A URI in the form Spark names files: `file:/abs/path` for local files."""
    if uri.startswith("file:"):
        return "file:/" + uri[len("file:"):].lstrip("/")
    return uri


def to_uri(location: str | os.PathLike) -> str:
    """A location as a URI: local paths become `file:/abs/path`, the form Spark gives its rows."""
    text = str(location)
    return canonical_uri(text) if is_uri(text) else "file:" + str(Path(text).resolve())


def local_path(location: str | os.PathLike) -> str | None:
    """The local path of a plain path or a `file:` URI; None for any other URI."""
    text = str(location)
    if not is_uri(text):
        return text
    return canonical_uri(text)[len("file:"):] if scheme(text) == "file" else None


class ArrowFiles:
    """A `pyarrow.fs` file system, addressed by the URIs of one scheme and authority."""

    def __init__(self, filesystem, prefix: str, arrow_prefix: str):
        # A URI is `prefix + rest`; PyArrow's path for it is `arrow_prefix + rest`.
        self.filesystem, self.prefix, self.arrow_prefix = filesystem, prefix, arrow_prefix

    @property
    def is_local(self) -> bool:
        from pyarrow import fs

        return isinstance(self.filesystem, fs.LocalFileSystem)

    def path(self, uri: str) -> str:
        """PyArrow's path of a URI."""
        uri = canonical_uri(uri)
        if not uri.startswith(self.prefix):
            raise ValueError(f"{uri} is not on the file system of {self.prefix}")
        return (self.arrow_prefix + uri[len(self.prefix):]).rstrip("/") or "/"

    def uri(self, path: str) -> str:
        return self.prefix + path[len(self.arrow_prefix):]

    def info(self, uri: str) -> FileInfo | None:
        from pyarrow import fs

        found = self.filesystem.get_file_info(self.path(uri))
        if found.type == fs.FileType.NotFound:
            return None
        return self._info(found)

    def _info(self, found) -> FileInfo:
        from pyarrow import fs

        modified = found.mtime or datetime.fromtimestamp(0, tz=timezone.utc)
        if modified.tzinfo is None:
            modified = modified.replace(tzinfo=timezone.utc)
        return FileInfo(self.uri(found.path), found.size or 0, modified, found.type == fs.FileType.Directory)

    def list(self, uri: str) -> list[str]:
        from pyarrow import fs

        try:
            found = self.filesystem.get_file_info(fs.FileSelector(self.path(uri)))
        except FileNotFoundError:
            raise FileNotFoundError(uri) from None
        return [f.base_name for f in found]

    def walk(self, uri: str, recursive: bool) -> list[FileInfo]:
        """The files (not folders) under a folder."""
        from pyarrow import fs

        found = self.filesystem.get_file_info(fs.FileSelector(self.path(uri), recursive=recursive))
        return [self._info(f) for f in found if f.type == fs.FileType.File]

    def mkdirs(self, uri: str) -> None:
        self.filesystem.create_dir(self.path(uri), recursive=True)

    def read_bytes(self, uri: str) -> bytes:
        with self.filesystem.open_input_stream(self.path(uri)) as stream:
            return stream.read()

    def write_bytes(self, uri: str, data: bytes) -> None:
        self._make_parent(uri)
        with self.filesystem.open_output_stream(self.path(uri)) as stream:
            stream.write(data)

    def _make_parent(self, uri: str) -> None:
        """Writing a file makes its folder, as Hadoop's create does (object stores have no folders)."""
        if self.is_local:
            os.makedirs(os.path.dirname(self.path(uri)), exist_ok=True)

    def create_new(self, uri: str, data: bytes) -> bool:
        """Write a file that must not exist yet; False if it does. Atomic on the local file system
        (O_EXCL); elsewhere the check comes first and the file is read back, so of two writers
        racing only the one whose bytes are there wins."""
        path = self.path(uri)
        if self.is_local:
            self._make_parent(uri)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            return True
        if self.info(uri) is not None:
            return False
        self.write_bytes(uri, data)
        return self.read_bytes(uri) == data

    def rename_over(self, source: str, dest: str) -> None:
        """Rename, replacing `dest`: one atomic rename on local and HDFS file systems; on object
        stores a rename is a copy and a delete."""
        try:
            self.filesystem.move(self.path(source), self.path(dest))
        except OSError:  # some file systems refuse to move over an existing file
            self.delete(dest)
            self.filesystem.move(self.path(source), self.path(dest))

    def delete(self, uri: str) -> None:
        """Remove a file or a folder with everything in it; nothing if it is not there."""
        found = self.info(uri)
        if found is None:
            return
        if found.is_dir:
            self.filesystem.delete_dir(self.path(uri))
        else:
            self.filesystem.delete_file(self.path(uri))

    def copy(self, source: str, dest: str) -> None:
        self._make_parent(dest)
        self.filesystem.copy_file(self.path(source), self.path(dest))


_OPENED: dict[tuple, Files] = {}
_OPENED_GUARD = threading.Lock()


def files_for(uri: str, spark=None, settings: dict[str, Any] | None = None) -> Files:
    """The file system of a URI (PyArrow's: one per scheme and authority, kept for the process).

    `spark`: a classic SparkSession, or a function returning one, for schemes PyArrow cannot open
    (called only then). `settings`: the target's Spark settings, for S3 endpoints and keys."""
    uri = canonical_uri(uri)
    authority = _authority(uri)
    key = (authority, tuple(sorted((settings or {}).items())))
    with _OPENED_GUARD:
        if key in _OPENED:
            return _OPENED[key]
    try:
        opened = _open_arrow(uri, authority, settings or {})
    except Exception as exc:
        if not _no_arrow_filesystem(exc):  # a file system PyArrow has, that did not answer
            raise ProjectError(f"cannot reach {uri}: {_first_line(exc)}") from None
        return _hadoop_fallback(uri, spark, exc)  # not kept: it belongs to this session
    with _OPENED_GUARD:
        return _OPENED.setdefault(key, opened)


def _authority(uri: str) -> str:
    """`scheme://host` of a URI (`file:` for local files), the part one file system serves."""
    if scheme(uri) == "file":
        return "file:"
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/]*)", uri)
    return match.group(1) if match else uri


def _open_arrow(uri: str, authority: str, settings: dict[str, Any]) -> ArrowFiles:
    from pyarrow import fs

    name = scheme(uri)
    if name == "file":
        return ArrowFiles(fs.LocalFileSystem(), "file:", "")
    arrow_scheme = _ARROW_SCHEME.get(name, name)
    rest = authority[len(name):]
    if arrow_scheme == "s3":
        options = {arg: str(settings[key]) for key, arg in _S3A_SETTINGS.items() if key in settings}
        if "endpoint_override" in options and not options["endpoint_override"].startswith("http"):
            options["scheme"] = "https" if settings.get("spark.hadoop.fs.s3a.connection.ssl.enabled", "true") \
                != "false" else "http"
        filesystem = fs.S3FileSystem(**options) if options else fs.FileSystem.from_uri(arrow_scheme + rest)[0]
        return ArrowFiles(filesystem, authority + "/", rest[len("://"):] + "/")
    filesystem, path = fs.FileSystem.from_uri(arrow_scheme + rest + "/")
    # HDFS paths are absolute on their host; object stores name the bucket first.
    arrow_prefix = "/" if isinstance(filesystem, getattr(fs, "HadoopFileSystem", ())) else path.rstrip("/") + "/"
    return ArrowFiles(filesystem, authority + "/", arrow_prefix)


def _no_arrow_filesystem(exc: Exception) -> bool:
    """Whether PyArrow failed for want of a file system for the scheme (not for want of an answer)."""
    import pyarrow as pa

    text = str(exc)
    return (isinstance(exc, (pa.ArrowInvalid, pa.ArrowNotImplementedError))
            or "libhdfs" in text or "Unrecognized filesystem" in text or "support" in text.lower())


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _hadoop_fallback(uri: str, spark, cause: Exception) -> Files:
    from .files_hadoop import HadoopFiles

    if spark is None or not (callable(spark) or _has_jvm(spark)):
        raise ProjectError(
            f"cannot reach {uri}: PyArrow has no file system for '{scheme(uri)}:' here "
            f"({_first_line(cause)}), and the runner has no classic Spark session to reach it "
            f"through Hadoop (a Spark Connect session has none). Use a scheme PyArrow reads "
            f"(file:, s3://, s3a://, gs://, hdfs:// with libhdfs), or a target with `master`.") from None
    return HadoopFiles(spark)


def _has_jvm(spark) -> bool:
    """Whether a session is a classic one, with a JVM handle (a Connect session has none)."""
    try:
        return spark._jvm is not None
    except Exception:  # Connect sessions raise on _jvm
        return False


class StoragePath:
    """A file or folder named by a URI, with the part of pathlib's API the runner uses.

    `files`: its file system, or a function that opens it when a file is first touched (opening an
    object store's client may ask the network, e.g. for a bucket's region)."""

    def __init__(self, uri: str, files: Files | Callable[[], Files]):
        self.uri = uri
        self._files = files

    @property
    def files(self) -> Files:
        if not hasattr(self._files, "info"):
            self._files = self._files()
        return self._files

    def __str__(self) -> str:
        return self.uri

    def __repr__(self) -> str:
        return f"StoragePath({self.uri!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, StoragePath) and other.uri == self.uri

    def __hash__(self) -> int:
        return hash(self.uri)

    def __truediv__(self, part) -> "StoragePath":
        return StoragePath(f"{self.uri.rstrip('/')}/{str(part).strip('/')}", self._shared_files)

    def _shared_files(self) -> Files:
        """Paths made from this one share its file system, opened once whichever asks first."""
        return self.files

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]

    @property
    def parent(self) -> "StoragePath":
        return StoragePath(self.uri.rstrip("/").rsplit("/", 1)[0], self._shared_files)

    def with_suffix(self, suffix: str) -> "StoragePath":
        stem = self.name.rsplit(".", 1)[0] if "." in self.name.lstrip(".") else self.name
        return self.parent / (stem + suffix)

    def exists(self) -> bool:
        return self.files.info(self.uri) is not None

    def is_dir(self) -> bool:
        found = self.files.info(self.uri)
        return found is not None and found.is_dir

    def stat(self) -> SimpleNamespace:
        """The size and modification time, as `st_size` and `st_mtime`."""
        found = self.files.info(self.uri)
        if found is None:
            raise FileNotFoundError(self.uri)
        return SimpleNamespace(st_size=found.size, st_mtime=found.modified.timestamp())

    def iterdir(self) -> Iterator["StoragePath"]:
        return iter([self / name for name in self.files.list(self.uri)])

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        self.files.mkdirs(self.uri)  # makes parents and accepts existing folders, as Hadoop's mkdirs

    def read_bytes(self) -> bytes:
        return self.files.read_bytes(self.uri)

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_text(self, text: str, encoding: str = "utf-8") -> None:
        self.files.write_bytes(self.uri, text.encode(encoding))

    def replace(self, target) -> "StoragePath":
        target = target if isinstance(target, StoragePath) else StoragePath(str(target), self._shared_files)
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
        return self.stat().st_mtime

    def copy_to(self, target: "StoragePath") -> None:
        self.files.copy(self.uri, target.uri)


def location(where: str | os.PathLike, spark=None, settings: dict[str, Any] | None = None) -> Path | StoragePath:
    """A folder or file as the runner handles it: a Path for a plain path, else a StoragePath."""
    text = str(where)
    if not is_uri(text):
        return Path(text)
    uri = text.rstrip("/") or text
    return StoragePath(uri, lambda: files_for(uri, spark, settings))


def pyarrow_reads(where) -> bool:
    """Whether PyArrow reads a folder or file: a local path, or a URI of a PyArrow file system."""
    return isinstance(where, (str, os.PathLike)) and not is_uri(str(where)) or \
        isinstance(where, StoragePath) and isinstance(where.files, ArrowFiles)


def arrow_filesystem(where: str | os.PathLike | StoragePath):
    """(a `pyarrow.fs.FileSystem`, the path on it) for a plain path or a URI PyArrow reads; for
    readers that hand the file system to PyArrow itself (Parquet footers, the training loader). A
    StoragePath keeps the file system it was opened with (a warehouse's S3 settings, say)."""
    from pyarrow import fs

    text = str(where)
    if not is_uri(text):
        return fs.LocalFileSystem(), str(Path(text).absolute())
    files = where.files if isinstance(where, StoragePath) else files_for(text)
    if not isinstance(files, ArrowFiles):
        raise ProjectError(f"{text} is read with PyArrow here, which has no file system for '{scheme(text)}:'")
    return files.filesystem, files.path(text)
