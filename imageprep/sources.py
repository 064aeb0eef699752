"""Read a source declared in YAML into a DataFrame: a folder of images, or files Spark reads.

An image folder (`format: images`) is listed by us (imageprep.listing) as well as read by Spark's
`binaryFile`, because `binaryFile` silently skips zero-byte files, names starting with `.` or `_`
and names that are not UTF-8, and would follow a link loop for ever: every entry under the folder
must reach the models, so a corrupt or odd file is reported, not lost. Files Spark skips are read
here on the driver and added; entries that cannot be read (too large, not a regular file, a broken
link) are added with the reason in `read_error`. So the source has one row per entry.

A build lists each folder once (when it fingerprints the sources) and every node reads that
listing; a file deleted after the listing is read as deleted, and `files_gone` tells the build
which files went away meanwhile.
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable
from urllib.parse import unquote

from .catalog import empty_frame
from .errors import ProjectError
from .files import canonical_uri, files_for, local_path, to_uri
from .listing import DEFAULT_MAX_FILE_BYTES, FolderListing, ListedFile, list_local, list_uri, parse_size
from .nodes import Source

IMAGE_SOURCE_COLUMNS = "path, relative_path, modificationTime, length, content, read_error"


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


def read_source(spark, source: Source, listing: FolderListing | None = None):
    """The source's rows as a DataFrame (not yet registered under a name). `listing`: an image
    folder as the build listed it."""
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
        return read_image_folder(spark, source, listing=listing)
    reader = spark.read.format(fmt)
    for key, value in source.options.items():
        reader = reader.option(key, value)
    return reader.load(source.location)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def read_image_folder(spark, source: Source, only: Callable[[ListedFile], bool] | None = None,
                      listing: FolderListing | None = None):
    """One row per file under the folder: path, relative_path, modificationTime, length, content,
    read_error (why the file was not read: content is NULL then).

    `only`: which files of the listing to read; all by default. `listing`: the folder as the build
    listed it, so every node of a build sees the same files (listed here if not given)."""
    from pyspark.sql import functions as F

    settings = image_folder_options(source)
    root_uri = to_uri(source.location)
    if listing is None:
        listing = list_image_folder(spark, source)
    pattern = _name_pattern(settings)
    files = folder_files(source, listing)
    chosen = files if only is None else [f for f in files if only(f)]

    reader = (spark.read.format("binaryFile").option("recursiveFileLookup", str(settings.recursive).lower())
              # A file deleted between the listing and the read is a deleted file, not a failed build.
              .option("ignoreMissingFiles", "true"))
    by_spark = [f for f in chosen if _spark_reads(f)]
    whole_folder = len(chosen) == len(files) and not (listing.has_loops or listing.has_unreadable)
    if whole_folder:
        # One listing by Spark, which is quicker than naming thousands of files. Files over the
        # size limit are filtered on their length, which binaryFile checks before reading content.
        frame = reader.load(root_uri).where(F.col("length") <= settings.max_file_bytes)
        if pattern is not None:
            frame = frame.where(F.regexp_extract("path", "[^/]*$", 0).rlike("(?i)" + pattern.pattern))
    else:  # some files by name: Spark opens no other (and follows no link loop)
        frame = _load_named(spark, reader, by_spark)
    # inputFiles() gives URIs (percent-encoded); rows and our listing carry the plain path.
    seen = {canonical_uri(unquote(p)) for p in _input_files(spark, frame)} if by_spark or whole_folder else set()
    # binaryFile returns no row for zero-byte files and skips names starting with . or _.
    extra = [f for f in chosen if not _spark_reads(f) or canonical_uri(f.uri) not in seen]
    frame = frame.select("path", "modificationTime", "length", "content", F.lit(None).cast("string").alias("read_error"))
    if extra:
        frame = frame.unionByName(spark.createDataFrame(_read_on_driver(spark, extra), _schema()))
    prefix = root_uri.rstrip("/") + "/"
    return frame.select(
        "path",
        F.when(F.col("path").startswith(prefix), F.expr(f"substring(path, {len(prefix) + 1})"))
        .otherwise(F.regexp_extract("path", "[^/]*$", 0)).alias("relative_path"),
        "modificationTime", "length", "content", "read_error")


def _input_files(spark, frame) -> list[str]:
    """frame.inputFiles(), in one call to the JVM. On a classic session PySpark fetches the
    array's elements one Py4J call each: 0.6 s for 2000 files, on every build."""
    from py4j.protocol import Py4JError

    java_frame = getattr(spark, "_jvm", None) and getattr(frame, "_jdf", None)
    if java_frame is None:  # Spark Connect: one request already
        return list(frame.inputFiles())
    try:
        names = java_frame.inputFiles()
        joined = spark._jvm.org.apache.hadoop.util.StringUtils.join("\0", names)  # a path holds no NUL
        found = joined.split("\0") if joined else []
        if len(found) == len(names):
            return found
    except Py4JError:  # no Hadoop on the driver's class path
        pass
    return list(frame.inputFiles())


def folder_files(source: Source, listing: FolderListing) -> list[ListedFile]:
    """The files of a listing that the source's rows are of: those its glob and hidden-file options let in."""
    settings = image_folder_options(source)
    pattern, root_uri = _name_pattern(settings), to_uri(source.location)
    return [f for f in listing.files if (pattern is None or pattern.match(f.uri.rsplit("/", 1)[-1]))
            and (settings.include_hidden or not _hidden(f.uri, root_uri))]


def _name_pattern(settings) -> re.Pattern | None:
    return re.compile(glob_to_regex(settings.glob), re.IGNORECASE) if settings.glob else None


def row_keys(source: Source, listing: FolderListing) -> set[tuple[str, int, int]] | None:
    """(path, length, modificationTime in microseconds since the epoch) of each row that
    read_image_folder gives for the whole folder, from the listing alone; None when the listing
    cannot tell (a file Spark reads, listed without its exact time: not a local folder). Spark
    reads a file's time in whole milliseconds; the driver's rows carry the listing's."""
    keys = set()
    for f in folder_files(source, listing):
        if _spark_reads(f):
            if f.modified_ns is None:
                return None
            micros = f.modified_ns // 1_000_000 * 1000
        else:
            micros = (f.modified - _EPOCH) // timedelta(microseconds=1)
        keys.add((f.uri, f.size, micros))
    return keys


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _spark_reads(f: ListedFile) -> bool:
    """Whether Spark's binaryFile returns a row for the file; the driver reads the others."""
    return f.problem is None and f.os_path is None and f.size > 0 and not _hidden_name(f.uri)


def _hidden_name(uri: str) -> bool:
    return uri.rsplit("/", 1)[-1].startswith((".", "_"))


def _load_named(spark, reader, files: list[ListedFile]):
    """binaryFile rows of the files named. Spark checks that named files exist before it reads: one
    deleted since the listing is dropped from the names and the load tried again."""
    for _ in range(5):
        if not files:
            return empty_frame(spark, _schema()).drop("read_error")
        try:
            return reader.load([_escape_glob(f.uri) for f in files])
        except Exception as exc:  # AnalysisException PATH_NOT_FOUND
            if "PATH_NOT_FOUND" not in str(exc):
                raise
            files = [f for f in files if _exists(spark, f.uri)]
    return reader.load([_escape_glob(f.uri) for f in files])


def _exists(spark, uri: str) -> bool:
    path = local_path(uri)
    if path is not None:
        return os.path.lexists(path)
    return files_for(uri, spark).info(uri) is not None


def _read_on_driver(spark, files: list[ListedFile]) -> list[tuple]:
    """Rows for the files Spark does not read: their bytes, or NULL and the reason. A file that has
    gone since the listing has no row: it was deleted."""
    rows = []
    for f in files:
        content, problem = None, f.problem
        if problem is None:
            try:
                if not f.size:
                    content = b""
                elif f.os_path is not None:  # a local name Spark cannot spell
                    content = Path(f.os_path).read_bytes()
                else:
                    content = read_bytes(spark, f.uri)
            except FileNotFoundError:
                continue
            except OSError as exc:
                problem = f"unreadable: {exc.strerror or exc}"
        rows.append((f.uri, f.modified, f.size, content, problem))
    return rows


def _schema():
    from pyspark.sql.types import BinaryType, LongType, StringType, StructField, StructType, TimestampType

    return StructType([StructField("path", StringType()), StructField("modificationTime", TimestampType()),
                       StructField("length", LongType()), StructField("content", BinaryType()),
                       StructField("read_error", StringType())])


@dataclass(frozen=True)
class ImageFolderOptions:
    glob: str | None
    recursive: bool
    include_hidden: bool
    max_file_bytes: int


def image_folder_options(source: Source) -> ImageFolderOptions:
    options = dict(source.options)
    settings = ImageFolderOptions(options.pop("glob", None), bool(options.pop("recursive", True)),
                                  bool(options.pop("include_hidden", True)),
                                  options.pop("max_file_bytes", DEFAULT_MAX_FILE_BYTES))
    where = dict(path=source.path, line=source.config.get("line"))
    if options:
        raise ProjectError(f"unknown options for image source '{source.name}': {', '.join(options)}; "
                           f"use glob, recursive, include_hidden, max_file_bytes", **where)
    try:
        return dataclasses.replace(settings, max_file_bytes=parse_size(settings.max_file_bytes))
    except ValueError as exc:
        raise ProjectError(f"image source '{source.name}': {exc}", **where) from None


def list_image_folder(spark, source: Source) -> FolderListing:
    """The source's folder as it is now; a clear error if it is missing or is a file."""
    settings = image_folder_options(source)
    root_uri = to_uri(source.location)
    listing = list_files(spark, root_uri, settings.recursive, settings.max_file_bytes)
    if listing is None:
        where = dict(path=source.path, line=source.config.get("line"))
        if root_uri.startswith("file:") and os.path.exists(root_uri[len("file:"):]):
            raise ProjectError(f"source '{source.name}': the image folder {source.location} is a file, not a folder",
                               **where)
        raise ProjectError(f"source '{source.name}': the image folder {source.location} does not exist", **where)
    return listing


def _escape_glob(uri: str) -> str:
    """A file's URI as a Hadoop glob that matches only it (Spark expands paths given to load())."""
    return re.sub(r"([\\{}\[\]*?])", r"\\\1", uri)


def _hidden(path: str, root_uri: str) -> bool:
    rel = path[len(root_uri.rstrip("/")) + 1:]
    return any(part.startswith((".", "_")) for part in rel.split("/"))


def list_files(spark, root_uri: str, recursive: bool,
               max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> FolderListing | None:
    """Every file under a folder, sorted (see imageprep.listing); None if the folder is missing."""
    path = local_path(root_uri)
    if path is not None:
        return list_local(path, recursive, max_file_bytes)
    return list_uri(files_for(root_uri, spark), root_uri, recursive, max_file_bytes)


def read_bytes(spark, uri: str) -> bytes:
    """A file's bytes, read on the driver (used only for the few files `binaryFile` skips)."""
    path = local_path(uri)
    if path is not None:
        return Path(path).read_bytes()
    return files_for(uri, spark).read_bytes(uri)


def files_gone(spark, sources: dict, listings: dict) -> list[str]:
    """Files of the build's listings (by relation) that are gone or changed now: the tables made
    from them no longer match the folder."""
    gone = []
    for relation, listed in listings.items():
        try:
            now = list_image_folder(spark, sources[relation])
        except ProjectError:  # the whole folder went away
            now = FolderListing([])
        current = {f.key for f in now.files}
        gone += [f.uri for f in listed.files if f.key not in current]
    return gone
