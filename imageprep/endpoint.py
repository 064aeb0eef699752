"""`python runner.py serve`: a SQL endpoint (JDBC/ODBC) over the built tables, with the image functions.

Spark's Thrift server (the HiveServer2 protocol that `start-thriftserver.sh` serves, and that
beeline, DBeaver, Tableau, PyHive and ODBC drivers speak) is started inside this process's driver
with `HiveThriftServer2.startWithContext`, on the very session the tables are registered in (as
temp views) and the image functions are registered on. With
`spark.sql.hive.thriftServer.singleSession` every JDBC connection shares that session, so each
client sees the tables and functions, and Python functions run in this process's Python workers.

No Hive metastore is used: the session keeps Spark's in-memory catalog. The Thrift server's own
Hive configuration boots an in-memory Derby database and a few scratch folders; they are kept
under `target/serve/`, so nothing lands in the project folder or the working directory.

While serving, the warehouse catalog is checked every few seconds: when a build publishes new
versions, the views are switched to them, so clients always read the last good tables.
"""
from __future__ import annotations

import shutil
import signal
import socket
import threading
from pathlib import Path

from .catalog import register_warehouse
from .errors import ProjectError
from .warehouse import Warehouse

HOST = "localhost"  # no authentication: serve on the loopback interface only
SINGLE_SESSION = "spark.sql.hive.thriftServer.singleSession"
REFRESH_SECONDS = 2.0


def serve_command(args, project, target) -> int:
    """Serve the project's built tables until Ctrl-C or SIGTERM; returns the exit code (0)."""
    port = int(args.port)
    if not 0 < port < 65536:
        raise ProjectError(f"--port {port} is not a TCP port (1-65535)")
    if port_in_use(HOST, port):
        raise ProjectError(f"port {port} on {HOST} is already in use; pick another with --port")
    state = project.target_path / "serve"
    spark = serve_session(project, target, state)
    try:
        warehouse = Warehouse(project.warehouse_for(target), spark)
        catalog = warehouse.catalog()
        registered = register_warehouse(spark, warehouse)
        server = start_thrift_server(spark, HOST, port, state)
        try:
            print(banner(project, target, registered, port), flush=True)
            wait_for_stop(lambda: refresh(spark, warehouse, catalog))
            print("Stopping the SQL endpoint.", flush=True)
        finally:
            server.stop()
    finally:
        spark.stop()
        shutil.rmtree(state / "hive", ignore_errors=True)
    return 0


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        return probe.connect_ex((host, port)) == 0


def serve_session(project, target, state: Path):
    """The target's SparkSession, with every JDBC connection sharing it and Spark's own
    warehouse folder (tables a client creates with CREATE TABLE) under `state`."""
    from pyspark.sql import SparkSession

    from .spark_session import create_session

    settings = {**target.spark, SINGLE_SESSION: "true",
                "spark.sql.warehouse.dir": str((state / "spark-warehouse").resolve())}
    active = SparkSession.getActiveSession()
    if active is not None and active.conf.get(SINGLE_SESSION, "false") != "true":
        active.stop()  # started earlier in this process (to read a URI warehouse): static settings differ
    spark = create_session(target.master, app_name=f"{project.name}-serve", settings=settings)
    if spark.conf.get(SINGLE_SESSION, "false") != "true":
        raise ProjectError(f"the SparkSession of this process was started without {SINGLE_SESSION}=true, "
                           "so JDBC clients would not see the tables; run `serve` in its own process")
    return spark


def start_thrift_server(spark, host: str, port: int, state: Path):
    """Start Spark's Thrift JDBC/ODBC server on `spark` (the JVM object; `.stop()` stops it)."""
    state = state.resolve()
    hive = state / "hive"
    for folder in ("scratch", "resources", "operation_logs"):
        (hive / folder).mkdir(parents=True, exist_ok=True)
    jvm = spark._jvm
    # Derby (the Thrift server's in-memory execution metastore) writes derby.log to the working
    # directory unless told otherwise. (Setting derby.system.home instead breaks the in-memory database.)
    jvm.java.lang.System.setProperty("derby.stream.error.file", str(state / "derby.log"))
    # The server reads its Hive settings from the session's configuration.
    for key, value in {
        "hive.server2.thrift.bind.host": host,
        "hive.server2.thrift.port": str(port),
        "hive.server2.transport.mode": "binary",
        "hive.exec.local.scratchdir": str(hive / "scratch"),
        "hive.exec.scratchdir": str(hive / "scratchdir"),
        "hive.downloaded.resources.dir": str(hive / "resources" / "${hive.session.id}"),
        "hive.querylog.location": str(hive / "querylog"),
        "hive.server2.logging.operation.log.location": str(hive / "operation_logs"),
    }.items():
        spark.conf.set(key, value)
    try:
        server = jvm.org.apache.spark.sql.hive.thriftserver.HiveThriftServer2.startWithContext(
            spark._jsparkSession.sqlContext())
    except Exception as exc:
        raise ProjectError(f"Spark's Thrift server did not start on {host}:{port}: "
                           f"{str(exc).strip().splitlines()[0]}") from None
    if not _wait_for_port(host, port, timeout=30.0):
        server.stop()
        raise ProjectError(f"Spark's Thrift server did not open {host}:{port} (is the port taken?)")
    return server


def _wait_for_port(host: str, port: int, timeout: float) -> bool:
    stop = threading.Event()
    for _ in range(int(timeout / 0.2)):
        if port_in_use(host, port):
            return True
        stop.wait(0.2)
    return False


def banner(project, target, registered: list[str], port: int) -> str:
    import udfs

    url = f"jdbc:hive2://{HOST}:{port}/default"
    beeline = spark_bin("beeline")
    lines = [
        f"SQL endpoint for project '{project.name}' (target '{target.name}'): {len(registered)} tables and "
        f"views, {len(udfs.function_names())} image functions.",
        f"  JDBC URL   {url}   (Hive JDBC driver; no user or password)",
        f"  beeline    {beeline} -u {url} -e \"show tables\"",
        f"  Python     pyhive: hive.connect('{HOST}', port={port}).cursor()",
        "Tables switch to new versions when a build publishes them. Ctrl-C stops the server.",
    ]
    if not registered:
        lines.insert(1, "  (nothing is built yet: run `python runner.py build`; tables appear when it finishes)")
    return "\n".join(lines)


def spark_bin(name: str) -> str:
    """A script of the Spark installation PySpark uses (pip's wheel ships bin/beeline)."""
    from pyspark.find_spark_home import _find_spark_home

    return str(Path(_find_spark_home()) / "bin" / name)


def refresh(spark, warehouse: Warehouse, seen: dict) -> None:
    """Re-register the tables if a build changed the catalog since `seen` (updated in place)."""
    try:
        catalog = warehouse.catalog()
        if catalog == seen:
            return
        for name in set(seen) - set(catalog):
            spark.catalog.dropTempView(name)
        names = register_warehouse(spark, warehouse)
    except Exception as exc:  # a catalog caught mid-write on an object store, a network error: next time
        print(f"Warning: could not reload the warehouse catalog: {str(exc).strip().splitlines()[0]}", flush=True)
        return
    seen.clear()
    seen.update(catalog)
    print(f"Reloaded {len(names)} tables and views: a build published new versions.", flush=True)


def wait_for_stop(tick, every: float = REFRESH_SECONDS) -> None:
    """Call `tick` every `every` seconds until SIGINT (Ctrl-C) or SIGTERM."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():  # no signal handlers here
        try:
            while not stop.wait(every):
                tick()
        except KeyboardInterrupt:
            pass
        return
    signals = [signal.SIGINT, signal.SIGTERM]
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in signals}
    try:
        while not stop.wait(every):
            tick()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
