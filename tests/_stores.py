"""A store's report and export composed from the library's parts, as `cli.py` composes them:
for the tests that check their figures without going through the command line."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from bounce_analyzer.export import ExportFormat, ExportKind, export_events
from bounce_analyzer.report import Report, summarize
from bounce_analyzer.rules import load_rules
from bounce_analyzer.store import count_quarantined, scan_events


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
