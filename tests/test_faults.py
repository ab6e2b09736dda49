"""Faults as a user meets them through the CLI: one-line errors, exit codes, no traceback,
damaged inputs and failing disks (issue 6).

Exit codes: 2 for usage errors (a bad option value), 1 for failures (a missing file, a store
that is not a store, a damaged input, a disk that refuses to write).
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import zstandard
from typer.testing import CliRunner

from _cli import invoke
from _samples import BOUNCED, BROKEN, EXIM_BOUNCED
from bounce_analyzer import location as location_module
from bounce_analyzer import store as store_module
from bounce_analyzer.cli import app
from bounce_analyzer.pipeline import ParseRun
from bounce_analyzer.store import scan_events, scan_quarantine

#: The modification time of every log written here: the year of "Nov 27" is 2026.
MTIME = datetime(2026, 11, 28, 12, 0, tzinfo=UTC).timestamp()


def write_log(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    os.utime(path, (MTIME, MTIME))
    return path


#: The faults of the store here are those of the version-1 folder layout (its renames, its
#: catalogue.json): the stores these tests make are of that layout; tests/test_store_delta.py
#: has the Delta store's.
pytestmark = pytest.mark.usefixtures("folder_layout")


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file of a store and its bytes (the lock file aside: it is empty and stays)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "lock"
    }


def stored_ids(root: Path) -> list[str]:
    return sorted(scan_events(root).select("event_id").collect()["event_id"].to_list())


@pytest.fixture
def mail_log(sample_logs_path: Path, tmp_path: Path) -> Path:
    return write_log(
        tmp_path / "mail.log", (sample_logs_path / "postfix" / "mail.log").read_bytes()
    )


@pytest.fixture
def not_a_store(tmp_path: Path) -> Path:
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a store\n")
    return folder


# --- usage errors (exit code 2) ---------------------------------------------------------------


@pytest.mark.parametrize("command", ["parse", "ingest", "report"])
def test_unknown_source_is_a_usage_error(command: str, mail_log: Path, tmp_path: Path) -> None:
    extra = [] if command == "parse" else ["--store", str(tmp_path / "store")]
    result = invoke(command, "--source", "sendmail", *extra, str(mail_log))
    assert result.exit_code == 2
    assert result.output == (
        "Error: unknown source 'sendmail': choose one of postfix, exim, sendgrid, mailgun\n"
    )


@pytest.mark.parametrize(
    ("command", "option", "value"),
    [
        ("report", "--since", "banana"),
        ("report", "--since", "2026-13-45"),
        ("report", "--since", "1y"),
        ("report", "--until", "garbage"),
        ("export", "--since", "-7d"),
    ],
)
def test_a_bad_window_is_a_usage_error(
    command: str, option: str, value: str, tmp_path: Path
) -> None:
    extra = ["-o", str(tmp_path / "out.csv")] if command == "export" else []
    result = invoke(command, "--store", str(tmp_path), option, value, *extra)
    assert result.exit_code == 2
    assert result.output == (
        f"Error: invalid {option} value {value!r}: use 7d, 24h, 2w or a date like 2026-11-01\n"
    )


@pytest.mark.parametrize("value", ["soon", "90", "-5d", "d"])
def test_a_bad_older_than_is_a_usage_error(value: str, tmp_path: Path) -> None:
    result = invoke("prune", "--store", str(tmp_path), "--older-than", value)
    assert result.exit_code == 2
    assert result.output == (
        f"Error: invalid --older-than value {value!r}: use 90d, 12w, 24h or 90m\n"
    )


# --- failures (exit code 1) -------------------------------------------------------------------


@pytest.mark.parametrize("command", ["parse", "ingest", "report"])
def test_a_missing_file_is_one_line(command: str, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "mail.log"
    extra = [] if command == "parse" else ["--store", str(tmp_path / "store")]
    result = invoke(command, *extra, str(missing))
    assert result.exit_code == 1
    assert result.output == f"Error: {missing}: no such file or directory\n"


@pytest.mark.parametrize(
    "args",
    [
        ["report"],
        ["report", "--format", "json"],
        ["export", "-o", "OUT"],
        ["prune", "--older-than", "90d"],
        ["ingest", "LOG"],
    ],
)
def test_a_folder_that_is_not_a_store(
    args: list[str], not_a_store: Path, mail_log: Path, tmp_path: Path
) -> None:
    before = snapshot(not_a_store)
    out = tmp_path / "out.csv"
    args = [str(out) if a == "OUT" else str(mail_log) if a == "LOG" else a for a in args]
    result = invoke(*args, "--store", str(not_a_store))
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {not_a_store} is not a bounce-analyzer store (no store.json); "
        "give --store a new folder or the folder of an existing store\n"
    )
    assert snapshot(not_a_store) == before
    assert not out.exists()


@pytest.mark.parametrize("command", ["report", "ingest", "prune"])
def test_a_store_path_that_is_a_file(command: str, tmp_path: Path, mail_log: Path) -> None:
    afile = tmp_path / "store"
    afile.write_text("x\n")
    extra = {"report": [], "ingest": [str(mail_log)], "prune": ["--older-than", "9d"]}[command]
    result = invoke(command, "--store", str(afile), *extra)
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {afile} is not a bounce-analyzer store (not a folder); "
        "give --store a new folder or the folder of an existing store\n"
    )
    assert afile.read_text() == "x\n"


@pytest.mark.parametrize("command", ["report", "export", "prune"])
def test_no_store_yet(command: str, tmp_path: Path) -> None:
    missing = tmp_path / "store"
    extra = {
        "report": [],
        "export": ["-o", str(tmp_path / "x.csv")],
        "prune": ["--older-than", "9d"],
    }
    result = invoke(command, "--store", str(missing), *extra[command])
    assert result.exit_code == 1
    assert result.output == f"Error: no store at {missing}: run `bounce-analyzer ingest` first\n"
    assert not missing.exists()


def test_a_damaged_store_marker(tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    (root / "store.json").write_bytes(b'{"format": "bounce-analyzer-store", "vers\xff')
    result = invoke("report", "--store", str(root))
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {root} is not a bounce-analyzer store (unreadable store.json); "
        "give --store a new folder or the folder of an existing store\n"
    )


# --- damaged input ----------------------------------------------------------------------------


def two_zstd_frames(first: bytes, second: bytes) -> bytes:
    compressor = zstandard.ZstdCompressor()
    return compressor.compress(first) + compressor.compress(second)


def test_ingest_of_a_cut_zstd_file_keeps_the_events_before_the_damage(
    sample_logs_path: Path, tmp_path: Path
) -> None:
    content = (sample_logs_path / "postfix" / "mail.log").read_bytes()
    half = content.index(b"\n", len(content) // 2) + 1
    packed = two_zstd_frames(content[:half], content[half:])
    first_frame = len(zstandard.ZstdCompressor().compress(content[:half]))
    cut = first_frame + (len(packed) - first_frame) // 2
    broken = write_log(tmp_path / "mail.log.1.zst", packed[:cut])
    lines = content[:half].count(b"\n")

    result = invoke("ingest", "--store", str(tmp_path / "store"), "--tz", "UTC", str(broken))
    assert result.exit_code == 1
    partial = result.output.splitlines()[0]
    assert partial.startswith(f"{broken}: postfix, {lines:,} read, ")
    assert partial.endswith(
        f"; PARTIAL: {broken}: compressed data ends early (truncated) at byte {cut}"
    )

    # Exactly the events of the lines before the damage are stored.
    whole_part = write_log(tmp_path / "first-half.log", content[:half])
    reference_run = invoke(
        "ingest", "--store", str(tmp_path / "ref"), "--tz", "UTC", str(whole_part)
    )
    assert reference_run.exit_code == 0, reference_run.output
    reference = stored_ids(tmp_path / "ref")
    assert len(reference) > 10
    assert stored_ids(tmp_path / "store") == reference


def test_a_zstd_file_cut_before_its_first_line_is_damaged_at_its_offset(
    sample_logs_path: Path, tmp_path: Path
) -> None:
    """With --source given, the damage is reported with its offset even when no line could
    be decoded (detection has nothing to look at otherwise: see docs/RELIABILITY.md)."""
    packed = zstandard.ZstdCompressor().compress(
        (sample_logs_path / "postfix" / "mail.log").read_bytes()
    )
    broken = write_log(tmp_path / "mail.log.zst", packed[:100])
    result = invoke("parse", "--source", "postfix", str(broken))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"{broken}: postfix, 0 read, 0 events, 0 skipped, 0 malformed; "
        f"PARTIAL: {broken}: compressed data ends early (truncated) at byte 100\n"
    )


# --- malformed records: set aside with their origin, counted, or fatal under --strict ---------


def test_malformed_lines_go_to_the_quarantine_and_the_report(tmp_path: Path) -> None:
    log = write_log(tmp_path / "mail.log", f"{BOUNCED}\n{BROKEN}\n".encode())
    root = tmp_path / "store"
    result = invoke("ingest", "--store", str(root), "--tz", "UTC", str(log))
    assert result.exit_code == 0, result.output
    assert result.output == (
        "ingested 1 file: 1 new events (1 bounced), 1 malformed set aside, 0 duplicates dropped\n"
    )
    quarantined = scan_quarantine(root).select("origin", "reason", "raw").collect().to_dicts()
    assert quarantined == [
        {"origin": f"{log}:2", "reason": "unreadable recipient status line", "raw": BROKEN}
    ]
    report = invoke("report", "--store", str(root), "--since", "1d", "--format", "json")
    assert report.exit_code == 0, report.output
    assert json.loads(report.stdout)["malformed"] == 1
    # Read again: nothing new, the record is not set aside twice.
    again = invoke("ingest", "--store", str(root), "--tz", "UTC", str(log))
    assert again.output.endswith("0 new events, 0 malformed set aside, 0 duplicates dropped\n")
    assert scan_quarantine(root).collect().height == 1


def test_strict_ingest_stops_naming_file_and_line_and_stores_nothing(tmp_path: Path) -> None:
    log = write_log(tmp_path / "mail.log", f"{BOUNCED}\n{BROKEN}\n{BOUNCED}\n".encode())
    root = tmp_path / "store"
    result = invoke("ingest", "--store", str(root), "--strict", "--tz", "UTC", str(log))
    assert result.exit_code == 1
    assert result.output == f"Error: {log}:2: unreadable recipient status line\n"
    assert stored_ids(root) == []
    assert scan_quarantine(root).collect().height == 0
    assert not (root / "catalogue.json").exists()


# --- the disk refuses: the store stays as it was, or the next run completes the work ----------


@pytest.fixture
def filled_store(tmp_path: Path, sample_logs_path: Path) -> Path:
    """A store holding mail.log.1 (so that a failing run has something to leave alone)."""
    root = tmp_path / "store"
    older = write_log(
        tmp_path / "mail.log.1", (sample_logs_path / "postfix" / "mail.log.1").read_bytes()
    )
    result = invoke("ingest", "--store", str(root), "--tz", "UTC", str(older))
    assert result.exit_code == 0, result.output
    return root


def failing_after(
    calls: int, error: OSError, real: Callable[..., Any], match: Callable[[Any], bool]
) -> Callable[..., Any]:
    """`real`, except that the call number `calls` (0-based) among the matching ones raises."""
    seen = [0]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if match(args[0]):
            seen[0] += 1
            if seen[0] - 1 == calls:
                raise error
        return real(*args, **kwargs)

    return wrapper


def clean_run_ids(tmp_path: Path, log: Path, older: Path | None = None) -> list[str]:
    root = tmp_path / "clean"
    for path in [p for p in (older, log) if p is not None]:
        assert invoke("ingest", "--store", str(root), "--tz", "UTC", str(path)).exit_code == 0
    return stored_ids(root)


@pytest.mark.parametrize("failing_call", [0, 1])
def test_permission_denied_while_moving_files_into_place(
    filled_store: Path,
    sample_logs_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    failing_call: int,
) -> None:
    """The samples make two day files: the first move fails (the store is as it was), or the
    second (one whole file is in place, the catalogue is not); the next run completes."""
    before = snapshot(filled_store)
    denied = PermissionError(errno.EACCES, "Permission denied")
    monkeypatch.setattr(
        store_module.os,
        "replace",
        failing_after(failing_call, denied, os.replace, lambda p: str(p).endswith(".parquet")),
    )
    samples = str(sample_logs_path)
    result = invoke("ingest", "--store", str(filled_store), "--tz", "UTC", samples)
    assert result.exit_code == 1
    assert result.output == (
        f"Error: cannot write to the store {filled_store}: Permission denied\n"
    )
    after = snapshot(filled_store)
    if failing_call == 0:
        assert after == before
    else:
        assert {k: v for k, v in after.items() if k in before} == before
        assert len(after) == len(before) + 1
    monkeypatch.undo()
    again = invoke("ingest", "--store", str(filled_store), "--tz", "UTC", samples)
    assert again.exit_code == 0, again.output
    assert stored_ids(filled_store) == clean_run_ids(
        tmp_path, sample_logs_path, tmp_path / "mail.log.1"
    )


def test_disk_full_while_writing_the_catalogue(
    filled_store: Path, mail_log: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The events are in place but the catalogue is not: the next run reads the file again
    and adds nothing twice."""
    before = snapshot(filled_store)
    full = OSError(errno.ENOSPC, "No space left on device")
    real_open = open
    monkeypatch.setattr(
        location_module,  # (where the store writes a file whole)
        "open",
        failing_after(0, full, real_open, lambda p: ".catalogue.json." in str(p)),
        raising=False,
    )
    result = invoke("ingest", "--store", str(filled_store), "--tz", "UTC", str(mail_log))
    assert result.exit_code == 1
    assert result.output == (
        f"Error: cannot write to the store {filled_store}: No space left on device\n"
    )
    assert snapshot(filled_store)["catalogue.json"] == before["catalogue.json"]
    assert not list(filled_store.glob(".catalogue.json.*"))
    monkeypatch.undo()
    again = invoke("ingest", "--store", str(filled_store), "--tz", "UTC", str(mail_log))
    assert again.exit_code == 0, again.output
    assert again.output.startswith("ingested 1 file: 0 new events, ")
    older = tmp_path / "mail.log.1"
    assert stored_ids(filled_store) == clean_run_ids(tmp_path, mail_log, older)


def test_a_lock_that_cannot_be_taken(
    filled_store: Path, mail_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = snapshot(filled_store)

    denied = PermissionError(errno.EACCES, "Permission denied")
    refuse = failing_after(0, denied, os.open, lambda p: str(p).endswith("lock"))
    monkeypatch.setattr(store_module.os, "open", refuse)
    result = invoke("ingest", "--store", str(filled_store), str(mail_log))
    assert result.exit_code == 1
    assert result.output == (f"Error: cannot lock the store {filled_store}: Permission denied\n")
    monkeypatch.undo()
    assert snapshot(filled_store) == before


def test_a_gzip_cut_before_its_first_line_is_damage_not_an_unknown_format(tmp_path: Path) -> None:
    """Found by tools/fuzz.py: detection saw no bytes and blamed the format."""
    import gzip

    whole = gzip.compress(b"Nov 27 10:00:01 mx1 postfix/qmgr[2]: 3F2A1B2C3D: removed\n" * 50)
    cut = tmp_path / "mail.log.2.gz"
    cut.write_bytes(whole[:30])
    result = CliRunner().invoke(app, ["parse", str(cut)])
    assert result.exit_code == 1
    assert result.stderr == (
        f"{cut}: nothing readable; PARTIAL: {cut}: compressed data ends early (truncated) "
        "at byte 30\n"
    )


def test_ingest_of_a_missing_file_creates_no_store(tmp_path: Path) -> None:
    store = tmp_path / "store"
    missing = tmp_path / "missing.log"
    result = CliRunner().invoke(app, ["ingest", "--store", str(store), str(missing)])
    assert result.exit_code == 1
    assert result.stderr == f"Error: {missing}: no such file or directory\n"
    assert not store.exists()


# --- digits of other scripts: `\d` takes them, casts and strptime do not ---------------------

#: ٥ (Arabic-Indic), ۵ (Persian), ५ (Devanagari), ５ (fullwidth): the digit 5 of four scripts.
FIVES = ["\u0665", "\u06f5", "\u096b", "\uff15"]


def parse_lines(tmp_path: Path, source: str, lines: list[str]) -> tuple[pl.DataFrame, ...]:
    """(events, malformed records) of a log of `lines` read as `source`, origin: line number."""
    log = write_log(tmp_path / "odd-digits.log", ("\n".join(lines) + "\n").encode())
    chunks = list(ParseRun([str(log)], source=source, tz="UTC"))
    line_number = pl.col("origin").str.strip_prefix(f"{log}:")
    events = pl.concat(chunk.events for chunk in chunks).with_columns(line_number)
    malformed = pl.concat(chunk.malformed for chunk in chunks).with_columns(line_number)
    return events, malformed


@pytest.mark.parametrize(
    ("source", "lines"),
    [
        (
            "postfix",
            [
                BOUNCED.replace("said: 550 5.1.1", "said: 55\u0665 5.1.1"),
                "Nov 27 10:00:02 mx postfix/smtpd[7]: NOQUEUE: reject: RCPT from c.example"
                "[192.0.2.1]: 55\u0665 5.7.1 <a@example.com>: Relay access denied; "
                "from=<s@example.org> to=<a@example.com> proto=ESMTP helo=<c>",
            ],
        ),
        ("exim", [EXIM_BOUNCED.replace(": 550 5.1.1", ": 55\u0665 5.1.1")]),
    ],
)
def test_a_reply_code_with_a_non_ascii_digit_is_no_code(
    tmp_path: Path, source: str, lines: list[str]
) -> None:
    # `\d` matches any Unicode digit ("٥", U+0665): such a "code" once reached an Int16 cast
    # and raised. Reply codes are ASCII digits; the event keeps its text, without a code.
    events, _ = parse_lines(tmp_path, source, lines)
    assert events.height == len(lines)
    assert events["smtp_code"].null_count() == len(lines)
    assert all("55\u0665" in text for text in events["diagnostic"].to_list())


def test_an_exim_queue_time_with_a_non_ascii_digit_is_no_delay(tmp_path: Path) -> None:
    # QT=1٥s once reached a numeric cast through `\d` and raised; the delivery is still read.
    line = (
        "2026-11-27 10:00:01 1tE3xY-0001Ab-Cd => a@example.com R=dnslookup T=remote_smtp "
        'H=mx.example.com [192.0.2.7] C="250 ok" QT=1\u0665s DT=1s'
    )
    events, _ = parse_lines(tmp_path, "exim", [line])
    assert events["event"].to_list() == ["delivered"]
    assert events["smtp_code"].to_list() == [250]
    assert events["delay_s"].to_list() == [None]


@pytest.mark.parametrize("five", FIVES)
@pytest.mark.parametrize(
    "odd",
    [
        # ...dsn=5.1.٥, status=bounced (host ... said: 550 User unknown ...)
        BOUNCED.replace("dsn=5.1.1", "dsn=5.1.{d}").replace("550 5.1.1", "550"),
        # ...delay=1, dsn=٥.1.1, status=bounced (...)   (dsn= without delays=)
        BOUNCED.replace("delays=0/0/0/1, dsn=5.1.1", "dsn={d}.1.1"),
    ],
    ids=["dsn", "dsn-alone"],
)
def test_a_postfix_dsn_with_a_non_ascii_digit_is_malformed(
    tmp_path: Path, odd: str, five: str
) -> None:
    # `dsn=\d\.\d{1,3}\.\d{1,3}` once stored "5.1.٥" as the enhanced code, which no rule
    # matches and no report groups with 5.1.5. Like `dsn=5.1.x`, the line is unreadable.
    events, malformed = parse_lines(tmp_path, "postfix", [BOUNCED, odd.format(d=five)])
    assert events.select("origin", "enhanced_code").rows() == [("1", "5.1.1")]
    assert malformed.select("origin", "reason").rows() == [
        ("2", "unreadable recipient status line")
    ]


@pytest.mark.parametrize("five", FIVES)
@pytest.mark.parametrize(
    ("source", "good", "odd"),
    [
        ("postfix", BOUNCED, BOUNCED.replace("Nov 27 10:00:01", "Nov 2{d} 10:00:01")),
        ("postfix", BOUNCED, BOUNCED.replace("Nov 27 10:00:01", "Nov 27 10:00:01.1{d}")),
        ("postfix", BOUNCED, BOUNCED.replace("Nov 27 10:00:01", "2026-11-27T1{d}:00:01Z")),
        ("postfix", BOUNCED, BOUNCED.replace("Nov 27 10:00:01", "2026-11-27T10:00:01+0{d}:00")),
        ("postfix", BOUNCED, BOUNCED.replace("Nov 27 10:00:01", "202{d} Nov 27 10:00:01")),
        ("exim", EXIM_BOUNCED, EXIM_BOUNCED.replace("2026-11-27", "202{d}-11-27")),
        ("exim", EXIM_BOUNCED, EXIM_BOUNCED.replace("10:00:01", "10:00:01.{d}")),
        ("exim", EXIM_BOUNCED, EXIM_BOUNCED.replace("10:00:01", "10:00:01 +01{d}0")),
    ],
    ids=[
        "postfix-classic",
        "postfix-fraction",
        "postfix-rfc3339",
        "postfix-offset",
        "postfix-yearful",
        "exim-date",
        "exim-fraction",
        "exim-offset",
    ],
)
def test_a_stamp_with_a_non_ascii_digit_is_an_invalid_timestamp(
    tmp_path: Path, source: str, good: str, odd: str, five: str
) -> None:
    # The stamp patterns take `\d`, and strptime reads ASCII digits only: the line is set
    # aside as an invalid timestamp (with `[0-9]` a zone like +01٥0 would not be seen, and an
    # Exim line would lose its message id and be skipped), the lines around it are read.
    events, malformed = parse_lines(tmp_path, source, [good, odd.format(d=five), good])
    assert events["origin"].to_list() == ["1", "3"]
    assert malformed.select("origin", "reason").rows() == [("2", "invalid timestamp")]
