#!/usr/bin/env python3
"""The example project's per-image work in a plain ``multiprocessing.Pool`` loop, model by model.

    python bench/example_kernels.py IMAGES OUT                    # all CPUs
    python bench/example_kernels.py IMAGES OUT --workers 2 --json OUT.json

What the example project (``project.yml``, ``models/``) computes for each image, done with
the project's own kernels (``udfs.kernels``) and no Spark: the same settings (224x224,
``cover``, bilinear, 32 histogram bins, 2 augmented copies of each training image with the
project's ``augment_ops``, seed 42, split 0.7 / 0.15 / 0.15), and what the build stores,
written as Parquet (snappy) with PyArrow, one folder per model under OUT:

===================  ===========================================================
``stg_files``        every file under IMAGES: path, relative_path, label, size,
                     modification time, SHA-256 of the bytes
``images_resized``   each file decoded straight to 224x224 RGB (JPEG draft
                     decoding), as the image struct, with its colour histogram,
                     channel statistics and pHash; files that do not decode are
                     left out (and counted)
``image_features``   path, content_sha256, histogram, statistics, pHash
``labels``           each label with its index (name order) and image count
``splits``           train / val / test of every labelled image, stratified by
                     label, from a hash of (seed, relative path)
``images_augmented`` 2 augmented copies of each training image, with histograms
``train_set`` ...    the rows of each split (originals, and for train the copies)
                     with label index, one-hot label, image and histogram
===================  ===========================================================

Each model is one phase: a pass of the ``Pool`` over tasks of 64 rows, every task reading
its rows from the previous models' Parquet files (as the Spark build reads its parent
tables) and writing one Parquet file; ``labels`` and ``splits`` are small and made in the
main process. Each phase is timed (wall seconds); the lines printed give each phase and the
total, and ``--json`` writes ``{"phases": {model: seconds}, "total": s, "rows": {model: n}}``.
``bench/example.py`` runs this against the Spark build of the example project.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import time
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from udfs.image_struct import IMAGE_ARROW_TYPE  # noqa: E402
from udfs.kernels import augment, decode, features  # noqa: E402

# The example project's settings (project.yml vars).
IMAGE_SIZE = 224
RESIZE_MODE = "cover"
INTERPOLATION = "bilinear"
HISTOGRAM_BINS = 32
AUGMENT_COPIES = 2
AUGMENT_OPS = "hflip(p=0.5); rotate(degrees=10); brightness(0.2); contrast(0.2); saturation(0.2)"
SEED = 42
SPLIT = (0.7, 0.15, 0.15)

CHUNK = 64  # rows per task and per Parquet file
CODEC = "snappy"

HISTOGRAM = pa.list_(pa.int32())
IMAGE_STATS = pa.struct([("mean", pa.list_(pa.float64())), ("std", pa.list_(pa.float64())),
                         ("min", pa.list_(pa.int32())), ("max", pa.list_(pa.int32()))])
TIMESTAMP = pa.timestamp("us", tz="UTC")

SCHEMAS = {
    "stg_files": pa.schema([("path", pa.string()), ("relative_path", pa.string()), ("label", pa.string()),
                            ("size_bytes", pa.int64()), ("modified_at", TIMESTAMP), ("content_sha256", pa.string())]),
    "images_resized": pa.schema([("path", pa.string()), ("label", pa.string()), ("size_bytes", pa.int64()),
                                 ("modified_at", TIMESTAMP), ("content_sha256", pa.string()), ("width", pa.int32()),
                                 ("height", pa.int32()), ("image", IMAGE_ARROW_TYPE), ("color_histogram", HISTOGRAM),
                                 ("image_stats", IMAGE_STATS), ("phash", pa.int64())]),
    "image_features": pa.schema([("path", pa.string()), ("content_sha256", pa.string()),
                                 ("color_histogram", HISTOGRAM), ("image_stats", IMAGE_STATS), ("phash", pa.int64())]),
    "labels": pa.schema([("label", pa.string()), ("label_index", pa.int32()), ("n_images", pa.int64())]),
    "splits": pa.schema([("path", pa.string()), ("label", pa.string()), ("split", pa.string())]),
    "images_augmented": pa.schema([("path", pa.string()), ("content_sha256", pa.string()), ("copy_index", pa.int32()),
                                   ("image", IMAGE_ARROW_TYPE), ("color_histogram", HISTOGRAM)]),
    "set": pa.schema([("path", pa.string()), ("content_sha256", pa.string()), ("label", pa.string()),
                      ("label_index", pa.int32()), ("label_onehot", pa.list_(pa.int32())), ("copy_index", pa.int32()),
                      ("image", IMAGE_ARROW_TYPE), ("color_histogram", HISTOGRAM)]),
}
SETS = ("train_set", "val_set", "test_set")


# --------------------------------------------------------------------------- reading and writing tables


def write(table: pa.Table, folder: Path, index: int) -> int:
    pq.write_table(table, str(folder / f"part-{index:05d}.parquet"), compression=CODEC)
    return table.num_rows


def parts(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.glob("*.parquet"))


def scan(folder: Path, columns: list[str]) -> list[tuple[str, pa.Table]]:
    """The given (small) columns of every Parquet file of a table, file by file."""
    return [(file, pq.read_table(file, columns=columns)) for file in parts(folder)]


def chunks(refs: list[tuple[str, int]]) -> list[list[tuple[str, int]]]:
    return [refs[i:i + CHUNK] for i in range(0, len(refs), CHUNK)]


def read_rows(refs: list[tuple[str, int]], columns: list[str]) -> pa.Table:
    """The rows ``refs`` (file, row number) of a table, in that order: each file read once, these columns only."""
    by_file: dict[str, list[int]] = {}
    for file, row in refs:
        by_file.setdefault(file, []).append(row)
    pieces = [pq.read_table(file, columns=columns).take(pa.array(rows, pa.int64())) for file, rows in by_file.items()]
    return pa.concat_tables(pieces) if len(pieces) > 1 else pieces[0]


def image_array(pixels: list[np.ndarray], origins: list[str]) -> pa.StructArray:
    """The image struct (``udfs/image_struct.py``) of RGB pixels: mode RGB, data = the HWC bytes."""
    return pa.StructArray.from_arrays(
        [pa.array(origins, pa.string()),
         pa.array([p.shape[0] for p in pixels], pa.int32()),
         pa.array([p.shape[1] for p in pixels], pa.int32()),
         pa.array([p.shape[2] for p in pixels], pa.int32()),
         pa.array(["RGB"] * len(pixels), pa.string()),
         pa.array([p.tobytes() for p in pixels], pa.binary())],
        fields=list(IMAGE_ARROW_TYPE))


def pixels_of(images: pa.StructArray) -> list[np.ndarray]:
    """Read-only ``(H, W, C)`` uint8 views of the image struct's data."""
    heights = images.field("height").to_pylist()
    widths = images.field("width").to_pylist()
    channels = images.field("nChannels").to_pylist()
    return [np.frombuffer(data, np.uint8).reshape(h, w, c)
            for data, h, w, c in zip(images.field("data").to_pylist(), heights, widths, channels)]


def histograms(values: list[np.ndarray]) -> pa.Array:
    return pa.array([v.astype(np.int32) for v in values], HISTOGRAM)


# --------------------------------------------------------------------------- tasks, one per 64 rows


def task_stg_files(args) -> int:
    index, out, root, files = args
    columns = {name: [] for name in SCHEMAS["stg_files"].names}
    for full in files:
        with open(full, "rb") as handle:
            content = handle.read()
        stat = os.stat(full)
        rel = os.path.relpath(full, root)
        parts_ = rel.split(os.sep)
        columns["path"].append("file:" + full)
        columns["relative_path"].append(rel.replace(os.sep, "/"))
        columns["label"].append(parts_[0] if len(parts_) > 1 else None)
        columns["size_bytes"].append(stat.st_size)
        columns["modified_at"].append(datetime.fromtimestamp(stat.st_mtime, timezone.utc))
        columns["content_sha256"].append(hashlib.sha256(content).hexdigest())
    return write(pa.table(columns, schema=SCHEMAS["stg_files"]), Path(out), index)


def task_images_resized(args) -> tuple[int, int]:
    index, out, refs = args
    rows = read_rows(refs, ["path", "label", "size_bytes", "modified_at", "content_sha256"])
    keep, pixels, widths, heights, hists, stats, hashes = [], [], [], [], [], [], []
    errors = 0
    for i, path in enumerate(rows.column("path").to_pylist()):
        with open(path[len("file:"):], "rb") as handle:
            content = handle.read()
        try:
            p, width, height = decode.decode_resize_sized(content, IMAGE_SIZE, IMAGE_SIZE, RESIZE_MODE, INTERPOLATION,
                                                          "RGB", decode.DEFAULT_MAX_PIXELS)
        except decode.ImageDecodeError:
            errors += 1
            continue
        keep.append(i)
        pixels.append(p)
        widths.append(width)
        heights.append(height)
        hists.append(features.histogram_counts(p, HISTOGRAM_BINS))
        stats.append(features.image_stats(p))
        hashes.append(features.phash(p))
    rows = rows.take(pa.array(keep, pa.int64()))
    table = pa.table({
        "path": rows.column("path"), "label": rows.column("label"), "size_bytes": rows.column("size_bytes"),
        "modified_at": rows.column("modified_at"), "content_sha256": rows.column("content_sha256"),
        "width": pa.array(widths, pa.int32()), "height": pa.array(heights, pa.int32()),
        "image": image_array(pixels, rows.column("path").to_pylist()),
        "color_histogram": histograms(hists), "image_stats": pa.array(stats, IMAGE_STATS),
        "phash": pa.array(hashes, pa.int64()),
    }, schema=SCHEMAS["images_resized"])
    return write(table, Path(out), index), errors


def task_image_features(args) -> int:
    index, out, refs = args
    table = read_rows(refs, SCHEMAS["image_features"].names)
    return write(table.cast(SCHEMAS["image_features"]), Path(out), index)


def task_images_augmented(args) -> int:
    index, out, refs, relative_paths = args
    rows = read_rows(refs, ["path", "content_sha256", "image"])
    ops = augment.parse_ops(AUGMENT_OPS)
    paths = rows.column("path").to_pylist()
    shas = rows.column("content_sha256").to_pylist()
    columns = {"path": [], "content_sha256": [], "copy_index": []}
    copies, hists = [], []
    for path, sha, pixels, identity in zip(paths, shas, pixels_of(rows.column("image").combine_chunks()),
                                           relative_paths):
        for j in range(AUGMENT_COPIES):
            copy = augment.augment(pixels, ops, SEED, identity, j)
            columns["path"].append(path)
            columns["content_sha256"].append(sha)
            columns["copy_index"].append(j + 1)
            copies.append(copy)
            hists.append(features.histogram_counts(copy, HISTOGRAM_BINS))
    table = pa.table({**columns, "image": image_array(copies, columns["path"]), "color_histogram": histograms(hists)},
                     schema=SCHEMAS["images_augmented"])
    return write(table, Path(out), index)


def task_set(args) -> int:
    index, out, refs, augmented, labels, label_indices, n_labels = args
    columns = ["path", "content_sha256", "image", "color_histogram"] + (["copy_index"] if augmented else [])
    rows = read_rows(refs, columns)
    n = rows.num_rows
    onehot = [[1 if k == i else 0 for k in range(n_labels)] for i in label_indices]
    table = pa.table({
        "path": rows.column("path"), "content_sha256": rows.column("content_sha256"),
        "label": pa.array(labels, pa.string()), "label_index": pa.array(label_indices, pa.int32()),
        "label_onehot": pa.array(onehot, pa.list_(pa.int32())),
        "copy_index": rows.column("copy_index") if augmented else pa.array(np.zeros(n, np.int32)),
        "image": rows.column("image"), "color_histogram": rows.column("color_histogram"),
    }, schema=SCHEMAS["set"])
    return write(table, Path(out), index)


# --------------------------------------------------------------------------- the main process


def list_files(root: Path) -> list[str]:
    found = []
    for folder, _, names in os.walk(root):
        found.extend(os.path.join(folder, name) for name in names)
    return sorted(found)


TRAIN, VAL = Decimal(str(SPLIT[0])), Decimal(str(SPLIT[1]))  # exact, as the SQL literals are


def round_half_up(value: Decimal) -> int:
    """Spark SQL's ``round`` (half up): 10 images at 0.85 are 9, not Python's 8."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def split_of(label_paths: list[tuple[str, str]]) -> dict[str, str]:
    """train / val / test per path: within each label, ordered by a hash of (seed, relative path) and dealt
    round(n * train) to train, up to round(n * (train + val)) to val, the rest to test."""
    by_label: dict[str, list[tuple[int, str]]] = {}
    for path, relative_path, label in label_paths:
        draw = int.from_bytes(hashlib.sha256(f"{SEED}\0{relative_path}".encode()).digest()[:8], "big")
        by_label.setdefault(label, []).append((draw, path))
    out = {}
    for label, items in by_label.items():
        items.sort()
        n = len(items)
        train_end, val_end = round_half_up(n * TRAIN), round_half_up(n * (TRAIN + VAL))
        for position, (_, path) in enumerate(items):
            out[path] = "train" if position < train_end else "val" if position < val_end else "test"
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="pool processes (default: all CPUs)")
    parser.add_argument("--json", type=Path, help="write the phase times and row counts here")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    root = args.images.resolve()
    out = args.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    folders = {name: out / name for name in ("stg_files", "images_resized", "image_features", "labels", "splits",
                                              "images_augmented") + SETS}
    for folder in folders.values():
        folder.mkdir(parents=True)
    phases: dict[str, float] = {}
    rows: dict[str, int] = {}
    decode_errors = 0

    def phase(name: str, began: float, n: int, note: str = "") -> None:
        phases[name] = time.perf_counter() - began
        rows[name] = n
        print(f"{name:18} {phases[name]:8.2f} s  {n:7d} rows{note}", flush=True)

    with multiprocessing.Pool(args.workers) as pool:
        # stg_files: list, read and hash every file
        began = time.perf_counter()
        files = list_files(root)
        tasks = [(i, str(folders["stg_files"]), str(root), c) for i, c in enumerate(
            files[j:j + CHUNK] for j in range(0, len(files), CHUNK))]
        phase("stg_files", began, sum(pool.imap_unordered(task_stg_files, tasks)))

        # images_resized: decode each file to 224x224, histogram, statistics, pHash
        began = time.perf_counter()
        refs = [(file, i) for file, table in scan(folders["stg_files"], ["path"]) for i in range(table.num_rows)]
        tasks = [(i, str(folders["images_resized"]), c) for i, c in enumerate(chunks(refs))]
        results = list(pool.imap_unordered(task_images_resized, tasks))
        decode_errors = sum(e for _, e in results)
        phase("images_resized", began, sum(n for n, _ in results), f"  ({decode_errors} files did not decode)")

        # image_features: a projection of images_resized
        began = time.perf_counter()
        resized = scan(folders["images_resized"], ["path", "label"])
        refs = [(file, i) for file, table in resized for i in range(table.num_rows)]
        tasks = [(i, str(folders["image_features"]), c) for i, c in enumerate(chunks(refs))]
        phase("image_features", began, sum(pool.imap_unordered(task_image_features, tasks)))

        # labels: each label with its index in name order
        began = time.perf_counter()
        counts: dict[str, int] = {}
        for _, table in scan(folders["images_resized"], ["label"]):
            for label in table.column("label").to_pylist():
                if label is not None:
                    counts[label] = counts.get(label, 0) + 1
        names = sorted(counts)
        label_index = {label: i for i, label in enumerate(names)}
        write(pa.table({"label": names, "label_index": list(range(len(names))), "n_images": [counts[x] for x in names]},
                       schema=SCHEMAS["labels"]), folders["labels"], 0)
        phase("labels", began, len(names))

        # splits: every labelled image, from the seed and its path below IMAGES
        began = time.perf_counter()
        relative = {}
        for _, table in scan(folders["stg_files"], ["path", "relative_path"]):
            relative.update(zip(table.column("path").to_pylist(), table.column("relative_path").to_pylist()))
        labelled = [(path, relative[path], label)
                    for _, table in scan(folders["images_resized"], ["path", "label"])
                    for path, label in zip(table.column("path").to_pylist(), table.column("label").to_pylist())
                    if label is not None]
        split = split_of(labelled)
        label_of = {path: label for path, _, label in labelled}
        ordered = sorted(split)
        write(pa.table({"path": ordered, "label": [label_of[p] for p in ordered], "split": [split[p] for p in ordered]},
                       schema=SCHEMAS["splits"]), folders["splits"], 0)
        phase("splits", began, len(ordered))

        # images_augmented: copies of each training image, read from images_resized
        began = time.perf_counter()
        train = [(file, i, path) for file, table in scan(folders["images_resized"], ["path"])
                 for i, path in enumerate(table.column("path").to_pylist()) if split.get(path) == "train"]
        tasks = [(i, str(folders["images_augmented"]), [(f, r) for f, r, _ in c], [relative[p] for _, _, p in c])
                 for i, c in enumerate(train[j:j + CHUNK] for j in range(0, len(train), CHUNK))]
        phase("images_augmented", began, sum(pool.imap_unordered(task_images_augmented, tasks)))

        # train_set, val_set, test_set: originals from images_resized, copies from images_augmented
        originals = [(file, i, path) for file, table in scan(folders["images_resized"], ["path"])
                     for i, path in enumerate(table.column("path").to_pylist())]
        for set_name in SETS:
            began = time.perf_counter()
            name = set_name[:-len("_set")]
            sources = [(False, [r for r in originals if split.get(r[2]) == name])]
            if name == "train":
                copies = [(file, i, path) for file, table in scan(folders["images_augmented"], ["path"])
                          for i, path in enumerate(table.column("path").to_pylist())]
                sources.append((True, copies))
            tasks = []
            for augmented, selected in sources:
                for j in range(0, len(selected), CHUNK):
                    c = selected[j:j + CHUNK]
                    labels = [label_of[p] for _, _, p in c]
                    tasks.append((len(tasks), str(folders[set_name]), [(f, r) for f, r, _ in c], augmented, labels,
                                  [label_index[x] for x in labels], len(names)))
            phase(set_name, began, sum(pool.imap_unordered(task_set, tasks)))

    total = time.perf_counter() - start
    print(f"{'total':18} {total:8.2f} s  ({args.workers} workers, {len(files)} files -> {out})", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"phases": phases, "total": total, "rows": rows, "decode_errors": decode_errors,
                                         "workers": args.workers}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
