"""The catalog of SQL image functions: the one place that says what each function is.

Every entry gives the SQL name, parameters with their SQL defaults, return type, a
description, an example, and the code behind it: the wrapper in
``udfs.spark_functions`` (or, for a function written in SQL, its body) and the kernel
modules it runs. ``register_all`` registers from this list, ``python -m udfs.reference``
writes ``docs/functions.md`` from it, and ``function_source_files`` lists the files to
hash when deciding whether a model built with a function must be rebuilt.

In signatures, ``IMAGE`` stands for the image struct of ``udfs.image_struct``:
``struct<origin:string, height:int, width:int, nChannels:int, mode:string, data:binary>``
(``mode`` "L", "RGB" or "RGBA", ``data`` interleaved HWC uint8 in RGB(A) order).
Functions that take an ``IMAGE`` also accept Spark's image-source struct (integer
OpenCV ``mode``, BGR(A) data).
"""
from __future__ import annotations

import ast
import importlib
import re
from dataclasses import dataclass
from pathlib import Path

from udfs.image_struct import IMAGE_DDL

PACKAGE_DIR = Path(__file__).resolve().parent
# Modules every Python-backed function runs besides its kernels: the wrapper, argument
# and struct plumbing, and this catalog (it fixes return types and defaults).
SHARED_MODULES = ("udfs.catalog", "udfs.spark_functions", "udfs.batch", "udfs.image_struct")


@dataclass(frozen=True)
class Param:
    """One SQL parameter; ``default`` is SQL literal text (``'RGB'``, ``90``, ``NULL``) or None if required."""

    name: str
    type: str
    default: str | None = None

    def __str__(self) -> str:
        return f"{self.name} {self.type}" + (f" = {self.default}" if self.default is not None else "")

    def python_default(self):
        """The default as the Python value the wrapper must declare (checked by the tests)."""
        text = self.default
        if text is None:
            raise ValueError(f"parameter {self.name} has no default")
        if text.upper() == "NULL":
            return None
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        return ast.literal_eval(text)


@dataclass(frozen=True)
class FunctionSpec:
    """A SQL function: what it is (for users and docs) and what runs it (for registration and fingerprints)."""

    name: str
    params: tuple[Param, ...]
    returns: str
    description: str
    example: str
    kernels: tuple[str, ...] = ()
    sql_body: str | None = None

    @property
    def wrapper(self) -> str | None:
        """Name of the Python callable behind the function: the SQL name (None for a SQL-bodied one)."""
        return None if self.sql_body is not None else self.name

    @property
    def signature(self) -> str:
        return f"{self.name}({', '.join(str(p) for p in self.params)}) -> {self.returns}"

    @property
    def return_ddl(self) -> str:
        """Spark DDL of the return type, ``IMAGE`` spelled out."""
        return re.sub(r"\bIMAGE\b(?!\s*:)", IMAGE_DDL, self.returns)

    @property
    def modules(self) -> tuple[str, ...]:
        """Python modules whose code decides this function's results."""
        if self.sql_body is not None:
            return ("udfs.catalog",)
        if self.returns == VECTOR:
            return ("udfs.catalog",) + self.kernels
        return SHARED_MODULES + self.kernels

    @property
    def wrapper_module(self) -> str:
        """The module holding the Python callable Spark runs (Spark ML vectors have their own)."""
        return "udfs.ml" if self.returns == VECTOR else "udfs.spark_functions"

    def implementation(self):
        """The Python callable behind the function (None for a SQL-bodied one)."""
        if self.wrapper is None:
            return None
        return getattr(importlib.import_module(self.wrapper_module), self.wrapper)

    @property
    def create_sql(self) -> str:
        """``CREATE OR REPLACE TEMPORARY FUNCTION`` statement of a SQL-bodied function."""
        params = ", ".join(f"{p.name} {p.type}" for p in self.params)
        return f"CREATE OR REPLACE TEMPORARY FUNCTION {self.name}({params}) RETURNS {self.returns} RETURN {self.sql_body}"


IMAGE = "IMAGE"
VECTOR = "VECTOR"  # Spark ML's vector type: not a SQL DDL type, so registered as a row UDF
_DECODE = ("udfs.kernels.decode", "udfs.kernels.color", "udfs.kernels.resize")
_FEATURES = ("udfs.kernels.features", "udfs.kernels.color")
_MAX_PIXELS = Param("max_pixels", "BIGINT", "100000000")
# The leading parameters of the functions that go from file bytes to a resized image.
_FILE_TO_SIZE = (Param("content", "BINARY"), Param("path", "STRING"), Param("height", "INT"), Param("width", "INT"),
                 Param("resize_mode", "STRING", "'stretch'"), Param("interpolation", "STRING", "'bilinear'"))

FUNCTIONS: tuple[FunctionSpec, ...] = (
    FunctionSpec(
        "decode_image",
        (Param("content", "BINARY"), Param("path", "STRING"), Param("mode", "STRING", "'RGB'"), _MAX_PIXELS),
        IMAGE,
        "Decode file bytes (e.g. the `content` column of Spark's `binaryFile` source) with Pillow into an image "
        "of `mode` 'RGB', 'L' or 'RGBA', with `origin` = `path`. EXIF orientation is applied; only the first "
        "frame of GIF/APNG/multi-page TIFF is used; CMYK becomes RGB; 16-bit samples are scaled to 8 bits as "
        "`v >> 8`; transparent pixels are composited on white unless mode is 'RGBA'. Files over `max_pixels` "
        "pixels are refused from their header before decoding. Returns NULL for a file that is not a usable "
        "image; `image_error` (same code path) says why.",
        "SELECT path, decode_image(content, path) AS image FROM files",
        _DECODE,
    ),
    FunctionSpec(
        "image_error",
        (Param("content", "BINARY"), Param("path", "STRING"), _MAX_PIXELS),
        "STRING",
        "NULL when `decode_image(content, path, 'RGB', max_pixels)` gives an image, else a short reason starting "
        "with a stable category: 'empty file' (also for NULL content), 'not an image', 'truncated image', "
        "'unsupported format', 'too many pixels (W x H > limit)' or 'corrupt image: <detail>'. The category is "
        "`regexp_extract(error, '^[a-z ]*[a-z]', 0)`. It decodes the file (a truncated file is only found by "
        "decoding), so use `try_decode_image` when you need both the image and the reason.",
        "SELECT path, image_error(content, path) AS error FROM files WHERE image_error(content, path) IS NOT NULL",
        _DECODE,
    ),
    FunctionSpec(
        "try_decode_image",
        (Param("content", "BINARY"), Param("path", "STRING"), Param("mode", "STRING", "'RGB'"), _MAX_PIXELS),
        f"STRUCT<image: {IMAGE}, error: STRING>",
        "`decode_image` and `image_error` from a single decode: exactly one of `image` and `error` is NULL. "
        "The way to keep bad files as rows with a reason instead of decoding twice.",
        "SELECT path, d.image, d.error FROM (SELECT path, try_decode_image(content, path) AS d FROM files)",
        _DECODE,
    ),
    FunctionSpec(
        "image_info",
        (Param("content", "BINARY"),),
        "STRUCT<format: STRING, width: INT, height: INT, mode: STRING, orientation: INT>",
        "Format ('JPEG', 'PNG', ...), size, Pillow mode ('RGB', 'P', 'I;16', 'CMYK', ...) and EXIF orientation "
        "(1-8, 1 when absent) read from the file header only, without decoding pixels: cheap enough to profile a "
        "whole data set. `width` and `height` are after EXIF orientation, i.e. what `decode_image` returns. NULL "
        "for files Pillow cannot identify. A good header does not prove the file decodes (see `image_error`).",
        "SELECT info.format, count(*) FROM (SELECT image_info(content) AS info FROM files) GROUP BY info.format",
        _DECODE,
    ),
    FunctionSpec(
        "decode_resize",
        _FILE_TO_SIZE + (Param("mode", "STRING", "'RGB'"), _MAX_PIXELS),
        IMAGE,
        "`resize(decode_image(content, path, mode, max_pixels), height, width, resize_mode, interpolation)` in one "
        "step, faster for JPEGs much larger than the target: Pillow's `Image.draft` lets libjpeg decode at 1/2, "
        "1/4 or 1/8 scale, never below the size the resize needs. The result is close to, not bit-identical "
        "with, the two-step version (on photos: mean absolute difference under 1 gray level, at most about 3). "
        "Fit mode pads with black. "
        "NULL for a bad file, like `decode_image`.",
        "SELECT path, decode_resize(content, path, 224, 224, 'cover') AS image FROM files",
        _DECODE,
    ),
    FunctionSpec(
        "prepare_image",
        _FILE_TO_SIZE + (Param("normalization", "STRING", "'imagenet'"), Param("histogram_bins", "INT", "32"),
                         _MAX_PIXELS),
        f"STRUCT<width: INT, height: INT, image: {IMAGE}, tensor: BINARY, tensor_shape: ARRAY<INT>, "
        "histogram: ARRAY<INT>, image_stats: STRUCT<mean: ARRAY<DOUBLE>, std: ARRAY<DOUBLE>, min: ARRAY<INT>, "
        "max: ARRAY<INT>>, phash: BIGINT, error: STRING>",
        "Everything a training table needs from a file, in one Python call per image: `width` and `height` of the "
        "original image (EXIF orientation applied), `image` = `decode_resize(content, path, height, width, "
        "resize_mode, interpolation)` in RGB, `tensor` = `normalize(image, normalization)` (float32 CHW bytes) with "
        "its `tensor_shape`, `histogram` = `color_histogram(image, histogram_bins)` as integer counts, "
        "`image_stats` = `image_stats(image)` and `phash` = `phash(image)`. Equal to those functions called one "
        "by one, and much faster: the file crosses into Python once and the resized pixels are not sent back "
        "and forth between the calls. `normalization` is 'zero_one', 'minus_one_one', "
        "'standard' or 'imagenet'; NULL skips the tensor (`tensor` and `tensor_shape` NULL), as NULL "
        "`histogram_bins` skips the histogram. For a file that is not a usable image every field but `error` is "
        "NULL and `error` says why, as `image_error` would.",
        "SELECT path, p.width, p.height, p.image.data AS pixels, p.tensor, p.histogram "
        "FROM (SELECT path, prepare_image(content, path, 224, 224) AS p FROM files) WHERE p.error IS NULL",
        _DECODE + ("udfs.kernels.prepare", "udfs.kernels.normalize", "udfs.kernels.features"),
    ),
    FunctionSpec(
        "resize",
        (Param("image", IMAGE), Param("height", "INT"), Param("width", "INT"), Param("mode", "STRING", "'stretch'"),
         Param("interpolation", "STRING", "'bilinear'"), Param("pad_color", "STRING", "'#000000'")),
        IMAGE,
        "Resize to `height` x `width` with Pillow. `mode` 'stretch' ignores the aspect ratio; 'fit' keeps it, "
        "scaling the whole image inside the target and centring it on `pad_color` (as `PIL.ImageOps.pad`); "
        "'cover' keeps it, scaling the shorter side to the target and cropping the centre (as "
        "`PIL.ImageOps.fit`). `interpolation` is 'nearest', 'bilinear', 'bicubic' or 'lanczos' (Pillow's "
        "filters, antialiased when shrinking). An unknown mode or interpolation fails the query, naming the "
        "valid values.",
        "SELECT resize(image, 224, 224, 'cover', 'bicubic') AS image FROM images",
        ("udfs.kernels.resize", "udfs.kernels.color"),
    ),
    FunctionSpec(
        "center_crop",
        (Param("image", IMAGE), Param("height", "INT"), Param("width", "INT")),
        IMAGE,
        "The centred `height` x `width` region, top-left corner at ((H - height) div 2, (W - width) div 2). A "
        "side larger than the image is padded with black (zeros), as torchvision's `CenterCrop` does.",
        "SELECT center_crop(resize(image, 256, 256, 'cover'), 224, 224) AS image FROM images",
        ("udfs.kernels.resize", "udfs.kernels.color"),
    ),
    FunctionSpec(
        "to_grayscale",
        (Param("image", IMAGE),),
        IMAGE,
        "Mode 'L' with Pillow's ITU-R 601-2 luma, L = R * 299/1000 + G * 587/1000 + B * 114/1000. RGBA is "
        "composited on white first; an 'L' image is returned unchanged.",
        "SELECT to_grayscale(image) AS gray FROM images",
        ("udfs.kernels.color",),
    ),
    FunctionSpec(
        "encode_image",
        (Param("image", IMAGE), Param("format", "STRING", "'PNG'"), Param("quality", "INT", "90")),
        "BINARY",
        "PNG (lossless, keeps alpha) or JPEG (`quality` 1-100; alpha composited on white) file bytes of an "
        "image, without metadata: for thumbnails, exports and previews. `format` is case-insensitive; 'JPG' "
        "means 'JPEG'.",
        "SELECT path, encode_image(resize(image, 64, 64, 'fit'), 'JPEG', 85) AS thumbnail FROM images",
        ("udfs.kernels.encode", "udfs.kernels.color"),
    ),
    FunctionSpec(
        "normalize",
        (Param("image", IMAGE), Param("method", "STRING", "'zero_one'"), Param("mean", "ARRAY<FLOAT>", "NULL"),
         Param("std", "ARRAY<FLOAT>", "NULL"), Param("layout", "STRING", "'CHW'")),
        "BINARY",
        "The float32 tensor a model takes, as raw little-endian bytes in C order, channels first ('CHW', "
        "PyTorch) or last ('HWC'). `method`: 'zero_one' (x/255), 'minus_one_one' (x/127.5 - 1), 'standard' "
        "(per image and channel, zero mean and unit std), 'imagenet' ((x/255 - mean)/std with the ImageNet "
        "statistics), 'custom' (`mean` and `std` given, one per channel, on the 0-1 scale). Read it back in "
        "Python with `np.frombuffer(b, '<f4').reshape(tensor_shape)`, or in SQL with `tensor_to_array`.",
        "SELECT normalize(image, 'imagenet') AS tensor, tensor_shape(image) AS shape FROM images",
        ("udfs.kernels.normalize", "udfs.kernels.features", "udfs.kernels.tensor", "udfs.kernels.color"),
    ),
    FunctionSpec(
        "tensor_shape",
        (Param("image", IMAGE), Param("layout", "STRING", "'CHW'")),
        "ARRAY<INT>",
        "Shape of the tensor `normalize(image, ..., layout)` returns: [C, H, W] for 'CHW', [H, W, C] for 'HWC'. "
        "Store it next to a tensor column so readers can reshape the bytes.",
        "SELECT tensor_shape(image, 'HWC') AS shape FROM images",
        ("udfs.kernels.normalize", "udfs.kernels.features", "udfs.kernels.color"),
    ),
    FunctionSpec(
        "tensor_to_array",
        (Param("tensor", "BINARY"),),
        "ARRAY<FLOAT>",
        "The values of a float32 tensor (bytes as `normalize` writes them) as an array, in storage order: for "
        "inspection in SQL or for tools that need `array<float>`. The binary form is about 4 times smaller in "
        "memory traffic and much faster to write; convert only where needed.",
        "SELECT slice(tensor_to_array(normalize(image)), 1, 3) AS first_values FROM images",
        ("udfs.kernels.tensor",),
    ),
    FunctionSpec(
        "tensor_range",
        (Param("tensor", "BINARY"),),
        "STRUCT<min: FLOAT, max: FLOAT>",
        "Smallest and largest value of a float32 tensor, computed in one vectorised pass over its bytes: for range "
        "checks on tensor columns without converting them to `array<float>` (many times slower). Both are NaN when "
        "the tensor holds a NaN, so `r.min >= lo AND r.max <= hi` fails for it; NULL for a NULL or empty tensor.",
        "SELECT r.min, r.max FROM (SELECT tensor_range(normalize(image, 'imagenet')) AS r FROM images)",
        ("udfs.kernels.tensor",),
    ),
    FunctionSpec(
        "array_to_tensor",
        (Param("values", "ARRAY<FLOAT>"),),
        "BINARY",
        "The inverse of `tensor_to_array`: float32 little-endian bytes of an array (NULL elements become NaN).",
        "SELECT array_to_tensor(array(0.5F, 1.0F, -1.0F)) AS tensor",
        ("udfs.kernels.tensor",),
    ),
    FunctionSpec(
        "color_histogram",
        (Param("image", IMAGE), Param("bins", "INT", "32"), Param("normalized", "BOOLEAN", "false")),
        "ARRAY<DOUBLE>",
        "Per-channel histograms of `bins` equal bins over 0-255, concatenated (R bins, then G, then B; one "
        "channel for 'L'; alpha last for 'RGBA'). Bin edges are those of `numpy.histogram(channel, bins=bins, "
        "range=(0, 256))`. Whole-number counts, or with `normalized` fractions that sum to 1 per channel.",
        "SELECT path, color_histogram(image, 16, true) AS histogram FROM images",
        _FEATURES,
    ),
    FunctionSpec(
        "image_stats",
        (Param("image", IMAGE),),
        "STRUCT<mean: ARRAY<DOUBLE>, std: ARRAY<DOUBLE>, min: ARRAY<INT>, max: ARRAY<INT>>",
        "Per-channel mean, population standard deviation, minimum and maximum of the pixel values (0-255): for "
        "data checks (black frames, washed-out scans) and for data-set statistics.",
        "SELECT s.mean, s.std FROM (SELECT image_stats(image) AS s FROM images)",
        _FEATURES,
    ),
    FunctionSpec(
        "phash",
        (Param("image", IMAGE),),
        "BIGINT",
        "64-bit perceptual hash (DCT hash, as `imagehash.phash`) as a signed bigint: near-identical images "
        "(re-encoded, resized) get hashes a few bits apart. Compare with `hamming`.",
        "SELECT path, phash(image) AS hash FROM images",
        _FEATURES,
    ),
    FunctionSpec(
        "hamming",
        (Param("a", "BIGINT"), Param("b", "BIGINT")),
        "INT",
        "Number of differing bits between two 64-bit hashes. Written in SQL (`bit_count(a ^ b)`), so it runs in "
        "the JVM without a Python round trip: cheap enough for the pair joins of near-duplicate search.",
        "SELECT x.path, y.path FROM hashes x JOIN hashes y ON x.path < y.path WHERE hamming(x.hash, y.hash) <= 6",
        sql_body="bit_count(a ^ b)",
    ),
    FunctionSpec(
        "duplicate_groups",
        (Param("pairs", "ARRAY<STRUCT<a: STRING, b: STRING>>"),),
        "ARRAY<STRUCT<path: STRING, group_id: STRING>>",
        "The connected components of a graph given as pairs of paths (`a`, `b`), e.g. near-duplicates: one "
        "element for every path that appears in a pair, in path order, with `group_id` = the smallest path of "
        "its component, however long the chain that links them. Exact and deterministic (union-find, in one "
        "Python call), whatever the order of the pairs; a pair with a NULL end links nothing. Meant for an "
        "aggregate of all pairs, `collect_list(named_struct('a', ..., 'b', ...))`, so the pairs must fit in "
        "one row; `inline` turns the result into rows.",
        "SELECT inline(duplicate_groups(collect_list(named_struct('a', x.path, 'b', y.path)))) "
        "FROM hashes x JOIN hashes y ON x.path < y.path AND hamming(x.hash, y.hash) <= 6",
        ("udfs.kernels.groups",),
    ),
    FunctionSpec(
        "array_to_vector",
        (Param("values", "ARRAY<DOUBLE>"),),
        "VECTOR",
        "A dense Spark ML vector (`pyspark.ml.linalg.VectorUDT`) of the array's values, for the `features` "
        "column of `pyspark.ml` estimators; the SQL form of `pyspark.ml.functions.array_to_vector`.",
        "SELECT path, array_to_vector(color_histogram(image, 16, true)) AS features FROM images",
        ("udfs.ml",),
    ),
    FunctionSpec(
        "augment",
        (Param("image", IMAGE), Param("ops", "STRING"), Param("seed", "BIGINT"), Param("copy_index", "INT", "0"),
         Param("identity", "STRING", "NULL")),
        IMAGE,
        "A randomly augmented copy of the image, `ops` a spec such as 'hflip(p=0.5); rotate(15); "
        "brightness(0.2); random_resized_crop(224)' (see docs: hflip, vflip, rotate, brightness, contrast, "
        "saturation, random_resized_crop, gaussian_noise). Every random choice is seeded from `identity` "
        "(NULL: the image's `origin`), `seed` and `copy_index`, so reruns, task retries and repartitioning "
        "give identical bytes. Give a path below the images folder as `identity` to get the same copies "
        "wherever the folder is. A bad spec fails the query with a message naming the valid ops.",
        "SELECT augment(image, 'hflip; rotate(10)', 42) AS image FROM images",
        ("udfs.kernels.augment",) + _FEATURES,
    ),
    FunctionSpec(
        "augment_copies",
        (Param("image", IMAGE), Param("ops", "STRING"), Param("seed", "BIGINT"), Param("k", "INT"),
         Param("identity", "STRING", "NULL")),
        f"ARRAY<{IMAGE}>",
        "`k` augmented copies, equal to `augment(image, ops, seed, i, identity)` for i = 0 .. k-1. Turn them "
        "into rows with `posexplode`, which also gives the copy index.",
        "SELECT path, copy_index, copy FROM images "
        "LATERAL VIEW posexplode(augment_copies(image, 'hflip; rotate(10)', 42, 4)) c AS copy_index, copy",
        ("udfs.kernels.augment",) + _FEATURES,
    ),
    FunctionSpec(
        "prepare_augmented",
        (Param("image", IMAGE), Param("ops", "STRING"), Param("seed", "BIGINT"), Param("k", "INT"),
         Param("identity", "STRING", "NULL"), Param("histogram_bins", "INT", "32")),
        f"ARRAY<STRUCT<image: {IMAGE}, histogram: ARRAY<INT>>>",
        "`augment_copies(image, ops, seed, k, identity)` with each copy's `color_histogram(copy, histogram_bins)` "
        "as integer counts, in one Python call: the copies' pixels are not sent back to Python for their "
        "features. NULL `histogram_bins` leaves the histograms NULL.",
        "SELECT path, c.pos + 1 AS copy_index, c.copy.image, c.copy.histogram FROM images "
        "LATERAL VIEW posexplode(prepare_augmented(image, 'hflip; rotate(10)', 42, 2)) c AS pos, copy",
        ("udfs.kernels.augment", "udfs.kernels.features", "udfs.kernels.prepare", "udfs.kernels.normalize",
         "udfs.kernels.decode", "udfs.kernels.color", "udfs.kernels.resize"),
    ),
)

_BY_NAME = {spec.name: spec for spec in FUNCTIONS}


def function(name: str) -> FunctionSpec:
    """The catalog entry of a function, or ``KeyError`` listing the known names."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown image function {name!r}; known: {', '.join(_BY_NAME)}") from None


def function_source_files(name: str) -> list[Path]:
    """The Python source files whose content decides what ``name`` computes (sorted, no duplicates)."""
    return sorted({module_path(module) for module in function(name).modules})


def module_path(module: str) -> Path:
    """File of a module of this package, found without importing it."""
    if not module.startswith("udfs."):
        raise ValueError(f"not a module of the udfs package: {module}")
    return PACKAGE_DIR.joinpath(*module.split(".")[1:]).with_suffix(".py")
