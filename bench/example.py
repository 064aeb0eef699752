#!/usr/bin/env python3
"""The example project's build against its own kernels in a plain loop, model by model.

    python bench/example.py                      # N = 500 images, 2 rounds (quick)
    python bench/example.py -n 2000              # or 8000, 20000 (slow: minutes per build)
    python bench/example.py -n 8000 --rounds 3 --json example_8000.json

Two contenders, each a fresh process, alternating round by round (d, k, d, k, ...) so drift
hits them alike; medians are reported:

(d) the full example project (``project.yml``, ``models/``, ``macros/``, data tests), copied
    into ``--work`` and built on the images (``python runner.py build``), as in ``bench/run.py``;
(k) ``bench/example_kernels.py``: the same per-image work with the same kernels
    (``udfs.kernels``) in a ``multiprocessing.Pool`` loop, one timed phase per model, writing
    what the build stores to Parquet. What the build does beyond that (SQL joins, data
    tests, near-duplicate search, versioned tables) is its overhead over the kernels.

Printed:

* each run: wall seconds, peak RSS and PSS of the process tree, CPU seconds (as ``run.py``);
* the headline: median build seconds / median loop seconds;
* per model: the build's ``execution_time`` (``target/run_results.json``) against the loop's
  phase for the same model, all data tests together, the totals, and "start-up and other"
  (whole-process wall time minus the nodes, or minus the phases);
* peak memory (PSS and RSS) of each;
* Parquet bytes per row of every table of the build (``target/warehouse/_catalog.json``)
  and of the loop's output;
* images/s of ``imageprep.training.numpy_batches`` over the built ``train_set``, batch 64,
  with ``output="float32"`` and ``output="uint8"``, each in its own process: one untimed
  pass to warm the page cache, then one timed full pass.

Images come from ``../shared/datasets/make_bench_set.py`` (made once per N under ``--work``
and reused, shared with ``run.py``). Needs ``psutil`` (``pip install -r bench/requirements.txt``).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
import run  # noqa: E402
from run import Measured, example_copy, machine, make_images, parquet_bytes, run_d, run_measured  # noqa: E402,F401

NAMES = {"d": "example build", "k": "kernels loop"}
LOADER_MODES = ("float32", "uint8")
TAIL = 3000  # characters of a failed run's log to show

# Runs in its own process: numpy_batches over a table, once untimed (page cache), then timed.
LOADER_SCRIPT = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from imageprep.training import numpy_batches

path, output = sys.argv[2], sys.argv[3]


def read():
    rows, first = 0, None
    for x, y in numpy_batches(path, batch_size=64, columns=("image", "label_index"), output=output):
        if first is None:
            first = {"x": [str(x.dtype), list(x.shape)], "y": [str(y.dtype), list(y.shape)]}
        rows += len(x)
    return rows, first


read()  # the page cache warm, as in a second epoch
start = time.perf_counter()
rows, first = read()
seconds = time.perf_counter() - start
print(json.dumps({"output": output, "rows": rows, "seconds": seconds, "first_batch": first}))
"""


# --------------------------------------------------------------------------- the runs


def run_k(images: Path, work: Path, workers: int) -> tuple[Measured, dict]:
    out = work / "out_k"
    times = work / "k_times.json"
    times.unlink(missing_ok=True)
    command = [sys.executable, str(BENCH / "example_kernels.py"), str(images), str(out), "--workers", str(workers),
               "--json", str(times)]
    measured = run_measured(command, ROOT, work / "k.log")
    detail = json.loads(times.read_text()) if times.exists() else {}
    detail["bytes_per_row"] = {name: parquet_bytes(out / name) / n
                              for name, n in detail.get("rows", {}).items() if n and (out / name).is_dir()}
    return measured, detail


def build_tables(project: Path) -> dict[str, dict]:
    """Rows and Parquet bytes of every table the build published (``_catalog.json``, kind ``table``)."""
    warehouse = project / "target" / "warehouse"
    catalog_file = warehouse / "_catalog.json"
    if not catalog_file.exists():
        return {}
    tables = {}
    for name, entry in json.loads(catalog_file.read_text()).items():
        if not isinstance(entry, dict) or entry.get("kind") != "table" or not entry.get("version"):
            continue
        size = parquet_bytes(warehouse / entry["version"])
        rows = entry.get("rows") or 0
        tables[name] = {"rows": rows, "bytes": size, "bytes_per_row": size / rows if rows else None}
    return tables


def run_loader(table: Path, output: str, work: Path) -> dict:
    command = [sys.executable, "-c", LOADER_SCRIPT, str(ROOT), str(table), output]
    measured = run_measured(command, ROOT, work / f"loader_{output}.log")
    result = {"output": output, "returncode": measured.returncode, "peak_rss": measured.peak_rss,
              "peak_pss": measured.peak_pss, "process_seconds": measured.seconds}
    lines = [line for line in measured.output.splitlines() if line.startswith("{")]
    if lines:
        result.update(json.loads(lines[-1]))
    if measured.returncode == 0 and "rows" in result:
        result["images_per_s"] = result["rows"] / result["seconds"] if result["seconds"] else None
    elif "error" not in result:
        result["error"] = measured.output[-TAIL:]
    return result


# --------------------------------------------------------------------------- report helpers


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value: float | None, width: int = 8, digits: int = 1) -> str:
    return f"{value:{width}.{digits}f}" if value is not None else f"{'-':>{width}}"


def ratio(a: float | None, b: float | None, width: int = 8) -> str:
    return f"{a / b:{width - 1}.1f}x" if a is not None and b else f"{'-':>{width}}"


def model_seconds(nodes: dict[str, float], model: str) -> float | None:
    """The execution_time of model ``model`` (unique_id ``model.<project>.<model>``), or None."""
    return next((v for u, v in nodes.items() if u.startswith("model.") and u.split(".")[-1] == model), None)


def run_line(round_index: int, key: str, measured: Measured) -> str:
    return (f"round {round_index}: ({key}) {NAMES[key]:14} {measured.seconds:8.1f} s  "
            f"peak RSS {measured.peak_rss / 2**30:5.2f} GB, PSS {measured.peak_pss / 2**30:5.2f} GB  "
            f"CPU {measured.own_cpu:7.1f} s  (other processes: {measured.other_cpu:5.1f} CPU s)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--count", type=int, default=500, choices=run.SIZES, help="number of images (default 500)")
    parser.add_argument("--rounds", type=int, default=2, help="times each contender runs, alternating (default 2)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "spark-image-data-bench",
                        help="folder for images and outputs (default: under the system temp folder, shared with run.py)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(),
                        help="pool processes of the loop (default: all CPUs, as the build's local[*])")
    parser.add_argument("--example", type=Path, default=ROOT, help="folder holding the example project")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args(argv)

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    n = args.count
    images = make_images(n, work).resolve()
    host = machine()
    print(f"{n} images in {images}\nmachine: {host}", flush=True)

    runs: dict[str, list[dict]] = {"d": [], "k": []}
    failures: list[str] = []
    for round_index in range(1, args.rounds + 1):
        for key in ("d", "k"):
            if key == "d":
                measured, detail = run_d(images, work, args.example.resolve())
                detail["tables"] = build_tables(work / "example")
            else:
                measured, detail = run_k(images, work, args.workers)
            print(run_line(round_index, key, measured), flush=True)
            if measured.returncode != 0:
                failures.append(f"round {round_index}: ({key}) {NAMES[key]} failed with exit code {measured.returncode}")
                print(f"  FAILED (exit code {measured.returncode}); end of its log:\n{measured.output[-TAIL:]}", flush=True)
                continue
            runs[key].append({"round": round_index, "seconds": measured.seconds, "peak_rss": measured.peak_rss,
                              "peak_pss": measured.peak_pss, "cpu": measured.own_cpu, "other_cpu": measured.other_cpu,
                              **detail})

    builds, loops = runs["d"], runs["k"]
    build_s = median([r["seconds"] for r in builds])
    loop_s = median([r["seconds"] for r in loops])
    print(f"\nN = {n}, {args.rounds} rounds, medians of whole-process wall time "
          f"(successful runs: (d) {len(builds)}, (k) {len(loops)})")
    if build_s is not None and loop_s is not None:
        print(f"headline: example build {build_s:.1f} s / kernels loop {loop_s:.1f} s = {build_s / loop_s:.1f}x")
    for key, rs in runs.items():
        if rs:
            s = median([r["seconds"] for r in rs])
            print(f"  ({key}) {NAMES[key]:14} {s:8.1f} s  {n / s:7.1f} images/s  "
                  f"CPU {median([r['cpu'] for r in rs]):7.1f} s")

    # ---- node by node
    node_rows = []
    if builds or loops:
        models = []
        for r in builds:
            models.extend(u.split(".")[-1] for u in r.get("nodes", {}) if u.startswith("model.") and
                          u.split(".")[-1] not in models)
        models.extend(p for r in loops for p in r.get("phases", {}) if p not in models)
        print(f"\nseconds per model (median over rounds): build's execution_time (target/run_results.json) "
              f"against the loop's phase")
        print(f"  {'model':28} {'build s':>8} {'loop s':>8} {'ratio':>8}")

        def node_row(name: str, b: float | None, k: float | None) -> None:
            node_rows.append({"node": name, "build": b, "loop": k, "ratio": b / k if b is not None and k else None})
            print(f"  {name:28} {fmt(b)} {fmt(k, 8, 2)} {ratio(b, k)}")

        for model in models:
            b = median([model_seconds(r["nodes"], model) for r in builds]) if builds else None
            k = median([r.get("phases", {}).get(model) for r in loops]) if loops else None
            node_row(model, b, k)
        tests = median([sum(v for u, v in r["nodes"].items() if u.startswith("test.")) for r in builds]) if builds else None
        node_row("(all data tests)", tests, None)
        all_nodes = median([sum(r["nodes"].values()) for r in builds]) if builds else None
        all_phases = median([sum(r.get("phases", {}).values()) for r in loops]) if loops else None
        node_row("(all nodes / phases)", all_nodes, all_phases)
        other_b = median([r["seconds"] - sum(r["nodes"].values()) for r in builds]) if builds else None
        other_k = median([r["seconds"] - sum(r.get("phases", {}).values()) for r in loops]) if loops else None
        node_row("(start-up and other)", other_b, other_k)
        node_row("(whole process)", build_s, loop_s)

    # ---- memory
    print("\npeak memory of the process tree (largest over rounds):")
    memory = {}
    for key, rs in runs.items():
        if rs:
            memory[key] = {"peak_pss": max(r["peak_pss"] for r in rs), "peak_rss": max(r["peak_rss"] for r in rs)}
            print(f"  ({key}) {NAMES[key]:14} PSS {memory[key]['peak_pss'] / 2**30:6.2f} GB   "
                  f"RSS {memory[key]['peak_rss'] / 2**30:6.2f} GB")

    # ---- bytes per row
    build_tables_ = builds[-1]["tables"] if builds else {}
    loop_bpr = loops[-1].get("bytes_per_row", {}) if loops else {}
    loop_rows = loops[-1].get("rows", {}) if loops else {}
    if build_tables_ or loop_bpr:
        print("\nParquet bytes per row (last round):")
        print(f"  {'table':22} {'build rows':>10} {'build B/row':>12} {'loop rows':>10} {'loop B/row':>12} {'ratio':>7}")
        for name in list(build_tables_) + [t for t in loop_bpr if t not in build_tables_]:
            t = build_tables_.get(name, {})
            b, k = t.get("bytes_per_row"), loop_bpr.get(name)
            print(f"  {name:22} {t.get('rows', '-'):>10} {fmt(b, 12, 0)} {loop_rows.get(name, '-'):>10} "
                  f"{fmt(k, 12, 0)} {ratio(b, k, 7)}")

    # ---- the training loader over the built train_set
    loader = []
    train = work / "example" / "target" / "warehouse" / "train_set"
    if builds and train.is_dir():
        print(f"\nimageprep.training.numpy_batches over {train} (batch 64; warm pass, then a timed full pass):")
        for output in LOADER_MODES:
            result = run_loader(train, output, work)
            loader.append(result)
            if "rows" not in result:
                print(f"  output={output:8} FAILED (exit code {result['returncode']}); see {work}/loader_{output}.log")
                failures.append(f"numpy_batches output={output} failed")
                continue
            first = result["first_batch"] or {}
            print(f"  output={output:8} {result['rows']:7d} rows in {result['seconds']:7.2f} s = "
                  f"{fmt(result['images_per_s'], 7, 0)} images/s  x {first.get('x')}  "
                  f"peak RSS {result['peak_rss'] / 2**30:4.2f} GB", flush=True)
    else:
        print("\n(no built train_set: the loader was not measured)")

    if failures:
        print("\nfailures:\n" + "\n".join("  " + f for f in failures))
    if args.json:
        args.json.write_text(json.dumps({"n": n, "machine": host, "rounds": args.rounds, "workers": args.workers,
                                         "runs": runs, "headline": {"build": build_s, "loop": loop_s,
                                                                    "ratio": build_s / loop_s if build_s and loop_s else None},
                                         "nodes": node_rows, "memory": memory, "loader": loader,
                                         "failures": failures}, indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
