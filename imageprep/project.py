"""Load a project folder: `project.yml`, the model, macro, seed and test files, and the models' YAML.

Nothing here renders SQL or starts Spark; it only reads files and checks their shape, so that
every mistake is reported with the file (and line, where YAML gives one) that holds it.
"""
from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ProjectError
from .files import is_uri, local_path
from .nodes import MODEL, SEED, SOURCE, TEST, DataTest, Model, Seed, Source

PROJECT_FILE = "project.yml"
# A model's or seed's name is a table name that compiled SQL uses unquoted (ref('m') is `m`), so it
# must be a plain Spark identifier; a leading digit could read as a number (`1d`, `1e5`).
NODE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)

PROJECT_KEYS = {
    "name", "version", "model-paths", "macro-paths", "seed-paths", "test-paths", "vars", "models",
    "seeds", "targets", "target", "warehouse", "target-path", "clean-targets", "config-version",
}
TARGET_KEYS = {"master", "remote", "spark", "warehouse", "threads"}
# Configs a model may set in project.yml folders, in YAML, or with config() in its SQL.
MODEL_CONFIG_KEYS = {
    "materialized", "tags", "partition_by", "enabled", "description", "unique_key",
    "incremental_strategy", "on_schema_change", "delete_where", "delete_unmatched", "full_refresh_when", "alias", "severity", "meta", "docs",
    "options",
}
MATERIALIZATIONS = {"table", "view", "ephemeral", "incremental"}
SEED_CONFIG_KEYS = {"column_types", "tags", "enabled", "delimiter", "quote_columns"}
SCHEMA_KEYS = {"version", "models", "sources", "seeds"}
SCHEMA_MODEL_KEYS = {"name", "description", "columns", "tests", "data_tests", "config", "meta", "docs"}
SCHEMA_COLUMN_KEYS = {"name", "description", "tests", "data_tests", "data_type", "meta", "quote"}
SOURCE_KEYS = {"name", "description", "tables", "meta", "tags"}
SOURCE_TABLE_KEYS = {
    "name", "description", "format", "path", "options", "columns", "tests", "data_tests",
    "identifier", "meta", "tags",
}


@dataclass
class Target:
    name: str
    # Where the session comes from: a Spark master URL (local[*], spark://, yarn, k8s://) or, for
    # a remote target, its Spark Connect URL; create_session() takes either.
    master: str
    spark: dict[str, Any]
    warehouse: str | None
    threads: int = 1
    remote: str | None = None  # the Spark Connect URL (sc://host:port/;params) of a remote target

    @property
    def shown_location(self) -> str:
        """The master, or the Connect URL without its parameters (a token): for progress lines."""
        from .connect import shown_url

        return self.master if self.remote is None else shown_url(self.remote)


@dataclass
class Project:
    """Everything read from a project folder, before rendering."""

    root: Path
    name: str
    config_file: Path
    vars: dict[str, Any]
    targets: dict[str, Target]
    default_target: str
    warehouse: str
    target_path: Path
    clean_targets: list[str]
    model_paths: list[str]
    macro_paths: list[str]
    seed_paths: list[str]
    test_paths: list[str]
    models: dict[str, Model] = field(default_factory=dict)  # by name
    seeds: dict[str, Seed] = field(default_factory=dict)  # by name
    sources: dict[tuple[str, str], Source] = field(default_factory=dict)
    singular_tests: list[DataTest] = field(default_factory=list)
    macro_files: list[Path] = field(default_factory=list)
    # Declarations in models' YAML that become tests once every name is known.
    declared_tests: list[dict[str, Any]] = field(default_factory=list)
    folder_configs: dict[str, Any] = field(default_factory=dict)

    def rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def target(self, name: str | None) -> Target:
        name = name or self.default_target
        if name not in self.targets:
            raise ProjectError(
                f"unknown target '{name}'; targets in this project: {', '.join(sorted(self.targets))}",
                path=self.rel(self.config_file))
        return self.targets[name]

    def warehouse_for(self, target: Target) -> str:
        """The warehouse location as a URI or an absolute path (relative paths are project-relative)."""
        location = target.warehouse or self.warehouse
        if is_uri(location):
            return location
        path = Path(location)
        return str(path if path.is_absolute() else self.root / path)

    def warehouse_outside_project(self, target: Target) -> bool:
        """True when the target's tables go outside the project folder (an absolute path elsewhere,
        or a URI), which is worth saying when a build starts: nothing in the folder shows it."""
        location = self.warehouse_for(target)
        if is_uri(location):
            path = local_path(location)
            return path is None or not _within(path, self.root)
        return not _within(location, self.root)


def _within(path: str | Path, root: Path) -> bool:
    """Whether `path` is `root` or below it, judged on the path as written (`..` folded, symlinks
    not followed: a link the user placed inside the project is their choice)."""
    normalized = os.path.normpath(os.path.join(root, path))
    return normalized == str(root) or normalized.startswith(str(root).rstrip(os.sep) + os.sep)


def check_warehouse(location: Any, setting: str, root: Path, shown: str, line: int | None = None) -> None:
    """A relative warehouse is relative to the project and must stay inside it: `../..` would write
    the catalog and table versions somewhere else without a word. Absolute paths and URIs say
    where they go, so they may point anywhere."""
    if location is None:
        return
    location = str(location)
    if is_uri(location) or Path(location).is_absolute() or _within(location, root):
        return
    raise ProjectError(
        f"{setting} '{location}' is outside the project folder (it would be "
        f"{os.path.normpath(root / location)}). A relative warehouse path must stay inside the project; "
        f"to store tables elsewhere, give an absolute path or a URI", path=shown, line=line)


def check_node_name(name: str, kind: str, shown: str) -> None:
    """Models and seeds are named by their files, and the name becomes a table name."""
    if NODE_NAME.fullmatch(name):
        return
    suggestion = re.sub(r"[^A-Za-z0-9_]", "_", name)
    if not NODE_NAME.fullmatch(suggestion):
        suggestion = f"_{suggestion}"
    suffix = Path(shown).suffix
    raise ProjectError(
        f"'{name}' is not a valid {kind} name: the file name (without {suffix}) becomes a table name, "
        f"which may hold only letters (a-z, A-Z), digits and underscores, and must not start with a "
        f"digit. Rename the file, e.g. to {suggestion}{suffix}", path=shown)


def closest(name: str, candidates) -> str:
    """' Did you mean X?' for a mistyped name, or ''."""
    match = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" Did you mean '{match[0]}'?" if match else ""


def check_keys(mapping: dict, allowed: set[str], where: str, path: str) -> None:
    for key in mapping:
        if key not in allowed:
            raise ProjectError(
                f"unknown key '{key}' in {where}.{closest(str(key), allowed)} "
                f"Allowed keys: {', '.join(sorted(allowed))}", path=path)


class _LineLoader(yaml.SafeLoader):
    """A YAML loader that remembers the line of every mapping, for error messages."""


def _construct_mapping(loader, node, deep=False):
    mapping = yaml.SafeLoader.construct_mapping(loader, node, deep=deep)
    return _LineDict(mapping, line=node.start_mark.line + 1)


class _LineDict(dict):
    def __init__(self, *args, line: int | None = None):
        super().__init__(*args)
        self.line = line


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: Path, shown: str) -> Any:
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_LineLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ProjectError(f"malformed YAML: {problem}", path=shown,
                           line=mark.line + 1 if mark else None) from None


def line_of(mapping: Any) -> int | None:
    return getattr(mapping, "line", None)


def load_project(root: Path, cli_vars: dict[str, Any] | None = None, settings_only: bool = False) -> Project:
    """Read `project.yml` and every file it points to; with `settings_only`, `project.yml` alone
    (targets, warehouse, vars: what a reader of the tables needs)."""
    root = root.resolve()
    config_file = root / PROJECT_FILE
    if not config_file.exists():
        raise ProjectError(
            f"no {PROJECT_FILE} in {root}: run the command from a project folder or pass --project-dir")
    shown = PROJECT_FILE
    data = read_yaml(config_file, shown)
    if not isinstance(data, dict):
        raise ProjectError("project.yml must be a mapping of keys such as name, vars, models, targets",
                           path=shown)
    check_keys(data, PROJECT_KEYS, "project.yml", shown)
    if not data.get("name"):
        raise ProjectError("project.yml needs a 'name'", path=shown)

    targets = _load_targets(data.get("targets") or {}, shown, root)
    check_warehouse(data.get("warehouse"), "warehouse", root, shown)
    default_target = data.get("target", "local")
    if default_target not in targets:
        raise ProjectError(f"target '{default_target}' is not among targets: {', '.join(targets)}",
                           path=shown)
    vars_ = dict(data.get("vars") or {})
    vars_.update(cli_vars or {})

    def paths(key: str, default: str) -> list[str]:
        value = data.get(key, [default])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ProjectError(f"'{key}' must be a list of folders", path=shown)
        return [str(v) for v in value]

    project = Project(
        root=root, name=str(data["name"]), config_file=config_file, vars=vars_, targets=targets,
        default_target=default_target, warehouse=str(data.get("warehouse", "target/warehouse")),
        target_path=root / str(data.get("target-path", "target")),
        clean_targets=[str(p) for p in data.get("clean-targets", ["target"])],
        model_paths=paths("model-paths", "models"), macro_paths=paths("macro-paths", "macros"),
        seed_paths=paths("seed-paths", "seeds"), test_paths=paths("test-paths", "tests"),
        folder_configs=data.get("models") or {},
    )
    if settings_only:
        return project
    _load_macro_files(project)
    _load_models(project)
    _check_folder_configs(project, data.get("models") or {}, shown)
    _load_seeds(project, data.get("seeds") or {}, shown)
    _load_schema_files(project)
    _load_singular_tests(project)
    return project


def _load_targets(raw: dict, shown: str, root: Path) -> dict[str, Target]:
    if not isinstance(raw, dict):
        raise ProjectError("'targets' must map target names to settings", path=shown)
    targets = {"local": Target("local", "local[*]", {}, None)}
    for name, settings in raw.items():
        settings = settings or {}
        if not isinstance(settings, dict):
            raise ProjectError(f"target '{name}' must be a mapping with master and spark settings",
                               path=shown, line=line_of(raw))
        check_keys(settings, TARGET_KEYS, f"target '{name}'", shown)
        remote = _remote_of(name, settings, shown)
        spark = settings.get("spark") or {}
        if not isinstance(spark, dict):
            raise ProjectError(f"'spark' of target '{name}' must map Spark settings to values",
                               path=shown, line=line_of(settings))
        threads = settings.get("threads", 1)
        if not isinstance(threads, int) or threads < 1:
            raise ProjectError(f"threads of target '{name}' must be a whole number of at least 1",
                               path=shown, line=line_of(settings))
        warehouse = settings.get("warehouse")
        check_warehouse(warehouse, f"targets.{name}.warehouse", root, shown, line_of(settings))
        targets[name] = Target(str(name), remote or str(settings.get("master", "local[*]")),
                               {str(k): v for k, v in spark.items()}, None if warehouse is None else str(warehouse),
                               threads, remote)
    return targets


def _remote_of(name: str, settings: dict, shown: str) -> str | None:
    """A target's Spark Connect URL, checked; None for a target with a master."""
    if "remote" not in settings:
        return None
    if "master" in settings:
        raise ProjectError(f"target '{name}' has both `master` and `remote`: a target runs on a Spark master "
                           "(local[*], spark://host:7077, yarn, k8s://...) or on a Spark Connect server "
                           "(remote: sc://host:15002), not both", path=shown, line=line_of(settings))
    from .connect import check_url, shown_url

    remote = settings["remote"]
    problem = check_url(remote) if isinstance(remote, str) else "it is not a string"
    if problem:
        raise ProjectError(f"remote of target '{name}' is not a Spark Connect URL ({problem}): write it as "
                           f"sc://host:15002, with parameters after '/;' (sc://host:15002/;token=...); got "
                           f"'{shown_url(str(remote))}'", path=shown, line=line_of(settings))
    return remote


def _files(project: Project, folders: list[str], pattern: str) -> list[tuple[Path, Path]]:
    """(folder, file) pairs in a stable order; hidden files and folders are not project files."""
    found = []
    for folder in folders:
        base = project.root / folder
        if not base.is_dir():
            continue
        for path in sorted(base.rglob(pattern)):
            if any(part.startswith(".") for part in path.relative_to(base).parts):
                continue
            found.append((base, path))
    return found


def _load_macro_files(project: Project) -> None:
    project.macro_files = [path for _, path in _files(project, project.macro_paths, "*.sql")]


def _load_models(project: Project) -> None:
    for base, path in _files(project, project.model_paths, "*.sql"):
        name = path.stem
        shown = project.rel(path)
        check_node_name(name, "model", shown)
        if name in project.models:
            other = project.models[name].path
            raise ProjectError(
                f"two models are named '{name}': {other} and {shown}. Model names must be unique "
                f"across folders; rename one of the files", path=shown)
        folder_parts = path.relative_to(base).parent.parts
        project.models[name] = Model(
            unique_id=f"{MODEL}.{project.name}.{name}", name=name, resource_type=MODEL, path=shown,
            raw_sql=path.read_text(encoding="utf-8"), folder_parts=tuple(folder_parts),
            config=folder_config(project.folder_configs, project.name, folder_parts))


def folder_config(tree: dict, project_name: str, folder_parts: tuple[str, ...]) -> dict[str, Any]:
    """The configs project.yml gives a model folder, dbt style: `+key` applies to a folder and below."""
    config: dict[str, Any] = {"materialized": "table"}
    levels = [tree]
    if project_name in tree and isinstance(tree[project_name], dict):
        levels = [tree, tree[project_name]]
    for level in levels:
        _apply_level(config, level)
    node = levels[-1]
    for part in folder_parts:
        node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            break
        _apply_level(config, node)
    return config


def _apply_level(config: dict[str, Any], level: dict) -> None:
    for key, value in level.items():
        name = key[1:] if key.startswith("+") else key
        if name in MODEL_CONFIG_KEYS and (key.startswith("+") or not isinstance(value, dict)):
            if name == "tags":
                config["tags"] = sorted(set(config.get("tags", [])) | set(_as_list(value)))
            else:
                config[name] = value


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _check_folder_configs(project: Project, tree: dict, shown: str) -> None:
    """Every key under `models:` is a known config or an existing model folder."""
    if not isinstance(tree, dict):
        raise ProjectError("'models' must be a mapping of folders and +configs", path=shown)
    folders: set[tuple[str, ...]] = {()}
    for model in project.models.values():
        for i in range(len(model.folder_parts) + 1):
            folders.add(model.folder_parts[:i])

    def walk(node: dict, prefix: tuple[str, ...], allow_project: bool) -> None:
        for key, value in node.items():
            name = str(key)[1:] if str(key).startswith("+") else str(key)
            if name in MODEL_CONFIG_KEYS and (str(key).startswith("+") or not isinstance(value, dict)):
                if name == "materialized" and value not in MATERIALIZATIONS:
                    raise ProjectError(
                        f"materialized: '{value}' is not a materialization; use one of "
                        f"{', '.join(sorted(MATERIALIZATIONS))}", path=shown, line=line_of(node))
                continue
            if allow_project and key == project.name and isinstance(value, dict):
                walk(value, prefix, False)
                continue
            if isinstance(value, dict) and prefix + (key,) in folders:
                walk(value, prefix + (key,), False)
                continue
            known = sorted({f"+{k}" for k in MODEL_CONFIG_KEYS}
                           | {f[len(prefix)] for f in folders if len(f) > len(prefix) and f[:len(prefix)] == prefix})
            raise ProjectError(
                f"unknown key '{key}' under models{''.join('.' + p for p in prefix)}: it is neither a "
                f"config nor a model folder.{closest(str(key), known)}", path=shown, line=line_of(node))

    walk(tree, (), True)


def _load_seeds(project: Project, seed_configs: dict, shown: str) -> None:
    for _, path in _files(project, project.seed_paths, "*.csv"):
        name = path.stem
        check_node_name(name, "seed", project.rel(path))
        if name in project.models:
            raise ProjectError(f"seed '{name}' has the same name as the model in {project.models[name].path}",
                               path=project.rel(path))
        config = dict(seed_configs.get(name) or {}) if isinstance(seed_configs, dict) else {}
        check_keys({k.lstrip("+"): v for k, v in config.items()}, SEED_CONFIG_KEYS, f"seeds.{name}", shown)
        config = {k.lstrip("+"): v for k, v in config.items()}
        project.seeds[name] = Seed(
            unique_id=f"{SEED}.{project.name}.{name}", name=name, resource_type=SEED,
            path=project.rel(path), config={"materialized": "seed", **config},
            column_types=dict(config.get("column_types") or {}), tags=_as_list(config.get("tags")))


def _load_schema_files(project: Project) -> None:
    for _, path in _files(project, project.model_paths + project.seed_paths, "*.yml"):
        shown = project.rel(path)
        data = read_yaml(path, shown) or {}
        if not isinstance(data, dict):
            raise ProjectError("a models YAML file must be a mapping with 'models' and/or 'sources'", path=shown)
        check_keys(data, SCHEMA_KEYS, "a models YAML file", shown)
        for entry in data.get("models") or []:
            _load_model_entry(project, entry, shown, kind=MODEL)
        for entry in data.get("seeds") or []:
            _load_model_entry(project, entry, shown, kind=SEED)
        for source in data.get("sources") or []:
            _load_source(project, source, shown)


def _load_model_entry(project: Project, entry: dict, shown: str, kind: str) -> None:
    if not isinstance(entry, dict) or "name" not in entry:
        raise ProjectError(f"every entry under '{kind}s' needs a name", path=shown, line=line_of(entry))
    check_keys(entry, SCHEMA_MODEL_KEYS, f"{kind} '{entry['name']}'", shown)
    pool = project.models if kind == MODEL else project.seeds
    node = pool.get(entry["name"])
    if node is None:
        raise ProjectError(
            f"{kind} '{entry['name']}' is described here but there is no {entry['name']}."
            f"{'sql' if kind == MODEL else 'csv'} file.{closest(entry['name'], pool)}",
            path=shown, line=line_of(entry))
    node.description = entry.get("description", "") or ""
    config = entry.get("config") or {}
    check_keys(config, MODEL_CONFIG_KEYS | SEED_CONFIG_KEYS, f"config of {kind} '{node.name}'", shown)
    node.config.update(config)
    if isinstance(node, Seed) and config.get("column_types"):
        node.column_types.update(config["column_types"])
    columns = {}
    for column in entry.get("columns") or []:
        if not isinstance(column, dict) or "name" not in column:
            raise ProjectError(f"every column of '{node.name}' needs a name", path=shown, line=line_of(column))
        check_keys(column, SCHEMA_COLUMN_KEYS, f"column '{column['name']}' of '{node.name}'", shown)
        columns[column["name"]] = {"name": column["name"], "description": column.get("description", "") or "",
                                   "data_type": column.get("data_type")}
        for test in _tests_of(column):
            project.declared_tests.append({"test": test, "on": node.unique_id, "column": column["name"],
                                           "path": shown, "line": line_of(column)})
    if isinstance(node, Model):
        node.columns = columns
    for test in _tests_of(entry):
        project.declared_tests.append({"test": test, "on": node.unique_id, "column": None,
                                       "path": shown, "line": line_of(entry)})


def _tests_of(entry: dict) -> list:
    tests = list(entry.get("tests") or []) + list(entry.get("data_tests") or [])
    return tests


def _load_source(project: Project, source: dict, shown: str) -> None:
    if not isinstance(source, dict) or "name" not in source:
        raise ProjectError("every source needs a name", path=shown, line=line_of(source))
    check_keys(source, SOURCE_KEYS, f"source '{source['name']}'", shown)
    for table in source.get("tables") or []:
        if not isinstance(table, dict) or "name" not in table:
            raise ProjectError(f"every table of source '{source['name']}' needs a name",
                               path=shown, line=line_of(source))
        check_keys(table, SOURCE_TABLE_KEYS, f"source table '{source['name']}.{table['name']}'", shown)
        key = (str(source["name"]), str(table["name"]))
        if key in project.sources:
            raise ProjectError(f"source '{key[0]}.{key[1]}' is declared twice", path=shown, line=line_of(table))
        fmt = str(table.get("format", "parquet" if table.get("path") else "table"))
        node = Source(
            unique_id=f"{SOURCE}.{project.name}.{key[0]}.{key[1]}", name=f"{key[0]}.{key[1]}",
            resource_type=SOURCE, path=shown, description=table.get("description", "") or "",
            source_name=key[0], table_name=key[1], format=fmt,
            location=table.get("path") or table.get("identifier"), options=dict(table.get("options") or {}),
            tags=_as_list(table.get("tags")) + _as_list(source.get("tags")))
        node.config = {"format": fmt, "line": line_of(table)}
        project.sources[key] = node
        for column in table.get("columns") or []:
            for test in _tests_of(column):
                project.declared_tests.append({"test": test, "on": node.unique_id, "column": column["name"],
                                               "path": shown, "line": line_of(column)})
        for test in _tests_of(table):
            project.declared_tests.append({"test": test, "on": node.unique_id, "column": None,
                                           "path": shown, "line": line_of(table)})


def _load_singular_tests(project: Project) -> None:
    for _, path in _files(project, project.test_paths, "*.sql"):
        name = path.stem
        project.singular_tests.append(DataTest(
            unique_id=f"{TEST}.{project.name}.{name}", name=name, resource_type=TEST,
            path=project.rel(path), test_name=name, raw_sql=path.read_text(encoding="utf-8"),
            config={"severity": "error"}))
