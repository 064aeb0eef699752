"""Image functions for Spark SQL: decode, resize, normalize, features, augmentation.

Two layers, as torchvision has them: pure kernels in ``udfs.kernels`` (NumPy arrays or
bytes in and out, testable without Spark) and thin Arrow UDF wrappers in
``udfs.spark_functions``. ``udfs.catalog.FUNCTIONS`` lists every SQL function with its
signature, description and the modules behind it; ``register_all(spark)`` makes them
all callable from SQL on a session.

Importing this package does not import PySpark (the catalog and kernels are usable
without it); ``register_all`` does.
"""
from __future__ import annotations

import hashlib
import importlib.util
import tempfile
import zipfile
from pathlib import Path

from udfs.catalog import FUNCTIONS, VECTOR, FunctionSpec, function, function_source_files

__all__ = ["FUNCTIONS", "FunctionSpec", "function", "function_source_files", "register_all", "function_names", "is_connect"]

_UDFS: dict = {}  # (name, over Spark Connect?) -> UDF object, built once per process and kind of session
_SHIPPED: set = set()  # (Connect session id, zip name): artifacts already sent
_REGISTERED: set = set()  # ids of Connect sessions that have every function (each one is a round trip)


def function_names() -> list[str]:
    """SQL names of all functions, in catalog order."""
    return [spec.name for spec in FUNCTIONS]


def register_all(spark, ship_code: bool = True) -> list[str]:
    """Register every catalog function on ``spark`` (session-scoped, idempotent); return their names.

    Python-backed functions become Arrow UDFs (``spark.udf.register``); ``hamming`` is a
    SQL function (``CREATE OR REPLACE TEMPORARY FUNCTION``) and runs in the JVM. With
    ``ship_code`` the ``udfs`` package is zipped and shipped so Python workers can import
    it wherever they run (in local mode too, when the driver was started from another
    folder): with ``addPyFile`` on a classic session, as a session artifact
    (``addArtifacts(..., pyfile=True)``) over Spark Connect, so a Connect server needs
    only our pip requirements, not this project.
    """
    from pyspark.sql.functions import arrow_udf

    connect = is_connect(spark)
    if connect and spark.session_id in _REGISTERED:
        return function_names()
    if ship_code:
        _ship_package(spark)
    for spec in FUNCTIONS:
        if spec.sql_body is not None:
            spark.sql(spec.create_sql)
            continue
        # A UDF object belongs to one kind of session: PySpark builds Connect UDFs in Connect mode.
        key = (spec.name, connect)
        if key not in _UDFS:
            _UDFS[key] = _make_udf(spec, arrow_udf)
        spark.udf.register(spec.name, _UDFS[key])
    if connect:
        _REGISTERED.add(spark.session_id)
    return function_names()


def is_connect(spark) -> bool:
    """Whether ``spark`` is a Spark Connect session (no JVM, no SparkContext here) rather than a
    classic one."""
    return type(spark).__module__.startswith("pyspark.sql.connect.")


def _make_udf(spec, arrow_udf):
    if spec.returns == VECTOR:  # Spark ML's vector type has no Arrow form: an Arrow-optimized row UDF
        from pyspark.ml.linalg import VectorUDT
        from pyspark.sql.functions import udf

        return udf(spec.implementation(), VectorUDT(), useArrow=True)
    return arrow_udf(spec.implementation(), returnType=spec.return_ddl)


def _ship_package(spark) -> None:
    """Add a zip of this package's Python files to the session once per content version.

    The zip holds each module's source and its compiled bytecode (an unchecked hash-based
    ``.pyc`` beside the ``.py``, which ``zipimport`` loads without recompiling): every
    Python worker imports the package from the zip, and compiling it from source cost
    each worker about half a second of CPU. A worker on another Python version ignores the
    ``.pyc`` (wrong magic number) and compiles the source as before.
    """
    package = Path(__file__).resolve().parent
    files = sorted(p for p in package.rglob("*.py") if "__pycache__" not in p.parts)
    digest = hashlib.sha256(importlib.util.MAGIC_NUMBER)
    for path in files:
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    name = f"udfs-{digest.hexdigest()[:16]}.zip"
    if is_connect(spark):
        if (spark.session_id, name) in _SHIPPED:
            return
    elif name in getattr(spark.sparkContext, "_python_includes", []):
        return
    target = Path(tempfile.gettempdir()) / "spark-image-data" / name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{id(spark)}.tmp")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in files:
                inside = Path("udfs") / path.relative_to(package)
                source = path.read_bytes()
                archive.writestr(str(inside), source)
                archive.writestr(str(inside.with_suffix(".pyc")), _bytecode(source, str(inside)))
        partial.replace(target)
    if is_connect(spark):
        spark.addArtifacts(str(target), pyfile=True)
        _SHIPPED.add((spark.session_id, name))
    else:
        spark.sparkContext.addPyFile(str(target))


def _bytecode(source: bytes, filename: str) -> bytes:
    """``.pyc`` file content for ``source``: an unchecked hash-based pyc (PEP 552), valid wherever it is unpacked."""
    from importlib._bootstrap_external import _code_to_hash_pyc

    code = compile(source, filename, "exec", dont_inherit=True)
    return bytes(_code_to_hash_pyc(code, importlib.util.source_hash(source), checked=False))
