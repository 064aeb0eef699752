"""`python runner.py serve`: a real JDBC client (PySpark's beeline) queries the built tables.

A tiny image project is built on the test run's session, then served by a `runner.py serve`
subprocess; beeline joins two models and calls image functions over JDBC, and sees a rebuild.
"""
from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from imageprep.cli import main
from runner_helpers import IMAGE_FOLDER_SOURCE, wait_or_kill, write_project

ROOT = Path(__file__).resolve().parent.parent
RED, BLUE = (200, 30, 30), (20, 40, 220)

MODELS = {
    "models/sources.yml": IMAGE_FOLDER_SOURCE,
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


def run_beeline(port: int, sql: str, *options: str, url_tail: str = "", script: Path | None = None
                ) -> subprocess.CompletedProcess:
    """beeline's run of `sql` on the endpoint (`options` such as -n USER -p PASSWORD). Given a `script`
    file, `sql` is run from it, each statement even after one fails."""
    if script:
        script.write_text(sql)
    source = ["--force=true", "-f", str(script)] if script else ["-e", sql]
    return subprocess.run([str(beeline()), "-u", f"jdbc:hive2://localhost:{port}/default{url_tail}", "--silent=true",
                           "--outputformat=tsv2", *options, *source], capture_output=True, text=True, timeout=300)


def rows_printed(stdout: str) -> list[list[str]]:
    """Rows (header lines included) that beeline printed, as tab-separated fields."""
    lines = (re.sub(r"^(\d+: jdbc:hive2://\S*> ?)+", "", line) for line in stdout.splitlines())  # prompt echoes
    return [[field.strip() for field in line.split("\t")] for line in lines if line.strip()]


def jdbc(port: int, sql: str) -> list[list[str]]:
    """Rows (header lines included) that beeline prints for `sql`, as tab-separated fields."""
    done = run_beeline(port, sql)
    assert done.returncode == 0, done.stdout + done.stderr
    return rows_printed(done.stdout)


def build_tiny_project(root: Path, project_yml: str | None = None) -> Path:
    """The tiny image project (3 red and 2 blue images), built on the test run's session."""
    write_project(root, {**MODELS, **({"project.yml": project_yml} if project_yml else {})})
    for i in range(3):
        add_image(root, "red", f"r{i}.png", RED)
    for i in range(2):
        add_image(root, "blue", f"b{i}.png", BLUE, size=(30, 50))
    assert main(["build", "--project-dir", str(root)]) == 0
    return root


def start_serve(root: Path, port: int, cwd: Path, log: Path, **options) -> subprocess.Popen:
    """A `runner.py serve` subprocess of `root` on `port`, its output in `log`."""
    cwd.mkdir(exist_ok=True)
    arguments = ["serve", "--project-dir", str(root), "--port", str(port)]
    if options.get("host"):
        arguments += ["--host", options["host"]]
    if options.get("allow_writes"):
        arguments.append("--allow-writes")
    command = [sys.executable, str(ROOT / "runner.py"), *arguments]
    with log.open("w") as out:
        return subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def wait_for_banner(process: subprocess.Popen, log: Path, timeout: float = 180) -> bool:
    """True once serve prints its banner, False if it exits first."""
    deadline = time.monotonic() + timeout
    while "Ctrl-C stops the server" not in log.read_text():
        if process.poll() is not None:
            return False
        assert time.monotonic() < deadline, f"serve did not start in {timeout:.0f} s:\n{log.read_text()}"
        time.sleep(0.5)
    return True


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        wait_or_kill(process, 60)


@contextlib.contextmanager
def serving(root: Path, port: int, cwd: Path, log: Path, **options):
    """`start_serve`, once it serves; stopped on leaving."""
    process = start_serve(root, port, cwd, log, **options)
    try:
        assert wait_for_banner(process, log), f"serve exited with {process.returncode}:\n{log.read_text()}"
        yield process
    finally:
        stop(process)


def needs_beeline() -> None:
    if not beeline().exists():
        pytest.skip(f"no beeline in this Spark installation ({beeline()})")


@pytest.fixture
def served(spark, tmp_path):
    """A built tiny project and a `runner.py serve` subprocess on a free port: (root, port, process, log)."""
    needs_beeline()
    root = build_tiny_project(tmp_path / "project")
    port, log = free_port(), tmp_path / "serve.out"
    with serving(root, port, tmp_path / "cwd", log) as process:
        yield root, port, process, log


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
