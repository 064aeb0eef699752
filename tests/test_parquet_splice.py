"""A file copied without some rows keeps its untouched row groups as bytes, and reads as Spark wrote it."""
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from imageprep import parquet_splice
from imageprep.parquet_rows import rewrite_without

ROWS = 60


@pytest.fixture(scope="module")
def spark_file(spark, tmp_path_factory):
    """One Spark-written Parquet file of several row groups: ids, a path, INT96 timestamps, a
    nested image struct with 600 bytes of pixels per row, and a list column."""
    folder = tmp_path_factory.mktemp("spliced") / "v1"
    frame = spark.sql(f"""
        select id, concat('img-', id) as path,
               timestamp'2026-01-02 03:04:05.123456' + make_interval(0, 0, 0, id) as at,
               named_struct('height', 10, 'data', unhex(repeat(lpad(hex(id), 4, '0'), 300))) as image,
               array(1.5, cast(id as double)) as stats
        from range({ROWS})""")
    frame.coalesce(1).write.option("parquet.block.size", 4096).parquet(str(folder))
    source = next(folder.glob("*.parquet"))
    assert pq.ParquetFile(source).metadata.num_row_groups >= 4  # the session checks sizes every 10 rows
    return source


def group_bytes(path: Path) -> list[bytes]:
    """The bytes of each row group of a Parquet file, as its footer places them."""
    metadata = pq.ParquetFile(path).metadata
    data = path.read_bytes()
    spans = []
    for g in range(metadata.num_row_groups):
        group = metadata.row_group(g)
        starts = [group.column(c).dictionary_page_offset or group.column(c).data_page_offset
                  for c in range(group.num_columns)]
        end = max(s + group.column(c).total_compressed_size for c, s in enumerate(starts))
        spans.append(data[min(starts):end])
    return spans


def first_rows(path: Path) -> list[int]:
    metadata = pq.ParquetFile(path).metadata
    counts = [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)]
    return [sum(counts[:g]) for g in range(len(counts))]


def test_untouched_row_groups_are_copied_as_bytes_and_spark_reads_the_copy(spark, spark_file, tmp_path):
    starts = first_rows(spark_file)
    dropped = {starts[1], starts[1] + 1, starts[3]}  # rows of the second and fourth groups
    written = rewrite_without(spark_file, tmp_path / "v2", Path(spark_file.name), dropped)
    copy = tmp_path / "v2" / written

    original, copied = group_bytes(spark_file), group_bytes(copy)
    untouched = [g for i, g in enumerate(original) if i not in (1, 3)]
    assert [g for g in copied if g in untouched] == untouched  # same bytes, same order
    assert len(copied) == len(original)

    expected = sorted(r for r in spark.read.parquet(str(spark_file)).collect() if r["id"] not in dropped)
    # Read in small splits, so Spark places each row group by its offsets in the copy.
    previous = spark.conf.get("spark.sql.files.maxPartitionBytes")
    spark.conf.set("spark.sql.files.maxPartitionBytes", "8k")
    try:
        frame = spark.read.parquet(str(copy))
        assert frame.rdd.getNumPartitions() > 1
        assert frame.schema == spark.read.parquet(str(spark_file)).schema
        assert sorted(frame.collect()) == expected
        positions = frame.select("id", "_metadata.row_index").collect()
    finally:
        spark.conf.set("spark.sql.files.maxPartitionBytes", previous)
    # Positions count the copy's rows in order, as the next merge's lookups number them.
    assert sorted(p["row_index"] for p in positions) == list(range(ROWS - len(dropped)))
    assert [p["id"] for p in sorted(positions, key=lambda p: p["row_index"])] == [e["id"] for e in expected]
    assert pq.read_table(copy).equals(pq.read_table(spark_file).filter(
        pa.array([i not in dropped for i in range(ROWS)])))


def test_a_group_that_loses_every_row_is_left_out(spark_file, tmp_path):
    starts = first_rows(spark_file)
    whole_group = set(range(starts[2], starts[3]))
    written = rewrite_without(spark_file, tmp_path, Path(spark_file.name), whole_group)
    assert pq.ParquetFile(tmp_path / written).metadata.num_row_groups == len(starts) - 1
    assert pq.read_table(tmp_path / written, columns=["id"]).column("id").to_pylist() == \
        [i for i in range(ROWS) if i not in whole_group]


def test_when_every_group_loses_rows_the_file_is_written_again_whole(spark, spark_file, tmp_path):
    dropped = set(first_rows(spark_file))  # the first row of every group
    written = rewrite_without(spark_file, tmp_path, Path(spark_file.name), dropped)
    assert not set(group_bytes(tmp_path / written)) & set(group_bytes(spark_file))
    assert sorted(spark.read.parquet(str(tmp_path / written)).collect()) == \
        sorted(r for r in spark.read.parquet(str(spark_file)).collect() if r["id"] not in dropped)


def test_a_rewritten_group_of_another_layout_is_refused_and_nothing_is_written(spark_file):
    """Decimals Spark stores as INT32, say, where PyArrow writes fixed-length bytes: the copy
    would not read, so copy_without says no and the caller writes the whole file again."""
    out = pa.BufferOutputStream()
    with pa.OSFile(str(spark_file)) as source:
        def other_layout(table):
            sink = pa.BufferOutputStream()
            pq.write_table(table.set_column(0, "id", table.column("id").cast(pa.int32())), sink)
            return sink.getvalue()

        assert not parquet_splice.copy_without(pq.ParquetFile(source), source, out, {0}, other_layout)
    assert out.getvalue().size == 0


def test_decimal_columns_spark_stores_as_integers_survive_the_copy(spark, tmp_path):
    folder = tmp_path / "v1"
    spark.sql("select id, cast(id / 7 as decimal(5, 2)) as score, unhex(repeat('ab', 600)) as data from range(40)") \
        .coalesce(1).write.option("parquet.block.size", 4096).parquet(str(folder))
    source = next(folder.glob("*.parquet"))
    assert pq.ParquetFile(source).metadata.num_row_groups > 1
    written = rewrite_without(source, tmp_path / "v2", Path(source.name), {1, 2})
    assert sorted(spark.read.parquet(str(tmp_path / "v2" / written)).collect()) == \
        sorted(r for r in spark.read.parquet(str(source)).collect() if r["id"] not in (1, 2))
