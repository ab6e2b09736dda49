"""Events counted right across lines and runs (issue 12), through the CLI.

- A line written twice is two events: the n-th repeat of a line in an input gets the id of
  the line and n (the first keeps the id it always had), so that the same input read again
  adds nothing while each repeat is stored.
- What a source needs across lines (Postfix open queue ids, Exim open messages, the counts of
  repeated lines) is kept with the store from one ingest to the next: a log ingested in
  several runs is stored exactly as when it is read in one.
- That state is bounded in bytes as well as in rows, the oldest going first.
"""

from __future__ import annotations

import gzip
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner, Result

from bounce_analyzer.cli import app
from bounce_analyzer.generate import generate_exim, generate_postfix
from bounce_analyzer.sources import exim as exim_module
from bounce_analyzer.sources import postfix as postfix_module
from bounce_analyzer.store import scan_events

#: These tests look into the version-1 folder layout (catalogue.json, state/, tmp/, flock):
#: the stores they make are of that layout (tests/test_store_delta.py tests the Delta store).
pytestmark = pytest.mark.usefixtures("folder_layout")


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
    """Write (or append to) a log; one that ends inside a line is being written now, so it
    keeps the clock's mtime and its partial line waits (reading.QUIET_SECONDS)."""
    with path.open("ab" if append else "wb") as handle:
        handle.write(data)
    if data.endswith(b"\n"):
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
def test_a_repeat_read_by_a_later_run_is_a_second_event(line: str, tmp_path: Path) -> None:
    """Split between the two lines, or inside the second (held back until it is whole)."""
    for cut in (len(line) + 1, len(line) + 20):
        data = f"{line}\n{line}\n".encode()
        folder = tmp_path / str(cut)
        folder.mkdir()
        log = write_log(folder / "mail.log", data[:cut])
        store = folder / "store"
        first = ingest(store, log).splitlines()
        assert first[-1].startswith("ingested 1 file: 1 new events (1 rejected), ")
        # a cut inside the second line holds that line back, and says so
        assert first[:-1] == (
            []
            if cut == len(line) + 1
            else [f"{log}: held back 1 partial line until it is complete"]
        )
        write_log(log, data[cut:], append=True)
        assert ingest(store, log).startswith(
            "ingested 1 file: 1 new events (1 rejected), 0 malformed set aside, "
            "0 duplicates dropped"
        )
        assert sorted(stored(store)["event_id"]) == sorted(parsed_ids(str(log)))


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


# --- what a source needs across lines survives between runs -----------------------------------


def _with_repeats(data: bytes, every: int) -> tuple[bytes, list[int]]:
    """`data` with every `every`-th line written twice; the offsets between the two copies."""
    lines = data.splitlines(keepends=True)
    out = bytearray()
    between = []
    for number, line in enumerate(lines):
        out += line
        if number % every == every - 1:
            between.append(len(out))
            out += line
    return bytes(out), between


@pytest.mark.parametrize("source", ["postfix", "exim"])
def test_a_log_ingested_in_three_runs_is_stored_as_in_one(source: str, tmp_path: Path) -> None:
    """Cut at arbitrary bytes (one cut inside a line, one between two copies of a line),
    appended to between runs: every event, its sender and Message-ID included, and its id, as
    one run over the same bytes gives."""
    generated = tmp_path / "generated.log"
    generate = generate_postfix if source == "postfix" else generate_exim
    generate(generated, lines=50_000, seed=3, start=datetime(2026, 11, 27), tz="UTC")
    data, between = _with_repeats(generated.read_bytes(), every=997)
    cuts = [len(data) * 37 // 100, between[len(between) * 3 // 4]]
    assert data[cuts[0] - 1 : cuts[0]] != b"\n"  # (inside a line)
    log = tmp_path / "mail.log"
    split = tmp_path / "split"
    for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
        write_log(log, data[start:end], append=True)
        ingest(split, log)
    whole = tmp_path / "whole"
    ingest(whole, log)
    one_run = stored(whole)
    assert one_run.height > 5_000
    assert one_run["sender"].null_count() < one_run.height // 10
    assert one_run["message_id"].null_count() < one_run.height // 2
    assert one_run["event_id"].n_unique() == one_run.height
    assert_frame_equal(stored(split), one_run)


#: A message's arrival with its sender (n: its number), then its bounce, in each log.
ARRIVED = {
    # Nov 27 10:00:00 mx postfix/qmgr[9]: A0000: from=<sss...@example.org>, size=1, nrcpt=1 ...
    "postfix": "Nov 27 10:00:0{n} mx postfix/qmgr[9]: A000{n}: from=<{sender}>, size=1, "
    "nrcpt=1 (queue active)",
    # 2026-11-27 10:00:00 1tE3xY-0000Ab-Cd <= sss...@example.org H=... S=1 id=0@example.org
    "exim": "2026-11-27 10:00:0{n} 1tE3xY-000{n}Ab-Cd <= {sender} H=app.example.org "
    "[10.0.0.1] P=esmtp S=4303 id={n}@example.org",
}
BOUNCED = {
    "postfix": "Nov 27 10:01:0{n} mx postfix/smtp[5]: A000{n}: to=<r{n}@example.com>, "
    "relay=none, delay=1, delays=0/0/1/0, dsn=5.1.1, status=bounced (host mx.example.com"
    "[192.0.2.1] said: 550 5.1.1 User unknown (in reply to RCPT TO command))",
    "exim": "2026-11-27 10:01:0{n} 1tE3xY-000{n}Ab-Cd ** r{n}@example.com R=dnslookup "
    "T=remote_smtp H=mx.example.com [192.0.2.7]: SMTP error from remote mail server after "
    "RCPT TO:<r@example.com>: 550 5.1.1 no such user",
}


def messages(source: str, count: int, sender_bytes: int) -> bytes:
    """`count` messages with long senders, then a bounce of each, oldest first."""
    arrived = [
        ARRIVED[source].format(n=n, sender="s" * sender_bytes + f"{n}@example.org")
        for n in range(count)
    ]
    bounced = [BOUNCED[source].format(n=n) for n in range(count)]
    return "".join(line + "\n" for line in [*arrived, *bounced]).encode()


MODULES = {"postfix": postfix_module, "exim": exim_module}


@pytest.mark.parametrize("source", ["postfix", "exim"])
def test_the_state_kept_with_the_store_is_bounded_in_bytes(
    source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three messages with 1 KB senders where two fit: read in one run, their bounces in the
    next; the oldest's bounce has no sender. (Within a run, tests/sources test the bound.)"""
    monkeypatch.setattr(MODULES[source], "MAX_STATE_BYTES", 2500)
    data = messages(source, 3, 1000)
    bounces = data.index(b" 10:01:00 ")
    bounces = data.rindex(b"\n", 0, bounces) + 1
    log = write_log(tmp_path / "mail.log", data[:bounces])
    store = tmp_path / "store"
    ingest(store, log)
    (state_file,) = (store / "state").iterdir()
    assert pl.read_parquet(state_file).height == 2
    write_log(log, data[bounces:], append=True)
    ingest(store, log)
    senders = scan_events(store).collect().sort("recipient")["sender"]
    assert senders.is_not_null().to_list() == [False, True, True]
    # Without the bound, all three are known.
    monkeypatch.undo()
    again = tmp_path / "again"
    ingest(again, write_log(tmp_path / "again.log", data[:bounces]))
    ingest(again, write_log(tmp_path / "again.log", data[bounces:], append=True))
    assert scan_events(again).collect()["sender"].null_count() == 0


# --- the state files ------------------------------------------------------------------------


def test_each_run_leaves_one_state_file_per_source(tmp_path: Path) -> None:
    """The catalogue names the state of the last run; files of older or killed runs go."""
    store = tmp_path / "store"
    log = write_log(tmp_path / "mail.log", messages("postfix", 3, 10)[:200])
    ingest(store, log)
    orphan = store / "state" / "postfix-20261128T000000Z-0badf00d.parquet"
    orphan.write_bytes(b"left by a killed run")
    write_log(log, messages("postfix", 3, 10)[200:], append=True)
    ingest(store, log)
    (state_file,) = (store / "state").iterdir()
    catalogue = json.loads((store / "catalogue.json").read_text())
    assert catalogue["state"] == {"postfix": state_file.name}
    assert scan_events(store).collect()["sender"].null_count() == 0


def test_an_unreadable_state_file_is_one_line_and_can_be_removed(tmp_path: Path) -> None:
    store = tmp_path / "store"
    data = messages("postfix", 1, 10)
    log = write_log(tmp_path / "mail.log", data[: data.index(b"\n") + 1])
    ingest(store, log)
    (state_file,) = (store / "state").iterdir()
    state_file.write_bytes(b"garbage")
    write_log(log, data[data.index(b"\n") + 1 :], append=True)
    result = invoke("ingest", "--store", str(store), "--tz", "UTC", str(log))
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {state_file}: unreadable state (parquet: File out of specification: A "
        "Parquet file must contain a header and footer with at least 12 bytes); remove it "
        "to go on without it\n"
    )
    state_file.unlink()
    assert ingest(store, log).startswith("ingested 1 file: 1 new events (1 bounced), ")
    assert scan_events(store).collect()["sender"].to_list() == [None]  # nothing was carried
