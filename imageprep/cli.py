"""The command line: `python runner.py <command> [flags]`, with dbt's command names and flags.

This module parses the arguments and prints; the commands' work is in `tasks` (and `docs_site`,
`endpoint` for docs and serve), and a build's progress lines are printed by a progress.Reporter.

Exit codes: 0 success, 1 a model or test failed, 2 a usage or project error.
"""
from __future__ import annotations

import argparse
import re
import shlex
import sys

from . import tasks
from .errors import ProjectError
from .nodes import MODEL, TEST
from .progress import Reporter
from .selection import INDIRECT_SELECTION
from .tasks import UsageError

COMMANDS = ("build", "run", "test", "seed", "compile", "ls", "show", "query", "docs", "serve", "clean", "functions")


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
    serve = sub.add_parser("serve", parents=[common], help="a SQL endpoint (JDBC/ODBC, or Spark Connect) over the built tables")
    serve.add_argument("--port", type=int, default=None, help="default: 10000, or 15002 with --connect")
    serve.add_argument("--host", default=None,
                       help="address to listen on (default: localhost); any other needs a login, see the README")
    serve.add_argument("--connect", action="store_true",
                       help="a Spark Connect endpoint (sc://) instead of the Thrift JDBC/ODBC one")
    serve.add_argument("--allow-writes", action="store_true",
                       help="lift the read-only checks: clients may write, add jars, call JVM methods")
    sub.add_parser("clean", parents=[common], help="delete target/ (the project's clean-targets)")
    sub.add_parser("functions", parents=[common], help="list the image functions callable from SQL")
    return parser


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
    if args.command == "functions":
        return _functions()
    if args.command == "retry":
        options = tasks.retry_options(args.project_dir, vars=args.vars, target=args.target)
        return _run(args, options)
    if args.command in tasks.RUNS:
        return _run(args, tasks.RunOptions(
            command=args.command, vars=args.vars, target=args.target, select=args.select, exclude=args.exclude,
            indirect_selection=args.indirect_selection, full_refresh=args.full_refresh, fail_fast=args.fail_fast,
            threads=args.threads))
    project = tasks.load(args.project_dir, args.vars)
    target = project.target(args.target)
    if args.command == "clean":
        for folder in tasks.clean(project):
            print(f"Removed {folder}/")
        return 0
    compiled = tasks.compile_project(project, target)
    if args.command in ("show", "query"):
        from .formatting import print_rows

        if args.command == "show":
            found, fmt = tasks.show(project, target, args.model, args.limit), "table"
        else:
            found, fmt = tasks.query(project, target, args.sql, args.limit), args.format
        print_rows(found.columns, found.rows, fmt)
        return 0
    if args.command == "docs":
        from .docs_site import docs_command

        return docs_command(args, project, target, compiled.graph, compiled.executable_sql)
    if args.command == "serve":
        from .endpoint import serve_command

        return serve_command(args, project, target)
    selected, warnings = tasks.select_nodes(compiled, args.select, args.exclude, args.indirect_selection)
    for warning in warnings:
        print(f"Warning: {warning}", file=sys.stderr)
    graph = compiled.graph
    if args.command == "ls":
        for uid in selected:
            node = graph.nodes[uid]
            kind = node.materialized if node.resource_type == MODEL else node.resource_type
            print(f"{node.resource_type:<6} {kind:<11} {node.name}")
        return 0
    # compile
    shown = [uid for uid in selected if uid in compiled.executable_sql and graph.nodes[uid].resource_type == MODEL]
    print(f"Compiled {len(shown)} models and {sum(graph.nodes[u].resource_type == TEST for u in selected)} "
          f"tests to {project.rel(project.target_path / 'compiled')}/")
    return 0


def _run(args, options: tasks.RunOptions) -> int:
    """build, run, test, seed and retry: progress lines as the nodes finish, then a summary."""
    result = tasks.run(args.project_dir, options, wait=not args.no_wait, reporter=Reporter(),
                       invocation=getattr(args, "invocation", args.command))
    if result.nothing_to_retry:
        print("Nothing to retry: the last run had no failed or skipped nodes.")
    return result.exit_code


def _functions() -> int:
    import udfs

    for spec in udfs.FUNCTIONS:
        first_sentence = re.split(r"(?<!e\.g)(?<!i\.e)\.\s", spec.description)[0].rstrip(".")
        print(f"{spec.signature}\n    {first_sentence}.\n")
    print("Full reference with examples: docs/functions.md")
    return 0
