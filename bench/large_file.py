#!/usr/bin/env python3
"""Peak memory of the example build with a 1 GB file in its images folder, beside the same build without it.

    python bench/large_file.py                 # the bundled sample, 2 rounds
    python bench/large_file.py --rounds 3 --size-mb 2048

Each build is a fresh process on a fresh copy of the example project; the two folders hold the same
images, one of them also `big.jpg` (random bytes, written once, not sparse). The builds alternate
(without, with, without, with, ...) and each prints its wall time and the peak RSS and PSS of its
process tree (the Python driver, the JVM and the Python workers), sampled every 100 ms as
bench/run.py does. The large file must end in image_errors as "too large", never read.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
from run import example_copy, run_measured  # noqa: E402


def folders(work: Path, size_mb: int) -> tuple[Path, Path]:
    plain, with_big = work / "images_plain", work / "images_big"
    for folder in (plain, with_big):
        if not folder.exists():
            shutil.copytree(ROOT / "data" / "images", folder)
    big = with_big / "cardboard" / "big.jpg"
    if not big.exists() or big.stat().st_size != size_mb << 20:
        with open(big, "wb") as out:
            for _ in range(size_mb):
                out.write(os.urandom(1 << 20))
    return plain, with_big


def build(images: Path, work: Path, round_index: int, key: str):
    project = example_copy(work / f"{key}{round_index}", ROOT)
    command = [sys.executable, str(ROOT / "runner.py"), "build", "--project-dir", str(project),
               "--vars", json.dumps({"images_path": str(images)})]
    measured = run_measured(command, ROOT, work / f"{key}{round_index}.log")
    errors = pq.read_table(project / "target/warehouse/image_errors").to_pydict()
    reasons = dict(zip([p.rsplit("/", 1)[-1] for p in errors["path"]], errors["reason"]))
    return measured, reasons


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "spark-image-data-bench" / "large")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    plain, with_big = folders(args.work, args.size_mb)
    runs: dict[str, list] = {"without": [], "with": []}
    for r in range(args.rounds):
        for key, images in (("without", plain), ("with", with_big)):
            measured, reasons = build(images, args.work, r, key)
            runs[key].append(measured)
            print(f"round {r + 1} {key:>7} the {args.size_mb} MB file: exit {measured.returncode}, "
                  f"{measured.seconds:5.1f} s, peak RSS {measured.peak_rss / 2**30:5.2f} GB, "
                  f"PSS {measured.peak_pss / 2**30:5.2f} GB; big.jpg: {reasons.get('big.jpg', '(absent)')[:60]}",
                  flush=True)
    print("\nmedian over rounds:")
    for key, measured in runs.items():
        print(f"  {key:>7}: {statistics.median(m.seconds for m in measured):5.1f} s, "
              f"peak PSS {max(m.peak_pss for m in measured) / 2**30:5.2f} GB, "
              f"peak RSS {max(m.peak_rss for m in measured) / 2**30:5.2f} GB")
    ratio = max(m.peak_pss for m in runs["with"]) / max(m.peak_pss for m in runs["without"])
    print(f"  peak PSS with / without: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
