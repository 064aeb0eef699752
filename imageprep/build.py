"""Run the selected nodes in graph order: seeds, models and tests, with progress and results.

A node whose parent failed (or whose parent's error-severity test failed) is skipped and said
to be; independent branches go on unless --fail-fast is given.

The nodes publish into the warehouse's staging (Warehouse.begin_build): the run reads its own
tables as it writes them, readers keep the last committed build, and the caller commits once at
the end (names_to_commit says what).
"""
from __future__ import annotations

import logging
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .artifacts import NodeResult, compiled_path
from .catalog import register_warehouse
from .data_tests import run_test
from .errors import ProjectError
from .fingerprint import TestState
from .graph import Graph
from .materialize import load_seed, materialize_model
from . import new_rows
from .nodes import MODEL, SEED, SOURCE, TEST
from .sources import read_source
from .warehouse import Warehouse

log = logging.getLogger("imageprep")

RUNS = {"build": {MODEL, SEED, TEST}, "run": {MODEL}, "test": {TEST}, "seed": {SEED}}
SQL_REJECTED = ("AnalysisException", "ParseException")


@dataclass
class Execution:
    spark: object
    project: object
    graph: Graph
    warehouse: Warehouse
    executable_sql: dict[str, str]
    fail_fast: bool = False
    echo: Callable[[str], None] = print
    full_refresh: bool = False
    threads: int = 1
    fingerprints: dict[str, str | None] = field(default_factory=dict)
    logic_prints: dict[str, str] = field(default_factory=dict)  # fingerprints without the parents
    baseline_sql: dict[str, str] = field(default_factory=dict)  # SQL as on a first build
    test_state: TestState | None = None
    incremental_models: set[str] = field(default_factory=set)  # rendered with is_incremental() true
    registered_sources: set[str] = field(default_factory=set)
    listings: dict = field(default_factory=dict)  # image folders as this run listed them, by relation


def execute(ex: Execution, command: str, selected: list[str]) -> list[NodeResult]:
    kinds = RUNS[command]
    to_run = [uid for uid in selected if ex.graph.nodes[uid].resource_type in kinds]
    # Start from this project's tables only: a long-lived session may hold another project's views.
    for table in ex.spark.catalog.listTables():
        if table.isTemporary:
            ex.spark.catalog.dropTempView(table.name)
    register_warehouse(ex.spark, ex.warehouse)  # tables of earlier builds, for partial selections
    total = len(to_run)
    chosen = set(to_run)
    waits = {uid: _waits_for(ex.graph, uid, chosen) for uid in to_run}
    results: dict[str, NodeResult] = {}
    blocked: set[str] = set()  # failed or skipped nodes, and models whose error-severity test failed
    pending = list(to_run)  # in graph order: the first ready node is started first
    running: dict = {}
    printed = 0
    stop = False
    with ThreadPoolExecutor(max_workers=max(1, ex.threads), thread_name_prefix="node") as pool:
        while pending or running:
            for uid in [u for u in pending if all(w in results for w in waits[u])]:
                if len(running) >= max(1, ex.threads):
                    break
                pending.remove(uid)
                node = ex.graph.nodes[uid]
                upstream = ex.graph.parents[uid] & blocked
                if stop or upstream:
                    why = "--fail-fast: an earlier node failed" if stop else \
                        "upstream failed: " + ", ".join(sorted(ex.graph.nodes[u].name for u in upstream))
                    results[uid] = NodeResult(uid, node.name, node.resource_type, "skipped", message=why,
                                              materialized=node.materialized)
                    blocked.add(uid)
                else:
                    running[pool.submit(_run_in_pool, ex, node, len(running))] = uid
            # Progress is printed in graph order, whatever order concurrent nodes finish in.
            while printed < total and to_run[printed] in results:
                uid = to_run[printed]
                printed += 1
                ex.echo(progress_line(printed, total, ex.graph.nodes[uid], results[uid]))
                for example in results[uid].examples:
                    ex.echo(f"           {example}")
            if not running:
                continue
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in finished:
                uid = running.pop(future)
                node, result = ex.graph.nodes[uid], future.result()
                results[uid] = result
                if result.status in ("error", "fail"):
                    blocked.add(uid)
                    if node.resource_type == TEST and node.attached_to:
                        blocked.add(node.attached_to)
                    stop = stop or ex.fail_fast
    return [results[uid] for uid in to_run]


def names_to_commit(ex: Execution, command: str, selected: list[str], results: list[NodeResult],
                    retry: bool = False) -> list[str] | None:
    """The models and seeds whose staged tables and views the run makes visible when it ends.

    None after an error or a failing test: everything the run wrote stays pending, readers keep
    the last good build, and the next run reuses the tables (unchanged fingerprints). Otherwise
    the selected models and seeds, ran or unchanged. A retry continues failed runs, so it also
    commits the pending entries that are still current: their fingerprint is the node's now, so
    a build would keep them as they are."""
    if any(r.status in ("error", "fail") for r in results):
        return None
    kinds = RUNS[command] - {TEST}
    names = {ex.graph.nodes[uid].name for uid in selected if ex.graph.nodes[uid].resource_type in kinds}
    if retry:
        uids = {node.name: uid for uid, node in ex.graph.nodes.items() if node.resource_type in (MODEL, SEED)}
        names |= {name for name, entry in ex.warehouse.pending().items()
                  if name in uids and entry.get("fingerprint")
                  and entry["fingerprint"] == ex.fingerprints.get(uids[name])}
    return sorted(names)


def merge_passes(first: list[NodeResult], again: list[NodeResult]) -> list[NodeResult]:
    """One result per node over two passes of a run: the second's, unless it found nothing to redo."""
    done = {r.unique_id: r for r in first}
    return [done.get(r.unique_id, r) if r.status == UNCHANGED else r for r in again]


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


def _waits_for(graph: Graph, uid: str, chosen: set[str]) -> set[str]:
    """Selected nodes to finish first: the node's parents and the tests of those parents."""
    parents = graph.parents[uid] & chosen
    if graph.nodes[uid].resource_type == TEST:
        return parents
    # Only tests placed earlier in graph order: a relationships test may read this node too.
    tests = {child for parent in parents for child in graph.children[parent]
             if child in chosen and graph.nodes[child].resource_type == TEST
             and graph.position[child] < graph.position[uid]}
    return parents | tests


def _run_in_pool(ex: Execution, node, slot: int) -> NodeResult:
    # One FAIR scheduler pool per concurrent node, so models running together share the cores.
    ex.spark.sparkContext.setLocalProperty("spark.scheduler.pool", f"node-{slot}")
    return _run_node(ex, node)


def _run_node(ex: Execution, node) -> NodeResult:
    started = time.perf_counter()
    sql = ex.executable_sql.get(node.unique_id)
    shown_sql = str(compiled_path(ex.project.target_path, ex.project.name, node).relative_to(ex.project.root))
    result = NodeResult(node.unique_id, node.name, node.resource_type, "success",
                        materialized=node.materialized, compiled_path=shown_sql if sql else None)
    ex.spark.sparkContext.setJobDescription(f"{node.resource_type} {node.name}")
    fingerprint = ex.fingerprints.get(node.unique_id)
    built = ex.warehouse.catalog().get(node.name) or {}  # the model's or seed's table as last built
    if _unchanged(ex, node, fingerprint, built):
        result.status = UNCHANGED
        result.rows = built.get("rows")
        result.message = "unchanged since the last build (use --full-refresh to rebuild)"
        return result
    logic = ex.logic_prints.get(node.unique_id)
    try:
        _register_sources(ex, node)
        files_now = new_rows.register(ex.spark, ex.warehouse, node, _seen_before(ex, node, logic, built),
                                      sources={s.relation: s for s in ex.project.sources.values()},
                                      listings=ex.listings)
        if node.resource_type == SEED:
            written = load_seed(ex.spark, node, ex.project.root, ex.warehouse, fingerprint)
            result.rows = written.rows
        elif node.resource_type == MODEL:
            incremental = node.name in ex.incremental_models
            if incremental and logic != built.get("logic"):
                # What the model computes changed (its SQL, a var, a macro, a function's code): the
                # rows it holds were made the old way, so it is rebuilt from scratch.
                incremental, sql = False, ex.baseline_sql.get(node.unique_id, sql)
                result.message = "its logic changed since the table was built: rebuilt in full"
            elif incremental and _full_refresh_wanted(ex.spark, node):
                incremental, sql = False, ex.baseline_sql.get(node.unique_id, sql)
                result.message = "full_refresh_when held: rebuilt in full"
            written = materialize_model(ex.spark, node, sql, ex.warehouse, fingerprint,
                                        incremental=incremental, logic=logic, seen=files_now)
            result.rows = written.rows
        else:
            outcome = run_test(ex.spark, node, sql)
            result.status, result.failures, result.examples = outcome.status, outcome.failures, outcome.examples
            if outcome.failures:
                result.message = f"{outcome.failures} failing row{'s' * (outcome.failures != 1)}"
            if ex.test_state is not None:
                ex.test_state.record(node.unique_id, fingerprint, outcome.status, logic=logic, seen=files_now)
    except ProjectError as exc:
        result.status, result.message, result.project_error = "error", str(exc), True
    except Exception as exc:  # Spark rejected the SQL, or a function failed on the data
        kind = type(exc).__name__
        result.status = "error"
        result.project_error = kind in SQL_REJECTED
        what = "Spark rejected the SQL" if result.project_error else f"{kind} while running"
        where = f" (compiled SQL: {shown_sql})" if sql else ""
        result.message = f"{node.resource_type} '{node.name}' in {node.path}: {what}{where}:\n{_spark_message(exc)}"
        log.debug("%s failed:\n%s", node.unique_id, traceback.format_exc())
    finally:
        new_rows.drop(ex.spark, node)
    result.execution_time = time.perf_counter() - started
    log.info("%s %s %s rows=%s %.2fs %s", node.unique_id, result.status, node.materialized, result.rows,
             result.execution_time, result.message or "")
    return result


UNCHANGED = "skipped: unchanged"


def _unchanged(ex: Execution, node, fingerprint: str | None, built: dict) -> bool:
    """True when the node's stored result was made from exactly the same inputs."""
    if ex.full_refresh or not fingerprint:
        return False
    if node.resource_type == TEST:
        return ex.test_state is not None and ex.test_state.passed_with(node.unique_id, fingerprint)
    if node.resource_type == MODEL and node.materialized == "ephemeral":
        return False
    return built.get("fingerprint") == fingerprint


def _seen_before(ex: Execution, node, logic: str | None, built: dict) -> dict[str, list[str]] | None:
    """The files of each table the node read through new_rows() when it last ran the same way."""
    if ex.full_refresh or not node.new_rows_of:
        return None
    if node.resource_type == TEST:
        return ex.test_state.seen_when_passed(node.unique_id, logic) if ex.test_state is not None else None
    return ex.warehouse.seen_by(built) if built.get("logic") == logic else None


def _full_refresh_wanted(spark, model) -> bool:
    """Whether the model's full_refresh_when condition holds now (before an incremental build)."""
    condition = model.config.get("full_refresh_when")
    if not condition:
        return False
    try:
        # A WHERE clause, so the condition may use EXISTS and IN subqueries.
        return bool(spark.sql(f"SELECT 1 AS wanted WHERE {condition}").take(1))
    except Exception as exc:
        raise ProjectError(f"full_refresh_when of '{model.name}' is not a valid condition: "
                           f"{str(exc).splitlines()[0]}", path=model.path) from None


def _register_sources(ex: Execution, node) -> None:
    for parent in ex.graph.parents[node.unique_id]:
        source = ex.graph.nodes[parent]
        if source.resource_type != SOURCE or parent in ex.registered_sources:
            continue
        read_source(ex.spark, source, ex.listings.get(source.relation)).createOrReplaceTempView(source.relation)
        ex.registered_sources.add(parent)


def _spark_message(exc: Exception, max_lines: int = 12) -> str:
    text = str(exc).strip()
    # Python worker errors carry the whole worker traceback; its last lines say what failed.
    if "Traceback (most recent call last)" in text:
        lines = [l for l in text.splitlines() if l.strip()]
        tail = [l for l in lines if not l.startswith(("  File", "    "))][-3:]
        return "\n".join(f"  {l.strip()}" for l in tail)
    lines = text.splitlines()
    kept = lines[:max_lines]
    if len(lines) > max_lines:
        kept.append(f"... ({len(lines) - max_lines} more lines in target/runner.log)")
    return "\n".join(f"  {l}" for l in kept)


STATUS_WORDS = {"success": "OK", "pass": "PASS", "warn": "WARN", "fail": "FAIL", "error": "ERROR", "skipped": "SKIP",
                UNCHANGED: "SAME"}


def progress_line(index: int, total: int, node, result: NodeResult) -> str:
    width = len(str(total))
    kind = node.materialized if node.resource_type == MODEL else node.resource_type
    word = STATUS_WORDS.get(result.status, result.status.upper())
    if result.status in ("error", "skipped"):
        detail = result.status
    elif result.status == UNCHANGED:
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


def summary(results: list[NodeResult], elapsed: float) -> tuple[list[str], int]:
    """Closing lines and the exit code (0 all good, 1 a node failed, 2 the project was wrong)."""
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    lines = [f"Finished {len(results)} node{'s' * (len(results) != 1)} in {elapsed:.1f}s: " + ", ".join(
        f"{counts.get(s, 0)} {w.lower()}" for s, w in
        [("success", "OK"), ("pass", "PASS"), (UNCHANGED, "UNCHANGED"), ("warn", "WARN"), ("fail", "FAIL"),
         ("error", "ERROR"), ("skipped", "SKIP")] if counts.get(s))]
    problems = [r for r in results if r.status in ("error", "fail", "warn")]
    for r in problems:
        head = {"error": "Error in", "fail": "Failure in", "warn": "Warning in"}[r.status]
        lines.append(f"\n{head} {r.resource_type} {r.name}:")
        lines.append(f"  {r.message}" if r.message else "")
        if r.resource_type == TEST and r.compiled_path:
            lines.append(f"  compiled SQL: {r.compiled_path}")
    if any(r.status == "error" and r.project_error for r in results):
        code = 2
    elif any(r.status in ("error", "fail") for r in results):
        code = 1
    else:
        code = 0
    return lines, code
