"""near_duplicates (incremental) and image_groups (exact connected components) of the example project.

A few generated images whose pHashes are designed bit by bit, so the distances between them are
known; images arrive (one bridging two groups), are deleted and are rewritten, and after each
incremental build both tables must equal a full build's on the same files and the definition:
every pair within near_duplicate_max_distance (4) bits, and groups that are the exact connected
components of those pairs. Only the models up to image_groups are built.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from bench.incremental import copy_project
from imageprep.cli import main
from runner_helpers import parquet_inodes, read_table, relative_to, rows_of
from udfs.kernels import features, prepare

IMAGE_SIZE = 64
MAX_DISTANCE = 4  # the example's near_duplicate_max_distance

# An orthonormal 32-point DCT-II. pHash resizes the image to 32 x 32 and sets a bit for each of
# the 8 x 8 lowest-frequency DCT coefficients above their median: an image made from 8 x 8
# coefficients of +A (32 of them, the mean among them) and -A has exactly that pattern as its hash.
_N = 32
_DCT = np.sqrt(2 / _N) * np.cos(np.pi * np.arange(_N)[:, None] * (2 * np.arange(_N)[None, :] + 1) / (2 * _N))
_DCT[0] /= np.sqrt(2)


def random_bits(rng) -> np.ndarray:
    """64 hash bits, 32 of them set, the first (the mean) among them."""
    bits = np.zeros(64, dtype=bool)
    bits[0] = True
    bits[1 + rng.choice(63, 31, replace=False)] = True
    return bits


def swapped(bits: np.ndarray, ones: list[int], zeros: list[int]) -> np.ndarray:
    """`bits` with the set bits `ones` cleared and the clear bits `zeros` set: 2 * len(ones) bits apart."""
    out = bits.copy()
    assert out[ones].all() and not out[zeros].any()
    out[ones], out[zeros] = False, True
    return out


def write_image(path: Path, bits: np.ndarray, brighten: int = 0) -> None:
    """A 64 x 64 gray PNG whose pHash is `bits`; `brighten` adds to every pixel (the hash stays)."""
    coefficients = np.zeros((_N, _N))
    coefficients[:8, :8] = np.where(bits.reshape(8, 8), 90.0, -90.0)
    coefficients[0, 0] = 128 * _N
    gray = np.clip(np.round(_DCT.T @ coefficients @ _DCT) + brighten, 0, 255).astype(np.uint8)
    gray = np.repeat(np.repeat(gray, 2, axis=0), 2, axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.stack([gray] * 3, axis=2)).save(path)


def phash_of(path: Path) -> int:
    """The pHash images_resized computes for the file (same kernel, same size)."""
    return prepare.prepare(path.read_bytes(), IMAGE_SIZE, IMAGE_SIZE, "cover", "bilinear", None, None).phash


def as_int(bits: np.ndarray) -> int:
    return int.from_bytes(np.packbits(bits).tobytes(), "big", signed=True)


# -- builds ------------------------------------------------------------------------------------------


def build(project: Path, images: Path, *flags: str) -> dict:
    """Build the example's models up to image_groups, without data tests (the checks below hold the
    tables to their definition); the run's results by name."""
    code = main(["build", "--project-dir", str(project), "--select", "+image_groups",
                 "--indirect-selection", "empty", *flags,
                 "--vars", json.dumps({"images_path": str(images), "image_size": IMAGE_SIZE})])
    results = {r["name"]: r for r in json.loads((project / "target/run_results.json").read_text())["results"]}
    assert code == 0, {n: r.get("message") for n, r in results.items() if r["status"] not in ("success", "pass")}
    return results


def expected_pairs(project: Path) -> list[tuple[str, str, int]]:
    """Every pair of image_features within MAX_DISTANCE bits, by brute force."""
    table = read_table(project, "image_features")
    hashes = sorted(zip(table["path"], table["phash"]))
    return sorted((a, b, features.hamming(x, y)) for i, (a, x) in enumerate(hashes) for b, y in hashes[i + 1:]
                  if features.hamming(x, y) <= MAX_DISTANCE)


def expected_groups(project: Path, pairs) -> list[tuple[str, str, str]]:
    """(path, label, group_id) of every labelled image: its connected component's smallest labelled path."""
    images = read_table(project, "stg_images")
    labels = {p: label for p, label in zip(images["path"], images["label"]) if label is not None}
    neighbours: dict[str, set[str]] = {p: set() for p in images["path"]}
    for a, b, _ in pairs:
        neighbours[a].add(b)
        neighbours[b].add(a)
    rows = []
    for path, label in labels.items():
        component, frontier = {path}, [path]
        while frontier:
            frontier = [n for p in frontier for n in neighbours[p] if n not in component]
            component.update(frontier)
        rows.append((path, label, min(p for p in component if p in labels)))
    return sorted(rows)


def check_tables(project: Path, images: Path, fresh: Path | None = None) -> None:
    """near_duplicates and image_groups of `project` hold what their definition says and, given
    `fresh`, equal a full build's (--full-refresh of `fresh`) on the same files."""
    if fresh is not None:
        build(fresh, images, "--full-refresh")
        for table in ("near_duplicates", "image_groups"):
            assert rows_of(read_table(project, table)) == rows_of(read_table(fresh, table)), table
    pairs = expected_pairs(project)
    near = read_table(project, "near_duplicates")
    assert sorted(zip(near["path_a"], near["path_b"], near["distance"])) == pairs
    shas = dict(zip(*[read_table(project, "image_features")[c] for c in ("path", "content_sha256")]))
    assert near["sha_a"] == [shas[p] for p in near["path_a"]] and near["sha_b"] == [shas[p] for p in near["path_b"]]
    groups = read_table(project, "image_groups")
    assert sorted(zip(groups["path"], groups["label"], groups["group_id"])) == expected_groups(project, pairs)


def groups_by_name(project: Path, images: Path) -> set[frozenset[str]]:
    """The groups of image_groups as sets of paths below the images folder."""
    table = read_table(project, "image_groups")
    found: dict[str, set[str]] = {}
    for path, group in zip(table["path"], table["group_id"]):
        found.setdefault(group, set()).add(relative_to(path, images))
    return {frozenset(g) for g in found.values()}


def read_new_rows(results: dict, project: Path) -> bool:
    """Whether near_duplicates ran its incremental SQL (it reads new_rows() of image_features)."""
    sql = (project / results["near_duplicates"]["compiled_path"]).read_text()
    return "__new_rows__near_duplicates__image_features" in sql


@pytest.fixture
def images(tmp_path) -> tuple[Path, dict]:
    """The images folder and the hash bits of its images: two groups of near-duplicates whose hashes
    are 6 bits apart (more than 4: two groups), one group with an unlabelled image, three loners."""
    rng = np.random.default_rng(3)
    folder = tmp_path / "images"
    one = random_bits(rng)
    ones, zeros = list(np.flatnonzero(one[1:]) + 1), list(np.flatnonzero(~one))
    two = swapped(one, ones[:3], zeros[:3])
    bits = {"one": one, "two": two, "bridge": swapped(one, ones[:1], zeros[:1]),  # 2 bits from one, 4 from two
            **{name: random_bits(rng) for name in ("three", "four", "five")}}
    files = {"cats/one.png": ("one", 0), "cats/one_bright.png": ("one", 12), "dogs/two.png": ("two", 0),
             "cats/two_bright.png": ("two", 12),  # a group across labels
             "cats/three.png": ("three", 0), "aaa_loose.png": ("three", 8),  # unlabelled, its group's smallest path
             "dogs/four.png": ("four", 0), "dogs/five.png": ("five", 0)}
    for name, (hashed, brighten) in files.items():
        write_image(folder / name, bits[hashed], brighten)
        # the design, through the kernel images_resized uses: each file has the hash planned
        assert phash_of(folder / name) == as_int(bits[hashed]), name
    planned = list(bits.values())
    assert [features.hamming(as_int(bits["bridge"]), as_int(b)) for b in (one, two)] == [2, 4]
    assert features.hamming(as_int(one), as_int(two)) == 6
    assert min(features.hamming(as_int(a), as_int(b)) for i, a in enumerate(planned[3:], 3) for b in planned[:i]) > 8
    return folder, bits


def test_near_duplicates_and_groups_follow_arriving_deleted_and_rewritten_images(spark, tmp_path, images):
    folder, bits = images
    project = copy_project(tmp_path / "p")
    fresh = copy_project(tmp_path / "fresh")
    build(project, folder)  # a first build: a full one
    check_tables(project, folder)
    assert groups_by_name(project, folder) == {
        frozenset({"cats/one.png", "cats/one_bright.png"}), frozenset({"cats/two_bright.png", "dogs/two.png"}),
        frozenset({"cats/three.png"}), frozenset({"dogs/four.png"}), frozenset({"dogs/five.png"})}
    near = project / "target/warehouse/near_duplicates"

    # An image 2 bits from `one` and 4 from `two` arrives: its four pairs join the two groups.
    files_before, rows_before = parquet_inodes(near), len(read_table(project, "near_duplicates")["path_a"])
    write_image(folder / "dogs/bridge.png", bits["bridge"])
    results = build(project, folder)
    assert read_new_rows(results, project) and results["near_duplicates"]["rows"] == rows_before + 4
    # The pairs already found stay in the files they were written to; only the new pairs were written.
    assert files_before <= parquet_inodes(near)
    written = [f for f in near.resolve().rglob("*.parquet") if f.stat().st_ino not in files_before]
    assert sum(pq.read_metadata(f).num_rows for f in written) == 4
    check_tables(project, folder, fresh)
    assert frozenset({"cats/one.png", "cats/one_bright.png", "cats/two_bright.png", "dogs/two.png",
                      "dogs/bridge.png"}) in groups_by_name(project, folder)

    # In one build (two would double the time of this test): the bridge is deleted, so its pairs
    # go and the two groups are apart again; one_bright is rewritten as a copy of four (its pair
    # with one must go, a pair with four comes); three is brightened a little (new bytes, and
    # still the same pair with aaa_loose).
    (folder / "dogs/bridge.png").unlink()
    write_image(folder / "cats/one_bright.png", bits["four"], brighten=10)
    write_image(folder / "cats/three.png", bits["three"], brighten=3)
    results = build(project, folder)
    assert read_new_rows(results, project) and results["near_duplicates"]["rows"] == rows_before
    check_tables(project, folder, fresh)
    assert groups_by_name(project, folder) == {
        frozenset({"cats/one.png"}), frozenset({"cats/one_bright.png", "dogs/four.png"}),
        frozenset({"cats/two_bright.png", "dogs/two.png"}), frozenset({"cats/three.png"}),
        frozenset({"dogs/five.png"})}
