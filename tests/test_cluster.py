"""`--target cluster`: the example project on a real Spark standalone cluster, and warehouses at URIs.

A master and one worker are started on 127.0.0.1 with PySpark's `bin/spark-class`; the worker's
working directory is outside the project and its environment has no PYTHONPATH, so the image
functions can only reach the executors' Python workers through the code the driver ships. The
cluster build runs in a subprocess (this test run's own session is local) and writes to a
`file://` warehouse, through the Hadoop FileSystem API; its tables must equal a local build's.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from imageprep.cli import main
from imageprep.files import StoragePath
from imageprep.warehouse import Warehouse
from runner_helpers import TABLES, copy_example, copy_fixture, free_port, run_cli, rows_of, wait_or_kill

ROOT = Path(__file__).resolve().parent.parent
SMALL = {"image_size": 32, "augment_copies": 1}


def spark_class() -> Path:
    from pyspark.find_spark_home import _find_spark_home

    return Path(_find_spark_home()) / "bin" / "spark-class"


class StandaloneCluster:
    """A Spark standalone master and one worker (1 core, 2 GB), as processes of their own groups."""

    def __init__(self, base: Path):
        self.base, self.work_dir = base, base / "worker"
        self.work_dir.mkdir(parents=True)
        self.port, self.ui_port = free_port(), free_port()
        self.url = f"spark://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SPARK_HOME")}
        self.env.update(SPARK_LOCAL_IP="127.0.0.1", SPARK_MASTER_OPTS="-Dspark.master.rest.enabled=false")
        self.processes: list[subprocess.Popen] = []

    def start(self, request) -> None:
        request.addfinalizer(self.stop)  # registered first: runs even if a start below fails
        self._spawn("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                    "--port", str(self.port), "--webui-port", str(self.ui_port))
        self._spawn("worker", "org.apache.spark.deploy.worker.Worker", self.url, "--host", "127.0.0.1",
                    "--cores", "1", "--memory", "2g", "--work-dir", str(self.work_dir),
                    "--webui-port", str(free_port()))

    def _spawn(self, name: str, cls: str, *args: str) -> None:
        log = (self.base / f"{name}.log").open("w")
        self.processes.append(subprocess.Popen([str(spark_class()), cls, *args], cwd=self.base, env=self.env,
                                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        log.close()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.base.glob("*.log")))

    def wait_ready(self, timeout: float = 120) -> None:
        """Until the master reports the worker alive."""
        deadline = time.monotonic() + timeout
        while True:
            assert all(p.poll() is None for p in self.processes), f"a cluster process exited:\n{self.logs()}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=2) as reply:
                    if json.load(reply).get("aliveworkers", 0) >= 1:
                        return
            except OSError:
                pass
            assert time.monotonic() < deadline, f"no worker registered in {timeout:.0f} s:\n{self.logs()}"
            time.sleep(0.5)

    def stop(self) -> None:
        for process in reversed(self.processes):  # worker first (it also stops its executors), then master
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            wait_or_kill(process, 30)


@pytest.fixture
def cluster(tmp_path_factory, request) -> StandaloneCluster:
    if not spark_class().exists():
        pytest.skip(f"no spark-class in this Spark installation ({spark_class()}): cannot start a standalone cluster")
    started = StandaloneCluster(tmp_path_factory.mktemp("cluster"))
    started.start(request)
    return started


def test_example_project_builds_on_a_standalone_cluster_as_it_does_locally(spark, tmp_path, cluster):
    project = copy_example(tmp_path / "project")
    warehouse = tmp_path / "cluster_warehouse"
    # The executors' Python: this test's (it has the requirements), through a script that notes
    # the folder each Python worker process starts in.
    python, started_in = tmp_path / "executor-python", tmp_path / "executor_python_cwd"
    python.write_text(f'#!/bin/sh\necho "$PWD" >> {shlex.quote(str(started_in))}\n'
                      f'exec {shlex.quote(sys.executable)} "$@"\n')
    python.chmod(0o755)
    config = yaml.safe_load((project / "project.yml").read_text())
    config["targets"]["cluster"] = {
        "master": cluster.url,
        "warehouse": warehouse.as_uri(),  # file:///...: written through the Hadoop FileSystem API
        "spark": {"spark.executor.memory": "1g", "spark.sql.shuffle.partitions": 4,
                  # On a 2-core machine the JIT's optimizing compiler competes with the Python workers.
                  "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1",
                  "spark.executor.extraJavaOptions": "-XX:TieredStopAtLevel=1",
                  "spark.pyspark.python": str(python)},
    }
    (project / "project.yml").write_text(yaml.safe_dump(config, sort_keys=False))

    # The local build runs on this test run's session while the cluster starts.
    assert main(["build", "--project-dir", str(project), "--vars", json.dumps(SMALL)]) == 0
    cluster.wait_ready()
    driver_cwd = tmp_path / "driver"
    driver_cwd.mkdir()
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(ROOT / "runner.py"), "build", "--target", "cluster",
                           "--project-dir", str(project), "--vars", json.dumps(SMALL)],
                          cwd=driver_cwd, env=cluster.env, capture_output=True, text=True, timeout=900)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:] + cluster.logs()
    assert f"Starting Spark ({cluster.url})" in output
    print(f"cluster build: {time.monotonic() - started:.0f} s")

    # It ran on the worker: the Python workers started in the executor's folder (outside the
    # project, which the shipped zip of the image functions reached) with the configured Python.
    folders = {Path(line) for line in started_in.read_text().split()}
    assert folders and all(cluster.work_dir in f.parents for f in folders), folders
    assert all(list(f.glob("udfs-*.zip")) for f in folders), cluster.logs()
    catalog = json.loads((warehouse / "_catalog.json").read_text())
    for table in TABLES:
        local = pq.read_table(project / "target/warehouse" / table).to_pydict()
        remote = pq.read_table(warehouse / catalog[table]["version"]).to_pydict()
        assert len(remote[next(iter(remote))]) == catalog[table]["rows"], table
        assert rows_of(remote) == rows_of(local), table
        assert not (warehouse / table).exists()  # no symlinks on a URI warehouse
    assert (warehouse / "_test_state.json").exists()  # test results are kept beside the tables


def test_a_uri_warehouse_builds_switches_versions_and_serves_queries(spark, tmp_path, capsys):
    """A `file://` warehouse goes through the file layer as a URI (no links): versions, catalog, reads."""
    root = copy_fixture("shop", tmp_path)
    location = (tmp_path / "wh").as_uri()
    (root / "project.yml").write_text((root / "project.yml").read_text() + f"\nwarehouse: {location}\n")
    assert main(["build", "--project-dir", str(root)]) == 0
    for _ in range(3):
        assert main(["run", "--project-dir", str(root), "--select", "customers", "--full-refresh"]) == 0
    capsys.readouterr()

    warehouse = Warehouse(location, spark)
    assert isinstance(warehouse.root, StoragePath)
    entry = warehouse.catalog()["customers"]
    assert entry["kind"] == "table" and entry["rows"] == 5
    assert warehouse.table_path("customers") == f"{location}/{entry['version']}"
    versions = sorted(p.name for p in (tmp_path / "wh/_versions/customers").iterdir())
    assert len(versions) == 2 and entry["version"].endswith(versions[-1])  # current and previous only
    assert not (tmp_path / "wh/customers").exists() and not (root / "target/warehouse").exists()

    code, out, _ = run_cli(capsys, "query", "--project-dir", str(root), "--format", "json",
                           "select count(*) as n from customers c join orders o on c.customer_id = o.customer_id")
    assert code == 0 and json.loads(out) == {"n": 7}  # all 7 orders

    warehouse.drop("customers")
    assert "customers" not in warehouse.catalog() and not (tmp_path / "wh/_versions/customers").exists()
    with pytest.raises(ValueError):
        warehouse.discard("file:///elsewhere/x")
