"""The import graph of imageprep/: no module imports itself through others, and rendering stays
apart from the code that runs a build.

Imports are read from the source with `ast`, the ones inside functions included: an import put off
until a function runs still ties the two modules together. Imports under `if TYPE_CHECKING:` are
left out, as they never run.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "imageprep"

# Modules that run a build (Spark, the warehouse, the catalog); the renderer must not need them.
EXECUTION = {"materialize", "incremental", "new_rows", "table_writer", "warehouse", "catalog", "sources",
             "node_runner", "scheduler", "tasks"}


def module_files(package: Path) -> dict[str, Path]:
    """Every module of a package by dotted name, e.g. `imageprep.docs_site.content`."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that module `name` (at `path`) imports."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
            continue
        base = package[:len(package) - node.level + 1] if node.level else []
        target = ".".join(base + ([node.module] if node.module else []))
        # `from . import new_rows` imports a module; `from .nodes import MODEL` a name of one.
        submodules = {f"{target}.{alias.name}" for alias in node.names} & set(modules)
        found |= submodules if len(submodules) == len(node.names) else submodules | {target}
    return {imported for imported in found if imported in modules and imported != name}


def _import_nodes(tree: ast.AST):
    """Import statements anywhere in the tree, except under `if TYPE_CHECKING:`."""
    pending = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            pending.extend(node.orelse)
            continue
        pending.extend(ast.iter_child_nodes(node))


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports."""
    modules = module_files(package)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Groups of modules that import each other, directly or through others (Tarjan's strongly
    connected components of more than one module)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph[module]):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def reachable(graph: dict[str, set[str]], start: str) -> dict[str, list[str]]:
    """Every module `start` imports, directly or not, with one chain of imports that leads there."""
    chains = {start: [start]}
    pending = [start]
    while pending:
        module = pending.pop()
        for imported in sorted(graph[module]):
            if imported not in chains:
                chains[imported] = chains[module] + [imported]
                pending.append(imported)
    del chains[start]
    return chains


def test_the_graph_reader_sees_relative_absolute_and_deferred_imports(tmp_path):
    files = {
        "__init__.py": "",
        "a.py": "import os\nfrom . import b\nfrom .c import thing\n",
        "b.py": "def later():\n    from pkg.c import thing\n",
        "c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import never_runs\n",
        "sub/__init__.py": "",
        "sub/d.py": "import pkg.b\nfrom ..c import thing\n",
    }
    for name, text in files.items():
        (tmp_path / "pkg" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "pkg" / name).write_text(text)
    assert import_graph(tmp_path / "pkg") == {
        "pkg": set(), "pkg.a": {"pkg.b", "pkg.c"}, "pkg.b": {"pkg.c"}, "pkg.c": set(),
        "pkg.sub": set(), "pkg.sub.d": {"pkg.b", "pkg.c"},
    }


def test_cycles_are_found_through_other_modules():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_of_imageprep_imports_itself_through_others():
    found = cycles(import_graph())
    assert found == [], "modules that import each other: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_renderer_needs_none_of_the_modules_that_run_a_build():
    chains = reachable(import_graph(), "imageprep.render")
    reached = {f"imageprep.{name}" for name in EXECUTION} & set(chains)
    assert not reached, "render imports " + "; ".join(" -> ".join(chains[m]) for m in sorted(reached))
