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


@pytest.fixture(scope="session")
def edge_cases_dir() -> Path:
    return _shared("edge_cases")


@pytest.fixture(scope="session")
def labeled_dir() -> Path:
    return _shared("labeled")


@pytest.fixture(scope="session")
def labeled_manifest() -> Path:
    return _shared("labeled_manifest.csv")


@pytest.fixture(scope="session")
def photos_dir() -> Path:
    return _shared("photos")
