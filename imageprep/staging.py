"""What a running build has published but not yet made visible: the staged catalog entries.

While a build runs, every table, view or drop it publishes is recorded here, and in the pending
file (`_pending.json` in the warehouse root, replaced atomically at each record), instead of in
`_catalog.json`. The build reads the committed catalog with these entries on top; everyone else
reads `_catalog.json` alone. When the build ends without an error or a failing test, the entries
of the nodes it selected are committed in one catalog write (`Warehouse.commit_build`).

Entries a failed or killed build left behind stay in the pending file. The next build starts from
them, so a table already written is skipped as unchanged when its fingerprint still matches
instead of being written again, and an incremental model adds to its staged version.
"""
from __future__ import annotations

import json
import uuid
from typing import Any, Iterable

PENDING_FILE = "_pending.json"
DROPPED = "dropped"  # the kind of a staged entry that removes its name from the catalog


class StagedEntries:
    """Staged entries by name, kept in the pending file `path` (a Path, or a StoragePath on a URI
    warehouse). Not thread-safe: the Warehouse serializes access."""

    def __init__(self, path):
        self.path = path
        self.entries: dict[str, dict[str, Any]] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}

    def record(self, name: str, entry: dict[str, Any]) -> None:
        self.entries[name] = entry
        self.save()

    def over(self, committed: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The catalog as the build sees it: `committed` with the staged entries applied."""
        merged = dict(committed)
        for name, entry in self.entries.items():
            if entry.get("kind") == DROPPED:
                merged.pop(name, None)
            else:
                merged[name] = entry
        return merged

    def versions_of(self, name: str) -> set[str]:
        entry = self.entries.get(name) or {}
        return {entry["version"]} if entry.get("kind") == "table" else set()

    def forget(self, names: Iterable[str]) -> None:
        for name in names:
            self.entries.pop(name, None)

    def save(self) -> None:
        """Write the entries (a new file renamed over the old one), or remove the file once empty."""
        if not self.entries:
            if self.path.exists():
                self.path.unlink()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.parent / f".{self.path.name}.{uuid.uuid4().hex}"
        tmp.write_text(json.dumps(self.entries, indent=1, sort_keys=True), encoding="utf-8")
        tmp.replace(self.path)

