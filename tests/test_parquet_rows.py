"""A merge's key lookup with PyArrow finds the rows Spark would: same files, same positions."""
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pathlib import Path

from imageprep.parquet_rows import rewrite_without, rows_with_keys

FILES = [Path("part-0.parquet"), Path("part-1.parquet")]


def write_version(folder):
    """Two Parquet files of (path, copy_index) rows, one with several row groups."""
    folder.mkdir()
    first = pa.table({"path": ["a", "b", "c", "a", None], "copy_index": pa.array([0, 0, 0, 1, 0], pa.int32()),
                      "value": [1.0, 2.0, 3.0, 4.0, 5.0]})
    pq.write_table(first, folder / "part-0.parquet", row_group_size=2)
    second = pa.table({"path": ["d", "b"], "copy_index": pa.array([0, 1], pa.int32()), "value": [6.0, 7.0]})
    pq.write_table(second, folder / "part-1.parquet")
    return folder


def test_rows_with_keys_are_the_rows_spark_numbers_the_same_way(spark, tmp_path):
    version = write_version(tmp_path / "v1")
    wanted = [("a", 1), ("b", 0), ("b", 1), ("zz", 0), (None, 0)]
    found = rows_with_keys(version, FILES, ["path", "copy_index"], wanted)
    # NULL matches nothing, as in SQL; a file without matches is left out.
    assert {str(f): rows for f, rows in found.items()} == {"part-0.parquet": {1, 3}, "part-1.parquet": {1}}
    # Spark's row positions (what the rewrite drops by) name the same rows.
    rows = spark.read.parquet(str(version)).select("path", "copy_index", "_metadata.file_name", "_metadata.row_index")
    by_spark = {}
    for row in rows.collect():
        if (row["path"], row["copy_index"]) in {("a", 1), ("b", 0), ("b", 1)}:
            by_spark.setdefault(row["file_name"], set()).add(row["row_index"])
    assert by_spark == {"part-0.parquet": {1, 3}, "part-1.parquet": {1}}


def test_rows_with_keys_of_one_key_column_and_no_keys(tmp_path):
    version = write_version(tmp_path / "v1")
    assert {str(f): rows for f, rows in rows_with_keys(version, FILES, ["path"], [("d",)]).items()} == {"part-1.parquet": {0}}
    assert rows_with_keys(version, FILES, ["path"], []) == {}


def test_a_file_rewritten_without_some_rows_reads_as_spark_wrote_it(spark, tmp_path):
    """Spark's INT96 timestamps, nested columns, column metadata and compression survive the copy."""
    from pyspark.sql import functions as F

    frame = spark.sql("""
        select id, concat('img-', id) as path, timestamp'2026-01-02 03:04:05.123456' + make_interval(0, 0, 0, id) as at,
               named_struct('height', 2, 'data', cast('abcd' as binary)) as image, array(1.5, cast(id as double)) as stats
        from range(6)""").withColumn("path", F.col("path").alias("path", metadata={"note": "kept"}))
    frame.coalesce(1).write.parquet(str(tmp_path / "v1"))
    source = next((tmp_path / "v1").glob("*.parquet"))
    written = rewrite_without(source, tmp_path / "v2", Path(source.name), {0, 4})
    copy = spark.read.parquet(str(tmp_path / "v2" / written))
    assert copy.schema == spark.read.parquet(str(source)).schema
    assert copy.schema["path"].metadata == {"note": "kept"}
    assert sorted(copy.collect()) == sorted(r for r in frame.collect() if r["id"] not in (0, 4))
    assert pq.ParquetFile(tmp_path / "v2" / written).metadata.row_group(0).column(0).compression == "SNAPPY"
    assert rewrite_without(source, tmp_path / "v3", Path(source.name), set(range(6))) is None
    assert not (tmp_path / "v3").exists() or not list((tmp_path / "v3").rglob("*.parquet"))


def test_keys_in_are_the_distinct_keys_without_null(tmp_path):
    version = write_version(tmp_path / "v1")
    from imageprep.parquet_rows import keys_in

    assert keys_in(version, FILES, ["path", "copy_index"]) == sorted(
        {("a", 0), ("b", 0), ("c", 0), ("a", 1), ("d", 0), ("b", 1)}, key=repr)


def test_rows_not_in_matches_null_to_null_and_value_tuples_filter_as_sql(tmp_path):
    from imageprep.parquet_rows import rows_not_in, value_tuples

    version = write_version(tmp_path / "v1")
    # The relation's rows with copy_index 0: a NULL in a filtered column matches nothing.
    present = value_tuples(version, FILES, ["path"], {"copy_index": 0})
    assert present == {("a",), ("b",), ("c",), ("d",), (None,)}
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"path": ["a", None, "x"]}), other)
    found = rows_not_in(tmp_path, [Path("other.parquet")], ["path"], {("a",), (None,)})
    assert found == {Path("other.parquet"): {2}}  # NULL matches NULL here, as <=> does
    # Float columns are left to Spark (NaN <=> NaN holds there; NaN == NaN does not in Python).
    with pytest.raises(TypeError):
        value_tuples(version, FILES, ["value"])


def test_gather_copies_small_files_into_one_or_into_files_of_at_most_n_rows(tmp_path):
    from imageprep.parquet_rows import gather

    version = write_version(tmp_path / "v1")
    out = tmp_path / "out"
    out.mkdir()
    names = iter(f"g{i}.parquet" for i in range(10))
    one = gather([version / f for f in FILES], out, lambda: next(names))
    assert [pq.read_table(out / f).column("path").to_pylist() for f in one] == [["a", "b", "c", "a", None, "d", "b"]]
    several = gather([version / f for f in FILES], out, lambda: next(names), max_rows_per_file=3)
    assert [pq.read_table(out / f).num_rows for f in several] == [3, 3, 1]
    # Written as the originals were: same schema (and its metadata), same compression.
    assert pq.read_schema(out / one[0]).equals(pq.read_schema(version / FILES[0]), check_metadata=True)
    assert pq.ParquetFile(out / one[0]).metadata.row_group(0).column(0).compression == "SNAPPY"


def test_a_copy_keeps_dictionaries_and_statistics_only_where_the_original_has_them(tmp_path):
    folder = tmp_path / "v"
    folder.mkdir()
    pq.write_table(pa.table({"label": ["a", "b"] * 4, "data": [bytes(100)] * 8}), folder / "f.parquet",
                   use_dictionary=["label"], write_statistics=["label"])
    copy = rewrite_without(folder / "f.parquet", folder, Path("f.parquet"), {0})
    chunks = pq.ParquetFile(folder / copy).metadata.row_group(0)
    label, data = (chunks.column(i) for i in range(chunks.num_columns))
    assert any("DICTIONARY" in e for e in label.encodings) and not any("DICTIONARY" in e for e in data.encodings)
    assert label.statistics.has_min_max and not data.is_stats_set
