"""The example project end to end: the bundled sample, the shared labelled set and the edge cases.

Each build runs in a copy of the project in a temporary folder, on the test run's Spark session.
"""
from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from bench.incremental import compare, copy_project, read_tables
from imageprep.cli import main
from imageprep.training import numpy_batches, table_path
from runner_helpers import TABLES, copy_example, parquet_inodes, read_table, rows_of


def build(project: Path, **vars) -> int:
    args = ["build", "--project-dir", str(project)]
    if vars:
        args += ["--vars", json.dumps(vars)]
    return main(args)


def run_results(project: Path) -> dict:
    return {r["name"]: r for r in json.loads((project / "target/run_results.json").read_text())["results"]}


@pytest.fixture(scope="module")
def sample(spark, tmp_path_factory):
    """The example exactly as `python runner.py build` builds it on a fresh clone."""
    project = copy_example(tmp_path_factory.mktemp("sample"))
    code = build(project)
    return project, code


def test_sample_builds_every_table_and_passes_its_data_tests(sample):
    project, code = sample
    assert code == 0
    results = run_results(project)
    for table in TABLES:
        assert results[table]["status"] == "success", results[table]
    failing = {n: r for n, r in results.items() if r["status"] not in ("success", "pass")}
    assert failing == {}


def catalog_disagreements(spark, project: Path) -> list[str]:
    """Tables whose catalog entry (schema, row count) differs from what Spark reads in their files."""
    warehouse = project / "target/warehouse"
    wrong = []
    for name, entry in json.loads((warehouse / "_catalog.json").read_text()).items():
        if entry["kind"] != "table":
            continue
        files = spark.read.parquet(str(warehouse / entry["version"]))
        if entry["schema"] != files.schema.json() or entry["rows"] != files.count():
            wrong.append(name)
    return wrong


def test_the_catalog_holds_each_tables_schema_and_rows_as_spark_reads_them(spark, sample):
    project, _ = sample
    assert catalog_disagreements(spark, project) == []


def test_every_sample_file_is_an_image_or_an_error(sample):
    project, _ = sample
    files = sorted(p for p in (project / "data/images").rglob("*") if p.is_file())
    stg, errors = read_table(project, "stg_images"), read_table(project, "image_errors")
    assert len(stg["path"]) + len(errors["path"]) == len(files) == 49
    assert errors["relative_path"] == ["cardboard/corrupt_example.jpg"]
    assert errors["reason"][0].startswith("truncated image")
    assert Counter(stg["label"]) == {"cardboard": 12, "paper": 12, "plastic": 12, "trash": 12}
    assert set(stg["n_channels"]) == {3}


def test_every_file_is_accounted_for_names_lost_doubled_and_stale_files(spark, sample):
    """The data test as the sample compiled it, on lists of paths made to break it in each way."""
    project, _ = sample
    sql = (project / "target/compiled/image_prep/tests/data_tests/every_file_is_accounted_for.sql").read_text()
    session = spark.newSession()  # views of its own: the build's stay as they are
    for view, paths in {"raw__images": "abcd", "stg_images": "abe", "image_errors": "bc"}.items():
        session.createDataFrame([(p,) for p in paths], "path string").createOrReplaceTempView(view)
    failing = {row.path: (sorted(row.found_in), row.in_source) for row in session.sql(sql).collect()}
    assert failing == {"b": (["image_errors", "stg_images"], True),   # in both tables
                       "d": ([], True),                              # in neither
                       "e": (["stg_images"], False)}                 # no longer in the folder


def test_labels_are_indexed_in_name_order(sample):
    project, _ = sample
    labels = read_table(project, "labels")
    assert labels["label"] == sorted(labels["label"])
    assert dict(zip(labels["label"], labels["label_index"])) == {"cardboard": 0, "paper": 1, "plastic": 2, "trash": 3}


def test_splits_are_stratified_and_within_one_image_of_the_ratios(sample):
    project, _ = sample
    splits = read_table(project, "splits")
    assert len(set(splits["path"])) == len(splits["path"]) == 48
    per_label = Counter(zip(splits["label"], splits["split"]))
    for label in {"cardboard", "paper", "plastic", "trash"}:
        for split, ratio in (("train", 0.7), ("val", 0.15), ("test", 0.15)):
            assert abs(per_label[(label, split)] - 12 * ratio) <= 1, (label, split, per_label)


def test_training_sets_hold_uint8_images_labels_and_augmented_copies(sample):
    project, _ = sample
    train, val, test = read_table(project, "train_set"), read_table(project, "val_set"), read_table(project, "test_set")
    splits = dict(zip(read_table(project, "splits")["path"], read_table(project, "splits")["split"]))
    originals = [p for p, c in zip(train["path"], train["copy_index"]) if c == 0]
    assert sorted(originals) == sorted(p for p, s in splits.items() if s == "train")
    assert Counter(train["copy_index"]) == {0: len(originals), 1: len(originals), 2: len(originals)}
    assert set(val["copy_index"]) == {0} and sorted(val["path"]) == sorted(p for p, s in splits.items() if s == "val")
    assert not set(train["path"]) & set(val["path"]) and not set(val["path"]) & set(test["path"])
    assert "tensor" not in train and "tensor" not in val  # images, not tensors (var store_tensors is off)
    resized = read_table(project, "images_resized")
    resized_by_path = dict(zip(resized["path"], resized["image"]))
    for row in range(len(val["path"])):
        image = val["image"][row]
        assert (image["height"], image["width"], image["nChannels"], image["mode"]) == (224, 224, 3, "RGB")
        assert image["data"] == resized_by_path[val["path"][row]]["data"]  # the resized image itself
        onehot = val["label_onehot"][row]
        assert len(onehot) == 4 and sum(onehot) == 1 and onehot[val["label_index"][row]] == 1
    # Each row's histogram is its own image's, augmented copies included.
    augmented = read_table(project, "images_augmented")
    copies = {(p, c): img for p, c, img in zip(augmented["path"], augmented["copy_index"], augmented["image"])}
    for row in range(len(train["path"])):
        path, copy_index = train["path"][row], train["copy_index"][row]
        image = resized_by_path[path] if copy_index == 0 else copies[(path, copy_index)]
        assert train["image"][row]["data"] == image["data"]
        pixels = np.frombuffer(image["data"], np.uint8).reshape(224, 224, 3)
        expected = np.concatenate([np.histogram(pixels[:, :, c], bins=32, range=(0, 256))[0] for c in range(3)])
        assert train["color_histogram"][row] == expected.tolist()


def test_training_sets_record_their_normalization_in_parquet_catalog_and_manifest(sample):
    from imageprep.normalization import from_parquet_schema
    from imageprep.training import table_normalization

    project, _ = sample
    expected = {"column": "image", "method": "imagenet", "mean": [0.485, 0.456, 0.406],
                "std": [0.229, 0.224, 0.225], "layout": "CHW", "channel_order": "RGB", "dtype": "float32"}
    warehouse = project / "target/warehouse"
    catalog = json.loads((warehouse / "_catalog.json").read_text())
    manifest = json.loads((project / "target/manifest.json").read_text())
    for table in ("train_set", "val_set", "test_set"):
        files = sorted((warehouse / table).glob("*.parquet"))
        assert files
        for file in files:
            recorded = from_parquet_schema(pq.read_schema(file).metadata, "image")
            assert recorded is not None and expected.items() <= recorded.items(), file
        assert expected.items() <= catalog[table]["meta"]["normalization"].items()
        assert expected.items() <= manifest["nodes"][f"model.image_prep.{table}"]["meta"]["normalization"].items()
        assert expected.items() <= table_normalization(table_path(project, table)).items()
    assert "meta" not in catalog["images_resized"]  # only tables that say how to normalize record it


def test_loader_tensors_equal_sql_normalize_of_the_same_rows_bit_for_bit(spark, sample):
    project, _ = sample
    table = table_path(project, "val_set")
    rows = spark.read.parquet(str(table)).selectExpr(
        "path", "normalize(image, 'imagenet') as tensor", "label_index").collect()
    batches = list(numpy_batches(table, batch_size=3))
    x = np.concatenate([b[0] for b in batches])
    assert x.shape == (len(rows), 3, 224, 224) and x.dtype == np.float32
    for i, row in enumerate(rows):
        assert x[i].tobytes() == row["tensor"], row["path"]
    pixels = np.concatenate([b[0] for b in numpy_batches(table, batch_size=3, output="uint8")])
    assert pixels.dtype == np.uint8 and pixels.shape == x.shape
    first = read_table(project, "val_set")["image"][0]
    assert pixels[0].tobytes() == np.frombuffer(first["data"], np.uint8).reshape(224, 224, 3).transpose(2, 0, 1).tobytes()


def test_augmented_copies_differ_from_originals_but_keep_their_shape(sample):
    project, _ = sample
    augmented, resized = read_table(project, "images_augmented"), read_table(project, "images_resized")
    original = dict(zip(resized["path"], resized["image"]))
    changed = sum(img["data"] != original[p]["data"] for p, img in zip(augmented["path"], augmented["image"]))
    assert changed == len(augmented["path"])
    assert {(img["height"], img["width"]) for img in augmented["image"]} == {(224, 224)}


def test_spark_ml_learns_from_the_feature_vectors(spark, sample):
    from pyspark.ml.classification import LogisticRegression

    project, _ = sample
    frame = spark.read.parquet(str(project / "target/warehouse/ml_features"))
    train = frame.where("split = 'train'")
    held_out = frame.where("split <> 'train'")
    model = LogisticRegression(featuresCol="features", labelCol="label_index", maxIter=200, regParam=0.01).fit(train)
    scored = model.transform(held_out).select("label_index", "prediction").collect()
    accuracy = sum(r.label_index == r.prediction for r in scored) / len(scored)
    assert len(scored) == 16
    assert accuracy > 0.25 + 0.1, f"accuracy {accuracy:.2f} is not above chance (0.25)"


def test_numpy_export_reads_the_built_training_set(sample):
    project, _ = sample
    x_total, labels = 0, []
    for x, y in numpy_batches(table_path(project, "val_set"), batch_size=5):
        assert x.dtype == np.float32 and x.shape[1:] == (3, 224, 224)
        x_total += len(x)
        labels += list(y)
    val = read_table(project, "val_set")
    assert x_total == len(val["path"]) and labels == val["label_index"]


def test_compile_and_query_the_example(sample, capsys):
    project, _ = sample
    assert main(["query", "--project-dir", str(project), "--format", "json",
                 "select split, count(*) as n from splits group by split order by split"]) == 0
    counts = {json.loads(l)["split"]: json.loads(l)["n"] for l in capsys.readouterr().out.splitlines()}
    assert counts == {"test": 8, "train": 32, "val": 8}


def test_buildable_indirect_selection_leaves_out_tests_of_models_outside_the_selection(tmp_path, capsys):
    project = copy_project(tmp_path / "p")

    def listed(*flags):
        assert main(["ls", "--project-dir", str(project), "--select", "+splits", *flags]) == 0
        return {line.split()[-1] for line in capsys.readouterr().out.splitlines()}

    eager, buildable = listed(), listed("--indirect-selection", "buildable")
    # every_file_is_accounted_for also reads image_errors, which +splits does not build.
    assert "image_errors" not in eager and "every_file_is_accounted_for" in eager
    assert eager - buildable == {"every_file_is_accounted_for"}
    assert {"splits", "unique_splits_path", "accepted_values_splits_split"} <= buildable


# -- The shared data sets (present in development and CI, skipped in a user's clone) ---------------

SMALL = {"image_size": 64, "augment_copies": 1}


def test_labeled_dataset_matches_its_manifest(spark, tmp_path, labeled_dir, labeled_manifest):
    project = copy_example(tmp_path / "p")
    assert build(project, images_path=str(labeled_dir), **SMALL) == 0
    with open(labeled_manifest, newline="") as handle:
        manifest = {row["path"]: row for row in csv.DictReader(handle)}
    stg = read_table(project, "stg_images")
    assert read_table(project, "image_errors")["path"] == []
    prefix = "file:" + str(labeled_dir.resolve()) + "/"
    seen = {}
    for i, path in enumerate(stg["path"]):
        rel = path[len(prefix):]
        seen[rel] = (stg["label"][i], stg["width"][i], stg["height"][i], stg["content_sha256"][i])
    expected = {p: (m["label"], int(m["width"]), int(m["height"]), m["sha256"]) for p, m in manifest.items()}
    assert seen == expected
    labels = read_table(project, "labels")
    assert dict(zip(labels["label"], labels["n_images"])) == dict(Counter(m["label"] for m in manifest.values()))
    splits = Counter(zip(read_table(project, "splits")["label"], read_table(project, "splits")["split"]))
    for label, n in Counter(m["label"] for m in manifest.values()).items():
        # whole near-duplicate groups move together, so allow their size beyond the one-image rounding
        assert abs(splits[(label, "train")] - 0.7 * n) <= 2


def test_rebuilding_gives_identical_tables(spark, tmp_path):
    project = copy_example(tmp_path / "p")
    assert build(project, **SMALL) == 0
    first = {t: read_table(project, t) for t in TABLES if t != "ml_features"}
    assert main(["build", "--project-dir", str(project), "--vars", json.dumps(SMALL), "--full-refresh"]) == 0
    for table, before in first.items():
        after = read_table(project, table)
        assert rows_of(after) == rows_of(before), table


def test_splits_and_augmented_copies_do_not_depend_on_where_the_project_is(spark, tmp_path):
    """The same files and seed give the same splits and the same augmented copies in any folder:
    both are keyed on each image's path below images_path, not on the absolute path."""
    splits, copies = [], []
    for folder in ("a", "elsewhere/b"):
        project = copy_example(tmp_path / folder)
        assert main(["run", "--project-dir", str(project), "--select", "+images_augmented",
                     "--vars", json.dumps(SMALL)]) == 0
        table = read_table(project, "splits")
        splits.append(sorted((path.split("/data/images/", 1)[1], split)
                             for path, split in zip(table["path"], table["split"])))
        table = read_table(project, "images_augmented")
        copies.append(sorted((path.split("/data/images/", 1)[1], index, hashlib.sha256(image["data"]).hexdigest())
                             for path, index, image in zip(table["path"], table["copy_index"], table["image"])))
    assert splits[0] == splits[1]
    assert {split for _, split in splits[0]} == {"train", "val", "test"}
    assert copies[0] == copies[1]
    assert len(copies[0]) == sum(split == "train" for _, split in splits[0])  # augment_copies is 1 in SMALL


EDGE_REASONS = {
    "truncated.jpg": "truncated image",
    "empty.jpg": "empty file",
    "not_an_image.png": "not an image",
    "README.md": "not an image",
    "expected.json": "not an image",
}


def test_edge_cases_are_each_decoded_or_reported(spark, tmp_path, edge_cases_dir):
    project = copy_example(tmp_path / "p")
    code = build(project, images_path=str(edge_cases_dir), **SMALL)
    prefix = "file:" + str(edge_cases_dir.resolve()) + "/"
    stg, errors = read_table(project, "stg_images"), read_table(project, "image_errors")
    decoded = {p[len(prefix):]: (w, h) for p, w, h in zip(stg["path"], stg["width"], stg["height"])}
    rejected = {p[len(prefix):]: r for p, r in zip(errors["path"], errors["reason"])}
    files = sorted(str(p.relative_to(edge_cases_dir)) for p in edge_cases_dir.rglob("*") if p.is_file())
    assert sorted(decoded) + sorted(rejected) and sorted([*decoded, *rejected]) == files
    for name, reason in EDGE_REASONS.items():
        assert rejected[name].startswith(reason), (name, rejected[name])
    expected = json.loads((edge_cases_dir / "expected.json").read_text())
    for case in expected:
        if case["expect"] in ("ok", "skip-or-ok"):
            assert decoded[case["file"]] == tuple(case["size"]), case["file"]
    # Files outside class folders have no label: the build warns about them but does not fail.
    assert code == 0
    assert run_results(project)["not_null_stg_images_label"]["status"] == "warn"


def test_torch_dataset_reads_the_built_training_set(sample):
    torch = pytest.importorskip("torch", reason="PyTorch is optional; install it to test the dataset wrapper")
    from imageprep.training import make_torch_dataset

    project, _ = sample
    dataset = make_torch_dataset(table_path(project, "test_set"))
    items = list(dataset)
    test = read_table(project, "test_set")
    assert len(items) == len(test["path"])
    x, y = items[0]
    assert isinstance(x, torch.Tensor) and tuple(x.shape) == (3, 224, 224) and y == test["label_index"][0]
    first_batch, _ = next(iter(numpy_batches(table_path(project, "test_set"), batch_size=1)))
    assert torch.equal(x, torch.from_numpy(first_batch[0]))
    pixels, _ = next(iter(make_torch_dataset(table_path(project, "test_set"), output="uint8")))
    assert pixels.dtype == torch.uint8 and tuple(pixels.shape) == (3, 224, 224)


def test_stored_tensors_equal_what_the_loader_computes(spark, tmp_path):
    """With var store_tensors the training sets keep the float32 tensor too: the same bytes the
    loader makes from the image, for every row and every normalization method asked."""
    project = copy_example(tmp_path / "p")
    assert build(project, **SMALL, store_tensors=True, normalization="standard") == 0
    for name in ("train_set", "test_set"):
        table = read_table(project, name)
        assert table["tensor_shape"][0] == [3, 64, 64]
        from_images = np.concatenate([x for x, _ in numpy_batches(table_path(project, name), batch_size=7)])
        stored = np.concatenate([x for x, _ in numpy_batches(table_path(project, name), batch_size=7,
                                                             columns=("tensor", "label_index"))])
        assert len(stored) == len(table["path"]) and stored.tobytes() == from_images.tobytes()


def test_one_flat_colour_image_is_a_warning_that_names_it(spark, tmp_path):
    from PIL import Image

    project = copy_example(tmp_path / "p")
    Image.new("RGB", (80, 60), (40, 90, 200)).save(project / "data/images/paper/blank_scan.png")
    assert build(project, **SMALL) == 0  # a warning, not a failure
    result = run_results(project)["not_one_flat_color_images_resized_image_stats"]
    assert result["status"] == "warn" and result["failures"] == 1
    assert "blank_scan.png" in json.dumps(result["examples"])


# -- Incremental builds ------------------------------------------------------------------------------

def test_new_changed_and_deleted_images_update_every_table_as_a_full_build_would(spark, tmp_path):
    from PIL import Image, ImageOps

    project = copy_example(tmp_path / "p")
    assert build(project, **SMALL) == 0
    splits_before = dict(zip(read_table(project, "splits")["path"], read_table(project, "splits")["split"]))
    resized_files = parquet_inodes(project / "target/warehouse/images_resized")
    images = project / "data/images"
    originals = sorted(images.glob("paper/*.jpg"))
    for i, path in enumerate(originals[:4]):  # four new images arrive: mirrored copies, new content
        with Image.open(path) as image:
            ImageOps.mirror(image).save(images / f"plastic/arrived_{i}.jpg", quality=90)
    originals[5].unlink()  # one is deleted
    with Image.open(originals[6]) as image:  # and one is rewritten with new pixels
        image.rotate(180).save(originals[6], quality=90)

    assert build(project, **SMALL) == 0
    results = run_results(project)
    assert results["images_resized"]["status"] == "success" and results["images_resized"]["rows"] == 48 + 4 - 1
    # Only the new and changed files were decoded: the table's other files were kept, not rewritten.
    assert len(resized_files & parquet_inodes(project / "target/warehouse/images_resized")) >= len(resized_files) - 2
    splits_after = dict(zip(read_table(project, "splits")["path"], read_table(project, "splits")["split"]))
    gone = {p for p in splits_before if p.endswith(originals[5].name)}
    assert set(splits_before) - set(splits_after) == gone
    assert all(splits_after[p] == s for p, s in splits_before.items() if p not in gone)  # splits keep history

    # A full build of the same files gives the same tables, apart from which split new images got.
    fresh = copy_example(tmp_path / "fresh")
    assert build(fresh, images_path=str(images), **SMALL) == 0
    incremental, full = read_tables(project), read_tables(fresh)
    assert compare(incremental, full) == []
    assert catalog_disagreements(spark, project) == []  # merged versions are counted right too


def test_arriving_images_add_their_splits_and_leave_the_others_where_they_were_written(spark, tmp_path):
    from PIL import Image, ImageOps

    project = copy_example(tmp_path / "p")
    assert build(project, **SMALL) == 0
    table = project / "target/warehouse/splits"
    before, files_before = read_table(project, "splits"), parquet_inodes(table)
    for i, path in enumerate(sorted((project / "data/images").glob("paper/*.jpg"))[:4]):
        with Image.open(path) as image:
            ImageOps.mirror(image).save(project / f"data/images/plastic/arrived_{i}.jpg", quality=90)

    assert build(project, **SMALL) == 0
    after = read_table(project, "splits")
    assert len(after["path"]) == len(before["path"]) + 4
    # Only the four new rows were written; the others stay in the files they were written to.
    assert files_before <= parquet_inodes(table)
    written = [f for f in table.resolve().rglob("*.parquet") if f.stat().st_ino not in files_before]
    assert sum(pq.read_metadata(f).num_rows for f in written) == 4


def test_a_var_that_changes_what_images_are_rebuilds_the_incremental_tables_in_full(spark, tmp_path):
    project = copy_example(tmp_path / "p")
    assert build(project, **SMALL) == 0
    assert build(project, **{**SMALL, "image_size": 32}) == 0
    sizes = {(img["height"], img["width"]) for img in read_table(project, "images_resized")["image"]}
    assert sizes == {(32, 32)}
    assert "logic changed" in run_results(project)["images_resized"]["message"]
