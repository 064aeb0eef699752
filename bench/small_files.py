#!/usr/bin/env python3
"""What a table's file count costs every query that reads it (why merging tables gather small files).

    python bench/small_files.py            # 2000 rows, as 1, 14, 50, 100 and 400 files
    python bench/small_files.py --rows 20000

Each incremental build of a table adds at least one Parquet file, and a scan opens every file. The
script writes the same narrow rows (path, SHA-256, size: the keys incremental models join on) as
tables of different file counts, then, in one session, alternating, times two queries per table:
collecting the keys, and the anti-join of a one-file table against it (what `{{ this }}` and
`delete_where` do on each incremental build). It prints the median of 5 runs of each, once warm.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FILE_COUNTS = (1, 14, 50, 100, 400)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2000, help="rows of each table (default 2000)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each query (default 5)")
    args = parser.parse_args(argv)

    from imageprep.spark_session import create_session

    spark = create_session(register_functions=False)
    spark.sparkContext.setLogLevel("ERROR")
    folder = Path(tempfile.mkdtemp(prefix="small-files-"))
    rows = spark.range(args.rows).selectExpr(
        "concat('file:/images/class_', id % 50, '/', id, '.jpg') as path",
        "sha2(cast(id as string), 256) as content_sha256", "id * 997 as size_bytes")
    for count in FILE_COUNTS:
        rows.repartition(count).write.parquet(str(folder / f"files_{count}"))

    def table(count):
        return spark.read.parquet(str(folder / f"files_{count}"))

    queries = {
        "collect keys": lambda count: table(count).select("path", "content_sha256").collect(),
        "anti-join": lambda count: table(1).join(table(count), ["path", "content_sha256"], "left_anti").count(),
    }
    for count in FILE_COUNTS:  # once each, so every query below runs warm
        for query in queries.values():
            query(count)
    times = {(name, count): [] for name in queries for count in FILE_COUNTS}
    for _ in range(args.runs):
        for count in FILE_COUNTS:
            for name, query in queries.items():
                start = time.perf_counter()
                query(count)
                times[(name, count)].append(time.perf_counter() - start)

    print(f"{args.rows} rows of (path, content_sha256, size_bytes), median of {args.runs} warm runs, seconds")
    print(f"{'files':>6}" + "".join(f"{name:>16}" for name in queries))
    for count in FILE_COUNTS:
        print(f"{count:>6}" + "".join(f"{statistics.median(times[(name, count)]):>16.3f}" for name in queries))
    spark.stop()
    shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
