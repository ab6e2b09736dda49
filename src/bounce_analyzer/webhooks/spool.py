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
request is answered only after its whole lines are synced, so the ESP sends it again); `open`
moves such a tail into `.torn/` and cuts the file after its last whole line, so that the
spool holds whole lines only and `ingest` never meets the torn one (`TornTail`).

The spool's size, which `max_bytes` bounds, is counted from the folder at `open`, at each
rotation, and when the limit is reached and the folder changed since the last count: files
removed by anyone (an operator, an `ingest` with a clean-up of its own) free their room
without a restart, and only a request refused for want of room pays for a listing.

A lock file (`.lock`, hidden from `ingest DIR`, as `.torn/` is) keeps a second server off the
same folder.
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

__all__ = ["Spool", "SpoolFull", "TornTail", "first_line", "spool_files"]

#: The name of spool files: `<source>-<UTC timestamp>-<pid>.ndjson`.
SUFFIX = ".ndjson"
LOCK_NAME = ".lock"
#: The folder, in the spool, of the torn tails `open` moved out of spool files.
TORN_FOLDER = ".torn"


class SpoolFull(Exception):
    """The spool folder holds `max_bytes` or more: new events are refused (HTTP 429)."""


def spool_files(folder: Path) -> list[Path]:
    """The spool files in `folder`, oldest first (by name: source, then UTC timestamp)."""
    return sorted(
        path for path in folder.iterdir() if path.suffix == SUFFIX and not path.name[0] == "."
    )


@dataclass(frozen=True)
class TornTail:
    """The last line of a spool file that a crash cut, moved out of it by `Spool.open`."""

    path: Path  # the spool file, which now ends with its last whole line
    aside: Path  # where the torn bytes are kept: `.torn/<the file's stem>.torn`
    size: int  # how many bytes


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
        self._counted_at: int | None = None  # the folder's change time at the last count
        self._counted_when = 0  # and when that count was made (both in ns of the clock)
        self._open: dict[str, _Open] = {}
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock_fd: int | None = None
        # `_open`, the sizes in it and `_bytes`, changed together: a count of the folder
        # (`_recount`, from any thread) sees each write in both or in neither.
        self._guard = threading.Lock()

    # --- life ---------------------------------------------------------------------------------

    def open(self) -> list[TornTail]:
        """Take the folder (made if missing), move torn tails aside, count its bytes, start
        writing; the torn tails moved. Raises `UsageError` when the folder cannot be used or
        another server has it."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            lock_fd = os.open(self.folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        except (FileExistsError, NotADirectoryError):
            raise UsageError(f"{self.folder}: cannot use as the spool: not a folder") from None
        except OSError as error:
            raise UsageError(f"{self.folder}: cannot use as the spool: {error.strerror}") from None
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(lock_fd)
            raise UsageError(f"{self.folder}: another server is using this spool") from None
        self._lock_fd = lock_fd
        torn = []
        for path in spool_files(self.folder):
            try:
                tail = _move_torn_tail(path, self.folder / TORN_FOLDER)
            except OSError as error:
                self.release()
                raise UsageError(f"{path}: cannot read or repair: {error.strerror}") from None
            if tail is not None:
                torn.append(tail)
        self._recount()
        self._thread = threading.Thread(target=self._run, name="spool-writer", daemon=True)
        self._thread.start()
        return torn

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
        """Raise `SpoolFull` when the folder holds `max_bytes` or more (counted again first
        if files were added or removed since the last count)."""
        if self._bytes < self.max_bytes:
            return
        changed_at = _changed_at(self.folder)
        # A folder's change time moves in clock ticks of a few milliseconds: a change in the
        # tick of the last count may not move it, so a count that close is not trusted.
        if changed_at != self._counted_at or self._counted_when - (changed_at or 0) < 10**9:
            self._recount()
        if self._bytes >= self.max_bytes:
            raise SpoolFull(f"spool holds {self._bytes} bytes, the limit is {self.max_bytes}")

    def _recount(self) -> None:
        """Count the bytes of the spool files in the folder again. The files being written
        count by what was written to them, the others by their size on disk."""
        with self._guard:
            changed_at = _changed_at(self.folder)
            written = {entry.path: entry.size for entry in self._open.values()}
            total = 0
            try:
                paths = spool_files(self.folder)
            except OSError:  # a folder gone or unreadable: writes fail and say so
                return
            for path in paths:
                size = written.get(path)
                if size is None:
                    try:
                        size = path.stat().st_size
                    except FileNotFoundError:  # removed meanwhile
                        continue
                total += size
            self._bytes = total
            self._counted_at = changed_at
            self._counted_when = time.time_ns()

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
            with self._guard:
                current.size += len(job.data)
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
            self._recount()  # at each rotation: what others removed meanwhile frees room
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
        current = _Open(path=path, fd=fd, size=len(first), opened=now)
        with self._guard:
            try:
                _write_all(fd, first)
            except OSError:
                os.close(fd)
                raise
            self._open[source] = current
            self._bytes += len(first)
        return current


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


def _changed_at(folder: Path) -> int | None:
    """When a file was last added to or removed from `folder` (nanoseconds; None when the
    folder cannot be looked at)."""
    try:
        return os.stat(folder).st_mtime_ns
    except OSError:
        return None


def _move_torn_tail(path: Path, aside_folder: Path) -> TornTail | None:
    """Move the bytes after the last newline of `path` (a line a crash cut) into
    `aside_folder`, synced there before the file is cut after its last newline; a file with
    no whole line left is removed. None when the file ends with a newline."""
    with path.open("r+b") as stream:
        size = stream.seek(0, os.SEEK_END)
        cut = size
        # Back from the end, a block at a time, to the last newline (a torn line is at most
        # one request's body).
        while cut > 0:
            start = max(0, cut - 65536)
            stream.seek(start)
            newline = stream.read(cut - start).rfind(b"\n")
            if newline >= 0:
                cut = start + newline + 1
                break
            cut = start
        if cut == size:
            return None
        stream.seek(cut)
        tail = stream.read()
        aside_folder.mkdir(mode=0o700, exist_ok=True)
        aside = aside_folder / f"{path.stem}.torn"
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(fd, tail)
            os.fsync(fd)
        finally:
            os.close(fd)
        _sync_folder(aside_folder)
        # Only now, with the bytes safe elsewhere, cut them off (a crash before this point
        # leaves the file as it was, and the next start does it all again).
        stream.truncate(cut)
        stream.flush()
        os.fsync(stream.fileno())
    if cut == 0:
        path.unlink()
        _sync_folder(path.parent)
    return TornTail(path=path, aside=aside, size=len(tail))
