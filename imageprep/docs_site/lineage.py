"""The lineage graph as SVG, laid out in layers.

Sources, seeds and models are boxes in columns by depth (a node sits one column right of its
deepest parent); within a column, boxes are ordered by the mean height of their parents, so
edges mostly run straight. Tests are small dots under the box of the node they check, coloured
by their last result. Every box and dot is a link; its tooltip says what it is.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from html import escape

from ..nodes import SEED, SOURCE, TEST

BOX_W, BOX_H = 152, 40
COL_GAP, ROW_GAP, MARGIN = 44, 14, 12
LANE_H = 6  # the height an edge takes where it passes through a column
DOT_R, DOT_STEP, DOTS_PER_ROW = 5, 13, 10
NAME_CHARS = 19
_KIND_RANK = {SOURCE: 0, SEED: 1}


@dataclass(frozen=True)
class Look:
    """How one node is drawn: where it links, the line under its name, CSS classes, tooltip."""

    href: str
    caption: str = ""
    classes: str = ""
    title: str = ""


@dataclass
class Box:
    """A node's box, or a lane (`uid` None) where an edge passes through a column it skips."""

    key: str
    uid: str | None
    column: int
    height: float = BOX_H
    x: float = 0.0
    y: float = 0.0
    tests: list[str] = field(default_factory=list)

    @property
    def middle(self) -> float:
        return self.y + (BOX_H / 2 if self.uid else self.height / 2)


@dataclass
class Drawing:
    boxes: dict[str, Box]  # node boxes by unique id, lanes by "parent@column"
    edges: list[list[str]]  # each edge as the keys it passes: parent, lanes..., child
    width: float
    height: float


def layout(graph, members: set[str] | None = None, show_tests: bool = True) -> Drawing:
    """Boxes in columns by depth; an edge that skips columns gets a lane in each one it crosses,
    so it runs between boxes, not through them. Rows are ordered by sweeping the columns three
    times (left to right, right to left, left to right), each time by the mean height of the
    neighbours on the side already placed; ties break by kind and name, so the layout is stable."""
    uids = [u for u in graph.order if graph.nodes[u].resource_type != TEST and (members is None or u in members)]
    boxes: dict[str, Box] = {}
    for uid in uids:  # graph.order is topological: parents come first
        depths = [boxes[p].column for p in graph.parents[uid] if p in boxes]
        boxes[uid] = Box(uid, uid, max(depths) + 1 if depths else 0)
    if show_tests:
        for uid in graph.order:
            host = _host(graph, uid, boxes) if graph.nodes[uid].resource_type == TEST else None
            if host is not None:
                boxes[host].tests.append(uid)
    for box in list(boxes.values()):
        rows = -(-len(box.tests) // DOTS_PER_ROW)
        box.height = BOX_H + (rows * DOT_STEP + 2 if rows else 0)

    edges, before, after = [], defaultdict(list), defaultdict(list)
    for uid in uids:
        for parent in sorted(p for p in graph.parents[uid] if p in boxes):
            chain = [parent]
            for column in range(boxes[parent].column + 1, boxes[uid].column):
                key = f"{parent}@{column}"  # edges from one parent share their lanes until they part
                boxes.setdefault(key, Box(key, None, column, LANE_H))
                chain.append(key)
            chain.append(uid)
            edges.append(chain)
            for a, b in zip(chain, chain[1:]):
                if a not in before[b]:
                    before[b].append(a)
                    after[a].append(b)

    columns: dict[int, list[Box]] = defaultdict(list)
    for box in boxes.values():
        columns[box.column].append(box)
    for box in boxes.values():
        box.y = 0.0
    order = sorted(columns)
    for sweep, neighbours in ((order, before), (order[::-1], after), (order, before)):
        for column in sweep:
            def rank(box: Box, neighbours=neighbours):
                ys = [boxes[n].middle for n in neighbours[box.key]]
                node = graph.nodes[box.uid or box.key.rsplit("@", 1)[0]]
                return (sum(ys) / len(ys) if ys else box.middle, _KIND_RANK.get(node.resource_type, 2),
                        box.uid is None, node.name, box.key)
            columns[column].sort(key=rank)
            _stack(columns[column])
    heights = {c: max((b.y + b.height for b in stack), default=0.0) for c, stack in columns.items()}
    total = max(heights.values(), default=0.0)
    for column, stack in columns.items():  # centre each column in the tallest one
        shift = MARGIN + (total - heights[column]) / 2
        for box in stack:
            box.x = MARGIN + column * (BOX_W + COL_GAP)
            box.y += shift
    width = 2 * MARGIN + (max(columns, default=-1) + 1) * (BOX_W + COL_GAP) - COL_GAP
    return Drawing(boxes, edges, max(width, 2 * MARGIN), total + 2 * MARGIN)


def _stack(column: list[Box]) -> None:
    y = 0.0
    for box in column:
        box.y = y
        y += box.height + ROW_GAP


def _host(graph, test_uid: str, boxes: dict[str, Box]) -> str | None:
    """The box a test's dot goes under: the node it is declared on, else its deepest parent."""
    attached = getattr(graph.nodes[test_uid], "attached_to", None)
    if attached in boxes:
        return attached
    parents = sorted((p for p in graph.parents[test_uid] if p in boxes),
                     key=lambda p: (-boxes[p].column, graph.nodes[p].name))
    return parents[0] if parents else None


def lineage_svg(graph, looks: dict[str, Look], members: set[str] | None = None, show_tests: bool = True,
                current: str | None = None, label: str = "Lineage graph") -> str:
    """The SVG of `members` (default: the whole graph); `looks` gives each node's link and style."""
    drawing = layout(graph, members, show_tests)
    boxes = drawing.boxes
    parts = [f'<svg class="lineage" role="img" aria-label="{escape(label)}" '
             f'viewBox="0 0 {drawing.width:.0f} {drawing.height:.0f}" width="{drawing.width:.0f}" '
             f'height="{drawing.height:.0f}">',
             '<defs><marker id="arrowhead" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
             'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>',
             '<g class="edges">']
    for chain in drawing.edges:
        first = boxes[chain[0]]
        x, y = first.x + BOX_W, first.middle
        path = [f"M{x:.1f},{y:.1f}"]
        for key in chain[1:]:
            box = boxes[key]
            x2, y2 = box.x - (2 if box.uid else 0), box.middle
            bend = (x2 - x) / 2
            path.append(f"C{x + bend:.1f},{y:.1f} {x2 - bend:.1f},{y2:.1f} {x2:.1f},{y2:.1f}")
            x, y = x2, y2
            if box.uid is None:  # a lane: straight across the column
                x = box.x + BOX_W
                path.append(f"L{x:.1f},{y:.1f}")
        parts.append(f'<path d="{" ".join(path)}" marker-end="url(#arrowhead)"/>')
    parts.append('</g><g class="nodes">')
    for uid, box in boxes.items():
        if box.uid is None:
            continue
        node, look = graph.nodes[uid], looks[uid]
        classes = " ".join(filter(None, ["node", node.resource_type, look.classes,
                                         "current" if uid == current else ""]))
        name = node.name if len(node.name) <= NAME_CHARS else node.name[: NAME_CHARS - 1] + "\u2026"
        parts.append(
            f'<a href="{escape(look.href)}" class="{escape(classes)}" data-node="{escape(node.name)}">'
            f'<title>{escape(look.title or node.name)}</title>'
            f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{BOX_W}" height="{box.height:.1f}" rx="6"/>'
            f'<text class="name" x="{box.x + 10:.1f}" y="{box.y + 17:.1f}">{escape(name)}</text>'
            f'<text class="caption" x="{box.x + 10:.1f}" y="{box.y + 32:.1f}">{escape(look.caption)}</text></a>')
        for i, test in enumerate(box.tests):
            tlook = looks[test]
            cx = box.x + 10 + DOT_R + (i % DOTS_PER_ROW) * DOT_STEP
            cy = box.y + BOX_H + DOT_R + (i // DOTS_PER_ROW) * DOT_STEP
            parts.append(f'<a href="{escape(tlook.href)}" class="{escape(" ".join(filter(None, ["test", tlook.classes])))}">'
                         f'<title>{escape(tlook.title or graph.nodes[test].name)}</title>'
                         f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{DOT_R}"/></a>')
    parts.append("</g></svg>")
    return "".join(parts)
