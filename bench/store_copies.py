#!/usr/bin/env python3
"""A large store from a small one: copies of its events, each a different set of messages.

Issue 17's benchmark needs a store of 30 million events over 30 days (a million a day).
Generating and ingesting 76 million Exim lines costs more than the shared machine bears; so
a store of about 3 million generated events is ingested once (`bench/report_memory.py` or
`bounce-analyzer ingest`), and this script writes `--copies` copies of its events into
another store through the store's own staging and commit (`ingest.ingest_run`, one run per
copy), so that it runs the same on any store `open_store` opens.

Copy 0 is the events as they are. Copy k (k >= 1) is every event with:

- `message_ref` and `message_id` suffixed `~k`: its messages are messages of their own (the
  report's final outcomes, deferral resolutions and whole-message expiries see ten times as
  many messages, not ten times the same ones);
- a new `event_id` (`schema.event_id` of the old id and k): not a duplicate to the store;
- `timestamp` `k * --shift-minutes` earlier (default 61 minutes: copies do not stack on the
  same second, and the hourly traffic is spread as ten servers' would be).

Everything else (recipients, domains, texts, delays, classification) is the base's: the
number of distinct texts and recipients does not grow with the copies, as it would on a
real server of ten times the traffic.

    nice python bench/store_copies.py --base /work/s3m --store /work/s30m --copies 10

Prints the events of each copy as committed. Not part of CI (tests/test_bench_smoke.py runs
it on a tiny store).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from bounce_analyzer.ingest import ingest_run
from bounce_analyzer.pipeline import Chunk, FileSummary
from bounce_analyzer.schema import event_id
from bounce_analyzer.store import open_store, scan_events


def copied(events: pl.DataFrame, copy: int, shift: timedelta) -> pl.DataFrame:
    """`events` as copy `copy`: other message keys and event ids, `copy * shift` earlier."""
    if copy == 0:
        return events
    suffix = f"~{copy}"
    return events.with_columns(
        pl.col("message_ref") + suffix,
        pl.col("message_id") + suffix,
        event_id("bench-copy", pl.concat_str(pl.col("event_id"), pl.lit(suffix))),
        pl.col("timestamp") - copy * shift,
    )


class CopyRun:
    """What `ingest_run` drives: the base store's events a day at a time, as copy `copy`."""

    def __init__(self, base: Path, copy: int, shift: timedelta) -> None:
        self.summaries: list[FileSummary] = []  # no input file: nothing for the catalogue
        self._base, self._copy, self._shift = base, copy, shift

    def __iter__(self) -> Iterator[Chunk]:
        days = open_store(self._base, create=False).days()
        for day in days:
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            events = scan_events(self._base, since=start, until=start + timedelta(days=1))
            frame = copied(events.collect(engine="streaming"), self._copy, self._shift)
            yield Chunk(path=f"copy-{self._copy}", events=frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="the store to copy")
    parser.add_argument("--store", type=Path, required=True, help="the store to write")
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--first", type=int, default=0, help="the first copy (to resume)")
    parser.add_argument("--shift-minutes", type=float, default=61.0)
    options = parser.parse_args()
    store = open_store(options.store, create=True)
    shift = timedelta(minutes=options.shift_minutes)
    total = 0
    for copy in range(options.first, options.copies):
        began = time.monotonic()
        run = CopyRun(options.base, copy, shift)
        result = ingest_run(store, lambda _resume, run=run: run)  # type: ignore[misc]
        total += result.events
        print(
            f"copy {copy}: {result.events:,} events ({result.duplicates:,} duplicates) "
            f"in {time.monotonic() - began:.1f} s; {total:,} so far",
            flush=True,
        )


if __name__ == "__main__":
    main()
