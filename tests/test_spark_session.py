"""Settings the runner gives a local Spark session, seen from inside the session."""
from __future__ import annotations

import os
import sys

import pyspark

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "imageprep", "python_daemon"))
import image_data_daemon  # noqa: E402  (the module Spark starts as its Python daemon)


def test_python_workers_run_the_installed_compiled_pyspark_not_sparks_zip(spark):
    """Spark puts `python/lib/pyspark.zip` first on the workers' path; nothing read from a zip is
    kept compiled, so each worker would compile pyspark again. Ours import the installed package."""
    from pyspark.sql.functions import udf

    @udf("string")
    def worker_module_files(_):
        import pyspark
        import pyspark.worker

        return f"{pyspark.__file__}|{pyspark.worker.__file__}"

    files = {row[0] for row in spark.range(2).repartition(2).select(worker_module_files("id")).collect()}
    installed = os.path.dirname(os.path.realpath(pyspark.__file__))
    for package_file, worker_file in (value.split("|") for value in files):
        assert ".zip" not in package_file and ".zip" not in worker_file, files
        assert os.path.dirname(os.path.realpath(worker_file)) == installed


def test_daemon_uses_only_a_zip_that_belongs_to_an_installed_pyspark(tmp_path, monkeypatch):
    # A Spark distribution: SPARK_HOME/python/lib/pyspark.zip, no package around it.
    distribution_zip = tmp_path / "spark-4" / "python" / "lib" / "pyspark.zip"
    distribution_zip.parent.mkdir(parents=True)
    distribution_zip.write_bytes(b"")
    monkeypatch.setattr(sys, "path", [str(distribution_zip)])
    assert image_data_daemon.installed_pyspark_home() is None

    # pip's pyspark: the package is SPARK_HOME, and the zip lies inside it.
    package = tmp_path / "site-packages" / "pyspark"
    (package / "python" / "lib").mkdir(parents=True)
    for name in ("__init__.py", "daemon.py"):
        (package / name).write_text("")
    pip_zip = package / "python" / "lib" / "pyspark.zip"
    pip_zip.write_bytes(b"")
    monkeypatch.setattr(sys, "path", [str(distribution_zip), str(pip_zip)])
    assert image_data_daemon.installed_pyspark_home() == str(package)


def test_local_scans_are_capped_at_four_partitions_per_core_and_clusters_are_not(spark):
    from imageprep.spark_session import defaults_for

    assert spark.conf.get("spark.sql.files.maxPartitionNum") == "8"  # the suite's session is local[2]
    assert defaults_for("local[3]")["spark.sql.files.maxPartitionNum"] == "12"
    assert defaults_for("local[*]")["spark.sql.files.maxPartitionNum"] == str(4 * os.cpu_count())
    assert "spark.sql.files.maxPartitionNum" not in defaults_for("spark://host:7077")
