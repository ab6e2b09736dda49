"""Ordinary files and hostile ones through the real CLI (issue 12): empty logs, logs without
deliveries, output paths, options, text encodings and text that would reach a terminal.

Each test builds its small inputs here and pins the exact one-line message and exit code:
2 for a usage error, 1 for a failure, 0 otherwise.
"""

from __future__ import annotations

import gzip
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from _samples import BOUNCED
from bounce_analyzer.cli import app

#: The modification time of every log written here: the year of "Nov 27" is 2026.
MTIME = datetime(2026, 11, 28, 12, 0, tzinfo=UTC).timestamp()

#: A Postfix NOQUEUE reject: an event (rejected), but no delivery attempt.
REJECTED = (
    "Nov 27 10:00:02 mx postfix/smtpd[7]: NOQUEUE: reject: RCPT from c.example[192.0.2.1]: "
    "554 5.7.1 <a@example.com>: Relay access denied; from=<s@example.org> to=<a@example.com> "
    "proto=ESMTP helo=<c>"
)
#: A Postfix line of no interest: skipped.
CONNECT = "Nov 27 10:00:03 mx postfix/smtpd[7]: connect from c.example[192.0.2.1]"


def invoke(*args: str, input: bytes | str | None = None) -> Result:
    result = CliRunner().invoke(app, list(args), input=input)
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def write_log(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    os.utime(path, (MTIME, MTIME))
    return path


def lines(*records: str) -> str:
    return "".join(f"{record}\n" for record in records)


# --- 1. ordinary files: an empty log, a log without deliveries, --quiet ----------------------


@pytest.mark.parametrize("command", ["parse", "ingest"])
@pytest.mark.parametrize("how", ["named", "in a directory", "stdin", "gzip"])
def test_an_empty_log_is_zero_lines_read(command: str, how: str, tmp_path: Path) -> None:
    """logrotate leaves an empty log: 0 lines read and exit 0, not "format not recognised"."""
    folder = tmp_path / "logs"
    folder.mkdir()
    log = write_log(folder / "mail.log", gzip.compress(b"") if how == "gzip" else b"")
    path = {"named": str(log), "in a directory": str(folder), "stdin": "-", "gzip": str(log)}
    shown = "<stdin>" if how == "stdin" else str(log)
    extra = ["--store", str(tmp_path / "store")] if command == "ingest" else []
    result = invoke(command, *extra, path[how], input=b"")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    if command == "parse":
        assert result.stderr == f"{shown}: empty, 0 read, 0 events, 0 skipped, 0 malformed\n"
    else:
        assert result.stderr == (
            "ingested 1 file: 0 new events, 0 malformed set aside, 0 duplicates dropped\n"
        )


def test_an_empty_log_beside_a_good_one_in_the_cron_line(tmp_path: Path) -> None:
    """The README's cron line, `ingest --quiet ... && report`, after logrotate."""
    empty = write_log(tmp_path / "mail.log", b"")
    older = write_log(tmp_path / "mail.log.1", lines(BOUNCED))
    store = str(tmp_path / "store")
    ingested = invoke("ingest", "--quiet", "--tz", "UTC", "--store", store, str(tmp_path / "*"))
    assert (ingested.exit_code, ingested.output) == (0, "")
    report = invoke("report", "--store", store, "--since", "2026-11-01", "--format", "json")
    assert report.exit_code == 0, report.output
    assert json.loads(report.stdout)["totals"][0]["failed"] == 1
    assert empty.exists() and older.exists()


@pytest.mark.parametrize(
    ("logs", "failed"),
    [
        ([lines(REJECTED)], 1),
        ([lines(CONNECT)], 0),
        ([lines(CONNECT), lines(BOUNCED)], 1),
        ([lines(BOUNCED), lines(CONNECT)], 1),
        ([lines(REJECTED), lines(CONNECT, CONNECT), lines(BOUNCED)], 2),
    ],
    ids=["rejects-only", "skipped-only", "skipped-then-good", "good-then-skipped", "mixed"],
)
@pytest.mark.parametrize("fmt", ["table", "json"])
def test_report_on_logs_without_delivery_events(
    logs: list[str], failed: int, fmt: str, tmp_path: Path
) -> None:
    """Once `ColumnNotFoundError: provider` (a log with no event) and `ValueError: write to
    closed file` (such a log before a good one)."""
    paths = [str(write_log(tmp_path / f"mail{i}.log", text)) for i, text in enumerate(logs)]
    result = invoke("report", "--since", "2026-11-01", "--tz", "UTC", "--format", fmt, *paths)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    if fmt == "json":
        attempts = json.loads(result.stdout)["totals"]
        assert [row["failed"] for row in attempts] == ([failed, failed] if failed else [])
    else:
        assert result.stdout.startswith("bounce-analyzer report: 2026-11-01 00:00 UTC to ")
        assert result.stdout.endswith("Malformed records set aside: 0\n")
        totals = result.stdout.split("\n\n")[1].splitlines()
        if failed:
            assert totals[2].split()[:5] == ["attempts", str(failed), "0", "0", str(failed)]
        else:
            assert totals[1:] == ["  (none)"]


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl", "table"])
def test_parse_of_a_log_without_events_writes_the_event_table_columns(
    fmt: str, tmp_path: Path
) -> None:
    """A stretch of log without an event once wrote its own (unclassified) columns as the CSV
    header or Parquet schema, and failed when a later file had events."""
    import polars as pl

    from bounce_analyzer.schema import EVENT_SCHEMA

    quiet = write_log(tmp_path / "quiet.log", lines(CONNECT))
    busy = write_log(tmp_path / "busy.log", lines(BOUNCED))
    for inputs, rows in (([quiet], 0), ([quiet, busy], 1)):
        out = tmp_path / f"events-{len(inputs)}.{fmt}"
        result = invoke("parse", "--tz", "UTC", "--format", fmt, "-o", str(out), *map(str, inputs))
        assert result.exit_code == 0, result.output
        if fmt == "parquet":
            assert dict(pl.read_parquet(out).schema) == EVENT_SCHEMA
            assert pl.read_parquet(out).height == rows
        elif fmt == "csv":
            assert out.read_text().splitlines()[0] == ",".join(EVENT_SCHEMA)
            assert len(out.read_text().splitlines()) == 1 + rows
        else:
            assert len(out.read_text().splitlines()) == rows + (fmt == "table" and rows)


def test_ingest_quiet_is_silent_unless_something_is_wrong(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    good = write_log(tmp_path / "mail.log", lines(BOUNCED))
    first = invoke("ingest", "--quiet", "--tz", "UTC", "--store", store, str(good))
    assert (first.exit_code, first.stdout, first.stderr) == (0, "", "")
    loud = invoke("ingest", "--tz", "UTC", "--store", store, str(good))
    assert loud.stderr == (
        "ingested 1 file: 0 new events, 0 malformed set aside, 0 duplicates dropped\n"
    )
    # Something wrong: the problem and the summary are said, quiet or not.
    cut = write_log(tmp_path / "mail.log.1.gz", gzip.compress(lines(BOUNCED).encode())[:30])
    wrong = invoke("ingest", "--quiet", "--tz", "UTC", "--store", store, str(cut))
    assert wrong.exit_code == 1
    assert wrong.stderr == (
        f"{cut}: nothing readable; PARTIAL: {cut}: compressed data ends early (truncated) "
        "at byte 30\n"
        "ingested 0 files (1 passed over): 0 new events, 0 malformed set aside, "
        "0 duplicates dropped\n"
    )


def test_parse_quiet_says_only_what_is_wrong(tmp_path: Path) -> None:
    good = write_log(tmp_path / "mail.log", lines(BOUNCED))
    notes = write_log(tmp_path / "notes.txt", "shopping list\neggs\n")
    quiet = invoke("parse", "--quiet", "--tz", "UTC", str(good))
    assert (quiet.exit_code, quiet.stderr) == (0, "")
    assert len(quiet.stdout.splitlines()) == 1
    wrong = invoke("parse", "--quiet", "--tz", "UTC", str(good), str(notes))
    assert wrong.exit_code == 1
    assert wrong.stderr == (
        f"{notes}: format not recognised (name it with --source); nothing read\n"
    )
