"""Whole records, bounded memory (issue 12): what the reading layer promises, through the CLI.

- A complete input (stdin, a pipe, a compressed file, a file not written for a while, a JSON
  document that ends) is read to its end, its last line included even without a newline; only
  a plain file that may still be written holds back a final partial line, and says so.
- A line longer than `reading.MAX_LINE_BYTES` is set aside as malformed with its origin and
  its first bytes, and reading goes on with the next line; a decompression bomb streams through.
- A named pipe or `<(command)` is read as a stream, never seeked.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
import zstandard
from typer.testing import CliRunner, Result

from _samples import BOUNCED, EXIM_BOUNCED
from bounce_analyzer.cli import app
from bounce_analyzer.reading import LONG_LINE_HEAD, MAX_LINE_BYTES, Batch
from bounce_analyzer.sources._json import DocumentFramer
from bounce_analyzer.sources.sendgrid import SendGrid
from bounce_analyzer.store import scan_events, scan_quarantine
from sources._helpers import consecutive_batches

runner = CliRunner()

#: An old modification time (the year of "Nov 27" is 2026): the file is not being written.
MTIME = datetime(2026, 11, 28, 12, 0, tzinfo=UTC).timestamp()


def invoke(*args: str, stdin: bytes | None = None) -> Result:
    result = runner.invoke(app, list(args), input=stdin)
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def sendgrid_events(count: int) -> list[dict[str, object]]:
    return [
        {
            "email": f"user{n}@example.com",
            "event": "bounce",
            "timestamp": 1795000000 + n,
            "sg_event_id": f"sg-event-{n}",
            "reason": "550 5.1.1 The email account that you tried to reach does not exist",
            "status": "5.1.1",
        }
        for n in range(count)
    ]


def mailgun_page(count: int) -> dict[str, object]:
    return {
        "items": [
            {
                "event": "failed",
                "id": f"mg-event-{n}",
                "timestamp": 1795000000.25 + n,
                "severity": "permanent",
                "reason": "bounce",
                "recipient": f"user{n}@example.org",
                "delivery-status": {"code": 550, "message": "5.1.1 No such user here"},
            }
            for n in range(count)
        ],
        "paging": {"next": "https://api.example.net/v3/example.org/events/next"},
    }


def stored(store: Path) -> int:
    return scan_events(store).select("event_id").collect().height


# --- 1. a complete input is read to its end ------------------------------------------------


def test_a_pretty_sendgrid_array_without_final_newline_is_stored_whole(tmp_path: Path) -> None:
    # json.dump(..., indent=2) ends with "]" and no newline; the file was just written.
    events = tmp_path / "sendgrid.json"
    events.write_text(json.dumps(sendgrid_events(233), indent=2))
    store = tmp_path / "store"
    result = invoke("ingest", "--store", str(store), str(events))
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        "ingested 1 file: 233 new events (233 bounced), 0 malformed set aside, "
        "0 duplicates dropped\n"
    )
    assert stored(store) == 233
    again = invoke("ingest", "--store", str(store), str(events))
    assert again.stderr == (
        "ingested 1 file: 0 new events, 0 malformed set aside, 0 duplicates dropped\n"
    )
    assert stored(store) == 233


def test_a_mailgun_events_page_without_final_newline_is_stored_whole(tmp_path: Path) -> None:
    # `curl -o page.json https://api.mailgun.net/v3/<domain>/events`: one line, no newline.
    page = tmp_path / "page.json"
    page.write_text(json.dumps(mailgun_page(5)))
    store = tmp_path / "store"
    result = invoke("ingest", "--store", str(store), str(page))
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        "ingested 1 file: 5 new events (5 bounced), 0 malformed set aside, 0 duplicates dropped\n"
    )
    assert scan_quarantine(store).collect().height == 0
    again = invoke("ingest", "--store", str(store), str(page))
    assert again.stderr.startswith("ingested 1 file: 0 new events, 0 malformed set aside")
    assert stored(store) == 5


def test_one_postfix_line_without_newline_on_stdin_is_stored(tmp_path: Path) -> None:
    # printf '<one Postfix bounce line>' | bounce-analyzer ingest -
    store = tmp_path / "store"
    result = invoke("ingest", "--store", str(store), "--tz", "UTC", "-", stdin=BOUNCED.encode())
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        "ingested 1 file: 1 new events (1 bounced), 0 malformed set aside, 0 duplicates dropped\n"
    )
    assert stored(store) == 1


def test_a_live_log_holds_back_its_partial_line_and_says_so(tmp_path: Path) -> None:
    # A plain log written a moment ago may still be written: its last line without newline
    # waits for the next run, and the run says so. Once the file is quiet it is read.
    second = BOUNCED.replace("a@example.com", "b@example.com")
    log = tmp_path / "mail.log"
    log.write_text(f"{BOUNCED}\n{second}")
    store = tmp_path / "store"
    result = invoke("ingest", "--store", str(store), "--tz", "UTC", str(log))
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        f"{log}: held back 1 partial line until it is complete\n"
        "ingested 1 file: 1 new events (1 bounced), 0 malformed set aside, 0 duplicates dropped\n"
    )
    os.utime(log, (MTIME, MTIME))  # no longer written
    result = invoke("ingest", "--store", str(store), "--tz", "UTC", str(log))
    assert result.stderr == (
        "ingested 1 file: 1 new events (1 bounced), 0 malformed set aside, 0 duplicates dropped\n"
    )
    again = invoke("ingest", "--store", str(store), "--tz", "UTC", str(log))
    assert again.stderr.startswith("ingested 1 file: 0 new events")
    assert stored(store) == 2


def test_a_cut_ndjson_line_of_a_live_file_waits_for_its_end(tmp_path: Path) -> None:
    # A webhook receiver appending NDJSON, caught mid-record: the cut record is not read
    # (nor set aside as invalid JSON); completed, it is read by the next run.
    whole, cut = (json.dumps(event) for event in sendgrid_events(2))
    events = tmp_path / "events.ndjson"
    events.write_text(f"{whole}\n{cut[:40]}")
    store = tmp_path / "store"
    result = invoke("ingest", "--store", str(store), str(events))
    assert result.stderr.splitlines() == [
        f"{events}: held back 1 partial line until it is complete",
        "ingested 1 file: 1 new events (1 bounced), 0 malformed set aside, 0 duplicates dropped",
    ]
    events.write_text(f"{whole}\n{cut}\n")
    result = invoke("ingest", "--store", str(store), str(events))
    assert result.stderr == (
        "ingested 1 file: 1 new events (1 bounced), 0 malformed set aside, 0 duplicates dropped\n"
    )
    assert scan_quarantine(store).collect().height == 0


# --- 3. long lines are set aside, memory stays bounded --------------------------------------

#: Per source: a line it reads as one event, and how a file of such lines starts.
GOOD_LINES = {
    "postfix": BOUNCED,
    "exim": EXIM_BOUNCED,
    "sendgrid": json.dumps(sendgrid_events(1)[0]),
    "mailgun": json.dumps(mailgun_page(1)["items"][0]),  # type: ignore[index]
}


@pytest.mark.parametrize("source", list(GOOD_LINES))
def test_a_line_longer_than_the_limit_is_set_aside_and_reading_goes_on(
    source: str, tmp_path: Path
) -> None:
    good = GOOD_LINES[source]
    long = good[:60] + "x" * (MAX_LINE_BYTES + 100)
    log = tmp_path / "input.log"
    log.write_text(f"{good}\n{long}\n{good.replace('user0', 'user1').replace('a@', 'b@')}\n")
    os.utime(log, (MTIME, MTIME))
    aside = tmp_path / "malformed.jsonl"
    result = invoke("parse", "--source", source, "--tz", "UTC", "--malformed", str(aside), str(log))
    assert result.exit_code == 0, result.output
    assert result.stderr == f"{log}: {source}, 3 read, 2 events, 0 skipped, 1 malformed\n"
    assert [json.loads(line)["origin"] for line in result.stdout.splitlines()] == [
        f"{log}:1",
        f"{log}:3",
    ]
    (row,) = [json.loads(line) for line in aside.read_text().splitlines()]
    assert row == {
        "origin": f"{log}:2",
        "reason": f"line too long ({len(long):,} bytes; the limit is {MAX_LINE_BYTES:,})",
        "raw": long[:LONG_LINE_HEAD],
    }


def test_a_long_last_line_without_newline_is_set_aside(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_bytes(f"{BOUNCED}\n".encode() + b"y" * (3 * MAX_LINE_BYTES))
    os.utime(log, (MTIME, MTIME))
    store = tmp_path / "store"
    result = invoke("ingest", "--store", str(store), "--tz", "UTC", str(log))
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        "ingested 1 file: 1 new events (1 bounced), 1 malformed set aside, 0 duplicates dropped\n"
    )
    (row,) = scan_quarantine(store).collect().select("origin", "reason").rows()
    reason = f"line too long ({3 * MAX_LINE_BYTES:,} bytes; the limit is 1,048,576)"
    assert row == (f"{log}:2", reason)
    again = invoke("ingest", "--store", str(store), "--tz", "UTC", str(log))
    assert again.stderr.startswith("ingested 1 file: 0 new events, 0 malformed set aside")


def test_strict_stops_at_a_long_line(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_bytes(b"z" * (MAX_LINE_BYTES + 1) + f"\n{BOUNCED}\n".encode())
    os.utime(log, (MTIME, MTIME))
    result = invoke("parse", "--source", "postfix", "--strict", str(log))
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {log}:1: line too long ({MAX_LINE_BYTES + 1:,} bytes; the limit is 1,048,576)\n"
    )


def test_a_zstd_bomb_of_nuls_streams_through(tmp_path: Path) -> None:
    # 256 MB of NUL bytes in a few KB of zstd, then a real line: the NUL run is one line far
    # over the limit, set aside; the line after it is read.
    compressor = zstandard.ZstdCompressor(level=19)
    with compressor.stream_writer(open(tmp_path / "mail.log.zst", "wb")) as out:  # noqa: SIM115
        block = b"\x00" * (1 << 24)
        for _ in range(16):
            out.write(block)
        out.write(f"\n{BOUNCED}\n".encode())
    bomb = tmp_path / "mail.log.zst"
    assert bomb.stat().st_size < 100_000
    os.utime(bomb, (MTIME, MTIME))
    result = invoke("parse", "--source", "postfix", "--tz", "UTC", str(bomb))
    assert result.exit_code == 0, result.output
    assert result.stderr == f"{bomb}: postfix, 2 read, 1 events, 0 skipped, 1 malformed\n"


# --- 4. named pipes and process substitution are streams ------------------------------------


def run_cli(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "BA": f"{sys.executable} -m bounce_analyzer"},
    )


def test_process_substitution_is_read_as_a_stream(tmp_path: Path) -> None:
    (tmp_path / "mail.log").write_text(f"{BOUNCED}\n")
    done = run_cli("$BA parse --tz UTC <(cat mail.log)", tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.endswith(": postfix, 1 read, 1 events, 0 skipped, 0 malformed\n")
    assert done.stderr.startswith("/dev/fd/")
    assert json.loads(done.stdout)["recipient"] == "a@example.com"


def test_a_named_pipe_is_read_as_a_stream(tmp_path: Path) -> None:
    fifo = tmp_path / "events.pipe"
    os.mkfifo(fifo)
    body = json.dumps(sendgrid_events(3), indent=2).encode()

    def write() -> None:
        with open(fifo, "wb") as pipe:
            pipe.write(body)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        result = invoke("parse", str(fifo))
    finally:
        writer.join(timeout=60)
    assert result.exit_code == 0, result.output
    assert result.stderr == f"{fifo}: sendgrid, 3 read, 3 events, 0 skipped, 0 malformed\n"
    assert len(result.stdout.splitlines()) == 3


# --- 2. a JSON array of any size is read element by element ---------------------------------


def pretty_array(events: list[dict[str, object]]) -> str:
    """A pretty-printed array (indent 2), as `json.dump(events, indent=2)` writes it."""
    return json.dumps(events, indent=2)


def test_a_pretty_array_larger_than_a_batch_is_read_element_by_element(tmp_path: Path) -> None:
    # About 24 MB: more than a batch (16 MiB), a document bound (16 MiB) and many lines' worth.
    # Every event is read, each with its position in the array; nothing is set aside.
    count = 60_000
    events = sendgrid_events(count)
    for event in events:
        event["category"] = ["newsletter", "x" * 200]
    array = tmp_path / "sendgrid.json"
    array.write_text(pretty_array(events))
    os.utime(array, (MTIME, MTIME))
    assert array.stat().st_size > 20 * 2**20
    aside = tmp_path / "malformed.jsonl"
    out = tmp_path / "events.parquet"
    result = invoke("parse", "--malformed", str(aside), "-o", str(out), str(array))
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        f"{array}: sendgrid, {count:,} read, {count:,} events, 0 skipped, 0 malformed\n"
    )
    assert aside.read_text() == ""
    origins = pl.read_parquet(out, columns=["origin"])["origin"].to_list()
    assert origins == [f"{array}:1#{n}" for n in range(count)]


def split_batches(data: bytes, size: int) -> list[Batch]:
    """`data` as batches of whole lines of about `size` bytes (a longer line makes its own)."""
    chunks, start = [], 0
    while start < len(data):
        end = data.find(b"\n", start + size - 1)
        end = len(data) if end < 0 else end + 1
        chunks.append(data[start:end])
        start = end
    return consecutive_batches(*chunks, path="events.json")


def test_an_array_streamed_in_pieces_reads_as_one_document() -> None:
    # Pieces passed on at any size give the events, origins and malformed records of the
    # array read whole: bad elements keep their positions, and documents after it follow.
    events: list[object] = list(sendgrid_events(60))
    events[10] = "not an event"
    events[50] = {"event": "bounce", "email": ["a list"]}
    data = (pretty_array(events) + "\n" + json.dumps(sendgrid_events(3)) + "\n").encode()

    def read(flush_bytes: int, batch_bytes: int) -> tuple[object, ...]:
        source = SendGrid(framer=DocumentFramer(flush_bytes=flush_bytes))
        outputs = list(source.parse(split_batches(data, batch_bytes)))
        found = pl.concat([out.events.select("origin", "event_id") for out in outputs])
        aside = pl.concat([out.malformed for out in outputs])
        return sum(out.read for out in outputs), found.to_dicts(), aside.sort("origin").to_dicts()

    whole = read(1 << 30, len(data) + 1)
    assert whole[0] == 63 and len(whole[2]) == 2  # type: ignore[arg-type]
    for flush_bytes, batch_bytes in [(1, 300), (100, 700), (2000, 3000), (8000, 5000)]:
        assert read(flush_bytes, batch_bytes) == whole


def test_an_event_longer_than_the_limit_is_set_aside(tmp_path: Path) -> None:
    # Two fields of 700 KB on lines of their own: no line is too long, the event is.
    events = sendgrid_events(3)
    events[1]["reason"] = "550 " + "r" * 700_000
    events[1]["response"] = "550 " + "s" * 700_000
    array = tmp_path / "sendgrid.json"
    array.write_text(pretty_array(events))
    os.utime(array, (MTIME, MTIME))
    aside = tmp_path / "malformed.jsonl"
    result = invoke("parse", "--malformed", str(aside), str(array))
    assert result.exit_code == 0, result.output
    assert result.stderr == f"{array}: sendgrid, 3 read, 2 events, 0 skipped, 1 malformed\n"
    (row,) = [json.loads(line) for line in aside.read_text().splitlines()]
    assert row["origin"] == f"{array}:1#1"
    assert re.fullmatch(r"record too long \(\d+ bytes; the limit is 1,048,576\)", row["reason"])
    assert len(row["raw"]) == 4096
