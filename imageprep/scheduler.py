"""The order nodes run in: graph order, several at a time, skipping what a failure makes pointless.

A node starts once every node it waits for has a result: its selected parents and, for a model
or seed, the selected tests of those parents that come before it in graph order (so a model is
not built on a table its tests have not passed yet). Up to `threads` nodes run at once; among
the ready ones, the first in graph order starts first.

A node is skipped, and said to be, when a parent failed or was skipped, or when an error-severity
test of a parent failed (a failing test blocks the node it checks, and so everything downstream);
independent branches go on. With `fail_fast`, every node not yet started after a failure is
skipped.

Tests of one model that are ready together may run as one unit (`run_together`): their checks
then share one Spark action.

Results are reported in graph order, whatever order concurrent nodes finish in, so two runs print
the same lines. Nothing here knows Spark or what a node does: `run(node, slot)` does the work.
"""
from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Callable

from .artifacts import NodeResult
from .graph import Graph
from .nodes import TEST, Node
from .status import Status

RunNode = Callable[[Node, int], NodeResult]  # (node, slot: how many were running when it started)
RunTogether = Callable[[list[Node], int], list[NodeResult]]  # tests of one model, one result each
Report = Callable[[int, int, Node, NodeResult], None]  # (1-based index, total, node, result)


def run_in_order(graph: Graph, to_run: list[str], run: RunNode, threads: int = 1, fail_fast: bool = False,
                 report: Report | None = None, run_together: RunTogether | None = None) -> list[NodeResult]:
    """Run the nodes `to_run` (ids in graph order); their results, in that order. With
    `run_together`, the tests of one model that are ready at the same time run as one unit."""
    threads = max(1, threads)
    chosen = set(to_run)
    waits = {uid: waits_for(graph, uid, chosen) for uid in to_run}
    results: dict[str, NodeResult] = {}
    blocked: set[str] = set()  # failed or skipped nodes, and models whose error-severity test failed
    pending = list(to_run)  # in graph order: the first ready node is started first
    running: dict = {}
    reported = 0
    stop = False
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="node") as pool:
        while pending or running:
            ready = [u for u in pending if all(w in results for w in waits[u])]
            for uid in ready:
                if len(running) >= threads:
                    break
                if uid not in pending:  # started with the other tests of its model
                    continue
                pending.remove(uid)
                node = graph.nodes[uid]
                upstream = graph.parents[uid] & blocked
                if stop or upstream:
                    why = "--fail-fast: an earlier node failed" if stop else \
                        "upstream failed: " + ", ".join(sorted(graph.nodes[u].name for u in upstream))
                    results[uid] = NodeResult(uid, node.name, node.resource_type, Status.SKIPPED, message=why,
                                              materialized=node.materialized)
                    blocked.add(uid)
                    continue
                together = [u for u in ready if u in pending and _same_model_tests(graph, uid, u)
                            and not graph.parents[u] & blocked] if run_together else []
                if together:
                    for other in together:
                        pending.remove(other)
                    group = [uid] + together
                    running[pool.submit(run_together, [graph.nodes[u] for u in group], len(running))] = group
                else:
                    running[pool.submit(run, node, len(running))] = [uid]
            reported = _report_ready(graph, to_run, results, reported, report)
            if not running:
                continue
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in finished:
                group = running.pop(future)
                outcome = future.result()
                for uid, result in zip(group, outcome if isinstance(outcome, list) else [outcome]):
                    node = graph.nodes[uid]
                    results[uid] = result
                    if result.status.failed:
                        blocked.add(uid)
                        if node.resource_type == TEST and node.attached_to:
                            blocked.add(node.attached_to)
                        stop = stop or fail_fast
    _report_ready(graph, to_run, results, reported, report)  # the nodes that finished last
    return [results[uid] for uid in to_run]


def _same_model_tests(graph: Graph, first: str, other: str) -> bool:
    """Whether `other` is another test declared on the model `first` tests."""
    a, b = graph.nodes[first], graph.nodes[other]
    return (other != first and a.resource_type == TEST and b.resource_type == TEST
            and a.attached_to is not None and a.attached_to == b.attached_to)


def _report_ready(graph: Graph, to_run: list[str], results: dict, reported: int, report: Report | None) -> int:
    """Report the results that are next in graph order; returns how many are reported in all."""
    while reported < len(to_run) and to_run[reported] in results:
        uid = to_run[reported]
        reported += 1
        if report is not None:
            report(reported, len(to_run), graph.nodes[uid], results[uid])
    return reported


def waits_for(graph: Graph, uid: str, chosen: set[str]) -> set[str]:
    """Selected nodes to finish first: the node's parents and the tests of those parents."""
    parents = graph.parents[uid] & chosen
    if graph.nodes[uid].resource_type == TEST:
        return parents
    # Only tests placed earlier in graph order: a relationships test may read this node too.
    tests = {child for parent in parents for child in graph.children[parent]
             if child in chosen and graph.nodes[child].resource_type == TEST
             and graph.position[child] < graph.position[uid]}
    return parents | tests
