#!/usr/bin/env python3
"""The training loader's throughput over a built `train_set`, printed (no assertions).

    python bench/loader.py                  # the example project built once on 2000 images under --work
    python bench/loader.py --table path/to/target/warehouse/train_set --rounds 3 --json loader.json

Each case runs in a fresh process: one untimed pass over the table (the page cache warm, as
in a second epoch), then one timed pass. The cases:

* `numpy_batches`, batch 64: float32 and uint8 output, in table order and shuffled;
* the PyTorch dataset yielding batches of 64 (`make_torch_dataset(batch_size=64)`,
  `DataLoader(batch_size=None)`) with 0, 1 and 2 workers, the same four variants; each pass
  starts its workers anew (the DataLoader's default), and that start is timed too;
* the dataset yielding rows, batched by the DataLoader (`DataLoader(batch_size=64)`), float32
  in table order, 0 and 2 workers: the per-row path, for comparison;
* floors, one process: PyArrow reading the `image` and `label_index` columns (no decoding
  beyond Arrow), and normalizing uint8 batches already in memory to float32, with the SQL
  kernel (`normalize_batch`) and with the loader's normalizer; with them, the least one core
  needs per float32 image: read + normalize;
* the floor of DataLoader workers: workers that only make fresh batches of 64 x 3 x 224 x 224
  (float32 or uint8, filled with ones) and hand them to the main process, 1 and 2 workers.

Printed per case: images/s (median over rounds), CPU seconds per 1000 images in the timed pass
(the process and its DataLoader workers), peak RSS and PSS of the process tree (sampled every
100 ms), then the targets: one process at least 3000 float32 images/s, and the DataLoader with 2
workers at least 1.7 times one process. Needs psutil and torch (bench/requirements.txt; torch for
the DataLoader cases, which are skipped without it).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
from run import example_copy, machine, make_images, run_measured  # noqa: E402

BATCH = 64
TARGET_ONE_PROCESS = 3000  # float32 images/s, 224 x 224 x 3
TARGET_WORKERS_RATIO = 1.7  # DataLoader with 2 workers over one process

# Runs in its own process. argv: project root, table, case as JSON.
CHILD = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
path, case = sys.argv[2], json.loads(sys.argv[3])
kind, batch = case["kind"], case["batch"]


def passes():
    if kind == "numpy":
        from imageprep.training import numpy_batches
        return lambda: numpy_batches(path, batch_size=batch, shuffle=case["shuffle"], output=case["output"])
    if kind in ("torch", "torch-rows"):
        from torch.utils.data import DataLoader
        from imageprep.training import make_torch_dataset
        if kind == "torch":
            dataset = make_torch_dataset(path, shuffle=case["shuffle"], output=case["output"], batch_size=batch)
            return lambda: DataLoader(dataset, batch_size=None, num_workers=case["workers"])
        dataset = make_torch_dataset(path, shuffle=case["shuffle"], output=case["output"], read_batch_rows=batch)
        return lambda: DataLoader(dataset, batch_size=batch, num_workers=case["workers"])
    if kind == "read":
        import pyarrow.dataset as ds
        from imageprep.table_reader import SCAN_OPTIONS
        table = ds.dataset(path, format=ds.ParquetFileFormat(default_fragment_scan_options=SCAN_OPTIONS),
                           ignore_prefixes=[".", "_"])
        def read():
            for fragment in table.get_fragments():
                for b in fragment.to_batches(columns=["image", "label_index"], batch_size=batch, use_threads=False):
                    yield None, np.empty(b.num_rows)
        return read
    if kind == "transfer":  # fresh batches of the table's shape, made and sent by workers: no reading
        import pyarrow.dataset as ds
        import torch
        from torch.utils.data import DataLoader, IterableDataset, get_worker_info
        rows = ds.dataset(path, ignore_prefixes=[".", "_"]).count_rows()
        dtype = np.float32 if case["output"] == "float32" else np.uint8

        class Fresh(IterableDataset):
            def __iter__(self):
                info = get_worker_info()
                for _ in range(rows // batch // (info.num_workers if info else 1)):
                    x = np.empty((batch, 3, 224, 224), dtype)
                    x.fill(1)
                    yield torch.from_numpy(x), torch.zeros(batch)
        return lambda: DataLoader(Fresh(), batch_size=None, num_workers=case["workers"])
    # normalize-*: the table's first batch of pixels, normalized as many times as the table has rows
    from imageprep.training import numpy_batches, table_normalization
    from imageprep.loader_normalize import Normalizer
    from udfs.kernels import normalize as kernel
    spec = table_normalization(path)
    pixels = np.ascontiguousarray(next(iter(numpy_batches(path, batch_size=batch, output="uint8")))[0].transpose(0, 2, 3, 1))
    import pyarrow.dataset as ds
    rows = ds.dataset(path, ignore_prefixes=[".", "_"]).count_rows()
    normalizer = Normalizer(spec)
    def normalize():
        for _ in range(rows // batch):
            if kind == "normalize-kernel":
                x = kernel.normalize_batch(pixels, "custom", spec["mean"], spec["std"], spec["layout"])
            else:
                x = normalizer(pixels, np.empty((batch, 3, *pixels.shape[1:3]), dtype=np.float32))
            yield x, np.empty(len(x))
    return normalize


def cpu():  # this process and its ended children (DataLoader workers end with their pass)
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


make = passes()
for _ in make():  # warm
    pass
start, cpu_start = time.perf_counter(), cpu()
rows, first = 0, None
for x, y in make():
    if first is None and x is not None:
        first = [str(x.dtype), list(x.shape)]
    rows += len(y)
seconds = time.perf_counter() - start
print(json.dumps({"rows": rows, "seconds": seconds, "cpu": cpu() - cpu_start, "first": first}))
"""


def cases(with_torch: bool) -> list[dict]:
    out = [{"kind": "read"}, {"kind": "normalize-kernel"}, {"kind": "normalize-loader"}]
    if with_torch:
        out += [{"kind": "transfer", "output": output, "workers": w} for output in ("float32", "uint8") for w in (1, 2)]
    for output in ("float32", "uint8"):
        for shuffle in (False, True):
            out.append({"kind": "numpy", "output": output, "shuffle": shuffle})
            if with_torch:
                out += [{"kind": "torch", "output": output, "shuffle": shuffle, "workers": w} for w in (0, 1, 2)]
    if with_torch:
        out += [{"kind": "torch-rows", "output": "float32", "shuffle": False, "workers": w} for w in (0, 2)]
    return [{"batch": BATCH, "output": "float32", "shuffle": False, "workers": 0, **case} for case in out]


def label(case: dict) -> str:
    names = {"read": "floor: PyArrow read (image, label_index)", "normalize-kernel": "floor: normalize_batch (kernel)",
             "normalize-loader": "floor: loader normalizer"}
    if case["kind"] in names:
        return names[case["kind"]]
    if case["kind"] == "transfer":
        return f"floor: DataLoader hand-over, {case['workers']} workers, {case['output']}"
    what = {"numpy": "numpy_batches", "torch": "DataLoader, dataset batches",
            "torch-rows": "DataLoader, dataset rows"}[case["kind"]]
    workers = f", {case['workers']} workers" if case["kind"] != "numpy" else ""
    return f"{what}{workers}, {case['output']}, {'shuffled' if case['shuffle'] else 'in order'}"


def built_train_set(n: int, work: Path) -> Path:
    """The example project's train_set on n bench images, built once under `work`."""
    project = work / "example"
    train = project / "target" / "warehouse" / "train_set"
    if train.is_dir():
        return train
    images = make_images(n, work)
    project = example_copy(work, ROOT)
    print(f"building the example project on {n} images in {project} ...", flush=True)
    subprocess.run([sys.executable, str(ROOT / "runner.py"), "build", "--project-dir", str(project),
                    "--vars", json.dumps({"images_path": str(images)})], check=True, stdout=subprocess.DEVNULL)
    return train


def run_case(table: Path, case: dict, work: Path) -> dict:
    log = work / "loader_case.log"
    measured = run_measured([sys.executable, "-c", CHILD, str(ROOT), str(table), json.dumps(case)], ROOT, log)
    lines = [line for line in measured.output.splitlines() if line.startswith("{")]
    if measured.returncode != 0 or not lines:
        return {"error": measured.output[-2000:]}
    result = json.loads(lines[-1])
    return {**result, "images_per_s": result["rows"] / result["seconds"], "peak_rss": measured.peak_rss,
            "peak_pss": measured.peak_pss, "cpu_per_1000": 1000 * result["cpu"] / result["rows"],
            "other_cpu": measured.other_cpu}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--table", type=Path, help="a built train_set (default: build the example project)")
    parser.add_argument("-n", type=int, default=2000, help="images to build the example project on (default 2000)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "spark-image-data-bench",
                        help="where bench images and the built project live")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    work = args.work / f"loader_{args.n}"
    work.mkdir(parents=True, exist_ok=True)
    table = args.table or built_train_set(args.n, work)
    try:
        import torch  # noqa: F401
        with_torch = True
    except ImportError:
        with_torch = False
        print("(torch is not installed: the DataLoader cases are skipped)")
    todo = cases(with_torch)
    print(machine())
    print(f"table {table}; batch {BATCH}; {args.rounds} rounds (medians)\n", flush=True)
    results: dict[str, list[dict]] = {label(c): [] for c in todo}
    for round_index in range(args.rounds):
        for case in todo if round_index % 2 == 0 else todo[::-1]:  # alternate to spread drift
            results[label(case)].append(run_case(table, case, work))
    summary = {}
    print(f"{'case':58} {'images/s':>9} {'CPU s/1000':>10} {'peak RSS':>9} {'peak PSS':>9}")
    for case in todo:
        runs = [r for r in results[label(case)] if "error" not in r]
        if not runs:
            print(f"{label(case):58} FAILED: {results[label(case)][-1]['error'][-600:]}")
            continue
        row = {"images_per_s": statistics.median(r["images_per_s"] for r in runs),
               "cpu_per_1000": statistics.median(r["cpu_per_1000"] for r in runs),
               "peak_rss": max(r["peak_rss"] for r in runs), "peak_pss": max(r["peak_pss"] for r in runs),
               "rows": runs[-1]["rows"], "first": runs[-1]["first"], "case": case}
        summary[label(case)] = row
        print(f"{label(case):58} {row['images_per_s']:9.0f} {row['cpu_per_1000']:10.2f} "
              f"{row['peak_rss'] / 2**30:7.2f} GB {row['peak_pss'] / 2**30:7.2f} GB", flush=True)
    report_targets(summary)
    if args.json:
        args.json.write_text(json.dumps({"table": str(table), "batch": BATCH, "rounds": results,
                                         "summary": summary}, indent=1, default=str))
    return 0


def report_targets(summary: dict) -> None:
    def speed(key: str) -> float | None:
        return summary.get(key, {}).get("images_per_s")

    print()
    read, kernel, loader = (speed("floor: PyArrow read (image, label_index)"), speed("floor: normalize_batch (kernel)"),
                            speed("floor: loader normalizer"))
    if read and loader and kernel:
        print(f"one core's floor for float32: 1 / (1/{read:.0f} + 1/{loader:.0f}) = "
              f"{1 / (1 / read + 1 / loader):.0f} images/s (read, then the loader's normalizer); "
              f"with the kernel's normalize_batch {1 / (1 / read + 1 / kernel):.0f}")
    for output in ("float32", "uint8"):
        hand = [speed(f"floor: DataLoader hand-over, {w} workers, {output}") for w in (1, 2)]
        if all(hand):
            print(f"{output}: workers handing over fresh batches and nothing else: {hand[0]:.0f} images/s with 1, "
                  f"{hand[1]:.0f} with 2")
        for shuffle in ("in order", "shuffled"):
            one = speed(f"numpy_batches, {output}, {shuffle}")
            zero = speed(f"DataLoader, dataset batches, 0 workers, {output}, {shuffle}")
            two = speed(f"DataLoader, dataset batches, 2 workers, {output}, {shuffle}")
            if one and output == "float32":
                print(f"float32 {shuffle}: one process (numpy_batches) {one:.0f} images/s, target "
                      f"{TARGET_ONE_PROCESS}: {'met' if one >= TARGET_ONE_PROCESS else 'not met'}")
            if one and zero and two:
                print(f"{output} {shuffle}: DataLoader 2 workers {two:.0f} images/s = {two / one:.2f} x numpy_batches, "
                      f"{two / zero:.2f} x DataLoader 0 workers; target {TARGET_WORKERS_RATIO} x: "
                      f"{'met' if two / one >= TARGET_WORKERS_RATIO else 'not met'}")


if __name__ == "__main__":
    sys.exit(main())
