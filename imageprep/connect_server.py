"""A Spark Connect server inside this process's classic driver (`serve --connect`, and the tests).

Spark's own Connect service runs on the driver's SparkContext (as `start-connect-server.sh` runs it,
minus a process of its own). Every Connect client gets a session of its own: a new session of the
driver's, which shares its catalog but none of its temporary views or functions. So what clients
should see is put where each new session finds it:

- the image functions are injected as session extensions: each new session registers them among
  its built-in functions (the very UDFs registered on the driver's session, with their code);
- the tables and views are permanent views in the shared in-memory catalog: a table is a view of
  its current version folder, so a build that publishes is one `CREATE OR REPLACE VIEW` per table
  away, and no session keeps a stale file listing.
"""
from __future__ import annotations

from .catalog import create_views_in_rounds
from .errors import ProjectError

LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 15002  # Spark Connect's own default
TOKEN_SETTING = "spark.connect.authenticate.token"


def start_server(spark, host: str = LOOPBACK, port: int = DEFAULT_PORT, token: str | None = None) -> int:
    """Start Spark Connect on `host:port` (port 0: any free one) in `spark`'s driver; returns the port.

    With `token`, clients must send it (sc://host:port/;token=...). One server per driver."""
    jvm = spark._jvm
    context = spark.sparkContext._jsc.sc()
    # The service reads its address from the driver's configuration when it starts.
    conf = context.conf()
    conf.set("spark.connect.grpc.binding.address", host)
    conf.set("spark.connect.grpc.binding.port", str(port))
    conf.set("spark.connect.grpc.port.maxRetries", "0")  # the port asked for, or an error
    if token:
        conf.set(TOKEN_SETTING, token)
    _quiet_client_errors(jvm)
    try:
        jvm.org.apache.spark.sql.connect.service.SparkConnectService.start(context)
    except Exception as exc:  # noqa: BLE001 - py4j hands the JVM's exception over as text
        raise ProjectError(f"Spark Connect did not start on {host}:{port}: "
                           f"{str(exc).strip().splitlines()[0]}") from None
    return _service(jvm).localPort()


def stop_server(spark) -> None:
    """Stop the Connect server of `spark`'s driver (its clients' sessions end)."""
    jvm = spark._jvm
    jvm.org.apache.spark.sql.connect.service.SparkConnectService.stop(jvm.scala.Option.empty(),
                                                                       jvm.scala.Option.empty())


def _service(jvm):
    return getattr(getattr(jvm.org.apache.spark.sql.connect.service, "SparkConnectService$"), "MODULE$")


def _quiet_client_errors(jvm) -> None:
    """A client's rejected query is the client's to report: without this, the driver logs each one
    with its stack trace."""
    level = jvm.org.apache.logging.log4j.Level.OFF
    jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(
        "org.apache.spark.sql.connect.utils.ErrorUtils", level)


def share_functions(spark, names: list[str]) -> list[str]:
    """Make the functions `names`, registered on `spark`, built-in functions of every session the
    driver starts from now on (Connect clients' included); returns the names shared."""
    jvm = spark._jvm
    jsession = spark._jsparkSession
    registry = jsession.sessionState().functionRegistry()
    extensions = jsession.extensions()
    identifiers = registry.listFunction().iterator()
    shared = []
    while identifiers.hasNext():
        identifier = identifiers.next()
        database = identifier.database()
        # The session's own functions: `system.session.<name>` (unqualified before Spark 4.3).
        if identifier.funcName() not in names or (database.isDefined() and database.get() != "session"):
            continue
        builder = registry.lookupFunctionBuilder(identifier).get()
        info = registry.lookupFunction(identifier).get()
        # Injected under its bare name, a function is registered among each new session's built-ins.
        bare = jvm.org.apache.spark.sql.catalyst.FunctionIdentifier(identifier.funcName())
        extensions.injectFunction(jvm.scala.Tuple3(bare, info, builder))
        shared.append(identifier.funcName())
    return sorted(shared)


def publish_warehouse(session, warehouse, catalog: dict, previous: dict | None = None) -> list[str]:
    """The warehouse `catalog`'s tables and views as permanent views every session sees; names
    in `previous` (the catalog published before) and not in `catalog` are dropped. `session` must
    know the shared functions (a session started after share_functions). Returns the names."""
    for name in set(previous or {}) - set(catalog):
        session.sql(f"DROP VIEW IF EXISTS {_quoted(name)}")
    published = []
    for name, entry in sorted(catalog.items()):
        if entry["kind"] == "table" and entry != (previous or {}).get(name):
            folder = str(warehouse.root / entry["version"])
            session.sql(f"CREATE OR REPLACE VIEW {_quoted(name)} AS SELECT * FROM parquet.{_quoted(folder)}")
        if entry["kind"] == "table":
            published.append(name)
    views = {name: entry for name, entry in catalog.items() if entry["kind"] == "view"}
    published += create_views_in_rounds(
        views, lambda name, entry: session.sql(f"CREATE OR REPLACE VIEW {_quoted(name)} AS {entry['sql']}"))
    return sorted(published)


def _quoted(identifier: str) -> str:
    return "`" + identifier.replace("`", "``") + "`"
