#!/usr/bin/env python3
"""Issue 6's benchmark: the same image preparation four ways, timed as whole processes.

    python bench/run.py                  # N = 500 images, 2 rounds (quick)
    python bench/run.py -n 2000          # or 8000, 20000 (slow: minutes per contender)
    python bench/run.py -n 8000 --rounds 3 --skip c,d
    python bench/run.py -n 8000 --rounds 2 --once c,d   # (c) and (d) only in the first round
    python bench/run.py -n 20000 --cases a --rounds 1   # one contender

Contenders, each a fresh process (Spark start-up and Python start-up included):

(a) ``python runner.py build --project-dir bench/prep``: the ``prepared`` model, our SQL
    functions on Spark;
(b) ``bench/pool_prep.py``: a plain ``multiprocessing.Pool`` loop with Pillow, NumPy and
    PyArrow, the practical limit of the machine;
(c) ``bench/tutorial_prep.py``: the tutorial way on Spark (``binaryFile``, row-at-a-time
    UDFs returning lists);
(d) the full example project (``project.yml``, ``models/``, ``macros/``, data tests), copied
    into a temporary folder and built on the same images.

All do the same work per image: decode, RGB, resize to 224x224 (bilinear, stretch),
ImageNet-normalize to float32, 32-bin histogram per channel, and write path, label, width,
height, pixels, tensor and histogram to Parquet ((d) does its own, larger, work).
Contenders alternate (a, b, c, d, a, b, c, d, ...) so drift hits them alike; medians are
reported. Peak memory is the largest sum of RSS over the process and all its descendants,
sampled every 100 ms. After the timed runs the outputs of (a), (b) and (c) are compared:
pixels, sizes and histograms must be equal, tensors equal within float tolerance.

Images come from ``../shared/datasets/make_bench_set.py`` (made once per N under
``--work``, then reused). Needs ``psutil`` (``pip install -r bench/requirements.txt``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import psutil
import pyarrow.parquet as pq

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
import plain_prep  # noqa: E402

MAKE_BENCH_SET = Path(os.environ.get("SHARED_DATASETS", ROOT.parent / "shared" / "datasets")) / "make_bench_set.py"
PREP_PROJECT = BENCH / "prep"
SIZES = (500, 2000, 8000, 20000)
NAMES = {"a": "bench/prep build", "b": "Pool loop", "c": "tutorial Spark", "d": "example project"}
TENSOR_TOLERANCE = 1e-5  # absolute, on values of about -2.2 .. 2.7


# --------------------------------------------------------------------------- running and measuring


class Measured:
    def __init__(self, seconds: float, peak_rss: int, peak_pss: int, returncode: int, output: str, own_cpu: float,
                 other_cpu: float):
        self.seconds, self.peak_rss, self.returncode, self.output = seconds, peak_rss, returncode, output
        self.peak_pss = peak_pss    # proportional set size: shared pages counted once, split among sharers
        self.own_cpu = own_cpu      # CPU seconds of the process tree
        self.other_cpu = other_cpu  # CPU seconds of everything else on the machine meanwhile (noise)


def tree_members(process: psutil.Process) -> list[psutil.Process]:
    try:
        return [process] + process.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def resident(pid: int) -> tuple[int, int] | None:
    """(RSS, PSS) of a process in bytes, both read from one /proc/PID/smaps_rollup, or None.

    PSS, the proportional set size, counts a page shared by k processes as 1/k in each, so the
    PSS of a process tree is what the tree really occupies; the sum of RSS counts shared pages
    (the libraries of forked Python workers) once per process.
    """
    values = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                key, _, rest = line.partition(":")
                if key in ("Rss", "Pss"):
                    values[key] = int(rest.split()[0]) * 1024
    except OSError:
        return None
    return (values["Rss"], values["Pss"]) if len(values) == 2 else None


def wait_for_quiet(limit: float = 30.0) -> None:
    """Wait (up to `limit` seconds) until other work on the machine uses under 10% of a CPU."""
    waited = 0.0
    while waited < limit:
        if psutil.cpu_percent(interval=2.0) * os.cpu_count() < 10.0:
            return
        waited += 2.0
    print(f"  (the machine stayed busy for {limit:.0f} s: this run may be slowed by other work)", flush=True)


def run_measured(command: list[str], cwd: Path, log: Path, env: dict | None = None) -> Measured:
    """Run a command to its end: wall time, peak RSS of its process tree (sampled every 100 ms), CPU used."""
    wait_for_quiet()
    peak = peak_pss = 0
    cpu_by_pid: dict[tuple[int, float], float] = {}
    with open(log, "w") as out:
        busy_before = busy_seconds()
        start = time.perf_counter()
        child = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)
        watched = psutil.Process(child.pid)
        done = threading.Event()

        def sample():
            nonlocal peak, peak_pss
            while not done.is_set():
                total = total_pss = 0
                for member in tree_members(watched):
                    try:
                        sizes = resident(member.pid)
                        with member.oneshot():
                            rss, pss = sizes if sizes else (member.memory_info().rss, 0)
                            cpu = member.cpu_times()
                            cpu_by_pid[(member.pid, member.create_time())] = cpu.user + cpu.system
                    except (psutil.NoSuchProcess, psutil.AccessDenied):
                        continue
                    total += rss
                    total_pss += pss
                peak, peak_pss = max(peak, total), max(peak_pss, total_pss)
                done.wait(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        returncode = child.wait()
        seconds = time.perf_counter() - start
        busy = busy_seconds() - busy_before
        done.set()
        sampler.join()
    # Children reaped by their parents report their CPU to the parent (children_* times): count
    # each process's own last sample; short-lived helpers missed between samples count as "other".
    own = sum(cpu_by_pid.values())
    return Measured(seconds, peak, peak_pss, returncode, log.read_text(errors="replace"), own, max(0.0, busy - own))


def parquet_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*.parquet"))


# --------------------------------------------------------------------------- the contenders


def make_images(n: int, work: Path) -> Path:
    folder = work / f"images_{n}"
    if folder.exists() and sum(1 for _ in folder.rglob("*.jpg")) == n:
        return folder
    if not MAKE_BENCH_SET.exists():
        raise SystemExit(f"{MAKE_BENCH_SET} not found: set SHARED_DATASETS to the folder holding make_bench_set.py")
    shutil.rmtree(folder, ignore_errors=True)
    print(f"making {n} images in {folder} ...", flush=True)
    subprocess.run([sys.executable, str(MAKE_BENCH_SET), str(folder), "-n", str(n), "--workers", str(os.cpu_count())],
                   check=True, stdout=subprocess.DEVNULL)
    return folder


def run_a(images: Path, work: Path, project: Path) -> tuple[Measured, Path]:
    shutil.rmtree(project / "target", ignore_errors=True)
    command = [sys.executable, str(ROOT / "runner.py"), "build", "--project-dir", str(project),
               "--vars", json.dumps({"images_path": str(images)})]
    measured = run_measured(command, ROOT, work / "a.log")
    return measured, project / "target" / "warehouse" / "prepared"


def run_b(images: Path, work: Path, codec: str) -> tuple[Measured, Path]:
    out = work / "out_b"
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, str(BENCH / "pool_prep.py"), str(images), str(out), "--codec", codec]
    return run_measured(command, ROOT, work / "b.log"), out


def run_c(images: Path, work: Path) -> tuple[Measured, Path]:
    out = work / "out_c"
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, str(BENCH / "tutorial_prep.py"), str(images), str(out)]
    return run_measured(command, ROOT, work / "c.log"), out


def example_copy(work: Path, source: Path) -> Path:
    """A fresh copy of the example project (config, models, macros, singular tests)."""
    copy = work / "example"
    shutil.rmtree(copy, ignore_errors=True)
    copy.mkdir(parents=True)
    shutil.copy2(source / "project.yml", copy / "project.yml")
    for sub in ("models", "macros", "seeds", "tests/data_tests"):
        if (source / sub).is_dir():
            shutil.copytree(source / sub, copy / sub)
    return copy


def run_d(images: Path, work: Path, source: Path) -> tuple[Measured, dict[str, float]]:
    project = example_copy(work, source)
    command = [sys.executable, str(ROOT / "runner.py"), "build", "--project-dir", str(project),
               "--vars", json.dumps({"images_path": str(images)})]
    measured = run_measured(command, ROOT, work / "d.log")
    times = {}
    results = project / "target" / "run_results.json"
    if results.exists():
        for node in json.loads(results.read_text())["results"]:
            times[node["unique_id"]] = node.get("execution_time") or 0.0
    parquet = parquet_bytes(project / "target" / "warehouse" / "_versions")
    return measured, {"nodes": times, "parquet_bytes": parquet}


# --------------------------------------------------------------------------- checking results


def summarise(folder: Path, sample_every: int) -> dict[str, dict]:
    """Per path: width, height, a digest of the pixels, the histogram, and the tensor of sampled rows.

    Streams the table batch by batch (a tensor column of 8000 images is 4.8 GB). Every row's
    tensor is checked against the ImageNet formula applied to the row's own pixels, so equal
    pixels across contenders mean equal tensors within tolerance; sampled rows are also kept
    whole for a direct comparison.
    """
    rows: dict[str, dict] = {}
    worst = 0.0
    for file in sorted(Path(folder).rglob("*.parquet")):
        parquet = pq.ParquetFile(file)
        for batch in parquet.iter_batches(batch_size=32):
            data = batch.to_pydict()
            for i, path in enumerate(data["path"]):
                pixels = _as_uint8(data["pixels"][i])
                tensor = _as_float32(data["tensor"][i])
                expected = plain_prep.normalize(pixels.reshape(plain_prep.SIZE, plain_prep.SIZE, 3)).ravel()
                if tensor is not None:
                    worst = max(worst, float(np.max(np.abs(tensor - expected))))
                entry = {"width": data["width"][i], "height": data["height"][i], "label": data["label"][i],
                         "pixels": zlib.crc32(pixels.tobytes()), "histogram": tuple(data["histogram"][i]),
                         "has_tensor": tensor is not None}
                if zlib.crc32(path.encode()) % sample_every == 0:
                    entry["tensor"] = tensor
                rows[path] = entry
    return {"rows": rows, "tensor_vs_own_pixels": worst}


def _as_uint8(value) -> np.ndarray:
    return np.frombuffer(value, np.uint8) if isinstance(value, bytes) else np.asarray(value, np.uint8)


def _as_float32(value) -> np.ndarray | None:
    if value is None:
        return None
    return np.frombuffer(value, "<f4") if isinstance(value, bytes) else np.asarray(value, np.float32)


def compare(outputs: dict[str, Path], n: int) -> list[str]:
    """Lines saying whether (a), (b) and (c) agree; raises SystemExit listing the first differences."""
    sample_every = max(1, n // 200)
    summaries = {key: summarise(folder, sample_every) for key, folder in outputs.items()}
    lines, problems = [], []
    reference_key = "b" if "b" in summaries else next(iter(summaries))
    reference = summaries[reference_key]["rows"]
    for key, summary in summaries.items():
        rows = summary["rows"]
        lines.append(f"({key}) {len(rows)} rows; max |tensor - formula(own pixels)| = {summary['tensor_vs_own_pixels']:.2e}")
        if len(rows) != n:
            problems.append(f"({key}) has {len(rows)} rows, expected {n}")
        if summary["tensor_vs_own_pixels"] > TENSOR_TOLERANCE:
            problems.append(f"({key}) tensors differ from the ImageNet formula by {summary['tensor_vs_own_pixels']:.2e}")
        if key == reference_key:
            continue
        worst = 0.0
        for path, row in rows.items():
            ref = reference.get(path)
            if ref is None:
                problems.append(f"({key}) has {path}, ({reference_key}) does not")
                continue
            for field in ("width", "height", "label", "pixels", "histogram", "has_tensor"):
                if row[field] != ref[field]:
                    problems.append(f"({key}) and ({reference_key}) differ in {field} of {path}: "
                                    f"{str(row[field])[:60]} != {str(ref[field])[:60]}")
            if "tensor" in row and row["tensor"] is not None and ref.get("tensor") is not None:
                worst = max(worst, float(np.max(np.abs(row["tensor"] - ref["tensor"]))))
        if worst > TENSOR_TOLERANCE:
            problems.append(f"({key}) tensors differ from ({reference_key})'s by up to {worst:.2e}")
        lines.append(f"({key}) vs ({reference_key}): sizes, labels, pixels, histograms "
                     f"{'equal' if not problems else 'DIFFER'}; sampled tensors max diff {worst:.2e}")
    if problems:
        lines.append("RESULTS DIFFER:")
        lines.extend("  " + p for p in problems[:20])
    return lines


# --------------------------------------------------------------------------- report


def machine() -> str:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = psutil.virtual_memory().total / 2**30
    import pyspark

    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()
    return (f"{os.cpu_count()} CPUs ({cpu}), {memory:.0f} GB RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, PySpark {pyspark.__version__}, {java[0] if java else 'java ?'}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--count", type=int, default=500, choices=SIZES, help="number of images (default 500)")
    parser.add_argument("--rounds", type=int, default=2, help="times each contender runs, alternating (default 2)")
    parser.add_argument("--cases", default="abcd", help="contenders to run, e.g. 'a,b' (default all four)")
    parser.add_argument("--skip", default="", help="contenders to leave out, e.g. 'c,d'")
    parser.add_argument("--once", default="", help="contenders to run in the first round only, e.g. 'c,d' (slow ones)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "spark-image-data-bench",
                        help="folder for images and outputs (default: under the system temp folder)")
    parser.add_argument("--codec", default="snappy",
                        help="Parquet codec of the Pool loop (default snappy, Spark's and so the prep project's)")
    parser.add_argument("--prep-project", type=Path, default=PREP_PROJECT, help="project of (a) (default bench/prep)")
    parser.add_argument("--example", type=Path, default=ROOT, help="folder holding the example project of (d)")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args(argv)

    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    contenders = [k for k in "abcd" if k in args.cases and k not in skip]
    once = {s.strip() for s in args.once.split(",") if s.strip()}
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    n = args.count
    images = make_images(n, work).resolve()
    print(f"{n} images in {images}\nmachine: {machine()}", flush=True)

    seconds = {k: [] for k in contenders}
    peaks = {k: [] for k in contenders}
    peaks_pss = {k: [] for k in contenders}
    cpu = {k: [] for k in contenders}
    outputs: dict[str, Path] = {}
    example: list[dict] = []
    for round_index in range(1, args.rounds + 1):
        for key in contenders:
            if key in once and round_index > 1:
                continue
            if key == "a":
                measured, outputs["a"] = run_a(images, work, args.prep_project.resolve())
            elif key == "b":
                measured, outputs["b"] = run_b(images, work, args.codec)
            elif key == "c":
                measured, outputs["c"] = run_c(images, work)
            else:
                measured, detail = run_d(images, work, args.example.resolve())
                example.append(detail)
            if measured.returncode != 0:
                print(measured.output[-3000:])
                raise SystemExit(f"({key}) {NAMES[key]} failed with exit code {measured.returncode}")
            seconds[key].append(measured.seconds)
            peaks[key].append(measured.peak_rss)
            peaks_pss[key].append(measured.peak_pss)
            cpu[key].append(measured.own_cpu)
            print(f"round {round_index}: ({key}) {NAMES[key]:16} {measured.seconds:8.1f} s  "
                  f"peak RSS {measured.peak_rss / 2**30:5.2f} GB, PSS {measured.peak_pss / 2**30:5.2f} GB  "
                  f"CPU {measured.own_cpu:7.1f} s  "
                  f"(other processes: {measured.other_cpu:5.1f} CPU s)", flush=True)

    med = {k: statistics.median(v) for k, v in seconds.items()}
    peak = {k: max(v) for k, v in peaks.items()}
    peak_pss = {k: max(v) for k, v in peaks_pss.items()}
    cpu_med = {k: statistics.median(v) for k, v in cpu.items()}
    size = {k: parquet_bytes(outputs[k]) / n for k in outputs}
    if example:
        size["d"] = example[-1]["parquet_bytes"] / n
    print(f"\nN = {n}, {args.rounds} rounds, medians of whole-process wall time (runs: "
          + ", ".join(f"({k}) {len(v)}" for k, v in seconds.items()) + ")")
    print(f"{'':22} {'seconds':>8} {'images/s':>9} {'vs (b)':>7} {'CPU s':>7} {'peak RSS GB':>12} "
          f"{'peak PSS GB':>12} {'Parquet kB/img':>15}")
    for key in contenders:
        ratio = f"{med[key] / med['b']:6.2f}x" if "b" in med else "      -"
        print(f"({key}) {NAMES[key]:18} {med[key]:8.1f} {n / med[key]:9.1f} {ratio:>7} {cpu_med[key]:7.1f} "
              f"{peak[key] / 2**30:12.2f} {peak_pss[key] / 2**30:12.2f} {size.get(key, 0) / 1e3:15.1f}")
    if "a" in med and "c" in med:
        print(f"(c) / (a) = {med['c'] / med['a']:.1f}x")
    if example:
        print("\n(d) seconds per node (median over rounds), from target/run_results.json:")
        for uid in example[0]["nodes"]:
            values = [e["nodes"].get(uid, 0.0) for e in example]
            if uid.startswith("model."):
                print(f"  {uid.split('.')[-1]:28} {statistics.median(values):7.1f}")
        tests = [sum(v for u, v in e["nodes"].items() if u.startswith("test.")) for e in example]
        print(f"  {'(all data tests)':28} {statistics.median(tests):7.1f}")
        total = [sum(e["nodes"].values()) for e in example]
        print(f"  {'(all nodes)':28} {statistics.median(total):7.1f}")
        near = [e["nodes"].get("model.image_prep.near_duplicates") for e in example]
        # The models that decode the files: stg_images (full size) and images_resized in the
        # first example project; images_resized alone (prepare_image) once staging was split.
        decoding = [sum(e["nodes"].get(f"model.image_prep.{m}", 0.0) for m in ("stg_images", "images_resized"))
                    for e in example]
        if all(v is not None for v in near):
            print(f"near_duplicates {statistics.median(near):.1f} s against {statistics.median(decoding):.1f} s "
                  f"for the decoding models (stg_images + images_resized)")

    check = {k: v for k, v in outputs.items() if k in "abc"}
    lines = compare(check, n) if len(check) > 1 else ["(fewer than two of a, b, c ran: nothing to compare)"]
    print("\nresults check:\n" + "\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps({"n": n, "machine": machine(), "seconds": seconds, "peak_rss": peaks, "peak_pss": peaks_pss, "cpu": cpu,
                                         "parquet_bytes_per_image": size, "example": example, "check": lines},
                                        indent=1))
    return 1 if any("DIFFER" in line for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main())
