"""Projects built over Spark Connect, and `serve --connect`.

The builds run in this process on the suite's Connect session (`connect_spark`: a Connect server in
the suite's own driver), so the image functions' code reaches the server's Python workers as a
session artifact, as it would on a remote server. `serve --connect` runs as a command of its own.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from runner_helpers import IMAGE_FOLDER_SOURCE, free_port, parquet_inodes, run_cli, write_project

ROOT = Path(__file__).resolve().parent.parent
RED, BLUE = (200, 30, 30), (20, 40, 220)

IMAGE_MODELS = {
    "models/sources.yml": IMAGE_FOLDER_SOURCE,
    # Decoded and resized once, incrementally: only new or changed files are read again.
    "models/images.sql": """
        {{ config(materialized='incremental', unique_key='path',
                  delete_where="path not in (select path from " ~ source('raw', 'images') ~ ")") }}
        select path, split_part(relative_path, '/', 1) as label, resize(decode_image(content, path), 16, 16) as image
        from {{ new_rows(source('raw', 'images')) }} f
        {% if is_incremental() %} where not exists (select 1 from {{ this }} t where t.path = f.path) {% endif %}
    """,
    "models/labels.sql": """
        select l.label, l.label_index, count(i.path) as n_images, max(tensor_shape(i.image)) as shape
        from {{ ref('label_names') }} l left join {{ ref('images') }} i on i.label = l.label
        group by l.label, l.label_index
    """,
    "models/schema.yml": """
        version: 2
        models:
          - name: images
            columns:
              - name: path
                tests: [unique, not_null]
              - name: label
                tests:
                  - accepted_values:
                      values: ['red', 'blue']
    """,
    "seeds/label_names.csv": "label,label_index\nblue,0\nred,1\n",
}


def remote_project(root: Path, url: str, files: dict[str, str] | None = None) -> Path:
    return write_project(root, {"project.yml": f"name: demo\ntarget: connect\ntargets:\n  connect:\n"
                                              f"    remote: '{url}'\n", **(files or {})})


def add_image(root: Path, label: str, name: str, color, size=(40, 30)) -> None:
    path = root / "data/images" / label / name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def statuses(root: Path) -> dict[str, str]:
    results = json.loads((root / "target/run_results.json").read_text())["results"]
    return {r["name"]: r["status"] for r in results}


def table(root: Path, name: str) -> list[dict]:
    return pq.read_table(root / "target/warehouse" / name).to_pylist()


def python_artifacts(spark, session) -> list[str]:
    """The Python files the Connect server holds for `session` (read in the server's JVM, which is
    the suite's own driver)."""
    service = getattr(getattr(spark._jvm.org.apache.spark.sql.connect.service, "SparkConnectService$"), "MODULE$")
    sessions = service.sessionManager().listActiveSessions().iterator()
    while sessions.hasNext():
        info = sessions.next()
        if info.sessionId() == session.session_id:
            key = spark._jvm.org.apache.spark.sql.connect.service.SessionKey(info.userId(), info.sessionId())
            holder = service.sessionManager().getIsolatedSessionIfPresent(key).get()
            return [str(name) for name in holder.artifactManager().pythonIncludeList()]
    raise AssertionError(f"the server has no session {session.session_id}")


# -- building ------------------------------------------------------------------------------------


def test_an_image_project_builds_incrementally_over_spark_connect(spark, connect_spark, connect_url, tmp_path, capsys):
    root = remote_project(tmp_path, connect_url, IMAGE_MODELS)
    for i in range(3):
        add_image(root, "red", f"r{i}.png", RED)
        add_image(root, "blue", f"b{i}.png", BLUE)
    code, out, err = run_cli(capsys, "build", "--project-dir", str(root))
    assert code == 0, out + err
    assert "Starting Spark (sc://127.0.0.1:" in out
    assert statuses(root) == {"label_names": "success", "images": "success", "labels": "success",
                              "unique_images_path": "pass", "not_null_images_path": "pass",
                              "accepted_values_images_label": "pass"}
    labels = {r["label"]: (r["label_index"], r["n_images"], r["shape"]) for r in table(root, "labels")}
    assert labels == {"blue": (0, 3, [3, 16, 16]), "red": (1, 3, [3, 16, 16])}
    # The image functions ran in the server's Python workers from the zip sent as an artifact.
    assert any(Path(name).name.startswith("udfs-") and name.endswith(".zip")
               for name in python_artifacts(spark, connect_spark))

    # Again after an image arrived: only the new file is decoded, the table's files are kept.
    kept = parquet_inodes(root / "target/warehouse/images")
    add_image(root, "red", "r3.png", RED)
    code, out, err = run_cli(capsys, "build", "--project-dir", str(root))
    assert code == 0, out + err
    assert statuses(root)["label_names"] == "skipped: unchanged"
    files = list((root / "target/warehouse/images").resolve().rglob("*.parquet"))
    assert kept <= {f.stat().st_ino for f in files}
    written = [Path(row["path"]).name for f in files if f.stat().st_ino not in kept for row in pq.read_table(f).to_pylist()]
    assert written == ["r3.png"]
    assert {r["label"]: r["n_images"] for r in table(root, "labels")} == {"blue": 3, "red": 4}

    # And after one went: its row goes too.
    (root / "data/images/blue/b0.png").unlink()
    code, out, err = run_cli(capsys, "build", "--project-dir", str(root))
    assert code == 0, out + err
    rows = table(root, "images")
    assert sorted(Path(r["path"]).name for r in rows) == ["b1.png", "b2.png", "r0.png", "r1.png", "r2.png", "r3.png"]
    assert all((r["image"]["height"], r["image"]["width"]) == (16, 16) for r in rows)
    assert {r["label"]: r["n_images"] for r in table(root, "labels")} == {"blue": 2, "red": 4}

    # Reading commands run over the same connection.
    code, out, _ = run_cli(capsys, "query", "--project-dir", str(root), "--format", "csv",
                           "select label, count(*) as n, min(hamming(phash(image), phash(image))) as d "
                           "from images group by label order by label")
    assert code == 0 and out.splitlines() == ["label,n,d", "blue,2,0", "red,4,0"]
    code, out, _ = run_cli(capsys, "show", "labels", "--project-dir", str(root))
    assert code == 0 and out.strip().endswith("2 rows")


def test_threads_build_independent_models_together_over_one_connection(connect_spark, connect_url, tmp_path, capsys):
    models = {f"models/m{i}.sql": f"select id, id * {i} as v from range(100) as t(id)" for i in range(4)}
    models["models/total.sql"] = " union all ".join(f"select sum(v) as s from {{{{ ref('m{i}') }}}}" for i in range(4))
    root = remote_project(tmp_path, connect_url, models)
    code, out, err = run_cli(capsys, "build", "--project-dir", str(root), "--threads", "3")
    assert code == 0, out + err
    assert sorted(r["s"] for r in table(root, "total")) == [0, 4950, 9900, 14850]


def test_a_remote_target_sets_session_settings_with_hadoop_ones_unprefixed(connect_spark, connect_url, tmp_path,
                                                                          capsys):
    from imageprep.spark_session import defaults_for

    assert all(key.startswith(("spark.sql.", "spark.hadoop.parquet.")) for key in defaults_for(connect_url))
    root = write_project(tmp_path, {
        "project.yml": f"name: demo\ntarget: connect\ntargets:\n  connect:\n    remote: '{connect_url}'\n"
                       "    spark:\n      spark.hadoop.parquet.block.size: 1048576\n",
        "models/one.sql": "select 1 as x"})
    assert run_cli(capsys, "build", "--project-dir", str(root))[0] == 0
    assert connect_spark.conf.get("parquet.block.size") == "1048576"  # the target's, as Parquet reads it
    assert connect_spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch") == "16"  # a default


def test_server_only_settings_of_a_remote_target_are_named_in_one_error(connect_spark, connect_url, tmp_path, capsys):
    root = write_project(tmp_path, {
        "project.yml": f"name: demo\ntarget: connect\ntargets:\n  connect:\n    remote: '{connect_url}'\n"
                       "    spark:\n      spark.executor.memory: 2g\n      spark.sql.shuffle.partitions: 3\n",
        "models/one.sql": "select 1 as x"})
    code, _, err = run_cli(capsys, "build", "--project-dir", str(root))
    assert code == 2
    assert "spark.executor.memory" in err and "server's own configuration" in err
    assert "spark.sql.shuffle.partitions" not in err


# -- errors that need no server -----------------------------------------------------------------


def test_a_remote_target_without_the_connect_client_names_the_pip_command(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "grpc", None)  # as if grpcio were not installed
    root = remote_project(tmp_path, "sc://127.0.0.1:1", {"models/one.sql": "select 1 as x"})
    code, _, err = run_cli(capsys, "build", "--project-dir", str(root))
    assert code == 2
    assert "missing grpcio" in err
    assert 'pip install "pyspark[connect]==' in err and "requirements-connect.txt" in err


@pytest.mark.parametrize("target, message", [
    ("    master: 'local[2]'\n    remote: 'sc://h:15002'\n", "has both `master` and `remote`"),
    ("    remote: 'http://h:15002'\n", "it must start with sc://"),
    ("    remote: 'sc://:15002'\n", "it names no host"),
    ("    remote: 'sc://h:15002/x;token=secret'\n", "it has a path"),
])
def test_a_target_has_a_master_or_a_well_formed_remote(tmp_path, capsys, target, message):
    root = write_project(tmp_path, {"project.yml": f"name: demo\ntarget: t\ntargets:\n  t:\n{target}",
                                    "models/one.sql": "select 1 as x"})
    code, _, err = run_cli(capsys, "compile", "--project-dir", str(root))
    assert code == 2 and message in err and "project.yml" in err
    assert "secret" not in err  # a token is never printed


def test_the_thrift_endpoint_says_it_needs_a_target_with_a_master(tmp_path, capsys):
    root = remote_project(tmp_path, "sc://127.0.0.1:1/;token=secret", {"models/one.sql": "select 1 as x"})
    code, _, err = run_cli(capsys, "serve", "--project-dir", str(root))
    assert code == 2 and "runs on a Spark Connect server" in err and "`master`" in err
    assert "secret" not in err


# -- serve --connect ------------------------------------------------------------------------------


def test_serve_connect_gives_connect_clients_the_tables_views_and_functions(spark, tmp_path, capsys):
    ConnectSession = pytest.importorskip("pyspark.sql.connect.session").SparkSession

    root = write_project(tmp_path, {
        **{name: text for name, text in IMAGE_MODELS.items() if name != "models/schema.yml"},
        "models/red_images.sql": "{{ config(materialized='view') }} select * from {{ ref('images') }} where label = 'red'",
    })
    for i in range(2):
        add_image(root, "red", f"r{i}.png", RED)
    add_image(root, "blue", "b0.png", BLUE)
    assert run_cli(capsys, "build", "--project-dir", str(root))[0] == 0  # on the suite's classic session

    port = free_port()
    server = subprocess.Popen([sys.executable, str(ROOT / "runner.py"), "serve", "--connect", "--project-dir", str(root),
                               "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = ServerOutput(server)
    try:
        banner = lines.wait_for("Ctrl-C stops the server")
        assert f"sc://localhost:{port}" in banner and "4 tables and views" in banner
        client = ConnectSession.builder.remote(f"sc://localhost:{port}").create()
        try:
            rows = client.sql("select l.label, l.n_images, count(*) as n, max(tensor_shape(i.image)) as shape, "
                              "max(hamming(phash(i.image), phash(i.image))) as d "
                              "from images i join labels l on i.label = l.label group by 1, 2 order by 1").collect()
            assert [tuple(r) for r in rows] == [("blue", 1, 1, [3, 16, 16], 0), ("red", 2, 2, [3, 16, 16], 0)]
            assert client.sql("select count(*) from red_images").first()[0] == 2

            add_image(root, "red", "r2.png", RED)  # a build publishes: the endpoint switches to it
            assert run_cli(capsys, "build", "--project-dir", str(root))[0] == 0
            lines.wait_for("Reloaded")
            assert client.sql("select count(*) from red_images").first()[0] == 3
        finally:
            client.stop()
    finally:
        server.terminate()
        output = lines.finish()
    assert server.returncode == 0, output
    assert "Stopping the Spark Connect endpoint." in output


class ServerOutput:
    """The server's output lines, read as they come (a thread), so a wait never blocks on a pipe."""

    def __init__(self, process: subprocess.Popen):
        self.process, self.lines, self.changed = process, [], threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()
        with self.changed:
            self.lines.append(None)  # the end
            self.changed.notify_all()

    def wait_for(self, text: str, timeout: float = 300.0) -> str:
        """All output up to the first line holding `text`; fails if the server ends first."""
        with self.changed:
            self.changed.wait_for(lambda: any(line is None or text in line for line in self.lines), timeout)
            output = "".join(line for line in self.lines if line)
            assert text in output, f"no '{text}' in:\n{output}"
            return output

    def finish(self) -> str:
        self.process.wait(timeout=120)
        self.reader.join(timeout=30)
        return "".join(line for line in self.lines if line)
