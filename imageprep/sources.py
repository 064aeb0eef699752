"""Read a source declared in YAML into a DataFrame: a folder of images, or files Spark reads.

An image folder (`format: images`) is listed by us as well as read by Spark's `binaryFile`,
because `binaryFile` silently skips zero-byte files and names starting with `.` or `_`: every
file under the folder must reach the models, so a corrupt or odd file is reported, not lost.
Files Spark skipped are read here and added, so the source has one row per file.
"""
from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable
from urllib.parse import unquote

from .errors import ProjectError
from .nodes import Source

IMAGE_SOURCE_COLUMNS = "path, relative_path, modificationTime, length, content"


def glob_to_regex(glob: str) -> str:
    """A file-name glob (`*`, `?`, `[abc]`, `{jpg,png}`) as an anchored regex both Python and Java read."""
    out, i, depth = [], 0, 0
    while i < len(glob):
        ch = glob[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = glob.find("]", i + 1)
            if end == -1:
                out.append(r"\[")
            else:
                out.append("[" + glob[i + 1:end].replace("!", "^", 1) + "]")
                i = end
        elif ch == "{":
            depth += 1
            out.append("(?:")
        elif ch == "}" and depth:
            depth -= 1
            out.append(")")
        elif ch == "," and depth:
            out.append("|")
        else:
            out.append(re.escape(ch))
        i += 1
    return "^" + "".join(out) + "$"


def read_source(spark, source: Source):
    """The source's rows as a DataFrame (not yet registered under a name)."""
    fmt = source.format
    if fmt == "table":
        name = source.location or source.table_name
        try:
            return spark.table(name)
        except Exception as exc:  # AnalysisException: the relation does not exist
            raise ProjectError(f"source '{source.name}' names the table '{name}', which does not exist: "
                               f"{_first_line(exc)}", path=source.path, line=source.config.get("line"))
    if not source.location:
        raise ProjectError(f"source '{source.name}' with format '{fmt}' needs a path", path=source.path,
                           line=source.config.get("line"))
    if fmt == "images":
        return read_image_folder(spark, source)
    reader = spark.read.format(fmt)
    for key, value in source.options.items():
        reader = reader.option(key, value)
    return reader.load(source.location)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def read_image_folder(spark, source: Source, only: Callable[[tuple[str, int, datetime]], bool] | None = None):
    """One row per file under the folder: path, relative_path, modificationTime, length, content.

    `only`: which files of the listing, (uri, size, modification time), to read; all by default."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import BinaryType, LongType, StringType, StructField, StructType, TimestampType

    options = dict(source.options)
    glob = options.pop("glob", None)
    recursive = bool(options.pop("recursive", True))
    include_hidden = bool(options.pop("include_hidden", True))
    if options:
        raise ProjectError(f"unknown options for image source '{source.name}': {', '.join(options)}; "
                           f"use glob, recursive, include_hidden", path=source.path, line=source.config.get("line"))
    root_uri = _to_uri(source.location)
    pattern = re.compile(glob_to_regex(glob), re.IGNORECASE) if glob else None
    listing = list_files(spark, root_uri, recursive)
    if listing is None:
        raise ProjectError(f"source '{source.name}': the image folder {source.location} does not exist",
                           path=source.path, line=source.config.get("line"))
    listing = [f for f in listing if (pattern is None or pattern.match(f[0].rsplit("/", 1)[-1]))
               and (include_hidden or not _hidden(f[0], root_uri))]

    schema = StructType([StructField("path", StringType()), StructField("modificationTime", TimestampType()),
                         StructField("length", LongType()), StructField("content", BinaryType())])
    reader = spark.read.format("binaryFile").option("recursiveFileLookup", str(recursive).lower())
    chosen = listing if only is None else [f for f in listing if only(f)]
    if len(chosen) == len(listing):
        frame = reader.load(root_uri)
        if pattern is not None:
            frame = frame.where(F.regexp_extract("path", "[^/]*$", 0).rlike("(?i)" + pattern.pattern))
    else:  # some files by name: Spark opens no other file
        listing = chosen
        named = [_escape_glob(path) for path, size, _ in listing if size]
        frame = reader.load(named) if named else spark.createDataFrame([], schema)
    # inputFiles() gives URIs (percent-encoded); rows and our listing carry the plain path.
    seen = {_canonical(unquote(p)) for p in frame.inputFiles()}
    # binaryFile lists zero-byte files but returns no row for them.
    extra = [f for f in listing if _canonical(f[0]) not in seen or f[1] == 0]
    if extra:
        rows = [(path, mtime, size, read_bytes(spark, path) if size else b"") for path, size, mtime in extra]
        frame = frame.unionByName(spark.createDataFrame(rows, schema))
    prefix = root_uri.rstrip("/") + "/"
    return frame.select(
        "path",
        F.when(F.col("path").startswith(prefix), F.expr(f"substring(path, {len(prefix) + 1})"))
        .otherwise(F.regexp_extract("path", "[^/]*$", 0)).alias("relative_path"),
        "modificationTime", "length", "content")


def _escape_glob(uri: str) -> str:
    """A file's URI as a Hadoop glob that matches only it (Spark expands paths given to load())."""
    return re.sub(r"([\\{}\[\]*?])", r"\\\1", uri)


def _hidden(path: str, root_uri: str) -> bool:
    rel = path[len(root_uri.rstrip("/")) + 1:]
    return any(part.startswith((".", "_")) for part in rel.split("/"))


def _to_uri(location: str) -> str:
    """Local paths become `file:/abs/path`, the form `binaryFile` gives its rows."""
    if re.match(r"^[a-zA-Z][\w+.-]*:", location):
        return _canonical(location)
    return "file:" + str(Path(location).resolve())


def _canonical(uri: str) -> str:
    if uri.startswith("file:///"):
        return "file:/" + uri[len("file:///"):]
    if uri.startswith("file://"):
        return "file:" + uri[len("file://"):]
    return uri


def list_files(spark, root_uri: str, recursive: bool) -> list[tuple[str, int, datetime]] | None:
    """(uri, size, modification time) of every file under a folder, sorted; None if it is missing."""
    if root_uri.startswith("file:"):
        root = Path(root_uri[len("file:"):])
        if not root.is_dir():
            return None
        found = []
        walker = os.walk(root) if recursive else [(str(root), [], os.listdir(root))]
        for folder, _, names in walker:
            for name in names:
                full = Path(folder) / name
                if full.is_file():
                    stat = full.stat()
                    found.append(("file:" + str(full), stat.st_size,
                                  datetime.fromtimestamp(stat.st_mtime, tz=timezone.utc)))
        return sorted(found)
    return _list_hadoop(spark, root_uri, recursive)


def _list_hadoop(spark, root_uri: str, recursive: bool):
    jvm = spark._jvm
    path = jvm.org.apache.hadoop.fs.Path(root_uri)
    fs = path.getFileSystem(spark._jsc.hadoopConfiguration())
    if not fs.exists(path):
        return None
    found = []
    files = fs.listFiles(path, recursive)
    while files.hasNext():
        status = files.next()
        found.append((str(status.getPath().toString()), int(status.getLen()),
                      datetime.fromtimestamp(status.getModificationTime() / 1000, tz=timezone.utc)))
    return sorted(found)


def read_bytes(spark, uri: str) -> bytes:
    """A file's bytes, read on the driver (used only for the few files `binaryFile` skips)."""
    if uri.startswith("file:"):
        return Path(uri[len("file:"):]).read_bytes()
    jvm = spark._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    fs = path.getFileSystem(spark._jsc.hadoopConfiguration())
    stream = fs.open(path)
    try:
        return bytes(jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
    finally:
        stream.close()
