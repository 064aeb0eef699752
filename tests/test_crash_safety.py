"""Killing a build (SIGKILL) at any moment leaves every table readable at its last good version
(nothing the killed build wrote is visible), and the next build recovers without manual cleanup.

The build runs in a subprocess that kills itself, with its JVM, at a point every build reaches:
before or after a given table is published, or just before the build's tables are committed.
A kill timed from the outside would land wherever the machine's speed put the build by then."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imageprep.cli import main
from runner_helpers import TABLES, copy_example, read_table, rows_of

ROOT = Path(__file__).resolve().parent.parent
RUNNER = ROOT / "runner.py"
VARS = {"image_size": 32, "augment_copies": 1}

# Runs `python runner.py ARGS` with the warehouse's publish and commit wrapped so that, at the
# given point, the runner kills its process group (itself and its JVM, as a crash would take them;
# it leads the group: started with start_new_session). argv: the project root, then "before" or
# "after" and a table name, or "commit" and "-", then the runner's arguments.
KILLING_RUNNER = """
import os, signal, sys
sys.path.insert(0, sys.argv[1])
from imageprep.cli import main
from imageprep.warehouse import Warehouse

when, table = sys.argv[2], sys.argv[3]

def die():
    sys.stdout.flush()
    os.killpg(os.getpid(), signal.SIGKILL)

publish_table, commit_build = Warehouse.publish_table, Warehouse.commit_build

def publish_then_maybe_die(self, name, *args, **kwargs):
    if when == "before" and name == table:
        die()
    publish_table(self, name, *args, **kwargs)
    if when == "after" and name == table:
        die()

def maybe_die_then_commit(self, *args, **kwargs):
    if when == "commit":
        die()
    return commit_build(self, *args, **kwargs)

Warehouse.publish_table, Warehouse.commit_build = publish_then_maybe_die, maybe_die_then_commit
sys.exit(main(sys.argv[4:]))
"""


def make_images(folder: Path, n: int, first: int = 0) -> None:
    rng = np.random.default_rng(7 + first)
    for i in range(first, first + n):
        label = ["red", "green", "blue", "gray"][i % 4]
        (folder / label).mkdir(parents=True, exist_ok=True)
        base = np.array({"red": [200, 40, 40], "green": [40, 200, 40], "blue": [40, 40, 200], "gray": [128] * 3}[label])
        pixels = np.clip(base + rng.normal(0, 30, (48, 64, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / label / f"img{i:04d}.jpg", quality=90)


def start_build(project: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(RUNNER), "build", "--project-dir", str(project), "--vars", json.dumps(VARS), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def build_here(project: Path, *extra: str) -> None:
    """A build that is not killed, in this process on the test run's Spark session (a new JVM per
    build would double these tests' time; the killed builds need their own processes)."""
    assert main(["build", "--project-dir", str(project), "--vars", json.dumps(VARS), *extra]) == 0


def build_killed_at(project: Path, when: str, table: str, *extra: str) -> None:
    """Run a build that SIGKILLs itself at `when` ("before"/"after" publishing `table`, or "commit")."""
    # Output to a file, not a pipe: nothing waits on the end of a stream that a process outside the
    # killed group (Spark's Python daemon) might still hold.
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", KILLING_RUNNER, str(ROOT), when, table,
             "build", "--project-dir", str(project), "--vars", json.dumps(VARS), *extra],
            stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            code = process.wait(timeout=600)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.seek(0)
        assert code == -signal.SIGKILL, f"the build was not killed {when} {table}:\n{log.read()[-3000:]}"


def tables(project: Path) -> dict:
    return {t: rows_of(read_table(project, t)) for t in TABLES}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("crash_images")
    make_images(folder, 120)
    return folder


def test_killed_builds_leave_last_good_tables_and_the_next_build_recovers(spark, tmp_path, images):
    clean = copy_example(tmp_path / "clean")
    VARS["images_path"] = str(images)
    build_here(clean)
    expected = tables(clean)
    assert len(expected["stg_images"]) == 120

    crashed = copy_example(tmp_path / "crashed")
    (crashed / "target").mkdir()
    shutil.copytree(clean / "target/warehouse", crashed / "target/warehouse", symlinks=True)
    # Kill full rebuilds at several points: with the decoded images written but not published, with
    # tables published mid-graph, and with every table published and tested but not committed.
    for when, table in (("before", "images_resized"), ("after", "image_groups"), ("commit", "-")):
        build_killed_at(crashed, when, table, "--full-refresh")
        # Every table still reads, whole, at its last good version.
        assert tables(crashed) == expected, f"tables changed after a kill {when} {table}"

    build_here(crashed)
    assert tables(crashed) == expected
    # Old versions and those the killed builds never committed were cleaned up: at most the current
    # and the previous one remain.
    for table in TABLES:
        assert len(list((crashed / "target/warehouse/_versions" / table).iterdir())) <= 2, table


def test_killed_incremental_builds_keep_the_tables_and_the_next_build_equals_a_full_one(spark, tmp_path, images):
    from bench.incremental import compare, read_tables

    VARS["images_path"] = str(images)
    project = copy_example(tmp_path / "project")
    build_here(project)
    before = tables(project)

    make_images(images, 12, first=1000)  # images arrive
    # Kill incremental builds once the new images are decoded, after a merge mid-graph, and just
    # before the commit. Every table must then read as before: a build's tables become visible
    # together when it ends.
    seen_after_kills = []
    for when, table in (("before", "images_resized"), ("after", "splits"), ("commit", "-")):
        build_killed_at(project, when, table)
        seen_after_kills.append((f"{when} {table}", tables(project)))

    build_here(project)
    after = tables(project)
    assert len(after["stg_images"]) == 132
    for point, seen in seen_after_kills:
        for table, rows in seen.items():
            assert rows == before[table], f"{table} changed after a kill {point}"
    fresh = copy_example(tmp_path / "fresh")
    build_here(fresh)
    assert compare(read_tables(project), read_tables(fresh)) == []


def test_a_killed_build_over_spark_connect_leaves_the_last_good_tables(connect_url, tmp_path, images):
    """The same over Spark Connect: the killed runner is a client without a JVM of its own, and
    the server it used (the test run's) outlives it."""
    VARS["images_path"] = str(images)
    project = copy_example(tmp_path / "project")
    with (project / "project.yml").open("a", encoding="utf-8") as config:
        config.write(f"  connect:\n    remote: '{connect_url}'\n")
    process = start_build(project, "--target", "connect")
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-3000:]
    expected = tables(project)
    assert len(expected["stg_images"]) == len(list(images.rglob("*.jpg")))  # the other tests add images

    for when, table in (("after", "image_groups"), ("commit", "-")):
        build_killed_at(project, when, table, "--full-refresh", "--target", "connect")
        assert tables(project) == expected, f"tables changed after a kill {when} {table}"
    process = start_build(project, "--target", "connect")
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-3000:]
    assert tables(project) == expected
