"""A plain file is read batch by batch straight into each batch's bytes (`reading._cut_file`,
issue 18's cheap saving): the batches are those the chunked reader (`_cut`, which streams and
compressed inputs still take) makes of the same bytes, long lines and resume points included.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bounce_analyzer import reading
from bounce_analyzer.generate import generate_postfix
from bounce_analyzer.reading import LONG_LINE_HEAD, Batch, InputFile, Resume, read_batches


def _key(batch: Batch) -> tuple[Any, ...]:
    longs = [(long.line, long.offset, long.length, long.ended) for long in batch.long_lines]
    return (batch.data, batch.first_line, batch.offset, batch.final, batch.line_ends(), longs)


def _both(path: Path, **options: Any) -> tuple[list[Batch], list[Batch]]:
    """The batches of `path` read as a plain file, and read as a stream (chunked)."""
    direct = list(read_batches(InputFile(str(path)), **options))
    chunked = list(read_batches(InputFile(str(path), stream=True), **options))
    return direct, chunked


def _log(lines: int) -> bytes:
    out = io.BytesIO()
    generate_postfix(out, lines=lines, seed=18, start=datetime(2026, 11, 27, tzinfo=UTC))
    return out.getvalue()


def _assert_same(direct: list[Batch], chunked: list[Batch], max_line: int) -> None:
    assert [_key(b) for b in direct] == [_key(b) for b in chunked]
    heads = [(d.head, c.head) for a, b in zip(direct, chunked, strict=True)
             for d, c in zip(a.long_lines, b.long_lines, strict=True)]  # fmt: skip
    for mine, theirs in heads:
        # The first bytes of the line, up to LONG_LINE_HEAD (the chunked reader keeps fewer
        # when the limit is under LONG_LINE_HEAD: what it had seen when it gave up).
        assert mine.startswith(theirs) and b"\n" not in mine
        if max_line >= LONG_LINE_HEAD:
            assert mine == theirs


@pytest.mark.parametrize("batch_bytes", [1, 100, 4096, 65_537, 1 << 24])
def test_a_generated_log_gives_the_chunked_readers_batches(
    tmp_path: Path, batch_bytes: int
) -> None:
    path = tmp_path / "mail.log"
    path.write_bytes(_log(800))
    direct, chunked = _both(path, batch_bytes=batch_bytes)
    _assert_same(direct, chunked, reading.MAX_LINE_BYTES)
    assert b"".join(b.data for b in direct) == path.read_bytes()
    assert direct[-1].raw_end == path.stat().st_size
    assert all(b.raw_end == b.offset + len(b.data) for b in direct)


def test_random_lines_long_ones_and_odd_ends_give_the_same_batches(tmp_path: Path) -> None:
    rng = random.Random(18)
    lines = _log(200).splitlines()
    for number in range(250):
        chosen = []
        for _ in range(rng.randint(0, 30)):
            if rng.random() < 0.7:
                chosen.append(rng.choice(lines))
            else:  # runs of NULs, CRs and spaces, some longer than the limit
                length = rng.choice([0, 1, 99, 100, 101, 199, 200, 201, rng.randint(0, 5000)])
                chosen.append(bytes(rng.choice(b"ab \r\x00") for _ in range(length)))
        data = b"\n".join(chosen) + (b"\n" if rng.random() < 0.5 else b"")
        path = tmp_path / f"{number}.log"
        path.write_bytes(data)
        batch_bytes = rng.choice([1, 7, 64, 100, 150, 1000, 1 << 20])
        max_line = rng.choice([50, 100, 200, 300, 5000, 1 << 20])
        direct, chunked = _both(path, batch_bytes=batch_bytes, max_line=max_line)
        _assert_same(direct, chunked, max_line)


def test_a_long_line_is_passed_over_without_being_held(tmp_path: Path) -> None:
    line = b"Nov 27 10:00:01 mx1 postfix/smtp[1]: A: to=<a@example.com>, status=sent\n"
    path = tmp_path / "long.log"
    path.write_bytes(line + b"x" * (3 * reading.MAX_LINE_BYTES) + b"\n" + line + b"y" * 5000)
    direct, chunked = _both(path, batch_bytes=1 << 16)
    _assert_same(direct, chunked, reading.MAX_LINE_BYTES)
    (long,) = [long for batch in direct for long in batch.long_lines]
    assert (long.line, long.offset, long.length, long.ended) == (
        2, len(line), 3 * reading.MAX_LINE_BYTES, True
    )  # fmt: skip
    assert long.head == b"x" * LONG_LINE_HEAD
    assert max(len(batch.data) for batch in direct) < 2 * len(line) + 5000


def test_resuming_a_plain_file_reads_from_the_place_it_holds(tmp_path: Path) -> None:
    data = _log(600)
    path = tmp_path / "mail.log"
    path.write_bytes(data)
    cut = data.index(b"\n", len(data) // 2) + 1
    tail = hashlib.sha256(data[cut - 100 : cut]).hexdigest()
    place = Resume(cut, data[:cut].count(b"\n"), 100, tail)
    seen: list[tuple[Resume, bytes]] = []
    options: dict[str, Any] = {"batch_bytes": 4096, "resume": [place]}
    direct = list(read_batches(InputFile(str(path)), **options, resumed=lambda *a: seen.append(a)))
    chunked = list(read_batches(InputFile(str(path), stream=True), **options))
    _assert_same(direct, chunked, reading.MAX_LINE_BYTES)
    assert seen == [(place, data[cut - reading.TAIL_BYTES : cut])]
    assert direct[0].offset == cut and direct[0].first_line == place.line + 1


@pytest.mark.parametrize("change", ["cut shorter", "written to"])
def test_a_file_changed_while_read_is_read_to_its_new_end(tmp_path: Path, change: str) -> None:
    """Cut shorter (copytruncate, or a writer that starts over) or written to, mid-read."""
    data = _log(400)
    path = tmp_path / "mail.log"
    path.write_bytes(data)
    batches = read_batches(InputFile(str(path)), batch_bytes=4096)
    first = next(batches)
    if change == "cut shorter":
        os.truncate(path, 10_000)
        expected = data[:10_000]
    else:
        with path.open("ab") as log:
            log.write(data[:5000])
        expected = data + data[:5000]
    rest = list(batches)
    assert first.data + b"".join(batch.data for batch in rest) == expected
    assert rest[-1].final


# --- batches read into reused buffers (`reading._Buffers`) ------------------------------------


def test_batches_let_go_are_read_into_the_same_few_buffers(tmp_path: Path) -> None:
    """A consumer that drops each batch before the next (as the C path's Postfix parse, which
    copies its texts out) has every batch read into a handful of buffers; the batches are
    those the chunked reader makes."""
    path = tmp_path / "mail.log"
    path.write_bytes(_log(2000))
    seen: set[int] = set()
    keys = []
    for batch in read_batches(InputFile(str(path)), batch_bytes=4096):
        assert isinstance(batch.data, bytearray)
        seen.add(id(batch.data))  # (the pool keeps its buffers alive: an id stays theirs)
        keys.append(_key(replace(batch, data=bytes(batch.data))))
        del batch
    chunked = list(read_batches(InputFile(str(path), stream=True), batch_bytes=4096))
    assert keys == [_key(batch) for batch in chunked]
    assert len(keys) > 50 and len(seen) <= reading._REUSED


def test_a_batch_still_referred_to_is_never_read_into(tmp_path: Path) -> None:
    """Batches held (by the batch, or only by an Arrow buffer over its bytes, as a source's
    columns hold it) while later ones are read keep their bytes; the others' buffers serve
    again."""
    import pyarrow as pa

    data = _log(2000)
    path = tmp_path / "mail.log"
    path.write_bytes(data)
    rng = random.Random(18)
    held: list[tuple[int, Any]] = []
    for batch in read_batches(InputFile(str(path)), batch_bytes=3000):
        assert batch.data == data[batch.offset : batch.offset + len(batch.data)]
        roll = rng.random()
        if roll < 0.15:
            held.append((batch.offset, batch.data))
        elif roll < 0.3:
            held.append((batch.offset, pa.py_buffer(batch.data)))
        del batch
    assert len(held) > 20
    for offset, kept in held:
        kept_bytes = bytes(kept) if isinstance(kept, bytes | bytearray) else kept.to_pybytes()
        assert kept_bytes == data[offset : offset + len(kept_bytes)]


def test_the_pool_reads_what_pread_reads(tmp_path: Path) -> None:
    """Its reads: shorter and longer than the last, at the end of the file, past it, and
    longer than its buffers are made for (fresh bytes then)."""
    data = _log(300)
    path = tmp_path / "mail.log"
    path.write_bytes(data)
    buffers = reading._Buffers(1000)
    fd = os.open(path, os.O_RDONLY)
    try:
        for length, offset in [(1000, 0), (10, 5), (999, 7), (1000, len(data) - 300),
                               (500, len(data) + 10), (5000, 3), (1, 0)]:  # fmt: skip
            got = buffers.read(fd, length, offset)
            assert got == os.pread(fd, length, offset)
            assert isinstance(got, bytes) == (length > 1000)
            del got
    finally:
        os.close(fd)
    assert len(buffers._kept) == 1
