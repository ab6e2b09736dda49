"""The spool: append-only NDJSON files that hold every acknowledged webhook event.

One file per source is open at a time, `<source>-<UTC timestamp>-<pid>.ndjson` in the spool
folder; each line is one JSON document the source's reader takes as it comes (a SendGrid
body's array of events folded onto one line, a Mailgun `{"event-data": {...}}` object), so
`bounce-analyzer ingest DIR` reads the folder like any saved payloads. The first line of each
file names the file (`first_line`: why).

Durability: `write` returns only once the lines are on disk (written and `os.fsync`'d). One
writer thread does all the writing; requests that arrive while it syncs wait together and are
synced by the next single `fsync` of each file they touched (a group commit), which is what
lets many concurrent requests share the cost of a sync.

A file is rotated (closed, never written again, a new one opened) once it holds `rotate_bytes`
or is `rotate_s` old. After a crash a file may end in a torn line (never acknowledged: a
request is answered only after its whole lines are synced); `open` ends each such line with a
newline, so the reader sets it aside as malformed instead of waiting for its end for ever.

A lock file (`.lock`, hidden from `ingest DIR`) keeps a second server off the same folder.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bounce_analyzer.errors import UsageError

__all__ = ["Spool", "SpoolFull", "first_line", "spool_files"]

#: The name of spool files: `<source>-<UTC timestamp>-<pid>.ndjson`.
SUFFIX = ".ndjson"
LOCK_NAME = ".lock"


class SpoolFull(Exception):
    """The spool folder holds `max_bytes` or more: new events are refused (HTTP 429)."""


def spool_files(folder: Path) -> list[Path]:
    """The spool files in `folder`, oldest first (by name: source, then UTC timestamp)."""
    return sorted(
        path for path in folder.iterdir() if path.suffix == SUFFIX and not path.name[0] == "."
    )


@dataclass
class _Open:
    """The file a source is being written to."""

    path: Path
    fd: int
    size: int
    opened: float  # monotonic seconds


@dataclass
class _Job:
    source: str
    data: bytes
    done: Callable[[BaseException | None], None]


@dataclass
class SyncStats:
    """What the writer did: for /metrics."""

    syncs: int = 0
    lines_batches: int = 0
    #: fsync seconds per upper bound (Prometheus histogram buckets, cumulative when shown).
    buckets: dict[float, int] = field(
        default_factory=lambda: dict.fromkeys((0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1), 0)
    )
    seconds: float = 0.0

    def observe(self, seconds: float) -> None:
        self.syncs += 1
        self.seconds += seconds
        for bound in self.buckets:
            if seconds <= bound:
                self.buckets[bound] += 1
                break


class Spool:
    """The spool folder, its one writer thread and the files it writes (see the module)."""

    def __init__(
        self,
        folder: Path,
        *,
        max_bytes: int,
        rotate_bytes: int = 64 * 1024 * 1024,
        rotate_s: float = 3600.0,
    ) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.rotate_bytes = rotate_bytes
        self.rotate_s = rotate_s
        self.stats = SyncStats()
        self._bytes = 0  # bytes of spool files in the folder (ours and those left before)
        self._open: dict[str, _Open] = {}
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock_fd: int | None = None
        self._guard = threading.Lock()  # `_open` and `_bytes`, shared with remove()

    # --- life ---------------------------------------------------------------------------------

    def open(self) -> None:
        """Take the folder (made if missing), end torn lines, count its bytes, start writing.
        Raises `UsageError` when the folder cannot be used or another server has it."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            lock_fd = os.open(self.folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as error:
            raise UsageError(f"{self.folder}: cannot use as the spool: {error.strerror}") from None
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(lock_fd)
            raise UsageError(f"{self.folder}: another server is using this spool") from None
        self._lock_fd = lock_fd
        total = 0
        for path in spool_files(self.folder):
            try:
                total += _end_torn_line(path)
            except OSError as error:
                os.close(lock_fd)
                raise UsageError(f"{path}: cannot read or repair: {error.strerror}") from None
        self._bytes = total
        self._thread = threading.Thread(target=self._run, name="spool-writer", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Finish the writes queued, sync and close the files (all of them closed now); the
        folder stays ours until `release`."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None
        with self._guard:
            for current in self._open.values():
                os.fsync(current.fd)
                os.close(current.fd)
            self._open.clear()

    def release(self) -> None:
        """Free the folder for another server (after `close`)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # --- what the server asks -----------------------------------------------------------------

    @property
    def size(self) -> int:
        """Bytes of spool files in the folder."""
        return self._bytes

    def check_room(self) -> None:
        """Raise `SpoolFull` when the folder holds `max_bytes` or more."""
        if self._bytes >= self.max_bytes:
            raise SpoolFull(f"spool holds {self._bytes} bytes, the limit is {self.max_bytes}")

    async def write(self, source: str, data: bytes) -> None:
        """Append `data` (whole lines, each ending in a newline) to `source`'s file; return
        once it is synced to disk. Raises the OSError the writing met."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def done(error: BaseException | None) -> None:
            loop.call_soon_threadsafe(_settle, future, error)

        self._jobs.put(_Job(source, data, done))
        await future

    def write_blocking(self, source: str, data: bytes) -> None:
        """`write` for a caller without an event loop (tests, tools)."""
        finished = threading.Event()
        failure: list[BaseException] = []

        def done(error: BaseException | None) -> None:
            if error is not None:
                failure.append(error)
            finished.set()

        self._jobs.put(_Job(source, data, done))
        finished.wait()
        if failure:
            raise failure[0]

    def closed_files(self) -> list[Path]:
        """Spool files that are never written again (all but the ones open now)."""
        with self._guard:
            current = {entry.path for entry in self._open.values()}
        return [path for path in spool_files(self.folder) if path not in current]

    def remove(self, paths: Iterable[Path]) -> None:
        """Delete closed spool files (read into the store); their bytes free room."""
        with self._guard:
            current = {entry.path for entry in self._open.values()}
            for path in paths:
                if path in current:
                    continue
                try:
                    size = path.stat().st_size
                    path.unlink()
                except FileNotFoundError:
                    continue
                self._bytes -= size

    # --- the writer thread --------------------------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._jobs.get()
            jobs: list[_Job] = []
            if first is None:
                stopping = True
            else:
                jobs.append(first)
            # Everything queued meanwhile goes into this group: one sync per file for all.
            while True:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                else:
                    jobs.append(job)
            if not jobs:
                continue
            try:
                self._commit(jobs)
            except Exception as error:  # a bug: these requests fail, later ones still run
                for job in jobs:
                    job.done(error)

    def _commit(self, jobs: list[_Job]) -> None:
        touched: dict[str, _Open] = {}
        failed: dict[str, BaseException] = {}
        for job in jobs:
            if job.source in failed:
                continue
            try:
                current = self._current(job.source)
                _write_all(current.fd, job.data)
            except OSError as error:
                failed[job.source] = error
                continue
            current.size += len(job.data)
            with self._guard:
                self._bytes += len(job.data)
            touched[job.source] = current
        for source, current in touched.items():
            started = time.perf_counter()
            try:
                os.fsync(current.fd)
            except OSError as error:
                failed[source] = error
            self.stats.observe(time.perf_counter() - started)
        self.stats.lines_batches += len(jobs)
        for job in jobs:
            job.done(failed.get(job.source))

    def _current(self, source: str) -> _Open:
        """The file `source` is written to, rotated when full or old."""
        current = self._open.get(source)
        now = time.monotonic()
        if current is not None and (
            current.size >= self.rotate_bytes or now - current.opened >= self.rotate_s
        ):
            os.fsync(current.fd)
            os.close(current.fd)
            with self._guard:
                del self._open[source]
            current = None
        if current is None:
            current = self._create(source, now)
            with self._guard:
                self._open[source] = current
        return current

    def _create(self, source: str, now: float) -> _Open:
        stamp = datetime.now(UTC)
        while True:
            name = f"{source}-{stamp:%Y%m%dT%H%M%S%fZ}-{os.getpid()}{SUFFIX}"
            path = self.folder / name
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
            except FileExistsError:
                stamp = stamp.replace(microsecond=(stamp.microsecond + 1) % 1_000_000)
                continue
            break
        # The new name must survive a crash too: sync the folder's entry.
        _sync_folder(self.folder)
        first = first_line(source, name, int(stamp.timestamp()))
        _write_all(fd, first)
        with self._guard:
            self._bytes += len(first)
        return _Open(path=path, fd=fd, size=len(first), opened=now)


def first_line(source: str, name: str, timestamp: int) -> bytes:
    """The line each spool file starts with: an event of no outcome (read, then skipped) that
    names the file.

    The store's catalogue knows an input by its first bytes, and takes a file that starts as
    another did for that file grown; without this line, an ESP's retry written first to a new
    file after a restart would make the new file look like the old one, and be read from
    where the old one ended.
    """
    if source == "sendgrid":
        event: dict[str, object] = {"event": "spool-file", "sg_event_id": name}
        event["timestamp"] = timestamp
    else:
        event = {"event-data": {"event": "spool-file", "id": name, "timestamp": timestamp}}
    return json.dumps(event, separators=(",", ":")).encode() + b"\n"


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():  # the request was cancelled (its client went away)
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _end_torn_line(path: Path) -> int:
    """End a last line a crash left without its newline; the file's size after."""
    with path.open("r+b") as stream:
        size = stream.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        stream.seek(size - 1)
        if stream.read(1) == b"\n":
            return size
        stream.write(b"\n")
        stream.flush()
        os.fsync(stream.fileno())
        return size + 1
