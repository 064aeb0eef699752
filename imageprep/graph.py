"""The dependency graph of a project.

An edge runs from a node to each node it reads (`ref`, `source`, a test's model). The build
order is a topological order that breaks ties by name, so two runs print the same order.
`graphlib.TopologicalSorter` does the ordering and finds cycles. Choosing nodes with dbt's
--select/--exclude syntax is in selection.py.
"""
from __future__ import annotations

import graphlib
from typing import Iterable

from .errors import ProjectError
from .nodes import TEST, Node


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
        """The nodes `uid` reads, directly or through others, at most `depth` edges up (None: all)."""
        return self._walk(uid, self.parents, depth)

    def descendants(self, uid: str, depth: int | None = None) -> set[str]:
        """The nodes that read `uid`, directly or through others, at most `depth` edges down (None: all)."""
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
        """`uids` without duplicates, in build order."""
        return sorted(set(uids), key=self.position.__getitem__)
