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

The endpoint is read-only unless started with --allow-writes: clients get a session whose
statements are checked (imageprep/endpoint_guard.py). It listens on localhost unless --host names
another address; then HiveServer2 must check users (`hive.server2.authentication` in the target's
spark settings: LDAP, KERBEROS, CUSTOM or PAM), or it does not start.

`serve --connect` starts Spark Connect in the driver instead (imageprep/connect_server.py), for
`pyspark --remote` and other Connect clients: each client has a session of its own, with the
tables as permanent views and the image functions built in. Connect has no read-only mode, so
another address than localhost needs a token. Both kinds need a target with a `master`: a target
on a Connect server has no driver here to start them in.
"""
from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import socket
import threading
from functools import partial
from pathlib import Path
from typing import Callable

from .catalog import register_warehouse
from .connect_server import (DEFAULT_PORT, LOOPBACK, TOKEN_SETTING, publish_warehouse, share_functions, start_server,
                             stop_server)
from .errors import ProjectError
from .warehouse import Warehouse

HOST = "localhost"  # without --host: the loopback interface only, where no login is needed
THRIFT_PORT = 10000
SINGLE_SESSION = "spark.sql.hive.thriftServer.singleSession"
REFRESH_SECONDS = 2.0
AUTHENTICATION = "hive.server2.authentication"
# HiveServer2's mechanisms that check a user (NONE and NOSASL let anyone in).
AUTH_METHODS = ("LDAP", "KERBEROS", "CUSTOM", "PAM")


def serve_command(args, project, target) -> int:
    """Serve the project's built tables until Ctrl-C or SIGTERM; returns the exit code (0)."""
    connect = bool(getattr(args, "connect", False))
    port = int(args.port if args.port is not None else (DEFAULT_PORT if connect else THRIFT_PORT))
    if not 0 < port < 65536:
        raise ProjectError(f"--port {port} is not a TCP port (1-65535)")
    if target.remote is not None:
        raise ProjectError(f"target '{target.name}' runs on a Spark Connect server ({target.shown_location}): "
                           "`serve` starts its server inside a Spark driver on this machine, which a Connect "
                           "client has not; serve with a target that has a `master` (local[*] or a cluster), "
                           "or let analysts connect to that Connect server and open the tables themselves")
    if connect:
        return serve_connect(args, project, target, port)
    host = getattr(args, "host", None) or HOST
    allow_writes = bool(getattr(args, "allow_writes", False))
    auth = authentication(target.spark)
    if auth is None and not is_loopback(host):
        raise ProjectError(f"--host {host} would let anyone on the network run SQL as this user: set "
                           f"{AUTHENTICATION} (LDAP, KERBEROS, CUSTOM or PAM) and its settings under the "
                           "target's `spark:` in project.yml (see the README's SQL endpoint section), "
                           "or serve on localhost and tunnel the port")
    if port_in_use(host, port):
        raise ProjectError(f"port {port} on {host} is already in use; pick another with --port")
    state = project.target_path / "serve"
    root = serve_session(project, target, state)
    try:
        server_settings = thrift_settings(host, port, state, target.spark)
        spark = root if allow_writes else read_only(root, server_settings)
        warehouse = Warehouse.for_target(project, target, spark)
        catalog = warehouse.catalog()
        registered = register_warehouse(spark, warehouse)
        server = start_thrift_server(spark, server_settings)
        try:
            print(banner(project, target, registered, host, port, auth, allow_writes), flush=True)
            wait_for_stop(lambda: refresh(warehouse, catalog, partial(_register_again, spark, warehouse)))
            print("Stopping the SQL endpoint.", flush=True)
        finally:
            server.stop()
    finally:
        root.stop()
        shutil.rmtree(state / "hive", ignore_errors=True)
    return 0


def serve_connect(args, project, target, port: int) -> int:
    """`serve --connect`: a Spark Connect endpoint in this process's driver, until Ctrl-C or SIGTERM.

    Each client gets a session of its own that sees the project's tables and views (permanent views
    in the driver's in-memory catalog, switched when a build publishes) and the image functions."""
    import udfs

    from .spark_session import create_session

    host = getattr(args, "host", None) or LOOPBACK
    token = os.environ.get("SPARK_CONNECT_AUTHENTICATE_TOKEN") or target.spark.get(TOKEN_SETTING)
    if not token and not is_loopback(host):
        raise ProjectError(f"--host {host} would let anyone on the network run SQL and Python code as this user: "
                           f"set a token (environment variable SPARK_CONNECT_AUTHENTICATE_TOKEN, or {TOKEN_SETTING} "
                           "under the target's `spark:`), or serve on localhost and tunnel the port")
    if port_in_use(host, port):
        raise ProjectError(f"port {port} on {host} is already in use; pick another with --port")
    state = project.target_path / "serve"
    settings = {**target.spark, "spark.sql.warehouse.dir": str((state / "spark-warehouse").resolve())}
    root = create_session(target.master, app_name=f"{project.name}-serve", settings=settings)
    try:
        share_functions(root, udfs.function_names())
        views = root.newSession()  # a session with the shared functions, as clients' are
        warehouse = Warehouse.for_target(project, target, root)
        published = warehouse.catalog()
        names = publish_warehouse(views, warehouse, published)
        start_server(root, host, port, token)
        try:
            print(connect_banner(project, target, names, host, port, bool(token)), flush=True)
            wait_for_stop(lambda: refresh(warehouse, published, partial(publish_warehouse, views, warehouse)))
            print("Stopping the Spark Connect endpoint.", flush=True)
        finally:
            stop_server(root)
    finally:
        root.stop()
    return 0


def connect_banner(project, target, names: list[str], host: str, port: int, token: bool) -> str:
    import udfs

    shown = socket.gethostname() if host in ("0.0.0.0", "::") else ("localhost" if host == LOOPBACK else host)
    url = f"sc://{shown}:{port}" + ("/;token=TOKEN" if token else "")
    lines = [
        f"Spark Connect endpoint for project '{project.name}' (target '{target.name}'): {len(names)} tables and "
        f"views, {len(udfs.function_names())} image functions.",
        f"  URL        {url}",
        f"  pyspark    pyspark --remote \"{url}\"",
        f"  Python     SparkSession.builder.remote(\"{url}\").getOrCreate().sql(\"show views\").show()",
        "Clients can run any SQL and Python code as this user (Spark Connect has no read-only mode).",
        "Tables switch to new versions when a build publishes them. Ctrl-C stops the server.",
    ]
    if not names:
        lines.insert(1, "  (nothing is built yet: run `python runner.py build`; tables appear when it finishes)")
    return "\n".join(lines)


def authentication(settings: dict) -> str | None:
    """The HiveServer2 mechanism the target's spark settings configure to check users, or None."""
    value = settings.get(AUTHENTICATION, settings.get(f"spark.hadoop.{AUTHENTICATION}", "NONE"))
    return str(value).upper() if str(value).upper() in AUTH_METHODS else None


def is_loopback(host: str) -> bool:
    """Whether every address `host` stands for is on this machine's loopback interface."""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        raise ProjectError(f"--host {host} is not an address or a known host name") from None
    return all(ipaddress.ip_address(address.split("%")[0]).is_loopback for address in addresses)


def read_only(spark, server_settings: dict[str, str]):
    """A session of `spark`'s where statements that write, run programs or call JVM methods are
    refused, with the image functions and the Thrift server's settings (set before checks start,
    so they are not taken for a client's)."""
    import udfs

    from .endpoint_guard import read_only_session

    def prepare(session):
        udfs.register_all(session, ship_code=False)
        for key, value in server_settings.items():
            session.conf.set(key, value)

    return read_only_session(spark, prepare)


def port_in_use(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


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


def thrift_settings(host: str, port: int, state: Path, target_settings: dict) -> dict[str, str]:
    """The Hive settings the Thrift server reads from its session: address, folders under `state`,
    and the target's authentication settings (`spark.hadoop.` or not)."""
    hive = state.resolve() / "hive"
    return {
        **{name: str(value) for name, value in
           ((key.removeprefix("spark.hadoop."), value) for key, value in target_settings.items())
           if is_authentication_setting(name)},
        "hive.server2.thrift.bind.host": host,
        "hive.server2.thrift.port": str(port),
        "hive.server2.transport.mode": "binary",
        "hive.exec.local.scratchdir": str(hive / "scratch"),
        "hive.exec.scratchdir": str(hive / "scratchdir"),
        "hive.downloaded.resources.dir": str(hive / "resources" / "${hive.session.id}"),
        "hive.querylog.location": str(hive / "querylog"),
        "hive.server2.logging.operation.log.location": str(hive / "operation_logs"),
    }


def is_authentication_setting(name: str) -> bool:
    return name.startswith("hive.server2.authentication") or name == "hive.server2.custom.authentication.class"


def start_thrift_server(spark, server_settings: dict[str, str]):
    """Start Spark's Thrift JDBC/ODBC server on `spark` (the JVM object; `.stop()` stops it)."""
    hive = Path(server_settings["hive.exec.local.scratchdir"]).parent
    for folder in ("scratch", "resources", "operation_logs"):
        (hive / folder).mkdir(parents=True, exist_ok=True)
    jvm = spark._jvm
    # Derby (the Thrift server's in-memory execution metastore) writes derby.log to the working
    # directory unless told otherwise. (Setting derby.system.home instead breaks the in-memory database.)
    jvm.java.lang.System.setProperty("derby.stream.error.file", str(hive.parent / "derby.log"))
    for key, value in server_settings.items():  # the server reads its Hive settings from the session
        spark.conf.set(key, value)
        # ... but the LDAP and CUSTOM authenticators read theirs from a HiveConf of their own
        # (system properties and hive-site.xml).
        if is_authentication_setting(key):
            jvm.java.lang.System.setProperty(key, value)
    host, port = server_settings["hive.server2.thrift.bind.host"], int(server_settings["hive.server2.thrift.port"])
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


def banner(project, target, registered: list[str], host: str, port: int, auth: str | None,
           allow_writes: bool) -> str:
    import udfs

    shown = socket.gethostname() if host in ("0.0.0.0", "::") else host
    url = f"jdbc:hive2://{shown}:{port}/default"
    beeline = spark_bin("beeline")
    login = f"users checked by {auth}" if auth else "no user or password"
    password = auth in ("LDAP", "CUSTOM", "PAM")
    plain = "CUSTOM" if auth == "PAM" else auth  # PyHive sends a password the same way for all three
    credentials = f", username='USER', password='PASSWORD', auth='{plain}'" if password else ""
    lines = [
        f"SQL endpoint for project '{project.name}' (target '{target.name}'): {len(registered)} tables and "
        f"views, {len(udfs.function_names())} image functions.",
        f"  JDBC URL   {url}   (Hive JDBC driver; {login})",
        f"  beeline    {beeline} -u {url} {'-n USER -p PASSWORD ' if password else ''}-e \"show tables\"",
        f"  Python     pyhive: hive.connect('{shown}', port={port}{credentials}).cursor()",
        "Writes are allowed (--allow-writes): clients can write wherever this process can." if allow_writes else
        "Read-only: statements that write, change tables, add jars or call JVM methods are refused.",
        "Tables switch to new versions when a build publishes them. Ctrl-C stops the server.",
    ]
    if not registered:
        lines.insert(1, "  (nothing is built yet: run `python runner.py build`; tables appear when it finishes)")
    return "\n".join(lines)


def spark_bin(name: str) -> str:
    """A script of the Spark installation PySpark uses (pip's wheel ships bin/beeline)."""
    from pyspark.find_spark_home import _find_spark_home

    return str(Path(_find_spark_home()) / "bin" / name)


def refresh(warehouse: Warehouse, seen: dict, reload: Callable[[dict, dict], list[str]]) -> None:
    """If a build changed the catalog since `seen` (updated in place), make the endpoint's tables
    and views those of the new one: `reload(catalog, seen)` returns their names."""
    try:
        catalog = warehouse.catalog()
        if catalog == seen:
            return
        names = reload(catalog, seen)
    except Exception as exc:  # a catalog caught mid-write on an object store, a network error: next time
        print(f"Warning: could not reload the warehouse catalog: {str(exc).strip().splitlines()[0]}", flush=True)
        return
    seen.clear()
    seen.update(catalog)
    print(f"Reloaded {len(names)} tables and views: a build published new versions.", flush=True)


def _register_again(spark, warehouse: Warehouse, catalog: dict, seen: dict) -> list[str]:
    """The Thrift endpoint's reload: names gone from the catalog dropped, every entry registered."""
    for name in set(seen) - set(catalog):
        spark.catalog.dropTempView(name)
    return register_warehouse(spark, warehouse)


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
