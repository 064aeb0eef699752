"""Create the SparkSession a build or a query runs on, with the project's functions registered."""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from .errors import ProjectError

LOG4J_CONFIG = Path(__file__).with_name("log4j2.properties").as_uri()

# Settings the local target uses unless project.yml overrides them. Image rows are large
# (hundreds of kB each), so Arrow batches stay small; the UI and its port are not needed.
LOCAL_DEFAULTS = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "64",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
    "spark.driver.memory": "2g",
    # On small machines the JVM's optimizing JIT competes with the Python workers for cores.
    "spark.driver.extraJavaOptions": f"-XX:TieredStopAtLevel=1 -Dlog4j.configurationFile={LOG4J_CONFIG}",
    "spark.sql.files.maxPartitionBytes": "16m",
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
}


# Of the local defaults, those that shape results or the Python functions' memory rather than
# fit this machine: a cluster target (spark://, yarn, k8s://) gets them too. Its settings in
# project.yml still win; driver memory, the UI and JVM flags are left to the cluster's admin.
CLUSTER_DEFAULT_KEYS = (
    "spark.ui.showConsoleProgress",
    "spark.sql.execution.arrow.maxRecordsPerBatch",
    "spark.sql.execution.arrow.pyspark.enabled",
    "spark.sql.session.timeZone",
    "spark.sql.files.maxPartitionBytes",
    "spark.sql.sources.partitionOverwriteMode",
)


def defaults_for(master: str) -> dict[str, str]:
    """The settings a session on `master` starts from, before the target's own."""
    if master.startswith("local"):
        return dict(LOCAL_DEFAULTS)
    return {key: LOCAL_DEFAULTS[key] for key in CLUSTER_DEFAULT_KEYS if key in LOCAL_DEFAULTS}


def require_java() -> None:
    """Fail with a clear message when no Java runtime can start Spark."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and os.path.exists(os.path.join(java_home, "bin", "java")):
        return
    if shutil.which("java"):
        return
    raise ProjectError(
        "Java was not found: Spark needs a Java 17 (or newer) runtime. "
        "Install one (for example `apt-get install openjdk-17-jre-headless`) "
        "or set JAVA_HOME to its folder, then run the command again."
    )


def create_session(master: str = "local[*]", app_name: str = "spark-image-data",
                   settings: dict | None = None, register_functions: bool = True):
    """Start (or reuse) the process's SparkSession with `settings` on top of the local defaults."""
    require_java()
    from pyspark.sql import SparkSession

    conf = defaults_for(master)
    # Tables live in the project's warehouse; Spark's own default would leave an empty
    # spark-warehouse/ folder wherever the command was run.
    conf["spark.sql.warehouse.dir"] = os.path.join(tempfile.gettempdir(), "spark-image-data", "spark-warehouse")
    conf.update({k: str(v) for k, v in (settings or {}).items()})
    _python_for_executors(conf.get("spark.pyspark.python"))
    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    # PySpark logs every rejected query as a long JSON record; the runner reports it itself.
    logging.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL)
    if register_functions:
        import udfs

        udfs.register_all(spark)
    return spark


def _python_for_executors(python: str | None) -> None:
    """Honour `spark.pyspark.python` as spark-submit does: a driver started from Python takes the
    executors' Python from PYSPARK_PYTHON only, read when the SparkContext starts."""
    from pyspark import SparkContext

    if python and SparkContext._active_spark_context is None:
        os.environ["PYSPARK_PYTHON"] = python
