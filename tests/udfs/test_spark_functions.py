"""The SQL functions through Spark: registration, catalog, arguments, NULLs, and results equal to the kernels."""
from __future__ import annotations

import ast
import hashlib
import inspect
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import udfs
from udfs import catalog, reference, spark_functions
from udfs.kernels import augment as augment_kernel
from udfs.kernels import decode, features, normalize as normalize_kernel

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def pixels_of(row) -> np.ndarray:
    """(H, W, C) pixels of a collected image struct (our RGB struct)."""
    return np.frombuffer(row["data"], np.uint8).reshape(row["height"], row["width"], row["nChannels"])


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    """A few small files: RGB, gray and RGBA PNGs, a JPEG, and one text file that is not an image."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(7)
    Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(folder / "rgb.png")
    Image.fromarray(rng.integers(0, 256, (10, 8), dtype=np.uint8)).save(folder / "gray.png")
    Image.fromarray(rng.integers(0, 256, (9, 11, 4), dtype=np.uint8)).save(folder / "rgba.png")
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(folder / "photo.jpg", quality=90)
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def views(spark, image_dir):
    """Temporary views `files(path, content)`, `images(path, image)` and `hashes(path, hash)` for the examples."""
    spark.read.format("binaryFile").load(str(image_dir)).createOrReplaceTempView("files")
    spark.sql("SELECT path, decode_image(content, path) AS image FROM files WHERE path NOT LIKE '%.txt'") \
        .createOrReplaceTempView("images")
    spark.sql("""SELECT path, phash(image) AS hash FROM images UNION ALL
                 SELECT concat(path, '.bigger'), phash(resize(image, image.height * 2, image.width * 2)) FROM images""") \
        .createOrReplaceTempView("hashes")  # each image and a near-duplicate of it
    return spark


def by_name(rows) -> dict:
    return {Path(row["path"]).name: row for row in rows}


# --------------------------------------------------------------------------- catalog and registration


def test_register_all_is_idempotent_and_registers_the_catalog(spark):
    names = udfs.register_all(spark)
    assert udfs.register_all(spark) == names == [spec.name for spec in udfs.FUNCTIONS]
    registered = {row[0] for row in spark.sql("SHOW USER FUNCTIONS").collect()}
    assert set(names) <= {name.split(".")[-1] for name in registered}


def test_wrapper_defaults_are_the_catalog_sql_defaults():
    for spec in udfs.FUNCTIONS:
        if spec.wrapper is None:
            continue
        parameters = list(inspect.signature(spec.implementation()).parameters.values())
        assert len(parameters) == len(spec.params), spec.name
        for param, python in zip(spec.params, parameters):
            if param.default is None:
                assert python.default is inspect.Parameter.empty, (spec.name, param.name)
            else:
                assert python.default == param.python_default(), (spec.name, param.name)


def test_docs_functions_md_is_generated_from_the_catalog():
    committed = (PROJECT_ROOT / "docs" / "functions.md").read_text(encoding="utf-8")
    assert committed == reference.render(), "docs/functions.md is stale: run python -m udfs.reference > docs/functions.md"


def test_function_source_files_cover_every_kernel_a_function_imports():
    for spec in udfs.FUNCTIONS:
        files = udfs.function_source_files(spec.name)
        assert all(path.is_file() for path in files), spec.name
        listed = set(spec.kernels)
        for module in spec.kernels:
            tree = ast.parse(catalog.module_path(module).read_text())
            imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
            imported |= {f"udfs.kernels.{alias.name}" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                         and node.module == "udfs.kernels" for alias in node.names}
            missing = {m for m in imported if m and m.startswith("udfs.kernels.")} - listed
            assert not missing, f"{spec.name}: {module} imports {missing}, not in the catalog entry"
    assert catalog.module_path("udfs.kernels.decode") in udfs.function_source_files("decode_image")


def test_every_catalog_example_runs(views):
    """Each documented example runs on the test views and gives a row that is not all NULL.

    All examples run as one union (rows as JSON): one Spark job instead of nineteen.
    """
    from functools import reduce

    from pyspark.sql import DataFrame
    from pyspark.sql import functions as F

    parts = [views.sql(spec.example).select(F.lit(spec.name).alias("name"), F.to_json(F.struct("*")).alias("row"))
             for spec in udfs.FUNCTIONS]
    rows = reduce(DataFrame.unionAll, parts).collect()
    useful = {row["name"] for row in rows if row["row"] != "{}"}  # to_json leaves out NULL fields
    assert useful == {spec.name for spec in udfs.FUNCTIONS}


# --------------------------------------------------------------------------- decoding through Spark


def test_decode_image_and_image_error_agree(views, image_dir):
    rows = by_name(views.sql("""
        SELECT path, decode_image(content, path) AS image, image_error(content, path) AS error,
               try_decode_image(content, path, 'L') AS both, decode_image(content, path, max_pixels => 100) AS small
        FROM files""").collect())
    assert rows["notes.txt"]["image"] is None
    assert rows["notes.txt"]["error"] == rows["notes.txt"]["both"]["error"] == "not an image: cannot identify image file"
    for name in ("rgb.png", "gray.png", "rgba.png", "photo.jpg"):
        row = rows[name]
        assert row["error"] is None and row["both"]["error"] is None
        assert row["image"]["origin"] == row["path"] and row["image"]["mode"] == "RGB"
        assert row["both"]["image"]["mode"] == "L" and row["both"]["image"]["nChannels"] == 1
        expected = np.asarray(Image.open(image_dir / name).convert("RGBA").convert("RGB")) if name != "rgba.png" else None
        if expected is not None:
            np.testing.assert_array_equal(pixels_of(row["image"]), expected)
    assert rows["photo.jpg"]["small"] is None  # 600 pixels > max_pixels 100


def test_null_content_is_an_empty_file_and_null_images_give_null(views):
    row = views.sql(f"""
        SELECT decode_image(CAST(NULL AS BINARY), 'x') AS image, image_error(CAST(NULL AS BINARY), 'x') AS error,
               image_info(CAST(NULL AS BINARY)) AS info
        """).first()
    assert row["image"] is None and row["error"] == "empty file" and row["info"] is None
    null_image = f"CAST(NULL AS {udfs.catalog.IMAGE_DDL})"
    results = views.sql(f"""
        SELECT resize({null_image}, 4, 4), center_crop({null_image}, 2, 2), to_grayscale({null_image}),
               encode_image({null_image}), normalize({null_image}), tensor_shape({null_image}),
               color_histogram({null_image}), image_stats({null_image}), phash({null_image}),
               augment({null_image}, 'hflip', 1), augment_copies({null_image}, 'hflip', 1, 2),
               tensor_to_array(CAST(NULL AS BINARY)), array_to_tensor(CAST(NULL AS ARRAY<FLOAT>)),
               hamming(NULL, 1)""").first()
    assert list(results) == [None] * len(results)


def test_spark_image_source_struct_is_read_in_rgb_order(views, image_dir):
    """Spark's own image reader gives BGR data and an integer mode; our functions must undo both."""
    source = views.read.format("image").load(str(image_dir / "*.png"))
    source.createOrReplaceTempView("spark_images")
    rows = by_name(views.sql("""
        SELECT image.origin AS path, image.mode AS spark_mode, center_crop(image, image.height, image.width) AS same,
               image_stats(image).mean AS mean
        FROM spark_images""").collect())
    assert {rows[n]["spark_mode"] for n in rows} == {0, 16, 24}
    for name, mode in (("rgb.png", "RGB"), ("gray.png", "L"), ("rgba.png", "RGBA")):
        expected = np.asarray(Image.open(image_dir / name))
        expected = expected[:, :, None] if expected.ndim == 2 else expected
        got = pixels_of(rows[name]["same"])
        assert rows[name]["same"]["mode"] == mode
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_allclose(rows[name]["mean"], expected.reshape(-1, expected.shape[2]).mean(axis=0))


def test_sql_defaults_and_named_arguments(views, image_dir):
    row = views.sql("""
        SELECT resize(image, 5, 7) AS plain, resize(image, 5, 7, interpolation => 'nearest') AS nearest,
               resize(image, 6, 6, 'fit', pad_color => '#ff0000') AS fit
        FROM images WHERE path LIKE '%rgb.png'""").first()
    source = Image.open(image_dir / "rgb.png")
    np.testing.assert_array_equal(pixels_of(row["plain"]), np.asarray(source.resize((7, 5), Image.Resampling.BILINEAR)))
    np.testing.assert_array_equal(pixels_of(row["nearest"]), np.asarray(source.resize((7, 5), Image.Resampling.NEAREST)))
    assert pixels_of(row["fit"])[0, 0].tolist() == [255, 0, 0]  # 12x16 fit in 6x6: rows 0 and 5 are padding


def test_bad_argument_fails_the_query_with_the_valid_values(views):
    with pytest.raises(Exception, match="valid modes: stretch, fit, cover"):
        views.sql("SELECT resize(image, 8, 8, 'squash') FROM images").collect()
    with pytest.raises(Exception, match="unknown augmentation op 'hflipp'"):
        views.sql("SELECT augment(image, 'hflipp', 1) FROM images").collect()


def test_decode_resize_equals_its_kernel(views, image_dir):
    row = views.sql("""
        SELECT decode_resize(content, path, 8, 10, 'cover') AS cover,
               decode_resize(content, path, 8, 10, 'fit', 'lanczos', 'L') AS fit
        FROM files WHERE path LIKE '%.jpg'""").first()
    content = (image_dir / "photo.jpg").read_bytes()
    np.testing.assert_array_equal(pixels_of(row["cover"]), decode.decode_resize(content, 8, 10, "cover"))
    np.testing.assert_array_equal(pixels_of(row["fit"]), decode.decode_resize(content, 8, 10, "fit", "lanczos", "L"))


# --------------------------------------------------------------------------- tensors and features


def test_normalize_and_tensor_conversions(views, image_dir):
    row = views.sql("""
        SELECT normalize(image, 'imagenet') AS chw, normalize(image, layout => 'HWC') AS hwc,
               tensor_shape(image) AS shape, tensor_shape(image, 'HWC') AS hwc_shape,
               tensor_to_array(normalize(image, 'custom', array(0.5F, 0.5F, 0.5F), array(0.25F, 0.25F, 0.25F))) AS values,
               array_to_tensor(array(1.5F, CAST(NULL AS FLOAT), -2.0F)) AS back
        FROM images WHERE path LIKE '%rgb.png'""").first()
    source = np.asarray(Image.open(image_dir / "rgb.png"))
    assert row["shape"] == [3, 12, 16] and row["hwc_shape"] == [12, 16, 3]
    expected = (source.transpose(2, 0, 1) / 255 - np.array([0.485, 0.456, 0.406])[:, None, None]) \
        / np.array([0.229, 0.224, 0.225])[:, None, None]
    np.testing.assert_allclose(np.frombuffer(row["chw"], "<f4").reshape(row["shape"]), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.frombuffer(row["hwc"], "<f4").reshape(row["hwc_shape"]), source / 255, rtol=1e-6)
    custom = normalize_kernel.normalize(source, "custom", [0.5] * 3, [0.25] * 3)
    np.testing.assert_array_equal(np.array(row["values"], np.float32), custom.reshape(-1))
    back = np.frombuffer(row["back"], "<f4")
    assert back[0] == 1.5 and np.isnan(back[1]) and back[2] == -2.0


def test_histogram_stats_phash_and_hamming(views, image_dir):
    rows = by_name(views.sql("""
        SELECT path, color_histogram(image, 8) AS counts, color_histogram(image, 8, true) AS fractions,
               image_stats(image) AS stats, phash(image) AS hash,
               hamming(phash(image), phash(resize(image, 24, 32, 'stretch', 'bicubic'))) AS near
        FROM images""").collect())
    source = np.asarray(Image.open(image_dir / "rgb.png"))
    row = rows["rgb.png"]
    expected = np.concatenate([np.histogram(source[:, :, c], bins=8, range=(0, 256))[0] for c in range(3)])
    np.testing.assert_array_equal(row["counts"], expected)
    np.testing.assert_allclose(row["fractions"], expected / (12 * 16))
    np.testing.assert_allclose(row["stats"]["std"], source.reshape(-1, 3).std(axis=0))
    assert row["stats"]["min"] == source.reshape(-1, 3).min(axis=0).tolist()
    assert row["hash"] == features.phash(source)
    assert all(r["near"] <= 16 for r in rows.values())  # an upscaled copy stays near
    pairs = [(rows["rgb.png"]["hash"], rows["photo.jpg"]["hash"]), (-1, 0), (5, 5), (-(2**63), 2**63 - 1)]
    sql = " UNION ALL ".join(f"SELECT {i} AS i, hamming(CAST({a} AS BIGINT), CAST({b} AS BIGINT)) AS h"
                             for i, (a, b) in enumerate(pairs))
    got = sorted(views.sql(sql).collect())
    assert [r["h"] for r in got] == [features.hamming(a, b) for a, b in pairs]
    assert got[1]["h"] == 64


# --------------------------------------------------------------------------- augmentation


def test_augment_is_identical_across_partitionings_and_equals_the_kernel(views, image_dir):
    ops = "hflip; rotate(20); brightness(0.3); gaussian_noise(5)"
    query = f"""SELECT path, sha2(augment(image, '{ops}', 7, 1).data, 256) AS digest,
                       augment_copies(image, '{ops}', 7, 3) AS copies, augment(image, '{ops}', 7, 2) AS third
                FROM images"""
    one = by_name(views.sql(query).collect())
    views.table("images").repartition(3).createOrReplaceTempView("images_spread")
    spread = by_name(views.sql(query.replace("FROM images", "FROM images_spread")).collect())
    assert {n: r["digest"] for n, r in one.items()} == {n: r["digest"] for n, r in spread.items()}
    row = one["rgb.png"]
    source = np.asarray(Image.open(image_dir / "rgb.png"))
    direct = augment_kernel.augment(source, augment_kernel.parse_ops(ops), 7, row["third"]["origin"], 1)
    assert row["digest"] == hashlib.sha256(direct.tobytes()).hexdigest()
    assert len(row["copies"]) == 3 and row["copies"][2] == row["third"]
    assert row["copies"][0]["data"] != row["copies"][1]["data"]
    exploded = views.sql(f"""SELECT count(*) AS n, max(copy_index) AS last FROM images
                             LATERAL VIEW posexplode(augment_copies(image, 'vflip', 1, 2)) c AS copy_index, copy""").first()
    assert (exploded["n"], exploded["last"]) == (8, 1)


def test_augment_identity_replaces_the_origin_as_the_key_of_the_random_choices(views, image_dir):
    """An identity (e.g. the path below the images folder) keys the copies instead of the origin, so
    the same image gives the same copies wherever its file is; NULL falls back to the origin."""
    ops = "hflip(p=0.5); rotate(30); gaussian_noise(8)"
    row = views.sql(f"""SELECT image.origin AS origin,
                               augment(image, '{ops}', 3, 1, 'cats/a.png') AS keyed,
                               augment_copies(image, '{ops}', 3, 2, 'cats/a.png') AS copies,
                               augment(image, '{ops}', 3, 1, CAST(NULL AS STRING)) AS by_origin,
                               augment(image, '{ops}', 3, 1) AS default
                        FROM images WHERE image.origin LIKE '%/rgb.png'""").first()
    source = np.asarray(Image.open(image_dir / "rgb.png"))
    parsed = augment_kernel.parse_ops(ops)
    assert row["keyed"]["data"] == augment_kernel.augment(source, parsed, 3, "cats/a.png", 1).tobytes()
    assert row["copies"][1] == row["keyed"]
    assert row["keyed"]["origin"] == row["origin"]  # the copy still says which file it came from
    assert row["by_origin"] == row["default"]
    assert row["default"]["data"] == augment_kernel.augment(source, parsed, 3, row["origin"], 1).tobytes()
    assert row["keyed"]["data"] != row["default"]["data"]


def test_array_to_vector_gives_spark_ml_vectors(spark):
    from pyspark.ml.linalg import DenseVector, VectorUDT

    frame = spark.sql("SELECT array_to_vector(array(1d, 2.5d, 0d)) AS v, array_to_vector(CAST(NULL AS ARRAY<DOUBLE>)) AS n")
    assert isinstance(frame.schema["v"].dataType, VectorUDT)
    row = frame.first()
    assert row.v == DenseVector([1.0, 2.5, 0.0]) and row.n is None
