"""A warehouse an older build wrote: table entries in a form the runner no longer reads (no schema,
or the files read through new_rows() kept in the entry) are built again in full, not misread."""
import json

import pyarrow.parquet as pq

from runner_helpers import run_cli, write_project

APPEND = "{{ config(materialized='incremental', incremental_strategy='append') }}"
FILES = {
    "models/base.sql": APPEND + """
        select id from range({{ var('n', 3) }}) as t(id)
        {% if is_incremental() %} where id > (select max(id) from {{ this }}) {% endif %}
        """,
    # No anti-join: rows read twice through new_rows() would show as duplicates.
    "models/child.sql": APPEND + " select id from {{ new_rows(ref('base')) }}",
    "models/other.sql": "select 1 as x",
}


def statuses(root) -> dict:
    data = json.loads((root / "target/run_results.json").read_text())
    return {r["name"]: r["status"] for r in data["results"]}


def ids(root, table) -> list:
    return sorted(pq.read_table(root / "target/warehouse" / table).column("id").to_pylist())


def test_tables_an_older_build_wrote_are_built_again_in_full(spark, tmp_path, capsys):
    root = write_project(tmp_path, FILES)
    assert run_cli(capsys, "build", "--project-dir", str(root))[0] == 0
    warehouse = root / "target/warehouse"
    catalog = json.loads((warehouse / "_catalog.json").read_text())
    # As older builds wrote them: base without its schema, child with its files in the entry.
    del catalog["base"]["schema"]
    seen_file = warehouse / catalog["child"]["version"] / catalog["child"]["seen"]
    catalog["child"]["seen"] = json.loads(seen_file.read_text())
    seen_file.unlink()
    (warehouse / "_catalog.json").write_text(json.dumps(catalog))
    old_versions = {name: catalog[name]["version"] for name in ("base", "child")}

    # Readers see the other tables as before.
    code, out, _ = run_cli(capsys, "query", "--project-dir", str(root), "--format", "csv", "select x from other")
    assert code == 0 and out.splitlines() == ["x", "1"]

    assert run_cli(capsys, "build", "--project-dir", str(root))[0] == 0
    assert statuses(root) == {"base": "success", "child": "success", "other": "skipped: unchanged"}
    assert ids(root, "child") == [0, 1, 2]  # in full: not the same rows appended again
    catalog = json.loads((warehouse / "_catalog.json").read_text())
    for name in ("base", "child"):
        assert "schema" in catalog[name]
        assert catalog[name]["previous_versions"] == [old_versions[name]]  # kept for running readers
    assert catalog["child"]["seen"] == "_seen.json"

    # From there on the tables build incrementally again.
    assert run_cli(capsys, "build", "--project-dir", str(root), "--vars", "n: 5")[0] == 0
    assert ids(root, "base") == ids(root, "child") == [0, 1, 2, 3, 4]
