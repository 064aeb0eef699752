"""Killing a build (SIGKILL) at any moment leaves every table readable at its last good version
(nothing the killed build wrote is visible), and the next build recovers without manual cleanup."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from test_example_project import TABLES, copy_example, rows_of

RUNNER = Path(__file__).resolve().parent.parent / "runner.py"
VARS = {"image_size": 32, "augment_copies": 1}


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


def kill_after(process: subprocess.Popen, marker: str, extra_seconds: float) -> None:
    """SIGKILL the build (and its JVM and Python workers) once `marker` was printed, a little later."""
    for line in process.stdout:
        if marker in line:
            break
    time.sleep(extra_seconds)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def tables(project: Path) -> dict:
    return {t: rows_of(pq.read_table(project / "target/warehouse" / t).to_pydict()) for t in TABLES}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("crash_images")
    make_images(folder, 120)
    return folder


def test_killed_builds_leave_last_good_tables_and_the_next_build_recovers(spark, tmp_path, images):
    clean = copy_example(tmp_path / "clean")
    VARS["images_path"] = str(images)
    done = subprocess.run([sys.executable, str(RUNNER), "build", "--project-dir", str(clean), "--vars", json.dumps(VARS)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:]
    expected = tables(clean)
    assert len(expected["stg_images"]) == 120

    crashed = copy_example(tmp_path / "crashed")
    (crashed / "target").mkdir()
    shutil.copytree(clean / "target/warehouse", crashed / "target/warehouse", symlinks=True)
    # Kill full rebuilds at several points: while decoding, while writing tables mid-graph, near the end.
    for marker, delay in (("ready in", 1.0), ("images_resized", 0.3), ("image_groups", 0.0)):
        process = start_build(crashed, "--full-refresh")
        kill_after(process, marker, delay)
        # Every table still reads, whole, at its last good version.
        assert tables(crashed) == expected, f"tables changed after a kill at '{marker}'"

    process = start_build(crashed)
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-3000:]
    assert tables(crashed) == expected
    # Old and half-written versions were cleaned up: at most the current and the previous one remain.
    for table in TABLES:
        assert len(list((crashed / "target/warehouse/_versions" / table).iterdir())) <= 2, table


def test_killed_incremental_builds_keep_the_tables_and_the_next_build_equals_a_full_one(spark, tmp_path, images):
    from bench.incremental import compare, read_tables

    VARS["images_path"] = str(images)
    project = copy_example(tmp_path / "project")
    process = start_build(project)
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-3000:]
    before = tables(project)

    make_images(images, 12, first=1000)  # images arrive
    # Kill incremental builds while they decode the new images, merge tables mid-graph, near the end.
    # Every table must then read as before: a build's tables become visible together when it ends.
    seen_after_kills = []
    for marker, delay in (("ready in", 1.5), ("images_resized", 0.2), ("images_augmented", 0.0)):
        process = start_build(project)
        kill_after(process, marker, delay)
        seen_after_kills.append((marker, tables(project)))

    process = start_build(project)
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-3000:]
    after = tables(project)
    assert len(after["stg_images"]) == 132
    for marker, seen in seen_after_kills:
        for table, rows in seen.items():
            assert rows == before[table], f"{table} changed after a kill at '{marker}'"
    fresh = copy_example(tmp_path / "fresh")
    done = subprocess.run([sys.executable, str(RUNNER), "build", "--project-dir", str(fresh), "--vars", json.dumps(VARS)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:]
    assert compare(read_tables(project), read_tables(fresh)) == []
