"""The command line: `python runner.py <command> [flags]`, with dbt's command names and flags.

Exit codes: 0 success, 1 a model or test failed, 2 a usage or project error.
"""
from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import sys
import time
from pathlib import Path

import yaml

from . import artifacts, fingerprint
from .build import RUNS, Execution, execute, merge_passes, names_to_commit, pending_note, summary
from .build_lock import build_lock
from .errors import ProjectError
from .fingerprint import TestState
from .graph import Graph
from .nodes import MODEL, TEST
from .project import load_project
from .render import Renderer
from .selection import INDIRECT_SELECTION, PreviousRun, select
from .sources import files_gone
from .warehouse import Warehouse

MAX_EXTRA_PASSES = 2  # builds again after files went away mid-build; a folder that never stops changing ends there
COMMANDS = ("build", "run", "test", "seed", "compile", "ls", "show", "query", "docs", "serve", "clean", "functions")


class UsageError(ProjectError):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse exits with 2 too; keep our one-line style
        raise UsageError(f"{message}. See `python runner.py {self.prog.split()[-1]} --help`"
                         if " " in self.prog else f"{message}. See `python runner.py --help`")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--project-dir", default=".", help="folder holding project.yml (default: .)")
    common.add_argument("--target", "-t", help="target from project.yml (default: its 'target', or local)")
    common.add_argument("--vars", help="vars as YAML or JSON, e.g. '{\"image_size\": 128}'")
    selecting = argparse.ArgumentParser(add_help=False)
    selecting.add_argument("--select", "-s", nargs="+", help="nodes to run (dbt syntax: name, +name, name+, tag:x, path:dir)")
    selecting.add_argument("--exclude", nargs="+", help="nodes to leave out (same syntax)")
    selecting.add_argument("--indirect-selection", choices=INDIRECT_SELECTION, default="eager",
                           help="tests of the selected nodes to run too: eager (default) every one; cautious "
                                "those whose models are all selected; buildable those whose models are "
                                "selected or upstream of them; empty none")
    running = argparse.ArgumentParser(add_help=False)
    running.add_argument("--full-refresh", action="store_true", help="rebuild every selected table from scratch; tests check every row")
    running.add_argument("--fail-fast", "-x", action="store_true", help="stop at the first failure")
    running.add_argument("--threads", type=int, default=None,
                         help="models to run at the same time (default: the target's threads, or 1)")
    locking = argparse.ArgumentParser(add_help=False)
    locking.add_argument("--no-wait", action="store_true",
                         help="if another build is using the warehouse, fail at once (exit 2) instead of waiting")

    parser = _Parser(prog="runner.py", description="Build image-preparation SQL models into Parquet tables on Spark.")
    sub = parser.add_subparsers(dest="command", metavar="command", parser_class=_Parser)
    helps = {
        "build": "seeds, models and tests, in graph order", "run": "models only", "test": "data tests only",
        "seed": "load CSV seeds", "compile": "render SQL to target/compiled/ (starts no Spark job)",
    }
    for name, text in helps.items():
        parents = [common, selecting] + ([running, locking] if name != "compile" else [])
        sub.add_parser(name, parents=parents, help=text)
    sub.add_parser("retry", parents=[common, locking],
                   help="re-run the nodes that failed or were skipped in the last run")
    sub.add_parser("ls", parents=[common, selecting], help="list the selected nodes")
    show = sub.add_parser("show", parents=[common], help="print the first rows of a built table")
    show.add_argument("model")
    show.add_argument("--limit", type=int, default=10)
    query = sub.add_parser("query", parents=[common], help="run Spark SQL against the built tables by name")
    query.add_argument("sql")
    query.add_argument("--format", choices=("table", "csv", "json"), default="table")
    query.add_argument("--limit", type=int, default=None, help="print at most this many rows")
    docs = sub.add_parser("docs", parents=[common], help="write a static docs site to target/docs/")
    docs.add_argument("--serve", action="store_true", help="then serve it on localhost")
    docs.add_argument("--port", type=int, default=8080)
    serve = sub.add_parser("serve", parents=[common], help="a SQL endpoint (JDBC/ODBC) over the built tables")
    serve.add_argument("--port", type=int, default=10000)
    serve.add_argument("--host", default=None,
                       help="address to listen on (default: localhost); any other needs a login, see the README")
    serve.add_argument("--allow-writes", action="store_true",
                       help="lift the read-only checks: clients may write, add jars, call JVM methods")
    sub.add_parser("clean", parents=[common], help="delete target/ (the project's clean-targets)")
    sub.add_parser("functions", parents=[common], help="list the image functions callable from SQL")
    return parser


def parse_vars(text: str | None) -> dict:
    if not text:
        return {}
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"--vars is not valid YAML or JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError("--vars must be a mapping, e.g. '{\"images_path\": \"/data/images\"}'")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
        if not args.command:
            parser.print_help()
            return 2
        args.invocation = "python runner.py " + shlex.join(argv)  # named to a build waiting for this one
        return run_command(args)
    except ProjectError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130


def run_command(args) -> int:
    root = Path(args.project_dir)
    if args.command == "functions":
        import udfs

        for spec in udfs.FUNCTIONS:
            first_sentence = re.split(r"(?<!e\.g)(?<!i\.e)\.\s", spec.description)[0].rstrip(".")
            print(f"{spec.signature}\n    {first_sentence}.\n")
        print("Full reference with examples: docs/functions.md")
        return 0
    if args.command == "retry":
        args = _retry_args(args)
    project = load_project(root, parse_vars(args.vars))
    target = project.target(args.target)
    if args.command == "clean":
        for folder in project.clean_targets:
            path = (project.root / folder).resolve()
            if project.root not in path.parents:
                raise ProjectError(f"clean-targets entry '{folder}' is outside the project; refusing to delete it",
                                   path="project.yml")
            shutil.rmtree(path, ignore_errors=True)
            print(f"Removed {folder}/")
        return 0
    warehouse = Warehouse.for_target(project, target)
    if args.command not in RUNS:
        return _run_project(args, project, target, warehouse)
    # Commands that publish take turns on a warehouse; readers need no lock.
    with build_lock(warehouse.root, getattr(args, "invocation", args.command), wait=not args.no_wait):
        warehouse.begin_build()  # so the SQL is rendered against the tables as the build will read them
        if getattr(args, "retry", False) and not args.select and not warehouse.pending():
            print("Nothing to retry: the last run had no failed or skipped nodes.")
            return 0
        return _run_project(args, project, target, warehouse)


def _run_project(args, project, target, warehouse: Warehouse) -> int:
    artifacts.open_log(project.target_path)
    built = {name for name, entry in warehouse.catalog().items() if entry.get("kind") == "table"}
    renderer = Renderer(project, target.name, built, full_refresh=bool(getattr(args, "full_refresh", False)))
    renderer.render_all()
    tests = renderer.build_tests()
    nodes = [*project.models.values(), *project.seeds.values(), *project.sources.values(), *tests]
    graph = Graph(nodes)
    executable = {m.unique_id: renderer.executable_sql(m) for m in project.models.values()}
    executable.update({t.unique_id: t.compiled_sql for t in tests})
    for uid, sql in executable.items():
        artifacts.write_compiled(artifacts.compiled_path(project.target_path, project.name, graph.nodes[uid]), sql)
    previous = _previous_run(project.target_path)
    manifest_path = artifacts.write_manifest(project.target_path, project, graph, executable, target.name)
    previous.current_nodes = json.loads(manifest_path.read_text())["nodes"]

    if args.command in ("show", "query"):
        return _query(args, project, target)
    if args.command == "docs":
        from .docs_site import docs_command

        return docs_command(args, project, target, graph, executable)
    if args.command == "serve":
        from .endpoint import serve_command

        return serve_command(args, project, target)
    if getattr(args, "retry", False) and not args.select:
        selected, warnings = [], []  # nothing failed: the run only commits what earlier runs left pending
    else:
        selected, warnings = select(graph, getattr(args, "select", None), getattr(args, "exclude", None), previous,
                                    getattr(args, "indirect_selection", None) or "eager")
    for warning in warnings:
        print(f"Warning: {warning}", file=sys.stderr)
    if args.command == "ls":
        for uid in selected:
            node = graph.nodes[uid]
            kind = node.materialized if node.resource_type == MODEL else node.resource_type
            print(f"{node.resource_type:<6} {kind:<11} {node.name}")
        return 0
    if args.command == "compile":
        shown = [uid for uid in selected if uid in executable and graph.nodes[uid].resource_type == MODEL]
        print(f"Compiled {len(shown)} models and {sum(graph.nodes[u].resource_type == TEST for u in selected)} "
              f"tests to {project.rel(project.target_path / 'compiled')}/")
        return 0
    return _execute(args, project, target, graph, executable, selected, renderer)


def _execute(args, project, target, graph, executable, selected, renderer) -> int:
    from .spark_session import create_session

    started = time.perf_counter()
    log = artifacts.open_log(project.target_path)

    def echo(line: str) -> None:
        print(line, flush=True)
        log.info(line)

    threads = getattr(args, "threads", None) or target.threads
    if threads < 1:
        raise UsageError("--threads must be at least 1")
    settings = dict(target.spark)
    if threads > 1:
        settings.setdefault("spark.scheduler.mode", "FAIR")  # concurrent models share the cores
    if project.warehouse_outside_project(target):
        echo(f"Warehouse: {project.warehouse_for(target)} (outside the project)")
    echo(f"Starting Spark ({target.master}) for project '{project.name}', target '{target.name}'")
    spark = create_session(target.master, app_name=project.name, settings=settings)
    echo(f"Spark {spark.version} ready in {time.perf_counter() - started:.1f}s; "
         f"running {sum(graph.nodes[u].resource_type in {'model', 'seed', 'test'} for u in selected)} selected nodes")
    warehouse = Warehouse(project.warehouse_for(target), spark).begin_build()
    baseline = {**executable, **{m.unique_id: renderer.executable_sql(m, baseline=True)
                                 for m in project.models.values()}}
    test_state = TestState(warehouse.root)

    def one_pass() -> tuple[Execution, list]:
        # Each image folder is listed once per pass, for its fingerprint; every node reads that listing.
        listings: dict = {}
        logic: dict[str, str] = {}
        prints = fingerprint.compute(graph, project, baseline, fingerprint.macro_sources(renderer),
                                     lambda source: fingerprint.listing_of(spark, source, listings), logic=logic)
        for relation, listing in listings.items():
            if not listing.files:
                echo(f"Warning: the image folder {sources_by_relation[relation].location} holds no files")
        ex = Execution(spark, project, graph, warehouse, executable, fail_fast=args.fail_fast, echo=echo,
                       full_refresh=args.full_refresh, fingerprints=prints, logic_prints=logic,
                       baseline_sql=baseline, test_state=test_state,
                       incremental_models=renderer.incremental_models, threads=threads, listings=listings)
        return ex, execute(ex, args.command, selected)

    sources_by_relation = {s.relation: s for s in project.sources.values()}
    ex, results = one_pass()
    for _ in range(MAX_EXTRA_PASSES):
        # Files deleted or rewritten while the build ran: build again (only what that changes), so
        # the tables agree with the folder as it is now, not as it was listed.
        if any(r.status in ("error", "fail") for r in results):
            break
        gone = files_gone(spark, sources_by_relation, ex.listings)
        if not gone:
            break
        echo(f"{len(gone)} file{'s' * (len(gone) != 1)} went away during the build "
             f"(deleted or rewritten); building again so the tables match the folder")
        ex, again = one_pass()
        results = merge_passes(results, again)
    ex.test_state.save()
    # One switch for everything the run wrote, and only if it all went well.
    to_commit = names_to_commit(ex, args.command, selected, results, retry=getattr(args, "retry", False))
    if to_commit is not None:
        warehouse.commit_build(to_commit)
    elapsed = time.perf_counter() - started
    invocation = {k: getattr(args, k, None) for k in ("vars", "target", "select", "exclude",
                                                      "indirect_selection", "full_refresh", "fail_fast")}
    artifacts.write_run_results(project.target_path, args.command, results, elapsed, invocation)
    artifacts.keep_state(project.target_path)
    lines, code = summary(results, elapsed)
    for line in lines:
        echo(line)
    note = pending_note(warehouse.pending(), failed=to_commit is None)
    if note:
        echo(note)
    return code


def _previous_run(target_path: Path) -> PreviousRun:
    """The last build's manifest and the last run's results, for state: and result: selectors."""
    previous = PreviousRun()
    state = target_path / "state" / "manifest.json"
    if state.exists():
        previous.manifest_nodes = json.loads(state.read_text())["nodes"]
    results = target_path / "run_results.json"
    if results.exists():
        previous.results = {r["unique_id"]: r["status"] for r in json.loads(results.read_text())["results"]}
    return previous


RETRIED = ("error", "fail", "skipped")


def _retry_args(args):
    """The last run's command and flags, selecting only the nodes that failed or were skipped.

    A retry also commits the tables failed runs left pending that are still current (see
    build.names_to_commit), so it runs even when nothing failed last time if some are pending."""
    path = Path(args.project_dir) / "target" / "run_results.json"
    if not path.exists():
        raise UsageError("nothing to retry: there is no target/run_results.json (run a build first)")
    last = json.loads(path.read_text())
    failed = [r["unique_id"] for r in last["results"] if r["status"] in RETRIED]
    previous = last.get("args") or {}
    return argparse.Namespace(
        command=last["command"], project_dir=args.project_dir, target=args.target or previous.get("target"),
        vars=args.vars or previous.get("vars"), select=[" ".join(f"result:{s}" for s in RETRIED)] if failed else [],
        exclude=None, indirect_selection=previous.get("indirect_selection") or "eager",
        full_refresh=bool(previous.get("full_refresh")), fail_fast=bool(previous.get("fail_fast")), threads=None,
        no_wait=args.no_wait, invocation=getattr(args, "invocation", "retry"), retry=True)


def _query(args, project, target) -> int:
    from .catalog import register_warehouse
    from .formatting import print_rows
    from .spark_session import create_session

    spark = create_session(target.master, app_name=f"{project.name}-query", settings=target.spark)
    warehouse = Warehouse(project.warehouse_for(target), spark)
    registered = register_warehouse(spark, warehouse)
    if args.command == "show":
        if args.model not in registered:
            from .project import closest

            raise ProjectError(f"'{args.model}' has not been built (run `python runner.py build`) or is not a "
                               f"table or view.{closest(args.model, registered)}")
        sql, limit, fmt = f"SELECT * FROM `{args.model}`", args.limit, "table"
    else:
        sql, limit, fmt = args.sql, args.limit, args.format
    try:
        frame = spark.sql(sql)
    except Exception as exc:
        if type(exc).__name__ in ("AnalysisException", "ParseException"):
            raise ProjectError(f"Spark rejected the query:\n  {str(exc).strip().splitlines()[0]}\n"
                               f"Tables you can query: {', '.join(sorted(registered)) or 'none (build first)'}") from None
        raise
    rows = frame.limit(limit).collect() if limit is not None else frame.collect()
    print_rows(frame.columns, rows, fmt)
    return 0
