"""Render models, tests and macros with Jinja, dbt style.

Rendering runs twice, as dbt's parse and compile do: the first pass collects each model's
`config()`, `ref()`s, `source()`s and vars (a model's materialization decides how others refer
to it); the second writes the SQL that really runs. `ref('m')` becomes the relation name `m`,
which the runner registers as a view over the table's current version, so compiled SQL reads
as plain Spark SQL. An ephemeral model becomes a CTE named `__cte__m` injected into its users.

Templates run in Jinja's sandbox, as dbt's do: they can call what the context offers (ref, var,
macros, ...) but not reach Python through attributes such as `__globals__`.
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable

import jinja2
from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from . import normalization
from .errors import ProjectError
from .names import new_rows_view
from .nodes import MODEL, TEST, DataTest, Model, Node
from .project import MATERIALIZATIONS, MODEL_CONFIG_KEYS, Project, closest, _as_list

BUILTIN_MACROS = Path(__file__).with_name("builtin_tests.sql")
BUILTIN_SHOWN = "builtin_tests.sql"
_MISSING = object()
_TEST_BLOCK = re.compile(r"{%(-?)\s*(end)?test\b")


def convert_test_blocks(source: str) -> str:
    """dbt's `{% test name(args) %}` blocks are macros named `test_name`."""
    def swap(match: re.Match) -> str:
        dash, end = match.group(1), match.group(2)
        return "{%" + dash + (" endmacro" if end else " macro test_")

    return re.sub(r"macro test_\s+", "macro test_", _TEST_BLOCK.sub(swap, source))


class Renderer:
    """Renders every node of a project; holds the Jinja environment and the macro files."""

    def __init__(self, project: Project, target_name: str, built_tables: set[str] | None = None,
                 full_refresh: bool = False):
        self.project = project
        self.target_name = target_name
        # is_incremental() is true for an incremental model whose table exists, unless --full-refresh.
        self.built_tables = set(built_tables or ())
        self.full_refresh = full_refresh
        self.incremental_models: set[str] = set()
        self.sources: dict[str, str] = {}
        # The mutable sandbox, not the immutable one: dbt-style code changes its own lists and
        # dicts (`{% do columns.append(c) %}`), which is harmless; what it must not do is leave Jinja.
        self.env = SandboxedEnvironment(
            loader=jinja2.FunctionLoader(self._load_source), undefined=StrictUndefined,
            keep_trailing_newline=True, extensions=["jinja2.ext.do", "jinja2.ext.loopcontrols"])
        self.macro_templates: list[tuple[str, jinja2.Template]] = []
        for path in [BUILTIN_MACROS, *project.macro_files]:
            shown = project.rel(path) if path != BUILTIN_MACROS else BUILTIN_SHOWN
            self.sources[shown] = convert_test_blocks(path.read_text(encoding="utf-8"))
            self.macro_templates.append((shown, self._compile(shown)))
        self.macro_names = self._macro_names()

    # -- Jinja plumbing -------------------------------------------------------------------------
    def _load_source(self, name: str):
        return self.sources[name], name, lambda: True

    def _compile(self, shown: str) -> jinja2.Template:
        try:
            return self.env.get_template(shown)
        except jinja2.TemplateSyntaxError as exc:
            raise ProjectError(f"Jinja syntax error: {exc.message}", path=shown, line=exc.lineno) from None

    def _macro_names(self) -> dict[str, str]:
        """Macro name -> file, read from the compiled templates without running them."""
        names: dict[str, str] = {}
        for shown, _ in self.macro_templates:
            ast = self.env.parse(self.sources[shown])
            for macro in ast.find_all(jinja2.nodes.Macro):
                names[macro.name] = shown
        return names

    def _render(self, shown: str, source: str, context: dict[str, Any], used_macros: list[str]) -> str:
        self.sources[shown] = source
        template = self._compile(shown)
        # Macros share the node's context (shared=True keeps it by reference), so a macro's
        # ref() or var() is the calling model's, and macros can call each other in any order.
        for macro_file, macro_template in self.macro_templates:
            module = macro_template.make_module(vars=context, shared=True)
            for name in dir(module):
                if not name.startswith("_"):
                    context[name] = _tracking(getattr(module, name), name, used_macros)
        try:
            return template.render(context)
        except ProjectError as exc:
            # Raised by ref(), var(), raise_compiler_error(), ... maybe inside a macro: name the node
            # and its line that led there, as dbt names the model.
            if exc.path is None:
                exc.path, exc.line = shown, _line_in(sys.exc_info()[2], shown)
            raise
        except jinja2.UndefinedError as exc:
            tb_shown, line = _template_location(sys.exc_info()[2], self.sources, shown)
            missing = re.search(r"'([^']+)' is undefined", str(exc))
            hint = ""
            if missing:
                hint = closest(missing.group(1), list(context) + list(self.macro_names))
                hint = (f" There is no macro, variable or function named '{missing.group(1)}'.{hint}"
                        f" Macros are defined in {', '.join(self.project.macro_paths)}/*.sql.")
            raise ProjectError(f"{exc.message}.{hint}", path=tb_shown, line=line) from None
        except jinja2.TemplateSyntaxError as exc:
            raise ProjectError(f"Jinja syntax error: {exc.message}", path=exc.filename or shown,
                               line=exc.lineno) from None
        except (jinja2.TemplateError, OverflowError) as exc:  # the sandbox refuses huge range()s
            tb_shown, line = _template_location(sys.exc_info()[2], self.sources, shown)
            raise ProjectError(_problem(exc), path=tb_shown, line=line) from None

    # -- Context ----------------------------------------------------------------------------------
    def _context(self, node: Node, phase: str, record: dict[str, Any]) -> dict[str, Any]:
        project = self.project

        def ref(name: str, *more: str) -> str:
            name = more[-1] if more else name  # ref('package', 'model') -> the model
            target = project.models.get(name) or project.seeds.get(name)
            if target is None:
                candidates = list(project.models) + list(project.seeds)
                raise ProjectError(
                    f"'{node.name}' refers to '{name}', which is not a model or seed in this project."
                    f"{closest(name, candidates)}")
            if target.unique_id == node.unique_id:
                raise ProjectError(f"'{node.name}' refers to itself with ref('{name}'); use {{{{ this }}}}")
            record["refs"].append(name)
            if phase == "compile" and target.materialized == "ephemeral":
                return f"__cte__{name}"
            return name

        def source(source_name: str, table_name: str) -> str:
            key = (source_name, table_name)
            if key not in project.sources:
                known = [f"{s}.{t}" for s, t in project.sources]
                raise ProjectError(
                    f"'{node.name}' uses source('{source_name}', '{table_name}'), which is not declared "
                    f"in any models YAML file.{closest(f'{source_name}.{table_name}', known)}")
            record["sources"].append(key)
            return project.sources[key].relation

        def config(*args, **kwargs) -> str:
            if args and isinstance(args[0], dict):
                kwargs = {**args[0], **kwargs}
            for key in kwargs:
                if key not in MODEL_CONFIG_KEYS:
                    raise ProjectError(f"unknown config '{key}' in config(...).{closest(key, MODEL_CONFIG_KEYS)}")
            if "materialized" in kwargs and kwargs["materialized"] not in MATERIALIZATIONS:
                raise ProjectError(f"materialized='{kwargs['materialized']}' is not one of "
                                   f"{', '.join(sorted(MATERIALIZATIONS))}")
            record["config"].update(kwargs)
            return ""

        def var(name: str, default: Any = _MISSING) -> Any:
            if name in project.vars:
                value = project.vars[name]
            elif default is not _MISSING:
                value = default
            else:
                raise ProjectError(
                    f"var('{name}') is not defined: set it under vars in project.yml, pass "
                    f"--vars '{{\"{name}\": ...}}', or give a default: var('{name}', ...)")
            record["vars"][name] = value
            return value

        def new_rows(relation: str) -> str:
            # Only an incremental build of a model, or a test, reads part of a table; a first build
            # (and the logic fingerprint) reads the relation itself, and remembers its files.
            if phase in ("parse", "baseline"):
                return relation
            record["new_rows"].append(str(relation))
            if node.resource_type == TEST or self._is_incremental(node, record, phase):
                return new_rows_view(node.name, str(relation))
            return relation

        return {
            "ref": ref, "source": source, "config": config, "var": var, "new_rows": new_rows,
            "return": _macro_return, "exceptions": _Exceptions(),
            "this": node.name, "is_incremental": lambda: self._is_incremental(node, record, phase),
            "target": {"name": self.target_name, "project": project.name},
            "project_name": project.name, "tojson": json.dumps,
        }

    def _is_incremental(self, node: Node, record: dict[str, Any], phase: str) -> bool:
        if phase == "baseline" or self.full_refresh or node.resource_type != MODEL:
            return False
        materialized = record["config"].get("materialized", node.config.get("materialized"))
        return materialized == "incremental" and node.name in self.built_tables

    # -- Public -------------------------------------------------------------------------------------
    def render_model(self, model: Model, phase: str) -> str:
        record = _new_record()
        used_macros: list[str] = []
        sql = self._render(model.path, model.raw_sql, self._context(model, phase, record), used_macros)
        if phase == "parse":
            folder_tags = set(_as_list(model.config.get("tags")))
            model.config.update(record["config"])
            if "meta" in model.config:
                model.config["meta"] = normalization.complete_meta(model.config["meta"], model.name, model.path)
            # Tags add up, as in dbt: a model keeps its folder's tags and adds its own.
            model.tags = sorted(folder_tags | set(_as_list(record["config"].get("tags"))))
            model.config["tags"] = model.tags
            model.refs = list(dict.fromkeys(record["refs"]))
            model.sources = list(dict.fromkeys(record["sources"]))
        if phase == "compile":
            model.new_rows_of = list(dict.fromkeys(record["new_rows"]))
        model.used_vars = dict(sorted(record["vars"].items()))
        model.used_macros = sorted(set(used_macros))
        return sql

    def render_all(self) -> None:
        """Parse every model, then compile each (needs every model's materialization)."""
        self.render_sources()
        for model in self.project.models.values():
            self.render_model(model, "parse")
        for model in self.project.models.values():
            model.compiled_sql = self.render_model(model, "compile").strip()
            model.depends_on = self._dependency_ids(model.refs, model.sources)
            model.baseline_sql = model.compiled_sql
            if self._is_incremental(model, {"config": {}}, "compile"):
                self.incremental_models.add(model.name)
                # What the model computes from scratch: the fingerprint of its logic, which must not
                # change just because the table now exists.
                model.baseline_sql = self.render_model(model, "baseline").strip()

    def render_sources(self) -> None:
        """Source paths and options in YAML may use var(), e.g. path: "{{ var('images_path') }}"."""
        for source in self.project.sources.values():
            record = _new_record()
            context = self._context(source, "compile", record)

            def render_value(value):
                if not isinstance(value, str) or "{" not in value:
                    return value
                try:
                    return self.env.from_string(value).render(context)
                except ProjectError as exc:
                    raise ProjectError(f"source '{source.name}': {exc.message}", path=source.path,
                                       line=source.config.get("line")) from None
                except (jinja2.TemplateError, OverflowError) as exc:
                    raise ProjectError(f"source '{source.name}': {_problem(exc)}", path=source.path,
                                       line=source.config.get("line")) from None

            source.location = render_value(source.location)
            if source.format != "table" and source.location:
                source.location = _project_relative(self.project.root, source.location)
            source.options = {k: render_value(v) for k, v in source.options.items()}
            source.config["vars"] = dict(record["vars"])

    def _dependency_ids(self, refs: list[str], sources: list[tuple[str, str]]) -> list[str]:
        ids = []
        for name in refs:
            node = self.project.models.get(name) or self.project.seeds.get(name)
            ids.append(node.unique_id)
        ids += [self.project.sources[key].unique_id for key in sources]
        return list(dict.fromkeys(ids))

    def executable_sql(self, model: Model | DataTest, baseline: bool = False) -> str:
        """The model's SQL with the CTEs of the ephemeral models it reads injected in front.

        `baseline`: the SQL as on a first build (is_incremental() false), for fingerprints."""
        ctes: list[tuple[str, str]] = []
        seen: set[str] = set()

        def collect(refs: list[str]) -> None:
            for name in refs:
                upstream = self.project.models.get(name)
                if upstream is None or upstream.materialized != "ephemeral" or name in seen:
                    continue
                seen.add(name)
                collect(upstream.refs)
                ctes.append((f"__cte__{name}", _strip_semicolon(upstream.compiled_sql)))

        collect(model.refs)
        sql = _strip_semicolon(getattr(model, "baseline_sql", None) if baseline else model.compiled_sql)
        if not ctes:
            return sql
        cte_sql = ",\n".join(f"{name} AS (\n{body}\n)" for name, body in ctes)
        leading = re.match(r"\s*with\s", sql, re.IGNORECASE)
        if leading:
            return f"WITH {cte_sql},\n{sql[leading.end():]}"
        return f"WITH {cte_sql}\n{sql}"

    # -- Tests ----------------------------------------------------------------------------------------
    def build_tests(self) -> list[DataTest]:
        """Turn the tests declared in YAML, and singular test files, into rendered test nodes."""
        tests: list[DataTest] = []
        used_ids: set[str] = set()
        for declared in self.project.declared_tests:
            tests.append(self._generic_test(declared, used_ids))
        for test in self.project.singular_tests:
            record = _new_record()
            used: list[str] = []
            context = self._context(test, "compile", record)
            test.compiled_sql = self._render(test.path, test.raw_sql, context, used).strip()
            test.config.update(record["config"])
            test.refs = list(dict.fromkeys(record["refs"]))
            test.new_rows_of = list(dict.fromkeys(record["new_rows"]))
            test.depends_on = self._dependency_ids(test.refs, record["sources"])
            test.attached_to = test.depends_on[0] if len(test.depends_on) == 1 else None
            tests.append(test)
        return tests

    def _generic_test(self, declared: dict, used_ids: set[str]) -> DataTest:
        spec, shown, line = declared["test"], declared["path"], declared["line"]
        if isinstance(spec, str):
            test_name, args = spec, {}
        elif isinstance(spec, dict) and len(spec) == 1:
            test_name, args = next(iter(spec.items()))
            args = dict(args or {})
        else:
            raise ProjectError(f"a test is a name or a mapping of one name to its arguments, got {spec!r}",
                               path=shown, line=line)
        config = dict(args.pop("config", None) or {})
        for key in ("severity", "tags", "where"):
            if key in args:
                config[key] = args.pop(key)
        args.update(args.pop("arguments", None) or {})
        if str(config.get("severity", "error")).lower() not in ("warn", "error"):
            raise ProjectError(f"severity of test '{test_name}' must be warn or error", path=shown, line=line)
        macro = f"test_{test_name}"
        if macro not in self.macro_names:
            generic = sorted(n[5:] for n in self.macro_names if n.startswith("test_"))
            raise ProjectError(
                f"unknown test '{test_name}'. Generic tests here: {', '.join(generic)}."
                f"{closest(test_name, generic)} Define new ones with {{% test {test_name}(model, column_name) %}} "
                f"in a macros file.", path=shown, line=line)
        owner = self._node(declared["on"])
        column = declared["column"]
        base = "_".join(p for p in [test_name, owner.name.replace(".", "_"), column] if p)
        unique_name = base
        if f"{TEST}.{self.project.name}.{unique_name}" in used_ids:
            digest = hashlib.sha256(json.dumps(args, sort_keys=True, default=str).encode()).hexdigest()[:8]
            unique_name = f"{base}_{digest}"
        unique_id = f"{TEST}.{self.project.name}.{unique_name}"
        used_ids.add(unique_id)
        test = DataTest(unique_id=unique_id, name=unique_name, resource_type=TEST, path=shown,
                        config={"severity": "error", **config}, test_name=test_name,
                        attached_to=owner.unique_id, column_name=column, kwargs=args)
        record = _new_record()
        context = self._context(test, "compile", record)
        relation = owner.relation if owner.resource_type == "source" else self._relation(owner)
        rendered_args = self._render_args(args, context, shown, line)
        call_args = {"model": relation, **({"column_name": column} if column else {}), **rendered_args}
        used: list[str] = []
        try:
            sql = self._call_macro(shown, line, macro, call_args, context, used)
        except ProjectError as exc:
            exc.message += _vars_note(record["vars"])
            raise
        if "where" in config:
            sql = f"SELECT * FROM ({_strip_semicolon(sql)}) AS t WHERE {config['where']}"
        elif self.macro_names[macro] == BUILTIN_SHOWN and owner.resource_type != "source":
            test.native = _native_check(test_name, relation, column, rendered_args, self.project)
        test.compiled_sql = sql.strip()
        test.refs = list(dict.fromkeys(record["refs"]))
        test.new_rows_of = list(dict.fromkeys(record["new_rows"]))
        deps = [owner.unique_id] + self._dependency_ids(test.refs, record["sources"])
        test.depends_on = list(dict.fromkeys(deps))
        return test

    def _call_macro(self, shown, line, macro, call_args, context, used) -> str:
        source = "{{ " + macro + "(**__args) }}"
        try:
            return self._render(f"{shown}:{macro}", source, {**context, "__args": call_args}, used)
        except ProjectError as exc:
            exc.path, exc.line = shown, line
            raise
        except TypeError as exc:
            raise ProjectError(f"test '{macro[5:]}' was called with the wrong arguments: {exc}",
                               path=shown, line=line) from None

    def _render_args(self, args: dict[str, Any], context: dict[str, Any], shown: str, line: int | None) -> dict:
        try:
            return {k: self._render_arg(v, context) for k, v in args.items()}
        except ProjectError as exc:
            if exc.path is None:
                exc.path, exc.line = shown, line
            raise
        except (jinja2.TemplateError, OverflowError) as exc:
            raise ProjectError(f"test arguments: {_problem(exc)}", path=shown, line=line) from None

    def _render_arg(self, value: Any, context: dict[str, Any]) -> Any:
        """YAML test arguments like `to: ref('labels')` are Jinja expressions, as in dbt."""
        if isinstance(value, str) and re.match(r"^\s*(ref|source|var)\s*\(", value):
            return self.env.from_string("{{ " + value + " }}").render(context)
        if isinstance(value, str) and "{{" in value:
            return self.env.from_string(value).render(context)
        if isinstance(value, list):
            return [self._render_arg(v, context) for v in value]
        return value

    def _node(self, unique_id: str) -> Node:
        for pool in (self.project.models.values(), self.project.seeds.values(), self.project.sources.values()):
            for node in pool:
                if node.unique_id == unique_id:
                    return node
        raise KeyError(unique_id)

    def _relation(self, node: Node) -> str:
        if node.resource_type == MODEL and node.materialized == "ephemeral":
            raise ProjectError(f"tests cannot run on ephemeral model '{node.name}': it has no table")
        return node.name


def _native_check(test_name: str, relation: str, column: str | None, args: dict, project: Project) -> dict | None:
    """What native_tests needs to answer a built-in test (its macro, not a project's override, and
    no `where`), or None when the arguments are not plain: values quoted as strings without
    backslashes (Spark reads those as escapes), a `to` that is a model or seed of the project."""
    if not column:
        return None
    spec = {"check": test_name, "model": relation, "column": column}
    if test_name in ("not_null", "unique"):
        return spec
    if test_name == "accepted_values":
        values = args.get("values")
        if args.get("quote", True) is not True or not isinstance(values, (list, tuple)) or not all(
                isinstance(v, (str, int)) and not isinstance(v, bool) and "\\" not in str(v) for v in values):
            return None
        return {**spec, "values": [str(v) for v in values]}
    if test_name == "relationships":
        to, field = args.get("to"), args.get("field")
        if not isinstance(field, str) or not (to in project.models or to in project.seeds):
            return None
        return {**spec, "to": to, "field": field}
    return None


def _project_relative(root: Path, location: str) -> str:
    """A relative source path is relative to the project folder, wherever the command runs."""
    if re.match(r"^[a-zA-Z][\w+.-]*:", location) or Path(location).is_absolute():
        return location
    return str((root / location).resolve())


class _MacroReturn(Exception):
    """dbt's `{{ return(value) }}`: a macro hands back a value instead of text."""

    def __init__(self, value: Any):
        super().__init__("return() outside a macro")
        self.value = value


def _macro_return(value: Any):
    raise _MacroReturn(value)


class _Exceptions:
    """dbt's `exceptions` namespace, for macros that check their arguments."""

    @staticmethod
    def raise_compiler_error(message: str):
        raise ProjectError(str(message))

    @staticmethod
    def warn(message: str) -> str:
        print(f"Warning: {message}", file=sys.stderr)
        return ""


def _tracking(macro: Callable, name: str, used: list[str]) -> Callable:
    if not callable(macro):
        return macro

    def call(*args, **kwargs):
        used.append(name)
        try:
            return macro(*args, **kwargs)
        except _MacroReturn as returned:
            return returned.value

    call.__name__ = name
    return call


def _new_record() -> dict:
    """What rendering one node notes down: the refs, sources, config, vars and new_rows() it used."""
    return {"refs": [], "sources": [], "config": {}, "vars": {}, "new_rows": []}


def _strip_semicolon(sql: str) -> str:
    return sql.strip().rstrip(";").rstrip()


def _template_location(tb, sources: dict[str, str], default: str) -> tuple[str, int | None]:
    """The innermost template file and line in a traceback (Jinja maps frames to template lines)."""
    found = (default, None)
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename in sources:
            found = (filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


def _line_in(tb, shown: str) -> int | None:
    """The line of template `shown` that was running when the error came (the call into a macro,
    when the error came from one)."""
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == shown:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _problem(exc: Exception) -> str:
    """An error from inside a template, in words."""
    if isinstance(exc, SecurityError):
        return (f"unsafe template code: {exc} Templates run in a sandbox, as in dbt: attributes that "
                f"start with '_' and Python's internals are out of reach")
    return f"template error: {exc}"


def _vars_note(used_vars: dict[str, Any]) -> str:
    """A test macro that rejects an argument sees only its rendered value (a YAML argument such as
    "{{ var('n') }}" arrives as text): say which vars the arguments came from."""
    if not used_vars:
        return ""
    return " (this test uses " + ", ".join(f"var('{k}') = {v!r}" for k, v in used_vars.items()) + ")"
