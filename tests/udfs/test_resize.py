"""Reference values for the geometry and colour kernels (udfs.kernels.resize, udfs.kernels.color)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps

from udfs.kernels import color, resize

FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def pixels(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)


@pytest.mark.parametrize("interpolation", FILTERS)
@pytest.mark.parametrize("size", [(9, 14), (40, 31)])  # shrink (antialiased) and enlarge
def test_stretch_equals_pillow_resize(interpolation, size):
    source = pixels(23, 17)
    expected = np.asarray(Image.fromarray(source).resize((size[1], size[0]), FILTERS[interpolation]))
    np.testing.assert_array_equal(resize.resize(source, *size, "stretch", interpolation), expected)


@pytest.mark.parametrize("shape", [(30, 50), (50, 30), (40, 40)])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_cover_equals_imageops_fit_and_fit_equals_imageops_pad(shape, channels):
    source = pixels(*shape, channels)
    image = Image.fromarray(source[:, :, 0] if channels == 1 else source)
    cover = np.asarray(ImageOps.fit(image, (16, 12), Image.Resampling.BICUBIC))
    fit = np.asarray(ImageOps.pad(image, (16, 12), Image.Resampling.BICUBIC, color="#102030"))
    if channels == 1:
        cover, fit = cover[:, :, None], fit[:, :, None]
    np.testing.assert_array_equal(resize.resize(source, 12, 16, "cover", "bicubic"), cover)
    np.testing.assert_array_equal(resize.resize(source, 12, 16, "fit", "bicubic", "#102030"), fit)


def test_fit_keeps_aspect_and_pads_centred_with_pad_color():
    source = np.full((10, 20, 3), 200, dtype=np.uint8)
    out = resize.resize(source, 20, 20, "fit", "nearest", "#ff0000")
    assert out.shape == (20, 20, 3)
    assert (out[5:15] == 200).all()  # 10 rows x 20 columns already fit: centred, 5 rows of padding each side
    assert (out[:5] == [255, 0, 0]).all() and (out[15:] == [255, 0, 0]).all()


def test_cover_fills_the_target_and_crops_the_centre():
    source = np.zeros((10, 30, 3), dtype=np.uint8)
    source[:, 10:20] = 255  # a white middle third
    out = resize.resize(source, 10, 10, "cover", "nearest")
    assert (out == 255).all()


def test_one_pixel_upsamples_to_a_flat_image():
    source = np.array([[[168, 66, 15]]], dtype=np.uint8)
    for interpolation in FILTERS:
        out = resize.resize(source, 5, 7, "stretch", interpolation)
        assert out.shape == (5, 7, 3) and (out == [168, 66, 15]).all()


def test_center_crop_takes_the_middle_and_pads_with_black():
    source = pixels(7, 9)
    np.testing.assert_array_equal(resize.center_crop(source, 3, 4), source[2:5, 2:6])
    padded = resize.center_crop(source, 9, 9)  # two more rows than the image: one above, one below
    assert padded.shape == (9, 9, 3)
    np.testing.assert_array_equal(padded[1:8], source)
    assert (padded[0] == 0).all() and (padded[8] == 0).all()


def test_to_grayscale_is_itu_601_luma():
    source = pixels(5, 6)
    r, g, b = (source[:, :, i].astype(np.float64) for i in range(3))
    out = color.to_grayscale(source)
    assert out.shape == (5, 6, 1)
    np.testing.assert_allclose(out[:, :, 0], r * 299 / 1000 + g * 587 / 1000 + b * 114 / 1000, atol=0.51)
    gray = pixels(3, 3, 1)
    assert color.to_grayscale(gray) is gray


def test_to_grayscale_of_rgba_composites_on_white_first():
    transparent_black = np.zeros((1, 2, 4), dtype=np.uint8)
    transparent_black[0, 1, 3] = 255  # second pixel opaque black
    assert color.to_grayscale(transparent_black)[0, :, 0].tolist() == [255, 0]


@pytest.mark.parametrize("call, message", [
    (lambda p: resize.resize(p, 4, 4, "squash"), "unknown resize mode 'squash'; valid modes: stretch, fit, cover"),
    (lambda p: resize.resize(p, 4, 4, "stretch", "area"),
     "unknown interpolation 'area'; valid interpolations: nearest, bilinear, bicubic, lanczos"),
    (lambda p: resize.resize(p, 0, 4), "height must be a whole number of pixels from 1 to 65500, got 0"),
    (lambda p: resize.resize(p, 4, 4, "fit", "bilinear", "reddish"), "invalid pad_color 'reddish'"),
    (lambda p: resize.center_crop(p, 4, -1), "width must be a whole number"),
])
def test_bad_arguments_name_the_valid_values(call, message):
    with pytest.raises(ValueError) as caught:
        call(pixels(5, 5))
    assert message in str(caught.value)


def test_intermediate_size_is_what_cover_and_fit_scale_to():
    assert resize.intermediate_size((640, 427), 224, 224, "cover") == (336, 224)  # ceil(640 * 224/427)
    assert resize.intermediate_size((640, 427), 224, 224, "fit") == (224, 150)  # ceil(427 * 224/640)
    assert resize.intermediate_size((640, 427), 100, 50, "stretch") == (50, 100)
