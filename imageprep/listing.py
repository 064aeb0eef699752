"""List an image folder: every entry under it, each a file to read or a reason it cannot be read.

A folder is whatever users and other programs put there, so the listing never fails on an entry
and never leaves one out without a word:

- regular files are read; those larger than `max_file_bytes` are not (a reason is recorded), so
  one huge file cannot fill the JVM's heap;
- FIFOs, sockets and devices, broken links, link loops and links back to a folder above them are
  recorded with the reason, never opened (a FIFO would block the reader forever);
- names that are not valid UTF-8 are kept with the bad bytes escaped (`caf\\xe9.jpg`): Spark's
  listing leaves them out, so the driver reads them itself, by the name the OS gave;
- an entry that disappears while the folder is listed is simply not there.
"""
from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from datetime import datetime, timezone

DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class ListedFile:
    uri: str                     # file:/... for a local file, as Spark names its rows; bad bytes escaped
    size: int
    modified: datetime
    problem: str | None = None   # why the file is not read; None for a file to read
    os_path: str | None = None   # the name to open when it differs from the URI (not valid UTF-8)
    modified_ns: int | None = None  # the OS's exact modification time (local files), which Spark reads in ms

    @property
    def key(self) -> tuple[str, int, float]:
        """What tells a file has changed: URI, size and modification time."""
        return self.uri, self.size, self.modified.timestamp()


@dataclass
class FolderListing:
    files: list[ListedFile]
    has_loops: bool = False        # a link leads back to a folder above it: Spark's own listing would not end
    has_unreadable: bool = False   # a file the OS will not let us open: Spark's read of it would fail


def list_local(root: str, recursive: bool, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> FolderListing | None:
    """Every entry under a local folder, sorted by URI; None if the folder does not exist."""
    if not os.path.isdir(root):
        return None
    listing = FolderListing([])
    root_stat = os.stat(root)
    # Folders still to list, with the (device, inode) of the folders above them: a link to one
    # of those is a loop.
    pending = [(root, frozenset({(root_stat.st_dev, root_stat.st_ino)}))]
    while pending:
        folder, above = pending.pop()
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:  # removed while we listed
            continue
        except OSError as exc:
            listing.files.append(_problem(folder, f"folder cannot be listed: {exc.strerror}"))
            listing.has_unreadable = True
            continue
        for entry in entries:
            found = _classify(entry, max_file_bytes)
            if found is None:
                continue
            if isinstance(found, os.stat_result):  # a folder
                key = (found.st_dev, found.st_ino)
                if key in above:
                    listing.files.append(_problem(entry.path, "link to a folder above it (a directory loop)"))
                    listing.has_loops = True
                elif recursive:
                    pending.append((entry.path, above | {key}))
                continue
            listing.files.append(found)
            listing.has_unreadable |= found.problem is not None and found.problem.startswith("unreadable")
    listing.files.sort(key=lambda f: f.uri)
    return listing


def list_uri(files, root_uri: str, recursive: bool, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> FolderListing | None:
    """Every file under a folder named by a URI (an object store, HDFS), through the file layer
    (`files`: an imageprep.files.Files); None if the folder does not exist. Such file systems have
    no links or special files, so only the size limit applies."""
    found = files.info(root_uri)
    if found is None or not found.is_dir:
        return None
    listed = [ListedFile(f.uri, f.size, f.modified, too_large(f.size, max_file_bytes) if f.size > max_file_bytes else None)
              for f in files.walk(root_uri, recursive)]
    return FolderListing(sorted(listed, key=lambda f: f.uri))


def _classify(entry: os.DirEntry, max_file_bytes: int) -> ListedFile | os.stat_result | None:
    """A file or a reason; the stat of a folder (to descend into); None for an entry that vanished."""
    path = entry.path
    try:
        info = os.stat(path)  # follows links: a link to an image is that image
    except FileNotFoundError:
        if not os.path.lexists(path):
            return None  # removed while we listed
        return _problem(path, f"broken symbolic link (to {_readable(os.readlink(path))})")
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return _problem(path, "symbolic link loop")
        return _problem(path, f"unreadable: {exc.strerror}")
    if stat.S_ISDIR(info.st_mode):
        return info
    modified = datetime.fromtimestamp(info.st_mtime, tz=timezone.utc)
    if not stat.S_ISREG(info.st_mode):
        return _problem(path, f"not a regular file ({_kind(info.st_mode)})", modified)
    uri, os_path = _uri(path)
    if info.st_size > max_file_bytes:
        return ListedFile(uri, info.st_size, modified, too_large(info.st_size, max_file_bytes), os_path)
    if not os.access(path, os.R_OK):
        return ListedFile(uri, info.st_size, modified, "unreadable: permission denied", os_path)
    return ListedFile(uri, info.st_size, modified, None, os_path, info.st_mtime_ns)


def too_large(size: int, max_file_bytes: int) -> str:
    """The reason a file over the limit is not read, whichever file system listed it."""
    return (f"too large: {_size(size)}, more than max_file_bytes ({_size(max_file_bytes)}); "
            f"raise the source's max_file_bytes option to read it")


def _problem(path: str, reason: str, modified: datetime | None = None) -> ListedFile:
    if modified is None:
        try:
            modified = datetime.fromtimestamp(os.lstat(path).st_mtime, tz=timezone.utc)
        except OSError:
            modified = datetime.fromtimestamp(0, tz=timezone.utc)
    uri, os_path = _uri(path)
    return ListedFile(uri, 0, modified, reason, os_path)


def _uri(path: str) -> tuple[str, str | None]:
    """The file's URI, and the name to open it by when the URI had to escape bytes that are not UTF-8."""
    readable = _readable(path)
    return "file:" + readable, (None if readable == path else path)


def _readable(path: str) -> str:
    """A path as text: bytes that are not UTF-8 (surrogate-escaped by Python) written as \\xNN."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace")


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device")):
        if test(mode):
            return name
    return "special file"


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}".replace(".0 ", " ")
        n /= 1024
    return f"{n} TB"


def parse_size(value, what: str = "max_file_bytes") -> int:
    """A size given as a number of bytes or as text like '64MB', '1.5 GB', '512k'."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a size such as 67108864 or '64MB', not {value!r}")
    if isinstance(value, (int, float)):
        number = int(value)
    else:
        text = str(value).strip().lower().replace(" ", "").rstrip("b").rstrip("i")
        scale = {"k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4}.get(text[-1:] if text else "", 1)
        try:
            number = int(float(text[:-1] if scale > 1 else text) * scale)
        except ValueError:
            raise ValueError(f"{what} must be a size such as 67108864 or '64MB', not {value!r}") from None
    if number < 1:
        raise ValueError(f"{what} must be at least 1 byte, not {value!r}")
    return number
