"""Reference values for udfs.kernels.features: histograms against numpy.histogram, stats against
NumPy, pHash against the imagehash definition written out here, and its robustness on real photos."""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from udfs.kernels.features import check_pixels, color_histogram, hamming, image_stats, phash

PHOTOS = Path(os.environ.get("SHARED_DATASETS", Path(__file__).resolve().parents[3] / "shared" / "datasets")) / "photos"
RNG = np.random.default_rng(7)
ALL_VALUES = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
SOME_BINS = [1, 2, 3, 7, 10, 16, 30, 32, 64, 100, 128, 200, 255, 256]


def numpy_histograms(pixels: np.ndarray, bins: int) -> np.ndarray:
    return np.concatenate(
        [np.histogram(pixels[:, :, c], bins=bins, range=(0, 256))[0] for c in range(pixels.shape[2])]
    )


# --------------------------------------------------------------------------- color_histogram


def test_integer_binning_equals_numpy_histogram_for_every_value_and_every_bins():
    # Every pixel value once, for every allowed bins: the (v * bins) >> 8 rule is exact.
    for bins in range(1, 257):
        expected = np.histogram(np.arange(256), bins=bins, range=(0, 256))[0]
        np.testing.assert_array_equal(color_histogram(ALL_VALUES, bins, normalized=False), expected, err_msg=f"bins={bins}")


def test_bins_10_splits_values_as_numpy_does():
    # Edges 0, 25.6, 51.2, 76.8, 102.4, 128, 153.6, 179.2, 204.8, 230.4, 256:
    # values 0..25 (26), 26..51 (26), 52..76 (25), 77..102 (26), 103..127 (25), 128..153 (26), ...
    assert color_histogram(ALL_VALUES, 10, normalized=False).tolist() == [26, 26, 25, 26, 25, 26, 26, 25, 26, 25]


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("bins", SOME_BINS)
def test_random_images_equal_numpy_histogram(channels, bins):
    pixels = RNG.integers(0, 256, size=(31, 47, channels), dtype=np.uint8)
    hist = color_histogram(pixels, bins, normalized=False)
    assert hist.dtype == np.float64 and hist.shape == (bins * channels,)
    np.testing.assert_array_equal(hist, numpy_histograms(pixels, bins))
    assert np.all(hist == np.round(hist))


@pytest.mark.parametrize("bins", [1, 10, 30, 100, 256])
def test_edge_values_land_in_the_first_and_last_bins(bins):
    pixels = np.zeros((3, 5, 3), dtype=np.uint8)
    pixels[:, :, 1] = 255
    pixels[0, 0, 2] = 255
    hist = color_histogram(pixels, bins, normalized=False).reshape(3, bins)
    np.testing.assert_array_equal(hist, numpy_histograms(pixels, bins).reshape(3, bins))
    assert hist[0, 0] == 15 and hist[1, -1] == 15
    assert hist[2, 0] == (14 if bins > 1 else 15) and hist[2, -1] == (1 if bins > 1 else 15)


@pytest.mark.parametrize("bins", [1, 10, 30, 100, 256])
def test_normalized_histograms_sum_to_one_per_channel(bins):
    pixels = RNG.integers(0, 256, size=(13, 9, 3), dtype=np.uint8)
    hist = color_histogram(pixels, bins, normalized=True).reshape(3, bins)
    np.testing.assert_allclose(hist.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(hist.ravel(), numpy_histograms(pixels, bins) / (13 * 9), rtol=0, atol=1e-15)


@pytest.mark.parametrize("bins", [0, 257, -3, 2.5, True, "32"])
def test_bins_outside_1_to_256_are_refused(bins):
    with pytest.raises(ValueError, match="bins must be an integer from 1 to 256"):
        color_histogram(ALL_VALUES, bins, normalized=False)


# --------------------------------------------------------------------------- image_stats


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_image_stats_equal_numpy(channels):
    pixels = RNG.integers(3, 250, size=(21, 34, channels), dtype=np.uint8)
    stats = image_stats(pixels)
    values = pixels.reshape(-1, channels).astype(np.float64)
    np.testing.assert_allclose(stats["mean"], values.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats["std"], values.std(axis=0), rtol=1e-12)
    assert stats["min"] == pixels.reshape(-1, channels).min(axis=0).tolist()
    assert stats["max"] == pixels.reshape(-1, channels).max(axis=0).tolist()
    assert all(type(v) is float for v in stats["mean"] + stats["std"])
    assert all(type(v) is int for v in stats["min"] + stats["max"])


def test_image_stats_of_a_two_pixel_image():
    stats = image_stats(np.array([[[0, 10, 255], [255, 20, 255]]], dtype=np.uint8))
    assert stats == {"mean": [127.5, 15.0, 255.0], "std": [127.5, 5.0, 0.0], "min": [0, 10, 255], "max": [255, 20, 255]}


# --------------------------------------------------------------------------- phash


def reference_phash(pixels: np.ndarray) -> int:
    """imagehash.phash, written out: L, 32x32 Lanczos, DCT-II by its cosine sum, 8x8 > median."""
    image = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels).convert("L")
    x = np.asarray(image.resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    n = np.arange(32)
    cos = np.cos(np.pi * n[:, None] * (2 * n[None, :] + 1) / 64)  # cos[k, i]
    dct = np.einsum("ki,lj,ij->kl", cos, cos, x)[:8, :8]  # sum_i sum_j x[i, j] cos(k, i) cos(l, j)
    bits = "".join("1" if b else "0" for b in (dct > np.median(dct)).ravel())
    unsigned = int(bits, 2)
    return unsigned - (1 << 64) if unsigned >= 1 << 63 else unsigned


def synthetic_scene(kind: str) -> np.ndarray:
    """Two 'natural-ish' images with different structure: gradients, a wave, a shape."""
    y, x = np.mgrid[0:192, 0:256].astype(np.float64)
    if kind == "sun":
        image = np.stack([255 * x / 256, 255 * y / 192, 128 + 100 * np.sin(x / 20) * np.cos(y / 30)], axis=-1)
        image[(x - 80) ** 2 + (y - 100) ** 2 < 40**2] = [250, 240, 30]
    else:
        image = np.stack([255 - 255 * y / 192, 128 + 120 * np.sin((x + y) / 15), 255 * x / 256], axis=-1)
        image[(abs(x - 180) < 40) & (abs(y - 60) < 30)] = [20, 20, 200]
    return image.clip(0, 255).astype(np.uint8)


def jpeg_roundtrip(pixels: np.ndarray, quality: int = 90) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def resized(pixels: np.ndarray, factor: float) -> np.ndarray:
    image = Image.fromarray(pixels)
    return np.asarray(image.resize((round(image.width * factor), round(image.height * factor)), Image.Resampling.BILINEAR))


def photo(name: str) -> np.ndarray:
    path = PHOTOS / name
    if not path.exists():
        pytest.skip(f"needs the shared photo {path} (present in development and CI, not in a user's clone)")
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@pytest.mark.parametrize(
    "pixels",
    [
        synthetic_scene("sun"),
        synthetic_scene("stripes"),
        RNG.integers(0, 256, size=(40, 50, 3), dtype=np.uint8),
        RNG.integers(0, 256, size=(33, 20, 1), dtype=np.uint8),
        RNG.integers(0, 256, size=(64, 64, 4), dtype=np.uint8),
    ],
    ids=["sun", "stripes", "noise-rgb", "noise-gray", "noise-rgba"],
)
def test_phash_equals_the_written_out_definition(pixels):
    assert phash(pixels) == reference_phash(pixels)


def test_phash_equals_imagehash_computed_with_scipy():
    fftpack = pytest.importorskip("scipy.fftpack", reason="scipy is only a cross-check of the DCT scaling")
    pixels = synthetic_scene("sun")
    x = np.asarray(Image.fromarray(pixels).convert("L").resize((32, 32), Image.Resampling.LANCZOS))
    low = fftpack.dct(fftpack.dct(x, axis=0), axis=1)[:8, :8]
    expected_hex = f"{int(''.join('1' if b else '0' for b in (low > np.median(low)).ravel()), 2):016x}"
    assert f"{phash(pixels) & (2**64 - 1):016x}" == expected_hex


def test_phash_is_a_signed_int64():
    hashes = [phash(synthetic_scene("sun")), phash(synthetic_scene("stripes"))]
    assert all(type(h) is int and -(2**63) <= h < 2**63 for h in hashes)
    rgba = np.dstack([synthetic_scene("sun"), np.full((192, 256), 77, np.uint8)])
    assert phash(rgba) == phash(synthetic_scene("sun"))  # alpha is ignored, as Pillow's convert("L") does


# Two different images of each source: the synthetic scenes, and real photos (skipped without them).
IMAGE_PAIRS = [
    pytest.param(synthetic_scene, "sun", "stripes", id="synthetic"),
    pytest.param(photo, "scikit-image/astronaut.png", "scikit-image/coffee.png", id="photos"),
]


@pytest.mark.parametrize("load, first, second", IMAGE_PAIRS)
def test_phash_survives_jpeg_and_resizing(load, first, second):
    for name in (first, second):
        pixels = load(name)
        assert hamming(phash(pixels), phash(jpeg_roundtrip(pixels, 90))) <= 4, name
        assert hamming(phash(pixels), phash(resized(pixels, 0.5))) <= 4, name


@pytest.mark.parametrize("load, first, second", IMAGE_PAIRS)
def test_phash_tells_different_images_apart(load, first, second):
    assert hamming(phash(load(first)), phash(load(second))) > 16


# --------------------------------------------------------------------------- hamming


@pytest.mark.parametrize(
    "a, b, distance",
    [
        (0, 0, 0),
        (0b1011, 0b0001, 2),
        (0, -1, 64),  # -1 is all 64 bits set
        (-(2**63), 0, 1),  # only the top bit
        (2**64 - 1, -1, 0),  # unsigned and signed views of the same bits
        (0x0123456789ABCDEF, 0x0123456789ABCDEE, 1),
        (0x5555555555555555, -0x5555555555555556, 64),  # 0x5555... and 0xAAAA...
    ],
)
def test_hamming_of_known_values(a, b, distance):
    assert hamming(a, b) == distance
    assert hamming(b, a) == distance


def test_hamming_accepts_numpy_int64_and_refuses_other_values():
    assert hamming(np.int64(-1), np.int64(0)) == 64
    with pytest.raises(ValueError, match="does not fit in 64 bits"):
        hamming(2**64, 0)
    with pytest.raises(TypeError, match="integer hash"):
        hamming(1.0, 0)


def test_check_pixels_returns_its_input_and_rejects_lists():
    pixels = np.zeros((2, 2, 3), np.uint8)
    assert check_pixels(pixels) is pixels
    with pytest.raises(TypeError, match="numpy.ndarray"):
        check_pixels([[[0, 0, 0]]])
