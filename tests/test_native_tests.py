"""Built-in generic tests answered with PyArrow: a pass needs no Spark job, a failure is Spark's."""
import json

from runner_helpers import run_cli, write_project

MODEL = """
    select id, tag, cast(id as double) as x from {{ ref('src') }}
    {% if var('bad', false) %}
    union all select null, 'a', 0.5 union all select 1, 'c', 1.5 union all select 99, 'a', 2.5
    {% endif %}
    """
SCHEMA = """
    models:
      - name: t
        columns:
          - name: id
            tests:
              - not_null
              - unique
              - relationships: {to: ref('src'), field: id}
              - not_null: {where: "id > 0", config: {severity: warn}}
          - name: tag
            tests:
              - accepted_values: {values: [a, b]}
          - name: x
            tests: [unique]
    """


def project(tmp_path, **more):
    return write_project(tmp_path, {"seeds/src.csv": "id,tag\n0,a\n1,b\n2,a\n3,b\n4,a\n",
                                    "models/t.sql": MODEL, "models/schema.yml": SCHEMA, **more})


def results(root) -> dict:
    data = json.loads((root / "target/run_results.json").read_text())
    return {r["name"]: (r["status"], r["failures"]) for r in data["results"] if r["unique_id"].startswith("test.")}


def answered_with_pyarrow(root) -> set:
    log = (root / "target/runner.log").read_text()
    return {line.split("test.demo.", 1)[1].split()[0] for line in log.splitlines() if "(read with PyArrow)" in line}


def test_passing_builtin_tests_are_answered_with_pyarrow_and_failing_ones_by_spark(spark, tmp_path, capsys):
    root = project(tmp_path)
    assert run_cli(capsys, "build", "--project-dir", str(root))[0] == 0
    assert set(results(root).values()) == {("pass", 0)}
    # Not the float column (Spark groups -0.0 with 0.0), nor the test with a `where`.
    assert answered_with_pyarrow(root) == {"not_null_t_id", "unique_t_id", "relationships_t_id", "accepted_values_t_tag"}

    code, out, _ = run_cli(capsys, "build", "--project-dir", str(root), "--vars", "bad: true")
    found = results(root)
    assert code != 0
    # Each failing test counted by its SQL on Spark: the NULL id, the duplicate 1, the tag c, the id 99.
    failing = {name: result for name, result in found.items() if result[0] == "fail"}
    assert sorted(failing.values()) == [("fail", 1)] * 4 and len(failing) == 4
    assert found[next(n for n in found if n.startswith("unique_t_x"))] == ("pass", 0)
    assert "failing row" in out


def test_a_project_that_overrides_a_builtin_test_runs_its_own_sql(spark, tmp_path, capsys):
    # The override fails every table with an id 0; PyArrow would have passed it.
    root = project(tmp_path, **{"macros/tests.sql": """
        {% test unique(model, column_name) %}
        select {{ column_name }} from {{ model }} where {{ column_name }} = 0
        {% endtest %}
        """})
    run_cli(capsys, "build", "--project-dir", str(root))
    found = results(root)
    assert found[next(n for n in found if n.startswith("unique_t_id"))] == ("fail", 1)
    assert not any(name.startswith("unique") for name in answered_with_pyarrow(root))
