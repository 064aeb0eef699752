#!/usr/bin/env python3
"""How fast are the image functions inside Spark, against the practical limit of this machine?

    python bench/udfs_bench.py                 # 300 JPEGs made under /tmp, 2 cores
    python bench/udfs_bench.py -n 2000 --images /tmp/bench

Two measurements, printed as tables:

1. Images per second of each main function, as a pipeline from the file (read, decode,
   ..., the function), inside Spark (``binaryFile`` -> SQL -> ``noop`` sink, so nothing
   is written) against the same kernels in a plain ``multiprocessing.Pool(2)`` loop over
   the same files. The ratio pool/Spark is the price of Spark on this machine.
2. ``normalize``'s tensor stored as ``binary`` (float32 bytes) against ``array<float>``
   (``tensor_to_array``), each written to Parquet by the whole pipeline, side by side in
   this run: time, ratio and file size. This is the measurement behind the binary default.

Images come from ``/work/shared/datasets/make_bench_set.py`` (ImageNet-like JPEGs, long
side 400-640) unless ``--images`` points at a folder of images.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from udfs.kernels import augment, decode, features, normalize, resize  # noqa: E402

MAKE_BENCH_SET = Path(os.environ.get("SHARED_DATASETS", PROJECT_ROOT.parent / "shared" / "datasets")) / "make_bench_set.py"
SIZE = 224
OPS = "hflip; rotate(10); brightness(0.2)"
SEED = 1

# name -> (SQL expression over binaryFile's `content` and `path`, kernel pipeline over file bytes)
SMALL = f"decode_resize(content, path, {SIZE}, {SIZE}, 'cover')"
PIPELINES = {
    "decode_image": ("decode_image(content, path)",
                     lambda data, path: decode.decode(data)),
    "decode_image + resize": (f"resize(decode_image(content, path), {SIZE}, {SIZE}, 'cover')",
                              lambda data, path: resize.resize(decode.decode(data), SIZE, SIZE, "cover")),
    "decode_resize": (SMALL,
                      lambda data, path: decode.decode_resize(data, SIZE, SIZE, "cover")),
    "decode_resize + normalize": (f"normalize({SMALL}, 'imagenet')",
                                  lambda data, path: normalize.normalize(_small(data), "imagenet")),
    "decode_resize + color_histogram": (f"color_histogram({SMALL}, 32)",
                                        lambda data, path: features.color_histogram(_small(data), 32, False)),
    "decode_resize + phash": (f"phash({SMALL})",
                              lambda data, path: features.phash(_small(data))),
    "decode_resize + augment": (f"augment({SMALL}, '{OPS}', {SEED})",
                                lambda data, path: augment.augment(_small(data), OPS, SEED, path, 0)),
}


def _small(data: bytes):
    return decode.decode_resize(data, SIZE, SIZE, "cover")


def _pool_task(args):
    name, path = args
    with open(path, "rb") as handle:
        data = handle.read()
    PIPELINES[name][1](data, "file:" + path)
    return 1


def make_images(count: int, folder: Path) -> list[str]:
    """The benchmark JPEGs (made once, then reused), sorted."""
    files = sorted(str(p) for p in folder.rglob("*.jpg")) if folder.exists() else []
    if len(files) != count:
        if not MAKE_BENCH_SET.exists():
            raise SystemExit(f"no images in {folder} and no {MAKE_BENCH_SET} to make them; pass --images")
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run([sys.executable, str(MAKE_BENCH_SET), str(folder), "-n", str(count), "--workers", "2"],
                       check=True, stdout=subprocess.DEVNULL)
        files = sorted(str(p) for p in folder.rglob("*.jpg"))
    return files


def time_spark(spark, sql: str, runs: int) -> float:
    """Best wall time of `runs` full evaluations (noop sink: every row computed, nothing written)."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        spark.sql(sql).write.format("noop").mode("overwrite").save()
        best = min(best, time.perf_counter() - start)
    return best


def time_pool(pool, name: str, files: list[str], runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        done = sum(pool.imap_unordered(_pool_task, [(name, f) for f in files], chunksize=8))
        best = min(best, time.perf_counter() - start)
        assert done == len(files)
    return best


def bench_functions(spark, pool, files: list[str], runs: int) -> None:
    n = len(files)
    print(f"\n1. images/second, {n} images, pipeline from file bytes; best of {runs}")
    print(f"{'pipeline':34} {'Spark':>8} {'Pool(2)':>8} {'Pool/Spark':>10}")
    for name, (expression, _) in PIPELINES.items():
        spark_seconds = time_spark(spark, f"SELECT path, {expression} AS out FROM bench_files", runs)
        pool_seconds = time_pool(pool, name, files, runs)
        print(f"{name:34} {n / spark_seconds:8.1f} {n / pool_seconds:8.1f} {spark_seconds / pool_seconds:10.2f}")


def bench_tensor_storage(spark, n: int, runs: int, out_dir: Path) -> None:
    tensor = f"normalize({SMALL}, 'imagenet')"
    forms = {
        "binary (float32 bytes)": f"SELECT path, {tensor} AS tensor FROM bench_files",
        "array<float>": f"SELECT path, tensor_to_array({tensor}) AS tensor FROM bench_files",
    }
    seconds = {name: float("inf") for name in forms}
    for _ in range(runs):  # alternate the two forms so that drift hits both alike
        for name, sql in forms.items():
            target = out_dir / name.split()[0].replace("<", "_").replace(">", "")
            start = time.perf_counter()
            spark.sql(sql).write.mode("overwrite").parquet(str(target))
            seconds[name] = min(seconds[name], time.perf_counter() - start)
    print(f"\n2. normalize -> Parquet, {n} images at {SIZE}x{SIZE}, whole pipeline; best of {runs}")
    print(f"{'tensor column':24} {'seconds':>8} {'images/s':>9} {'MB on disk':>11}")
    for name in forms:
        target = out_dir / name.split()[0].replace("<", "_").replace(">", "")
        size = sum(p.stat().st_size for p in target.rglob("*.parquet")) / 1e6
        print(f"{name:24} {seconds[name]:8.2f} {n / seconds[name]:9.1f} {size:11.1f}")
    binary, array = seconds["binary (float32 bytes)"], seconds["array<float>"]
    print(f"array<float> / binary time ratio: {array / binary:.2f}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--count", type=int, default=300, help="images to make (default 300)")
    parser.add_argument("--images", type=Path, help="folder of images to use instead of making them")
    parser.add_argument("--runs", type=int, default=2, help="timed runs per measurement; the best counts")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.gettempdir()) / "udfs_bench"
    folder = args.images or tmp / f"images_{args.count}"
    files = make_images(args.count, folder) if args.images is None else sorted(
        str(p) for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    print(f"{len(files)} images in {folder}, {os.cpu_count()} CPUs")

    from imageprep.spark_session import create_session

    start = time.perf_counter()
    # Files are ~50 kB: count each at its size (not Spark's default 4 MB open cost), so that
    # partitions are ~16 MB apart from the per-core split, i.e. a few tasks per core.
    spark = create_session("local[2]", app_name="udfs-bench",
                           settings={"spark.sql.files.openCostInBytes": str(64 * 1024),
                                     "spark.sql.files.maxPartitionBytes": str(2 * 1024 * 1024)})
    files_df = spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(str(folder))
    files_df.createOrReplaceTempView("bench_files")
    spark.sql("SELECT decode_image(content, path) FROM bench_files LIMIT 8").collect()  # JVM and worker warm-up
    print(f"Spark session + warm-up: {time.perf_counter() - start:.1f} s; "
          f"{files_df.rdd.getNumPartitions()} partitions")

    with multiprocessing.Pool(2) as pool:
        bench_functions(spark, pool, files, args.runs)
    with tempfile.TemporaryDirectory(prefix="udfs_bench_parquet_") as out:
        bench_tensor_storage(spark, len(files), args.runs, Path(out))
    spark.stop()


if __name__ == "__main__":
    main()
