"""`bench/store_copies.py` makes a store of N times the messages of a small one (issue 17's
30M-event benchmark store): each copy's events are other messages, not duplicates."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import polars as pl

from bounce_analyzer.ingest import ingest_paths
from bounce_analyzer.report import summarize
from bounce_analyzer.store import scan_events

REPO = Path(__file__).resolve().parents[1]


def test_store_copies_holds_each_copy_as_messages_of_its_own(tmp_path: Path) -> None:
    log = tmp_path / "exim.log"
    subprocess.run(
        [sys.executable, "-m", "bounce_analyzer.generate", "exim", "--lines", "4000", "--seed",
         "5", "--start", "2026-11-01T00:00:00+00:00", "--days", "3", "--tz", "UTC", "-o",
         str(log)],
        check=True,
    )  # fmt: skip
    ingest_paths(tmp_path / "base", [str(log)], tz="UTC")
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "store_copies.py"), "--base", str(tmp_path / "base"),
         "--store", str(tmp_path / "big"), "--copies", "3", "--shift-minutes", "30"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "copy 2: " in done.stdout and "(0 duplicates)" in done.stdout

    base = scan_events(tmp_path / "base").collect()
    big = scan_events(tmp_path / "big").collect()
    assert big.height == 3 * base.height
    assert big.get_column("event_id").n_unique() == big.height

    def messages(frame: pl.DataFrame) -> int:
        refs = frame.filter(pl.col("message_ref").is_not_null())
        return refs.select(pl.struct("source", "host", "message_ref").n_unique()).item()

    assert messages(big) == 3 * messages(base)
    # copy k is k * 30 minutes earlier: its first event is the base's first, shifted
    first = base.get_column("timestamp").min()
    assert big.get_column("timestamp").min() == first - timedelta(minutes=60)  # type: ignore[operator]
    # the report sees three times the messages, and three times each outcome
    wide = 7 * 24  # hours: every copy's events
    since = first - timedelta(hours=2)  # type: ignore[operator]
    one = summarize(base.lazy(), since=since, until=since + timedelta(hours=wide)).totals
    three = summarize(big.lazy(), since=since, until=since + timedelta(hours=wide)).totals
    counts = ["total", "delivered", "deferred", "failed", "hard", "soft", "complained"]
    assert three.select(counts).rows() == [
        tuple(3 * value for value in row) for row in one.select(counts).rows()
    ]
    assert one.item(1, "total") > 100  # final outcomes: a store of some size
