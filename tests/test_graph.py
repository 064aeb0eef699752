"""The dependency graph: order, cycles, and dbt's selection syntax."""
import json

import pytest

from imageprep.errors import ProjectError
from imageprep.graph import Graph
from imageprep.selection import select
from imageprep.nodes import MODEL, SEED, TEST, DataTest, Model, Seed


def model(name, deps=(), tags=(), path=None):
    return Model(unique_id=f"model.p.{name}", name=name, resource_type=MODEL, path=path or f"models/{name}.sql",
                 depends_on=[f"model.p.{d}" if not d.startswith(("seed.", "test.")) else d for d in deps],
                 tags=list(tags), config={"materialized": "table"})


def shop_graph():
    seed = Seed(unique_id="seed.p.raw", name="raw", resource_type=SEED, path="seeds/raw.csv")
    nodes = [
        seed,
        model("stg", ["seed.p.raw"], tags=["staging"], path="models/staging/stg.sql"),
        model("orders", ["stg"], tags=["marts"], path="models/marts/orders.sql"),
        model("customers", ["orders", "stg"], tags=["marts"], path="models/marts/customers.sql"),
        model("report", ["customers"], path="models/report.sql"),
        DataTest(unique_id="test.p.unique_orders_id", name="unique_orders_id", resource_type=TEST,
                 path="models/schema.yml", depends_on=["model.p.orders"]),
    ]
    return Graph(nodes)


def names(graph, uids):
    return [graph.nodes[u].name for u in uids]


def test_order_is_topological_with_tests_right_after_their_model():
    graph = shop_graph()
    assert names(graph, graph.order) == ["raw", "stg", "orders", "unique_orders_id", "customers", "report"]


def test_a_cycle_is_reported_whole():
    nodes = [model("a", ["c"]), model("b", ["a"]), model("c", ["b"])]
    with pytest.raises(ProjectError) as info:
        Graph(nodes)
    message = str(info.value)
    assert "found a cycle:" in message
    cycle = message.split("found a cycle: ")[1].split(" (")[0].split(" -> ")
    assert len(cycle) == 4 and cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}
    # each model refers to the next one
    deps = {"a": "c", "b": "a", "c": "b"}
    assert all(deps[x] == y for x, y in zip(cycle, cycle[1:]))


@pytest.mark.parametrize("selector, expected", [
    (["orders"], ["orders", "unique_orders_id"]),
    (["+orders"], ["raw", "stg", "orders", "unique_orders_id"]),
    (["orders+"], ["orders", "unique_orders_id", "customers", "report"]),
    (["orders+1"], ["orders", "unique_orders_id", "customers"]),
    (["1+customers"], ["stg", "orders", "unique_orders_id", "customers"]),
    (["tag:marts"], ["orders", "unique_orders_id", "customers"]),
    (["path:models/staging"], ["stg"]),
    (["stg report"], ["stg", "report"]),
    (["stg", "report"], ["stg", "report"]),
    (["tag:marts,+report"], ["orders", "unique_orders_id", "customers"]),
    (["cust*"], ["customers"]),
    (["resource_type:seed"], ["raw"]),
    (["@orders"], ["raw", "stg", "orders", "unique_orders_id", "customers", "report"]),
])
def test_selection_syntax(selector, expected):
    graph = shop_graph()
    chosen, warnings = select(graph, selector, None)
    assert names(graph, chosen) == expected
    assert warnings == []


def test_exclude_and_warnings_for_selectors_that_match_nothing():
    graph = shop_graph()
    chosen, warnings = select(graph, ["+customers"], ["tag:staging"])
    assert names(graph, chosen) == ["raw", "orders", "unique_orders_id", "customers"]
    chosen, warnings = select(graph, ["nope"], None)
    assert chosen == [] and warnings == ["the selector 'nope' matches no node"]


def test_unknown_selector_method_is_an_error():
    with pytest.raises(ProjectError, match="unknown selector method 'flavour:'"):
        select(shop_graph(), ["flavour:x"], None)


def test_excluding_a_model_drops_its_tests():
    graph = shop_graph()
    chosen, _ = select(graph, None, ["orders"])
    assert "unique_orders_id" not in names(graph, chosen) and "customers" in names(graph, chosen)


def graph_with_tests_across_models():
    """shop_graph plus tests that read two models each: one upstream of `orders`, one beside it."""
    graph = shop_graph()
    nodes = list(graph.nodes.values()) + [
        model("audit", ["stg"]),
        DataTest(unique_id="test.p.orders_match_stg", name="orders_match_stg", resource_type=TEST,
                 path="tests/orders_match_stg.sql", depends_on=["model.p.orders", "model.p.stg"]),
        DataTest(unique_id="test.p.audit_covers_orders", name="audit_covers_orders", resource_type=TEST,
                 path="tests/audit_covers_orders.sql", depends_on=["model.p.audit", "model.p.orders"]),
    ]
    return Graph(nodes)


@pytest.mark.parametrize("mode, selector, expected_tests", [
    ("eager", ["orders"], ["audit_covers_orders", "orders_match_stg", "unique_orders_id"]),
    ("cautious", ["orders"], ["unique_orders_id"]),
    ("cautious", ["+orders"], ["orders_match_stg", "unique_orders_id"]),
    ("buildable", ["orders"], ["orders_match_stg", "unique_orders_id"]),
    ("empty", ["+orders"], []),
    ("empty", ["orders", "unique_orders_id"], ["unique_orders_id"]),  # selected by name, not indirectly
])
def test_indirect_selection_modes_choose_the_tests_that_come_with_a_selection(mode, selector, expected_tests):
    graph = graph_with_tests_across_models()
    chosen, _ = select(graph, selector, None, indirect=mode)
    tests = sorted(graph.nodes[u].name for u in chosen if graph.nodes[u].resource_type == TEST)
    assert tests == expected_tests
    assert "orders" in names(graph, chosen) and "audit" not in names(graph, chosen)


def test_an_unknown_indirect_selection_mode_is_an_error():
    with pytest.raises(ProjectError, match="unknown indirect selection 'lazy'"):
        select(shop_graph(), ["orders"], None, indirect="lazy")


def test_rendered_nodes_are_frozen(tmp_path):
    """Once compile_project has rendered them, nodes cannot be changed under the build."""
    from dataclasses import FrozenInstanceError

    from imageprep.tasks import compile_project, load
    from tests.runner_helpers import write_project

    root = write_project(tmp_path, {
        "models/a.sql": "{{ config(materialized='table', tags=['x']) }} select 1 as id",
        "models/b.sql": "select * from {{ ref('a') }}",
    })
    project = load(root)
    compiled = compile_project(project, project.target(None))
    b = compiled.graph.nodes["model.demo.b"]
    assert b.depends_on == ("model.demo.a",) and compiled.graph.nodes["model.demo.a"].tags == ("x",)
    with pytest.raises(FrozenInstanceError, match="model.demo.b is rendered and frozen; cannot set compiled_sql"):
        b.compiled_sql = "select 2"
    with pytest.raises(TypeError, match="read-only"):
        b.config["materialized"] = "view"
    with pytest.raises(AttributeError):
        b.depends_on.append("model.demo.c")
    assert json.loads(json.dumps(compiled.graph.nodes["model.demo.a"].config))["tags"] == ["x"]
