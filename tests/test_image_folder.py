"""Whatever a folder holds, every entry ends in stg_images or image_errors and the build goes on.

The listing tests need no Spark; the build tests run the example project on a small folder that
holds, beside real images, the things users' folders do hold: a huge file, a FIFO, links that
lead nowhere or in circles, a name that is not UTF-8, files that vanish mid-build.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imageprep import listing as listing_module
from imageprep.cli import main
from imageprep.listing import list_local, parse_size
from bench.incremental import copy_project
from runner_helpers import read_table

NOT_UTF8 = os.fsdecode(b"caf\xe9.jpg")  # Latin-1 bytes: not valid UTF-8


def _image(path: Path, seed: int = 0) -> Path:
    """A small photo-like image (noise, not one flat colour, which a warning test flags)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def hostile_folder(root: Path) -> Path:
    """Two classes of real images, and one of each kind of entry that is not a plain image file."""
    _image(root / "cats" / "a.jpg")
    _image(root / "dogs" / "b.jpg", 1)
    _image(root / "dogs" / NOT_UTF8, 2)
    with open(root / "cats" / "big.jpg", "wb") as handle:
        handle.truncate(1 << 30)  # 1 GB, sparse: costs no disk, and must never be read
    os.mkfifo(root / "cats" / "pipe.jpg")
    os.symlink("nowhere.jpg", root / "cats" / "dangling.jpg")
    os.symlink("self.jpg", root / "cats" / "self.jpg")
    os.symlink("..", root / "dogs" / "up")  # a folder link back to the images folder
    os.symlink("a.jpg", root / "cats" / "alias.jpg")  # a link to an image is that image
    return root


# -- the listing ------------------------------------------------------------------------------------


def test_the_listing_names_every_entry_and_why_it_is_not_read(tmp_path):
    folder = hostile_folder(tmp_path / "images")
    listed = list_local(str(folder), recursive=True)
    reasons = {f.uri.rsplit("/", 1)[-1]: f.problem for f in listed.files}
    assert reasons["a.jpg"] is None and reasons["b.jpg"] is None and reasons["alias.jpg"] is None
    assert reasons["big.jpg"].startswith("too large: 1 GB, more than max_file_bytes (64 MB)")
    assert reasons["pipe.jpg"] == "not a regular file (FIFO)"
    assert reasons["dangling.jpg"] == "broken symbolic link (to nowhere.jpg)"
    assert reasons["self.jpg"] == "symbolic link loop"
    assert reasons["up"] == "link to a folder above it (a directory loop)"
    assert listed.has_loops
    # The name that is not UTF-8 is kept, readable, with the bad byte escaped; the OS name opens it.
    odd = next(f for f in listed.files if "caf" in f.uri)
    assert odd.uri.endswith("/dogs/caf\\xe9.jpg") and odd.problem is None
    assert Path(odd.os_path).read_bytes()[:2] == b"\xff\xd8"
    assert len(listed.files) == 9


def test_a_file_that_vanishes_while_the_folder_is_listed_is_not_listed(tmp_path, monkeypatch):
    folder = tmp_path / "images"
    _image(folder / "cats" / "a.jpg")
    gone = _image(folder / "cats" / "b.jpg")
    real_stat, deleted = os.stat, []

    def stat_after_delete(path, *args, **kwargs):
        if str(path) == str(gone) and not deleted:
            os.unlink(gone)  # deleted between the folder's listing and the file's stat
            deleted.append(gone)
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(listing_module.os, "stat", stat_after_delete)
    listed = list_local(str(folder), recursive=True)
    assert deleted and [f.uri.rsplit("/", 1)[-1] for f in listed.files] == ["a.jpg"]


def test_max_file_bytes_reads_sizes_as_users_write_them():
    assert parse_size("64MB") == parse_size("64 MiB") == parse_size(64 << 20) == 64 << 20
    assert parse_size("1.5g") == 3 << 29
    with pytest.raises(ValueError, match="max_file_bytes must be a size"):
        parse_size("big")


# -- builds -----------------------------------------------------------------------------------------


def build(project: Path, images: Path, *extra: str) -> int:
    return main(["build", "--project-dir", str(project), "--vars",
                 json.dumps({"images_path": str(images), "image_size": 16, "augment_copies": 1,
                             "min_images_per_class": 1}), *extra])


@pytest.fixture(scope="module")
def hostile_build(spark, tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    images = hostile_folder(base / "images")
    project = copy_project(base, with_sample_images=False)
    return project, images, build(project, images)


def test_a_folder_of_odd_entries_builds_and_every_entry_is_accounted_for(hostile_build):
    project, images, code = hostile_build
    assert code == 0
    files = read_table(project, "stg_files")
    usable, errors = read_table(project, "stg_images"), read_table(project, "image_errors")
    names = lambda paths: sorted(p.rsplit("/", 1)[-1] for p in paths)  # noqa: E731
    assert names(files["path"]) == sorted(["a.jpg", "alias.jpg", "b.jpg", "caf\\xe9.jpg", "big.jpg", "pipe.jpg",
                                           "dangling.jpg", "self.jpg", "up"])
    # Every entry is in exactly one of the two tables.
    assert sorted(usable["path"] + errors["path"]) == sorted(files["path"])
    assert names(usable["path"]) == ["a.jpg", "alias.jpg", "b.jpg", "caf\\xe9.jpg"]
    reasons = dict(zip(names(errors["path"]), [r for _, r in sorted(zip(errors["path"], errors["reason"]))]))
    assert reasons["big.jpg"].startswith("too large") and "max_file_bytes" in reasons["big.jpg"]
    assert reasons["pipe.jpg"] == "not a regular file (FIFO)"
    assert reasons["up"].endswith("(a directory loop)")
    assert reasons["dangling.jpg"].startswith("broken symbolic link")
    # The file the big one is never read: no hash, no content anywhere.
    big = files["path"].index(next(p for p in files["path"] if p.endswith("/big.jpg")))
    assert files["content_sha256"][big] is None and files["size_bytes"][big] == 1 << 30


def test_an_image_whose_name_is_not_utf8_is_decoded_under_its_escaped_path(hostile_build):
    project, images, _ = hostile_build
    resized = read_table(project, "images_resized")
    odd = [i for i, p in enumerate(resized["path"]) if p.endswith("caf\\xe9.jpg")]
    assert len(odd) == 1
    pixels = resized["image"][odd[0]]
    assert (pixels["height"], pixels["width"]) == (16, 16)
    assert resized["label"][odd[0]] == "dogs"


def test_a_second_build_of_the_odd_folder_changes_nothing(hostile_build, capsys):
    project, images, _ = hostile_build
    errors_before = read_table(project, "image_errors")
    capsys.readouterr()
    assert build(project, images) == 0
    out = capsys.readouterr().out
    assert re.search(r"^Finished \d+ nodes in [\d.]+s: \d+ unchanged$", out, re.MULTILINE), out
    assert sorted(read_table(project, "image_errors")["path"]) == sorted(errors_before["path"])


def test_an_images_path_that_is_a_file_is_named_as_such(spark, tmp_path, capsys):
    project = copy_project(tmp_path, with_sample_images=False)
    not_a_folder = _image(tmp_path / "one.jpg")
    assert build(project, not_a_folder) == 2
    out = capsys.readouterr().out
    assert f"the image folder {not_a_folder} is a file, not a folder" in out


# -- files that go away during a build ---------------------------------------------------------------


# The models that account for every file, and the ones they read: what the tests of files that
# vanish mid-build need, without the datasets downstream.
STAGING = ("--select", "+stg_images", "+image_errors")


def accounted_for(project: Path, images: Path) -> None:
    """The tables agree with the folder: stg_files lists exactly the entries on disk, and each is in
    stg_images or image_errors."""
    on_disk = sorted("file:" + str(p) for p in images.rglob("*") if p.is_file())
    files = read_table(project, "stg_files")
    assert sorted(files["path"]) == on_disk
    usable, errors = read_table(project, "stg_images"), read_table(project, "image_errors")
    assert sorted(usable["path"] + errors["path"]) == on_disk


@pytest.fixture
def plain_folder(tmp_path):
    images = tmp_path / "images"
    for i in range(3):
        _image(images / "cats" / f"c{i}.jpg", i)
        _image(images / "dogs" / f"d{i}.jpg", 10 + i)
    return images


def test_a_file_deleted_between_two_models_is_treated_as_deleted(spark, tmp_path, plain_folder, capsys, monkeypatch):
    import imageprep.node_runner as node_runner

    project = copy_project(tmp_path / "project", with_sample_images=False)
    doomed = plain_folder / "dogs" / "d1.jpg"
    real = node_runner.materialize_model

    def then_delete(spark, model, *args, **kwargs):
        written = real(spark, model, *args, **kwargs)
        if model.name == "stg_files" and doomed.exists():
            doomed.unlink()  # stg_files has its row; images_resized will not find the file
        return written

    monkeypatch.setattr(node_runner, "materialize_model", then_delete)
    capsys.readouterr()
    assert build(project, plain_folder, *STAGING) == 0
    out = capsys.readouterr().out
    assert "1 file went away during the build" in out
    accounted_for(project, plain_folder)


def test_a_file_deleted_after_the_listing_is_treated_as_deleted(spark, tmp_path, plain_folder, capsys, monkeypatch):
    import imageprep.sources as sources_module

    project = copy_project(tmp_path / "project", with_sample_images=False)
    assert build(project, plain_folder, *STAGING) == 0
    # Two new files; one is deleted right after the build lists the folder, before Spark opens it.
    _image(plain_folder / "cats" / "new1.jpg", 21)
    doomed = _image(plain_folder / "cats" / "new2.jpg", 22)
    real = sources_module.list_files

    def listed_then_deleted(*args, **kwargs):
        listing = real(*args, **kwargs)
        if doomed.exists():
            doomed.unlink()
        return listing

    monkeypatch.setattr(sources_module, "list_files", listed_then_deleted)
    capsys.readouterr()
    assert build(project, plain_folder, *STAGING) == 0
    assert "1 file went away during the build" in capsys.readouterr().out
    accounted_for(project, plain_folder)
    assert any(p.endswith("/cats/new1.jpg") for p in read_table(project, "stg_images")["path"])


def test_an_empty_images_folder_builds_with_a_warning_naming_it(spark, tmp_path, capsys):
    project = copy_project(tmp_path / "project", with_sample_images=False)
    empty = tmp_path / "nothing_here"
    empty.mkdir()
    capsys.readouterr()
    code = build(project, empty)
    captured = capsys.readouterr()
    assert f"the image folder {empty} holds no files" in captured.out + captured.err
    assert read_table(project, "stg_files")["path"] == [] and code in (0, 1)
