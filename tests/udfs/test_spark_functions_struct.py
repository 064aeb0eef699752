"""The Arrow plumbing under the Spark wrappers, without Spark: image structs and per-batch arguments."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from udfs import image_struct
from udfs.batch import per_row


def test_round_trip_of_every_mode_and_null():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((2, 3, 1), (4, 5, 3), (1, 1, 4))]
    array = image_struct.from_numpy(images[:1] + [None] + images[1:], ["a", "b", "c", "d"])
    assert array.type == image_struct.IMAGE_ARROW_TYPE
    assert array.null_count == 1
    assert array.field("mode").to_pylist()[2:] == ["RGB", "RGBA"]
    assert array.field("mode").to_pylist()[0] == "L"
    out = image_struct.to_numpy(array)
    assert out[1] is None
    for got, expected in zip([out[0]] + out[2:], images):
        np.testing.assert_array_equal(got, expected)
    assert image_struct.origins(array) == ["a", None, "c", "d"]


def test_sliced_arrays_use_their_offset():
    images = [np.full((2, 2, 3), i, dtype=np.uint8) for i in range(5)]
    array = image_struct.from_numpy(images, [str(i) for i in range(5)]).slice(2, 2)
    out = image_struct.to_numpy(array)
    assert [int(p[0, 0, 0]) for p in out] == [2, 3]
    assert image_struct.origins(array) == ["2", "3"]


def test_non_contiguous_pixels_are_written_in_row_order():
    base = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    crop = base[1:3, 2:5]  # a view with gaps
    data = image_struct.from_numpy([crop]).field("data")[0].as_py()
    assert data == crop.tobytes()


def spark_source_struct(rows):
    """A struct as Spark's image source produces it: integer OpenCV mode, BGR(A) data."""
    return pa.StructArray.from_arrays(
        [
            pa.array([r[0] for r in rows], pa.string()),
            pa.array([r[1] for r in rows], pa.int32()),
            pa.array([r[2] for r in rows], pa.int32()),
            pa.array([r[3] for r in rows], pa.int32()),
            pa.array([r[4] for r in rows], pa.int32()),
            pa.array([r[5] for r in rows], pa.binary()),
        ],
        names=list(image_struct.IMAGE_FIELDS),
    )


def test_spark_image_source_struct_is_converted_from_bgr():
    rgb = np.array([[[10, 20, 30], [40, 50, 60]]], dtype=np.uint8)
    rgba = np.array([[[1, 2, 3, 4]]], dtype=np.uint8)
    gray = np.array([[[7], [8]]], dtype=np.uint8)
    array = spark_source_struct([
        ("rgb", 1, 2, 3, 16, rgb[:, :, ::-1].tobytes()),
        ("rgba", 1, 1, 4, 24, rgba[:, :, [2, 1, 0, 3]].tobytes()),
        ("gray", 1, 2, 1, 0, gray.tobytes()),
        ("broken", -1, -1, -1, -1, b""),  # Spark's row for an unreadable file
    ])
    out = image_struct.to_numpy(array)
    np.testing.assert_array_equal(out[0], rgb)
    np.testing.assert_array_equal(out[1], rgba)
    np.testing.assert_array_equal(out[2], gray)
    assert out[3] is None


def test_inconsistent_struct_names_the_origin():
    array = spark_source_struct([("x.png", 2, 2, 3, 16, b"\x00" * 5)])
    with pytest.raises(ValueError, match=r"image 'x.png': data has 5 bytes, but height\*width\*nChannels = 2\*2\*3 = 12"):
        image_struct.to_numpy(array)
    ours = image_struct.from_numpy([np.zeros((1, 1, 3), np.uint8)], ["y.png"])
    wrong_mode = pa.StructArray.from_arrays(
        [ours.field(name) if name != "mode" else pa.array(["L"]) for name in image_struct.IMAGE_FIELDS],
        names=list(image_struct.IMAGE_FIELDS))
    with pytest.raises(ValueError, match="mode 'L' does not match nChannels=3"):
        image_struct.to_numpy(wrong_mode)


def test_binary_array_holds_raw_bytes_of_any_dtype():
    tensor = np.array([[1.5, -2.0]], dtype="<f4")
    array = image_struct.binary_array([tensor, None, b"ab"])
    assert array.to_pylist() == [tensor.tobytes(), None, b"ab"]


def test_per_row_parses_each_distinct_value_once():
    calls = []

    def parse(value):
        calls.append(value)
        return value.upper()

    assert per_row(pa.array(["a", "b", "a", "a"]), 4, parse) == ["A", "B", "A", "A"]
    assert calls == ["a", "b"]
    assert per_row("x", 3, parse) == ["X"] * 3  # a Python default: the argument was left out in SQL
    assert per_row(pa.array([[1.0], [1.0]]), 2) == [[1.0], [1.0]]
