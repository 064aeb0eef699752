"""What the docs site shows, gathered from the project, target/run_results.json and the warehouse.

Nothing here writes files or HTML: `collect` returns a `Site` of plain values that `pages`
renders. Tables are read with PyArrow (see `tables`), so no Spark starts.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa

from ..errors import ProjectError
from ..nodes import MODEL, SEED, SOURCE, TEST, Materialization
from ..status import Status
from ..files import is_uri
from ..warehouse import CATALOG_FILE
from . import thumbnails
from .tables import StoredTable, is_text

GALLERY_SIZE = 24
REASON_ROWS = 500
FOLDERS = {MODEL: "models", SEED: "seeds", SOURCE: "sources"}
GOOD, BAD = {Status.SUCCESS, Status.PASS, Status.UNCHANGED}, {Status.ERROR, Status.FAIL}


@dataclass
class RunInfo:
    """The last run (target/run_results.json): its command, when it finished and each node's result."""

    command: str
    finished: str
    elapsed: float
    results: dict[str, dict]

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for result in self.results.values():
            word = status_word(result["status"])
            counts[word] = counts.get(word, 0) + 1
        return counts


@dataclass
class ColumnDoc:
    name: str
    type: str
    description: str
    in_table: bool = True


@dataclass
class TestDoc:
    uid: str
    name: str
    anchor: str
    column: str | None
    severity: str
    checks: list[str]
    sql: str | None
    result: dict | None
    href: str = ""  # the page that lists it, with #anchor, relative to the site root


@dataclass
class Thumb:
    file: str  # relative to the site root, e.g. img/images_resized/00.jpg
    jpeg: bytes
    width: int
    height: int
    source_size: str
    label: str | None
    path: str | None
    short_path: str
    note: str = ""


@dataclass
class Gallery:
    column: str
    total: int
    thumbs: list[Thumb]
    histogram: object | None = None  # (3, bins) fractions from the sampled images


@dataclass
class Page:
    """One source, seed or model: the page `href` (relative to the site root) and what it shows."""

    uid: str
    node: object
    href: str
    storage: str  # a sentence: where and how the data is kept, or why there is none
    stored: str = "missing"  # table | view | ephemeral | source | missing
    table: StoredTable | None = None
    rows: int | None = None
    result: dict | None = None
    columns: list[ColumnDoc] = field(default_factory=list)
    tests: list[TestDoc] = field(default_factory=list)
    raw_sql: str | None = None
    compiled_sql: str | None = None
    galleries: list[Gallery] = field(default_factory=list)
    label_counts: list[tuple[str | None, int]] | None = None
    histogram: object | None = None  # mean of the table's color_histogram column, (channels, bins)
    histogram_column: str | None = None
    reasons: pa.Table | None = None
    reasons_total: int = 0


@dataclass
class Site:
    project: object
    target: str
    graph: object
    run: RunInfo | None
    pages: dict[str, Page]  # by unique id, in graph order
    tests: dict[str, TestDoc]
    warehouse: str
    notes: list[str] = field(default_factory=list)


def status_word(status: str | None) -> str:
    if status is None:
        return "not run"
    return {Status.SUCCESS: "ok", Status.UNCHANGED: "unchanged"}.get(status, status)


def status_class(status: str | None) -> str:
    if status is None:
        return "unknown"
    if status in GOOD:
        return "good"
    if status in BAD:
        return "bad"
    return "warn" if status == Status.WARN else "skipped"


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def read_run_results(target_path: Path) -> RunInfo | None:
    path = target_path / "run_results.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    stamp = (data.get("metadata") or {}).get("generated_at", "")
    try:
        finished = datetime.fromisoformat(stamp).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        finished = stamp
    return RunInfo(data.get("command", "?"), finished, float(data.get("elapsed_time") or 0.0),
                   {r["unique_id"]: r for r in data.get("results", [])})


class _Tables:
    """The warehouse's catalog and its tables, read with PyArrow (a local folder or a URI PyArrow reads)."""

    def __init__(self, location: str):
        self.location, self.filesystem = location, None
        self.root = location
        if is_uri(location):
            from pyarrow import fs

            try:
                self.filesystem, self.root = fs.FileSystem.from_uri(location)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
                raise ProjectError(f"the warehouse {location} cannot be read without Spark ({exc}); "
                                   f"the docs need a local warehouse or one PyArrow can read") from None
        self.catalog = self._read_catalog()

    def _read_catalog(self) -> dict:
        path = f"{self.root.rstrip('/')}/{CATALOG_FILE}"
        if self.filesystem is None:
            return json.loads(Path(path).read_text(encoding="utf-8")) if Path(path).exists() else {}
        try:
            with self.filesystem.open_input_stream(path) as stream:
                return json.loads(stream.read().decode("utf-8"))
        except FileNotFoundError:
            return {}

    def table(self, name: str) -> StoredTable | None:
        """The current version of a table; None if it was never built or its folder is gone."""
        entry = self.catalog.get(name) or {}
        if entry.get("kind") != "table":
            return None
        try:
            return StoredTable(name, f"{self.root.rstrip('/')}/{entry['version']}", self.filesystem)
        except (FileNotFoundError, pa.ArrowInvalid):
            return None


def collect(project, target, graph, executable: dict[str, str]) -> Site:
    """Everything the site shows. Raises ProjectError when nothing has been built yet."""
    location = project.warehouse_for(target)
    tables = _Tables(location)
    shown = location if is_uri(location) else project.rel(Path(location))
    if not tables.catalog:
        raise ProjectError(f"nothing has been built yet (no tables in {shown}): run `python runner.py build` "
                           f"first, then `python runner.py docs`")
    run = read_run_results(project.target_path)
    site = Site(project, target.name, graph, run, {}, {}, shown)
    if run is None:
        site.notes.append("There is no target/run_results.json, so build statuses and test results are not shown.")
    for uid in graph.order:
        node = graph.nodes[uid]
        if node.resource_type == TEST:
            site.tests[uid] = _test_doc(graph, uid, executable, run)
    for uid in graph.order:
        node = graph.nodes[uid]
        if node.resource_type != TEST:
            site.pages[uid] = _page(graph, uid, executable, run, tables, site.tests)
    for test in site.tests.values():  # link each test to the page that lists it first
        host = _test_host(graph, test.uid)
        test.href = f"{site.pages[host].href}#{test.anchor}" if host in site.pages else ""
    return site


def _test_host(graph, uid: str) -> str | None:
    attached = getattr(graph.nodes[uid], "attached_to", None)
    if attached:
        return attached
    parents = sorted(graph.parents[uid], key=lambda p: graph.position[p])
    return parents[-1] if parents else None


def _test_doc(graph, uid: str, executable: dict[str, str], run: RunInfo | None) -> TestDoc:
    node = graph.nodes[uid]
    checks = [graph.nodes[p].name for p in sorted(graph.parents[uid], key=lambda p: graph.position[p])]
    return TestDoc(uid, node.name, f"test-{slug(node.name)}", node.column_name, node.severity, checks,
                   executable.get(uid), run.results.get(uid) if run else None)


def _tests_on(graph, uid: str, tests: dict[str, TestDoc]) -> list[TestDoc]:
    """Tests declared on the node, and singular tests that read it."""
    out = []
    for tuid in sorted(graph.children[uid], key=lambda t: graph.position[t]):
        node = graph.nodes[tuid]
        if node.resource_type == TEST and (node.attached_to == uid or node.attached_to is None):
            out.append(tests[tuid])
    return out


def _page(graph, uid: str, executable, run, tables: _Tables, tests) -> Page:
    node = graph.nodes[uid]
    href = f"{FOLDERS[node.resource_type]}/{slug(node.name)}.html"
    page = Page(uid, node, href, "", result=run.results.get(uid) if run else None,
                tests=_tests_on(graph, uid, tests))
    described = getattr(node, "columns", None) or {}
    entry = tables.catalog.get(node.name) or {}
    if node.resource_type == SOURCE:
        page.stored = "source"
        page.storage = f"Read by each build from {node.location or node.relation} ({node.format}); not stored."
    elif node.resource_type == MODEL and node.materialized == Materialization.EPHEMERAL:
        page.stored, page.storage = "ephemeral", "Ephemeral: inlined as a CTE into the models that use it; not stored."
    elif entry.get("kind") == "view":
        page.stored = "view"
        page.storage = "A view: stored as SQL and computed when read, so it has no row count here."
    else:
        page.table = tables.table(node.name)
        if page.table is not None:
            page.stored, page.storage = "table", f"Parquet table, version {entry['version'].rsplit('/', 1)[-1]}."
        else:
            page.stored, page.storage = "missing", "Not built yet: run `python runner.py build` to create it."
    if page.stored == "table" and page.result and page.result.get("status") in BAD:
        page.storage += " This is the last good version: the last run of this model failed."
    if node.resource_type == MODEL:
        page.raw_sql, page.compiled_sql = node.raw_sql, executable.get(uid)
    page.columns = _columns(page.table, described)
    if page.table is not None:
        page.rows = page.table.row_count
        _describe_data(page)
    return page


def _columns(table: StoredTable | None, described: dict[str, dict]) -> list[ColumnDoc]:
    docs = []
    if table is not None:
        for column in table.columns:
            info = described.get(column.name) or {}
            docs.append(ColumnDoc(column.name, column.type + ("" if column.nullable else " not null"),
                                  info.get("description") or ""))
    known = {c.name for c in docs}
    for name, info in described.items():
        if name not in known:
            docs.append(ColumnDoc(name, (info or {}).get("data_type") or "", (info or {}).get("description") or "",
                                  in_table=table is None))
    return docs


def _describe_data(page: Page) -> None:
    """Galleries of image columns, label counts, mean colour histogram, files with reasons."""
    table = page.table
    if table.has("label", is_text):
        page.label_counts = table.value_counts("label")
    if table.has("color_histogram", pa.types.is_list):
        page.histogram, page.histogram_column = table.mean_histogram("color_histogram"), "color_histogram"
    for column in table.image_columns:
        page.galleries.append(_gallery(table, column))
    if table.has("reason", is_text) and table.has("path", is_text):
        shown = [c for c in ("relative_path", "path", "label", "size_bytes", "reason") if table.has(c)]
        if "relative_path" in shown:
            shown.remove("path")
        rows = table.read(list(dict.fromkeys(["path", *shown])))
        page.reasons_total = rows.num_rows
        page.reasons = rows.sort_by([("path", "ascending")]).slice(0, REASON_ROWS).select(shown)


def _short(path: str, with_folder: bool) -> str:
    """The file name, with its folder when there is no label to show the class."""
    return "/".join(str(path).rstrip("/").split("/")[-2 if with_folder else -1:])


def _gallery(table: StoredTable, column: str) -> Gallery:
    wanted = [c for c in ("path", "label", "copy_index") if table.has(c)] + [column]
    sample = table.sample(wanted, column, GALLERY_SIZE).to_pylist()
    gallery, pictures = Gallery(column, table.row_count, []), []
    for i, row in enumerate(sample):
        rgb = thumbnails.to_rgb(row[column])
        if rgb is None:
            continue
        pictures.append(rgb)
        thumb = thumbnails.thumbnail(rgb)
        path = row.get("path")
        label = row.get("label")
        gallery.thumbs.append(Thumb(
            f"img/{slug(table.name)}/{slug(column)}-{i:02d}.jpg", thumb.jpeg, thumb.width, thumb.height,
            f"{thumb.source_width}\u00d7{thumb.source_height}", None if label is None else str(label), path,
            _short(path, with_folder=label is None) if path else f"row {i + 1}",
            f"copy {row['copy_index']}" if row.get("copy_index") is not None else ""))
    if pictures:
        gallery.histogram = sum(thumbnails.histogram(p) for p in pictures) / len(pictures)
    return gallery
