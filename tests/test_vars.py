"""Typed vars (macros/vars.sql): a wrong value stops the build naming the var and the type it needs.

Everything here compiles only (no Spark): the checks run while models are rendered.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.incremental import copy_project
from runner_helpers import run_cli, write_project

VARS_MACROS = (Path(__file__).resolve().parent.parent / "macros" / "vars.sql").read_text()


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> Path:
    return copy_project(tmp_path_factory.mktemp("example"))


def compile_example(capsys, project: Path, **vars) -> tuple[int, str]:
    shutil.rmtree(project / "target", ignore_errors=True)
    code, _, err = run_cli(capsys, "compile", "--project-dir", str(project), "--vars", json.dumps(vars))
    return code, err


def compiled(project: Path, model: str) -> str:
    found = list((project / "target/compiled").rglob(f"models/*/{model}.sql"))
    return " ".join(found[0].read_text().split())


@pytest.mark.parametrize("vars, expected", [
    ({"image_size": "big"}, ["models/", "var 'image_size' must be a whole number of at least 1, got 'big' (a string)"]),
    ({"image_size": 0}, ["var 'image_size' must be a whole number of at least 1, got 0"]),
    ({"resize_mode": "square"}, ["models/features/images_resized.sql:", "var 'resize_mode' must be one of stretch, fit, cover"]),
    ({"interpolation": "cubic"}, ["var 'interpolation' must be one of nearest, bilinear, bicubic, lanczos"]),
    ({"histogram_bins": 300}, ["var 'histogram_bins' must be a whole number from 1 to 256, got 300"]),
    ({"near_duplicate_max_distance": "4"}, ["models/features/near_duplicates.sql:", "var 'near_duplicate_max_distance'", "got '4' (a string)"]),
    ({"near_duplicate_max_distance": -1}, ["models/features/near_duplicates.sql:",
                                          "var 'near_duplicate_max_distance' must be a whole number from 0 to 64, got -1"]),
    ({"near_duplicate_max_distance": 65}, ["var 'near_duplicate_max_distance' must be a whole number from 0 to 64, got 65"]),
    ({"augment_copies": 1.5}, ["models/datasets/images_augmented.sql:", "var 'augment_copies' must be a whole number from 0 to 1000"]),
    ({"augment_ops": ["hflip"]}, ["var 'augment_ops' must be a string"]),
    ({"seed": True}, ["var 'seed' must be a whole number, got true"]),
    ({"split": "70/15/15"}, ["models/datasets/splits.sql:", "var 'split' must be three ratios"]),
    ({"split": [0.8, 0.3, -0.1]}, ["var 'split' must be three ratios (train, val, test) of at least 0"]),
    ({"normalization": "imgnet"}, ["models/datasets/", "var 'normalization' must be one of zero_one, minus_one_one, standard, imagenet"]),
    ({"store_tensors": "false"}, ["var 'store_tensors' must be true or false, got 'false' (a string)"]),
    ({"min_images_per_class": "ten"}, ["models/datasets/_datasets.yml:", "min_count must be a whole number",
                                       "var('min_images_per_class') = 'ten'"]),
])
def test_the_examples_vars_are_checked_where_they_are_used(capsys, example, vars, expected):
    code, err = compile_example(capsys, example, **vars)
    assert code == 2, err
    assert "Traceback" not in err and "UNRESOLVED_COLUMN" not in err
    for part in expected:
        assert part in err


def test_valid_vars_reach_the_sql_as_given(capsys, example):
    code, err = compile_example(capsys, example, image_size=64, resize_mode="Fit", interpolation="bicubic",
                                histogram_bins=16, augment_copies=0, seed=7, store_tensors=True,
                                normalization="standard", near_duplicate_max_distance=0)
    assert code == 0, err
    assert "prepare_image(s.content, s.path, 64, 64, 'Fit', 'bicubic', null, 16)" in compiled(example, "images_resized")
    assert "prepare_augmented(r.image, 'hflip(p=0.5);" in compiled(example, "images_augmented")
    assert "', 7, 0, f.relative_path, 16)" in compiled(example, "images_augmented")
    assert "normalize(image, 'standard') as tensor" in compiled(example, "train_set")
    assert "x / (64 * 64)" in compiled(example, "ml_features")
    assert "(phash >> (band * 64)) & -1 as band_value" in compiled(example, "near_duplicates")  # one band of 64 bits
    assert "sequence(0, 0)" in compiled(example, "near_duplicates")
    assert "hamming(n.image.phash, o.image.phash) <= 0" in compiled(example, "near_duplicates")


def render_with_vars_macros(tmp_path: Path, capsys, model_sql: str, **vars) -> tuple[int, str, Path]:
    root = write_project(tmp_path, {"macros/vars.sql": VARS_MACROS, "models/m.sql": model_sql})
    code, _, err = run_cli(capsys, "compile", "--project-dir", str(root), "--vars", json.dumps(vars))
    return code, err, root


@pytest.mark.parametrize("model_sql, vars, sql", [
    ("select {{ int_var('n', min=1, max=3) }} as n", {"n": 3}, "select 3 as n"),
    ("select {{ int_var('n', default=5) }} as n", {}, "select 5 as n"),
    ("select '{{ choice_var('m', ['a', 'b']) }}' as m", {"m": "b"}, "select 'b' as m"),
    ("select '{{ choice_var('m', ['a', 'b'], ignore_case=true) }}' as m", {"m": "B"}, "select 'B' as m"),
    ("select {{ bool_var('flag', default=false) }} as f", {}, "select False as f"),
    ("select '{{ string_var('s') }}' as s", {"s": "x"}, "select 'x' as s"),
])
def test_typed_vars_return_the_value_unchanged(tmp_path, capsys, model_sql, vars, sql):
    code, err, root = render_with_vars_macros(tmp_path, capsys, model_sql, **vars)
    assert code == 0, err
    assert (root / "target/compiled/demo/models/m.sql").read_text().strip() == sql


@pytest.mark.parametrize("model_sql, vars, message", [
    ("select {{ int_var('n', max=3) }}", {"n": 4}, "var 'n' must be a whole number of at most 3, got 4"),
    ("select {{ int_var('n') }}", {"n": None}, "var 'n' must be a whole number, got null"),
    ("select {{ choice_var('m', ['a', 'b']) }}", {"m": "B"}, "var 'm' must be one of a, b, got 'B' (a string)"),
    ("select {{ bool_var('flag') }}", {"flag": 1}, "var 'flag' must be true or false, got 1"),
    ("select {{ int_var('n') }}", {}, "var('n') is not defined"),
])
def test_typed_vars_name_the_var_the_type_and_the_model(tmp_path, capsys, model_sql, vars, message):
    code, err, _ = render_with_vars_macros(tmp_path, capsys, "-- a comment\n" + model_sql, **vars)
    assert code == 2
    assert f"models/m.sql:2: {message}" in err
