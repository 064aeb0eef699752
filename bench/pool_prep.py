#!/usr/bin/env python3
"""Contender (b): the benchmark's work in a plain ``multiprocessing.Pool`` loop, written to Parquet.

    python bench/pool_prep.py IMAGES OUT [--workers 2] [--codec snappy] [--no-tensor]

Each task takes a chunk of files, does ``plain_prep``'s work on each and writes one Parquet
file (``part-NNNNN.parquet``) with PyArrow, with the same columns and types as the Spark
model: path (``file:`` URI, as Spark lists it), label, width, height, pixels, tensor,
histogram. This is the practical limit of the machine: no JVM, no data moved between
processes except file names.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
import plain_prep  # noqa: E402

SCHEMA = pa.schema([("path", pa.string()), ("label", pa.string()), ("width", pa.int32()), ("height", pa.int32()),
                    ("pixels", pa.binary()), ("tensor", pa.binary()), ("histogram", pa.list_(pa.int32()))])


def list_images(root: Path) -> list[tuple[str, str | None]]:
    """(path, label) of every file under root, sorted; label = first folder under root."""
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            full = Path(folder) / name
            rel = full.relative_to(root).parts
            found.append((str(full), rel[0] if len(rel) > 1 else None))
    return sorted(found)


def _task(args) -> int:
    index, chunk, out, codec, with_tensor = args
    columns = {name: [] for name in SCHEMA.names}
    for path, label in chunk:
        with open(path, "rb") as handle:
            data = handle.read()
        pixels, width, height = plain_prep.decode_resize(data)
        columns["path"].append("file:" + path)
        columns["label"].append(label)
        columns["width"].append(width)
        columns["height"].append(height)
        columns["pixels"].append(pixels.tobytes())
        columns["tensor"].append(plain_prep.normalize(pixels).tobytes() if with_tensor else None)
        columns["histogram"].append(plain_prep.histogram(pixels))
    table = pa.table(columns, schema=SCHEMA)
    pq.write_table(table, os.path.join(out, f"part-{index:05d}.parquet"), compression=codec)
    return len(chunk)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--chunk", type=int, default=64, help="images per task and per Parquet file")
    parser.add_argument("--codec", default="snappy", help="Parquet compression: snappy, zstd, lz4, none")
    parser.add_argument("--no-tensor", action="store_true", help="leave the tensor column NULL")
    args = parser.parse_args(argv)
    files = list_images(args.images.resolve())
    args.out.mkdir(parents=True, exist_ok=True)
    chunks = [files[i:i + args.chunk] for i in range(0, len(files), args.chunk)]
    tasks = [(i, c, str(args.out), args.codec, not args.no_tensor) for i, c in enumerate(chunks)]
    with multiprocessing.Pool(args.workers) as pool:
        done = sum(pool.imap_unordered(_task, tasks))
    print(f"pool: {done} images -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
