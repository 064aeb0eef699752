"""Regenerate the bundled sample images in data/images/ from the shared TrashNet subset.

    python data/make_sample.py                    # rewrite data/images/
    python data/make_sample.py --check            # verify data/images/ matches, write nothing
    python data/make_sample.py --source DIR       # DIR = a copy of datasets/labeled/

What it writes (see data/SOURCES.md for attribution and licence):

* data/images/<class>/<file>.jpg for the classes in CLASSES, the first IMAGES_PER_CLASS
  files of each class folder in plain string order of their names (`sorted()`),
  each downscaled with Pillow so that its long side is LONG_SIDE px (LANCZOS), with
  the EXIF orientation applied to the pixels first, and saved as a baseline JPEG,
  quality 90, without metadata.
* data/images/<CORRUPT_CLASS>/corrupt_example.jpg: the first 40 % of the bytes of the
  first sample of that class, a truncated JPEG that the pipeline must report in its
  `image_errors` table instead of failing or skipping silently.

The classes were chosen because their colour histograms differ: nearest-centroid on
16-bin per-channel histograms with leave-one-out scores about 0.6 on these 48 photos
(chance is 0.25). Output is deterministic for a given Pillow/libjpeg build; other
builds may differ in a few bytes of JPEG output but not visibly.

The source folder is the shared data set (not part of a user's clone). Without it this
script refuses to run; the committed images are then the only copy and are enough.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import os
import sys
from pathlib import Path

from PIL import Image, ImageOps

CLASSES = ("cardboard", "paper", "plastic", "trash")
IMAGES_PER_CLASS = 12
LONG_SIDE = 160
JPEG_QUALITY = 90
CORRUPT_CLASS = "cardboard"
CORRUPT_NAME = "corrupt_example.jpg"
CORRUPT_FRACTION = 0.4

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "images"


def default_source() -> Path:
    """$SHARED_DATASETS/labeled, else ../shared/datasets/labeled beside the project."""
    shared = os.environ.get("SHARED_DATASETS")
    base = Path(shared) if shared else HERE.parent.parent / "shared" / "datasets"
    return base / "labeled"


def downscale(data: bytes) -> bytes:
    """One source JPEG -> the sample JPEG bytes (orientation applied, long side LONG_SIDE)."""
    with Image.open(io.BytesIO(data)) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        w, h = im.size
        scale = LONG_SIDE / max(w, h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = im.resize(size, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    small.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=False, progressive=False)
    return out.getvalue()


def load_manifest(source: Path) -> dict[str, str]:
    """path -> sha256 from labeled_manifest.csv beside the source folder (empty if absent)."""
    manifest = source.parent / "labeled_manifest.csv"
    if not manifest.is_file():
        return {}
    with manifest.open(newline="") as f:
        return {row["path"]: row["sha256"] for row in csv.DictReader(f)}


def build(source: Path) -> dict[str, bytes]:
    """Relative path under data/images -> file bytes, for every file the sample must hold."""
    expected_sha = load_manifest(source)
    files: dict[str, bytes] = {}
    for label in CLASSES:
        folder = source / label
        names = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".jpg")
        if len(names) < IMAGES_PER_CLASS:
            raise SystemExit(f"{folder}: found {len(names)} JPEG files, need {IMAGES_PER_CLASS}")
        for name in names[:IMAGES_PER_CLASS]:
            raw = (folder / name).read_bytes()
            want = expected_sha.get(f"{label}/{name}")
            if want and hashlib.sha256(raw).hexdigest() != want:
                raise SystemExit(f"{folder / name}: SHA-256 differs from labeled_manifest.csv; "
                                 "the shared data set was changed, restore it before regenerating")
            files[f"{label}/{name}"] = downscale(raw)
    first = sorted(k for k in files if k.startswith(CORRUPT_CLASS + "/"))[0]
    full = files[first]
    files[f"{CORRUPT_CLASS}/{CORRUPT_NAME}"] = full[: int(len(full) * CORRUPT_FRACTION)]
    return files


def existing(out_dir: Path) -> dict[str, bytes]:
    if not out_dir.exists():
        return {}
    return {p.relative_to(out_dir).as_posix(): p.read_bytes()
            for p in sorted(out_dir.rglob("*")) if p.is_file() or p.is_symlink()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=None,
                        help="the TrashNet subset folder (default: $SHARED_DATASETS/labeled "
                             "or ../shared/datasets/labeled beside the project)")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output folder (default: data/images)")
    parser.add_argument("--check", action="store_true",
                        help="compare the output folder with what would be written; write nothing")
    args = parser.parse_args(argv)

    source = args.source or default_source()
    missing = [c for c in CLASSES if not (source / c).is_dir()]
    if missing:
        print(f"make_sample.py: the source folder {source} is absent or lacks the class folders "
              f"{', '.join(missing)}. It is the shared TrashNet subset (datasets/labeled/), which "
              "is not part of a clone of this project; the committed data/images/ is already "
              "the sample. Pass --source DIR or set SHARED_DATASETS to regenerate it.",
              file=sys.stderr)
        return 2

    wanted = build(source)
    have = existing(args.out)
    extra = sorted(set(have) - set(wanted))
    changed = sorted(k for k in wanted if have.get(k) != wanted[k])

    if args.check:
        for k in changed:
            print(f"differs or missing: {k}")
        for k in extra:
            print(f"unexpected file: {k}")
        ok = not changed and not extra
        print(f"{len(wanted)} files checked: {'identical' if ok else 'NOT identical'}")
        return 0 if ok else 1

    for rel in extra:  # every file under data/images is an input: leave nothing stray
        (args.out / rel).unlink()
        print(f"removed {rel}")
    for rel, data in wanted.items():
        target = args.out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    for d in sorted((p for p in args.out.rglob("*") if p.is_dir()), reverse=True):
        if not any(d.iterdir()):
            d.rmdir()
    total = sum(len(b) for b in wanted.values())
    print(f"wrote {len(wanted)} files ({total / 1024:.0f} KiB) to {args.out}, "
          f"{len(changed)} of them changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
