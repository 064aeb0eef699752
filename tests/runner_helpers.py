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


# -- processes ---------------------------------------------------------------------------------------


def wait_or_kill(process, seconds: float) -> None:
    """Wait up to `seconds` for `process` to exit, then kill its process group (started with
    start_new_session=True, so its children go too)."""
    import os
    import signal
    import subprocess

    try:
        process.wait(seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


# -- tables as a build leaves them ---------------------------------------------------------------------


def image_struct_array(pixels: np.ndarray, origins: list[str]):
    """Our image struct column (as `udfs.image_struct` documents it) of a (B, H, W, C) uint8 batch,
    built with plain PyArrow."""
    import pyarrow as pa

    count, height, width, channels = pixels.shape
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[channels]
    return pa.StructArray.from_arrays(
        [pa.array(origins), pa.array([height] * count, pa.int32()), pa.array([width] * count, pa.int32()),
         pa.array([channels] * count, pa.int32()), pa.array([mode] * count),
         pa.array([p.tobytes() for p in pixels], pa.binary())],
        names=["origin", "height", "width", "nChannels", "mode", "data"])


# -- mistakes in model and macro templates -----------------------------------------------------------


def template_mistakes() -> list[tuple[dict[str, str], list[str]]]:
    """Projects with a mistake in a template, and what the error message must say: rendering raises it
    (tests/test_render.py) and `compile` prints it and exits 2 (tests/test_project_errors.py)."""
    return [
        # a ref to a model that does not exist
        ({"models/a.sql": "select * from {{ ref('bb') }}", "models/b.sql": "select 1"},
         ["models/a.sql", "'a' refers to 'bb'", "Did you mean 'b'"]),
        ({"models/a.sql": "select * from {{ ref('orderz') }}", "models/orders.sql": "select 1"},
         ["models/a.sql", "'a' refers to 'orderz'", "Did you mean 'orders'"]),
        # a var that is not set
        ({"models/a.sql": "select {{ var('missing') }}"}, ["models/a.sql", "var('missing') is not defined"]),
        ({"models/a.sql": "select {{ var('image_size') }}"}, ["models/a.sql", "var('image_size') is not defined", "--vars"]),
        # Jinja syntax, with the line
        ({"models/a.sql": "select 1\n{% if %}"}, ["models/a.sql:2", "Jinja syntax error"]),
        ({"models/a.sql": "select 1\nfrom x\n{% for %}"}, ["models/a.sql:3", "Jinja syntax error"]),
        # a macro that does not exist
        ({"models/a.sql": "select 1,\n {{ no_such_macro('x') }}", "macros/m.sql": "{% macro no_such_macr() %}{% endmacro %}"},
         ["models/a.sql:2", "'no_such_macro' is undefined", "Did you mean 'no_such_macr'"]),
        ({"models/a.sql": "select {{ cents('x') }}"}, ["models/a.sql:1", "'cents' is undefined"]),
        # config() and source() arguments
        ({"models/a.sql": "{{ config(materalized='view') }} select 1"}, ["unknown config 'materalized'", "materialized"]),
        ({"models/a.sql": "select * from {{ source('raw', 'nope') }}"}, ["source('raw', 'nope')", "not declared"]),
    ]


# A source `raw.images`: the folder data/images of a test project, read as images.
IMAGE_FOLDER_SOURCE = """
    version: 2
    sources:
      - name: raw
        tables:
          - name: images
            format: images
            path: data/images
"""
