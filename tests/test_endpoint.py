"""`python runner.py serve`: a real JDBC client (PySpark's beeline) queries the built tables.

A tiny image project is built on the test run's session, then served by a `runner.py serve`
subprocess; beeline joins two models and calls image functions over JDBC, and sees a rebuild.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from imageprep.cli import main
from runner_helpers import write_project

ROOT = Path(__file__).resolve().parent.parent
RED, BLUE = (200, 30, 30), (20, 40, 220)

MODELS = {
    "models/sources.yml": """
        version: 2
        sources:
          - name: raw
            tables:
              - name: images
                format: images
                path: data/images
    """,
    "models/images.sql": """
        select path, split_part(relative_path, '/', 1) as label, resize(decode_image(content, path), 16, 16) as image
        from {{ source('raw', 'images') }}
    """,
    "models/labels.sql": """
        select label, cast(row_number() over (order by label) - 1 as int) as label_index, count(*) as n_images
        from {{ ref('images') }} group by label
    """,
    "models/red_images.sql": """
        {{ config(materialized='view') }}
        select * from {{ ref('images') }} where label = 'red'
    """,
}

QUERY = """
select l.label, l.label_index, l.n_images, count(*) as n, max(tensor_shape(i.image)) as shape,
       min(image_stats(i.image).mean[0]) as red_mean, max(hamming(phash(i.image), phash(i.image))) as distance
from images i join labels l on i.label = l.label
group by l.label, l.label_index, l.n_images order by l.label;
select count(*) as n_red from red_images;
"""


def beeline() -> Path:
    from pyspark.find_spark_home import _find_spark_home

    return Path(_find_spark_home()) / "bin" / "beeline"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def add_image(root: Path, label: str, name: str, color, size=(40, 30)) -> None:
    path = root / "data/images" / label / name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def jdbc(port: int, sql: str) -> list[list[str]]:
    """Rows (header lines included) that beeline prints for `sql`, as tab-separated fields."""
    done = subprocess.run([str(beeline()), "-u", f"jdbc:hive2://localhost:{port}/default", "--silent=true",
                           "--outputformat=tsv2", "-e", sql], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = (re.sub(r"^(\d+: jdbc:hive2://\S*> ?)+", "", line) for line in done.stdout.splitlines())  # prompt echoes
    return [[field.strip() for field in line.split("\t")] for line in lines if line.strip()]


@pytest.fixture
def served(spark, tmp_path):
    """A built tiny project and a `runner.py serve` subprocess on a free port: (root, port, process)."""
    if not beeline().exists():
        pytest.skip(f"no beeline in this Spark installation ({beeline()})")
    root = write_project(tmp_path / "project", MODELS)
    for i in range(3):
        add_image(root, "red", f"r{i}.png", RED)
    for i in range(2):
        add_image(root, "blue", f"b{i}.png", BLUE, size=(30, 50))
    assert main(["build", "--project-dir", str(root)]) == 0
    port, cwd = free_port(), tmp_path / "cwd"
    cwd.mkdir()
    log = (tmp_path / "serve.out").open("w+")
    process = subprocess.Popen([sys.executable, str(ROOT / "runner.py"), "serve", "--project-dir", str(root),
                                "--port", str(port)], cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while "Ctrl-C stops the server" not in Path(log.name).read_text():
            assert process.poll() is None, f"serve exited with {process.returncode}:\n{Path(log.name).read_text()}"
            assert time.monotonic() < deadline, f"serve did not start in 180 s:\n{Path(log.name).read_text()}"
            time.sleep(0.5)
        yield root, port, process, Path(log.name)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()


def test_beeline_joins_models_and_calls_image_functions_then_sees_a_rebuild(served, tmp_path):
    root, port, process, log = served
    banner = log.read_text()
    assert f"jdbc:hive2://localhost:{port}/default" in banner and "bin/beeline -u" in banner

    rows = jdbc(port, QUERY)
    assert rows == [
        ["label", "label_index", "n_images", "n", "shape", "red_mean", "distance"],
        ["blue", "0", "2", "2", "[3,16,16]", "20.0", "0"],
        ["red", "1", "3", "3", "[3,16,16]", "200.0", "0"],
        ["n_red"], ["3"],
    ]

    # A build while serving: the endpoint switches to the new versions of the tables (it may
    # have reloaded mid-build, after `images` and before `labels`, and catches up on its next check).
    add_image(root, "blue", "b2.png", BLUE)
    assert main(["build", "--project-dir", str(root)]) == 0
    expected = [["label", "n_images"], ["blue", "3"], ["red", "3"]]
    deadline = time.monotonic() + 60
    while (rows := jdbc(port, "select label, n_images from labels order by label")) != expected:
        assert time.monotonic() < deadline, (rows, log.read_text())
        time.sleep(1)
    assert "Reloaded" in log.read_text()

    # SIGTERM stops it cleanly; the Thrift server's Derby log and scratch folders stay under target/.
    process.terminate()
    assert process.wait(60) == 0, log.read_text()
    assert "Stopping the SQL endpoint." in log.read_text()
    for folder in (root, tmp_path / "cwd"):
        assert not {"derby.log", "metastore_db", "spark-warehouse"} & {p.name for p in folder.iterdir()}
    assert (root / "target/serve/derby.log").exists()


def test_serve_refuses_a_port_in_use(spark, tmp_path, capsys):
    root = write_project(tmp_path / "project", {})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code = main(["serve", "--project-dir", str(root), "--port", str(taken.getsockname()[1])])
    assert code == 2
    assert "already in use; pick another with --port" in capsys.readouterr().err
