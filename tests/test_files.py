"""The file layer (imageprep.files): one rule for URIs, PyArrow for every file system it reads, and
Hadoop only where PyArrow cannot go."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from imageprep.errors import ProjectError
from imageprep.files import ArrowFiles, StoragePath, files_for, is_uri, local_path, location, to_uri
from imageprep.files_hadoop import HadoopFiles
from imageprep.training import numpy_batches, table_path
from imageprep.warehouse import Warehouse
from tests.test_training import N_ROWS, rows


@pytest.mark.parametrize("text, uri", [
    ("target/warehouse", False), ("/data/wh", False), ("C:\\data\\wh", False), ("C:/data/wh", False),
    ("file:/data/wh", True), ("file:///data/wh", True), ("s3a://bucket/wh", True), ("hdfs://nn:8020/wh", True),
    ("gs://bucket/wh", True), ("abfss://c@acct.dfs.core.windows.net/wh", True),
])
def test_one_rule_says_what_is_a_uri(text, uri):
    assert is_uri(text) is uri
    assert isinstance(location(text), StoragePath if uri else Path)


def test_local_paths_of_plain_paths_and_file_uris(tmp_path):
    assert local_path("file:///data/wh") == local_path("file:/data/wh") == "/data/wh"
    assert local_path("rel/wh") == "rel/wh" and local_path("s3a://bucket/wh") is None
    assert to_uri(tmp_path) == "file:" + str(tmp_path.resolve())  # as Spark names its rows


def test_a_file_uri_is_read_and_written_through_pyarrow(tmp_path):
    root = location((tmp_path / "wh").as_uri())
    assert isinstance(root.files, ArrowFiles) and not root.exists()
    (root / "a/b/one.json").write_text('{"n": 1}')  # folders are made as Hadoop's create makes them
    assert json.loads((tmp_path / "wh/a/b/one.json").read_text()) == {"n": 1}
    assert root.is_dir() and (root / "a").is_dir() and not (root / "a/b/one.json").is_dir()
    assert (root / "a/b/one.json").stat().st_size == 8

    lock = root / "_lock"
    assert lock.create_new("mine") and not lock.create_new("theirs")  # exclusive
    assert lock.read_text() == "mine"

    tmp = root / ".catalog.tmp"
    tmp.write_text("new")
    (root / "catalog").write_text("old")
    tmp.replace(root / "catalog")  # replaces, as the catalog switch needs
    assert (root / "catalog").read_text() == "new" and not tmp.exists()

    (root / "a/b/one.json").copy_to(root / "c/d/copy.json")  # the copy's folder is made too
    assert (tmp_path / "wh/c/d/copy.json").read_text() == '{"n": 1}'
    assert sorted(p.name for p in root.iterdir()) == ["_lock", "a", "c", "catalog"]
    walked = sorted(f.uri for f in root.files.walk(root.uri, recursive=True))
    assert walked == [f"{to_uri(tmp_path)}/wh/{name}" for name in ("_lock", "a/b/one.json", "c/d/copy.json", "catalog")]

    (root / "a").rmtree()
    assert not (tmp_path / "wh/a").exists()
    (root / "missing").rmtree()  # nothing to remove is no error
    with pytest.raises(FileNotFoundError):
        (root / "missing").unlink()


def test_s3a_settings_reach_pyarrows_s3_client():
    """`s3a://` is S3 to PyArrow, with the endpoint and keys the target gives the S3A connector;
    nothing is contacted until a file is read."""
    settings = {"spark.hadoop.fs.s3a.endpoint": "http://127.0.0.1:9", "spark.hadoop.fs.s3a.access.key": "AK",
                "spark.hadoop.fs.s3a.secret.key": "SK"}
    files = files_for("s3a://bucket/wh", settings=settings)
    assert isinstance(files, ArrowFiles) and type(files.filesystem).__name__ == "S3FileSystem"
    assert files.path("s3a://bucket/wh/_catalog.json") == "bucket/wh/_catalog.json"
    assert files.uri("bucket/wh/_catalog.json") == "s3a://bucket/wh/_catalog.json"
    assert "127.0.0.1:9" in repr(files.filesystem.__reduce__())


def test_a_scheme_pyarrow_lacks_needs_a_classic_session_and_says_so(spark):
    with pytest.raises(ProjectError, match=r"cannot reach nosuch://host/wh: PyArrow has no file system for 'nosuch:'.*"
                                           r"Spark Connect"):
        files_for("nosuch://host/wh")
    assert isinstance(files_for("nosuch://host/wh", spark=spark), HadoopFiles)


def test_the_hadoop_fallback_does_what_pyarrow_does(spark, tmp_path):
    uri = (tmp_path / "wh").as_uri()
    for files in (files_for(uri), HadoopFiles(spark)):
        root = StoragePath(uri, files)
        (root / "x/one.txt").write_text("1")
        assert (root / "x/one.txt").read_text() == "1" and (root / "x").is_dir()
        assert (root / "new").create_new("a") and not (root / "new").create_new("b")
        assert [f.size for f in files.walk(uri, recursive=True) if f.uri.endswith("one.txt")] == [1]
        (root / "x").rmtree()
        (root / "new").unlink()
        assert list(root.iterdir()) == []


def _warehouse_with_train_set(location_text: str) -> Warehouse:
    """A warehouse (path or URI) holding a table `train_set` of N_ROWS rows, published as a build does."""
    warehouse = Warehouse(location_text)
    version = warehouse.new_version_folder("train_set")
    folder = Path(local_path(str(version)))
    folder.mkdir(parents=True)  # Spark makes it when it writes
    pq.write_table(rows(range(N_ROWS)), folder / "part-00000.parquet", row_group_size=4)
    warehouse.publish_table("train_set", str(version), rows=N_ROWS, schema="{}")
    return warehouse


@pytest.mark.parametrize("kind", ["folder", "uri"])
def test_the_loader_finds_tables_in_the_warehouse_the_project_names(tmp_path, kind):
    elsewhere = tmp_path / "elsewhere"
    setting = elsewhere.as_uri() if kind == "uri" else str(elsewhere)
    project = tmp_path / "project"
    project.mkdir()
    (project / "project.yml").write_text(f"name: demo\nwarehouse: '{setting}'\n")
    _warehouse_with_train_set(setting)

    found = table_path(project, "train_set")
    assert str(found) == (f"{setting}/train_set" if kind == "uri" else str(elsewhere / "train_set"))
    ys = np.concatenate([y for _, y in numpy_batches(found, batch_size=3)])
    np.testing.assert_array_equal(ys, np.arange(N_ROWS))
    with pytest.raises(FileNotFoundError, match="table val_set not built"):
        table_path(project, "val_set")
