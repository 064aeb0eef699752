"""Create the SparkSession a build or a query runs on, with the project's functions registered."""
from __future__ import annotations

import contextlib
import glob
import hashlib
import ipaddress
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from .connect import connect_session, is_connect_url
from .errors import ProjectError
from .parquet_rows import ROW_GROUP_BYTES

LOG4J_CONFIG = Path(__file__).with_name("log4j2.properties").as_uri()
LOOPBACK = "127.0.0.1"
DAEMON_MODULE = "image_data_daemon"  # imageprep/python_daemon/image_data_daemon.py
DAEMON_FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "python_daemon")

# Settings the local target uses unless project.yml overrides them, chosen by measuring whole
# builds on 2 cores: image rows are large (a 224x224 image is 150 kB, its float32 tensor 600 kB),
# files are small (about 50 kB), and start-up is paid by every command. The measurements behind
# them are in bench/README.md, "The local target's Spark settings".
LOCAL_DEFAULTS = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "8",
    # Arrow batches of image rows: 16 rows of 750 kB are 12 MB per batch and per worker.
    "spark.sql.execution.arrow.maxRecordsPerBatch": "16",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
    # Little stays live (rows stream through), but ParallelGC grows the heap towards its maximum
    # over a long build, so the maximum sets the peak memory. 512m kept the example build on 8000
    # images under 1.5 GB (all processes). Raise it in project.yml for bigger images.
    "spark.driver.memory": "512m",
    # Rows per vectorized Parquet batch, used only when the vectorized reader is turned back on
    # (below). A batch outlives young collections and is promoted, so small batches mean less GC;
    # Spark's default of 4096 rows of 600 kB tensors is 2.4 GB and ran the heap out of memory.
    "spark.sql.parquet.columnarReaderBatchSize": "16",
    # Row by row, each image value lives only as long as its row, not its batch: image tables read
    # back faster, with a smaller heap. Narrow tables scan about half as fast; a project of mostly
    # narrow tables can turn the vectorized reader back on in project.yml.
    "spark.sql.parquet.enableVectorizedReader": "false",
    # On small machines the JVM's optimizing JIT competes with the Python workers for cores
    # (C1 only); ParallelGC has no concurrent marking threads and no "humongous" regions
    # (G1 allocates every array over half a region, e.g. a 600 kB tensor, out of band); a
    # quarter of the heap young (NewRatio=3) keeps short-lived image batches from being promoted.
    # Bytecode verification stays on: the class data sharing archive below already saves
    # verifying Spark's classes again at each start.
    # C1 alone gets a 48 MB code cache by default, which a build of the example project fills with
    # Spark's generated code: the JIT then stops and a query can fail ("Out of space in CodeCache
    # for method handle intrinsic"). The cache is reserved address space, committed as it fills.
    "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=240m "
                                     "-XX:+UseParallelGC -XX:NewRatio=3 "
                                     f"-Dlog4j.configurationFile={LOG4J_CONFIG}",
    # Partitions of about 16 MB of file bytes. Spark counts each file as at least
    # openCostInBytes (default 4 MB): with 50 kB images that made 4 files per task, 500 tasks
    # for 2000 images, each paying task and Python worker set-up. (At most four partitions per
    # core: see defaults_for.)
    "spark.sql.files.maxPartitionBytes": "16m",
    "spark.sql.files.openCostInBytes": "64k",
    # List folders on the driver: above 32 sub-folders (one per class) Spark lists them with a
    # job of its own, about 1 s on a local disk.
    "spark.sql.sources.parallelPartitionDiscovery.threshold": "10000",
    # Parquet checks page and row-group sizes only every 100 rows by default: 100 image rows are
    # a 75 MB page, buffered on the heap and again in the compressor's off-heap buffers.
    "spark.hadoop.parquet.page.size.row.check.min": "10",
    # Row groups of 2 MB, about 14 images of 224x224: a merge or a deletion copies the row groups
    # that lose no row as bytes (parquet_splice), so a group is what one deleted row costs to
    # decode and write again. Small tables stay one group.
    "spark.hadoop.parquet.block.size": str(ROW_GROUP_BYTES),
    # No dictionary encoding for the image columns: every row group starts each column with a
    # dictionary, which hashes whole values (a 600 kB tensor) before giving up on them: a fifth
    # of the JVM's sampled CPU in a profile. Other columns keep it.
    **{f"spark.hadoop.parquet.enable.dictionary#{column}": "false"
       for column in ("image.data", "pixels", "tensor", "content")},
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
    "spark.sql.parquet.columnarReaderBatchSize",
    "spark.sql.parquet.enableVectorizedReader",
    "spark.sql.sources.partitionOverwriteMode",
)


def defaults_for(master: str) -> dict[str, str]:
    """The settings a session on `master` (or a Spark Connect URL) starts from, before the target's own."""
    if is_connect_url(master):
        # A Connect client sets session settings only: those of the cluster defaults that are SQL
        # settings, and Parquet's writer settings (given to the server's writers as session settings).
        return {**{key: LOCAL_DEFAULTS[key] for key in CLUSTER_DEFAULT_KEYS if key.startswith("spark.sql.")},
                **{key: value for key, value in LOCAL_DEFAULTS.items() if key.startswith("spark.hadoop.parquet.")}}
    if master.startswith("local"):
        # A local session serves no other machine: its driver (RPC and block manager) listens on
        # loopback only, where Spark's default is this machine's network address. At most about
        # four scan partitions per core: 16 MB splits of an 8000-image table made 75-110 tasks, and
        # as many files, which every later query opens again.
        return {**LOCAL_DEFAULTS, "spark.sql.files.maxPartitionNum": str(4 * _local_cores(master)),
                "spark.driver.bindAddress": LOOPBACK, "spark.driver.host": LOOPBACK}
    return {key: LOCAL_DEFAULTS[key] for key in CLUSTER_DEFAULT_KEYS if key in LOCAL_DEFAULTS}


def _local_cores(master: str) -> int:
    """Cores of a local master: `local[N]` gives N; `local`, `local[*]` and the rest this machine's."""
    inside = master[len("local["):-1] if master.startswith("local[") and master.endswith("]") else ""
    number = inside.split(",")[0].strip()
    return int(number) if number.isdigit() and int(number) > 0 else (os.cpu_count() or 1)


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
    """Start (or reuse) the process's SparkSession with `settings` on top of the defaults for `master`.

    `master` is a Spark master URL (local[*], spark://, yarn, k8s://) or a Spark Connect URL
    (sc://host:port, a target's `remote`): then the session is a Connect client and no JVM starts here."""
    if is_connect_url(master):
        spark = connect_session(master, {**defaults_for(master), **(settings or {})})
    else:
        spark = _classic_session(master, app_name, settings)
    # PySpark logs every rejected query as a long JSON record; the runner reports it itself.
    logging.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL)
    if register_functions:
        import udfs

        udfs.register_all(spark)
    return spark


def _classic_session(master: str, app_name: str, settings: dict | None):
    """The process's classic SparkSession (a JVM driver here), started with `settings`."""
    require_java()
    from pyspark.sql import SparkSession

    conf = defaults_for(master)
    if master.startswith("local"):
        if "spark.driver.extraJavaOptions" not in (settings or {}):
            conf["spark.driver.extraJavaOptions"] += " " + class_data_sharing_options()
        _bound_native_memory()
    # Tables live in the project's warehouse; Spark's own default would leave an empty
    # spark-warehouse/ folder wherever the command was run.
    conf["spark.sql.warehouse.dir"] = os.path.join(tempfile.gettempdir(), "spark-image-data", "spark-warehouse")
    conf.update({k: str(v) for k, v in (settings or {}).items()})
    if master.startswith("local"):
        _start_workers_on_compiled_pyspark(conf)
    _python_for_executors(conf.get("spark.pyspark.python"))
    builder = SparkSession.builder.master(master).appName(app_name)
    with _ui_on_loopback(master, conf), _daemon_on_jvm_python_path(conf):
        for key, value in conf.items():
            builder = builder.config(key, value)
        spark = builder.getOrCreate()
    _note_class_path(spark, conf)
    spark.sparkContext.setLogLevel("ERROR")
    return spark


@contextlib.contextmanager
def _ui_on_loopback(master: str, conf: dict):
    """Keep a local session's web UI (when a target enables it) on loopback.

    The UI listens on the address in SPARK_LOCAL_IP, an environment variable the JVM reads, and on
    every address without it; no setting changes that. So the JVM is started with it; a JVM that
    already runs without it (started earlier in this process) gets no UI."""
    from pyspark import SparkContext

    if not master.startswith("local"):
        yield
        return
    if SparkContext._gateway is not None:
        if not _is_loopback(SparkContext._jvm.java.lang.System.getenv("SPARK_LOCAL_IP")):
            conf["spark.ui.enabled"] = "false"
        yield
        return
    if "SPARK_LOCAL_IP" in os.environ:  # the user's own choice, for the UI only
        yield
        return
    os.environ["SPARK_LOCAL_IP"] = LOOPBACK  # read when the JVM starts, in getOrCreate
    try:
        yield
    finally:
        os.environ.pop("SPARK_LOCAL_IP", None)


def _is_loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:  # a host name
        return address == "localhost"


def _start_workers_on_compiled_pyspark(conf: dict) -> None:
    """Start the Python workers on the installed pyspark's compiled modules.

    See `imageprep/python_daemon/image_data_daemon.py`: otherwise each worker compiles pyspark
    from Spark's zip, about 1 CPU second per worker at the start of every command. A daemon
    module of the project's own is left alone; a PYTHONPATH of its own keeps its entries."""
    if "spark.python.daemon.module" in conf:
        return
    conf["spark.python.daemon.module"] = DAEMON_MODULE
    user_path = conf.get("spark.executorEnv.PYTHONPATH")
    conf["spark.executorEnv.PYTHONPATH"] = DAEMON_FOLDER + (os.pathsep + user_path if user_path else "")


@contextlib.contextmanager
def _daemon_on_jvm_python_path(conf: dict):
    """Let every Python worker of a JVM started here find our daemon module, not only those of this
    process's own functions: a Spark Connect session's functions (a Connect server in this driver,
    as `serve --connect` and the tests start) carry no spark.executorEnv, and their workers' path
    is Spark's plus the JVM's own PYTHONPATH, read when the JVM starts."""
    from pyspark import SparkContext

    if conf.get("spark.python.daemon.module") != DAEMON_MODULE or SparkContext._gateway is not None:
        yield
        return
    previous = os.environ.get("PYTHONPATH")
    with environment_variable("PYTHONPATH", DAEMON_FOLDER + (os.pathsep + previous if previous else "")):
        yield


@contextlib.contextmanager
def environment_variable(name: str, value: str):
    """The environment variable `name` set to `value` for the block, then as it was."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


# --------------------------------------------------------------------------- class data sharing
#
# Starting Spark loads about 25,000 classes from some 250 jars: 2-3 s of every command's
# start-up on 2 cores (bench/README.md). Java 17 can keep the parsed and verified classes of one
# run in a class data sharing archive and map it into later runs (-XX:SharedArchiveFile). The
# first local session on a machine writes the archive when its JVM exits
# (-XX:ArchiveClassesAtExit), once: that session starts about 5 s slower and its first job 2 s
# slower, and its JVM goes on writing the archive for about 17 s of one core after the command has
# returned (a caller that reads the command's output through a pipe waits for it); each later
# session maps the archive. A session that starts while another's archive is still being
# written writes one too. The archive is
# valid for one JVM and one set of jars, hence the key; a damaged or foreign archive is ignored
# by the JVM (-Xshare:auto, the default) and rewritten. IMAGEPREP_CDS=0 turns this off.

CDS_LOG_OFF = "-Xlog:cds=off -Xlog:cds+dynamic=off"


def class_data_sharing_options(folder: str | None = None) -> str:
    """JVM options that use this machine's class data sharing archive, or write it if missing."""
    if os.environ.get("IMAGEPREP_CDS", "1") == "0":
        return ""
    try:
        folder = folder or os.path.join(tempfile.gettempdir(), "spark-image-data", "cds")
        os.makedirs(folder, exist_ok=True)
        archive = os.path.join(folder, f"spark-{_cds_key()}.jsa")
        _adopt_finished_archives(archive)
        if os.path.exists(archive):
            return f"-XX:SharedArchiveFile={archive} {CDS_LOG_OFF}"
        # Written under this process's id, checked and renamed by a later session once this one
        # is gone: a JVM that maps a truncated archive dies of SIGBUS, so none may see a part.
        return f"-XX:ArchiveClassesAtExit={archive}.{os.getpid()}.part -XX:+VerifySharedSpaces {CDS_LOG_OFF}"
    except OSError:
        return ""


def _note_class_path(spark, conf: dict) -> None:
    """Beside an archive being written, the class path it is for (checking it needs the same one)."""
    options = conf.get("spark.driver.extraJavaOptions", "")
    for option in options.split():
        if option.startswith("-XX:ArchiveClassesAtExit="):
            part = option.split("=", 1)[1]
            try:
                Path(part + ".cp").write_text(spark._jvm.java.lang.System.getProperty("java.class.path"))
            except Exception:  # noqa: BLE001 - the archive is an optimisation; never fail a session for it
                pass


def _cds_key() -> str:
    """What an archive depends on: the Java runtime and Spark's jars (names and sizes)."""
    import pyspark

    digest = hashlib.sha256()
    java = os.path.join(os.environ["JAVA_HOME"], "bin", "java") if os.environ.get("JAVA_HOME") else shutil.which("java")
    java = os.path.realpath(java or "java")
    digest.update(java.encode())
    if os.path.exists(java):
        digest.update(str(os.stat(java).st_mtime_ns).encode())
    for jar in sorted(glob.glob(os.path.join(os.path.dirname(pyspark.__file__), "jars", "*.jar"))):
        digest.update(f"{os.path.basename(jar)}:{os.path.getsize(jar)}".encode())
    return digest.hexdigest()[:16]


def _adopt_finished_archives(archive: str) -> None:
    """Rename a complete archive written by a session that has ended to ``archive``; delete the rest."""
    for part in glob.glob(archive + ".*.part"):
        pid = part[len(archive) + 1:-len(".part")]
        if pid.isdigit() and _alive(int(pid)):
            continue
        if time.time() - os.path.getmtime(part) < 30:  # its JVM, which outlives the session, may still write it
            continue
        class_path = Path(part + ".cp")
        if not os.path.exists(archive) and class_path.exists() and _archive_is_sound(part, class_path.read_text()):
            os.replace(part, archive)
        else:
            os.remove(part)
        class_path.unlink(missing_ok=True)
    for class_path in glob.glob(archive + ".*.part.cp"):  # of sessions whose JVM wrote no archive
        pid = class_path[len(archive) + 1:-len(".part.cp")]
        if not os.path.exists(class_path[:-len(".cp")]) and not (pid.isdigit() and _alive(int(pid))):
            os.remove(class_path)


def _archive_is_sound(part: str, class_path: str) -> bool:
    """Whether a JVM maps the archive and its checksums hold (a truncated one fails here, not in a build)."""
    import subprocess

    java = os.path.join(os.environ["JAVA_HOME"], "bin", "java") if os.environ.get("JAVA_HOME") else "java"
    try:
        done = subprocess.run([java, "-cp", class_path, f"-XX:SharedArchiveFile={part}", "-Xshare:on",
                               "-XX:+VerifySharedSpaces", *CDS_LOG_OFF.split(), "-version"],
                              capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _bound_native_memory() -> None:
    """Stop glibc from keeping freed buffers of the JVM and its Python workers (before the JVM starts).

    The JVM runs some 35 threads and glibc gives threads arenas of their own (up to 8 per core);
    Arrow and Parquet buffers of image rows (MBs each) freed into them are kept, and the dynamic
    mmap threshold climbs until such buffers are no longer mmapped and returned at all: the JVM's
    resident size then varies by up to twice between identical builds (bench/README.md).
    The Python workers, started by the JVM, inherit the same settings.
    """
    from pyspark import SparkContext

    if SparkContext._active_spark_context is None:
        os.environ.setdefault("MALLOC_ARENA_MAX", "2")
        os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(1024 * 1024))


def _python_for_executors(python: str | None) -> None:
    """Honour `spark.pyspark.python` as spark-submit does: a driver started from Python takes the
    executors' Python from PYSPARK_PYTHON only, read when the SparkContext starts."""
    from pyspark import SparkContext

    if python and SparkContext._active_spark_context is None:
        os.environ["PYSPARK_PYTHON"] = python
