"""An ingest killed with SIGKILL at any moment leaves a store the next run completes exactly.

Each case starts a real `python` subprocess that ingests into a store, kills it at some point
(after a random short delay, while it stages, while it moves files into place, before it
writes the catalogue), then runs a clean ingest and compares the stored event ids with those
of one uninterrupted run. `PAUSE` makes the ingest sleep between the steps of its commit (a
hook the store calls, `store.between_steps`), so that each window is wide enough to hit.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bounce_analyzer.store import open_store, scan_events

# A stand-in for the pipeline: four days of events, 1500 a day, from a deterministic input.
FAKE_INGEST = """
import sys
from datetime import UTC, datetime, timedelta
import polars as pl
from bounce_analyzer import schema
from bounce_analyzer.ingest import ingest_run
from bounce_analyzer.pipeline import Chunk, FileSummary
from bounce_analyzer.store import open_store

COUNT = 6000
content = b"".join(b"line %d\\n" % i for i in range(COUNT))
start = datetime(2026, 11, 24, tzinfo=UTC)
frame = schema.conform(
    pl.DataFrame(
        {
            "event_id": [f"{i:032x}" for i in range(COUNT)],
            "timestamp": [start + i * timedelta(seconds=57.6) for i in range(COUNT)],
            "event": ["bounced"] * COUNT,
            "origin": [f"fake.log:{i + 1}" for i in range(COUNT)],
        }
    ),
    schema.EVENT_SCHEMA,
)


class Run:
    def __init__(self, resume):
        self.resume = resume
        self.summaries = []

    def __iter__(self):
        summary = FileSummary(path="fake.log", source="postfix", head=content[:65536])
        self.summaries.append(summary)
        # the places an earlier run left this input at, furthest first (store.find_resume);
        # the fake input never changes, so the furthest is where it goes on
        places = self.resume(None, summary.head)
        skip = places[0].line if places else 0
        summary.end_offset, summary.end_line = len(content), COUNT
        for first in range(skip, COUNT, 1000):
            yield Chunk(path="fake.log", events=frame.slice(first, 1000))


for store in sys.argv[1:]:
    ingest_run(open_store(store, create=True, version=VERSION), Run)
"""

REAL_INGEST = """
import sys
from bounce_analyzer.ingest import ingest_paths
from bounce_analyzer.store import open_store

for store in sys.argv[2:]:
    ingest_paths(open_store(store, create=True, version=VERSION), [sys.argv[1]], tz="UTC")
"""

#: Put before a script: a pause of {seconds} after each step of a commit.
PAUSE = """
import time
from bounce_analyzer import store
store.between_steps = lambda: time.sleep({seconds})
"""


def postfix_log(path: Path) -> Path:
    """Four days of deferred recipient lines (made-up ids and addresses), 300 a day."""
    lines = []
    for day in range(24, 28):
        for number in range(300):
            minute, second = divmod(number * 4, 60)
            lines.append(
                f"Nov {day} 10:{minute:02d}:{second:02d} mx1 postfix/smtp[3333]: "
                f"{0xB0000 + day * 1000 + number:X}: to=<u{day}.{number}@example.org>, "
                "relay=mx.example.org[192.0.2.7]:25, delay=0.5, delays=0.1/0/0.2/0.2, "
                "dsn=4.2.2, status=deferred (host mx.example.org[192.0.2.7] said: 452 4.2.2 "
                "Mailbox full (in reply to RCPT TO command))\n"
            )
    path.write_text("".join(lines))
    stamp = time.mktime((2026, 11, 28, 12, 0, 0, 0, 0, -1))
    os.utime(path, (stamp, stamp))
    return path


def start(
    script: str, *args: Path | str, pause: float = 0.0, version: int = 1
) -> subprocess.Popen[bytes]:
    """The script in a process of its own; stores it makes are of `version` (1: the folder
    layout, whose kill points are below; 2: the Delta store)."""
    script = f"VERSION = {version}\n" + script
    if pause:
        script = PAUSE.format(seconds=pause) + script
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def event_files(store: Path) -> list[Path]:
    return list((store / "events").glob("date=*/part-*.parquet"))


def staged_files(store: Path) -> list[Path]:
    return list((store / "tmp").glob("*/events/date=*/*.parquet"))


#: Kill points: a condition on the store folder; the process is killed as soon as it holds.
KillPoint = Callable[[Path], bool]


def after(seconds: float) -> KillPoint:
    deadline = time.monotonic() + seconds
    return lambda store: time.monotonic() >= deadline


KILL_POINTS: dict[str, KillPoint] = {
    "while-staging": lambda store: bool(staged_files(store)),
    "while-moving": lambda store: 0 < len(event_files(store)) < 4,
    "before-catalogue": lambda store: (
        len(event_files(store)) == 4 and not (store / "catalogue.json").exists()
    ),
}


def kill_when(runs: dict[str, tuple[subprocess.Popen[bytes], Path, KillPoint]]) -> list[str]:
    """SIGKILL each process as soon as its kill point holds; the names of those that ended
    on their own first."""
    waiting = dict(runs)
    ended: list[str] = []
    deadline = time.monotonic() + 30
    while waiting and time.monotonic() < deadline:
        for name, (process, store, point) in list(waiting.items()):
            if process.poll() is not None:
                _, err = process.communicate()
                assert process.returncode == 0, err.decode()
                ended.append(name)
                del waiting[name]
            elif point(store):
                process.send_signal(signal.SIGKILL)
                process.communicate()  # reaps it and closes the pipes
                del waiting[name]
        time.sleep(0.005)
    for process, _, _ in waiting.values():
        process.kill()
        process.communicate()
    assert not waiting, f"neither ended nor reached their kill point: {sorted(waiting)}"
    return ended


def stored_ids(store: Path) -> list[str]:
    return sorted(scan_events(store).select("event_id").collect()["event_id"].to_list())


def recover(script: str, *args: Path | str, stores: list[Path], version: int = 1) -> None:
    """One clean run over each store (in one process); then each opens with no leftovers."""
    process = start(script, *args, *stores, version=version)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err.decode()
    for store in stores:
        assert len(open_store(store, create=False).catalogue()) == 1
        if version == 1:
            assert list((store / "tmp").iterdir()) == []


def test_kill_at_each_stage_and_at_random_then_recover(tmp_path: Path) -> None:
    runs = {
        name: (start(FAKE_INGEST, tmp_path / name, pause=0.15), tmp_path / name, point)
        for name, point in KILL_POINTS.items()
    }
    delays = [random.uniform(0.05, 0.8) for _ in range(2)]
    for number, delay in enumerate(delays):
        name = f"random-{number}-after-{delay:.3f}s"
        runs[name] = (start(FAKE_INGEST, tmp_path / name, pause=0.1), tmp_path / name, after(delay))
    ended = kill_when(runs)
    assert not set(ended) & set(KILL_POINTS)  # each stage was reached (random ones may end)
    reference = tmp_path / "reference"  # a fresh store: one uninterrupted run
    recover(FAKE_INGEST, stores=[reference, *(tmp_path / name for name in runs)])
    expected = stored_ids(reference)
    assert len(expected) == 6000
    for name in runs:
        assert stored_ids(tmp_path / name) == expected, name


def test_kill_real_ingest_while_moving_then_recover(tmp_path: Path) -> None:
    log = postfix_log(tmp_path / "mail.log")
    store = tmp_path / "store"
    process = start(REAL_INGEST, log, store, pause=0.15)
    assert kill_when({"moving": (process, store, KILL_POINTS["while-moving"])}) == []
    reference = tmp_path / "reference"
    recover(REAL_INGEST, log, stores=[reference, store])
    expected = stored_ids(reference)
    assert len(expected) == 1200
    assert stored_ids(store) == expected


# --- the Delta store: a commit is one transaction of the table's log -----------------------------


def delta_commits(store: Path) -> int:
    """The commits of the events table after the one that made it."""
    return len(list((store / "events" / "_delta_log").glob("*.json"))) - 1


DELTA_KILL_POINTS: dict[str, KillPoint] = {
    # its files are in the table's folders, and no commit names them
    "while-writing": lambda store: bool(event_files(store)) and delta_commits(store) == 0,
    # the catalogue of the new version is written; the commit that makes it current is not
    "before-commit": lambda store: (
        any((store / "_bounce_analyzer").glob("catalogue-00000001-*.json"))
        and delta_commits(store) == 0
    ),
}


def test_kill_a_delta_ingest_at_each_stage_then_recover(tmp_path: Path) -> None:
    runs = {
        # Each step lasts 0.4 s: the window before the commit is that one pause, which a loaded
        # machine (the suite on every core) may otherwise not give the watcher time to see.
        name: (start(FAKE_INGEST, tmp_path / name, pause=0.4, version=2), tmp_path / name, point)
        for name, point in DELTA_KILL_POINTS.items()
    }
    delay = random.uniform(0.1, 1.0)
    name = f"random-after-{delay:.3f}s"
    runs[name] = (start(FAKE_INGEST, tmp_path / name, pause=0.1, version=2), tmp_path / name,
                  after(delay))  # fmt: skip
    ended = kill_when(runs)
    assert not set(ended) & set(DELTA_KILL_POINTS)
    for name in runs:  # the old state or the whole new one: never part of a run
        if (tmp_path / name / "quarantine" / "_delta_log").exists():
            assert len(stored_ids(tmp_path / name)) in (0, 6000), name
    reference = tmp_path / "reference"
    recover(FAKE_INGEST, stores=[reference, *(tmp_path / name for name in runs)], version=2)
    expected = stored_ids(reference)
    assert len(expected) == 6000
    for name in runs:
        assert stored_ids(tmp_path / name) == expected, name
