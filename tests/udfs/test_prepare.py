"""prepare_image: decode_resize + normalize + color_histogram + the original size, in one call."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from runner_helpers import encode, photo_like
from udfs.kernels import decode, features, normalize, prepare


def files() -> dict[str, bytes]:
    """A large JPEG (drafted), a small one (not), a grayscale JPEG, a rotated JPEG, an RGBA PNG."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return {
        "large.jpg": encode(Image.fromarray(photo_like(427, 640)), "JPEG", quality=90),
        "small.jpg": encode(Image.fromarray(photo_like(20, 30, 1)), "JPEG", quality=90),
        "gray.jpg": encode(Image.fromarray(photo_like(300, 200, 2)[:, :, 0]), "JPEG"),
        "rotated.jpg": encode(Image.fromarray(photo_like(427, 300, 3)), "JPEG", exif=exif),
        "rgba.png": encode(Image.fromarray(np.dstack([photo_like(50, 70, 4), np.full((50, 70), 128, np.uint8)])),
                           "PNG"),
    }


@pytest.mark.parametrize("name", sorted(files()))
@pytest.mark.parametrize("resize_mode", ["stretch", "cover", "fit"])
def test_prepare_equals_the_separate_kernels(name, resize_mode):
    content = files()[name]
    done = prepare.prepare(content, 56, 64, resize_mode, "bilinear", "imagenet", 16)
    pixels = decode.decode_resize(content, 56, 64, resize_mode, "bilinear")
    np.testing.assert_array_equal(done.pixels, pixels)
    full = decode.decode(content)
    assert (done.width, done.height) == (full.shape[1], full.shape[0])
    np.testing.assert_array_equal(done.tensor, normalize.normalize(pixels, "imagenet"))
    assert done.tensor.dtype == np.float32 and done.tensor.shape == (3, 56, 64)
    np.testing.assert_array_equal(done.histogram, features.color_histogram(pixels, 16, False))
    assert done.histogram.dtype.kind == "i" and done.histogram.sum() == 3 * 56 * 64
    assert done.stats == features.image_stats(pixels)
    assert done.phash == features.phash(pixels)


def test_rotated_jpeg_reports_the_upright_size():
    done = prepare.prepare(files()["rotated.jpg"], 32, 32)
    assert (done.width, done.height) == (427, 300)  # stored 300 wide, 427 high; orientation 6 turns it


def test_no_normalization_or_no_bins_skip_that_part():
    done = prepare.prepare(files()["small.jpg"], 8, 8, normalization=None, bins=None)
    assert done.tensor is None and done.histogram is None and done.pixels.shape == (8, 8, 3)


def test_bad_files_raise_the_reason_image_error_gives():
    content = files()["large.jpg"]
    for bad in (b"", b"not an image", content[: len(content) // 2]):
        with pytest.raises(decode.ImageDecodeError) as caught:
            prepare.prepare(bad, 8, 8)
        assert str(caught.value) == decode.image_error(bad)


def test_bad_arguments_name_the_valid_values():
    content = files()["small.jpg"]
    with pytest.raises(ValueError, match="valid: zero_one, minus_one_one, standard, imagenet"):
        prepare.prepare(content, 8, 8, normalization="imgnet")
    with pytest.raises(ValueError, match="normalize\\(image, 'custom', mean, std\\)"):
        prepare.prepare(content, 8, 8, normalization="custom")
    with pytest.raises(ValueError, match="bins must be an integer from 1 to 256"):
        prepare.prepare(content, 8, 8, bins=0)
    with pytest.raises(ValueError, match="valid modes: stretch, fit, cover"):
        prepare.prepare(content, 8, 8, "squash")


# --------------------------------------------------------------------------- through Spark


@pytest.fixture(scope="module")
def prep_files(spark, tmp_path_factory):
    folder = tmp_path_factory.mktemp("prepare")
    for name, content in files().items():
        (folder / name).write_bytes(content)
    (folder / "notes.txt").write_text("not an image")
    frame = spark.read.format("binaryFile").load(str(folder))
    frame.createOrReplaceTempView("prep_files")
    return folder


def test_prepare_image_in_sql_equals_the_separate_functions(spark, prep_files):
    rows = spark.sql("""
        SELECT path, p, d, i, n, h, e
        FROM (SELECT path,
                     prepare_image(content, path, 40, 48, 'cover', 'bilinear', 'imagenet', 8) AS p,
                     decode_resize(content, path, 40, 48, 'cover', 'bilinear') AS d,
                     image_info(content) AS i,
                     normalize(decode_resize(content, path, 40, 48, 'cover', 'bilinear'), 'imagenet') AS n,
                     color_histogram(decode_resize(content, path, 40, 48, 'cover', 'bilinear'), 8) AS h,
                     image_error(content, path) AS e
              FROM prep_files)""").collect()
    assert len(rows) == 6
    for row in rows:
        p = row["p"]
        if row["e"] is not None:
            assert p["error"] == row["e"]
            assert all(p[f] is None for f in ("width", "height", "image", "tensor", "tensor_shape", "histogram"))
            continue
        assert p["error"] is None
        assert p["image"] == row["d"]
        assert p["image"]["origin"] == row["path"]
        assert (p["width"], p["height"]) == (row["i"]["width"], row["i"]["height"])
        assert p["tensor"] == row["n"]
        assert p["tensor_shape"] == [3, 40, 48]
        assert p["histogram"] == [int(v) for v in row["h"]]
        pixels = np.frombuffer(row["d"]["data"], np.uint8).reshape(40, 48, 3)
        assert p["image_stats"].asDict() == features.image_stats(pixels)
        assert p["phash"] == features.phash(pixels)


def test_prepare_augmented_equals_augment_copies_and_their_histograms(spark, prep_files):
    ops = "hflip(p=0.5); rotate(10); brightness(0.3)"
    rows = spark.sql(f"""
        SELECT path, prepare_augmented(d, '{ops}', 7, 3, 'key/' || path, 16) AS p,
               augment_copies(d, '{ops}', 7, 3, 'key/' || path) AS a,
               prepare_augmented(d, '{ops}', 7, 2, NULL, NULL) AS bare
        FROM (SELECT path, decode_resize(content, path, 40, 48, 'cover') AS d FROM prep_files)""").collect()
    assert len(rows) == 6
    for row in rows:
        if row["a"] is None:  # not an image: NULL in, NULL out
            assert row["p"] is None and row["bare"] is None
            continue
        assert [c["image"] for c in row["p"]] == list(row["a"]) and len(row["a"]) == 3
        for copy in row["p"]:
            pixels = np.frombuffer(copy["image"]["data"], np.uint8).reshape(40, 48, 3)
            assert copy["histogram"] == features.histogram_counts(pixels, 16).tolist()
        assert [c["histogram"] for c in row["bare"]] == [None, None]


def test_prepare_image_defaults_and_null_parts(spark, prep_files):
    row = spark.sql("""
        SELECT prepare_image(content, path, 16, 16) AS defaults,
               prepare_image(content, path, 16, 16, 'stretch', 'bilinear', NULL, NULL) AS bare
        FROM prep_files WHERE path LIKE '%large.jpg'""").first()
    content = files()["large.jpg"]
    expected = prepare.prepare(content, 16, 16)
    assert row["defaults"]["image"]["data"] == expected.pixels.tobytes()
    assert row["defaults"]["tensor"] == expected.tensor.astype("<f4").tobytes()
    assert len(row["defaults"]["histogram"]) == 96
    assert row["bare"]["tensor"] is None and row["bare"]["tensor_shape"] is None and row["bare"]["histogram"] is None
    assert row["bare"]["image"]["data"] == expected.pixels.tobytes()


def test_prepare_image_bad_argument_fails_the_query(spark, prep_files):
    with pytest.raises(Exception, match="unknown normalization 'imgnet'"):
        spark.sql("SELECT prepare_image(content, path, 8, 8, 'stretch', 'bilinear', 'imgnet') FROM prep_files").collect()
