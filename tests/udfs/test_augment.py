"""udfs.kernels.augment: determinism first, then each op against NumPy/Pillow written out here,
then the op language and its error messages."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from udfs.kernels.augment import (
    OPS,
    Brightness,
    GaussianNoise,
    HFlip,
    RandomResizedCrop,
    Rotate,
    Saturation,
    augment,
    format_ops,
    op_generators,
    parse_ops,
    seed_entropy,
)

ROOT = Path(__file__).resolve().parents[2]
FULL_SPEC = (
    "hflip(p=0.5); vflip(p=0.1); rotate(degrees=15, fill=0); brightness(0.2); contrast(0.2); saturation(0.3); "
    "random_resized_crop(size=224, scale=(0.08,1.0), ratio=(0.75,1.333)); gaussian_noise(std=8)"
)
RNG = np.random.default_rng(3)
RGB = RNG.integers(0, 256, size=(60, 80, 3), dtype=np.uint8)
GRAY = RNG.integers(0, 256, size=(60, 80, 1), dtype=np.uint8)
RGBA = RNG.integers(0, 256, size=(60, 80, 4), dtype=np.uint8)


def run(pixels, spec, seed=1, identity="cats/a.jpg", copy_index=0):
    return augment(pixels, parse_ops(spec), seed, identity, copy_index)


# --------------------------------------------------------------------------- determinism


def test_same_inputs_give_identical_bytes():
    first = run(RGB, FULL_SPEC)
    second = run(RGB.copy(), FULL_SPEC)
    assert first.shape == (224, 224, 3) and first.dtype == np.uint8 and first.flags.c_contiguous
    assert first.tobytes() == second.tobytes()


@pytest.mark.parametrize("change", [{"copy_index": 1}, {"seed": 2}, {"identity": "cats/b.jpg"}])
def test_different_copy_seed_or_identity_give_different_output(change):
    assert run(RGB, FULL_SPEC).tobytes() != run(RGB, FULL_SPEC, **change).tobytes()


def test_output_is_identical_in_another_process_with_another_hash_seed():
    # Python's hash() of a str differs between processes; SHA-256 does not.
    script = (
        "import hashlib, numpy as np\n"
        "from udfs.kernels.augment import augment\n"
        "x = np.random.default_rng(3).integers(0, 256, size=(60, 80, 3), dtype=np.uint8)\n"
        f"print(hashlib.sha256(augment(x, {FULL_SPEC!r}, 1, 'cats/a.jpg', 0).tobytes()).hexdigest())\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(ROOT)}
    other = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    assert other.stdout.strip() == hashlib.sha256(run(RGB, FULL_SPEC).tobytes()).hexdigest()


def test_seed_is_sha256_of_the_canonical_key():
    key = json.dumps(["spark-image-data/augment/v1", 7, "cats/a.jpg", 3]).encode("utf-8")
    assert seed_entropy(7, "cats/a.jpg", 3) == int.from_bytes(hashlib.sha256(key).digest(), "big")


def test_flip_decisions_are_pinned():
    # Pinned on purpose: a change to the seeding scheme reshuffles every stored augmented data set.
    line = np.arange(6, dtype=np.uint8).reshape(1, 6, 1)
    flipped = "".join(
        "1" if not np.array_equal(augment(line, "hflip", 7, "cats/a.jpg", i), line) else "0" for i in range(16)
    )
    assert flipped == "1010111000011001"


def test_each_op_has_its_own_random_stream():
    # The crop draws 4 numbers in one case and 20 (10 failed attempts) in the other; on a flat
    # image both crops are flat, so the noise after them must be the same draws.
    flat = np.full((64, 64, 3), 100, np.uint8)
    one_attempt = run(flat, "random_resized_crop(32, scale=(1, 1), ratio=(1, 1)); gaussian_noise(std=8)")
    ten_attempts = run(flat, "random_resized_crop(32, scale=(1, 1), ratio=(2, 2)); gaussian_noise(std=8)")
    assert not np.all(one_attempt == 100)
    np.testing.assert_array_equal(one_attempt, ten_attempts)


def test_flip_probability_is_respected_over_many_copies():
    line = np.arange(6, dtype=np.uint8).reshape(1, 6, 1)
    flips = sum(not np.array_equal(augment(line, "hflip(p=0.3)", 0, "x", i), line) for i in range(400))
    assert 90 <= flips <= 150  # 120 expected; deterministic, so this cannot flake


def test_input_is_not_modified_and_output_is_a_new_array():
    before = RGB.copy()
    out = run(RGB, "hflip(p=0)")
    np.testing.assert_array_equal(RGB, before)
    np.testing.assert_array_equal(out, RGB)
    assert not np.shares_memory(out, RGB)


def test_a_spec_string_is_accepted_in_place_of_parsed_ops():
    assert augment(RGB, FULL_SPEC, 1, "cats/a.jpg", 0).tobytes() == run(RGB, FULL_SPEC).tobytes()


@pytest.mark.parametrize(
    "seed, identity, copy_index, error",
    [(1.5, "x", 0, TypeError), (1, None, 0, TypeError), (1, "x", -1, ValueError)],
)
def test_bad_row_keys_are_refused(seed, identity, copy_index, error):
    with pytest.raises(error):
        augment(RGB, "hflip", seed, identity, copy_index)


# --------------------------------------------------------------------------- geometric ops


@pytest.mark.parametrize("pixels", [RGB, GRAY, RGBA], ids=["rgb", "gray", "rgba"])
def test_flips_with_p_1_equal_numpy_flips(pixels):
    np.testing.assert_array_equal(run(pixels, "hflip(p=1)"), np.fliplr(pixels))
    np.testing.assert_array_equal(run(pixels, "vflip(p=1)"), np.flipud(pixels))
    np.testing.assert_array_equal(run(pixels, "hflip(p=0); vflip(p=0)"), pixels)


@pytest.mark.parametrize("pixels", [RGB, GRAY, RGBA], ids=["rgb", "gray", "rgba"])
def test_rotate_by_zero_degrees_is_the_identity(pixels):
    np.testing.assert_array_equal(run(pixels, "rotate(degrees=0)"), pixels)


def test_rotate_is_counter_clockwise_like_torchvision():
    square = RGB[:, :60]
    np.testing.assert_array_equal(run(square, "rotate(degrees=(90, 90))"), np.rot90(square))


def test_rotate_fills_the_corners():
    assert run(RGB, "rotate(degrees=(45, 45), fill=(10, 20, 30))")[0, 0].tolist() == [10, 20, 30]
    assert run(GRAY, "rotate(degrees=(45, 45), fill=7)")[0, 0].tolist() == [7]
    # A colour on grayscale becomes its luma (Pillow's L conversion): 10*299/1000 + 200*587/1000 + 30*114/1000.
    assert run(GRAY, "rotate(degrees=(45, 45), fill=(10, 200, 30))")[0, 0].tolist() == [124]
    assert run(RGBA, "rotate(degrees=(45, 45), fill=0)")[0, 0].tolist() == [0, 0, 0, 0]
    assert run(RGBA, "rotate(degrees=(45, 45), fill=(1, 2, 3))")[0, 0].tolist() == [1, 2, 3, 255]


def test_rotate_matches_pillow_at_the_drawn_angle():
    op = Rotate(degrees=(30, 30))
    expected = np.asarray(Image.fromarray(RGB).rotate(30, resample=Image.Resampling.BILINEAR, fillcolor=(0, 0, 0)))
    np.testing.assert_array_equal(augment(RGB, [op], 0, "x", 0), expected)


@pytest.mark.parametrize("size, shape", [(224, (224, 224)), ((100, 150), (100, 150)), (8, (8, 8))])
@pytest.mark.parametrize("pixels", [RGB, GRAY, RGBA], ids=["rgb", "gray", "rgba"])
def test_random_resized_crop_output_size(size, shape, pixels):
    out = augment(pixels, [RandomResizedCrop(size=size)], 5, "x", 0)
    assert out.shape == shape + (pixels.shape[2],)


def test_random_resized_crop_boxes_respect_scale_and_ratio():
    op = RandomResizedCrop(size=32, scale=(0.2, 0.6), ratio=(0.5, 2.0))
    for i in range(200):
        top, left, h, w = op.crop_box(300, 400, np.random.default_rng(i))
        assert 0 <= top and top + h <= 300 and 0 <= left and left + w <= 400
        assert 0.2 * 0.95 <= h * w / (300 * 400) <= 0.6 * 1.05  # rounding of h and w
        assert 0.5 * 0.95 <= w / h <= 2.0 * 1.05


def test_random_resized_crop_falls_back_to_torchvisions_centre_crop():
    # A 10x1000 strip cannot hold a square covering 90 % of it: after 10 attempts,
    # torchvision takes h = 10, w = round(10 * max ratio) = 10, centred: left = (1000 - 10) // 2.
    op = RandomResizedCrop(size=5, scale=(0.9, 1.0), ratio=(1.0, 1.0))
    assert op.crop_box(10, 1000, np.random.default_rng(0)) == (0, 495, 10, 10)
    tall = RandomResizedCrop(size=5, scale=(0.9, 1.0), ratio=(0.5, 2.0))
    assert tall.crop_box(1000, 10, np.random.default_rng(0)) == (490, 0, 20, 10)  # h = round(10 / 0.5)


def test_random_resized_crop_is_crop_then_bilinear_resize():
    op = RandomResizedCrop(size=(20, 30))
    top, left, h, w = op.crop_box(60, 80, op_generators(1, "x", 0, 1)[0])
    expected = Image.fromarray(RGB[top : top + h, left : left + w]).resize((30, 20), Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(augment(RGB, [op], 1, "x", 0), np.asarray(expected))


# --------------------------------------------------------------------------- colour ops


def test_brightness_matches_pillow_and_zero_is_black():
    expected = np.asarray(ImageEnhance.Brightness(Image.fromarray(RGB)).enhance(0.5))
    np.testing.assert_array_equal(run(RGB, "brightness((0.5, 0.5))"), expected)
    assert not run(RGB, "brightness((0, 0))").any()


def test_contrast_zero_is_the_mean_gray():
    mean_gray = int(np.asarray(Image.fromarray(RGB).convert("L"), dtype=np.float64).mean() + 0.5)
    assert np.all(run(RGB, "contrast((0, 0))") == mean_gray)


def test_saturation_zero_is_the_grayscale_image():
    luma = np.asarray(Image.fromarray(RGB).convert("L"))
    np.testing.assert_array_equal(run(RGB, "saturation((0, 0))"), np.stack([luma] * 3, axis=-1))


def test_saturation_is_a_no_op_on_grayscale():
    np.testing.assert_array_equal(run(GRAY, "saturation((0, 0))"), GRAY)


def test_colour_jitter_draws_factors_in_the_torchvision_range():
    # amount 0.2 -> factor uniform in [0.8, 1.2]; amount 1.5 -> [0, 2.5].
    assert Brightness(0.2).amount == (0.8, 1.2)
    assert Saturation(1.5).amount == (0.0, 2.5)
    flat = np.full((4, 4, 1), 100, np.uint8)
    values = {int(run(flat, "brightness(0.2)", copy_index=i)[0, 0, 0]) for i in range(200)}
    assert min(values) >= 80 and max(values) <= 120 and len(values) > 20


@pytest.mark.parametrize("spec", ["brightness(0.5)", "contrast(0.5)", "saturation(0.5)", "gaussian_noise(std=20)"])
def test_colour_ops_keep_alpha_unchanged(spec):
    out = run(RGBA, spec)
    np.testing.assert_array_equal(out[:, :, 3], RGBA[:, :, 3])
    assert not np.array_equal(out[:, :, :3], RGBA[:, :, :3])


def test_gaussian_noise_statistics_rounding_and_clipping():
    gray = np.full((100, 100, 3), 128, np.uint8)
    noisy = run(gray, "gaussian_noise(std=8)").astype(np.float64)
    assert abs(noisy.mean() - 128) < 0.5 and abs(noisy.std() - 8) < 0.5
    np.testing.assert_array_equal(run(gray, "gaussian_noise(std=0)"), gray)
    assert np.all(run(gray, "gaussian_noise(std=0, mean=0.4)") == 128)  # 128.4 rounds down
    assert np.all(run(gray, "gaussian_noise(std=0, mean=0.6)") == 129)  # 128.6 rounds up
    white = np.full((50, 50, 1), 250, np.uint8)
    clipped = run(white, "gaussian_noise(std=50)")
    assert clipped.max() == 255 and clipped.min() > 0 and (clipped == 255).mean() > 0.3  # no wrap-around


def test_grayscale_keeps_one_channel_through_every_op():
    assert run(GRAY, FULL_SPEC).shape == (224, 224, 1)


# --------------------------------------------------------------------------- the op language


def test_full_spec_parses_to_the_expected_ops():
    ops = parse_ops(FULL_SPEC)
    assert [op.name for op in ops] == [
        "hflip", "vflip", "rotate", "brightness", "contrast", "saturation", "random_resized_crop", "gaussian_noise",
    ]
    assert ops[0] == HFlip(p=0.5)
    assert ops[2] == Rotate(degrees=(-15.0, 15.0), fill=0)
    assert ops[6] == RandomResizedCrop(size=(224, 224), scale=(0.08, 1.0), ratio=(0.75, 1.333))
    assert ops[7] == GaussianNoise(std=8.0, mean=0.0)


def test_defaults_positional_values_and_whitespace():
    assert parse_ops("hflip") == [HFlip(p=0.5)]
    assert parse_ops(" vflip() ;\n rotate( 10 , (1, 2, 3) ) ; ") == [
        OPS["vflip"](p=0.5),
        Rotate(degrees=(-10.0, 10.0), fill=(1, 2, 3)),
    ]
    assert parse_ops("random_resized_crop(64)")[0].ratio == (3 / 4, 4 / 3)
    assert parse_ops("") == [] and parse_ops(" ; ") == []


def test_canonical_text_round_trips():
    ops = parse_ops(FULL_SPEC)
    text = format_ops(ops)
    assert text.startswith("hflip(p=0.5); vflip(p=0.1); rotate(degrees=(-15.0, 15.0), fill=0); brightness(amount=(0.8, 1.2))")
    assert parse_ops(text) == ops


def test_ops_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        HFlip().p = 1.0


@pytest.mark.parametrize(
    "spec, message",
    [
        ("hlfip(p=1)", r"unknown augmentation op 'hlfip' in 'hlfip\(p=1\)' \(did you mean 'hflip'\?\); valid ops: hflip, vflip, rotate"),
        ("hflip(q=1)", r"hflip: unknown parameter 'q' in 'hflip\(q=1\)'; valid parameters: p"),
        ("hflip(p=2)", r"hflip: p must be a number in \[0, 1\], got 2 in 'hflip\(p=2\)'"),
        ("rotate()", r"rotate: missing required parameter 'degrees' in 'rotate\(\)'; parameters: degrees, fill"),
        ("rotate(15, 0, 3)", r"rotate: takes at most 2 positional value\(s\) \(degrees, fill\), got 3"),
        ("rotate(15, degrees=3)", r"rotate: parameter 'degrees' given twice"),
        ("rotate(degrees=x)", r"rotate: values must be numbers or tuples of numbers, got 'x'"),
        ("rotate(15, fill=(1, 2))", r"rotate: fill must be an integer 0..255 or a colour"),
        ("hflip(p=0.5", r"cannot parse augmentation op 'hflip\(p=0.5': write name\(value, key=value, ...\)"),
        ("brightness(-1)", r"brightness: amount must be a number >= 0, got -1"),
        ("contrast((1.5, 0.5))", r"contrast: amount must be a pair \(min, max\) of numbers >= 0 with min <= max"),
        ("random_resized_crop(size=0)", r"random_resized_crop: size must be a positive integer"),
        ("random_resized_crop(224, scale=(1, 0.5))", r"random_resized_crop: scale must be a pair \(min, max\) of numbers > 0"),
        ("gaussian_noise()", r"gaussian_noise: missing required parameter 'std'"),
        ("gaussian_noise(std=True)", r"gaussian_noise: std must be a number >= 0, got True"),
        ("hflip(p=0.5); __import__('os')", r"unknown augmentation op '__import__'"),
        ("rotate(degrees=__import__('os').getpid())", r"rotate: values must be numbers or tuples of numbers"),
    ],
)
def test_parse_errors_name_the_bad_op_and_the_valid_choices(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_ops(spec)
