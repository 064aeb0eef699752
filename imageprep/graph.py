"""The dependency graph of a project, and dbt's node selection syntax over it.

An edge runs from a node to each node it reads (`ref`, `source`, a test's model). The build
order is a topological order that breaks ties by name, so two runs print the same order.
`graphlib.TopologicalSorter` does the ordering and finds cycles.
"""
from __future__ import annotations

import fnmatch
import graphlib
import re
from dataclasses import dataclass
from typing import Iterable

from .errors import ProjectError
from .nodes import MODEL, SEED, SOURCE, TEST, Node


class Graph:
    """Nodes by unique id, with parent (dependency) and child edges."""

    def __init__(self, nodes: Iterable[Node]):
        self.nodes: dict[str, Node] = {n.unique_id: n for n in nodes}
        self.parents: dict[str, set[str]] = {uid: set() for uid in self.nodes}
        self.children: dict[str, set[str]] = {uid: set() for uid in self.nodes}
        for node in self.nodes.values():
            for parent in node.depends_on:
                self.parents[node.unique_id].add(parent)
                self.children[parent].add(node.unique_id)
        self.order = self._sorted()
        self.position = {uid: i for i, uid in enumerate(self.order)}

    def _sorted(self) -> list[str]:
        sorter = graphlib.TopologicalSorter({uid: sorted(p) for uid, p in self.parents.items()})
        try:
            sorter.prepare()
        except graphlib.CycleError as exc:
            cycle = list(reversed(exc.args[1]))  # each node now depends on the next one
            names = " -> ".join(self.nodes[uid].name for uid in cycle)
            first = self.nodes[cycle[0]]
            raise ProjectError(
                f"found a cycle: {names} (each model refers to the next one). "
                f"Break it by removing one of these ref()s", path=first.path) from None
        order: list[str] = []
        while sorter.is_active():
            # Tests run as soon as what they check is built, before its children; ties break by name.
            ready = sorted(sorter.get_ready(), key=lambda uid: (self.nodes[uid].resource_type != TEST, uid))
            order.extend(ready)
            sorter.done(*ready)
        return order

    def ancestors(self, uid: str, depth: int | None = None) -> set[str]:
        return self._walk(uid, self.parents, depth)

    def descendants(self, uid: str, depth: int | None = None) -> set[str]:
        return self._walk(uid, self.children, depth)

    @staticmethod
    def _walk(start: str, edges: dict[str, set[str]], depth: int | None) -> set[str]:
        seen: set[str] = set()
        frontier = {start}
        level = 0
        while frontier and (depth is None or level < depth):
            frontier = {n for f in frontier for n in edges[f]} - seen
            seen |= frontier
            level += 1
        return seen

    def sort(self, uids: Iterable[str]) -> list[str]:
        return sorted(set(uids), key=self.position.__getitem__)


_ATOM = re.compile(r"^(?P<at>@)?(?P<up>\d*\+)?(?P<body>[^+]+?)(?P<down>\+\d*)?$")
EXECUTABLE = (MODEL, SEED, TEST)


@dataclass
class PreviousRun:
    """What `state:` and `result:` selectors compare with: the last build's manifest and results."""

    manifest_nodes: dict[str, dict] | None = None
    results: dict[str, str] | None = None  # unique id -> status
    current_nodes: dict[str, dict] | None = None  # this run's manifest entries, to compare with


# dbt's --indirect-selection: which tests of the selected nodes are selected with them.
INDIRECT_SELECTION = ("eager", "cautious", "buildable", "empty")


def select(graph: Graph, select_args: list[str] | None, exclude_args: list[str] | None,
           previous: PreviousRun | None = None, indirect: str = "eager") -> tuple[list[str], list[str]]:
    """The executable nodes (models, seeds, tests) chosen by --select/--exclude, in build order.

    Returns (selected ids, warnings). dbt's rules: space separates a union, comma an
    intersection; `+m` adds ancestors, `m+` descendants (`2+m`, `m+1` limit the depth),
    `@m` adds descendants and their ancestors; methods `tag:`, `path:`, `source:`,
    `resource_type:`, `config.<key>:`, `state:modified|new` (against the last build's
    manifest), `result:<status>` (the last run's results), and names with shell wildcards. Tests of
    the selected nodes are selected too, as `indirect` says (see `tests_selected_with`).
    """
    warnings: list[str] = []
    if select_args:
        chosen = _union(graph, select_args, warnings, previous)
    else:
        chosen = {uid for uid, n in graph.nodes.items() if n.resource_type in EXECUTABLE}
    excluded = _union(graph, exclude_args, warnings, previous) if exclude_args else set()
    chosen -= excluded
    chosen |= tests_selected_with(graph, chosen, indirect)
    # A test of an excluded node goes with it.
    chosen = {uid for uid in chosen if uid not in excluded
              and not (graph.nodes[uid].resource_type == TEST and graph.parents[uid] & excluded)}
    chosen = {uid for uid in chosen if graph.nodes[uid].resource_type in EXECUTABLE}
    return graph.sort(chosen), warnings


def tests_selected_with(graph: Graph, chosen: set[str], mode: str) -> set[str]:
    """The tests of `chosen` nodes that dbt's indirect selection `mode` adds: `eager` every test
    of a chosen node; `cautious` those whose parents are all chosen; `buildable` those whose
    parents are each chosen or upstream of a chosen node (so built before the test runs);
    `empty` none (only tests selected by name, tag or path run)."""
    if mode not in INDIRECT_SELECTION:
        raise ProjectError(f"unknown indirect selection '{mode}': use {', '.join(INDIRECT_SELECTION)}")
    if mode == "empty":
        return set()
    tests = {child for uid in chosen for child in graph.children[uid] if graph.nodes[child].resource_type == TEST}
    if mode == "eager":
        return tests
    allowed = set(chosen)
    if mode == "buildable":
        for uid in chosen:
            allowed |= graph.ancestors(uid)
    return {test for test in tests if graph.parents[test] <= allowed}


def _union(graph: Graph, args: list[str], warnings: list[str], previous: PreviousRun | None) -> set[str]:
    result: set[str] = set()
    for arg in args:
        for spec in arg.split():
            parts = [_atom(graph, atom, warnings, previous) for atom in spec.split(",") if atom]
            if parts:
                result |= set.intersection(*parts)
    return result


def _atom(graph: Graph, atom: str, warnings: list[str], previous: PreviousRun | None) -> set[str]:
    match = _ATOM.match(atom)
    if not match:
        raise ProjectError(f"cannot read the selector '{atom}'")
    base = _match_method(graph, match.group("body"), previous)
    if not base:
        warnings.append(f"the selector '{atom}' matches no node")
    result = set(base)
    for uid in base:
        if match.group("up"):
            result |= graph.ancestors(uid, _depth(match.group("up").rstrip("+")))
        if match.group("down"):
            result |= graph.descendants(uid, _depth(match.group("down").lstrip("+")))
        if match.group("at"):
            for child in graph.descendants(uid) | {uid}:
                result |= {child} | graph.ancestors(child)
    return result


def _state(graph: Graph, value: str, previous: PreviousRun | None) -> set[str]:
    """Nodes new since the last build, or whose SQL (vars included), config or parents changed."""
    if previous is None or previous.manifest_nodes is None:
        raise ProjectError("state: compares with the last build's manifest (target/state/manifest.json), "
                           "and there is none yet: run a build first")
    old = previous.manifest_nodes
    if value == "new":
        return {uid for uid in graph.nodes if uid not in old and graph.nodes[uid].resource_type != SOURCE}
    if value != "modified":
        raise ProjectError(f"unknown state '{value}': use state:modified or state:new")
    current = previous.current_nodes or {}
    changed = set()
    for uid, entry in current.items():
        before = old.get(uid)
        if before is None or any(before.get(k) != entry.get(k) for k in ("checksum", "config", "depends_on", "location")):
            changed.add(uid)
    return changed & set(graph.nodes)


def _depth(text: str) -> int | None:
    return int(text) if text else None


def _match_method(graph: Graph, body: str, previous: PreviousRun | None = None) -> set[str]:
    method, _, value = body.partition(":") if ":" in body else ("name", "", body)
    nodes = graph.nodes.values()
    if method == "name":
        return {n.unique_id for n in nodes if fnmatch.fnmatchcase(n.name, value)}
    if method == "tag":
        return {n.unique_id for n in nodes if any(fnmatch.fnmatchcase(t, value) for t in n.tags)}
    if method == "path":
        prefix = value.rstrip("/")
        return {n.unique_id for n in nodes
                if n.path == prefix or n.path.startswith(prefix + "/") or fnmatch.fnmatchcase(n.path, prefix)}
    if method == "source":
        return {n.unique_id for n in nodes if n.resource_type == SOURCE
                and (fnmatch.fnmatchcase(n.name, value) or fnmatch.fnmatchcase(n.name.split(".")[0], value))}
    if method == "resource_type":
        return {n.unique_id for n in nodes if n.resource_type == value}
    if method == "test_name":
        return {n.unique_id for n in nodes if n.resource_type == TEST and getattr(n, "test_name", "") == value}
    if method.startswith("config."):
        key = method[len("config."):]
        return {n.unique_id for n in nodes if str(n.config.get(key)) == value
                or (isinstance(n.config.get(key), list) and value in n.config[key])}
    if method == "state":
        return _state(graph, value, previous)
    if method == "result":
        if previous is None or previous.results is None:
            raise ProjectError("result: selects from the last run's target/run_results.json, and there is none yet")
        return {uid for uid, status in previous.results.items() if uid in graph.nodes
                and (status == value or status.split(":")[0] == value)}
    raise ProjectError(
        f"unknown selector method '{method}:'. Use a name, tag:, path:, source:, resource_type:, "
        f"test_name: or config.<key>:")
