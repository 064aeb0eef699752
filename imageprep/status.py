"""How running a node ended: the status run_results.json records and the progress line shows.

A model or seed ends in `success`; a data test in `pass`, `warn` (failing rows, severity warn) or
`fail`; any node in `error` (Spark or the project refused it) or `skipped` (a node it depends on
failed, or --fail-fast stopped the run). A node whose stored result was made from exactly the
same inputs is not run again: `skipped: unchanged`, a kind of `skipped`, as its word says, so
`--select result:skipped` picks it too.

`Status` is a str enum: a member equals its word and is printed and written to JSON as it, so
run_results.json and the output are the same as with plain strings.
"""
from __future__ import annotations

from .nodes import StrEnum


class Status(StrEnum):
    SUCCESS = "success"
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    ERROR = "error"
    SKIPPED = "skipped"
    UNCHANGED = "skipped: unchanged"

    @property
    def kind(self) -> Status:
        """The broader status this one is a case of: UNCHANGED is SKIPPED, every other is itself."""
        return Status.SKIPPED if self is Status.UNCHANGED else self

    @property
    def failed(self) -> bool:
        """An error or a failing test: the nodes after it are skipped and the run commits nothing."""
        return self in (Status.ERROR, Status.FAIL)
