"""What the commands do, as functions a test or a notebook can call without the command line.

A build is five steps, each a function here:

    load               project.yml, models, macros, seeds and tests -> Project
    compile_project    render every model and test against the warehouse's tables, order them in
                       a Graph, write target/compiled/ and target/manifest.json -> CompiledProject
    select_nodes       --select / --exclude on that graph -> the ids to run, in graph order
    fingerprint_nodes  hash what decides each node's result, listing each image folder once
                       -> PassInputs
    execute            start Spark; run the selected nodes (scheduler.run_in_order, each with
                       node_runner.run_node), again while image files went away meanwhile; then
                       commit what the run wrote, together, if all went well -> RunResult

`build()` does all five under the warehouse's build lock, as `python runner.py build` does, and
`retry()` runs the last run again for the nodes that failed or were skipped:

    from imageprep import tasks
    result = tasks.build("path/to/project", vars={"image_size": 64}, select=["+splits"])
    result.exit_code, [(r.name, r.status) for r in result.results]

What a run prints goes through a progress.Reporter (pass your own to print elsewhere).

A build stages what it writes (Warehouse.begin_build) and commits it once at the end, and only
when no node failed: readers keep the last good build meanwhile, and a failed build's tables
stay pending for the next build or `retry` to reuse (see names_to_commit).
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import Any, Iterator

import yaml

from . import artifacts, fingerprint, node_runner, python_warmup
from .artifacts import NodeResult
from .build_lock import build_lock
from .errors import ProjectError
from .fingerprint import TestState
from .graph import Graph
from .nodes import MODEL, SEED, TEST, Source
from .progress import Reporter
from .project import Project, Target, load_project
from .render import Renderer
from .scheduler import run_in_order
from .selection import PreviousRun, select
from .sources import files_gone
from .status import Status
from .warehouse import Warehouse

# The commands that run nodes and publish tables, and the kinds of node each runs.
RUNS = {"build": {MODEL, SEED, TEST}, "run": {MODEL}, "test": {TEST}, "seed": {SEED}}
# Passes after the first when image files went away during the build; a folder that never stops
# changing ends there.
MAX_EXTRA_PASSES = 2
# The statuses `retry` runs again.
RETRIED = (Status.ERROR, Status.FAIL, Status.SKIPPED)


class UsageError(ProjectError):
    """A command or flag used the wrong way (exit code 2, like a project error)."""


@dataclass
class RunOptions:
    """The flags of build, run, test and seed; run_results.json keeps them for `retry`."""

    command: str = "build"  # a key of RUNS
    vars: str | dict | None = None  # YAML or JSON text, or a mapping; recorded as given
    target: str | None = None
    select: list[str] | None = None
    exclude: list[str] | None = None
    indirect_selection: str = "eager"
    full_refresh: bool = False
    fail_fast: bool = False
    threads: int | None = None  # None: the target's threads
    retry: bool = False  # continues failed runs: also commits what they left pending and still current

    def recorded(self) -> dict[str, Any]:
        """The flags as run_results.json records them."""
        return {key: getattr(self, key) for key in
                ("vars", "target", "select", "exclude", "indirect_selection", "full_refresh", "fail_fast")}


@dataclass
class CompiledProject:
    """A project rendered for one target: the graph, the SQL each model and test runs, and the last
    run (what state: and result: selectors compare with)."""

    project: Project
    target: Target
    renderer: Renderer
    graph: Graph
    executable_sql: dict[str, str]  # by unique id: models (ephemeral CTEs injected) and tests
    previous: PreviousRun

    @cached_property
    def baseline_sql(self) -> dict[str, str]:
        """The SQL as on a first build (is_incremental() false): what fingerprints cover, and what
        an incremental model runs when it is rebuilt in full."""
        return {**self.executable_sql, **{m.unique_id: self.renderer.executable_sql(m, baseline=True)
                                          for m in self.project.models.values()}}

    @property
    def incremental_models(self) -> set[str]:
        """Names of the models rendered with is_incremental() true."""
        return self.renderer.incremental_models

    @cached_property
    def sources_by_relation(self) -> dict[str, Source]:
        return {s.relation: s for s in self.project.sources.values()}


@dataclass
class PassInputs:
    """What one pass of a build found its nodes' inputs to be."""

    fingerprints: dict[str, str | None]
    logic: dict[str, str]  # fingerprints without the source files: what each node computes
    listings: dict  # image folders as listed for the fingerprints, by relation; every node reads these


@dataclass
class RunResult:
    """What a run did: each node's result, and which tables it made visible."""

    command: str
    results: list[NodeResult] = field(default_factory=list)
    elapsed: float = 0.0
    committed: list[str] | None = None  # names made visible; None when a failure kept everything pending
    pending: dict = field(default_factory=dict)  # written and still not visible after the run
    nothing_to_retry: bool = False  # a retry found no failed or skipped node and nothing pending

    @property
    def exit_code(self) -> int:
        """0 all good, 1 a node failed, 2 the project was wrong (SQL Spark rejected, a bad ref...)."""
        if any(r.status == Status.ERROR and r.project_error for r in self.results):
            return 2
        if any(r.status.failed for r in self.results):
            return 1
        return 0


# -- The whole run -------------------------------------------------------------------------------


def build(project_dir: str | Path = ".", command: str = "build", *, vars: str | dict | None = None,
          target: str | None = None, select: str | list[str] | None = None, exclude: str | list[str] | None = None,
          indirect_selection: str = "eager", full_refresh: bool = False, fail_fast: bool = False,
          threads: int | None = None, wait: bool = True, reporter: Reporter | None = None,
          invocation: str | None = None) -> RunResult:
    """`python runner.py <command>` for build, run, test and seed. `wait`: wait for another build
    on the same warehouse (else raise WarehouseBusy); `invocation`: how other builds name this one."""
    options = RunOptions(command=command, vars=vars, target=target, select=_as_list(select),
                         exclude=_as_list(exclude), indirect_selection=indirect_selection,
                         full_refresh=full_refresh, fail_fast=fail_fast, threads=threads)
    return run(project_dir, options, wait=wait, reporter=reporter, invocation=invocation)


def retry(project_dir: str | Path = ".", *, vars: str | dict | None = None, target: str | None = None,
          wait: bool = True, reporter: Reporter | None = None, invocation: str | None = None) -> RunResult:
    """`python runner.py retry`: the last run again, for the nodes that failed or were skipped."""
    return run(project_dir, retry_options(project_dir, vars, target), wait=wait, reporter=reporter,
               invocation=invocation or "retry")


def run(project_dir: str | Path, options: RunOptions, *, wait: bool = True, reporter: Reporter | None = None,
        invocation: str | None = None) -> RunResult:
    """Load, compile, select and execute, holding the warehouse's build lock."""
    if options.command not in RUNS:
        raise UsageError(f"'{options.command}' does not run nodes: use one of {', '.join(RUNS)}")
    reporter = reporter or Reporter()
    project = load(project_dir, options.vars)
    target = project.target(options.target)
    warehouse = Warehouse.for_target(project, target)
    # Commands that publish take turns on a warehouse; readers need no lock.
    with build_lock(warehouse.root, invocation or options.command, wait=wait):
        warehouse.begin_build()  # so the SQL is rendered against the tables as the build will read them
        if options.retry and not options.select and not warehouse.pending():
            return RunResult(options.command, nothing_to_retry=True)
        compiled = compile_project(project, target, warehouse, full_refresh=options.full_refresh)
        if options.retry and not options.select:
            selected = []  # nothing failed: the run only commits what earlier runs left pending
        else:
            selected, warnings = select_nodes(compiled, options.select, options.exclude, options.indirect_selection)
            for warning in warnings:
                reporter.warning(warning)
        return execute(compiled, selected, options, reporter)


def retry_options(project_dir: str | Path, vars: str | dict | None = None, target: str | None = None) -> RunOptions:
    """The last run's command and flags, selecting only the nodes that failed or were skipped.

    A retry also commits the tables failed runs left pending that are still current (see
    names_to_commit), so it runs even when nothing failed last time if some are pending."""
    path = Path(project_dir) / "target" / "run_results.json"
    if not path.exists():
        raise UsageError("nothing to retry: there is no target/run_results.json (run a build first)")
    last = json.loads(path.read_text())
    failed = [r["unique_id"] for r in last["results"] if r["status"] in RETRIED]
    previous = last.get("args") or {}
    return RunOptions(
        command=last["command"], vars=vars or previous.get("vars"), target=target or previous.get("target"),
        select=[" ".join(f"result:{s}" for s in RETRIED)] if failed else [], exclude=None,
        indirect_selection=previous.get("indirect_selection") or "eager",
        full_refresh=bool(previous.get("full_refresh")), fail_fast=bool(previous.get("fail_fast")), threads=None,
        retry=True)


# -- The steps -----------------------------------------------------------------------------------


def load(project_dir: str | Path = ".", vars: str | dict | None = None) -> Project:
    return load_project(Path(project_dir), parse_vars(vars))


def parse_vars(given: str | dict | None) -> dict:
    """--vars, YAML or JSON text (or already a mapping), as a mapping."""
    if not given:
        return {}
    if isinstance(given, dict):
        return dict(given)
    try:
        value = yaml.safe_load(given)
    except yaml.YAMLError as exc:
        raise UsageError(f"--vars is not valid YAML or JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError("--vars must be a mapping, e.g. '{\"images_path\": \"/data/images\"}'")
    return value


def compile_project(project: Project, target: Target, warehouse: Warehouse | None = None,
                    full_refresh: bool = False) -> CompiledProject:
    """Render the project against the warehouse's tables (is_incremental() is true for a built
    incremental model), and write each node's SQL to target/compiled/ and the manifest."""
    warehouse = warehouse or Warehouse.for_target(project, target)
    artifacts.open_log(project.target_path)
    built = {name for name, entry in warehouse.catalog().items() if entry.get("kind") == "table"}
    renderer = Renderer(project, target.name, built, full_refresh=full_refresh)
    renderer.render_all()
    tests = renderer.build_tests()
    graph = Graph([*project.models.values(), *project.seeds.values(), *project.sources.values(), *tests])
    for node in graph.nodes.values():
        node.freeze()
    executable = {m.unique_id: renderer.executable_sql(m) for m in project.models.values()}
    executable.update({t.unique_id: t.compiled_sql for t in tests})
    for uid, sql in executable.items():
        artifacts.write_compiled(artifacts.compiled_path(project.target_path, project.name, graph.nodes[uid]), sql)
    previous = previous_run(project.target_path)
    manifest = artifacts.write_manifest(project.target_path, project, graph, executable, target.name)
    previous.current_nodes = manifest["nodes"]
    return CompiledProject(project, target, renderer, graph, executable, previous)


def previous_run(target_path: Path) -> PreviousRun:
    """The last build's manifest and the last run's results, for state: and result: selectors."""
    previous = PreviousRun()
    state = target_path / "state" / "manifest.json"
    if state.exists():
        previous.manifest_nodes = json.loads(state.read_text())["nodes"]
    results = target_path / "run_results.json"
    if results.exists():
        previous.results = {r["unique_id"]: Status(r["status"]) for r in json.loads(results.read_text())["results"]}
    return previous


def select_nodes(compiled: CompiledProject, select_args: list[str] | None = None,
                 exclude_args: list[str] | None = None, indirect_selection: str = "eager") -> tuple[list[str], list[str]]:
    """The models, seeds and tests to run, in graph order, and a warning for each selector that
    matches nothing. No selection means every node."""
    return select(compiled.graph, select_args, exclude_args, compiled.previous, indirect_selection or "eager")


def fingerprint_nodes(compiled: CompiledProject, spark) -> PassInputs:
    """Fingerprint every node. Each image folder is listed once, here; every node reads that listing."""
    listings: dict = {}
    logic: dict[str, str] = {}
    prints = fingerprint.compute(compiled.graph, compiled.project, compiled.baseline_sql,
                                 fingerprint.macro_sources(compiled.renderer),
                                 lambda source: fingerprint.listing_of(spark, source, listings), logic=logic)
    return PassInputs(prints, logic, listings)


def execute(compiled: CompiledProject, selected: list[str], options: RunOptions,
            reporter: Reporter | None = None) -> RunResult:
    """Run the selected nodes that options.command runs, then commit what they wrote if no node
    failed, and write run_results.json. Call it holding the build lock (run() does)."""
    from .spark_session import create_session

    reporter = reporter or Reporter()
    project, target, graph = compiled.project, compiled.target, compiled.graph
    started = time.perf_counter()
    threads = options.threads or target.threads
    if threads < 1:
        raise UsageError("--threads must be at least 1")
    settings = dict(target.spark)
    if threads > 1 and target.remote is None:  # a Connect server's scheduler mode is its own
        settings.setdefault("spark.scheduler.mode", "FAIR")  # concurrent models share the cores
    if project.warehouse_outside_project(target):
        reporter.warehouse_outside(project.warehouse_for(target))
    to_run = [uid for uid in selected if graph.nodes[uid].resource_type in RUNS[options.command]]
    spark = warmup = None

    def session():
        """The Spark session, started the first time a node has work to do (or a file system
        needs Hadoop): a build with nothing to do does not wait for Spark."""
        nonlocal spark, warmup
        if spark is None:
            reporter.starting_spark(target.shown_location, project.name, target.name)
            starting = time.perf_counter()
            spark = create_session(target.master, app_name=project.name, settings=settings)
            reporter.spark_ready(spark.version, time.perf_counter() - starting,
                                 sum(graph.nodes[u].resource_type in (MODEL, SEED, TEST) for u in selected))
            warmup = python_warmup.start(spark, (compiled.executable_sql.get(uid) for uid in to_run))
        return spark

    warehouse = Warehouse.for_target(project, target, session).begin_build()
    test_state = TestState(warehouse.root)

    def one_pass() -> tuple[PassInputs, list[NodeResult]]:
        inputs = fingerprint_nodes(compiled, spark or session)
        for relation, listing in inputs.listings.items():
            if not listing.files:
                reporter.empty_folder(compiled.sources_by_relation[relation].location)
        context = node_runner.NodeContext(spark, warehouse, compiled, inputs, test_state, options.full_refresh)
        if spark is None:
            catalog = warehouse.catalog()
            unchanged = {uid: node_runner.unchanged_result(context, graph.nodes[uid],
                                                           catalog.get(graph.nodes[uid].name) or {})
                         for uid in to_run}
            if all(unchanged.values()):
                reporter.nothing_to_run()
                results = run_in_order(graph, to_run, lambda node, slot: unchanged[node.unique_id],
                                       threads, options.fail_fast, reporter.node_done)
                return inputs, results
        context.spark = session()
        node_runner.prepare_session(context.spark, warehouse)
        results = run_in_order(graph, to_run, partial(node_runner.run_in_slot, context), threads,
                               options.fail_fast, reporter.node_done,
                               run_together=partial(node_runner.run_tests_in_slot, context))
        return inputs, results

    inputs, results = one_pass()
    for _ in range(MAX_EXTRA_PASSES):
        # Files deleted or rewritten while the build ran: build again (only what that changes), so
        # the tables agree with the folder as it is now, not as it was listed.
        if any(r.status.failed for r in results):
            break
        gone = files_gone(spark or session, compiled.sources_by_relation, inputs.listings)
        if not gone:
            break
        reporter.files_gone(len(gone))
        inputs, again = one_pass()
        results = merge_passes(results, again)
    if warmup is not None:
        warmup.close()
    test_state.save()
    # One switch for everything the run wrote, and only if it all went well.
    to_commit = names_to_commit(graph, warehouse, inputs.fingerprints, options, selected, results)
    if to_commit is not None:
        warehouse.commit_build(to_commit)
    elapsed = time.perf_counter() - started
    artifacts.write_run_results(project.target_path, options.command, results, elapsed, options.recorded())
    artifacts.keep_state(project.target_path)
    pending = warehouse.pending()
    reporter.finished(results, elapsed, pending, failed=to_commit is None)
    return RunResult(options.command, results, elapsed, to_commit, pending)


def names_to_commit(graph: Graph, warehouse: Warehouse, fingerprints: dict[str, str | None], options: RunOptions,
                    selected: list[str], results: list[NodeResult]) -> list[str] | None:
    """The models and seeds whose staged tables and views the run makes visible when it ends.

    None after an error or a failing test: everything the run wrote stays pending, readers keep
    the last good build, and the next run reuses the tables (unchanged fingerprints). Otherwise
    the selected models and seeds, ran or unchanged. A retry continues failed runs, so it also
    commits the pending entries that are still current: their fingerprint is the node's now, so
    a build would keep them as they are."""
    if any(r.status.failed for r in results):
        return None
    kinds = RUNS[options.command] - {TEST}
    names = {graph.nodes[uid].name for uid in selected if graph.nodes[uid].resource_type in kinds}
    if options.retry:
        uids = {node.name: uid for uid, node in graph.nodes.items() if node.resource_type in (MODEL, SEED)}
        names |= {name for name, entry in warehouse.pending().items()
                  if name in uids and entry.get("fingerprint")
                  and entry["fingerprint"] == fingerprints.get(uids[name])}
    return sorted(names)


def merge_passes(first: list[NodeResult], again: list[NodeResult]) -> list[NodeResult]:
    """One result per node over two passes of a run: the second's, unless it found nothing to redo."""
    done = {r.unique_id: r for r in first}
    return [done.get(r.unique_id, r) if r.status == Status.UNCHANGED else r for r in again]


# -- Commands that only read ---------------------------------------------------------------------


@dataclass
class QueryResult:
    columns: list[str]
    rows: list  # pyspark Rows


def query(project: Project, target: Target, sql: str, limit: int | None = None) -> QueryResult:
    """Run Spark SQL against the built tables, by name; at most `limit` rows."""
    spark, registered = _reading_session(project, target)
    return _run_query(spark, registered, sql, limit)


def show(project: Project, target: Target, table: str, limit: int | None = 10) -> QueryResult:
    """The first rows of a built table or view."""
    spark, registered = _reading_session(project, target)
    if table not in registered:
        from .project import closest

        raise ProjectError(f"'{table}' has not been built (run `python runner.py build`) or is not a "
                           f"table or view.{closest(table, registered)}")
    return _run_query(spark, registered, f"SELECT * FROM `{table}`", limit)


def _reading_session(project: Project, target: Target):
    from .catalog import register_warehouse
    from .spark_session import create_session

    spark = create_session(target.master, app_name=f"{project.name}-query", settings=target.spark)
    return spark, register_warehouse(spark, Warehouse.for_target(project, target, spark))


def _run_query(spark, registered, sql: str, limit: int | None) -> QueryResult:
    from pyspark.errors import AnalysisException, ParseException

    try:
        frame = spark.sql(sql)
    except (AnalysisException, ParseException) as exc:
        raise ProjectError(f"Spark rejected the query:\n  {str(exc).strip().splitlines()[0]}\n"
                           f"Tables you can query: {', '.join(sorted(registered)) or 'none (build first)'}") from None
    rows = frame.limit(limit).collect() if limit is not None else frame.collect()
    return QueryResult(frame.columns, rows)


def clean(project: Project) -> Iterator[str]:
    """Delete the project's clean-targets (target/ unless project.yml says otherwise), yielding
    each folder as it is removed. A folder outside the project is refused."""
    for folder in project.clean_targets:
        path = (project.root / folder).resolve()
        if project.root not in path.parents:
            raise ProjectError(f"clean-targets entry '{folder}' is outside the project; refusing to delete it",
                               path="project.yml")
        shutil.rmtree(path, ignore_errors=True)
        yield folder


def _as_list(value: str | list[str] | None) -> list[str] | None:
    return [value] if isinstance(value, str) else value
