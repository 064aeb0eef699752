#!/usr/bin/env python3
"""Contender (c): the benchmark's work the way Spark image tutorials do it.

    python bench/tutorial_prep.py IMAGES OUT

``binaryFile`` rows, row-at-a-time Python UDFs (pickled rows, no Arrow) that return Python
lists: the resized pixels as ``array<int>``, the normalized tensor as ``array<double>``, the
histogram as ``array<int>``, written to Parquet with Spark's default settings. The per-image
work is the same Pillow/NumPy code as the plain loop (``plain_prep``), so the results can be
compared value for value.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import plain_prep  # noqa: E402


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print(__doc__)
        return 2
    images, out = Path(argv[0]).resolve(), argv[1]

    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType, DoubleType, IntegerType, StructField, StructType

    spark = SparkSession.builder.master("local[*]").appName("tutorial-prep").getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    spark.sparkContext.addPyFile(str(HERE / "plain_prep.py"))

    @F.udf(StructType([StructField("width", IntegerType()), StructField("height", IntegerType()),
                       StructField("pixels", ArrayType(IntegerType()))]))
    def load_image(content):
        pixels, width, height = plain_prep.decode_resize(content)
        return width, height, pixels.flatten().tolist()

    @F.udf(ArrayType(DoubleType()))
    def normalize(pixels):
        array = np.array(pixels, dtype=np.uint8).reshape(plain_prep.SIZE, plain_prep.SIZE, 3)
        return plain_prep.normalize(array).astype(np.float64).flatten().tolist()

    @F.udf(ArrayType(IntegerType()))
    def histogram(pixels):
        array = np.array(pixels, dtype=np.uint8).reshape(plain_prep.SIZE, plain_prep.SIZE, 3)
        return plain_prep.histogram(array).tolist()

    prefix = "file:" + str(images) + "/"
    files = spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(str(images))
    decoded = files.select(
        "path",
        F.substring_index(F.expr(f"substring(path, {len(prefix) + 1})"), "/", 1).alias("label"),
        load_image("content").alias("d"))
    prepared = decoded.select(
        "path", "label", F.col("d.width").alias("width"), F.col("d.height").alias("height"),
        F.col("d.pixels").alias("pixels"), normalize("d.pixels").alias("tensor"),
        histogram("d.pixels").alias("histogram"))
    prepared.write.mode("overwrite").parquet(out)
    spark.stop()
    print(f"tutorial: {images} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
