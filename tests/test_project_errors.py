"""Every user mistake gets a specific message naming the file, and exit code 2 (no Spark needed)."""
import pytest

from runner_helpers import run_cli, template_mistakes, write_project

GOOD_MODEL = {"models/a.sql": "select 1 as id"}


@pytest.mark.parametrize("files, expected", [
    ({"project.yml": "name: demo\nvars: [unclosed\n"}, ["project.yml:", "malformed YAML"]),
    ({"project.yml": "name: demo\nmodle-paths: [models]\n"}, ["project.yml", "unknown key 'modle-paths'", "Did you mean 'model-paths'"]),
    ({"project.yml": "name: demo\nmodels:\n  demo:\n    stagin:\n      +materialized: view\n", "models/staging/a.sql": "select 1"},
     ["project.yml:", "unknown key 'stagin'", "Did you mean 'staging'"]),
    ({"project.yml": "name: demo\nmodels:\n  +materialised: view\n"}, ["unknown key '+materialised'", "+materialized"]),
    ({"project.yml": "name: demo\ntargets:\n  cluster:\n    mastr: spark://h:7077\n"}, ["unknown key 'mastr'", "target 'cluster'"]),
    ({"models/a.sql": "select * from {{ ref('b') }}", "models/b.sql": "select * from {{ ref('c') }}",
      "models/c.sql": "select * from {{ ref('a') }}"}, ["found a cycle: ", " -> ", "(each model refers to the next one)"]),
    *template_mistakes(),
    ({"models/one/a.sql": "select 1", "models/two/a.sql": "select 2"}, ["two models are named 'a'", "models/one/a.sql", "models/two/a.sql"]),
    ({**GOOD_MODEL, "models/schema.yml": "models:\n  - name: a\n    columns:\n      - name: id\n        tests: [not_nul]\n"},
     ["models/schema.yml", "unknown test 'not_nul'", "Did you mean 'not_null'"]),
    ({**GOOD_MODEL, "models/schema.yml": "models:\n  - name: a\n    colums: []\n"}, ["models/schema.yml", "unknown key 'colums'"]),
    ({**GOOD_MODEL, "models/schema.yml": "models:\n  - name: b\n"}, ["models/schema.yml", "model 'b' is described here but there is no b.sql"]),
    ({"models/a.sql": "{{ config(meta={'normalization': {'column': 'image', 'method': 'imgnet'}}) }} select 1"},
     ["models/a.sql", "meta.normalization of 'a'", "unknown normalization method 'imgnet'", "imagenet"]),
    ({"models/a.sql": "{{ config(meta={'normalization': {'method': 'imagenet'}}) }} select 1"},
     ["models/a.sql", "meta.normalization of 'a' must name the image column"]),
    ({"models/a.sql": "select 1,\n{{ cycler.__init__.__globals__.os.getcwd() }} as cwd"},
     ["models/a.sql:2", "unsafe template code", "sandbox"]),
    ({"macros/m.sql": "{% macro leak() %}\n{{ ref.__globals__ }}\n{% endmacro %}", "models/a.sql": "select {{ leak() }}"},
     ["macros/m.sql:2", "unsafe template code"]),
    ({"models/marts/a.b.sql": "select 1 as id"},
     ["models/marts/a.b.sql", "'a.b' is not a valid model name", "letters (a-z, A-Z), digits and underscores",
      "must not start with a digit", "a_b.sql"]),
    ({"models/1st_orders.sql": "select 1 as id"}, ["models/1st_orders.sql", "'1st_orders' is not a valid model name"]),
    ({**GOOD_MODEL, "seeds/raw-orders.csv": "id\n1\n"}, ["seeds/raw-orders.csv", "'raw-orders' is not a valid seed name", "raw_orders.csv"]),
    ({**GOOD_MODEL, "project.yml": "name: demo\nwarehouse: ../..\n"},
     ["project.yml", "warehouse '../..' is outside the project folder", "absolute path or a URI"]),
    ({**GOOD_MODEL, "project.yml": "name: demo\ntargets:\n  prod:\n    warehouse: target/../../wh\n"},
     ["project.yml:4", "targets.prod.warehouse 'target/../../wh' is outside the project folder"]),
])
def test_bad_project_input_exits_2_with_a_specific_message(tmp_path, capsys, files, expected):
    root = write_project(tmp_path, files)
    code, out, err = run_cli(capsys, "compile", "--project-dir", str(root))
    assert code == 2, (out, err)
    assert "Traceback" not in err
    for part in expected:
        assert part in err


def test_missing_project_file_and_unknown_target(tmp_path, capsys):
    code, _, err = run_cli(capsys, "compile", "--project-dir", str(tmp_path))
    assert code == 2 and "no project.yml" in err
    write_project(tmp_path, GOOD_MODEL)
    code, _, err = run_cli(capsys, "compile", "--project-dir", str(tmp_path), "--target", "prod")
    assert code == 2 and "unknown target 'prod'" in err


def test_usage_errors_exit_2(tmp_path, capsys):
    code, _, err = run_cli(capsys, "bild")
    assert code == 2 and "invalid choice: 'bild'" in err
    write_project(tmp_path, GOOD_MODEL)
    code, _, err = run_cli(capsys, "compile", "--project-dir", str(tmp_path), "--vars", "[1, 2]")
    assert code == 2 and "--vars must be a mapping" in err


def test_compile_writes_sql_and_manifest_without_spark(tmp_path, capsys):
    import json

    root = write_project(tmp_path, {
        "models/a.sql": "select {{ var('n', 3) }} as id",
        "models/b.sql": "{{ config(materialized='view') }} select * from {{ ref('a') }}",
    })
    code, out, _ = run_cli(capsys, "compile", "--project-dir", str(root), "--vars", "n: 5")
    assert code == 0 and "Compiled 2 models" in out
    assert (root / "target/compiled/demo/models/a.sql").read_text().strip() == "select 5 as id"
    manifest = json.loads((root / "target/manifest.json").read_text())
    b = manifest["nodes"]["model.demo.b"]
    assert b["depends_on"]["nodes"] == ["model.demo.a"] and b["config"]["materialized"] == "view"
    assert len(b["checksum"]["raw"]) == 64 and b["checksum"]["compiled"] != b["checksum"]["raw"]
    assert manifest["child_map"]["model.demo.a"] == ["model.demo.b"]


def test_selection_that_matches_nothing_warns(tmp_path, capsys):
    root = write_project(tmp_path, GOOD_MODEL)
    code, out, err = run_cli(capsys, "ls", "--project-dir", str(root), "-s", "nothing_here")
    assert code == 0 and "Warning: the selector 'nothing_here' matches no node" in err and out == ""


def test_missing_java_is_explained(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    write_project(tmp_path, GOOD_MODEL)
    runner = Path(__file__).resolve().parent.parent / "runner.py"
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = str(tmp_path / "no-java-here")
    done = subprocess.run([sys.executable, str(runner), "build", "--project-dir", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "Java was not found" in done.stderr and "JAVA_HOME" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_warehouse_outside_the_project_is_an_absolute_path_or_a_uri(tmp_path):
    from imageprep.project import load_project

    elsewhere = tmp_path / "elsewhere"
    write_project(tmp_path / "p", {**GOOD_MODEL, "project.yml": f"""
        name: demo
        warehouse: target/../target/wh
        targets:
          local: {{master: 'local[2]'}}
          shared: {{warehouse: {elsewhere}}}
          lake: {{warehouse: 's3a://bucket/wh'}}
          inside: {{warehouse: 'file://{tmp_path / "p" / "wh"}'}}
        """})
    project = load_project(tmp_path / "p")
    outside = {name: project.warehouse_outside_project(target) for name, target in project.targets.items()}
    assert outside == {"local": False, "shared": True, "lake": True, "inside": False}
    assert project.warehouse_for(project.targets["local"]) == str(tmp_path.resolve() / "p" / "target/../target/wh")
