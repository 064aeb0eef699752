"""Selection: parsing --select/--exclude into a spec, and each selector method on its own."""
from dataclasses import FrozenInstanceError

import pytest

from imageprep import selection
from imageprep.errors import ProjectError
from imageprep.graph import Graph
from imageprep.nodes import MODEL, SEED, SOURCE, TEST, DataTest, Model, Seed, Source
from imageprep.selection import (METHODS, Criterion, Method, PreviousRun, SelectionIntersection, SelectionUnion,
                                 evaluate, parse_criterion, parse_selection, select)
from imageprep.status import Status


def model(name, deps, path, tags=(), **config):
    return Model(unique_id=f"model.p.{name}", name=name, resource_type=MODEL, path=path, depends_on=list(deps),
                 tags=list(tags), config={"materialized": "table", **config})


def images_graph():
    """raw.images -> stg_images -> train -> report, countries -> labels -> train, and two tests of train."""
    return Graph([
        Source(unique_id="source.p.raw.images", name="raw.images", resource_type=SOURCE, path="models/sources.yml",
               source_name="raw", table_name="images"),
        Seed(unique_id="seed.p.countries", name="countries", resource_type=SEED, path="seeds/countries.csv"),
        model("stg_images", ["source.p.raw.images"], "models/staging/stg_images.sql", ["staging", "images"],
              materialized="view"),
        model("labels", ["seed.p.countries"], "models/staging/labels.sql", ["staging"]),
        model("train", ["model.p.stg_images", "model.p.labels"], "models/marts/train.sql", ["marts"],
              grants=["reader", "writer"]),
        model("report", ["model.p.train"], "models/report.sql"),
        DataTest(unique_id="test.p.not_null_train_label", name="not_null_train_label", resource_type=TEST,
                 path="models/schema.yml", depends_on=["model.p.train"], test_name="not_null"),
        DataTest(unique_id="test.p.train_is_balanced", name="train_is_balanced", resource_type=TEST,
                 path="tests/train_is_balanced.sql", depends_on=["model.p.train"], test_name="train_is_balanced"),
    ])


def matched(text, previous=None, graph=None):
    """Names of the nodes (of any type) that a --select argument selects, sorted."""
    graph = graph or images_graph()
    chosen, _ = evaluate(graph, parse_selection([text]), previous)
    return sorted(graph.nodes[uid].name for uid in chosen)


# --- parsing -----------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    ("train", Criterion("train", "name", "train")),
    ("name:train", Criterion("name:train", "name", "train")),
    ("tr*", Criterion("tr*", "name", "tr*")),
    ("+train", Criterion("+train", "name", "train", parents=True)),
    ("2+train", Criterion("2+train", "name", "train", parents=True, parents_depth=2)),
    ("train+", Criterion("train+", "name", "train", children=True)),
    ("train+1", Criterion("train+1", "name", "train", children=True, children_depth=1)),
    ("3+tag:marts+0", Criterion("3+tag:marts+0", "tag", "marts", parents=True, parents_depth=3,
                                children=True, children_depth=0)),
    ("@stg_images", Criterion("@stg_images", "name", "stg_images", childrens_parents=True)),
    ("path:models/staging/", Criterion("path:models/staging/", "path", "models/staging/")),
    ("config.materialized:view", Criterion("config.materialized:view", "config", "view", argument="materialized")),
    ("state:modified+", Criterion("state:modified+", "state", "modified", children=True)),
    ("result:fail", Criterion("result:fail", "result", "fail")),
    ("path:a:b", Criterion("path:a:b", "path", "a:b")),  # only the first colon ends the method
    ("config.materialized", Criterion("config.materialized", "name", "config.materialized")),  # no colon: a name
])
def test_a_selector_parses_into_one_criterion(raw, expected):
    assert parse_criterion(raw) == expected


def test_spaces_make_a_union_and_commas_an_intersection():
    spec = parse_selection(["tag:staging,+train report", "labels"])
    assert spec == SelectionUnion((
        SelectionIntersection((Criterion("tag:staging", "tag", "staging"),
                               Criterion("+train", "name", "train", parents=True))),
        SelectionIntersection((Criterion("report", "name", "report"),)),
        SelectionIntersection((Criterion("labels", "name", "labels"),)),
    ))


def test_stray_commas_and_spaces_select_nothing():
    assert parse_selection([" , ", "", ",,"]) == SelectionUnion(())
    assert parse_selection(["a,,b "]) == parse_selection(["a,b"])
    assert select(images_graph(), [" , "], None) == ([], [])


def test_the_spec_is_frozen_and_hashable():
    spec = parse_selection(["+train,tag:marts"])
    with pytest.raises(FrozenInstanceError):
        spec.components[0].criteria[0].value = "report"
    assert hash(spec) == hash(parse_selection(["+train,tag:marts"]))


@pytest.mark.parametrize("arg, message", [
    ("train+report", "cannot read the selector 'train+report': write [@][N+]name[+N]"),
    ("+", "cannot read the selector '+'"),
    ("train+x", "cannot read the selector 'train+x'"),
    ("a,b++", "cannot read the selector 'b++'"),
    ("flavour:x", "unknown selector method 'flavour:'. Use a name, or one of name:, tag:"),
    (":x", "unknown selector method ':'"),
    ("config:view", "unknown selector method 'config:'"),  # config needs its key
    ("tag.colour:red", "unknown selector method 'tag.colour:'"),  # only config takes a key
    ("state:changed", "unknown state 'changed': use state:modified or state:new"),
])
def test_a_bad_selector_is_named_when_parsing(arg, message):
    with pytest.raises(ProjectError) as info:
        parse_selection(["train", arg])
    assert str(info.value).startswith(message)


def test_the_unknown_method_message_lists_the_registered_methods(monkeypatch):
    with pytest.raises(ProjectError) as info:
        parse_criterion("flavour:x")
    assert all(f" {m.syntax}" in str(info.value) for m in METHODS.values())
    assert "config.<key>:" in str(info.value) and "state:" in str(info.value) and "result:" in str(info.value)

    monkeypatch.setitem(METHODS, "flavour", Method("flavour", lambda graph, criterion, previous: set()))
    assert parse_criterion("flavour:x").method == "flavour"
    with pytest.raises(ProjectError, match="flavour:"):
        parse_criterion("colour:x")


def test_both_arguments_are_parsed_before_anything_is_evaluated():
    # state: without a manifest fails only when evaluated; the bad --exclude is reported first
    with pytest.raises(ProjectError, match="unknown selector method 'flavour:'"):
        select(images_graph(), ["state:modified"], ["flavour:x"])
    with pytest.raises(ProjectError, match="unknown state 'changed'"):
        select(images_graph(), ["state:changed"], None, previous=None)


# --- graph operators ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("train", ["train"]),
    ("+train", ["countries", "labels", "raw.images", "stg_images", "train"]),
    ("1+train", ["labels", "stg_images", "train"]),
    ("0+train", ["train"]),
    ("train+", ["not_null_train_label", "report", "train", "train_is_balanced"]),
    ("labels+1", ["labels", "train"]),
    ("@labels", ["countries", "labels", "not_null_train_label", "raw.images", "report", "stg_images", "train",
                 "train_is_balanced"]),
    ("+tag:staging,tag:images+", ["stg_images"]),
    ("labels stg_images", ["labels", "stg_images"]),
])
def test_operators_extend_what_a_method_matches(text, expected):
    assert matched(text) == expected


def test_a_criterion_whose_method_matches_nothing_warns_even_inside_an_intersection():
    graph = images_graph()
    chosen, warnings = evaluate(graph, parse_selection(["train,nope+", "tag:none"]))
    assert chosen == set()
    assert warnings == ["the selector 'nope+' matches no node", "the selector 'tag:none' matches no node"]


# --- each method on its own ----------------------------------------------------------------------

def test_every_method_is_tested_here():
    assert set(METHODS) == {"name", "tag", "path", "source", "resource_type", "test_name", "config", "state", "result"}
    assert set(METHOD_CASES) == set(METHODS) - {"state", "result"}


# The selectors of each method (state and result have tests of their own below) and what they match.
METHOD_CASES = {
    "name": [
        ("labels", ["labels"]),
        ("name:labels", ["labels"]),
        ("*_images", ["stg_images"]),
        ("train*", ["train", "train_is_balanced"]),
        ("Train", []),  # case-sensitive
        ("raw.images", ["raw.images"]),
    ],
    "tag": [
        ("tag:staging", ["labels", "stg_images"]),
        ("tag:images", ["stg_images"]),
        ("tag:ma*", ["train"]),
        ("tag:stag", []),
    ],
    "path": [
        ("path:models/staging", ["labels", "stg_images"]),
        ("path:models/staging/", ["labels", "stg_images"]),
        ("path:models/stag", []),  # a folder is matched whole
        ("path:models/report.sql", ["report"]),
        ("path:models/*.yml", ["not_null_train_label", "raw.images"]),
        ("path:tests", ["train_is_balanced"]),
    ],
    "source": [
        ("source:raw", ["raw.images"]),
        ("source:raw.images", ["raw.images"]),
        ("source:raw.*", ["raw.images"]),
        ("source:stg_images", []),  # only sources
        ("source:raw+", ["not_null_train_label", "raw.images", "report", "stg_images", "train", "train_is_balanced"]),
    ],
    "resource_type": [
        ("resource_type:seed", ["countries"]),
        ("resource_type:source", ["raw.images"]),
        ("resource_type:test", ["not_null_train_label", "train_is_balanced"]),
        ("resource_type:mod*", []),  # no wildcards
    ],
    "test_name": [
        ("test_name:not_null", ["not_null_train_label"]),
        ("test_name:train_is_balanced", ["train_is_balanced"]),
        ("test_name:train", []),
    ],
    "config": [
        ("config.materialized:view", ["stg_images"]),
        ("config.materialized:table", ["labels", "report", "train"]),
        ("config.grants:writer", ["train"]),  # a list config holds the value
        ("config.materialized:t*", []),  # no wildcards
    ],
}


@pytest.mark.parametrize("text, expected", [
    pytest.param(text, expected, id=f"{method}-{text}")
    for method, cases in METHOD_CASES.items() for text, expected in cases
])
def test_method(text, expected):
    assert matched(text) == expected


def test_state_new_and_modified_compare_with_the_last_manifest():
    graph = images_graph()
    entry = {"checksum": "c", "config": {"materialized": "table"}, "depends_on": {"nodes": []}, "location": None}
    old = {uid: dict(entry) for uid in ["source.p.raw.images", "seed.p.countries", "model.p.labels", "model.p.train",
                                        "model.p.report"]}
    current = {uid: dict(entry) for uid in graph.nodes}
    current["model.p.train"]["checksum"] = "changed"
    current["model.p.report"]["config"] = {"materialized": "view"}
    current["model.p.gone"] = dict(entry)  # not in the graph any more
    previous = PreviousRun(manifest_nodes=old, current_nodes=current)
    assert matched("state:new", previous, graph) == [
        "not_null_train_label", "stg_images", "train_is_balanced"]  # sources are never new
    assert matched("state:modified", previous, graph) == [
        "not_null_train_label", "report", "stg_images", "train", "train_is_balanced"]
    current["model.p.labels"]["location"] = "elsewhere"
    current["model.p.labels"]["depends_on"] = {"nodes": ["seed.p.countries"]}
    assert "labels" in matched("state:modified", previous, graph)


@pytest.mark.parametrize("previous", [None, PreviousRun()])
def test_state_without_a_manifest_is_an_error(previous):
    with pytest.raises(ProjectError, match="there is none yet: run a build first"):
        matched("state:modified", previous)


def test_result_selects_by_the_last_run_status():
    previous = PreviousRun(results={"model.p.train": Status.ERROR, "test.p.train_is_balanced": Status.FAIL,
                                    "model.p.report": Status.UNCHANGED, "model.p.gone": Status.ERROR})
    assert matched("result:error", previous) == ["train"]
    assert matched("result:fail", previous) == ["train_is_balanced"]
    assert matched("result:skipped+", previous) == ["report"]  # skipped: unchanged is a kind of skipped
    assert matched("result:success", previous) == []


@pytest.mark.parametrize("previous", [None, PreviousRun()])
def test_result_without_run_results_is_an_error(previous):
    with pytest.raises(ProjectError, match="result: selects from the last run's target/run_results.json"):
        matched("result:error", previous)


def test_select_keeps_only_executable_nodes_and_their_tests():
    graph = images_graph()
    chosen, warnings = select(graph, ["source:raw+1"], ["resource_type:seed"])
    assert [graph.nodes[uid].name for uid in chosen] == ["stg_images"]
    chosen, _ = select(graph, ["+train"], ["resource_type:seed"], indirect="cautious")
    assert [graph.nodes[uid].name for uid in chosen] == [
        "labels", "stg_images", "train", "not_null_train_label", "train_is_balanced"]
