"""An input is never resumed at another input's offset (issue 16), through the CLI.

The catalogue knows an input by its first 4096 decompressed bytes, and remembers the bytes
before the point where it was left (its tail). Two inputs that share their first bytes but
differ later (saved webhook payloads, logs with a long identical preamble, a log truncated in
place and written again, `copytruncate`) are two inputs: the second is read from its start,
and what the first already stored is dropped as duplicates. A log that grew, and its rotated
copies, compressed or not, are still resumed where they were left.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from _cli import invoke
from bounce_analyzer.generate import generate_postfix
from bounce_analyzer.reading import (
    START,
    TAIL_BYTES,
    InputFile,
    Resume,
    TruncatedInputError,
    read_batches,
)
from bounce_analyzer.store import PREFIX_BYTES, scan_events

#: These tests look into the version-1 folder layout (catalogue.json, state/, tmp/, flock):
#: the stores they make are of that layout (tests/test_store_delta.py tests the Delta store).
pytestmark = pytest.mark.usefixtures("folder_layout")


ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
#: The modification time of every file written here (the year of "Nov 27" is 2026; files
#: modified long ago are complete: their last line is never held back).
MTIME = datetime(2026, 11, 28, 12, 0, tzinfo=UTC).timestamp()

#: `ingested 1 file: 12 new events (...), 0 malformed set aside, 3 duplicates dropped`
INGESTED = re.compile(r"ingested \d+ files?: ([\d,]+) new events.*, ([\d,]+) duplicates dropped")


def write(path: Path, data: bytes, *, compress: bool = False) -> Path:
    path.write_bytes(gzip.compress(data, mtime=0) if compress else data)
    os.utime(path, (MTIME, MTIME))
    return path


def ingest(store: Path, path: Path | str, *, stdin: bytes | None = None) -> tuple[int, int]:
    """Ingest one input: (new events, duplicates dropped), as the summary line says them."""
    result = invoke("ingest", "--store", str(store), "--tz", "UTC", str(path), stdin=stdin)
    assert result.exit_code == 0, result.output
    match = INGESTED.search(result.output)
    assert match is not None, result.output
    return int(match[1].replace(",", "")), int(match[2].replace(",", ""))


def parsed_ids(data: bytes, tmp_path: Path) -> set[str]:
    """The event ids of `data` read by itself (as `parse` gives them)."""
    path = write(tmp_path / "parsed.input", data)
    result = invoke("parse", "--tz", "UTC", "--format", "jsonl", str(path))
    assert result.exit_code == 0, result.output
    return {json.loads(line)["event_id"] for line in result.stdout.splitlines()}


def stored_ids(store: Path) -> list[str]:
    return scan_events(store).collect()["event_id"].to_list()


def lines_of(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


def shared_start(lines: list[bytes]) -> int:
    """How many of `lines` make just more than the catalogue's prefix."""
    size = 0
    for number, line in enumerate(lines, 1):
        size += len(line)
        if size > PREFIX_BYTES:
            return number
    raise AssertionError("too few lines")


@pytest.fixture(scope="module")
def payloads() -> list[bytes]:
    """Real SendGrid events, one JSON object a line, as a saved webhook payload holds them."""
    return lines_of((ROOT / "sample_logs" / "sendgrid" / "events.ndjson").read_bytes())


@pytest.fixture(scope="module")
def postfix(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[bytes], list[bytes]]:
    """Two generated Postfix logs of a day (other seeds: other messages), as lines."""
    folder = tmp_path_factory.mktemp("generated")
    logs = []
    for seed in (1, 2):
        path = folder / f"mail-{seed}.log"
        generate_postfix(path, lines=3_000, seed=seed, start=datetime(2026, 11, 27), tz="UTC")
        logs.append(lines_of(path.read_bytes()))
    return logs[0], logs[1]


# --- inputs that share their first 4096 bytes ---------------------------------------------------


@pytest.mark.parametrize("how", ["file", "gzip", "stdin"])
def test_two_payloads_with_the_same_start_are_both_read_whole(
    payloads: list[bytes], tmp_path: Path, how: str
) -> None:
    same = shared_start(payloads)
    first = b"".join(payloads[: same + 60])
    second = b"".join(payloads[:same] + payloads[same + 200 : same + 230])  # shorter
    assert first[:PREFIX_BYTES] == second[:PREFIX_BYTES] and len(second) < len(first)
    first_ids, second_ids = parsed_ids(first, tmp_path), parsed_ids(second, tmp_path)
    assert len(second_ids - first_ids) >= 10

    store = tmp_path / "store"
    assert ingest(store, write(tmp_path / "batch-1.json", first)) == (len(first_ids), 0)
    if how == "stdin":
        new, duplicates = ingest(store, "-", stdin=second)
    else:
        new, duplicates = ingest(store, write(tmp_path / "b.json", second, compress=how == "gzip"))
    # Read from its start: its new events stored, what the first had dropped as duplicates.
    assert (new, duplicates) == (len(second_ids - first_ids), len(second_ids & first_ids))
    assert sorted(stored_ids(store)) == sorted(first_ids | second_ids)
    catalogue = json.loads((store / "catalogue.json").read_text())
    assert catalogue["version"] == 2
    assert len({entry["prefix_hash"] for entry in catalogue["inputs"]}) == 1
    assert sorted(entry["offset"] for entry in catalogue["inputs"]) == [len(second), len(first)]

    # Each is known again: the first grown is resumed where it was left, not at the second's
    # offset nor from its start.
    grown = first + b"".join(payloads[same + 300 : same + 320])
    new, duplicates = ingest(store, write(tmp_path / "batch-1.json", grown))
    assert (new, duplicates) == (len(parsed_ids(grown, tmp_path) - first_ids), 0)
    assert ingest(store, write(tmp_path / "c.json", second)) == (0, 0)


@pytest.mark.parametrize("how", ["gzip", "stdin"])
def test_a_stream_resumes_at_an_earlier_place_when_a_later_one_is_another_input(
    postfix: tuple[list[bytes], list[bytes]], tmp_path: Path, how: str
) -> None:
    """A compressed file or a stream is checked as it is decompressed: past the place of
    another input with its prefix, which it does not hold, it goes back to the place it holds
    (a compressed file is read again; a stream's bytes since that place were kept). The
    places lie in different pieces of the decompressed stream (64 KiB and more)."""
    old, new_lines = postfix
    same = shared_start(old)
    first = b"".join(old[:200])
    other = b"".join(old[:same] + new_lines[:1_000])
    grown = b"".join(old[:2_500])
    assert len(first) < 65536 < len(other) < len(grown)
    store = tmp_path / "store"
    ingest(store, write(tmp_path / "first.log", first))
    ingest(store, write(tmp_path / "other.log", other))
    expected = len(parsed_ids(grown, tmp_path) - parsed_ids(first, tmp_path))
    if how == "stdin":
        new, duplicates = ingest(store, "-", stdin=grown)
    else:
        new, duplicates = ingest(store, write(tmp_path / "first.log.1.gz", grown, compress=True))
    assert (new, duplicates) == (expected, 0)
    ids = stored_ids(store)
    assert len(ids) == len(set(ids))


# --- one log's life: grown, rotated, truncated in place -----------------------------------------


def test_a_grown_log_is_resumed_and_its_rotated_copies_add_nothing(
    postfix: tuple[list[bytes], list[bytes]], tmp_path: Path
) -> None:
    lines, _ = postfix
    whole = b"".join(lines)
    start = b"".join(lines[:2_000])
    store = tmp_path / "store"
    log = write(tmp_path / "mail.log", start)
    first, _ = ingest(store, log)
    # Grown: only the new lines are read (re-reading the start would drop duplicates).
    new, duplicates = ingest(store, write(log, whole))
    assert duplicates == 0
    assert first + new == len(parsed_ids(whole, tmp_path))
    # Rotated: renamed and compressed, or piped in; nothing new, nothing read again.
    rotated = write(tmp_path / "mail.log.1.gz", whole, compress=True)
    log.unlink()
    assert ingest(store, rotated) == (0, 0)
    assert ingest(store, "-", stdin=whole) == (0, 0)
    assert sorted(stored_ids(store)) == sorted(parsed_ids(whole, tmp_path))


@pytest.mark.parametrize("regrown", ["shorter", "longer"])
def test_a_log_truncated_in_place_and_rewritten_is_read_from_its_start(
    postfix: tuple[list[bytes], list[bytes]], tmp_path: Path, regrown: str
) -> None:
    """`copytruncate`: mail.log copied to mail.log.1, then truncated, and written again with
    the same first lines (a long identical preamble) and new ones, shorter than where the
    last run left it or longer: every new event stored, none twice."""
    old, new_lines = postfix
    same = shared_start(old)
    before = b"".join(old[:1_500])
    store = tmp_path / "store"
    log = write(tmp_path / "mail.log", before)
    ingest(store, log)
    count = 300 if regrown == "shorter" else 2_000
    after = b"".join(old[:same] + new_lines[:count])
    assert (len(after) < len(before)) == (regrown == "shorter")
    assert after[:PREFIX_BYTES] == before[:PREFIX_BYTES]
    shutil.copy(log, tmp_path / "mail.log.1")
    write(log, after)

    before_ids, after_ids = parsed_ids(before, tmp_path), parsed_ids(after, tmp_path)
    assert len(after_ids - before_ids) > 20
    new, duplicates = ingest(store, log)
    assert (new, duplicates) == (len(after_ids - before_ids), len(after_ids & before_ids))
    # The copy is the old log: known, nothing to add.
    assert ingest(store, tmp_path / "mail.log.1") == (0, 0)
    # Written to again: resumed where this run left it.
    again = after + b"".join(new_lines[count : count + 200])
    new, duplicates = ingest(store, write(log, again))
    assert duplicates == 0
    assert new == len(parsed_ids(again, tmp_path) - after_ids - before_ids)
    ids = stored_ids(store)
    assert len(ids) == len(set(ids))
    assert set(ids) == before_ids | parsed_ids(again, tmp_path)


# --- a catalogue of version 1 -------------------------------------------------------------------


def test_a_catalogue_of_version_1_still_resumes_and_is_then_written_whole(tmp_path: Path) -> None:
    """Its entries have no tail: trusted by their prefix, as version 1 did; the entry of an
    input read again is written with its tail, the others are kept as they were."""
    store = Path(shutil.copytree(DATA / "store_v1", tmp_path / "store"))
    old = json.loads((store / "catalogue.json").read_text())
    assert old["version"] == 1 and all("tail_len" not in entry for entry in old["inputs"])
    data = (DATA / "direction" / "postfix-debian.log").read_bytes()
    log = write(tmp_path / "postfix-debian.log", data)
    assert ingest(store, log) == (0, 0)  # resumed at its end: nothing read

    catalogue = json.loads((store / "catalogue.json").read_text())
    assert catalogue["version"] == 2
    entries = {entry["path"].rsplit("/", 1)[-1]: entry for entry in catalogue["inputs"]}
    assert entries.keys() == {"postfix-debian.log", "exim-debian.log"}
    assert entries["postfix-debian.log"]["offset"] == len(data)
    assert entries["postfix-debian.log"]["tail_len"] == 4096
    assert "tail_len" not in entries["exim-debian.log"]

    # Grown by three deliveries of the next day: only the new lines are read.
    deliveries = [line for line in lines_of(data) if b" status=" in line][:3]
    grown = data + b"".join(deliveries).replace(b"Nov 28 ", b"Nov 29 ")
    new, duplicates = ingest(store, write(log, grown))
    assert duplicates == 0
    assert new == len(parsed_ids(grown, tmp_path) - parsed_ids(data, tmp_path)) == 3


# --- where reading resumes (reading.read_batches) -----------------------------------------------


def place(data: bytes, offset: int, *, tail: bool = True) -> Resume:
    """The place `offset` bytes into `data` (a line end), as a catalogue entry gives it."""
    before = data[max(0, offset - TAIL_BYTES) : offset]
    if not tail:
        return Resume(offset, data[:offset].count(b"\n"))
    return Resume(
        offset,
        data[:offset].count(b"\n"),
        len(before),
        hashlib.sha256(before).hexdigest(),
    )


def line_end(data: bytes, near: int) -> int:
    return data.index(b"\n", near) + 1


#: Read `data` (a plain file, gzip-compressed, or on stdin: `how`) resuming at one of
#: `places`: where it started, the bytes before, what was read, the first batch's first line.
Reader = Callable[[bytes, list[Resume], str], tuple[Resume, bytes, bytes, int]]


@pytest.fixture
def read_from(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Reader:
    def read(data: bytes, places: list[Resume], how: str) -> tuple[Resume, bytes, bytes, int]:
        if how == "stdin":
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
            source = InputFile(path="-")
        else:
            source = InputFile(path=str(write(tmp_path / "input", data, compress=how == "gzip")))
        started: list[tuple[Resume, bytes]] = []
        batches = list(
            read_batches(
                source,
                batch_bytes=50_000,
                resume=places,
                resumed=lambda start, before: started.append((start, before)),
            )
        )
        [(start, before)] = started
        assert all(batch.offset == start.offset + len(b"".join(b.data for b in batches[:n]))
                   for n, batch in enumerate(batches))  # fmt: skip
        return start, before, b"".join(batch.data for batch in batches), batches[0].first_line

    return read


HOW = pytest.mark.parametrize("how", ["plain", "gzip", "stdin"])


@pytest.fixture
def texts(postfix: tuple[list[bytes], list[bytes]]) -> tuple[bytes, bytes]:
    """The two generated logs whole."""
    return b"".join(postfix[0]), b"".join(postfix[1])


@HOW
def test_the_furthest_place_the_input_holds_is_taken(
    texts: tuple[bytes, bytes], read_from: Reader, how: str
) -> None:
    data, other = texts
    other = data[: line_end(data, 10_000)] + other  # (its start is the data's)
    near, far = line_end(data, 100_000), line_end(data, 300_000)
    places = [place(other, line_end(other, 400_000)), place(data, far), place(data, near)]
    start, before, read, first_line = read_from(data, places, how)
    assert (start, before, read) == (places[1], data[far - TAIL_BYTES : far], data[far:])
    assert first_line == data[:far].count(b"\n") + 1
    # Beyond its end, or not what it held there: from the start.
    places = [place(data + b"more\n", len(data) + 5), places[0]]
    assert read_from(data, places, how)[:3] == (START, b"", data)


@HOW
def test_a_place_of_an_old_catalogue_is_trusted_if_the_input_reaches_it(
    texts: tuple[bytes, bytes], read_from: Reader, how: str
) -> None:
    data, other = texts
    offset = line_end(other, 200_000)  # (another input: no tail to tell)
    start, _, read, _ = read_from(data, [place(other, offset, tail=False)], how)
    assert (start.offset, read) == (offset, data[offset:])
    beyond = place(data, len(data), tail=False)
    short = data[: line_end(data, 10_000)]
    assert read_from(short, [beyond], how)[:3] == (START, b"", short)


@pytest.mark.parametrize("how", ["gzip", "stdin"])
def test_a_compressed_input_damaged_before_the_place_is_read_up_to_the_damage(
    postfix: tuple[list[bytes], list[bytes]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    """A cut copy of another input with the same start: its lines before the damage are
    read (not passed over as if they were the other's), then the damage is reported."""
    lines, _ = postfix
    data = b"".join(lines)
    packed = gzip.compress(data, mtime=0)
    cut = packed[: len(packed) // 2]
    other = data[:200_000] + b"another input from here\n" + data[200_000:]
    far = place(other, line_end(other, 400_000))
    if how == "stdin":
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(cut)))
        source = InputFile(path="-")
    else:
        path = tmp_path / "mail.log.1.gz"
        path.write_bytes(cut)
        source = InputFile(path=str(path))
    batches = []
    with pytest.raises(TruncatedInputError, match="ends early"):
        for batch in read_batches(source, batch_bytes=50_000, resume=[far]):
            batches.append(batch)
    read = b"".join(batch.data for batch in batches)
    assert batches[0].offset == 0 and 100_000 < len(read) < 400_000
    assert data.startswith(read)


def test_an_entry_with_half_a_tail_is_damage(tmp_path: Path) -> None:
    store = Path(shutil.copytree(DATA / "store_v1", tmp_path / "store"))
    catalogue = json.loads((store / "catalogue.json").read_text())
    catalogue["inputs"][1]["tail_len"] = 4096  # (and no tail_hash)
    (store / "catalogue.json").write_text(json.dumps(catalogue))
    log = write(tmp_path / "mail.log", (DATA / "direction" / "postfix-debian.log").read_bytes())
    result = invoke("ingest", "--store", str(store), "--tz", "UTC", str(log))
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {store}/catalogue.json is damaged (input 2: tail_hash is not text); "
        "remove it to re-read\n"
    )
