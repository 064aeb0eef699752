"""Helpers for tests that build small projects in temporary folders."""
from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

from imageprep.cli import main

FIXTURES = Path(__file__).parent / "fixtures"


def write_project(root: Path, files: dict[str, str]) -> Path:
    """Write `files` (path -> text) under root; a project.yml is added when none is given."""
    files = {"project.yml": "name: demo\ntargets:\n  local:\n    master: 'local[2]'\n", **files}
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


def copy_fixture(name: str, dest: Path) -> Path:
    target = dest / name
    shutil.copytree(FIXTURES / name, target, ignore=shutil.ignore_patterns("target"))
    return target


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run `python runner.py ARGS` in this process (sharing the test run's SparkSession)."""
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def relative_to(listed_path: str, root: Path) -> str:
    """`listed_path` (as Spark lists it, without `file:`) relative to `root`.

    Spark keeps symlinks in the paths it lists, so the root may appear as given or resolved.
    """
    for prefix in (root.absolute().as_posix(), root.resolve().as_posix()):
        marker = prefix.rstrip("/") + "/"
        if marker in listed_path:
            return listed_path.split(marker, 1)[1]
    raise AssertionError(f"{listed_path} is not under {root}")


def parquet_inodes(table: Path) -> set[int]:
    """Inodes of a table's Parquet files (through its symlink): equal inodes mean kept, not rewritten."""
    return {p.stat().st_ino for p in table.resolve().rglob("*.parquet")}
