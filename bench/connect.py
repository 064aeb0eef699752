#!/usr/bin/env python3
"""The example build over Spark Connect against the same build on a classic local session.

    python bench/connect.py                      # 2000 images, 2 rounds
    python bench/connect.py -n 50 --rounds 1     # a quick check

On an image set made with ../shared/datasets/make_bench_set.py (kept under --sets), each round
builds a fresh copy of the example project twice, each build a whole `python runner.py build`
process, classic first, then Connect:

- classic: the `local` target (Spark embedded in the build's process, local[*]);
- connect: a target with `remote: sc://127.0.0.1:PORT`, on a local Connect server started fresh
  for the round (this script with --server: a classic local session with the local target's
  settings, Spark Connect started in its driver). The build's process holds no JVM; the image
  functions' code reaches the server as a session artifact. The server's start is reported
  beside the build, not counted in it (a Connect server is started once and serves many builds).

Printed: each build's seconds and Spark start-up (the build's "ready in"), the ratio of the
medians (connect / classic), and where the difference goes: each model's median execution time
(target/run_results.json) for both, the data tests together, and the rest of the process
(start-up, listing, fingerprints, committing).
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
from bench import incremental  # noqa: E402
from bench.incremental import copy_project, make_set  # noqa: E402

KINDS = ("classic", "connect")


def serve(port: int) -> None:
    """--server: a local Connect server with the local target's settings, until stdin closes."""
    from imageprep.connect_server import start_server
    from imageprep.spark_session import create_session

    spark = create_session("local[*]", app_name="bench-connect-server", register_functions=False)
    print(f"listening {start_server(spark, port=port)}", flush=True)
    sys.stdin.read()  # the bench closes it when the round is over
    spark.stop()


def start_server() -> tuple[subprocess.Popen, int, float]:
    """A fresh Connect server process: (process, port, seconds until it listened)."""
    started = time.perf_counter()
    server = subprocess.Popen([sys.executable, __file__, "--server", "0"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in server.stdout:
        if line.startswith("listening "):
            return server, int(line.split()[1]), time.perf_counter() - started
    raise SystemExit(f"the Connect server did not start (exit code {server.wait()})")


def stop_server(server: subprocess.Popen) -> None:
    server.stdin.close()
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def project_copy(work: Path, name: str, remote: str | None) -> Path:
    """A fresh copy of the example project; with `remote`, its target `connect` points there."""
    project = work / name
    shutil.rmtree(project, ignore_errors=True)
    copy_project(project)
    if remote:
        config = yaml.safe_load((project / "project.yml").read_text())
        config["targets"]["connect"] = {"remote": remote}
        (project / "project.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    return project


def build(project: Path, images: Path, *extra: str) -> dict:
    """One build as its own process: seconds, Spark start-up seconds and each node's execution time."""
    seconds, startup, results = incremental.build(project, images, *extra)
    # Models and seeds by name; the data tests, many and short, together.
    nodes = {name: r["execution_time"] or 0.0 for name, r in results.items() if not r["unique_id"].startswith("test.")}
    tests = [r["execution_time"] or 0.0 for r in results.values() if r["unique_id"].startswith("test.")]
    nodes[f"data tests ({len(tests)}, together)"] = sum(tests)
    return {"seconds": seconds, "startup": startup, "nodes": nodes}


def warm_page_cache(images: Path) -> None:
    """Read every image once, untimed, so the first build does not pay for a cold cache alone."""
    for path in images.rglob("*"):
        if path.is_file():
            path.read_bytes()


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def report(runs: dict[str, list[dict]]) -> None:
    classic, connect = (median([r["seconds"] for r in runs[kind]]) for kind in KINDS)
    print(f"\nmedian build: classic {classic:.1f} s, connect {connect:.1f} s: "
          f"connect / classic = {connect / classic:.2f}")
    nodes = list(runs["classic"][0]["nodes"])
    per_node = {kind: {node: median([r["nodes"].get(node, 0.0) for r in runs[kind]]) for node in nodes}
                for kind in KINDS}
    rest = {kind: median([r["seconds"] - sum(r["nodes"].values()) for r in runs[kind]]) for kind in KINDS}
    print("\nwhere the difference goes (median seconds)")
    print(f"{'model or seed':<44} {'classic':>8} {'connect':>8} {'difference':>11}")
    for node in sorted(nodes, key=lambda n: -abs(per_node["connect"][n] - per_node["classic"][n])):
        a, b = per_node["classic"][node], per_node["connect"][node]
        print(f"{node:<44} {a:8.2f} {b:8.2f} {b - a:+11.2f}")
    a, b = (sum(per_node[kind].values()) for kind in KINDS)
    print(f"{'all nodes':<44} {a:8.2f} {b:8.2f} {b - a:+11.2f}")
    print(f"{'start-up and other (process minus nodes)':<44} {rest['classic']:8.2f} {rest['connect']:8.2f} "
          f"{rest['connect'] - rest['classic']:+11.2f}")
    startup = {kind: median([r["startup"] for r in runs[kind]]) for kind in KINDS}
    print(f"{'  of which Spark start-up (ready in)':<44} {startup['classic']:8.2f} {startup['connect']:8.2f} "
          f"{startup['connect'] - startup['classic']:+11.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=2000, help="images (default 2000)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of (classic, connect) builds (default 2)")
    incremental.add_sets_argument(parser)
    parser.add_argument("--server", type=int, metavar="PORT", help=argparse.SUPPRESS)  # internal: be the server
    args = parser.parse_args()
    if args.server is not None:
        serve(args.server)
        return

    images = make_set(args.n, args.sets / f"{args.n}")
    work = Path(tempfile.mkdtemp(prefix="bench-connect-"))
    print(f"{args.n} images in {images}; {args.rounds} rounds; work folder {work}", flush=True)
    warm_page_cache(images)
    runs: dict[str, list[dict]] = {kind: [] for kind in KINDS}
    try:
        for round_ in range(1, args.rounds + 1):
            measured = build(project_copy(work, "classic", None), images)
            runs["classic"].append(measured)
            print(f"round {round_} classic: {measured['seconds']:.1f} s (Spark ready in {measured['startup']:.1f} s)",
                  flush=True)
            server, port, server_seconds = start_server()
            try:
                project = project_copy(work, "connect", f"sc://127.0.0.1:{port}")
                measured = build(project, images, "--target", "connect")
            finally:
                stop_server(server)
            runs["connect"].append(measured)
            print(f"round {round_} connect: {measured['seconds']:.1f} s (Spark ready in {measured['startup']:.1f} s; "
                  f"the server started in {server_seconds:.1f} s before it, not counted)", flush=True)
        report(runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
