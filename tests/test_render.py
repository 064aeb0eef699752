"""Rendering models with Jinja: ref, source, config, var, this, macros and ephemeral CTEs."""
from pathlib import Path

import pytest

from imageprep.errors import ProjectError
from imageprep.project import load_project
from imageprep.render import Renderer, convert_test_blocks
from runner_helpers import template_mistakes, write_project


def render(tmp_path: Path, files: dict, cli_vars=None):
    project = load_project(write_project(tmp_path, files), cli_vars)
    renderer = Renderer(project, "local")
    renderer.render_all()
    return project, renderer


def test_ref_source_var_and_loops_render_to_plain_sql(tmp_path):
    project, renderer = render(tmp_path, {
        "models/a.sql": "select 1 as id",
        "models/b.sql": """
            {% set cols = ['x', 'y'] %}
            select {% for c in cols %}{{ c }}_{{ var('suffix') }}{{ ',' if not loop.last }}{% endfor %}
            from {{ ref('a') }} join {{ source('raw', 'files') }}
            """,
        "models/sources.yml": """
            sources:
              - name: raw
                tables:
                  - name: files
                    format: parquet
                    path: /data/files
            """,
    }, {"suffix": "v2"})
    b = project.models["b"]
    assert "select x_v2,y_v2" in " ".join(b.compiled_sql.split())
    assert "from a join raw__files" in b.compiled_sql
    assert b.refs == ["a"] and b.sources == [("raw", "files")]
    assert b.depends_on == ["model.demo.a", "source.demo.raw.files"]
    assert b.used_vars == {"suffix": "v2"}


def test_config_in_sql_overrides_folder_config(tmp_path):
    project, _ = render(tmp_path, {
        "project.yml": "name: demo\nmodels:\n  demo:\n    marts:\n      +materialized: view\n      +tags: [m]\n",
        "models/marts/a.sql": "{{ config(materialized='table', tags=['x']) }} select 1 as id",
        "models/marts/b.sql": "select 1 as id",
    })
    assert project.models["a"].materialized == "table"
    assert project.models["b"].materialized == "view"
    assert project.models["a"].tags == ["m", "x"]


def test_macros_call_each_other_and_see_the_models_context(tmp_path):
    project, _ = render(tmp_path, {
        "macros/one.sql": "{% macro outer(c) %}upper({{ inner(c) }}){% endmacro %}",
        "macros/two.sql": "{% macro inner(c) %}trim({{ c }}) || '{{ this }}' || '{{ var('tag', 'none') }}'{% endmacro %}",
        "models/m.sql": "select {{ outer('name') }} as n from {{ ref('src') }}",
        "models/src.sql": "select ' a ' as name",
    })
    assert "select upper(trim(name) || 'm' || 'none') as n from src" == project.models["m"].compiled_sql
    assert project.models["m"].used_macros == ["inner", "outer"]


def test_ephemeral_models_are_injected_as_ctes_in_dependency_order(tmp_path):
    project, renderer = render(tmp_path, {
        "models/e1.sql": "{{ config(materialized='ephemeral') }} select 1 as id",
        "models/e2.sql": "{{ config(materialized='ephemeral') }} select id from {{ ref('e1') }}",
        "models/t.sql": "with x as (select id from {{ ref('e2') }}) select * from x",
    })
    sql = renderer.executable_sql(project.models["t"])
    assert sql.index("__cte__e1 AS") < sql.index("__cte__e2 AS") < sql.index("x as")
    assert "select id from __cte__e1" in sql
    assert sql.startswith("WITH ") and sql.count("WITH") == 1


def test_dbt_test_blocks_become_test_macros():
    assert convert_test_blocks("{% test even(model, column_name) %}x{% endtest %}") == \
        "{% macro test_even(model, column_name) %}x{% endmacro %}"


def test_generic_tests_render_from_yaml_with_ref_arguments(tmp_path):
    project, renderer = render(tmp_path, {
        "models/parent.sql": "select 1 as id",
        "models/child.sql": "select 1 as parent_id",
        "macros/tests.sql": "{% test is_positive(model, column_name) %}select * from {{ model }} where {{ column_name }} <= 0{% endtest %}",
        "models/schema.yml": """
            models:
              - name: child
                columns:
                  - name: parent_id
                    tests:
                      - is_positive
                      - relationships: {to: "ref('parent')", field: id, config: {severity: warn}}
            """,
    })
    tests = {t.test_name: t for t in renderer.build_tests()}
    assert tests["is_positive"].compiled_sql == "select * from child where parent_id <= 0"
    rel = tests["relationships"]
    assert rel.severity == "warn"
    assert "left join parent as parent on child.parent_id = parent.id" in rel.compiled_sql
    assert set(rel.depends_on) == {"model.demo.child", "model.demo.parent"}


@pytest.mark.parametrize("files, expected", template_mistakes())
def test_rendering_errors_name_the_file_and_the_problem(tmp_path, files, expected):
    with pytest.raises(ProjectError) as info:
        render(tmp_path, files)
    message = str(info.value)
    for part in expected:
        assert part in message


def test_macros_can_return_values_and_raise_compiler_errors(tmp_path):
    files = {
        "macros/m.sql": """
            {% macro pair() %}{{ return([1, 2]) }}{% endmacro %}
            {% macro checked(x) %}{% if x < 0 %}{{ exceptions.raise_compiler_error('x must be >= 0, got ' ~ x) }}{% endif %}{{ x }}{% endmacro %}
            """,
        "models/a.sql": "select {{ pair() | sum }} as s, {{ checked(3) }} as c",
    }
    project, _ = render(tmp_path / "ok", files)
    assert project.models["a"].compiled_sql == "select 3 as s, 3 as c"
    with pytest.raises(ProjectError, match="x must be >= 0, got -1") as info:
        render(tmp_path / "bad", {**files, "models/a.sql": "select\n{{ checked(-1) }}"})
    assert info.value.path.endswith("m.sql") or info.value.path == "models/a.sql"


@pytest.mark.parametrize("files, where", [
    ({"models/a.sql": "select 1,\n{{ cycler.__init__.__globals__.os.getcwd() }} as cwd"}, "models/a.sql"),
    ({"models/a.sql": "select '{{ ''.__class__.__mro__ }}'"}, "models/a.sql"),
    ({"models/a.sql": "select '{{ '{0.__class__}'.format(ref) }}'"}, "models/a.sql"),
    ({"macros/m.sql": "{% macro leak() %}\n{{ var.__globals__ }}\n{% endmacro %}", "models/a.sql": "select {{ leak() }}"},
     "macros/m.sql"),
])
def test_templates_cannot_reach_python_internals(tmp_path, files, where):
    with pytest.raises(ProjectError, match="unsafe template code") as info:
        render(tmp_path, files)
    assert info.value.path == where
    assert "sandbox" in info.value.message


def test_sandboxed_templates_keep_dbts_idioms(tmp_path):
    project, renderer = render(tmp_path, {
        "macros/m.sql": """
            {% macro columns(prefix) %}
            {%- set cols = [] -%}
            {%- for c in ['a', 'b'] %}{% do cols.append(prefix ~ c) %}{% endfor -%}
            {%- set extra = {} %}{% do extra.update({'n': cols | length}) -%}
            {{ return(cols + [extra['n'] | string]) }}
            {% endmacro %}
            """,
        "models/src.sql": "select 1 as x_a, 2 as x_b",
        "models/m.sql": """
            {{ config(materialized='view') }}
            {% set ns = namespace(total=0) %}{% for i in range(3) %}{% set ns.total = ns.total + i %}{% endfor %}
            select {{ columns('x_') | join(', ') }}, {{ ns.total }} as total, '{{ this }}' as me,
                   {{ tojson(is_incremental()) }} as inc
            from {{ ref('src') }}
            """,
    })
    sql = " ".join(project.models["m"].compiled_sql.split())
    assert sql == "select x_a, x_b, 2, 3 as total, 'm' as me, false as inc from src"
    assert project.models["m"].materialized == "view"


def test_a_compiler_error_in_a_macro_names_the_model_and_the_line_that_called_it(tmp_path):
    files = {
        "macros/m.sql": "{% macro positive(x) %}\n{% if x < 1 %}{{ exceptions.raise_compiler_error('x must be >= 1') }}{% endif %}{{ x }}\n{% endmacro %}",
        "models/a.sql": "-- one\n-- two\nselect {{ positive(0) }} as x",
    }
    with pytest.raises(ProjectError, match="x must be >= 1") as info:
        render(tmp_path, files)
    assert (info.value.path, info.value.line) == ("models/a.sql", 3)


def test_test_arguments_that_fail_to_render_name_the_yaml_file(tmp_path):
    with pytest.raises(ProjectError) as info:
        render(tmp_path, {
            "models/a.sql": "select 1 as id",
            "macros/t.sql": "{% test at_least(model, column_name, n) %}select * from {{ model }} where {{ column_name }} < {{ n }}{% endtest %}",
            "models/schema.yml": """
                models:
                  - name: a
                    columns:
                      - name: id
                        tests:
                          - at_least: {n: "{{ var.__globals__ }}"}
                """,
        })[1].build_tests()
    assert info.value.path == "models/schema.yml" and info.value.line == 4
    assert "unsafe template code" in info.value.message
