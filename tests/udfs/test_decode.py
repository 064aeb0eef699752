"""Reference values for the decode kernel (udfs.kernels.decode), without Spark.

Every input is made here with Pillow/NumPy; expected pixels are computed independently
(NumPy formulas, Pillow calls written out), not by calling the kernel twice.
"""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from runner_helpers import encode, photo_like
from udfs.kernels import decode

# EXIF orientation -> what the upright image is, as NumPy operations on the stored (H, W, C) pixels.
UPRIGHT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],                      # mirrored left-right
    3: lambda a: a[::-1, ::-1],                   # rotated 180
    4: lambda a: a[::-1],                         # mirrored top-bottom
    5: lambda a: a.transpose(1, 0, 2),            # transposed (main diagonal)
    6: lambda a: np.rot90(a, k=-1),               # rotate 90 degrees clockwise
    7: lambda a: np.rot90(a, k=2).transpose(1, 0, 2),  # transverse (anti-diagonal)
    8: lambda a: np.rot90(a, k=1),                # rotate 90 degrees counter-clockwise
}


def random_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def png(width: int, height: int, bit_depth: int, color_type: int, raw: bytes) -> bytes:
    """A PNG written by hand (Pillow cannot write 48-bit RGB or a lying header): IHDR, one IDAT, IEND."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def png_16bit(samples: np.ndarray, color_type: int) -> bytes:
    """A 16-bit PNG: big-endian samples, filter 0 on every row."""
    height, width = samples.shape[:2]
    raw = b"".join(b"\x00" + samples[y].astype(">u2").tobytes() for y in range(height))
    return png(width, height, 16, color_type, raw)


# --------------------------------------------------------------------------- pixels


def test_rgb_png_round_trips_exactly():
    pixels = random_rgb(7, 5)
    out = decode.decode(encode(Image.fromarray(pixels), "PNG"))
    assert out.dtype == np.uint8 and out.shape == (7, 5, 3)
    np.testing.assert_array_equal(out, pixels)


def test_mode_l_is_itu_601_luma_and_rgba_keeps_alpha():
    rgba = np.concatenate([random_rgb(6, 4), np.arange(24, dtype=np.uint8).reshape(6, 4, 1) * 10], axis=2)
    content = encode(Image.fromarray(rgba), "PNG")
    kept = decode.decode(content, "RGBA")
    np.testing.assert_array_equal(kept, rgba)

    gray = decode.decode(encode(Image.fromarray(rgba[:, :, :3]), "PNG"), "L")
    r, g, b = (rgba[:, :, i].astype(np.float64) for i in range(3))
    assert gray.shape == (6, 4, 1)
    np.testing.assert_allclose(gray[:, :, 0], r * 299 / 1000 + g * 587 / 1000 + b * 114 / 1000, atol=1)
    assert decode.check_mode("rgb") == "RGB"


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation):
    stored = random_rgb(4, 6, seed=orientation)  # 4 rows x 6 columns: any transposition shows in the shape
    exif = Image.Exif()
    exif[0x0112] = orientation
    content = encode(Image.fromarray(stored), "PNG", exif=exif)
    expected = UPRIGHT[orientation](stored)
    out = decode.decode(content)
    np.testing.assert_array_equal(out, expected)
    info = decode.image_info(content)
    assert info == {"format": "PNG", "width": expected.shape[1], "height": expected.shape[0],
                    "mode": "RGB", "orientation": orientation}


def test_16_bit_gray_is_scaled_by_the_high_byte_not_clipped():
    samples = np.random.default_rng(1).integers(0, 65536, (5, 8), dtype=np.uint16)
    samples[0, :4] = [0, 255, 256, 65535]
    content = encode(Image.fromarray(samples), "PNG")
    assert Image.open(io.BytesIO(content)).mode == "I;16"
    expected = (samples >> 8).astype(np.uint8)
    out = decode.decode(content)
    np.testing.assert_array_equal(out, np.repeat(expected[:, :, None], 3, axis=2))
    np.testing.assert_array_equal(decode.decode(content, "L")[:, :, 0], expected)
    assert list(out[0, :4, 0]) == [0, 0, 1, 255]  # Pillow's convert("L") would give 0, 255, 255, 255


def test_16_bit_big_endian_tiff_and_48_bit_rgb_png_scale_alike():
    samples = np.random.default_rng(2).integers(0, 65536, (3, 4), dtype=np.uint16)
    tiff = encode(Image.frombytes("I;16B", (4, 3), samples.astype(">u2").tobytes()), "TIFF")
    assert Image.open(io.BytesIO(tiff)).mode == "I;16B"
    np.testing.assert_array_equal(decode.decode(tiff, "L")[:, :, 0], samples >> 8)

    rgb48 = np.random.default_rng(3).integers(0, 65536, (3, 4, 3), dtype=np.uint16)
    np.testing.assert_array_equal(decode.decode(png_16bit(rgb48, color_type=2)), rgb48 >> 8)


def test_alpha_is_composited_on_white():
    color = np.array([[[200, 100, 0]] * 4], dtype=np.uint8)
    alpha = np.array([[[0], [64], [128], [255]]], dtype=np.uint8).reshape(1, 4, 1)
    content = encode(Image.fromarray(np.concatenate([color, alpha], axis=2)), "PNG")
    c, a = color.astype(np.float64), alpha.astype(np.float64)
    expected = np.round(c * a / 255 + 255 * (1 - a / 255))
    np.testing.assert_allclose(decode.decode(content), expected, atol=1)
    assert decode.decode(content)[0, 0].tolist() == [255, 255, 255]


def test_gray_with_alpha_composites_on_white_too():
    gray_alpha = np.array([[[0, 0], [0, 255], [100, 51]]], dtype=np.uint8)
    content = encode(Image.fromarray(gray_alpha, "LA"), "PNG")
    out = decode.decode(content, "L")[0, :, 0]
    assert out.tolist() == [255, 0, round(100 * 51 / 255 + 255 * (1 - 51 / 255))]


def test_palette_transparency_goes_through_rgba():
    image = Image.new("P", (3, 1))
    image.putpalette([255, 0, 0, 0, 0, 255] + [0, 0, 0] * 254)  # index 0 red, 1 blue
    image.putdata([0, 1, 0])
    content = encode(image, "PNG", transparency=0)
    out = decode.decode(content)
    assert out[0].tolist() == [[255, 255, 255], [0, 0, 255], [255, 255, 255]]  # P -> RGB would show red
    assert decode.decode(content, "RGBA")[0, :, 3].tolist() == [0, 255, 0]


def test_one_bit_images_become_0_and_255():
    image = Image.new("1", (4, 1))
    image.putdata([0, 1, 1, 0])
    out = decode.decode(encode(image, "PNG"), "L")
    assert out[0, :, 0].tolist() == [0, 255, 255, 0]


def test_cmyk_is_converted_to_rgb_not_read_as_rgba():
    cmyk = Image.new("CMYK", (5, 3), (0, 255, 255, 0))  # pure red ink-wise
    content = encode(cmyk, "TIFF")
    out = decode.decode(content)
    assert out.shape == (3, 5, 3)
    np.testing.assert_array_equal(out, np.asarray(Image.open(io.BytesIO(content)).convert("RGB")))
    assert out[0, 0].tolist() == [255, 0, 0]


def test_first_frame_of_animated_gif_and_multipage_tiff():
    frames = [Image.new("RGB", (8, 6), color) for color in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    gif = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert Image.open(io.BytesIO(gif)).n_frames == 3
    out = decode.decode(gif)
    assert out.shape == (6, 8, 3) and (out == [255, 0, 0]).all()

    pages = [Image.new("RGB", (10, 4), (1, 2, 3)), Image.new("L", (3, 3), 9)]
    tiff = encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    assert decode.decode(tiff).shape == (4, 10, 3)


# --------------------------------------------------------------------------- failures


def test_failure_categories():
    jpeg = encode(Image.fromarray(random_rgb(64, 64)), "JPEG", quality=90)
    assert decode.image_error(b"") == "empty file"
    assert decode.image_error(b"hello, I am text\n" * 5) == "not an image: cannot identify image file"
    assert decode.image_error(jpeg[: len(jpeg) // 2]).startswith("truncated image: image file is truncated")
    assert decode.image_error(jpeg) is None
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # the kernel never turns it on
    with pytest.raises(decode.ImageDecodeError) as caught:
        decode.decode(b"")
    assert caught.value.category == "empty file"


def test_try_decode_and_image_error_agree():
    good = encode(Image.fromarray(random_rgb(3, 3)), "PNG")
    webp = encode(Image.fromarray(random_rgb(16, 16)), "WEBP")
    for content in (good, good[:40], b"", b"GIF89a garbage", webp[: len(webp) // 2]):
        pixels, error = decode.try_decode(content)
        assert (pixels is None) == (error is not None) == (decode.image_error(content) is not None)
    assert decode.image_error(webp[: len(webp) // 2]).startswith("truncated image")


def test_decompression_bomb_is_refused_from_the_header(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("L", (12000, 12000)).save(path, compress_level=1)  # 144 MP, ~0.6 MB on disk
    content = path.read_bytes()

    def no_decoding(self):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    assert decode.image_error(content, max_pixels=1_000_000) == "too many pixels (12000 x 12000 > 1000000)"
    assert decode.image_error(content) == "too many pixels (12000 x 12000 > 100000000)"
    assert Image.MAX_IMAGE_PIXELS is not None  # Pillow's own guard is left in place


def test_header_over_pillows_own_limit_is_too_many_pixels():
    # A PNG header claiming 20000 x 20000 (over twice Image.MAX_IMAGE_PIXELS): Pillow refuses it on open.
    error = decode.image_error(png(20000, 20000, 8, 0, b""))
    assert error.startswith("too many pixels (400000000 pixels > Pillow's limit")


def test_bad_arguments_raise_value_errors_naming_valid_values():
    content = encode(Image.fromarray(random_rgb(2, 2)), "PNG")
    with pytest.raises(ValueError, match="valid modes: RGB, L, RGBA"):
        decode.try_decode(content, "CMYK")
    with pytest.raises(ValueError, match="max_pixels must be a positive"):
        decode.try_decode(content, "RGB", 0)


def test_image_info_reads_the_header_only():
    content = encode(Image.fromarray(random_rgb(64, 64)), "JPEG")
    truncated = content[: len(content) // 2]
    assert decode.image_error(truncated).startswith("truncated image")
    assert decode.image_info(truncated) == {"format": "JPEG", "width": 64, "height": 64, "mode": "RGB",
                                            "orientation": 1}
    assert decode.image_info(b"") is None
    assert decode.image_info(b"not an image") is None


# --------------------------------------------------------------------------- decode_resize


@pytest.mark.parametrize("resize_mode", ["stretch", "cover", "fit"])
def test_decode_resize_is_close_to_decode_then_resize(resize_mode):
    from udfs.kernels import resize

    content = encode(Image.fromarray(photo_like(427, 640)), "JPEG", quality=92)
    fast = decode.decode_resize(content, 48, 64, resize_mode, "bilinear")
    slow = resize.resize(decode.decode(content), 48, 64, resize_mode, "bilinear")
    assert fast.shape == slow.shape == (48, 64, 3)
    difference = np.abs(fast.astype(np.int16) - slow.astype(np.int16))
    assert difference.mean() < 1.5 and difference.max() < 24


@pytest.mark.parametrize("orientation", range(1, 9))
def test_decode_resize_follows_exif_orientation(orientation):
    from udfs.kernels import resize

    exif = Image.Exif()
    exif[0x0112] = orientation
    content = encode(Image.fromarray(photo_like(427, 300)), "JPEG", quality=92, exif=exif)
    fast = decode.decode_resize(content, 40, 30, "cover", "bilinear")
    slow = resize.resize(decode.decode(content), 40, 30, "cover", "bilinear")
    assert np.abs(fast.astype(np.int16) - slow.astype(np.int16)).mean() < 1.5


def test_draft_reduces_large_jpegs_but_never_below_the_needed_size():
    content = encode(Image.fromarray(photo_like(427, 640)), "JPEG")
    image = Image.open(io.BytesIO(content))
    box = decode._draft(image, 50, 50, "cover")  # cover needs 75 x 50: 1/8 of 640 x 427 is 80 x 54
    assert image.size == (80, 54)
    assert box == (0, 0, 80.0, 427 / 8)
    image = Image.open(io.BytesIO(content))
    assert decode._draft(image, 300, 300, "stretch") is None and image.size == (640, 427)


# --------------------------------------------------------------------------- encode (decode's inverse)


def test_encode_png_round_trips_every_mode_and_jpeg_is_close():
    from udfs.kernels import encode as encode_kernel

    for channels in (1, 3, 4):
        source = np.random.default_rng(channels).integers(0, 256, (6, 5, channels), dtype=np.uint8)
        content = encode_kernel.encode(source, "png")
        assert content.startswith(b"\x89PNG")
        mode = {1: "L", 3: "RGB", 4: "RGBA"}[channels]
        np.testing.assert_array_equal(decode.decode(content, mode), source)
    smooth = photo_like(32, 48)
    jpeg = encode_kernel.encode(smooth, "JPG", quality=95)
    assert jpeg[:2] == b"\xff\xd8" and Image.open(io.BytesIO(jpeg)).format == "JPEG"
    assert np.abs(decode.decode(jpeg).astype(np.int16) - smooth).mean() < 3


def test_encode_jpeg_composites_alpha_on_white_and_is_deterministic():
    from udfs.kernels import encode as encode_kernel

    transparent = np.zeros((8, 8, 4), dtype=np.uint8)
    jpeg = encode_kernel.encode(transparent, "JPEG", 90)
    assert (decode.decode(jpeg) >= 250).all()
    assert encode_kernel.encode(transparent, "JPEG", 90) == jpeg
    with pytest.raises(ValueError, match="valid formats: PNG, JPEG"):
        encode_kernel.encode(transparent, "GIF")
    with pytest.raises(ValueError, match="quality must be a whole number from 1 to 100"):
        encode_kernel.encode(transparent, "JPEG", 0)
