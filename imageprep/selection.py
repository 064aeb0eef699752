"""Node selection: dbt's --select/--exclude syntax, parsed into a spec, then evaluated on the graph.

Selecting takes two steps, as in dbt-core.

1. Parse. Each argument splits on spaces into a *union*, and each part on commas into an
   *intersection* of criteria. A criterion is one selector such as `2+tag:marts+1`: a method
   (`tag`) and a value (`marts`), with graph operators around it: `+` before adds ancestors, `+`
   after adds descendants (a number limits the depth), `@` before adds descendants and their
   ancestors. A bare value is a name. Parsing checks the syntax, the method and, where a method
   accepts only some values, the value, so a mistake is reported before anything runs and names
   the selector at fault::

       --select "tag:marts,+report stg"  ->  SelectionUnion((
           SelectionIntersection((Criterion("tag:marts", "tag", "marts"),
                                  Criterion("+report", "name", "report", parents=True))),
           SelectionIntersection((Criterion("stg", "name", "stg"),))))

2. Evaluate. Each method is a function registered in METHODS that returns the nodes a value
   matches; the operators extend them along the graph, and intersections and unions combine the
   sets. `select()` then takes away --exclude and adds the tests that come with the selected
   nodes (--indirect-selection). The list of methods in error messages is read from METHODS.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Callable, Iterable

from .errors import ProjectError
from .nodes import MODEL, SEED, SOURCE, TEST, Node
from .status import Status

if TYPE_CHECKING:
    from .graph import Graph

EXECUTABLE = (MODEL, SEED, TEST)

# dbt's --indirect-selection: which tests of the selected nodes are selected with them.
INDIRECT_SELECTION = ("eager", "cautious", "buildable", "empty")


@dataclass
class PreviousRun:
    """What `state:` and `result:` selectors compare with: the last build's manifest and results."""

    manifest_nodes: dict[str, dict] | None = None
    results: dict[str, Status] | None = None  # unique id -> status
    current_nodes: dict[str, dict] | None = None  # this run's manifest entries, to compare with


# ---------------------------------------------------------------------------------------------
# The spec


@dataclass(frozen=True)
class Criterion:
    """One selector, e.g. `2+tag:marts+`: what its method matches, and how far to extend that."""

    raw: str  # as written, for messages
    method: str  # a key of METHODS
    value: str
    argument: str | None = None  # the <key> of config.<key>:
    parents: bool = False
    parents_depth: int | None = None  # None: all ancestors
    children: bool = False
    children_depth: int | None = None  # None: all descendants
    childrens_parents: bool = False  # `@`


@dataclass(frozen=True)
class SelectionIntersection:
    """Criteria joined by commas: the nodes every one of them selects."""

    criteria: tuple[Criterion, ...]


@dataclass(frozen=True)
class SelectionUnion:
    """The space-separated parts of all --select (or --exclude) arguments: nodes any one selects."""

    components: tuple[SelectionIntersection, ...]


# [@][N+]body[+N]. The body holds no `+`, so `a+b` is an error rather than a guess.
_CRITERION = re.compile(r"^(?P<at>@)?(?:(?P<up>\d*)\+)?(?P<body>[^+]+?)(?:\+(?P<down>\d*))?$")


def parse_selection(args: Iterable[str]) -> SelectionUnion:
    """Parse --select or --exclude arguments into a SelectionUnion.

    Raises ProjectError naming the first selector that cannot be read. Empty parts (stray commas
    or spaces) select nothing and are dropped."""
    components = []
    for arg in args:
        for part in arg.split():
            criteria = tuple(parse_criterion(raw) for raw in part.split(",") if raw)
            if criteria:
                components.append(SelectionIntersection(criteria))
    return SelectionUnion(tuple(components))


def parse_criterion(raw: str) -> Criterion:
    """Parse one selector, such as `orders`, `+tag:marts`, `2+path:models/staging+1` or `@stg`."""
    match = _CRITERION.match(raw)
    if not match:
        raise ProjectError(f"cannot read the selector '{raw}': write [@][N+]name[+N] or [@][N+]method:value[+N], "
                           f"e.g. +orders, orders+1, tag:marts+ or @stg")
    method_text, colon, value = match["body"].partition(":")
    if not colon:
        method_text, value = "name", match["body"]
    name, dot, argument = method_text.partition(".")
    method = METHODS.get(name)
    if method is None or bool(dot) != method.takes_argument:
        raise ProjectError(f"unknown selector method '{method_text}:'. Use a name, or one of "
                           f"{', '.join(m.syntax for m in METHODS.values())}")
    if method.values and value not in method.values:
        choices = " or ".join(f"{name}:{v}" for v in method.values)
        raise ProjectError(f"unknown {name} '{value}': use {choices}")
    return Criterion(
        raw=raw, method=name, value=value, argument=argument if dot else None,
        parents=match["up"] is not None, parents_depth=_depth(match["up"]),
        children=match["down"] is not None, children_depth=_depth(match["down"]),
        childrens_parents=bool(match["at"]))


def _depth(digits: str | None) -> int | None:
    return int(digits) if digits else None


# ---------------------------------------------------------------------------------------------
# Evaluation


def select(graph: Graph, select_args: list[str] | None, exclude_args: list[str] | None,
           previous: PreviousRun | None = None, indirect: str = "eager") -> tuple[list[str], list[str]]:
    """The executable nodes (models, seeds, tests) chosen by --select/--exclude, in build order.

    Returns (selected ids, warnings). No --select means every executable node. Both arguments are
    parsed before anything is evaluated. Tests of the selected nodes are selected too, as
    `indirect` says (see `tests_selected_with`); a test of an excluded node is left out with it.
    """
    include = parse_selection(select_args) if select_args else None
    exclude = parse_selection(exclude_args or ())
    if include is None:
        chosen, warnings = {uid for uid, n in graph.nodes.items() if n.resource_type in EXECUTABLE}, []
    else:
        chosen, warnings = evaluate(graph, include, previous)
    excluded, exclude_warnings = evaluate(graph, exclude, previous)
    warnings += exclude_warnings
    chosen -= excluded
    chosen |= tests_selected_with(graph, chosen, indirect)
    chosen = {uid for uid in chosen if uid not in excluded
              and not (graph.nodes[uid].resource_type == TEST and graph.parents[uid] & excluded)}
    chosen = {uid for uid in chosen if graph.nodes[uid].resource_type in EXECUTABLE}
    return graph.sort(chosen), warnings


def evaluate(graph: Graph, spec: SelectionUnion, previous: PreviousRun | None = None) -> tuple[set[str], list[str]]:
    """The ids of the nodes of any resource type that `spec` selects, and a warning for each
    criterion whose method matches no node."""
    chosen: set[str] = set()
    warnings: list[str] = []
    for intersection in spec.components:
        sets = []
        for criterion in intersection.criteria:
            matched = METHODS[criterion.method].search(graph, criterion, previous)
            if not matched:
                warnings.append(f"the selector '{criterion.raw}' matches no node")
            sets.append(_extend(graph, criterion, matched))
        chosen |= set.intersection(*sets)
    return chosen, warnings


def _extend(graph: Graph, criterion: Criterion, matched: set[str]) -> set[str]:
    """`matched` plus the ancestors and descendants the criterion's `+` and `@` ask for."""
    extended = set(matched)
    for uid in matched:
        if criterion.parents:
            extended |= graph.ancestors(uid, criterion.parents_depth)
        if criterion.children:
            extended |= graph.descendants(uid, criterion.children_depth)
        if criterion.childrens_parents:
            for child in graph.descendants(uid) | {uid}:
                extended |= {child} | graph.ancestors(child)
    return extended


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


# ---------------------------------------------------------------------------------------------
# Methods: one function per `method:`, registered in METHODS by @selector_method


Search = Callable[["Graph", Criterion, "PreviousRun | None"], "set[str]"]


@dataclass(frozen=True)
class Method:
    """A selector method: `search` returns the ids of the nodes that `method:value` matches."""

    name: str
    search: Search
    takes_argument: bool = False  # written `name.<key>:`, like config.materialized:
    values: tuple[str, ...] = ()  # if given, the only values accepted (checked when parsing)

    @property
    def syntax(self) -> str:
        return f"{self.name}.<key>:" if self.takes_argument else f"{self.name}:"


METHODS: dict[str, Method] = {}  # in the order error messages list them


def selector_method(name: str, takes_argument: bool = False, values: tuple[str, ...] = ()):
    """Register the decorated search function as the selector method `name:`."""
    def register(search: Search) -> Search:
        METHODS[name] = Method(name, search, takes_argument, values)
        return search
    return register


def _where(graph: Graph, keep: Callable[[Node], bool]) -> set[str]:
    return {uid for uid, node in graph.nodes.items() if keep(node)}


@selector_method("name")
def _by_name(graph: Graph, c: Criterion, previous: PreviousRun | None) -> set[str]:
    """Nodes whose name matches; shell wildcards allowed. A selector without a method is a name."""
    return _where(graph, lambda n: fnmatchcase(n.name, c.value))


@selector_method("tag")
def _by_tag(graph: Graph, c: Criterion, previous: PreviousRun | None) -> set[str]:
    """Nodes with a tag that matches; shell wildcards allowed."""
    return _where(graph, lambda n: any(fnmatchcase(tag, c.value) for tag in n.tags))


@selector_method("path")
def _by_path(graph: Graph, c: Criterion, previous: PreviousRun | None) -> set[str]:
    """Nodes defined in a file, in a folder (at any depth) or in files matching a wildcard."""
    prefix = c.value.rstrip("/")
    return _where(graph, lambda n: n.path == prefix or n.path.startswith(prefix + "/")
                  or fnmatchcase(n.path, prefix))


@selector_method("source")
def _by_source(graph: Graph, c: Criterion, previous: PreviousRun | None) -> set[str]:
    """Sources named `source.table`, or every table of a source when given its name alone."""
    return _where(graph, lambda n: n.resource_type == SOURCE
                  and (fnmatchcase(n.name, c.value) or fnmatchcase(n.name.split(".")[0], c.value)))


@selector_method("resource_type")
def _by_resource_type(graph: Graph, c: Criterion, previous: PreviousRun | None) -> set[str]:
    """Nodes of one kind: model, seed, source or test."""
    return _where(graph, lambda n: n.resource_type == c.value)


@selector_method("test_name")
def _by_test_name(graph: Graph, c: Criterion, previous: PreviousRun | None) -> set[str]:
    """Tests of a generic test macro (`unique`, `not_null`...) or a singular test's file stem."""
    return _where(graph, lambda n: n.resource_type == TEST and getattr(n, "test_name", "") == c.value)


@selector_method("config", takes_argument=True)
def _by_config(graph: Graph, c: Criterion, previous: PreviousRun | None) -> set[str]:
    """Nodes whose config.<key> is the value (compared as text), or a list that holds it."""
    key = c.argument

    def keep(node: Node) -> bool:
        setting = node.config.get(key)
        return str(setting) == c.value or (isinstance(setting, list) and c.value in setting)
    return _where(graph, keep)


# The manifest entries whose change makes a node state:modified (checksums cover SQL and vars).
_COMPARED_BY_STATE = ("checksum", "config", "depends_on", "location")


@selector_method("state", values=("modified", "new"))
def _by_state(graph: Graph, c: Criterion, previous: PreviousRun | None) -> set[str]:
    """Nodes new since the last build, or whose SQL (vars included), config or parents changed."""
    if previous is None or previous.manifest_nodes is None:
        raise ProjectError("state: compares with the last build's manifest (target/state/manifest.json), "
                           "and there is none yet: run a build first")
    old = previous.manifest_nodes
    if c.value == "new":
        return _where(graph, lambda n: n.unique_id not in old and n.resource_type != SOURCE)
    changed = set()
    for uid, entry in (previous.current_nodes or {}).items():
        before = old.get(uid)
        if before is None or any(before.get(key) != entry.get(key) for key in _COMPARED_BY_STATE):
            changed.add(uid)
    return changed & set(graph.nodes)


@selector_method("result")
def _by_result(graph: Graph, c: Criterion, previous: PreviousRun | None) -> set[str]:
    """Nodes whose status in the last run's results is the value (`error`, `fail`, `success`...),
    or a case of it: `skipped` also selects the nodes that were `skipped: unchanged`."""
    if previous is None or previous.results is None:
        raise ProjectError("result: selects from the last run's target/run_results.json, and there is none yet")
    return {uid for uid, status in previous.results.items() if uid in graph.nodes
            and c.value in (status, status.kind)}
