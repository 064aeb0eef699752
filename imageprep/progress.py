"""What a run tells the user as it goes: a line per node in graph order, then a summary.

A `Reporter` receives the run's events (Spark starting, a node finished, files went away, the
run ended) and prints a line for each; every line it prints also goes to target/runner.log. The
lines themselves are built by plain functions (`progress_line`, `summary_lines`, `pending_note`),
so what a line says does not depend on who prints it. A caller that wants the lines elsewhere
subclasses Reporter and overrides `echo`.

    12/60 OK    table       stg_images .................................        48 rows in   0.28s
"""
from __future__ import annotations

import logging
import sys

from .artifacts import NodeResult
from .nodes import MODEL, TEST
from .status import Status

log = logging.getLogger("imageprep")

# The word of each status in a progress line.
STATUS_WORDS = {Status.SUCCESS: "OK", Status.PASS: "PASS", Status.WARN: "WARN", Status.FAIL: "FAIL",
                Status.ERROR: "ERROR", Status.SKIPPED: "SKIP", Status.UNCHANGED: "SAME"}
# The counts of the summary line, in this order and with these words.
SUMMARY_WORDS = [(Status.SUCCESS, "OK"), (Status.PASS, "PASS"), (Status.UNCHANGED, "UNCHANGED"), (Status.WARN, "WARN"),
                 (Status.FAIL, "FAIL"), (Status.ERROR, "ERROR"), (Status.SKIPPED, "SKIP")]
PROBLEM_HEADINGS = {Status.ERROR: "Error in", Status.FAIL: "Failure in", Status.WARN: "Warning in"}
EXAMPLE_INDENT = " " * 11  # failing rows of a test, under its progress line


class Reporter:
    """Prints a run's progress to stdout, and logs each line."""

    def echo(self, line: str) -> None:
        print(line, flush=True)
        log.info(line)

    def warning(self, text: str) -> None:
        """A warning about the command itself (a selector that matches nothing): stderr, not logged."""
        print(f"Warning: {text}", file=sys.stderr)

    def warehouse_outside(self, location: str) -> None:
        self.echo(f"Warehouse: {location} (outside the project)")

    def starting_spark(self, master: str, project: str, target: str) -> None:
        self.echo(f"Starting Spark ({master}) for project '{project}', target '{target}'")

    def spark_ready(self, version: str, seconds: float, nodes: int) -> None:
        self.echo(f"Spark {version} ready in {seconds:.1f}s; running {nodes} selected nodes")

    def nothing_to_run(self) -> None:
        self.echo("Every selected node is unchanged since the last build: nothing to run, Spark not started")

    def empty_folder(self, location: str) -> None:
        self.echo(f"Warning: the image folder {location} holds no files")

    def files_gone(self, count: int) -> None:
        self.echo(f"{count} file{'s' * (count != 1)} went away during the build "
                  f"(deleted or rewritten); building again so the tables match the folder")

    def node_done(self, index: int, total: int, node, result: NodeResult) -> None:
        self.echo(progress_line(index, total, node, result))
        for example in result.examples:
            self.echo(f"{EXAMPLE_INDENT}{example}")

    def finished(self, results: list[NodeResult], elapsed: float, pending: dict, failed: bool) -> None:
        for line in summary_lines(results, elapsed):
            self.echo(line)
        note = pending_note(pending, failed)
        if note:
            self.echo(note)


def progress_line(index: int, total: int, node, result: NodeResult) -> str:
    width = len(str(total))
    kind = node.materialized if node.resource_type == MODEL else node.resource_type
    word = STATUS_WORDS[result.status]
    if result.status in (Status.ERROR, Status.SKIPPED):
        detail = str(result.status)
    elif result.status == Status.UNCHANGED:
        detail = "unchanged"
    elif node.resource_type == TEST:
        detail = f"{result.failures} failing" if result.failures else "0 failing"
    elif result.rows is not None:
        detail = f"{result.rows} rows"
    else:
        detail = "done"
    label = f"{node.name} "
    return (f"{index:>{width}}/{total} {word:<5} {kind:<11} {label:.<44} "
            f"{detail:>14} in {result.execution_time:6.2f}s")


def summary_lines(results: list[NodeResult], elapsed: float) -> list[str]:
    """The closing lines: how many nodes ended how, then each error, failure and warning."""
    counts: dict[Status, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    lines = [f"Finished {len(results)} node{'s' * (len(results) != 1)} in {elapsed:.1f}s: " + ", ".join(
        f"{counts[s]} {w.lower()}" for s, w in SUMMARY_WORDS if counts.get(s))]
    for r in results:
        if r.status not in PROBLEM_HEADINGS:
            continue
        lines.append(f"\n{PROBLEM_HEADINGS[r.status]} {r.resource_type} {r.name}:")
        lines.append(f"  {r.message}" if r.message else "")
        if r.resource_type == TEST and r.compiled_path:
            lines.append(f"  compiled SQL: {r.compiled_path}")
    return lines


def pending_note(pending: dict, failed: bool) -> str | None:
    """What the user should know about tables left staged and not visible, if any."""
    if not pending:
        return None
    names = ", ".join(sorted(pending))
    if failed:
        return (f"\nReaders still see the last good build. Written but not visible yet: {names}. "
                f"The next build or `python runner.py retry` reuses them and makes them visible.")
    return (f"\nWritten by an earlier failed build and not visible yet: {names}. "
            f"A build that selects them, or `python runner.py retry`, makes them visible.")
