"""Building small projects end to end on the test run's local Spark session."""
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from runner_helpers import copy_fixture, run_cli, write_project


@pytest.fixture(scope="module")
def shop(spark, tmp_path_factory):
    """The dbt-style fixture project, built once for the tests that only read it."""
    root = copy_fixture("shop", tmp_path_factory.mktemp("shop"))
    from imageprep.cli import main
    code = main(["build", "--project-dir", str(root)])
    return root, code


def results(root: Path) -> dict:
    data = json.loads((root / "target/run_results.json").read_text())
    return {r["name"]: r for r in data["results"]}


def test_dbt_style_project_builds_with_tests_and_artifacts(shop):
    root, code = shop
    assert code == 0  # one warn-severity test fails: a warning, not a failure
    res = results(root)
    assert res["customers"]["status"] == "success" and res["customers"]["rows"] == 5
    assert res["stg_payments"]["materialized"] == "ephemeral"
    assert res["accepted_values_stg_orders_status"]["status"] == "warn"
    assert res["accepted_values_stg_orders_status"]["failures"] == 1
    assert res["relationships_orders_customer_id"]["status"] == "pass"
    assert res["assert_total_payment_amount_is_positive"]["status"] == "pass"
    # Plain Parquet behind the table's name: other tools read it without Spark.
    table = pq.read_table(root / "target/warehouse/customers").to_pydict()
    by_id = dict(zip(table["customer_id"], table["lifetime_value"]))
    assert by_id[1] == pytest.approx(35.0) and by_id[2] == pytest.approx(39.0)
    assert (root / "target/compiled/shop/models/marts/orders.sql").read_text().startswith("WITH __cte__stg_payments AS")
    assert "seed.shop.raw_payments" in json.loads((root / "target/manifest.json").read_text())["nodes"]
    assert "customers" in (root / "target/runner.log").read_text()


def test_seed_column_types_override_inference(spark, shop):
    root, _ = shop
    schema = pq.read_schema(next((root / "target/warehouse/raw_payments").glob("*.parquet")))
    assert str(schema.field("amount").type) == "int32"
    schema = pq.read_schema(next((root / "target/warehouse/raw_orders").glob("*.parquet")))
    assert str(schema.field("id").type) == "int32" and str(schema.field("status").type) == "string"


def test_query_and_show_read_tables_and_views_by_name(shop, capsys):
    root, _ = shop
    code, out, _ = run_cli(capsys, "query", "--project-dir", str(root), "--format", "json",
                           "select c.customer_id, count(*) as n from customers c join stg_orders o "
                           "on c.customer_id = o.customer_id group by c.customer_id order by n desc, c.customer_id limit 2")
    assert code == 0
    rows = [json.loads(line) for line in out.strip().splitlines()]
    assert rows == [{"customer_id": 1, "n": 2}, {"customer_id": 3, "n": 2}]
    code, out, _ = run_cli(capsys, "query", "--project-dir", str(root), "--format", "csv",
                           "select order_id, status from orders where order_id <= 2 order by order_id")
    assert out.splitlines() == ["order_id,status", "1,returned", "2,completed"]
    code, out, _ = run_cli(capsys, "show", "orders", "--project-dir", str(root), "--limit", "2")
    assert code == 0 and "| order_id" in out and out.strip().endswith("2 rows")
    code, _, err = run_cli(capsys, "show", "custmers", "--project-dir", str(root))
    assert code == 2 and "Did you mean 'customers'" in err
    code, _, err = run_cli(capsys, "query", "--project-dir", str(root), "select nope from customers")
    assert code == 2 and "Spark rejected the query" in err


def test_failed_model_keeps_last_good_table_and_skips_downstream(spark, tmp_path, capsys):
    root = write_project(tmp_path, {
        "models/base.sql": "select id, 10 div (id - {{ var('zero_at', 99) }}) as q from range(1, 4) as t(id)",
        "models/down.sql": "select * from {{ ref('base') }}",
        "models/other.sql": "select 1 as x",
    })
    assert run_cli(capsys, "build", "--project-dir", str(root))[0] == 0
    before = pq.read_table(root / "target/warehouse/base").to_pydict()
    spark.conf.set("spark.sql.ansi.enabled", "true")
    code, out, _ = run_cli(capsys, "build", "--project-dir", str(root), "--vars", "zero_at: 2")
    assert code == 1
    res = results(root)
    assert res["base"]["status"] == "error" and "DIVIDE_BY_ZERO" in res["base"]["message"]
    assert res["down"]["status"] == "skipped" and "upstream failed: base" in res["down"]["message"]
    assert res["other"]["status"] == "skipped: unchanged"  # independent of the failure, and unchanged
    assert pq.read_table(root / "target/warehouse/base").to_pydict() == before
    assert "Error in model base" in out
    # No half-written version is left behind.
    assert len(list((root / "target/warehouse/_versions/base").iterdir())) == 1


def test_sql_spark_rejects_names_model_and_compiled_file(spark, tmp_path, capsys):
    root = write_project(tmp_path, {"models/bad.sql": "select no_such_column from range(3)"})
    code, out, _ = run_cli(capsys, "build", "--project-dir", str(root))
    assert code == 2
    assert "model 'bad' in models/bad.sql: Spark rejected the SQL (compiled SQL: target/compiled/demo/models/bad.sql)" in out
    assert "UNRESOLVED_COLUMN" in out and "no_such_column" in out


def test_failing_test_fails_the_build_and_skips_children(spark, tmp_path, capsys):
    root = write_project(tmp_path, {
        "models/a.sql": "select id % 2 as id from range(4)",
        "models/b.sql": "select * from {{ ref('a') }}",
        "models/schema.yml": "models:\n  - name: a\n    columns:\n      - name: id\n        tests: [unique]\n",
    })
    code, out, _ = run_cli(capsys, "build", "--project-dir", str(root))
    assert code == 1
    res = results(root)
    assert res["unique_a_id"]["status"] == "fail" and res["unique_a_id"]["failures"] == 2
    assert res["b"]["status"] == "skipped"
    assert "n_records" in out  # a few failing rows are shown


def test_ragged_seed_row_is_a_project_error(spark, tmp_path, capsys):
    root = write_project(tmp_path, {"seeds/s.csv": "a,b\n1,2\n3\n"})
    code, out, _ = run_cli(capsys, "seed", "--project-dir", str(root))
    assert code == 2 and "seeds/s.csv:3: row has 1 fields but the header has 2" in out


def test_versions_switch_and_old_ones_are_cleaned(spark, tmp_path, capsys):
    root = write_project(tmp_path, {"models/t.sql": "select {{ var('v', 1) }} as v"})
    seen = []
    for v in (1, 2, 3):
        assert run_cli(capsys, "run", "--project-dir", str(root), "--vars", f"v: {v}")[0] == 0
        seen.append((root / "target/warehouse/t").resolve())
        assert pq.read_table(root / "target/warehouse/t").to_pydict() == {"v": [v]}
    versions = sorted((root / "target/warehouse/_versions/t").iterdir())
    assert versions == sorted(seen[1:])  # the current one and the one before it


def test_partition_by_and_views(spark, tmp_path, capsys):
    root = write_project(tmp_path, {
        "models/p.sql": "{{ config(partition_by='part') }} select id, id % 3 as part from range(9)",
        "models/v.sql": "{{ config(materialized='view') }} select part, count(*) as n from {{ ref('p') }} group by part",
    })
    assert run_cli(capsys, "build", "--project-dir", str(root))[0] == 0
    assert sorted(p.name for p in (root / "target/warehouse/p").iterdir() if p.is_dir()) == ["part=0", "part=1", "part=2"]
    code, out, _ = run_cli(capsys, "query", "--project-dir", str(root), "--format", "json", "select * from v order by part")
    assert [json.loads(l)["n"] for l in out.splitlines()] == [3, 3, 3]


def test_options_config_reaches_the_parquet_writer(spark, tmp_path, capsys):
    """options={...} are Spark's Parquet writer options, as in dbt-spark; a value that is not a
    mapping of option names is refused, naming the model."""
    root = write_project(tmp_path, {
        "models/t.sql": "{{ config(options={'maxRecordsPerFile': 4, 'compression': 'zstd'}) }} "
                        "select id from range(10) distribute by 1",
        "models/bad.sql": "{{ config(options=['compression']) }} select 1 as x",
    })
    code, out, _ = run_cli(capsys, "run", "--project-dir", str(root), "--select", "t")
    assert code == 0, out
    files = sorted((root / "target/warehouse/t").glob("*.parquet"))
    assert sorted(pq.read_metadata(f).num_rows for f in files) == [2, 4, 4]
    assert {pq.read_metadata(f).row_group(0).column(0).compression for f in files} == {"ZSTD"}
    code, out, _ = run_cli(capsys, "run", "--project-dir", str(root), "--select", "bad")
    assert code == 2 and "options of 'bad' must map Parquet writer option names to values" in out


def test_image_folder_source_lists_every_file(spark, tmp_path, capsys):
    images = tmp_path / "images"
    (images / "cats" / "deep").mkdir(parents=True)
    (images / "dogs").mkdir()
    Image.new("RGB", (4, 3), (255, 0, 0)).save(images / "cats" / "a.jpg")
    Image.new("RGB", (4, 3), (9, 9, 9)).save(images / "cats" / "café ñ 写真 (1).jpg")
    Image.new("RGB", (4, 3), (0, 255, 0)).save(images / "cats" / "deep" / "b.PNG")
    Image.new("RGB", (4, 3), (0, 0, 255)).save(images / "dogs" / ".hidden.jpg")
    (images / "dogs" / "empty.jpg").write_bytes(b"")
    (images / "dogs" / "notes.txt").write_text("not an image")
    root = write_project(tmp_path / "proj", {
        "models/files.sql": "select relative_path, length, content is not null as has_content from {{ source('raw', 'images') }}",
        "models/pictures.sql": "select relative_path from {{ source('raw', 'pictures') }}",
        "models/sources.yml": f"""
            sources:
              - name: raw
                tables:
                  - name: images
                    format: images
                    path: "{{{{ var('images_path') }}}}"
                  - name: pictures
                    format: images
                    path: {images}
                    options: {{glob: "*.{{jpg,png}}"}}
            """,
    })
    code, out, _ = run_cli(capsys, "build", "--project-dir", str(root), "--vars", f"images_path: {images}")
    assert code == 0, out
    files = pq.read_table(root / "target/warehouse/files").to_pydict()
    assert sorted(files["relative_path"]) == ["cats/a.jpg", "cats/café ñ 写真 (1).jpg", "cats/deep/b.PNG", "dogs/.hidden.jpg", "dogs/empty.jpg", "dogs/notes.txt"]
    assert all(files["has_content"])
    assert dict(zip(files["relative_path"], files["length"]))["dogs/empty.jpg"] == 0
    pictures = pq.read_table(root / "target/warehouse/pictures").to_pydict()
    assert sorted(pictures["relative_path"]) == ["cats/a.jpg", "cats/café ñ 写真 (1).jpg", "cats/deep/b.PNG", "dogs/.hidden.jpg", "dogs/empty.jpg"]


def test_python_helper_session_has_tables_and_functions(shop):
    from imageprep.catalog import project_session

    root, _ = shop
    spark = project_session(root)
    rows = spark.sql("select count(*) as n, max(hamming(1, 7)) as h from customers").first()
    assert rows.n == 5 and rows.h == 2
    # The catalog keeps each table's schema, so a session registers it without reading a footer.
    entry = json.loads((root / "target/warehouse/_catalog.json").read_text())["customers"]
    written = spark.read.parquet(str(root / "target/warehouse" / entry["version"])).schema
    assert entry["schema"] == written.json() == spark.table("customers").schema.json()


def test_threads_run_independent_models_together_with_deterministic_output(spark, tmp_path, capsys):
    import re

    files = {f"models/m{i}.sql": f"select {i} as id, count(*) as n from range(200000)" for i in range(4)}
    files["models/total.sql"] = "select sum(id) as s from (" + " union all ".join(
        f"select id from {{{{ ref('m{i}') }}}}" for i in range(4)) + ")"
    files["models/schema.yml"] = "models:\n  - name: m0\n    columns:\n      - name: id\n        tests: [unique]\n"
    root = write_project(tmp_path, files)
    outputs = []
    for threads in ("1", "3"):
        code, out, _ = run_cli(capsys, "run", "--project-dir", str(root), "--threads", threads, "--full-refresh")
        assert code == 0
        outputs.append([re.sub(r"in\s+[\d.]+s", "", l) for l in out.splitlines() if re.match(r"\s*\d+/\d+ ", l)])
        assert pq.read_table(root / "target/warehouse/total").to_pydict() == {"s": [6]}
        names = [r["name"] for r in json.loads((root / "target/run_results.json").read_text())["results"]]
        assert names == ["m0", "m1", "m2", "m3", "total"]
    assert outputs[0] == outputs[1]  # same lines in the same order, whatever finished first
    code, out, _ = run_cli(capsys, "build", "--project-dir", str(root), "--threads", "2", "--full-refresh")
    names = [r["name"] for r in json.loads((root / "target/run_results.json").read_text())["results"]]
    assert code == 0 and names.index("unique_m0_id") < names.index("total")  # children wait for their parents' tests


def test_image_shape_checks_the_bytes_unless_told_to_read_only_the_sizes(spark, tmp_path, capsys):
    """The example's image_shape test: height, width and channels, and the pixel bytes they need."""
    image = ("named_struct('origin', path, 'height', 2, 'width', 2, 'nChannels', 3, 'mode', 'RGB', "
             "'data', if(path = 'short', unhex('000000'), unhex(repeat('00', 12)))) as image")
    root = write_project(tmp_path, {
        "macros/image_tests.sql": (Path(__file__).parents[1] / "macros/image_tests.sql").read_text(),
        "models/bytes_checked.sql": f"select path, {image} from values ('ok'), ('short') as t(path)",
        "models/sizes_only.sql": f"select path, {image} from values ('ok'), ('short') as t(path)",
        "models/schema.yml": """
            models:
              - name: bytes_checked
                columns:
                  - name: image
                    tests: [{image_shape: {height: 2, width: 2}}]
              - name: sizes_only
                columns:
                  - name: image
                    tests: [{image_shape: {height: 2, width: 2, check_bytes: false}}]
            """,
    })
    code, _, _ = run_cli(capsys, "build", "--project-dir", str(root))
    res = results(root)
    assert code == 1
    assert res["image_shape_bytes_checked_image"]["status"] == "fail"
    assert res["image_shape_bytes_checked_image"]["examples"][0]["path"] == "short"
    assert res["image_shape_sizes_only_image"]["status"] == "pass"


def test_every_node_gets_its_progress_line_even_when_the_last_one_finishes_last(spark, tmp_path, capsys):
    root = write_project(tmp_path, {"models/a.sql": "select 1 as x", "models/b.sql": "select * from {{ ref('a') }}"})
    for _ in range(2):  # a first build, then one where every node is unchanged
        code, out, _ = run_cli(capsys, "build", "--project-dir", str(root))
        assert code == 0
        progress = [line.split()[0] for line in out.splitlines() if line[:1].isdigit()]
        assert progress == ["1/2", "2/2"], out


def test_views_that_read_views_are_created_in_rounds():
    """A view is created once the views it reads are; one that can never be is left out."""
    from imageprep.catalog import create_views_in_rounds

    reads = {"a_top": "m_middle", "m_middle": "z_base", "z_base": None, "broken": "missing"}
    created: list[str] = []

    def create(name, entry):
        if entry["reads"] is not None and entry["reads"] not in created:
            raise RuntimeError(f"{entry['reads']} is not there yet")
        created.append(name)

    assert create_views_in_rounds({n: {"reads": r} for n, r in reads.items()}, create) == \
        ["z_base", "m_middle", "a_top"]


def test_a_build_with_nothing_to_do_does_not_start_spark(spark, tmp_path, capsys):
    root = write_project(tmp_path / "p", {
        "models/numbers.sql": "select id from values (1), (2) as t(id)",
        "models/schema.yml": "models:\n  - name: numbers\n    columns:\n      - name: id\n        tests: [not_null]\n",
    })
    code, first, _ = run_cli(capsys, "build", "--project-dir", str(root))
    assert code == 0 and "Starting Spark" in first
    code, again, _ = run_cli(capsys, "build", "--project-dir", str(root))
    assert code == 0
    assert "Starting Spark" not in again and "nothing to run, Spark not started" in again
    assert {r["status"] for r in results(root).values()} == {"skipped: unchanged"}
    (root / "models/numbers.sql").write_text("select id from values (1), (2), (3) as t(id)")
    code, changed, _ = run_cli(capsys, "build", "--project-dir", str(root))
    assert code == 0 and "Starting Spark" in changed and results(root)["numbers"]["rows"] == 3


def test_tests_of_one_model_run_together_and_each_reports_its_own_outcome(spark, tmp_path, capsys):
    root = write_project(tmp_path / "p", {
        "models/people.sql": "select * from values (1, 'ann'), (2, null), (3, 'cy') as t(id, name)",
        "models/schema.yml": """
            models:
              - name: people
                columns:
                  # With a `where`, so Spark runs them (PyArrow answers the plain built-in tests).
                  - name: id
                    tests: [{not_null: {where: "true"}}, {unique: {where: "true"}}]
                  - name: name
                    tests: [{not_null: {where: "true"}}]
            """,
        "tests/no_such_column.sql": "select * from {{ ref('people') }} where nickname is null",
    })
    code, _, _ = run_cli(capsys, "build", "--project-dir", str(root))
    res = results(root)
    assert res["not_null_people_id"]["status"] == "pass" and res["unique_people_id"]["status"] == "pass"
    assert res["not_null_people_name"]["status"] == "fail" and res["not_null_people_name"]["failures"] == 1
    assert "nickname" in res["no_such_column"]["message"] and res["no_such_column"]["status"] == "error"
    log = (root / "target/runner.log").read_text()
    assert "test.demo.not_null_people_id pass (checked with the other tests of its model)" in log
    assert code != 0
