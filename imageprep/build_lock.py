"""One build at a time per warehouse: the lock that `build`, `run`, `seed`, `test` and `retry` hold.

Those commands publish tables or record test results; two at once would stage and commit over
each other. Readers (`query`, `show`, `serve`, `docs`, the training loader, DuckDB on the
links) take no lock: they read the last committed catalog.

- A local warehouse: `fcntl.flock` on `_build.lock` in the warehouse folder. The kernel releases
  it when the holder exits, however it exits (SIGKILL included), so it is never stale. The file
  also says who holds it (pid, host, start time, command) for the message a second build prints.
- A warehouse named by a URI (hdfs://, s3a://, file://...; through imageprep.files): the same
  file, created only if it does not exist, with the holder's details and a heartbeat the holder rewrites every
  HEARTBEAT_SECONDS; removed on release. A lock is stale, and taken over, when its host is this
  host and its pid is gone, or when its heartbeat is older than STALE_AFTER_SECONDS (a holder on
  another machine that died). Object stores check before they create and then read the file
  back, so of two builds starting within the same moment only the one whose details are there
  goes on (one that checks between the other's write and read-back could still both go on).
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator

from .errors import ProjectError

LOCK_FILE = "_build.lock"
HEARTBEAT_SECONDS = 30.0
STALE_AFTER_SECONDS = 300.0
POLL_SECONDS = 1.0


class WarehouseBusy(ProjectError):
    """Another build holds the warehouse and the caller would not wait (exit code 2)."""


@dataclass
class Holder:
    pid: int
    host: str
    started: float
    command: str
    heartbeat: float = 0.0
    token: str = ""

    @classmethod
    def me(cls, command: str) -> "Holder":
        now = time.time()
        return cls(os.getpid(), socket.gethostname(), now, command, now, uuid.uuid4().hex)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Holder | None":
        try:
            data = json.loads(text)
            return cls(int(data["pid"]), str(data["host"]), float(data["started"]), str(data["command"]),
                       float(data.get("heartbeat") or data["started"]), str(data.get("token", "")))
        except (ValueError, KeyError, TypeError):
            return None  # empty (being written) or not ours

    def describe(self) -> str:
        started = datetime.fromtimestamp(self.started).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
        return (f"pid {self.pid} on host {self.host}, started {started} "
                f"({_duration(time.time() - self.started)} ago): {self.command}")


@contextmanager
def build_lock(root, command: str, wait: bool = True, echo: Callable[[str], None] = print) -> Iterator[None]:
    """Hold the build lock of the warehouse at `root` (a Path or a StoragePath) for the block.

    When another build holds it: with `wait`, say who and wait until it ends; without, raise
    WarehouseBusy with the same words."""
    lock = FlockLock(root / LOCK_FILE) if isinstance(root, Path) else FileSystemLock(root / LOCK_FILE)
    me = Holder.me(command)
    if not lock.try_acquire(me):
        holder = lock.holder()
        who = holder.describe() if holder else "its details are not written yet"
        busy = f"Another build is using the warehouse {root}: {who}"
        if not wait:
            raise WarehouseBusy(f"{busy}. Run again once it has finished, or without --no-wait to wait for it.")
        echo(busy)
        echo("Waiting for it to finish (--no-wait fails at once instead)...")
        waited = time.monotonic()
        lock.acquire(me)
        echo(f"The other build has finished; going on after waiting {_duration(time.monotonic() - waited)}.")
    try:
        yield
    finally:
        lock.release()


class FlockLock:
    """An exclusive flock on a local file; the file holds the holder's details."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def try_acquire(self, me: Holder) -> bool:
        return self._lock(me, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def acquire(self, me: Holder) -> None:
        self._lock(me, fcntl.LOCK_EX)

    def _lock(self, me: Holder, how: int) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # os.open's descriptors are not inherited by child processes (the JVM), so the lock ends
        # with this process.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, how)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:  # Ctrl-C while waiting
            os.close(fd)
            raise
        self._fd = fd
        data = me.to_json().encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        return True

    def holder(self) -> Holder | None:
        for _ in range(10):  # the holder writes its details just after it locks
            try:
                found = Holder.from_json(self.path.read_text(encoding="utf-8"))
            except OSError:
                found = None
            if found:
                return found
            time.sleep(0.05)
        return None

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)  # the file stays: removing a locked file would let two builds lock
        finally:
            os.close(self._fd)  # closing releases the flock
            self._fd = None


class FileSystemLock:
    """A lock file on a file system named by a URI (a StoragePath), created exclusively, with a heartbeat."""

    def __init__(self, path):
        self.path = path
        self._me: Holder | None = None
        self._stop = threading.Event()
        self._beating: threading.Thread | None = None

    def try_acquire(self, me: Holder) -> bool:
        if not self.path.create_new(me.to_json()):
            holder = self.holder()
            if not self._stale(holder):
                return False
            # Take over: remove it only if it is still the stale one, then create ours.
            if self.holder() == holder:
                self.path.unlink(missing_ok=True)
            if not self.path.create_new(me.to_json()):
                return False
        self._me = me
        self._stop.clear()
        self._beating = threading.Thread(target=self._beat, name="build-lock-heartbeat", daemon=True)
        self._beating.start()
        return True

    def acquire(self, me: Holder) -> None:
        while not self.try_acquire(me):
            time.sleep(POLL_SECONDS)

    def holder(self) -> Holder | None:
        try:
            return Holder.from_json(self.path.read_text())
        except Exception:  # gone meanwhile, or unreadable
            return None

    def _stale(self, holder: Holder | None) -> bool:
        if holder is None:  # written by something else, or its writer died before writing: judge by age
            try:
                return time.time() - self.path.modified_at() > STALE_AFTER_SECONDS
            except Exception:
                return False  # removed meanwhile: the next attempt creates it
        if holder.host == socket.gethostname() and not _pid_alive(holder.pid):
            return True
        return time.time() - holder.heartbeat > STALE_AFTER_SECONDS

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            self._me.heartbeat = time.time()
            try:
                self.path.write_text(self._me.to_json())
            except Exception:  # a network hiccup: the next beat tries again
                pass

    def release(self) -> None:
        if self._me is None:
            return
        self._stop.set()
        if self._beating is not None:
            self._beating.join()
        try:
            holder = self.holder()
            if holder is not None and holder.token == self._me.token:
                self.path.unlink(missing_ok=True)
        finally:
            self._me = None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
