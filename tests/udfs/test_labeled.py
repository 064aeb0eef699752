"""Every image of the shared labeled/ set decodes, through Spark, to the size labeled_manifest.csv gives."""
from __future__ import annotations

import csv
from urllib.parse import unquote

from runner_helpers import relative_to


def test_labeled_images_decode_to_the_manifest_sizes(spark, labeled_dir, labeled_manifest):
    with open(labeled_manifest, newline="") as handle:
        manifest = {row["path"]: row for row in csv.DictReader(handle)}
    files = spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(str(labeled_dir))
    files.createOrReplaceTempView("labeled_files")
    rows = spark.sql("""
        SELECT path, sha2(content, 256) AS sha256, d.error, d.image.width, d.image.height, d.image.nChannels,
               decode_resize(content, path, 64, 64, 'cover').width AS small_width
        FROM (SELECT path, content, try_decode_image(content, path) AS d FROM labeled_files)""").collect()
    found = {relative_to(unquote(row["path"]), labeled_dir): row for row in rows}
    assert set(found) == set(manifest)
    for path, row in found.items():
        expected = manifest[path]
        assert row["error"] is None, (path, row["error"])
        assert (row["width"], row["height"]) == (int(expected["width"]), int(expected["height"])), path
        assert row["nChannels"] == 3 and row["small_width"] == 64
        assert row["sha256"] == expected["sha256"], path
        assert path.split("/")[0] == expected["label"]
