"""Settings the runner gives a local Spark session, seen from inside the session."""
from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path

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


def listening_sockets(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket process `pid` listens on, read from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            link = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if link.startswith("socket:["):
            inodes.add(link[len("socket:["):-1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                found.add(_socket_address(fields[1]))
    return found


def _socket_address(field: str) -> tuple[str, int]:
    """/proc/net/tcp's `0100007F:1F90` (each 32-bit word in host byte order) as ('127.0.0.1', 8080)."""
    host, port = field.split(":")
    words = bytes.fromhex(host)
    raw = b"".join(words[i:i + 4][::-1] for i in range(0, len(words), 4))
    address = ipaddress.ip_address(raw)
    if address.version == 6 and address.ipv4_mapped:
        address = address.ipv4_mapped
    return str(address), int(port, 16)


def jvm_pid(spark) -> int:
    return spark._jvm.java.lang.ProcessHandle.current().pid()


def test_a_local_session_listens_on_loopback_only(spark):
    """Spark's driver RPC and block manager listen on the machine's network address by default."""
    sockets = listening_sockets(jvm_pid(spark))
    assert sockets, "the JVM listens on no TCP port"
    assert all(ipaddress.ip_address(address).is_loopback for address, _ in sockets), sockets
    assert spark.conf.get("spark.driver.host") == "127.0.0.1"
