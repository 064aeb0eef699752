"""Start a local session's Python workers while a build's first nodes run.

The first Spark task that calls one of the project's Python functions (udfs/) waits for Spark to
start a Python worker, for the worker to import NumPy, PyArrow, Pillow and the kernels, and for
the JVM to load its Arrow classes: about 2 s on 2 cores (bench/README.md), paid by the first
model that decodes images, however few it decodes. So when a build will call such a function,
a local session runs one at once on a tiny image, in a Spark job of its own with one task per
core, beside the build's first nodes (which read the folder and hash new files and leave the
cores partly idle). Spark keeps the idle workers, imports and all, for the next tasks
(spark.python.worker.reuse).

Only local sessions: a cluster's executors are elsewhere and many, and a Spark Connect server's
workers are the server's.
"""
from __future__ import annotations

import io
import logging
import re
import threading
from typing import Iterable

log = logging.getLogger(__name__)

JOB_LABEL = "start of the Python workers"
# Each SparkContext's workers are started once: they stay for the context's later builds.
_started_for: set[str] = set()


def calls_python_function(sql_texts: Iterable[str]) -> bool:
    """Whether any of the SQL texts calls one of the catalog's Python-backed functions."""
    from udfs import FUNCTIONS

    names = [spec.name for spec in FUNCTIONS if spec.wrapper is not None]  # not SQL-bodied
    call = re.compile(r"\b(?:" + "|".join(map(re.escape, names)) + r")\s*\(", re.IGNORECASE)
    return any(call.search(sql) for sql in sql_texts if sql)


class PythonWarmup:
    """The warm-up job, run in a thread of its own; `close()` waits for it to end."""

    def __init__(self, spark):
        self._thread = threading.Thread(target=_run_quietly, args=(spark,), name="python-warmup", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 60.0) -> None:
        self._thread.join(timeout)


def start(spark, sql_texts: Iterable[str]) -> PythonWarmup | None:
    """Start the Python workers of `spark` in the background if it is a local session that has not
    started them yet and the SQL calls a Python function; None when there is nothing to start."""
    from .connect import is_connect

    if is_connect(spark) or not spark.sparkContext.master.startswith("local"):
        return None
    context = spark.sparkContext.applicationId
    if context in _started_for or not calls_python_function(sql_texts):
        return None
    _started_for.add(context)
    return PythonWarmup(spark)


def warmup_sql(workers: int) -> str:
    """One call of `decode_image` per task, `workers` tasks at once: each starts a worker of its own."""
    from PIL import Image

    jpeg = io.BytesIO()
    Image.new("RGB", (16, 16), (96, 128, 160)).save(jpeg, "JPEG")
    return (f"SELECT decode_image(X'{jpeg.getvalue().hex()}', 'python-worker-warm-up').width AS width "
            f"FROM range(0, {workers}, 1, {workers})")


def _run_quietly(spark) -> None:
    from .connect import label_jobs, use_scheduler_pool

    try:
        use_scheduler_pool(spark, "warm-up")
        label_jobs(spark, JOB_LABEL)
        spark.sql(warmup_sql(spark.sparkContext.defaultParallelism)).collect()
    except Exception:  # noqa: BLE001 - only a head start: the build's own tasks start workers anyway
        log.debug("starting the Python workers ahead failed", exc_info=True)
