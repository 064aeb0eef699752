"""A build's tables become visible together, when it ends well; what a failed build wrote is kept
out of sight and reused by the next build."""
import json

import pyarrow.parquet as pq
import pytest

from imageprep import node_runner
from imageprep.warehouse import Warehouse
from runner_helpers import run_cli, write_project

# `c` fails at run time (after `a`, `b` and `d` were written) when v equals fail_at.
MODELS = {
    "models/a.sql": "select {{ var('v', 1) }} as v",
    "models/b.sql": "select v, v * 10 as w from {{ ref('a') }}",
    "models/c.sql": "select v, case when v = {{ var('fail_at', -1) }} then raise_error('No space left on device') "
                    "else v end as x from {{ ref('b') }}",
    "models/d.sql": "select {{ var('v', 1) }} * 100 as v",
    "models/e.sql": "{{ config(materialized='view') }} select v from {{ ref('a') }}",
}
TABLES = ("a", "b", "c", "d")


def warehouse(root):
    return root / "target/warehouse"


def catalog_text(root) -> str:
    return (warehouse(root) / "_catalog.json").read_text()


def pending(root) -> dict:
    path = warehouse(root) / "_pending.json"
    return json.loads(path.read_text()) if path.exists() else {}


def values(root, table) -> list:
    """The table's v column, read as other tools read it: through its link."""
    return pq.read_table(warehouse(root) / table).column("v").to_pylist()


def statuses(root) -> dict:
    data = json.loads((root / "target/run_results.json").read_text())
    return {r["name"]: r["status"] for r in data["results"]}


def versions(root, table) -> set:
    return {p.name for p in (warehouse(root) / "_versions" / table).iterdir()}


def build_with(capsys, root, *flags, **vars):
    return run_cli(capsys, "build", "--project-dir", str(root), "--vars", json.dumps(vars), *flags)


@pytest.fixture
def built(spark, tmp_path, capsys):
    """The project built once with v = 1, then a build with v = 2 that fails at `c`."""
    root = write_project(tmp_path, MODELS)
    assert build_with(capsys, root, v=1)[0] == 0
    good = catalog_text(root)
    code, out, _ = build_with(capsys, root, v=2, fail_at=2)
    assert code == 1 and statuses(root)["c"] == "error", out
    return root, good, out


def test_a_failed_build_leaves_the_catalog_as_the_last_good_build_left_it(built, capsys):
    root, good, out = built
    assert catalog_text(root) == good  # byte for byte
    assert all(values(root, t) == [1] for t in ("a", "b", "c")) and values(root, "d") == [100]
    code, out_query, _ = run_cli(capsys, "query", "--project-dir", str(root), "--format", "json", "select v from e")
    assert code == 0 and json.loads(out_query) == {"v": 1}
    # What it wrote is kept, staged and named, for the next build.
    staged = pending(root)
    assert set(staged) == {"a", "b", "d", "e"}
    assert all((warehouse(root) / staged[t]["version"]).is_dir() for t in ("a", "b", "d"))
    assert "Readers still see the last good build" in out


def test_the_next_build_reuses_what_the_failed_one_wrote_and_commits_everything(built, capsys):
    root, good, _ = built
    staged = pending(root)
    code, out, _ = build_with(capsys, root, v=2)
    assert code == 0, out
    assert statuses(root) == {"a": "skipped: unchanged", "b": "skipped: unchanged", "c": "success",
                              "d": "skipped: unchanged", "e": "skipped: unchanged"}
    catalog = json.loads(catalog_text(root))
    assert {t: catalog[t]["version"] for t in ("a", "b", "d")} == {t: staged[t]["version"] for t in ("a", "b", "d")}
    assert all(values(root, t) == [2] for t in ("a", "b", "c")) and values(root, "d") == [200]
    assert pending(root) == {} and not (warehouse(root) / "_pending.json").exists()
    # The version readers were on is kept for them: the current one and the one before.
    before = json.loads(good)
    for table in TABLES:
        assert versions(root, table) == {catalog[table]["version"].rsplit("/", 1)[1],
                                         before[table]["version"].rsplit("/", 1)[1]}


def test_retry_commits_what_the_failed_build_left_pending(built, capsys):
    root, _, _ = built
    assert values(root, "a") == [1]  # written by the failed build, not visible
    code, out, _ = run_cli(capsys, "retry", "--project-dir", str(root), "--vars", json.dumps({"v": 2}))
    assert code == 0, out
    assert statuses(root) == {"c": "success"}
    assert all(values(root, t) == [2] for t in ("a", "b", "c")) and values(root, "d") == [200]
    assert pending(root) == {}
    code, out, _ = run_cli(capsys, "retry", "--project-dir", str(root))
    assert code == 0 and "Nothing to retry" in out


def test_a_partial_build_commits_only_its_selection_and_keeps_the_rest_pending(built, capsys):
    root, good, _ = built
    staged_a = pending(root)["a"]["version"]
    code, out, _ = build_with(capsys, root, "--select", "d", v=2)
    assert code == 0, out
    assert values(root, "d") == [200] and values(root, "a") == [1]
    assert set(pending(root)) == {"a", "b", "e"}
    assert "not visible yet: a, b, e" in out
    # Neither the committed version of `a` nor its staged one is removed.
    committed_a = json.loads(good)["a"]["version"].rsplit("/", 1)[1]
    assert versions(root, "a") == {committed_a, staged_a.rsplit("/", 1)[1]}
    # A build that writes `a` again replaces the staged version; the committed one stays for readers.
    assert build_with(capsys, root, v=3)[0] == 0
    catalog = json.loads(catalog_text(root))
    assert versions(root, "a") == {committed_a, catalog["a"]["version"].rsplit("/", 1)[1]}
    assert all(values(root, t) == [3] for t in ("a", "b", "c")) and pending(root) == {}


def test_a_failing_test_keeps_the_builds_tables_out_of_sight(spark, tmp_path, capsys):
    root = write_project(tmp_path, {
        "models/a.sql": "select {{ var('v', 1) }} as v",
        "models/schema.yml": "models:\n  - name: a\n    columns:\n      - name: v\n"
                             "        tests: [{accepted_values: {values: [1, 3]}}]\n",
    })
    assert build_with(capsys, root, v=1)[0] == 0
    good = catalog_text(root)
    assert build_with(capsys, root, v=2)[0] == 1
    assert catalog_text(root) == good and values(root, "a") == [1]
    assert build_with(capsys, root, v=3)[0] == 0
    assert values(root, "a") == [3]


def test_a_reader_during_a_build_sees_only_the_last_committed_build(built, capsys, monkeypatch):
    root, good, _ = built
    seen = {}
    real = node_runner.run_node

    def run_node_then_look(ex, node):
        result = real(ex, node)
        if node.name == "b":  # between two nodes: a and b are written, c is not
            reader = Warehouse(str(warehouse(root)))
            seen["catalog"] = reader.catalog()
            seen["a_by_link"] = values(root, "a")
            seen["a_by_catalog"] = pq.read_table(warehouse(root) / reader.catalog()["a"]["version"]).column("v").to_pylist()
            seen["build_sees"] = ex.warehouse.catalog()["a"]["version"]
        return result

    monkeypatch.setattr(node_runner, "run_node", run_node_then_look)
    assert build_with(capsys, root, "--full-refresh", v=4)[0] == 0
    assert seen["catalog"] == json.loads(good)
    assert seen["a_by_link"] == seen["a_by_catalog"] == [1]
    # The build itself read its new `a`, which is what it then committed.
    assert seen["build_sees"] == json.loads(catalog_text(root))["a"]["version"] != json.loads(good)["a"]["version"]
    assert values(root, "a") == [4]


def test_an_incremental_model_continues_from_its_staged_version(spark, tmp_path, capsys):
    root = write_project(tmp_path, {
        "models/inc.sql": """
            {{ config(materialized='incremental', incremental_strategy='append') }}
            select id from {{ ref('src') }}
            {% if is_incremental() %} where id > (select max(id) from {{ this }}) {% endif %}
            """,
        "models/boom.sql": "select case when count(*) = {{ var('fail_at', -1) }} then raise_error('boom') "
                           "else count(*) end as n from {{ ref('inc') }}",
    })
    (root / "seeds").mkdir()

    def build_ids(n, **vars):
        (root / "seeds/src.csv").write_text("id\n" + "".join(f"{i}\n" for i in range(n)))
        return build_with(capsys, root, **vars)[0]

    def ids():
        return sorted(pq.read_table(warehouse(root) / "inc").column("id").to_pylist())

    assert build_ids(3) == 0
    assert build_ids(5, fail_at=5) == 1
    assert ids() == [0, 1, 2]
    staged = warehouse(root) / pending(root)["inc"]["version"]
    staged_files = {p.stat().st_ino for p in staged.rglob("*.parquet")}
    assert build_ids(7) == 0
    assert ids() == list(range(7))  # each row once
    # The new version holds the staged version's files (hard links), not a rewrite from the old one.
    assert staged_files <= {p.stat().st_ino for p in (warehouse(root) / "inc").resolve().rglob("*.parquet")}


def test_a_warehouse_outside_the_project_is_named_at_the_start(spark, tmp_path, capsys):
    elsewhere = tmp_path / "shared" / "wh"
    root = write_project(tmp_path / "project", {
        "project.yml": f"name: demo\nwarehouse: {elsewhere}\ntargets:\n  local:\n    master: 'local[2]'\n",
        "models/a.sql": "select 1 as v",
    })
    code, out, _ = run_cli(capsys, "run", "--project-dir", str(root))
    assert code == 0 and f"Warehouse: {elsewhere} (outside the project)" in out.splitlines()
    assert (elsewhere / "a").is_dir()
    inside = write_project(tmp_path / "inside", {"models/a.sql": "select 1 as v"})
    code, out, _ = run_cli(capsys, "run", "--project-dir", str(inside))
    assert code == 0 and "Warehouse:" not in out


def test_a_uri_warehouse_stages_and_commits_the_same_way(spark, tmp_path, capsys):
    location = (tmp_path / "wh").as_uri()
    root = write_project(tmp_path / "project", {
        **MODELS, "project.yml": f"name: demo\nwarehouse: {location}\ntargets:\n  local:\n    master: 'local[2]'\n"})
    wh = tmp_path / "wh"

    def committed(table):
        entry = json.loads((wh / "_catalog.json").read_text())[table]
        return entry["version"], pq.read_table(wh / entry["version"]).column("v").to_pylist()

    assert build_with(capsys, root, v=1)[0] == 0
    good = (wh / "_catalog.json").read_text()
    code, out, _ = build_with(capsys, root, v=2, fail_at=2)
    assert code == 1 and f"Warehouse: {location} (outside the project)" in out
    assert (wh / "_catalog.json").read_text() == good and committed("a")[1] == [1]
    staged = json.loads((wh / "_pending.json").read_text())
    assert build_with(capsys, root, v=2)[0] == 0
    assert statuses(root)["a"] == "skipped: unchanged" and committed("a") == (staged["a"]["version"], [2])
    assert not (wh / "_pending.json").exists()
