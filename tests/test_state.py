"""Events counted right across lines and runs (issue 12), through the CLI.

- A line written twice is two events: the n-th repeat of a line in an input gets the id of
  the line and n (the first keeps the id it always had), so that the same input read again
  adds nothing while each repeat is stored.
"""

from __future__ import annotations

import gzip
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner, Result

from bounce_analyzer.cli import app
from bounce_analyzer.store import scan_events

runner = CliRunner()

#: The modification time of every log written here: the year of "Nov 27" is 2026.
MTIME = datetime(2026, 11, 28, 12, 0, tzinfo=UTC).timestamp()

EXIM_REJECT = (
    "2026-11-27 10:00:02 H=(bulk.example.info) [192.0.2.98]:6791 F=<a@promo.example.biz> "
    "rejected RCPT <h@example.com>: 192.0.2.98 is listed at zen.spamhaus.org"
)
POSTFIX_REJECT = (
    "Nov 27 10:00:02 mx postfix/smtpd[7]: NOQUEUE: reject: RCPT from c.example[192.0.2.1]: "
    "554 5.7.1 <a@example.com>: Relay access denied; from=<s@example.org> to=<a@example.com> "
    "proto=ESMTP helo=<c>"
)
REJECTS = pytest.mark.parametrize("line", [EXIM_REJECT, POSTFIX_REJECT], ids=["exim", "postfix"])


def invoke(*args: str, stdin: bytes | None = None) -> Result:
    result = runner.invoke(app, list(args), input=stdin)
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def write_log(path: Path, data: bytes, *, append: bool = False) -> Path:
    with path.open("ab" if append else "wb") as handle:
        handle.write(data)
    os.utime(path, (MTIME, MTIME))
    return path


def ingest(store: Path, *paths: Path) -> str:
    result = invoke("ingest", "--store", str(store), "--tz", "UTC", *map(str, paths))
    assert result.exit_code == 0, result.output
    return result.output


def stored(store: Path) -> pl.DataFrame:
    return scan_events(store).collect().sort("event_id")


def parsed_ids(*args: str, stdin: bytes | None = None) -> list[str]:
    result = invoke("parse", "--tz", "UTC", "--format", "jsonl", *args, stdin=stdin)
    assert result.exit_code == 0, result.output
    return [json.loads(line)["event_id"] for line in result.stdout.splitlines()]


# --- a line written twice is two events -------------------------------------------------------


@REJECTS
def test_identical_lines_are_two_events_in_parse_and_in_the_store(
    line: str, tmp_path: Path
) -> None:
    log = write_log(tmp_path / "mail.log", f"{line}\n{line}\n".encode())
    ids = parsed_ids(str(log))
    assert len(ids) == len(set(ids)) == 2
    store = tmp_path / "store"
    assert ingest(store, log).startswith(
        "ingested 1 file: 2 new events (2 rejected), 0 malformed set aside, 0 duplicates dropped"
    )
    assert sorted(stored(store)["event_id"]) == sorted(ids)
    # The same input again, with or without the catalogue that says it was read: nothing new.
    assert ingest(store, log).startswith("ingested 1 file: 0 new events, ")
    (store / "catalogue.json").unlink()
    assert ingest(store, log).startswith(
        "ingested 1 file: 0 new events, 0 malformed set aside, 2 duplicates dropped"
    )
    assert stored(store).height == 2


@REJECTS
def test_the_first_of_identical_lines_keeps_the_id_a_single_line_has(
    line: str, tmp_path: Path
) -> None:
    once = parsed_ids(str(write_log(tmp_path / "once.log", f"{line}\n".encode())))
    twice = parsed_ids(str(write_log(tmp_path / "twice.log", f"{line}\n{line}\n".encode())))
    assert twice[0] == once[0]  # stores written before repeats were counted stay valid


@REJECTS
def test_a_rotated_compressed_copy_adds_no_repeat_twice(line: str, tmp_path: Path) -> None:
    data = f"{line}\n{line}\n{line}\n".encode()
    log = write_log(tmp_path / "mail.log", data)
    store = tmp_path / "store"
    ingest(store, log)
    (store / "catalogue.json").unlink()  # the ids alone must know the copy
    rotated = write_log(tmp_path / "mail.log.1.gz", gzip.compress(data))
    log.unlink()
    assert ingest(store, rotated).startswith(
        "ingested 1 file: 0 new events, 0 malformed set aside, 3 duplicates dropped"
    )
    assert stored(store).height == 3


@REJECTS
def test_stdin_piped_again_gives_the_same_ids(line: str) -> None:
    data = f"{line}\n{line}\n".encode()
    first = parsed_ids("-", stdin=data)
    assert len(set(first)) == 2
    assert parsed_ids("-", stdin=data) == first
