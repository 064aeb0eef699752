"""One build at a time per warehouse: a second build waits for the first (or, with --no-wait,
fails at once naming it), and a lock left by a killed build is taken over."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner_helpers import write_project

REPO = Path(__file__).resolve().parent.parent
RUNNER = REPO / "runner.py"
MODELS = {f"models/m{i}.sql": f"select {i} as id, count(*) as n from range(100000)" for i in range(4)}
HOLD = f"""
import sys
from pathlib import Path
sys.path.insert(0, {str(REPO)!r})
from imageprep.build_lock import build_lock
with build_lock(Path(sys.argv[1]), "holder-for-test"):
    print("held", flush=True)
    sys.stdin.readline()  # until told to let go, or killed
"""


def start_holder(warehouse: Path) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(warehouse)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def runner(project: Path, *args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(RUNNER), *args, "--project-dir", str(project)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def read_until(process: subprocess.Popen, marker: str, seconds: float = 180) -> str:
    """The process's output up to the first line holding `marker`."""
    seen, deadline = [], time.monotonic() + seconds
    for line in process.stdout:
        seen.append(line)
        if marker in line or time.monotonic() > deadline:
            break
    assert marker in "".join(seen), "".join(seen)
    return "".join(seen)


def test_with_no_wait_a_second_build_fails_at_once_naming_the_holder(tmp_path):
    root = write_project(tmp_path, MODELS)
    holder = start_holder(root / "target/warehouse")
    try:
        done = subprocess.run([sys.executable, str(RUNNER), "build", "--no-wait", "--project-dir", str(root)],
                              capture_output=True, text=True, timeout=120)
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"pid {holder.pid} on host {socket.gethostname()}" in done.stderr
    assert "holder-for-test" in done.stderr and "--no-wait" in done.stderr
    assert "Starting Spark" not in done.stdout and not (root / "target/warehouse/_catalog.json").exists()


def test_two_builds_at_once_run_one_after_the_other(tmp_path):
    root = write_project(tmp_path, MODELS)
    first = runner(root, "build")
    try:
        early = read_until(first, "Starting Spark")  # it holds the lock from here to its end
        second = runner(root, "build")
        rest, _ = first.communicate(timeout=300)
        waited, _ = second.communicate(timeout=300)
    finally:
        for process in (first, locals().get("second")):
            if process is not None and process.poll() is None:
                process.kill()
    assert first.returncode == 0, early + rest
    assert second.returncode == 0, waited
    assert f"Another build is using the warehouse {root / 'target/warehouse'}: pid {first.pid}" in waited
    assert "python runner.py build --project-dir" in waited and "Waiting for it to finish" in waited
    results = json.loads((root / "target/run_results.json").read_text())["results"]
    assert {r["status"] for r in results} == {"skipped: unchanged"}  # it found the first build's tables


def test_a_lock_left_by_a_killed_build_is_taken_over(tmp_path):
    from imageprep.build_lock import WarehouseBusy, build_lock

    warehouse = tmp_path / "warehouse"
    holder = start_holder(warehouse)
    with pytest.raises(WarehouseBusy, match=f"pid {holder.pid} .*holder-for-test"):
        with build_lock(warehouse, "second", wait=False):
            pass
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with build_lock(warehouse, "after the kill", wait=False):
        assert json.loads((warehouse / "_build.lock").read_text())["command"] == "after the kill"


def test_a_waiting_build_goes_on_when_the_holder_lets_go(tmp_path):
    from imageprep.build_lock import build_lock

    warehouse = tmp_path / "warehouse"
    holder = start_holder(warehouse)
    said = []
    try:
        def echo(line):
            said.append(line)
            if line.startswith("Waiting"):
                holder.stdin.write("go\n")
                holder.stdin.flush()

        with build_lock(warehouse, "waiter", echo=echo):
            assert holder.wait(30) == 0
    finally:
        holder.kill()
        holder.wait()
    assert said[0].startswith(f"Another build is using the warehouse {warehouse}: pid {holder.pid}")
    assert said[-1].startswith("The other build has finished")


@pytest.mark.parametrize("backend", ["pyarrow", "hadoop"])
def test_a_lock_on_a_uri_warehouse_names_its_holder_and_is_taken_over_when_stale(backend, request, tmp_path):
    """The lock of a warehouse named by a URI, through either backend of the file layer."""
    from imageprep.build_lock import STALE_AFTER_SECONDS, Holder, WarehouseBusy, build_lock
    from imageprep.files import ArrowFiles, StoragePath, files_for
    from imageprep.files_hadoop import HadoopFiles

    uri = (tmp_path / "wh").as_uri()
    files = HadoopFiles(request.getfixturevalue("spark")) if backend == "hadoop" else files_for(uri)
    assert isinstance(files, HadoopFiles if backend == "hadoop" else ArrowFiles)
    root = StoragePath(uri, files)
    lock_file = tmp_path / "wh" / "_build.lock"
    with build_lock(root, "first", wait=False):
        assert json.loads(lock_file.read_text())["command"] == "first"
        with pytest.raises(WarehouseBusy, match=f"pid {os.getpid()} .*: first"):
            with build_lock(root, "second", wait=False):
                pass
    assert not lock_file.exists()

    def left_by(pid, host, command, heartbeat_age=0.0):
        now = time.time()
        lock_file.write_text(Holder(pid, host, now - 60, command, now - heartbeat_age, "t").to_json())

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left_by(int(gone.stdout), socket.gethostname(), "a killed build")  # this host, its process is gone
    with build_lock(root, "third", wait=False):
        assert json.loads(lock_file.read_text())["command"] == "third"
    left_by(1, "another-host", "a remote build")  # another host, beating
    with pytest.raises(WarehouseBusy, match="a remote build"):
        with build_lock(root, "fourth", wait=False):
            pass
    left_by(1, "another-host", "a remote build", heartbeat_age=STALE_AFTER_SECONDS + 1)  # stopped beating
    with build_lock(root, "fifth", wait=False):
        assert json.loads(lock_file.read_text())["command"] == "fifth"
    assert not lock_file.exists()
