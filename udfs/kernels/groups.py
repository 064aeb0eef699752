"""Connected components of pairs of paths: the groups of (near-)duplicates behind ``duplicate_groups``.

Union-find where the root of a component is always its smallest path, so the result does not
depend on the order of the pairs, or on which end of a pair comes first. Paths are compared as
Python strings, by code point, which is the order of their UTF-8 bytes: Spark's own order for
strings (``min(path)``, ``path_a < path_b``).
"""
from __future__ import annotations

from collections.abc import Iterable


def duplicate_groups(pairs: Iterable[tuple[str | None, str | None] | None]) -> list[tuple[str, str]]:
    """``(path, group_id)`` for every path that appears in a pair, sorted by path: ``group_id`` is
    the smallest path of the path's connected component (a path paired only with itself is its
    own group). A missing pair, or a pair with a missing end, links nothing and is left out."""
    parent: dict[str, str] = {}

    def root(path: str) -> str:
        top = path
        while parent[top] != top:
            top = parent[top]
        while parent[path] != top:  # path compression: every node on the way now points at the root
            parent[path], path = top, parent[path]
        return top

    for pair in pairs:
        if pair is None or pair[0] is None or pair[1] is None:
            continue
        a, b = pair
        parent.setdefault(a, a)
        parent.setdefault(b, b)
        root_a, root_b = root(a), root(b)
        if root_a != root_b:  # the smaller root stays the root: each root is its component's smallest path
            if root_a < root_b:
                parent[root_b] = root_a
            else:
                parent[root_a] = root_b
    return [(path, root(path)) for path in sorted(parent)]
