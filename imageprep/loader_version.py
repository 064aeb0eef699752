"""Which version of a table a pass reads, and how to tell two versions apart.

A built table `target/warehouse/<name>` is a link to one version folder (on a warehouse named by a
URI there are no links: `<warehouse>/<name>` is found through the catalog alone). The warehouse catalog
(`_catalog.json` beside it) is the committed state: a build writes it first and switches the
links after, so between the two (or after a build killed there) the catalog is right and the
link is not. A reader pins the catalog's version when there is one, else wherever the path
resolves to, and keeps reading that folder however many builds publish meanwhile.

A version's fingerprint hashes its files' names and sizes and its row groups' row counts:
versions a build writes have new file names, so a saved reading position names the data it
counts rows of.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from . import files
from .files import StoragePath
from .warehouse import CATALOG_FILE


@dataclass(frozen=True)
class TableVersion:
    given: Path | StoragePath  # the path the caller named (a StoragePath for a URI)
    folder: Path | StoragePath  # the version folder read, resolved
    label: str  # how messages name it: the catalog's version, else the folder
    entry: dict | None  # the catalog entry, when the catalog names this folder


def pin(path: str | os.PathLike) -> TableVersion | None:
    """The version `path` (a `<warehouse>/<name>` path or URI, or a version folder) stands for
    now, or None if there is no such folder."""
    given = files.location(path)
    entry = catalog_entry(given)
    if entry is not None:
        folder = given.parent / entry["version"]
        if folder.is_dir():
            return TableVersion(given, _resolved(folder), entry["version"], entry)
    if not given.is_dir():
        return None
    folder = _resolved(given)
    return TableVersion(given, folder, str(folder), None)


def _resolved(folder: Path | StoragePath) -> Path | StoragePath:
    return folder.resolve() if isinstance(folder, Path) else folder  # a URI has no links to follow


def catalog_entry(given: Path | StoragePath) -> dict | None:
    """The committed catalog's table entry for `given` (a `<warehouse>/<name>` path), or None."""
    catalog = given.parent / CATALOG_FILE
    try:
        entry = json.loads(catalog.read_text(encoding="utf-8")).get(given.name)
    except (OSError, ValueError):  # no catalog there (FileNotFoundError is an OSError)
        return None
    if isinstance(entry, dict) and entry.get("kind") == "table" and entry.get("version"):
        return entry
    return None


def fingerprint(row_groups: Iterable[tuple[str, int, int, int]]) -> str:
    """A digest of (file relative to the version folder, file size, row group, rows) tuples."""
    digest = hashlib.sha256()
    for item in row_groups:
        digest.update(json.dumps(list(item)).encode())
    return digest.hexdigest()[:16]
