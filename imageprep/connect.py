"""Spark Connect sessions: a target with `remote: sc://host:port` runs on a Spark Connect server.

Over Spark Connect this process starts no JVM: SQL and DataFrames travel to the server over gRPC,
the image functions are registered through the connection and their code is sent with them as a
session artifact (`udfs.register_all`). Only session settings can be set from here; the rest is
the server's own configuration.

The few calls that differ between a classic session and a Connect one (naming jobs, scheduler
pools) are here too, so the rest of the runner only asks `is_connect(spark)`.
"""
from __future__ import annotations

import os
import socket
import urllib.parse

from udfs import is_connect

from .errors import ProjectError

SCHEME = "sc://"
# The client packages PySpark's `connect` extra installs (pip name: module); PySpark stays as installed.
CLIENT_MODULES = {"grpcio": "grpc", "grpcio-status": "grpc_status", "googleapis-common-protos": "google.rpc",
                  "zstandard": "zstandard"}
# Seconds to wait for the server's port before saying it cannot be reached (the client itself
# retries for minutes).
REACH_TIMEOUT = 10.0

_SESSIONS: dict[str, object] = {}  # by URL: one session per server, as a classic process has one per JVM


def pip_command() -> str:
    """The pip command that installs the Connect client for the installed PySpark."""
    try:
        from importlib.metadata import version

        return f'pip install "pyspark[connect]=={version("pyspark")}"'
    except Exception:  # noqa: BLE001 - PySpark from a Spark distribution, not pip
        return f"pip install {' '.join(CLIENT_MODULES)}"


def require_client() -> None:
    """Fail with the pip command when PySpark's Spark Connect client packages are missing."""
    # Looked up before importing PySpark's client: in a process without a main script (python -c,
    # some embedded interpreters) that import takes missing packages for a doctest run and exits.
    missing = [package for package, module in CLIENT_MODULES.items() if not _installed(module)]
    problem = f"missing {', '.join(missing)}" if missing else None
    if not missing:
        try:
            import pyspark.sql.connect.session  # noqa: F401  (checks the packages' versions on import)
        except ImportError as exc:
            problem = str(exc).strip().splitlines()[0]
    if problem:
        raise ProjectError(f"a `remote` target needs PySpark's Spark Connect client, which is not "
                           f"installed ({problem}): run `{pip_command()}` (or "
                           f"`pip install -r requirements-connect.txt`)")


def _installed(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module blocked in sys.modules
        return False


def is_connect_url(location: str | None) -> bool:
    return bool(location) and str(location).startswith(SCHEME)


def shown_url(url: str) -> str:
    """A Connect URL as progress lines and errors show it: its parameters (a token) left out."""
    base, _, params = url.partition(";")
    return base + (";..." if params else "")


def check_url(url: str) -> str | None:
    """Why `url` is not a Spark Connect URL (sc://host[:port][/;key=value;...]), or None."""
    if not is_connect_url(url):
        return "it must start with sc://"
    parsed = urllib.parse.urlparse("http" + url[2:])
    if not parsed.hostname:
        return "it names no host"
    try:
        parsed.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError:
        return "its port is not a number (parameters follow '/;', as in sc://host:15002/;token=...)"
    if parsed.path not in ("", "/"):  # not shown: it may hold a token written the wrong way
        return "it has a path after the host (parameters follow '/;', as in sc://host:15002/;token=...)"
    if any(len(p.split("=")) != 2 for p in parsed.params.split(";") if parsed.params):
        return "each parameter after ';' must be key=value"
    return None


def connect_session(url: str, settings: dict | None = None):
    """The process's session on the Connect server at `url`, with `settings` set on it.

    `spark.hadoop.X` settings are set as `X`: a Connect session hands its session settings to the
    server's Hadoop configuration, which is how Parquet's writer settings reach the server."""
    problem = check_url(url)
    if problem:
        raise ProjectError(f"{shown_url(url)} is not a Spark Connect URL: {problem}")
    require_client()
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    # pyspark.sql.functions builds Connect columns only in this mode (PySpark's builder.remote()
    # sets it the same way); a process runs on one kind of session.
    os.environ["SPARK_CONNECT_MODE_ENABLED"] = "1"
    spark = _SESSIONS.get(url)
    if spark is None or spark.is_stopped:
        _check_reachable(url)
        spark = ConnectSession.builder.remote(url).create()
        _SESSIONS[url] = spark
    set_session_settings(spark, settings or {})
    return spark


def _check_reachable(url: str) -> None:
    """Fail at once, with the address, when nothing listens there (the client would retry for minutes)."""
    parsed = urllib.parse.urlparse("http" + url[2:])
    port = parsed.port or 15002
    try:
        with socket.create_connection((parsed.hostname, port), timeout=REACH_TIMEOUT):
            return
    except OSError as exc:
        raise ProjectError(f"cannot reach the Spark Connect server at {parsed.hostname}:{port} "
                           f"({exc.strerror or exc}): is it running, and is the `remote` URL right?") from None


def set_session_settings(spark, settings: dict) -> None:
    """Set each setting on the Connect session; those only the server can set are named in one error."""
    refused = []
    for key, value in settings.items():
        name = key.removeprefix("spark.hadoop.")
        try:
            spark.conf.set(name, str(value))
        except Exception as exc:  # CANNOT_MODIFY_CONFIG, CANNOT_MODIFY_STATIC_CONFIG
            refused.append(f"{key} ({str(exc).strip().splitlines()[0]})")
    if refused:
        raise ProjectError("a Spark Connect client can only set session settings; these belong in the "
                           "server's own configuration (its spark-defaults.conf or start-connect-server.sh "
                           "--conf), not under the target's `spark:`:\n  " + "\n  ".join(refused))


def label_jobs(spark, text: str) -> None:
    """Name the Spark jobs this thread starts from now on (the UI shows it)."""
    if is_connect(spark):
        # Tags are per thread, like a job description; a tag may not hold a comma.
        spark.clearTags()
        spark.addTag(text.replace(",", " "))
    else:
        spark.sparkContext.setJobDescription(text)


def use_scheduler_pool(spark, pool: str) -> None:
    """Run this thread's jobs in FAIR scheduler pool `pool`. A Connect client cannot choose a
    pool: the server schedules its sessions' jobs itself."""
    if not is_connect(spark):
        spark.sparkContext.setLocalProperty("spark.scheduler.pool", pool)


class ActionBeside:
    """A Spark action run in a thread of its own, its jobs named `label`, while the calling thread
    goes on with other work (its own Spark jobs run meanwhile): `action(*args)` once; `result()`
    waits for what it returned (or raises what it raised); `close()` waits for it to end."""

    def __init__(self, spark, label: str, action, *args):
        from concurrent.futures import ThreadPoolExecutor

        def labelled():
            label_jobs(spark, label)
            return action(*args)

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="beside")
        self._future = self._pool.submit(labelled)

    def result(self):
        return self._future.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
