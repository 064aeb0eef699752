"""Helpers shared by test files: small projects in temporary folders, the example project's
tables, and images made in memory."""
from __future__ import annotations

import io
import shutil
import socket
import textwrap
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from bench.incremental import copy_project
from imageprep.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
# The example project's tables, in build order.
TABLES = ["stg_images", "image_errors", "images_resized", "image_features", "labels", "near_duplicates",
          "image_groups", "splits", "images_augmented", "train_set", "val_set", "test_set", "ml_features"]


def write_project(root: Path, files: dict[str, str]) -> Path:
    """Write `files` (path -> text) under root; a project.yml is added when none is given."""
    files = {"project.yml": "name: demo\ntargets:\n  local:\n    master: 'local[2]'\n", **files}
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


def copy_fixture(name: str, dest: Path) -> Path:
    target = dest / name
    shutil.copytree(FIXTURES / name, target, ignore=shutil.ignore_patterns("target"))
    return target


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run `python runner.py ARGS` in this process (sharing the test run's SparkSession)."""
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def relative_to(listed_path: str, root: Path) -> str:
    """`listed_path` (as Spark lists it, without `file:`) relative to `root`.

    Spark keeps symlinks in the paths it lists, so the root may appear as given or resolved.
    """
    for prefix in (root.absolute().as_posix(), root.resolve().as_posix()):
        marker = prefix.rstrip("/") + "/"
        if marker in listed_path:
            return listed_path.split(marker, 1)[1]
    raise AssertionError(f"{listed_path} is not under {root}")


def parquet_inodes(table: Path) -> set[int]:
    """Inodes of a table's Parquet files (through its symlink): equal inodes mean kept, not rewritten."""
    return {p.stat().st_ino for p in table.resolve().rglob("*.parquet")}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- the example project -----------------------------------------------------------------------------


def copy_example(dest: Path) -> Path:
    return copy_project(dest, with_sample_images=True)


def read_table(project: Path, table: str) -> dict:
    """A built table of `project`'s warehouse, as columns."""
    return pq.read_table(project / "target/warehouse" / table).to_pydict()


def rows_of(table: dict) -> list[str]:
    """Every row, bytes included, in a canonical order: equal lists mean equal tables."""
    columns = sorted(table)
    return sorted(repr([table[c][i] for c in columns]) for i in range(len(table[columns[0]])))


# -- images ------------------------------------------------------------------------------------------


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def photo_like(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth gradients plus a little texture: what JPEG and resizing treat like a photo."""
    y, x = np.mgrid[0:height, 0:width]
    noise = np.random.default_rng(seed).normal(0, 6, (height, width))
    channels = [128 + 100 * np.sin(x / 37.0 + k) * np.cos(y / 23.0 - k) + noise for k in range(3)]
    return np.clip(np.stack(channels, axis=2), 0, 255).astype(np.uint8)


def write_id_row_groups(folder: Path, row_groups: list[list[int]], first_id: int = 0, *, with_path: bool = True,
                        file_suffix: str = "") -> int:
    """Parquet files of consecutive ids, one file per entry of `row_groups` and one row group per size in
    it: `label_index` the id, `feature` [id] (and `path` img/<id>.jpg). Returns the next id."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    row = first_id
    for f, groups in enumerate(row_groups):
        ids = list(range(row, row + sum(groups)))
        columns = {"path": [f"img/{i}.jpg" for i in ids]} if with_path else {}
        table = pa.table({**columns, "label_index": pa.array(ids, pa.int32()),
                          "feature": pa.array([[float(i)] for i in ids], pa.list_(pa.float32()))})
        with pq.ParquetWriter(folder / f"part-{f:05d}{file_suffix}.parquet", table.schema) as writer:
            at = 0
            for size in groups:
                writer.write_table(table.slice(at, size))
                at += size
        row += len(ids)
    return row
