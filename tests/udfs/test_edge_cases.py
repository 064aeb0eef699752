"""Every file of the shared edge_cases/ folder gets its expected outcome, through Spark end to end.

expected.json is the reference: `ok` files decode to the listed upright size, `reject`
files give a NULL image and a reason in the right category. Files Spark's `binaryFile`
never lists (zero bytes, hidden names) are checked on the kernel directly.
"""
from __future__ import annotations

import hashlib
import json
from urllib.parse import unquote

import numpy as np
import pytest

from runner_helpers import relative_to
from udfs.kernels import decode

REJECT_CATEGORY = {"truncated.jpg": "truncated image", "empty.jpg": "empty file", "not_an_image.png": "not an image"}
NOT_LISTED_BY_SPARK = {"empty.jpg", ".hidden_image.jpg"}


@pytest.fixture(scope="module")
def expected(edge_cases_dir) -> dict:
    return {case["file"]: case for case in json.loads((edge_cases_dir / "expected.json").read_text())}


@pytest.fixture(scope="module")
def spark_rows(spark, edge_cases_dir) -> dict:
    """One Spark job over the whole folder: relative path -> row."""
    files = spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(str(edge_cases_dir))
    files.createOrReplaceTempView("edge_files")
    rows = spark.sql("""
        SELECT path, d.error, regexp_extract(d.error, '^[a-z ]*[a-z]', 0) AS category, d.image.width, d.image.height, d.image.nChannels, d.image.mode,
               d.image.origin, sha2(d.image.data, 256) AS digest, image_info(content) AS info,
               image_stats(d.image).mean AS mean, image_stats(d.image).max AS max
        FROM (SELECT path, content, try_decode_image(content, path) AS d FROM edge_files)""").collect()
    return {relative_to(unquote(row["path"]), edge_cases_dir): row for row in rows}


def test_spark_lists_everything_but_empty_and_hidden_files(spark_rows, expected):
    assert set(spark_rows) == (set(expected) - NOT_LISTED_BY_SPARK) | {"README.md", "expected.json"}


def test_every_listed_file_gets_its_expected_outcome(spark_rows, expected, edge_cases_dir):
    for name, row in spark_rows.items():
        case = expected.get(name, {"expect": "reject"})  # README.md and expected.json are not images
        if case["expect"] == "reject":
            category = REJECT_CATEGORY.get(name, "not an image")
            assert row["width"] is None and row["error"].startswith(category), (name, row["error"])
            assert row["category"] == category  # the documented way to get the category in SQL
            continue
        width, height = case["size"]
        assert row["error"] is None, (name, row["error"])
        assert (row["width"], row["height"], row["nChannels"], row["mode"]) == (width, height, 3, "RGB"), name
        assert (row["info"]["width"], row["info"]["height"]) == (width, height), name
        assert row["info"]["mode"] == case["mode"], name
        assert unquote(row["origin"]).endswith(name)
        # Spark's result is byte for byte the kernel's.
        pixels = decode.decode((edge_cases_dir / name).read_bytes())
        assert row["digest"] == hashlib.sha256(pixels.tobytes()).hexdigest(), name


def test_pixel_values_of_the_tricky_files(spark_rows):
    assert spark_rows["gray16.png"]["mean"] == pytest.approx([129.06] * 3, abs=0.01)  # clipping would give 255
    assert spark_rows["one_pixel.png"]["mean"] == [168.0, 66.0, 15.0]
    assert spark_rows["exif_orientation_6.jpg"]["info"]["orientation"] == 6
    assert spark_rows["truncated.jpg"]["info"]["width"] == 640  # header fine, data cut: image_info is header-only
    assert spark_rows["rgba.png"]["max"] == [255, 255, 255]  # transparent corners composited on white


def test_transparent_pixels_are_white_and_cmyk_is_not_rgba(edge_cases_dir):
    rgba = decode.decode((edge_cases_dir / "rgba.png").read_bytes())
    assert rgba[0, 0].tolist() == [255, 255, 255]  # a fully transparent corner
    palette = decode.decode((edge_cases_dir / "palette_transparency.png").read_bytes(), "RGBA")
    assert (palette[:, :, 3] == 0).any() and palette.shape[2] == 4
    cmyk = decode.decode((edge_cases_dir / "cmyk.jpg").read_bytes())
    progressive = decode.decode((edge_cases_dir / "progressive.jpg").read_bytes())  # the same coffee photo
    assert cmyk.shape == progressive.shape == (400, 600, 3)
    assert np.abs(cmyk.astype(int) - progressive).mean() < 8


def test_files_spark_never_lists_on_the_kernel(edge_cases_dir, expected):
    assert decode.image_error((edge_cases_dir / "empty.jpg").read_bytes()) == "empty file"
    assert decode.image_error(b"") == "empty file"
    hidden = decode.decode((edge_cases_dir / ".hidden_image.jpg").read_bytes())
    assert hidden.shape[:2][::-1] == tuple(expected[".hidden_image.jpg"]["size"])
