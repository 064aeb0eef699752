"""Reference values for udfs.kernels.normalize: each method against its formula, written out here."""
from __future__ import annotations

import numpy as np
import pytest

from udfs.kernels import normalize as normalize_kernel
from udfs.kernels.normalize import METHODS, channel_affine, normalize, tensor_shape

RNG = np.random.default_rng(20240601)
RGB = RNG.integers(0, 256, size=(17, 23, 3), dtype=np.uint8)
GRAY = RNG.integers(0, 256, size=(9, 11, 1), dtype=np.uint8)
RGBA = RNG.integers(0, 256, size=(8, 5, 4), dtype=np.uint8)
ALL_VALUES_RGB = np.stack([np.arange(256, dtype=np.uint8)] * 3, axis=-1).reshape(16, 16, 3)


def chw(pixels: np.ndarray) -> np.ndarray:
    """The test's own float64 view of the pixels, channel first."""
    return pixels.transpose(2, 0, 1).astype(np.float64)


def test_imagenet_matches_formula_to_1e_6():
    mean = np.array([0.485, 0.456, 0.406])[:, None, None]
    std = np.array([0.229, 0.224, 0.225])[:, None, None]
    for pixels in (RGB, ALL_VALUES_RGB):
        expected = (chw(pixels) / 255.0 - mean) / std
        out = normalize(pixels, "imagenet")
        assert out.dtype == np.float32
        assert out.shape == (3,) + pixels.shape[:2]
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)


def test_imagenet_reference_numbers():
    # Pixel 0 and 255 of the red channel: (0 - 0.485) / 0.229 and (1 - 0.485) / 0.229.
    out = normalize(np.array([[[0, 0, 0], [255, 255, 255]]], dtype=np.uint8), "imagenet")
    assert out[0, 0, 0] == pytest.approx(-2.1179039, abs=1e-6)
    assert out[0, 0, 1] == pytest.approx(2.2489083, abs=1e-6)
    assert out[2, 0, 1] == pytest.approx(2.64, abs=1e-6)  # (1 - 0.406) / 0.225


def test_imagenet_grayscale_uses_the_average_statistics():
    mean = (0.485 + 0.456 + 0.406) / 3  # 0.449
    std = (0.229 + 0.224 + 0.225) / 3  # 0.226
    expected = (chw(GRAY) / 255.0 - mean) / std
    np.testing.assert_allclose(normalize(GRAY, "imagenet"), expected, rtol=0, atol=1e-6)


def test_imagenet_refuses_rgba_and_says_what_to_do():
    with pytest.raises(ValueError, match=r"1 or 3 channels, got 4.*custom"):
        normalize(RGBA, "imagenet")


def test_zero_one_and_minus_one_one_formulas_and_end_points():
    np.testing.assert_allclose(normalize(RGB, "zero_one"), chw(RGB) / 255.0, rtol=0, atol=1e-6)
    np.testing.assert_allclose(normalize(RGB, "minus_one_one"), chw(RGB) / 127.5 - 1.0, rtol=0, atol=1e-6)
    ends = np.array([[[0], [255]]], dtype=np.uint8)
    assert normalize(ends, "zero_one").ravel().tolist() == [0.0, 1.0]
    assert normalize(ends, "minus_one_one").ravel().tolist() == [-1.0, 1.0]


def test_standard_is_per_image_per_channel():
    values = chw(RGB)
    mean = values.mean(axis=(1, 2), keepdims=True)
    std = values.std(axis=(1, 2), keepdims=True)
    out = normalize(RGB, "standard")
    np.testing.assert_allclose(out, (values - mean) / std, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out.mean(axis=(1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(1, 2)), 1.0, atol=1e-5)


def test_standard_floors_std_at_one_over_sqrt_n():
    # Values 0, 0, 0, 1: mean 0.25, std sqrt(0.1875) = 0.433 < 1 / sqrt(4) = 0.5, so 0.5 divides.
    pixels = np.array([[[0], [0]], [[0], [1]]], dtype=np.uint8)
    expected = np.array([[[-0.5, -0.5], [-0.5, 1.5]]])
    np.testing.assert_allclose(normalize(pixels, "standard"), expected, rtol=0, atol=1e-6)


def test_standard_zero_std_gives_finite_zeros():
    one_pixel = normalize(np.array([[[7, 200, 255]]], dtype=np.uint8), "standard")
    assert one_pixel.shape == (3, 1, 1)
    assert np.all(np.isfinite(one_pixel)) and np.all(one_pixel == 0)
    flat_green = RGB.copy()
    flat_green[:, :, 1] = 42
    out = normalize(flat_green, "standard")
    assert np.all(out[1] == 0)
    assert out[0].std() == pytest.approx(1.0, abs=1e-5)  # the other channels are still standardized


def test_custom_uses_the_zero_to_one_scale_one_value_per_channel():
    mean, std = [0.1, 0.2, 0.3, 0.5], [0.5, 0.25, 1.0, 2.0]
    expected = (chw(RGBA) / 255.0 - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]
    np.testing.assert_allclose(normalize(RGBA, "custom", mean=mean, std=std), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "mean, std, message",
    [
        (None, None, "needs mean and std"),
        ([0.5], [0.5], "one mean and one std per channel: the image has 3"),
        ([0.5, 0.5, 0.5], [0.5, 0.0, 0.5], "positive finite stds"),
    ],
)
def test_custom_rejects_bad_statistics(mean, std, message):
    with pytest.raises(ValueError, match=message):
        normalize(RGB, "custom", mean=mean, std=std)


def test_mean_and_std_are_refused_outside_custom():
    with pytest.raises(ValueError, match="only used by method='custom'"):
        normalize(RGB, "imagenet", mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5])


def test_unknown_method_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown normalization method 'imagenett'; valid methods: zero_one, minus_one_one, standard, imagenet, custom"):
        normalize(RGB, "imagenett")


@pytest.mark.parametrize("method", METHODS)
def test_layouts_are_transposes_of_each_other(method):
    kwargs = {"mean": [0.4, 0.5, 0.6], "std": [0.2, 0.3, 0.4]} if method == "custom" else {}
    chw_out = normalize(RGB, method, layout="CHW", **kwargs)
    hwc_out = normalize(RGB, method, layout="HWC", **kwargs)
    assert chw_out.shape == (3, 17, 23) and hwc_out.shape == (17, 23, 3)
    assert chw_out.flags.c_contiguous and hwc_out.flags.c_contiguous
    assert hwc_out.dtype == np.float32
    np.testing.assert_array_equal(chw_out, hwc_out.transpose(2, 0, 1))


def test_default_layout_is_chw_and_unknown_layout_is_refused():
    assert normalize(GRAY, "zero_one").shape == (1, 9, 11)
    with pytest.raises(ValueError, match="unknown tensor layout 'NCHW'; valid layouts: CHW, HWC"):
        normalize(GRAY, "zero_one", layout="NCHW")


def test_tensor_shape_matches_normalize_output():
    assert tensor_shape(224, 200, 3, "CHW") == [3, 224, 200]
    assert tensor_shape(224, 200, 3, "HWC") == [224, 200, 3]
    for layout in ("CHW", "HWC"):
        assert list(normalize(RGBA, "zero_one", layout=layout).shape) == tensor_shape(8, 5, 4, layout)


def test_channel_affine_reproduces_normalize():
    scale, offset = channel_affine(RGB, "imagenet")
    rebuilt = chw(RGB) * scale[:, None, None] + offset[:, None, None]
    np.testing.assert_allclose(normalize(RGB, "imagenet"), rebuilt, rtol=0, atol=1e-6)


def test_strided_input_is_accepted():
    flipped = RGB[:, ::-1]
    np.testing.assert_array_equal(normalize(flipped, "zero_one"), normalize(np.ascontiguousarray(flipped), "zero_one"))


@pytest.mark.parametrize(
    "pixels, message",
    [
        (RGB.astype(np.float32), "dtype uint8"),
        (RGB[:, :, 0], r"shape \(H, W, C\).*pixels\[:, :, None\]"),
        (np.zeros((4, 4, 2), np.uint8), "1, 3 or 4 channels"),
        (np.zeros((0, 4, 3), np.uint8), "must not be empty"),
    ],
)
def test_bad_pixels_are_refused_with_the_expected_form(pixels, message):
    with pytest.raises(ValueError, match=message):
        normalize(pixels, "zero_one")


@pytest.mark.parametrize("layout", ["CHW", "HWC"])
@pytest.mark.parametrize("method", ["zero_one", "minus_one_one", "standard", "imagenet"])
def test_normalize_batch_is_normalize_of_each_image_bit_for_bit(method, layout):
    batch = np.random.default_rng(3).integers(0, 256, (4, 6, 5, 3), dtype=np.uint8)
    batch[1] = 77  # a flat image: standard's floor on the std
    out = normalize_kernel.normalize_batch(batch, method, layout=layout)
    expected = np.stack([normalize(image, method, layout=layout) for image in batch])
    assert out.dtype == np.float32 and out.tobytes() == expected.tobytes()


@pytest.mark.parametrize("method", ["zero_one", "minus_one_one", "imagenet"])
def test_describe_gives_the_mean_and_std_that_reproduce_the_method(method):
    """A reader in another framework applying (x / 255 - mean) / std, as recorded, gets the method's tensor."""
    spec = normalize_kernel.describe(method)
    assert (spec["method"], spec["layout"], spec["channel_order"], spec["dtype"]) == (method, "CHW", "RGB", "float32")
    pixels = np.random.default_rng(4).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    as_recorded = normalize(pixels, "custom", spec["mean"], spec["std"])
    assert as_recorded.tobytes() == normalize(pixels, method).tobytes()


def test_describe_standard_and_bad_methods():
    assert normalize_kernel.describe("standard")["mean"] is None
    assert normalize_kernel.describe("custom", [0.5] * 3, [0.25] * 3)["std"] == [0.25] * 3
    with pytest.raises(ValueError, match="unknown normalization method 'imgnet'"):
        normalize_kernel.describe("imgnet")
    with pytest.raises(ValueError, match="only used by method='custom'"):
        normalize_kernel.describe("imagenet", [0.5] * 3, [0.5] * 3)
