"""A store's report and export composed from the library's parts, as `cli.py` composes them:
for the tests that check their figures without going through the command line."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path

from bounce_analyzer.export import ExportFormat, ExportKind, export_events
from bounce_analyzer.ingest import ingest_paths
from bounce_analyzer.report import Report, summarize
from bounce_analyzer.rules import load_rules
from bounce_analyzer.store import count_quarantined, scan_events


def generated_store(folder: Path, *, seed: int, lines: int, start: str) -> Path:
    """A store in `folder` holding a day of the seeded generator's Postfix log (`lines`
    lines from `start`, UTC), written by the generator's command line and ingested."""
    log = folder / f"postfix-{seed}.log"
    subprocess.run(
        [sys.executable, "-m", "bounce_analyzer.generate", "postfix", "--lines", str(lines),
         "--seed", str(seed), "--start", start, "--days", "1", "--tz", "UTC", "-o", str(log)],
        check=True,
    )  # fmt: skip
    store = folder / "store"
    ingest_paths(store, [str(log)], tz="UTC")
    return store


def report_store(
    store: str,
    *,
    since: datetime | None,
    until: datetime | None = None,
    by: list[str] | None = None,
    top: int = 10,
    direction: str = "outbound",
) -> Report:
    """The report over a store's events in [since, until), with the built-in rules' advice."""
    return summarize(
        scan_events(store, since=since, until=until),
        since=since,
        until=until,
        by=by,
        top=top,
        malformed=count_quarantined(store, since=since, until=until),
        categories=load_rules().categories,
        direction=direction,
    )


def export_store(
    store: str,
    output: Path,
    *,
    since: datetime | None,
    until: datetime | None = None,
    what: ExportKind = ExportKind.events,
    fmt: ExportFormat = ExportFormat.parquet,
    partition_by_date: bool = False,
) -> int:
    """A store's events in [since, until) exported as `what`; the number of rows."""
    events = scan_events(store, since=since, until=until)
    return export_events(
        events, output, what=what, fmt=fmt, partition_by_date=partition_by_date, rules=load_rules()
    )
