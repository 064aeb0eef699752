"""Fixtures shared by the whole suite: one SparkSession per test run, and the shared data sets."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

# ../shared/ sits beside the project in development and CI; a user's clone has none.
SHARED_DATASETS = Path(os.environ.get("SHARED_DATASETS", PROJECT_ROOT.parent / "shared" / "datasets"))


@pytest.fixture(scope="session")
def spark():
    """The one local SparkSession of this test run, with the image functions registered."""
    from imageprep.spark_session import create_session

    session = create_session("local[2]", app_name="tests", settings={"spark.sql.shuffle.partitions": "2"})
    yield session
    session.stop()


def _shared(sub: str) -> Path:
    path = SHARED_DATASETS / sub
    if not path.exists():
        pytest.skip(f"needs the shared data set {path} (present in development and CI, not in a user's clone)")
    return path


def _shared_fixture(sub: str):
    """A fixture giving the shared data set `sub` (the test skips without it)."""
    return pytest.fixture(scope="session")(lambda: _shared(sub))


edge_cases_dir = _shared_fixture("edge_cases")
labeled_dir = _shared_fixture("labeled")
labeled_manifest = _shared_fixture("labeled_manifest.csv")
photos_dir = _shared_fixture("photos")


# -- Spark Connect: a server in this test run's driver (the one JVM), and a session on it ------------


def connect_mode():
    """PySpark's Connect mode (pyspark.sql.functions build Connect columns) for a while: the suite's
    classic session lives in the same process and needs it off the rest of the time."""
    from imageprep.spark_session import environment_variable

    return environment_variable("SPARK_CONNECT_MODE_ENABLED", "1")


@pytest.fixture(scope="session")
def connect_url(spark) -> str:
    """sc:// URL of a Spark Connect server started in the suite's own driver, on a free loopback port."""
    from imageprep.connect import require_client
    from imageprep.connect_server import start_server, stop_server
    from imageprep.errors import ProjectError

    try:
        require_client()
    except ProjectError as exc:
        pytest.skip(str(exc))
    port = start_server(spark, port=0)
    yield f"sc://127.0.0.1:{port}"
    stop_server(spark)


@pytest.fixture(scope="session")
def connect_spark(connect_url):
    """The test run's Spark Connect session, image functions registered. A project whose target has
    `remote: <connect_url>` builds on it, as local targets build on `spark`."""
    from imageprep.spark_session import create_session

    with connect_mode():
        session = create_session(connect_url, settings={"spark.sql.shuffle.partitions": "2"})
    yield session
    with connect_mode():
        session.stop()


@pytest.fixture(autouse=True)
def _connect_mode_for_connect_tests(request):
    """Tests on `connect_spark` run in PySpark's Connect mode; the others do not."""
    if "connect_spark" not in request.fixturenames:
        yield
        return
    with connect_mode():
        yield
