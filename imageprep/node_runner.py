"""Run one node: load a seed, build a model or run a data test, and say how it went.

A node whose stored result was made from exactly the same inputs (the same fingerprint) is not
run again: it is UNCHANGED. An incremental model adds the rows it lacks, unless what it computes
changed since its table was built (its logic fingerprint) or its full_refresh_when holds: then
it is rebuilt in full, from its SQL as on a first build. A test's outcome is recorded with its
fingerprint, so a test that passed on the same inputs is not run again.

Whatever goes wrong becomes the node's result, never an exception: SQL that Spark rejects or a
mistake in the project is the project's fault (`project_error`, exit code 2); anything else
failed while running (exit code 1). The full traceback goes to target/runner.log.

What every node of one pass of a build shares (the session, the staged warehouse, the compiled
project, the pass's fingerprints) is a NodeContext.
"""
from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import native_tests, new_rows
from .artifacts import NodeResult, compiled_path
from .catalog import register_warehouse
from .connect import ActionBeside, label_jobs, use_scheduler_pool
from .data_tests import count_failures_together, run_test
from .errors import ProjectError
from .fingerprint import TestState
from .materialize import load_seed, materialize_model
from .nodes import MODEL, SEED, SOURCE, TEST, Materialization
from .sources import read_source
from .status import Status
from .warehouse import Warehouse

if TYPE_CHECKING:
    from .tasks import CompiledProject, PassInputs

log = logging.getLogger("imageprep")


@dataclass
class NodeContext:
    """What the nodes of one pass of a build run with."""

    spark: Any
    warehouse: Warehouse  # staged (begin_build): nodes read the tables this build wrote before them
    compiled: CompiledProject
    inputs: PassInputs  # this pass's fingerprints and image folder listings
    test_state: TestState | None = None
    full_refresh: bool = False
    registered_sources: set[str] = field(default_factory=set)  # sources already made temp views


def prepare_session(spark, warehouse: Warehouse) -> None:
    """Make the session see this project's tables only, before a pass runs its nodes."""
    # A long-lived session may hold another project's views.
    for table in spark.catalog.listTables():
        if table.isTemporary:
            spark.catalog.dropTempView(table.name)
    register_warehouse(spark, warehouse)  # tables of earlier builds, for partial selections


def run_in_slot(ctx: NodeContext, node, slot: int) -> NodeResult:
    """run_node in the scheduler's worker thread `slot`."""
    # One FAIR scheduler pool per concurrent node, so models running together share the cores.
    use_scheduler_pool(ctx.spark, f"node-{slot}")
    return run_node(ctx, node)


def run_tests_in_slot(ctx: NodeContext, tests: list, slot: int) -> list[NodeResult]:
    """run_tests_together in the scheduler's worker thread `slot`."""
    use_scheduler_pool(ctx.spark, f"node-{slot}")
    return run_tests_together(ctx, tests)


def run_tests_together(ctx: NodeContext, tests: list) -> list[NodeResult]:
    """Data tests of one model, their failing rows counted in one Spark action: each test's query
    costs a job of its own otherwise, mostly fixed cost, as a test usually reads a few new rows.
    A test that fails, or that Spark rejects, runs again on its own, so its examples and errors
    are its own; so does every test if the shared action cannot run."""
    # Results known without Spark: unchanged tests, and built-in ones PyArrow finds passing.
    known = {test.unique_id: unchanged_result(ctx, test) for test in tests}
    for test in tests:
        known[test.unique_id] = known[test.unique_id] or passed_natively(ctx, test)
    to_check = [test for test in tests if known[test.unique_id] is None]
    if len(to_check) < 2:
        return [known[test.unique_id] or run_node(ctx, test, natively=False) for test in tests]
    started = time.perf_counter()
    label_jobs(ctx.spark, f"tests of {ctx.compiled.graph.nodes[to_check[0].attached_to].name}")
    together: dict[str, tuple] = {}  # unique id -> (the test's failing rows, the files it read)
    failing = None
    try:
        for test in to_check:
            try:
                _register_sources(ctx, test)
                seen_before = _seen_before(ctx, test, ctx.inputs.logic.get(test.unique_id), {})
                files_now = new_rows.register(ctx.spark, ctx.warehouse, test, seen_before,
                                              sources=ctx.compiled.sources_by_relation, listings=ctx.inputs.listings)
                together[test.unique_id] = (ctx.spark.sql(ctx.compiled.executable_sql[test.unique_id]), files_now)
            except Exception:  # noqa: BLE001 - Spark rejected it: its own run says why
                continue
        if together:
            failing = dict(zip(together, count_failures_together([frame for frame, _ in together.values()])))
    except Exception:  # run one by one: each test then reports its own error
        log.debug("tests run together failed; running them one by one:\n%s", traceback.format_exc())
        failing = None
    finally:
        for test in to_check:
            new_rows.drop(ctx.spark, test)
    share = (time.perf_counter() - started) / max(1, len(together))
    results = []
    for test in tests:
        if known[test.unique_id] is not None:
            results.append(known[test.unique_id])
        elif failing is None or failing.get(test.unique_id, 1):
            results.append(run_node(ctx, test, natively=False))
        else:
            results.append(_passed(ctx, test, together[test.unique_id][1], share,
                                   "checked with the other tests of its model"))
    return results


def passed_natively(ctx: NodeContext, test) -> NodeResult | None:
    """The result of a built-in test that PyArrow answers and finds passing (native_tests); None
    when Spark is to run it."""
    started = time.perf_counter()
    seen_before = _seen_before(ctx, test, ctx.inputs.logic.get(test.unique_id), {})
    files_now = native_tests.passes(ctx.warehouse, test, seen_before)
    if files_now is None:
        return None
    return _passed(ctx, test, files_now, time.perf_counter() - started, "read with PyArrow")


def _passed(ctx: NodeContext, test, files_now: dict, seconds: float, how: str) -> NodeResult:
    """A test that found no failing rows, recorded as run_node records it."""
    _remember_test(ctx, test, Status.PASS, files_now)
    result = NodeResult(test.unique_id, test.name, test.resource_type, Status.PASS, failures=0,
                        execution_time=seconds, materialized=test.materialized, compiled_path=_shown_sql(ctx, test))
    log.info("%s %s (%s) %.2fs", test.unique_id, result.status, how, seconds)
    return result


def _remember_test(ctx: NodeContext, test, status: Status, files_now: dict) -> None:
    """Record a test's outcome with its fingerprint and the files it read (for the next run)."""
    if ctx.test_state is not None:
        ctx.test_state.record(test.unique_id, ctx.inputs.fingerprints.get(test.unique_id), status,
                              logic=ctx.inputs.logic.get(test.unique_id), seen=files_now)


def run_node(ctx: NodeContext, node, natively: bool = True) -> NodeResult:
    """Run the node (a test, first natively where it can be: `natively`)."""
    compiled = ctx.compiled
    project = compiled.project
    started = time.perf_counter()
    built = ctx.warehouse.catalog().get(node.name) or {}  # the model's or seed's table as last built
    known = unchanged_result(ctx, node, built)
    if known is None and natively and node.resource_type == TEST:
        known = passed_natively(ctx, node)
    if known is not None:
        return known
    sql = compiled.executable_sql.get(node.unique_id)
    shown_sql = _shown_sql(ctx, node)
    result = NodeResult(node.unique_id, node.name, node.resource_type, Status.SUCCESS,
                        materialized=node.materialized, compiled_path=shown_sql)
    label_jobs(ctx.spark, f"{node.resource_type} {node.name}")
    fingerprint = ctx.inputs.fingerprints.get(node.unique_id)
    logic = ctx.inputs.logic.get(node.unique_id)
    try:
        _register_sources(ctx, node)
        files_now = new_rows.register(ctx.spark, ctx.warehouse, node, _seen_before(ctx, node, logic, built),
                                      sources=compiled.sources_by_relation, listings=ctx.inputs.listings)
        if node.resource_type == SEED:
            written = load_seed(ctx.spark, node, project.root, ctx.warehouse, fingerprint)
            result.rows = written.rows
        elif node.resource_type == MODEL:
            incremental = node.name in compiled.incremental_models
            if incremental and logic != built.get("logic"):
                # What the model computes changed (its SQL, a var, a macro, a function's code): the
                # rows it holds were made the old way, so it is rebuilt from scratch.
                incremental, sql = False, compiled.baseline_sql.get(node.unique_id, sql)
                result.message = "its logic changed since the table was built: rebuilt in full"
            check = FullRefreshCheck(ctx.spark, node) if incremental and node.config.get("full_refresh_when") else None
            try:
                written = materialize_model(ctx.spark, node, sql, ctx.warehouse, fingerprint, incremental=incremental,
                                            logic=logic, seen=files_now, confirm=check and check.confirm,
                                            folders=_folders(ctx))
            except FullRefreshWanted:  # the incremental version was discarded unpublished
                written = materialize_model(ctx.spark, node, compiled.baseline_sql.get(node.unique_id, sql),
                                            ctx.warehouse, fingerprint, incremental=False, logic=logic, seen=files_now)
                result.message = "full_refresh_when held: rebuilt in full"
            finally:
                if check is not None:
                    check.close()
            result.rows = written.rows
        else:
            outcome = run_test(ctx.spark, node, sql)
            result.status, result.failures, result.examples = outcome.status, outcome.failures, outcome.examples
            if outcome.failures:
                result.message = f"{outcome.failures} failing row{'s' * (outcome.failures != 1)}"
            _remember_test(ctx, node, outcome.status, files_now)
    except ProjectError as exc:
        result.status, result.message, result.project_error = Status.ERROR, str(exc), True
    except Exception as exc:  # Spark rejected the SQL, or a function failed on the data
        result.status = Status.ERROR
        result.project_error = _rejected_by_spark(exc)
        what = "Spark rejected the SQL" if result.project_error else f"{type(exc).__name__} while running"
        where = f" (compiled SQL: {shown_sql})" if shown_sql else ""
        result.message = f"{node.resource_type} '{node.name}' in {node.path}: {what}{where}:\n{_spark_message(exc)}"
        log.debug("%s failed:\n%s", node.unique_id, traceback.format_exc())
    finally:
        new_rows.drop(ctx.spark, node)
    result.execution_time = time.perf_counter() - started
    log.info("%s %s %s rows=%s %.2fs %s", node.unique_id, result.status, node.materialized, result.rows,
             result.execution_time, result.message or "")
    return result


def unchanged_result(ctx: NodeContext, node, built: dict | None = None) -> NodeResult | None:
    """The node's result if its stored result was made from exactly the same inputs (None if it
    has work to do). Needs no Spark: a build with nothing to do does not start it. `built`: the
    node's catalog entry, when the caller has read the catalog already."""
    fingerprint = ctx.inputs.fingerprints.get(node.unique_id)
    if built is None:
        built = ctx.warehouse.catalog().get(node.name) or {}  # the model's or seed's table as last built
    if not _unchanged(ctx, node, fingerprint, built):
        return None
    return NodeResult(node.unique_id, node.name, node.resource_type, Status.UNCHANGED, rows=built.get("rows"),
                      message="unchanged since the last build (use --full-refresh to rebuild)",
                      materialized=node.materialized, compiled_path=_shown_sql(ctx, node))


def _shown_sql(ctx: NodeContext, node) -> str | None:
    """Where the node's executable SQL was written, relative to the project (None without SQL)."""
    project = ctx.compiled.project
    if not ctx.compiled.executable_sql.get(node.unique_id):
        return None
    return str(compiled_path(project.target_path, project.name, node).relative_to(project.root))


def _rejected_by_spark(exc: Exception) -> bool:
    """SQL that Spark could not parse or resolve (a missing column, a type mismatch): the
    project's mistake, not a failure while running."""
    # Imported here: this module loads with the command line, pyspark only when Spark starts.
    from pyspark.errors import AnalysisException, ParseException

    return isinstance(exc, (AnalysisException, ParseException))


def _unchanged(ctx: NodeContext, node, fingerprint: str | None, built: dict) -> bool:
    """True when the node's stored result was made from exactly the same inputs."""
    if ctx.full_refresh or not fingerprint:
        return False
    if node.resource_type == TEST:
        return ctx.test_state is not None and ctx.test_state.passed_with(node.unique_id, fingerprint)
    if node.resource_type == MODEL and node.materialized == Materialization.EPHEMERAL:
        return False
    return built.get("fingerprint") == fingerprint


def _seen_before(ctx: NodeContext, node, logic: str | None, built: dict) -> dict[str, list[str]] | None:
    """The files of each table the node read through new_rows() when it last ran the same way."""
    if ctx.full_refresh or not node.new_rows_of:
        return None
    if node.resource_type == TEST:
        return ctx.test_state.seen_when_passed(node.unique_id, logic) if ctx.test_state is not None else None
    return ctx.warehouse.seen_by(built) if built.get("logic") == logic else None


class FullRefreshWanted(Exception):
    """An incremental model's full_refresh_when held: it is to be rebuilt in full."""


class FullRefreshCheck:
    """An incremental model's full_refresh_when condition, checked by a Spark action of its own
    while the incremental build runs (it rarely holds: waiting for it first would add its whole
    time to every build). `confirm` is called before the new version is published, and raises
    FullRefreshWanted if the condition held, so the version is discarded and the model rebuilt."""

    def __init__(self, spark, model):
        self._wanted = ActionBeside(spark, f"model {model.name} (full_refresh_when)", _full_refresh_wanted, spark, model)

    def confirm(self) -> None:
        if self._wanted.result():
            raise FullRefreshWanted()

    def close(self) -> None:
        self._wanted.close()


def _full_refresh_wanted(spark, model) -> bool:
    """Whether the model's full_refresh_when condition holds now (on the tables before this build of it)."""
    condition = model.config.get("full_refresh_when")
    if not condition:
        return False
    try:
        # A WHERE clause, so the condition may use EXISTS and IN subqueries.
        return bool(spark.sql(f"SELECT 1 AS wanted WHERE {condition}").take(1))
    except Exception as exc:
        raise ProjectError(f"full_refresh_when of '{model.name}' is not a valid condition: "
                           f"{str(exc).splitlines()[0]}", path=model.path) from None


def _folders(ctx: NodeContext) -> dict:
    """The image folders this build listed, by relation: (source, listing)."""
    sources = ctx.compiled.sources_by_relation
    return {relation: (sources[relation], listing) for relation, listing in ctx.inputs.listings.items()
            if relation in sources}


def _register_sources(ctx: NodeContext, node) -> None:
    graph = ctx.compiled.graph
    for parent in graph.parents[node.unique_id]:
        source = graph.nodes[parent]
        if source.resource_type != SOURCE or parent in ctx.registered_sources:
            continue
        read_source(ctx.spark, source, ctx.inputs.listings.get(source.relation)).createOrReplaceTempView(source.relation)
        ctx.registered_sources.add(parent)


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
