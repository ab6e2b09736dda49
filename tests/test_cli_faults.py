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

from _samples import BOUNCED, EXIM_BOUNCED
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
    # every direction: the reject is our server's (inbound), which an outbound report leaves out
    window = ["--since", "2026-11-01", "--tz", "UTC", "--direction", "all"]
    result = invoke("report", *window, "--format", fmt, *paths)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    if fmt == "json":
        attempts = json.loads(result.stdout)["totals"]
        assert [row["failed"] for row in attempts] == ([failed, failed] if failed else [])
    else:
        assert result.stdout.startswith("bounce-analyzer report: 2026-11-01 00:00 UTC to ")
        assert result.stdout.endswith("Malformed records set aside: 0\n")
        paragraphs = result.stdout.split("\n\n")
        totals = next(p for p in paragraphs if p.startswith("Totals")).splitlines()
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
        elif fmt == "table":  # two header lines; each event's row with its reply under it
            assert len(out.read_text().splitlines()) == (2 + 2 * rows if rows else 0)
        else:
            assert len(out.read_text().splitlines()) == rows


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


# --- 2. output paths ---------------------------------------------------------------------------


def leftovers(folder: Path) -> list[str]:
    """Files an interrupted output would leave (`.<name>.<random>.part`)."""
    return sorted(p.name for p in folder.rglob("*.part"))


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return write_log(tmp_path / "mail.log", lines(BOUNCED))


@pytest.fixture
def store_with_an_event(tmp_path: Path, log: Path) -> Path:
    store = tmp_path / "store"
    assert (
        invoke("ingest", "--quiet", "--tz", "UTC", "--store", str(store), str(log)).exit_code == 0
    )
    return store


@pytest.mark.parametrize(
    ("command", "option", "where", "reason"),
    [
        ("parse", "-o", "missing/x.jsonl", "no such file or directory"),
        ("parse", "-o", "mail.log/x.jsonl", "not a directory"),  # refused even to root
        ("parse", "-o", "folder", "is a directory"),
        ("parse", "--malformed", "missing/x.jsonl", "no such file or directory"),
        ("parse", "--malformed", "mail.log/x.jsonl", "not a directory"),
        ("parse", "--malformed", "folder", "is a directory"),
        ("export", "-o", "folder", "is a directory"),
        ("export", "-o", "mail.log/x.csv", "not a directory"),
    ],
)
def test_an_output_that_cannot_be_written_is_one_line(
    command: str, option: str, where: str, reason: str, tmp_path: Path, log: Path
) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "kept.txt").write_text("kept\n")
    if command == "export":
        store = tmp_path / "store"
        assert invoke("ingest", "-q", "--tz", "UTC", "--store", str(store), str(log)).exit_code == 0
        args = ["export", "--store", str(store), "--since", "2026-11-01"]
    else:
        args = ["parse", "--tz", "UTC", str(log)]
    target = tmp_path / where
    result = invoke(*args, option, str(target))
    assert result.exit_code == 1
    assert result.output == f"Error: cannot write {target}: {reason}\n"
    assert leftovers(tmp_path) == []
    assert sorted(p.name for p in (tmp_path / "folder").iterdir()) == ["kept.txt"]
    assert log.read_text() == lines(BOUNCED)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into any folder")
def test_an_unwritable_folder_is_one_line(tmp_path: Path, log: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = invoke("parse", "--tz", "UTC", str(log), "-o", str(locked / "x.jsonl"))
    finally:
        locked.chmod(0o700)
    assert result.exit_code == 1
    assert result.output == f"Error: cannot write {locked / 'x.jsonl'}: permission denied\n"
    assert list(locked.iterdir()) == []


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full here")
def test_a_full_disk_is_one_line(log: Path) -> None:
    result = invoke("parse", "--tz", "UTC", str(log), "-o", "/dev/full")
    assert result.exit_code == 1
    assert result.output == "Error: cannot write /dev/full: no space left on device\n"


def test_an_output_is_written_whole_or_not_at_all(
    tmp_path: Path, log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that fails (a full disk, --strict) leaves no partial file, and an older output as
    it was; /dev/null is written as it is (not replaced)."""
    import errno

    from bounce_analyzer import writers

    out = tmp_path / "events.jsonl"
    out.write_text("yesterday's events\n")
    os.chmod(out, 0o640)
    broken = write_log(
        tmp_path / "broken.log",
        lines(BOUNCED, "Nov 27 10:00:02 mx1 postfix/smtp[2]: 3F2A1B2C3D: to=<, status=bounced"),
    )
    strict = invoke("parse", "--strict", "--tz", "UTC", str(broken), "-o", str(out))
    assert strict.exit_code == 1
    assert strict.output == f"Error: {broken}:2: unreadable recipient status line\n"

    def full(self: writers.EventWriter, frame: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writers.EventWriter, "write", full)
    result = invoke("parse", "--tz", "UTC", str(log), "-o", str(out))
    assert result.exit_code == 1
    assert result.output == f"Error: cannot write {out}: no space left on device\n"
    assert out.read_text() == "yesterday's events\n"
    assert leftovers(tmp_path) == []
    monkeypatch.undo()

    done = invoke("parse", "--tz", "UTC", str(log), "-o", str(out))
    assert done.exit_code == 0, done.output
    assert [json.loads(line)["event"] for line in out.read_text().splitlines()] == ["bounced"]
    assert oct(out.stat().st_mode & 0o777) == oct(0o640)  # the older file's mode is kept
    assert leftovers(tmp_path) == []
    link = tmp_path / "latest.jsonl"
    link.symlink_to(out)
    through = invoke("parse", "--tz", "UTC", str(log), "-o", str(link))
    assert through.exit_code == 0, through.output
    assert link.is_symlink() and out.read_text() == link.read_text()
    devnull = invoke("parse", "--tz", "UTC", str(log), "-o", os.devnull, "--format", "csv")
    assert devnull.exit_code == 0, devnull.output
    assert Path(os.devnull).is_char_device()


@pytest.mark.parametrize(
    ("command", "output"),
    [
        (["parse", "--tz", "UTC", "LOG"], "x.xlsx"),
        (["parse", "--tz", "UTC", "LOG"], "events.json"),
        (["export", "--store", "STORE", "--since", "2026-11-01"], "x.xlsx"),
        (["export", "--store", "STORE", "--since", "2026-11-01"], "x.csv.gz"),
    ],
)
def test_an_output_suffix_of_no_format_is_a_usage_error(
    command: list[str], output: str, tmp_path: Path, log: Path, store_with_an_event: Path
) -> None:
    """`-o x.xlsx` once wrote JSON lines (parse) or Parquet (export) under that name."""
    args = [
        str(log) if a == "LOG" else str(store_with_an_event) if a == "STORE" else a for a in command
    ]
    target = tmp_path / output
    result = invoke(*args, "-o", str(target))
    assert result.exit_code == 2
    if command[0] == "parse":
        assert result.output == (
            f"Error: cannot tell the format of {target} from its suffix: name it .parquet, "
            ".csv, .jsonl or .ndjson, or give --format (jsonl, csv, parquet or table)\n"
        )
    else:
        assert result.output == (
            f"Error: cannot tell the format of {target} from its suffix: name it .parquet or "
            ".csv, or give --format (parquet or csv)\n"
        )
    assert not target.exists()
    # Named with --format, any name will do.
    fmt = "jsonl" if command[0] == "parse" else "csv"
    assert invoke(*args, "-o", str(target), "--format", fmt).exit_code == 0
    assert target.exists()


@pytest.mark.parametrize(
    ("given", "option", "target"),
    [
        ("mail.log", "-o", "mail.log"),
        ("mail.log", "--malformed", "mail.log"),
        ("*.log", "-o", "mail.log"),  # through a glob
        ("logs-dir", "-o", "logs-dir/mail.log"),  # through a directory
        ("mail.log", "-o", "link.log"),  # another name of the same file
        ("mail.log", "--malformed", "hard.log"),
    ],
)
def test_an_output_that_is_an_input_is_refused_before_anything_is_written(
    given: str, option: str, target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`parse X -o X` once emptied X before reading it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "logs-dir").mkdir()
    write_log(tmp_path / "mail.log", lines(BOUNCED))
    write_log(tmp_path / "logs-dir" / "mail.log", lines(BOUNCED))
    (tmp_path / "link.log").symlink_to(tmp_path / "mail.log")
    os.link(tmp_path / "mail.log", tmp_path / "hard.log")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    result = invoke("parse", "--format", "jsonl", given, option, target)
    assert result.exit_code == 2
    name = {"-o": "--output"}.get(option, option)
    assert result.output == f"Error: {name} {target} is an input: give {name} another file\n"
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert leftovers(tmp_path) == []


def test_the_events_and_the_malformed_records_into_one_file_is_refused(
    tmp_path: Path, log: Path
) -> None:
    out = tmp_path / "out.jsonl"
    result = invoke(
        "parse", str(log), "-o", str(out), "--malformed", str(tmp_path / "." / "out.jsonl")
    )
    assert result.exit_code == 2
    assert result.output == (
        f"Error: --malformed {tmp_path / '.' / 'out.jsonl'} is also --output: "
        "give --malformed another file\n"
    )
    assert not out.exists()


@pytest.mark.parametrize(
    ("fmt", "unbuffered"),
    [("jsonl", ""), ("csv", ""), ("table", ""), ("parquet", ""), ("jsonl", "1"), ("csv", "1")],
)
def test_a_reader_that_stops_early_ends_the_command_quietly(
    fmt: str, unbuffered: str, tmp_path: Path
) -> None:
    """`parse big.log | head -1` once ended in a BrokenPipeError traceback (and, under
    PYTHONUNBUFFERED, in exit 0 after a part of a write). A real pipe, closed early."""
    import subprocess
    import sys

    # different recipients and texts, so that even Parquet outgrows a pipe's buffer
    bounces = [
        BOUNCED.replace("a@", f"a{n}@").replace("unknown", f"unknown {n}") for n in range(20_000)
    ]
    log = write_log(tmp_path / "mail.log", lines(*bounces))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = unbuffered
    command = ["parse", "--tz", "UTC", "--format", fmt, str(log)]
    with subprocess.Popen(
        [sys.executable, "-m", "bounce_analyzer", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        assert len(process.stdout.read(100)) == 100
        process.stdout.close()
        errors = process.stderr.read()
        assert (process.wait(timeout=60), errors) == (141, b"")


# --- 3. options and text ----------------------------------------------------------------------


def test_grouping_by_a_column_twice_is_a_usage_error(store_with_an_event: Path) -> None:
    """`--by provider,provider` once raised polars' DuplicateError."""
    result = invoke(
        "report", "--store", str(store_with_an_event), "--by", "provider,category,provider"
    )
    assert result.exit_code == 2
    assert result.output == "Error: --by names provider more than once\n"


@pytest.mark.parametrize(
    ("since", "until", "shown"),
    [
        ("2026-11-15", "2026-11-01", "--until 2026-11-01"),
        ("2026-11-15", "2026-11-15", "--until 2026-11-15"),
        ("2099-01-01", None, "now"),
    ],
)
@pytest.mark.parametrize("command", ["report", "report FILES", "export"])
def test_a_window_that_ends_before_it_starts_is_a_usage_error(
    command: str,
    since: str,
    until: str | None,
    shown: str,
    tmp_path: Path,
    log: Path,
    store_with_an_event: Path,
) -> None:
    args = {
        "report": ["report", "--store", str(store_with_an_event)],
        "report FILES": ["report", str(log)],
        "export": ["export", "--store", str(store_with_an_event), "-o", str(tmp_path / "x.csv")],
    }[command]
    window = ["--since", since, *(["--until", until] if until else [])]
    result = invoke(*args, *window)
    assert result.exit_code == 2
    assert result.output == f"Error: empty window: --since {since} is not before {shown}\n"
    assert not (tmp_path / "x.csv").exists()


#: Postfix lines that Exim's reader claims and cannot read (they are not Exim's).
POSTFIX_LOG = lines(BOUNCED, BOUNCED.replace("a@", "b@"), REJECTED, CONNECT)
EXIM_LOG = lines(EXIM_BOUNCED)


@pytest.mark.parametrize("command", ["parse", "ingest", "report"])
def test_the_wrong_source_is_said_and_fails_when_nothing_is_read(
    command: str, tmp_path: Path
) -> None:
    """`--source exim` on a Postfix log once read as 900 malformed records, exit 0."""
    postfix = write_log(tmp_path / "mail.log", POSTFIX_LOG)

    def args(store: str) -> list[str]:
        return {
            "parse": ["parse"],
            "ingest": ["ingest", "--store", str(tmp_path / store)],
            "report": ["report", "--since", "2026-11-01", "--format", "json"],
        }[command]

    result = invoke(*args("store"), "--tz", "UTC", "--source", "exim", str(postfix))
    assert result.exit_code == 1
    summary = f"{postfix}: exim, 4 read, 0 events, 0 skipped, 4 malformed\n"
    warning = (
        f"warning: {postfix}: 4 of 4 records malformed as exim and none an event: it looks "
        "like postfix (leave out --source, or name the right one)\n"
    )
    ingested = "ingested 1 file: 0 new events, 4 malformed set aside, 0 duplicates dropped\n"
    assert result.stderr == summary + warning + (ingested if command == "ingest" else "")

    # Beside a log that gives events, it is said, and the run succeeds.
    exim = write_log(tmp_path / "mainlog", EXIM_LOG)
    both = invoke(*args("other"), "--tz", "UTC", "--source", "exim", str(postfix), str(exim))
    assert both.exit_code == 0, both.output
    assert warning in both.stderr


def test_a_misread_file_whose_format_is_not_known_is_said(tmp_path: Path) -> None:
    notes = write_log(tmp_path / "notes.json", '{"a": 1}\n[1, 2\n')
    result = invoke("parse", "--source", "sendgrid", str(notes))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        f"warning: {notes}: 2 of 2 records malformed as sendgrid and none an event: its "
        "format was not recognised"
    )


def test_a_lone_bad_line_added_to_a_read_input_is_set_aside_not_a_misread(
    tmp_path: Path,
) -> None:
    """A writer killed mid-line (a spool of `serve` whose server is not yet restarted, a
    crashed exporter) leaves one bad record after what the last ingest read: the nightly
    ingest counts it and exits 0, where it once judged the whole input misread (exit 1)."""
    event = {"event": "bounce", "email": "someone@example.net", "timestamp": 1764151200,
             "sg_event_id": "one", "reason": "550 5.1.1 no such user"}  # fmt: skip
    saved = write_log(tmp_path / "events.ndjson", json.dumps(event) + "\n")
    store = tmp_path / "store"
    first = invoke("ingest", "--quiet", "--store", str(store), str(saved))
    assert (first.exit_code, first.output) == (0, "")
    with saved.open("a") as stream:
        stream.write('{"event": "bounce", "email": "late@exa\n')
    torn = invoke("ingest", "--store", str(store), str(saved))
    assert torn.exit_code == 0, torn.output
    assert "0 new events" in torn.output and "1 malformed set aside" in torn.output
    assert "warning" not in torn.stderr
    # Read from its start, the same input is judged as before: more events than bad lines.
    again = invoke("parse", "--format", "jsonl", str(saved))
    assert again.exit_code == 0, again.output


@pytest.mark.parametrize("command", ["parse", "ingest", "report"])
@pytest.mark.parametrize(
    ("inputs", "code"),
    [
        (["good"], 0),
        (["good", "empty"], 0),
        (["good", "cut gzip"], 1),
        (["good", "unrecognised"], 1),
        (["good", "folder with an unrecognised file"], 0),
    ],
)
def test_one_rule_decides_the_exit_code_of_every_command(
    command: str, inputs: list[str], code: int, tmp_path: Path
) -> None:
    """`report FILES` once exited 0 on a cut gzip or an unrecognised file, where `parse`
    exited 1."""
    folder = tmp_path / "folder"
    folder.mkdir()
    write_log(folder / "notes.txt", "shopping list\n")
    made = {
        "good": write_log(tmp_path / "mail.log", lines(BOUNCED)),
        "empty": write_log(tmp_path / "empty.log", b""),
        "cut gzip": write_log(
            tmp_path / "mail.log.1.gz", gzip.compress(lines(*[BOUNCED] * 50).encode())[:40]
        ),
        "unrecognised": write_log(tmp_path / "notes.txt", "shopping list\n"),
        "folder with an unrecognised file": folder,
    }
    args = {
        "parse": ["parse"],
        "ingest": ["ingest", "--store", str(tmp_path / "store")],
        "report": ["report", "--since", "2026-11-01", "--format", "json"],
    }[command]
    result = invoke(*args, "--tz", "UTC", *(str(made[name]) for name in inputs))
    assert result.exit_code == code, result.output


def test_explain_reads_bytes_that_are_not_utf8_as_replacement_characters() -> None:
    """`printf 'a\\xe9b 550 5.1.1\\n' | bounce-analyzer explain -` once ended in a
    UnicodeEncodeError that stopped the stream."""
    stream = invoke("explain", "-", input=b"a\xe9b 550 5.1.1\n452 4.2.2 over quota\n")
    assert stream.exit_code == 0, stream.output
    answers = [json.loads(line) for line in stream.stdout.splitlines()]
    assert [a["input"] for a in answers] == ["a\ufffdb 550 5.1.1", "452 4.2.2 over quota"]
    assert [a["category"] for a in answers] == ["user_unknown", "mailbox_full"]
    # An argument with such bytes (Python keeps them as lone surrogates).
    one = invoke("explain", "--json", "a\udce9b 550 5.1.1", "--recipient", "x\udce9@gmail.com")
    assert one.exit_code == 0, one.output
    assert json.loads(one.stdout)["input"] == "a\ufffdb 550 5.1.1"
    text = invoke("explain", "a\udce9b 550 5.1.1")
    assert text.exit_code == 0, text.output
    assert text.stdout.startswith("category:     user_unknown\n")


def test_a_rules_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    toml = rules / "categories.toml"
    toml.write_bytes(b'# mine\n[categories.x]\ndescription = "caf\xe9"\n')
    result = invoke("explain", "421", "--rules", str(rules))
    assert result.exit_code == 1
    assert result.output == f"Error: {toml}:3: not UTF-8 (byte 0xe9): TOML files are UTF-8\n"


# --- 4. hostile text reaching a terminal -------------------------------------------------------

#: A remote server's words as a webhook carries them: an OSC sequence (window title), an SGR
#: colour, a right-to-left override and a newline that would start a forged row.
HOSTILE = "550 5.1.1 \x1b]0;pwned\x07\x1b[31mno such user\u202e\nforged | 1 | row"
HOSTILE_DOMAIN = "ex\x1b[31mample\u202e.com"
#: What the terminal is allowed to see of them.
SHOWN_DOMAIN = "ex\\x1b[31mample\\u202e.com"
#: Characters that must never reach a terminal from data.
RAW = ("\x1b", "\x07", "\u202e", "\x9b")


@pytest.fixture
def hostile_hook(tmp_path: Path) -> Path:
    """A SendGrid webhook file with one bounce carrying `HOSTILE`, whose own name carries an
    OSC sequence and a newline."""
    stamp = int(datetime(2026, 11, 27, 10, 0, tzinfo=UTC).timestamp())
    event = {
        "email": f"a@{HOSTILE_DOMAIN}",
        "timestamp": stamp,
        "event": "bounce",
        "type": "bounce",
        "reason": HOSTILE,
        "status": "5.1.1",
        "sg_event_id": "ev-1",
        "sg_message_id": "m-1.filter",
    }
    return write_log(tmp_path / "hook\x1b]0;t\x07\n.json", json.dumps(event) + "\n")


def shown(path: Path) -> str:
    return str(path).replace("\x1b", "\\x1b").replace("\x07", "\\x07").replace("\n", "\\n")


def test_parse_table_and_summary_lines_escape_control_and_format_characters(
    hostile_hook: Path,
) -> None:
    result = invoke("parse", "--format", "table", str(hostile_hook))
    assert result.exit_code == 0, result.output
    assert not any(char in result.output for char in RAW)
    _, _, row, *under = result.stdout.splitlines()  # the two header lines; no forged row
    assert f"a@{SHOWN_DOMAIN}" in row
    assert all(line.startswith("    ") for line in under)  # the whole diagnostic, wrapped
    assert " ".join(line.strip() for line in under) == (
        "550 5.1.1 \\x1b]0;pwned\\x07\\x1b[31mno such user\\u202e\\nforged | 1 | row"
    )
    assert result.stderr == (
        f"{shown(hostile_hook)}: sendgrid, 1 read, 1 events, 0 skipped, 0 malformed\n"
    )
    # JSON lines keep the data exact.
    data = invoke("parse", str(hostile_hook))
    assert json.loads(data.stdout)["diagnostic"] == HOSTILE
    assert json.loads(data.stdout)["recipient_domain"] == HOSTILE_DOMAIN


@pytest.mark.parametrize("fmt", ["table", "markdown"])
def test_report_for_people_escapes_control_and_format_characters(
    fmt: str, hostile_hook: Path
) -> None:
    result = invoke(
        "report", "--since", "2026-11-01", "--by", "recipient_domain", "--format", fmt,
        str(hostile_hook),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert not any(char in result.output for char in RAW)
    assert not any(line.lstrip("|- ").startswith("forged") for line in result.stdout.splitlines())
    assert SHOWN_DOMAIN in result.stdout
    assert "\\x1b]#;pwned\\x07\\x1b[<id> such user\\u202e" in result.stdout  # the masked text
    # The data formats keep the text exact (CSV still formula-safe).
    document = json.loads(invoke("report", "--since", "2026-11-01", "--format", "json",
                                 str(hostile_hook)).stdout)  # fmt: skip
    assert document["recipient_domains"][0]["recipient_domain"] == HOSTILE_DOMAIN
    assert document["categories"][0]["top_messages"][0]["example"] == HOSTILE


def test_report_from_the_store_escapes_them_too(hostile_hook: Path, tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    ingested = invoke("ingest", "--store", store, str(hostile_hook))
    assert ingested.exit_code == 0, ingested.output
    assert not any(char in ingested.output for char in RAW)
    result = invoke("report", "--store", store, "--since", "2026-11-01")
    assert result.exit_code == 0, result.output
    assert not any(char in result.output for char in RAW)
    assert SHOWN_DOMAIN in result.stdout


def test_error_lines_and_explain_escape_them(tmp_path: Path) -> None:
    missing = tmp_path / "no\x1b[2J\nsuch.log"
    result = invoke("parse", str(missing))
    assert result.exit_code == 1
    assert result.output == f"Error: {shown(missing)}: no such file or directory\n"
    explained = invoke(
        "explain", "550 5.1.1 unknown", "--provider", "evil\x1b]8;;http://x\x07\u2066"
    )
    assert explained.exit_code == 0, explained.output
    assert "provider:     evil\\x1b]8;;http://x\\x07\\u2066\n" in explained.stdout
    assert not any(char in explained.output for char in RAW)
