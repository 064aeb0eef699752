"""Change-aware builds: unchanged nodes are skipped; a change rebuilds exactly what it reaches."""
import json
import os

import pyarrow.parquet as pq
import pytest

from PIL import Image

from imageprep import fingerprint
from imageprep.graph import Graph
from imageprep.project import load_project
from imageprep.render import Renderer
from runner_helpers import parquet_inodes, run_cli, write_project


def statuses(root) -> dict:
    data = json.loads((root / "target/run_results.json").read_text())
    return {r["name"]: r["status"] for r in data["results"]}


def rebuilt(root) -> set:
    return {name for name, status in statuses(root).items() if status in ("success", "pass")}


def project_files(images):
    return {
        "macros/m.sql": "{% macro double(x) %}{{ x }} * 2{% endmacro %}",
        "models/files.sql": "select relative_path, length from {{ source('raw', 'images') }}",
        "models/sizes.sql": "select relative_path, {{ double('length') }} as twice from {{ ref('files') }}",
        "models/const.sql": "select {{ var('k', 1) }} as k",
        "models/uses_const.sql": "select k + 1 as k1 from {{ ref('const') }}",
        "models/hashes.sql": "select hamming(1, 3) as h",
        "models/schema.yml": f"""
            sources:
              - name: raw
                tables:
                  - name: images
                    format: images
                    path: {images}
            models:
              - name: files
                columns:
                  - name: relative_path
                    tests: [unique]
            """,
    }


def test_unchanged_nodes_are_skipped_and_changes_rebuild_exactly_what_they_reach(spark, tmp_path, capsys):
    images = tmp_path / "images" / "a"
    images.mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(images / "one.png")
    root = write_project(tmp_path / "p", project_files(images.parent))
    assert run_cli(capsys, "build", "--project-dir", str(root))[0] == 0
    assert rebuilt(root) == {"files", "sizes", "const", "uses_const", "hashes", "unique_files_relative_path"}

    code, out, _ = run_cli(capsys, "build", "--project-dir", str(root))
    assert code == 0 and set(statuses(root).values()) == {"skipped: unchanged"}
    assert "6 unchanged" in out

    run_cli(capsys, "build", "--project-dir", str(root), "--vars", "k: 2")
    assert rebuilt(root) == {"const", "uses_const"}

    (root / "macros/m.sql").write_text("{% macro double(x) %}{{ x }} + {{ x }}{% endmacro %}")
    run_cli(capsys, "build", "--project-dir", str(root), "--vars", "k: 2")
    assert rebuilt(root) == {"sizes"}

    Image.new("RGB", (4, 4)).save(images / "two.png")  # one new image
    run_cli(capsys, "build", "--project-dir", str(root), "--vars", "k: 2")
    assert rebuilt(root) == {"files", "sizes", "unique_files_relative_path"}

    run_cli(capsys, "build", "--project-dir", str(root), "--vars", "k: 2", "--full-refresh")
    assert set(statuses(root).values()) == {"success", "pass"}


def test_image_function_code_is_part_of_the_fingerprint(tmp_path, monkeypatch):
    root = write_project(tmp_path, {
        "models/a.sql": "select phash(image) as h from {{ ref('b') }}",
        "models/b.sql": "select 1 as image",
        "models/c.sql": "select hamming(1, 2) as d",
    })
    project = load_project(root)
    renderer = Renderer(project, "local")
    renderer.render_all()
    graph = Graph(project.models.values())
    executable = {m.unique_id: renderer.executable_sql(m) for m in project.models.values()}

    def prints():
        return fingerprint.compute(graph, project, executable, fingerprint.macro_sources(renderer), lambda s: None)

    before = prints()
    real = fingerprint.function_fingerprints()
    monkeypatch.setattr(fingerprint, "function_fingerprints", lambda: {**real, "phash": "changed code"})
    after = prints()
    changed = {graph.nodes[u].name for u in before if before[u] != after[u]}
    assert changed == {"a"}
    assert fingerprint.functions_called("select PHASH (x), hamming(a,b), lower(y)") == ["hamming", "phash"]


def test_retry_reruns_failed_and_skipped_nodes_and_state_selects_changes(spark, tmp_path, capsys):
    root = write_project(tmp_path, {
        "models/ok.sql": "select 1 as id",
        "models/flaky.sql": "select 10 div (id - {{ var('zero_at', 99) }}) as q from range(1, 3) as t(id)",
        "models/after.sql": "select * from {{ ref('flaky') }}",
        "models/other.sql": "select {{ var('o', 1) }} as o",
    })
    spark.conf.set("spark.sql.ansi.enabled", "true")
    code, _, _ = run_cli(capsys, "build", "--project-dir", str(root), "--vars", "zero_at: 1")
    assert code == 1 and statuses(root) == {"ok": "success", "flaky": "error", "after": "skipped", "other": "success"}
    # retry keeps the last run's vars unless given new ones
    assert run_cli(capsys, "retry", "--project-dir", str(root))[0] == 1
    assert statuses(root) == {"flaky": "error", "after": "skipped"}
    assert run_cli(capsys, "retry", "--project-dir", str(root), "--vars", "zero_at: 5")[0] == 0
    assert statuses(root) == {"flaky": "success", "after": "success"}
    code, out, _ = run_cli(capsys, "retry", "--project-dir", str(root))
    assert code == 0 and "Nothing to retry" in out

    code, out, _ = run_cli(capsys, "ls", "--project-dir", str(root), "--vars", "{zero_at: 5, o: 2}", "-s", "state:modified+")
    assert out.split() == ["model", "table", "other"]
    (root / "models/new.sql").write_text("select 2 as n")
    code, out, _ = run_cli(capsys, "ls", "--project-dir", str(root), "--vars", "zero_at: 5", "-s", "state:new")
    assert out.split() == ["model", "table", "new"]
    code, out, _ = run_cli(capsys, "ls", "--project-dir", str(root), "-s", "result:success")
    assert set(out.split()[2::3]) == {"flaky", "after"}


# The seed `src` stands for data that arrives between builds (a change of data, not of logic);
# `inc` adds what is new to its table.
INCREMENTAL = """
{{{{ config(materialized='incremental', {config}) }}}}
select id, part, tag from {{{{ ref('src') }}}}
{{% if is_incremental() %}} where id >= (select coalesce(max(id), -1) - {overlap} from {{{{ this }}}}) {{% endif %}}
"""


def incremental_project(tmp_path, config, overlap=0):
    return write_project(tmp_path, {"models/inc.sql": INCREMENTAL.format(config=config, overlap=overlap)})


def build_incremental(capsys, root, *flags, lo, hi, tag="", part=None, extra=False, gone=()):
    """Write the seed's rows (ids lo..hi-1 but `gone`), then build."""
    header = "id,part,tag" + (",extra_col" if extra else "")
    rows = [f"{i},{i % 2 if part is None else part},{tag}" + (f",{i * 10}" if extra else "")
            for i in range(lo, hi) if i not in gone]
    (root / "seeds").mkdir(exist_ok=True)
    (root / "seeds/src.csv").write_text("\n".join([header, *rows]) + "\n")
    return run_cli(capsys, "build", "--project-dir", str(root), *flags)


def version_folder(root, name="inc"):
    """The folder of a table's current version, as the catalog names it (local or URI warehouse)."""
    catalog = json.loads((root / "target/warehouse/_catalog.json").read_text())
    return root / "target/warehouse" / catalog[name]["version"]


def current_files(root, name="inc") -> dict:
    """Data file name -> inode, in the table's current version."""
    return {p.name: p.stat().st_ino for p in version_folder(root, name).rglob("*.parquet")}


def table(root, name="inc"):
    import pyarrow.parquet as pq

    rows = pq.read_table(version_folder(root, name)).to_pylist()
    return sorted((r["id"], r["tag"]) for r in rows)


def test_incremental_append_keeps_old_files_and_adds_new_rows(spark, tmp_path, capsys):
    root = incremental_project(tmp_path, "incremental_strategy='append'")
    assert build_incremental(capsys, root, lo=0, hi=3, tag="a")[0] == 0
    first = parquet_inodes(root / "target/warehouse/inc")
    assert build_incremental(capsys, root, lo=0, hi=5, tag="b")[0] == 0
    assert table(root) == [(0, "a"), (1, "a"), (2, "a"), (2, "b"), (3, "b"), (4, "b")]
    assert first <= parquet_inodes(root / "target/warehouse/inc")  # old files hard-linked, not rewritten
    assert build_incremental(capsys, root, "--full-refresh", lo=0, hi=2, tag="z")[0] == 0
    assert table(root) == [(0, "z"), (1, "z")]


def test_incremental_merge_replaces_rows_by_unique_key(spark, tmp_path, capsys):
    root = incremental_project(tmp_path, "unique_key='id'", overlap=1)
    assert build_incremental(capsys, root, lo=0, hi=4, tag="a")[0] == 0
    assert build_incremental(capsys, root, lo=0, hi=6, tag="b")[0] == 0
    assert table(root) == [(0, "a"), (1, "a"), (2, "b"), (3, "b"), (4, "b"), (5, "b")]  # ids >= max - 1 replaced


def test_an_incremental_merge_writes_with_the_models_options(spark, tmp_path, capsys):
    root = incremental_project(tmp_path, "unique_key='id', options={'maxRecordsPerFile': 2}", overlap=1)
    assert build_incremental(capsys, root, lo=0, hi=5, tag="a")[0] == 0
    assert build_incremental(capsys, root, lo=0, hi=8, tag="b")[0] == 0
    assert table(root) == [(0, "a"), (1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "b"), (6, "b"), (7, "b")]
    import pyarrow.parquet as pq

    assert max(pq.read_metadata(f).num_rows for f in version_folder(root).rglob("*.parquet")) == 2


def test_a_change_to_an_incremental_models_own_logic_rebuilds_it_in_full(spark, tmp_path, capsys):
    root = incremental_project(tmp_path, "incremental_strategy='append'")
    assert build_incremental(capsys, root, lo=0, hi=3, tag="a")[0] == 0
    (root / "models/inc.sql").write_text(INCREMENTAL.format(config="incremental_strategy='append'", overlap=0)
                                         .replace("select id, part, tag", "select id, part, upper(tag) as tag"))
    code, out, _ = build_incremental(capsys, root, lo=0, hi=4, tag="b")
    assert code == 0 and table(root) == [(0, "B"), (1, "B"), (2, "B"), (3, "B")]
    assert statuses(root)["inc"] == "success"
    results = json.loads((root / "target/run_results.json").read_text())["results"]
    assert "logic changed" in next(r["message"] for r in results if r["name"] == "inc")


def test_incremental_insert_overwrite_replaces_partitions(spark, tmp_path, capsys):
    root = write_project(tmp_path, {"models/inc.sql": """
        {{ config(materialized='incremental', incremental_strategy='insert_overwrite', partition_by='part') }}
        select * from {{ ref('src') }}
        """})
    build_incremental(capsys, root, lo=0, hi=2, part=1, tag="a")
    build_incremental(capsys, root, lo=5, hi=6, part=2, tag="b")
    build_incremental(capsys, root, lo=7, hi=8, part=1, tag="c")
    assert table(root) == [(5, "b"), (7, "c")]


def schema_change_project(tmp_path, mode):
    return write_project(tmp_path, {"models/inc.sql": f"""
        {{{{ config(materialized='incremental', on_schema_change='{mode}') }}}}
        select * from {{{{ ref('src') }}}}
        {{% if is_incremental() %}} where id > (select max(id) from {{{{ this }}}}) {{% endif %}}
        """})


def test_incremental_schema_change_fails_or_adds_columns(spark, tmp_path, capsys):
    import pyarrow.parquet as pq

    root = schema_change_project(tmp_path / "fail", "fail")
    build_incremental(capsys, root, lo=0, hi=2)
    code, out, _ = build_incremental(capsys, root, lo=0, hi=3, extra=True)
    assert code == 2 and "new columns: extra_col" in out and "--full-refresh" in out

    root = schema_change_project(tmp_path / "add", "append_new_columns")
    build_incremental(capsys, root, lo=0, hi=2)
    code, _, _ = build_incremental(capsys, root, lo=0, hi=3, extra=True)
    rows = sorted(pq.read_table(root / "target/warehouse/inc").to_pylist(), key=lambda r: r["id"])
    assert code == 0 and [(r["id"], r["extra_col"]) for r in rows] == [(0, None), (1, None), (2, 20)]


@pytest.mark.parametrize("warehouse", ["local", "uri"])
def test_delete_where_removes_rows_and_rewrites_only_the_files_holding_them(spark, tmp_path, capsys, warehouse):
    # `src` holds the ids that still exist; `inc` mirrors it incrementally, one file per id.
    # A URI warehouse goes through the Hadoop FileSystem API, where kept files are copied.
    location = (tmp_path / "target" / "warehouse").as_uri() if warehouse == "uri" else "target/warehouse"
    root = write_project(tmp_path, {
        "project.yml": f"name: demo\nwarehouse: {location}\ntargets:\n  local:\n    master: 'local[2]'\n",
        "models/inc.sql": """
            {{ config(materialized='incremental', unique_key='id',
                      delete_where="id not in (select id from " ~ ref('src') ~ ")") }}
            select /*+ REPARTITION(id) */ id, tag from {{ ref('src') }}
            {% if is_incremental() %} where id not in (select id from {{ this }}) {% endif %}
            """})

    def run(**rows):
        return build_incremental(capsys, root, **rows)[0]

    assert run(lo=0, hi=6, tag="a") == 0
    before = current_files(root)
    assert run(lo=0, hi=8, gone=(2, 3), tag="b") == 0
    assert table(root) == [(0, "a"), (1, "a"), (4, "a"), (5, "a"), (6, "b"), (7, "b")]
    after = current_files(root)
    # Files without deleted rows are kept (same names; hard links on a local folder); the others are gone.
    assert len(set(before) & set(after)) >= len(before) - 2 and set(before) - set(after)
    if warehouse == "local":
        assert all(before[name] == after[name] for name in set(before) & set(after))
    assert run(lo=0, hi=8, gone=(2, 3), tag="c") == 0  # nothing deleted, nothing new
    assert table(root) == [(0, "a"), (1, "a"), (4, "a"), (5, "a"), (6, "b"), (7, "b")]
    # Nothing new is written as no file, not as an empty one beside the kept files.
    assert sorted(current_files(root)) == sorted(after)
    assert all(pq.read_metadata(f).num_rows for f in version_folder(root).rglob("*.parquet"))


def test_an_empty_incremental_table_keeps_one_file_build_after_build(spark, tmp_path, capsys):
    # Spark writes an empty file for no rows; kept beside the last build's, they would pile up.
    root = write_project(tmp_path, {"models/inc.sql": """
        {{ config(materialized='incremental', unique_key='id') }}
        select id, tag from {{ ref('src') }} where id < 0
        """})
    for hi in (2, 3, 4):
        assert build_incremental(capsys, root, lo=0, hi=hi)[0] == 0
    assert table(root) == [] and len(current_files(root)) == 1


def test_delete_where_that_is_not_sql_names_the_model(spark, tmp_path, capsys):
    root = write_project(tmp_path, {"models/inc.sql": """
        {{ config(materialized='incremental', delete_where="no_such_column > 1") }}
        select id from {{ ref('src') }}
        """})
    assert build_incremental(capsys, root, lo=0, hi=2)[0] == 0
    code, out, _ = build_incremental(capsys, root, lo=0, hi=3)
    assert code != 0 and "delete_where of 'inc'" in out and "no_such_column" in out


@pytest.mark.parametrize("relation", ["table", "view"])
def test_delete_unmatched_removes_the_rows_no_row_of_the_relation_matches(spark, tmp_path, capsys, monkeypatch,
                                                                           relation):
    # Against a table of the warehouse PyArrow finds the rows (no SQL is made for it); against a
    # view, the same rule runs on Spark as its SQL. Both remove the same rows.
    from imageprep import deletions

    in_relation = "src" if relation == "table" else "src_view"
    root = write_project(tmp_path, {
        "models/src_view.sql": "{{ config(materialized='view') }} select * from {{ ref('src') }}",
        "models/inc.sql": f"""
            {{{{ config(materialized='incremental', unique_key='id',
                        delete_unmatched={{'in': ref('{in_relation}'), 'on': ['id']}}) }}}}
            select /*+ REPARTITION(id) */ id, tag from {{{{ ref('src') }}}}
            {{% if is_incremental() %}} where id not in (select id from {{{{ this }}}}) {{% endif %}}
            """})
    made_sql = []
    condition = deletions.unmatched_condition
    monkeypatch.setattr(deletions, "unmatched_condition", lambda *a: made_sql.append(a) or condition(*a))
    assert build_incremental(capsys, root, lo=0, hi=6, tag="a")[0] == 0
    before = current_files(root)
    assert build_incremental(capsys, root, lo=0, hi=8, gone=(2, 3), tag="b")[0] == 0
    assert table(root) == [(0, "a"), (1, "a"), (4, "a"), (5, "a"), (6, "b"), (7, "b")]
    assert bool(made_sql) == (relation == "view")
    # The files that lost no row are kept as they were, those that did are copied without them;
    # the two new rows came out of the query in two partitions, and are written as one file.
    after = current_files(root)
    assert all(before[name] == after[name] for name in set(before) & set(after))
    new_files = [version_folder(root) / name for name in set(after) - set(before) if ".rewrite-" not in name]
    assert [pq.read_table(f).column("id").to_pylist() for f in new_files] == [[6, 7]]
    assert build_incremental(capsys, root, lo=0, hi=8, gone=(2, 3, 7), tag="c")[0] == 0
    assert table(root) == [(0, "a"), (1, "a"), (4, "a"), (5, "a"), (6, "b")]


def test_delete_unmatched_maps_columns_filters_the_relation_and_takes_several_rules(spark, tmp_path, capsys):
    # A row stays while `keep` has its id as `kept_id` with grp 'x', and `src` still has its id.
    root = write_project(tmp_path, {
        "seeds/keep.csv": "kept_id,grp\n0,x\n1,x\n2,y\n3,x\n4,x\n",
        "models/inc.sql": """
            {{ config(materialized='incremental', unique_key='id',
                      delete_unmatched=[{'in': ref('keep'), 'on': {'id': 'kept_id'}, 'where': {'grp': 'x'}},
                                        {'in': ref('src'), 'on': 'id'}]) }}
            select id, tag from {{ ref('src') }}
            {% if is_incremental() %} where id not in (select id from {{ this }}) {% endif %}
            """})
    assert build_incremental(capsys, root, lo=0, hi=5, tag="a")[0] == 0
    assert table(root) == [(i, "a") for i in range(5)]
    assert build_incremental(capsys, root, lo=0, hi=5, gone=(4,), tag="b")[0] == 0
    assert table(root) == [(0, "a"), (1, "a"), (3, "a")]  # 2: grp y; 4: gone from src


def test_delete_unmatched_that_is_malformed_names_the_model(spark, tmp_path, capsys):
    root = write_project(tmp_path, {"models/inc.sql": """
        {{ config(materialized='incremental', unique_key='id', delete_unmatched={'on': ['id']}) }}
        select id from {{ ref('src') }}
        """})
    code, out, _ = build_incremental(capsys, root, lo=0, hi=2)
    assert code != 0 and "delete_unmatched of 'inc' needs 'in'" in out


def test_new_rows_reads_only_the_files_written_since_the_models_last_build(spark, tmp_path, capsys):
    # `child` appends whatever new_rows() gives it, with no anti-join: a row read twice would show.
    root = write_project(tmp_path, {
        "models/base.sql": """
            {{ config(materialized='incremental', incremental_strategy='append') }}
            select id, tag from {{ ref('src') }}
            {% if is_incremental() %} where id > (select max(id) from {{ this }}) {% endif %}
            """,
        "models/child.sql": """
            {{ config(materialized='incremental', incremental_strategy='append') }}
            select id, tag from {{ new_rows(ref('base')) }}
            """})
    assert build_incremental(capsys, root, lo=0, hi=3, tag="a")[0] == 0
    assert build_incremental(capsys, root, lo=0, hi=5, tag="b")[0] == 0
    assert table(root, "child") == [(0, "a"), (1, "a"), (2, "a"), (3, "b"), (4, "b")]
    catalog = json.loads((root / "target/warehouse/_catalog.json").read_text())
    # The list lives in child's version folder (it grows with the data); the catalog names it.
    seen_file = version_folder(root, "child") / catalog["child"]["seen"]
    assert sorted(json.loads(seen_file.read_text())["base"]) == sorted(current_files(root, "base"))
    compiled = (root / "target/compiled/demo/models/child.sql").read_text()
    assert "__new_rows__child__base" in compiled
    # A full refresh reads every row again.
    assert run_cli(capsys, "build", "--project-dir", str(root), "--select", "child", "--full-refresh")[0] == 0
    assert table(root, "child") == [(0, "a"), (1, "a"), (2, "a"), (3, "b"), (4, "b")]


def test_rows_a_merge_copies_into_a_rewritten_file_are_not_new_downstream(spark, tmp_path, capsys):
    # `base` loses a row, so its one file is copied without it; `child` appends whatever
    # new_rows() gives it, with no anti-join: the copied rows, read again, would show twice.
    root = write_project(tmp_path, {
        "models/base.sql": """
            {{ config(materialized='incremental', unique_key='id',
                      delete_where="id not in (select id from " ~ ref('src') ~ ")") }}
            select /*+ COALESCE(1) */ id, tag from {{ ref('src') }}
            {% if is_incremental() %} where id not in (select id from {{ this }}) {% endif %}
            """,
        "models/child.sql": """
            {{ config(materialized='incremental', incremental_strategy='append') }}
            select id, tag from {{ new_rows(ref('base')) }}
            """})
    assert build_incremental(capsys, root, lo=0, hi=4, tag="a")[0] == 0
    assert build_incremental(capsys, root, lo=0, hi=5, gone=(1,), tag="b")[0] == 0
    assert table(root, "base") == [(0, "a"), (2, "a"), (3, "a"), (4, "b")]
    assert any(".rewrite-" in name for name in current_files(root, "base"))
    assert table(root, "child") == [(0, "a"), (1, "a"), (2, "a"), (3, "a"), (4, "b")]  # 4 is the one new row


def test_a_test_reading_new_rows_checks_only_rows_written_since_it_passed(spark, tmp_path, capsys):
    # The test fails on more than two rows; it sees two at a time unless it must look at all.
    root = write_project(tmp_path, {
        "macros/t.sql": """
            {% test at_most_two_new_rows(model) %}
            select count(*) as n from {{ new_rows(model) }} having count(*) > 2
            {% endtest %}""",
        "models/base.sql": """
            {{ config(materialized='incremental', incremental_strategy='append') }}
            select id, tag from {{ ref('src') }}
            {% if is_incremental() %} where id > (select max(id) from {{ this }}) {% endif %}
            """,
        "models/schema.yml": "models:\n  - name: base\n    tests: [at_most_two_new_rows]\n"})
    assert build_incremental(capsys, root, lo=0, hi=2)[0] == 0
    assert build_incremental(capsys, root, lo=0, hi=4)[0] == 0
    assert statuses(root)["at_most_two_new_rows_base"] == "pass"
    code, out, _ = run_cli(capsys, "test", "--project-dir", str(root), "--full-refresh")
    assert code == 1 and statuses(root)["at_most_two_new_rows_base"] == "fail"
    # After a failure nothing is remembered: the next run checks every row again.
    assert run_cli(capsys, "test", "--project-dir", str(root))[0] == 1


def test_new_rows_of_an_image_folder_reads_only_new_or_changed_files(spark, tmp_path, capsys):
    images = tmp_path / "images" / "a"
    images.mkdir(parents=True)
    Image.new("RGB", (4, 4), "red").save(images / "one.png")
    Image.new("RGB", (4, 4), "blue").save(images / "two.png")
    root = write_project(tmp_path / "p", {
        "models/files.sql": """
            {{ config(materialized='incremental', incremental_strategy='append') }}
            select relative_path, length(content) as n_bytes from {{ new_rows(source('raw', 'images')) }}
            """,
        "models/schema.yml": f"sources:\n  - name: raw\n    tables:\n      - name: images\n"
                             f"        format: images\n        path: {images.parent}\n"})

    def files():
        import pyarrow.parquet as pq

        return sorted(r["relative_path"] for r in pq.read_table(root / "target/warehouse/files").to_pylist())

    assert run_cli(capsys, "build", "--project-dir", str(root))[0] == 0
    assert files() == ["a/one.png", "a/two.png"]
    Image.new("RGB", (4, 4), "green").save(images / "th[r]ee.png")  # a name that is also a glob
    assert run_cli(capsys, "build", "--project-dir", str(root))[0] == 0
    assert files() == ["a/one.png", "a/th[r]ee.png", "a/two.png"]
    Image.new("RGB", (8, 8), "red").save(images / "one.png")  # changed: new size and time
    assert run_cli(capsys, "build", "--project-dir", str(root))[0] == 0
    assert files() == ["a/one.png", "a/one.png", "a/th[r]ee.png", "a/two.png"]


def test_full_refresh_when_rebuilds_an_incremental_model_when_its_condition_holds(spark, tmp_path, capsys):
    root = incremental_project(tmp_path, "incremental_strategy='append', "
                               "full_refresh_when=\"exists (select 1 from \" ~ ref('src') ~ \" where tag = 'reset')\"")
    assert build_incremental(capsys, root, lo=0, hi=2, tag="a")[0] == 0
    assert build_incremental(capsys, root, lo=0, hi=3, tag="b")[0] == 0
    assert table(root) == [(0, "a"), (1, "a"), (1, "b"), (2, "b")]  # incremental: the condition did not hold
    assert build_incremental(capsys, root, lo=0, hi=3, tag="reset")[0] == 0
    assert table(root) == [(0, "reset"), (1, "reset"), (2, "reset")]
    results = json.loads((root / "target/run_results.json").read_text())["results"]
    assert "full_refresh_when held" in next(r["message"] for r in results if r["name"] == "inc")


def test_full_refresh_when_that_is_not_sql_names_the_model_and_keeps_the_table(spark, tmp_path, capsys):
    # The condition is checked while the incremental build runs: its error still fails the model,
    # and the version written meanwhile is discarded, not published.
    root = incremental_project(tmp_path, "incremental_strategy='append', full_refresh_when='no_such_column > 1'")
    assert build_incremental(capsys, root, lo=0, hi=2, tag="a")[0] == 0
    code, out, _ = build_incremental(capsys, root, lo=0, hi=3, tag="b")
    assert code != 0 and "full_refresh_when of 'inc' is not a valid condition" in out
    assert table(root) == [(0, "a"), (1, "a")]


def test_a_merging_table_gathers_its_small_files_and_an_appending_one_keeps_them(spark, tmp_path, capsys):
    from imageprep.incremental import COMPACT_AT_FILES

    # Each build adds one new row (ids above the table's largest), written as one file.
    merging = incremental_project(tmp_path / "merge", "unique_key='id'", overlap=-1)
    appending = incremental_project(tmp_path / "append", "incremental_strategy='append'", overlap=-1)
    counts = {merging: [], appending: []}
    for build in range(COMPACT_AT_FILES + 1):
        for root in counts:
            assert build_incremental(capsys, root, lo=0, hi=build + 1, tag=f"t{build}")[0] == 0
            counts[root].append(len(current_files(root)))
    assert counts[appending] == list(range(1, COMPACT_AT_FILES + 2))
    # Once COMPACT_AT_FILES files are small, the next merge writes them again as one file, its new
    # row included: both are one partition, and Spark's union of single partitions is one.
    assert counts[merging] == list(range(1, COMPACT_AT_FILES + 1)) + [1]
    for root in counts:
        assert table(root) == [(i, f"t{i}") for i in range(COMPACT_AT_FILES + 1)]


def test_a_merge_writes_its_few_new_rows_as_one_file_whatever_partitions_the_query_made(spark, tmp_path, capsys):
    # The query spreads its rows over 8 partitions, as a shuffle does: 8 small files per build otherwise.
    root = write_project(tmp_path, {"models/inc.sql": INCREMENTAL.format(config="unique_key='id'", overlap=-1)
                                    .replace("select id", "select /*+ REPARTITION(8, id) */ id")})
    assert build_incremental(capsys, root, lo=0, hi=3, tag="a")[0] == 0
    first = current_files(root)
    assert build_incremental(capsys, root, lo=0, hi=40, tag="b")[0] == 0
    added = {name for name, inode in current_files(root).items() if inode not in first.values()}
    assert len(added) == 1
    assert table(root) == [(i, "a") for i in range(3)] + [(i, "b") for i in range(3, 40)]


def test_small_files_are_found_by_size_on_a_local_or_hadoop_folder(spark, tmp_path):
    from pathlib import Path

    from imageprep.incremental import COMPACT_AT_FILES, SMALL_FILE_BYTES, small_files_to_compact
    from imageprep.files import StoragePath, files_for
    from imageprep.files_hadoop import HadoopFiles

    names = [Path(f"part-{i}.parquet") for i in range(COMPACT_AT_FILES)]
    for name in names:
        (tmp_path / name).write_bytes(b"x" * 100)
    for version in (tmp_path, StoragePath(tmp_path.as_uri(), HadoopFiles(spark)),
                    StoragePath(tmp_path.as_uri(), files_for(tmp_path.as_uri()))):
        assert small_files_to_compact(version, names) == {name: 100 for name in names}
        assert small_files_to_compact(version, names[1:]) == {}  # too few to gather
    (tmp_path / names[0]).write_bytes(b"x" * SMALL_FILE_BYTES)  # no longer small
    assert small_files_to_compact(tmp_path, names) == {}


def test_delete_unmatched_against_an_image_folder_asks_spark_only_when_a_file_went(spark, tmp_path, capsys, monkeypatch):
    """A mirror of the folder (as the example's stg_files): while every row still matches a file,
    the build's listing says so and no Spark job looks; a file deleted or changed is removed by
    the rule's SQL on Spark."""
    from imageprep import deletions

    images = tmp_path / "images" / "a"
    images.mkdir(parents=True)
    for name, colour in [("one.png", "red"), ("two.png", "blue")]:
        Image.new("RGB", (4, 4), colour).save(images / name)
    root = write_project(tmp_path / "p", {
        "models/files.sql": """
            {{ config(materialized='incremental', unique_key='path',
                      delete_unmatched={'in': source('raw', 'images'),
                                        'on': {'path': 'path', 'size_bytes': 'length', 'modified_at': 'modificationTime'}}) }}
            select path, relative_path, length as size_bytes, modificationTime as modified_at
            from {{ new_rows(source('raw', 'images')) }}
            """,
        "models/schema.yml": f"sources:\n  - name: raw\n    tables:\n      - name: images\n"
                             f"        format: images\n        path: {images.parent}\n"})
    asked_spark = []
    condition = deletions.unmatched_condition
    monkeypatch.setattr(deletions, "unmatched_condition", lambda *a: asked_spark.append(a) or condition(*a))

    def files():
        return sorted(r["relative_path"] for r in pq.read_table(version_folder(root, "files")).to_pylist())

    assert run_cli(capsys, "build", "--project-dir", str(root))[0] == 0
    Image.new("RGB", (4, 4), "green").save(images / "three.png")
    assert run_cli(capsys, "build", "--project-dir", str(root))[0] == 0
    assert files() == ["a/one.png", "a/three.png", "a/two.png"] and asked_spark == []
    (images / "two.png").unlink()
    Image.new("RGB", (8, 8), "red").save(images / "one.png")  # changed: new size and time
    assert run_cli(capsys, "build", "--project-dir", str(root))[0] == 0
    assert files() == ["a/one.png", "a/three.png"] and len(asked_spark) == 1
    sizes = {r["relative_path"]: r["size_bytes"] for r in pq.read_table(version_folder(root, "files")).to_pylist()}
    assert sizes["a/one.png"] == (images / "one.png").stat().st_size


def test_a_folder_listing_gives_the_keys_of_the_rows_spark_reads(spark, tmp_path):
    """row_keys (what delete_unmatched against a folder checks with) equals the folder's rows:
    Spark's times in whole milliseconds, the driver's rows (an empty file, a hidden one) to the
    microsecond."""
    from imageprep.listing import list_local
    from imageprep.nodes import SOURCE, Source
    from imageprep.sources import read_image_folder, row_keys

    folder = tmp_path / "images"
    (folder / "a").mkdir(parents=True)
    Image.new("RGB", (4, 4), "red").save(folder / "a" / "one.png")
    Image.new("RGB", (4, 4), "blue").save(folder / "a" / "two.png")
    (folder / "a" / "empty.png").write_bytes(b"")  # binaryFile gives no row: the driver's
    (folder / "a" / ".hidden.png").write_bytes(b"x")
    # Times just under a millisecond's end, where rounding to the microsecond would cross it.
    for i, name in enumerate(["one.png", "two.png", "empty.png"]):
        os.utime(folder / "a" / name, ns=(1_700_000_000_123_999_999 + i * 1_000_000_000,) * 2)
    source = Source(unique_id="source.p.raw.images", name="raw.images", resource_type=SOURCE, path="models/s.yml",
                    source_name="raw", table_name="images", format="images", location=str(folder))
    listing = list_local(str(folder), recursive=True)
    rows = read_image_folder(spark, source, listing=listing).selectExpr(
        "path", "length", "unix_micros(modificationTime) as micros").collect()
    from_spark = {(r["path"], r["length"], r["micros"]) for r in rows}
    assert row_keys(source, listing) == from_spark
    assert {path.rsplit("/", 1)[-1] for path, _, _ in from_spark} == {"one.png", "two.png", "empty.png", ".hidden.png"}
    # Spark read these two: their times are cut to the millisecond, not rounded up to the next.
    assert {m % 1_000_000 for path, _, m in from_spark if path.endswith(("/one.png", "/two.png"))} == {123_000}


def test_the_files_spark_lists_are_fetched_in_one_call_with_their_names_intact(spark, tmp_path):
    from imageprep.sources import _input_files

    folder = tmp_path / "images" / "a b"
    folder.mkdir(parents=True)
    for name in ["one.png", "sp ace.png", "per%25cent.png", "comma,hash#.png", "ünï.png"]:
        Image.new("RGB", (2, 2)).save(folder / name)
    frame = spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(str(folder.parent))
    assert _input_files(spark, frame) == list(frame.inputFiles())
    assert len(_input_files(spark, frame)) == 5
