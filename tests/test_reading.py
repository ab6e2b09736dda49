"""The input layer: finding inputs, decompression by content, batches of whole lines."""

from __future__ import annotations

import ast
import bz2
import gzip
import io
import lzma
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from bounce_analyzer import reading
from bounce_analyzer.errors import InputError
from bounce_analyzer.pipeline import ParseRun
from bounce_analyzer.reading import (
    Batch,
    InputFile,
    TruncatedInputError,
    _cut,
    batch_lines,
    detect_compression,
    expand_inputs,
    head,
    read_batches,
)

LINES = b"".join(
    b"Nov 28 10:00:%02d mx postfix/smtp[1]: line %d\n" % (i % 60, i) for i in range(500)
)

COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "plain": lambda data: data,
    "gzip": gzip.compress,
    "bzip2": bz2.compress,
    "xz": lzma.compress,
    "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
}


def _write(path: Path, data: bytes) -> InputFile:
    path.write_bytes(data)
    return expand_inputs([str(path)])[0]


def test_reading_imports_no_source() -> None:
    """The input layer is below the sources: they take its `Batch`, it takes nothing of theirs."""
    tree = ast.parse(Path(reading.__file__).read_text(encoding="utf-8"))
    modules = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    modules += [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    ]
    assert [name for name in modules if name.startswith("bounce_analyzer.sources")] == []


@pytest.mark.parametrize("kind", list(COMPRESSORS))
def test_each_compression_is_read_by_content(tmp_path: Path, kind: str) -> None:
    packed = COMPRESSORS[kind](LINES)
    assert detect_compression(packed) == kind
    source = _write(tmp_path / "mail.log", packed)  # the name says nothing
    batches = list(read_batches(source, batch_bytes=4000))
    assert b"".join(b.data for b in batches) == LINES
    assert head(source, 40) == LINES[:40]
    assert [b.final for b in batches] == [False] * (len(batches) - 1) + [True]


@pytest.mark.parametrize("kind", list(COMPRESSORS))
def test_a_plain_file_is_told_by_content(tmp_path: Path, kind: str) -> None:
    """`is_plain_file`: a file of uncompressed content, whatever its name (its batches are
    read where they are parsed, without a thread of their own); not a compressed file, a
    stream, or a file that cannot be read."""
    source = _write(tmp_path / "mail.log.gz", COMPRESSORS[kind](LINES))
    assert reading.is_plain_file(source) is (kind == "plain")
    assert not reading.is_plain_file(InputFile("-"))
    assert not reading.is_plain_file(InputFile(str(tmp_path / "gone.log")))


@pytest.mark.parametrize("kind", list(COMPRESSORS))
def test_progress_counts_bytes_as_stored(tmp_path: Path, kind: str) -> None:
    # A progress bar's total is the size on disk: a compressed file must not count its
    # decompressed bytes against it (the bar went past 100%).
    packed = COMPRESSORS[kind](LINES * 8)
    source = _write(tmp_path / "mail.log", packed)
    ends = [b.raw_end for b in read_batches(source, batch_bytes=4000)]
    assert len(ends) > 1
    assert all(end is not None for end in ends)
    assert ends == sorted(ends)
    assert ends[-1] == len(packed)
    updates: list[int] = []
    run = ParseRun([str(source.path)], source="postfix", tz="UTC", batch_bytes=4000)
    run.progress = updates.append
    events = sum(chunk.events.height for chunk in run)
    assert (run.summaries[0].read, events) == (4000, 0)
    assert sum(updates) == run.total_bytes() == len(packed)


@pytest.mark.parametrize("kind", ["gzip", "bzip2", "xz", "zstd"])
def test_concatenated_members_streams_and_frames(tmp_path: Path, kind: str) -> None:
    compress = COMPRESSORS[kind]
    source = _write(tmp_path / "x", compress(LINES[:1000]) + compress(LINES[1000:]))
    assert b"".join(b.data for b in read_batches(source, batch_bytes=500)) == LINES


def test_batches_cut_at_line_ends_with_exact_numbers(tmp_path: Path) -> None:
    source = _write(tmp_path / "a.log", b"one\ntwo\r\nthree\nfour\nfive")
    batches = list(read_batches(source, batch_bytes=8))
    assert [(b.data, b.first_line, b.offset, b.final) for b in batches] == [
        (b"one\n", 1, 0, False),
        (b"two\r\n", 2, 4, False),
        (b"three\n", 3, 9, False),
        (b"four\n", 4, 15, False),
        (b"five", 5, 20, True),
    ]
    assert all(isinstance(b, Batch) and b.mtime == source.mtime for b in batches)
    assert batches[0].path == str(tmp_path / "a.log")


def test_a_line_longer_than_a_batch_is_kept_whole(tmp_path: Path) -> None:
    long_line = b"x" * 100 + b"\n"
    source = _write(tmp_path / "a.log", b"a\n" + long_line + b"b\n")
    batches = list(read_batches(source, batch_bytes=10))
    assert [(b.data, b.first_line) for b in batches] == [(b"a\n", 1), (long_line, 2), (b"b\n", 3)]


def test_empty_input_yields_no_batch(tmp_path: Path) -> None:
    assert list(read_batches(_write(tmp_path / "e.log", b""))) == []


def test_batch_lines_handles_crlf_nul_invalid_utf8_and_no_final_newline() -> None:
    batch = Batch(data=b"a\r\n\x00\x00b\xff\nc", path="p", first_line=7)
    frame = batch_lines(batch)
    assert frame.to_dicts() == [
        {"line_no": 7, "line": "a"},
        {"line_no": 8, "line": "b\ufffd"},
        {"line_no": 9, "line": "c"},
    ]
    assert batch_lines(Batch(data=b"x\n\n", path="p")).to_dicts() == [
        {"line_no": 1, "line": "x"},
        {"line_no": 2, "line": ""},
    ]
    assert batch_lines(Batch(data=b"", path="p")).height == 0


def _fake_stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


@pytest.mark.parametrize("kind", ["plain", "gzip", "zstd"])
def test_stdin_head_does_not_lose_bytes(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    _fake_stdin(monkeypatch, COMPRESSORS[kind](LINES))
    [source] = expand_inputs(["-"])
    assert source.is_stdin and source.mtime is None
    assert head(source, 100) == LINES[:100]
    batches = list(read_batches(source, batch_bytes=1000))
    assert b"".join(b.data for b in batches) == LINES
    assert batches[0].path == "<stdin>"  # origins read <stdin>:N
    assert all(isinstance(b, Batch) and b.mtime is None for b in batches)


def test_directory_and_rotated_sets_come_oldest_first(tmp_path: Path) -> None:
    for name in [
        "mail.log",
        "mail.log.1",
        "mail.log.2.gz",
        "mail.log.10.gz",
        "other.log",
        ".hidden",
    ]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    names = [Path(i.path).name for i in expand_inputs([str(tmp_path)])]
    assert names == ["mail.log.10.gz", "mail.log.2.gz", "mail.log.1", "mail.log", "other.log"]


def test_globs_dated_rotation_and_duplicates(tmp_path: Path) -> None:
    for name in ["mail.log", "mail.log-20261121.gz", "mail.log-20261114", "mail.err"]:
        (tmp_path / name).write_bytes(b"")
    found = expand_inputs([str(tmp_path / "mail.log*"), str(tmp_path / "mail.log")])
    assert [Path(i.path).name for i in found] == [
        "mail.log-20261114",
        "mail.log-20261121.gz",
        "mail.log",
    ]


def test_missing_path_message(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.log")
    with pytest.raises(InputError) as caught:
        expand_inputs([missing])
    assert str(caught.value) == f"{missing}: no such file or directory"
    with pytest.raises(InputError, match=r"nope\*\.log: no such file or directory$"):
        expand_inputs([str(tmp_path / "nope*.log")])


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads everything")
def test_unreadable_file_message(tmp_path: Path) -> None:  # pragma: no cover - not as root
    path = tmp_path / "secret.log"
    path.write_bytes(b"x\n")
    path.chmod(0)
    with pytest.raises(InputError, match=r"secret\.log: permission denied$"):
        expand_inputs([str(path)])


def test_truncated_gzip_keeps_the_good_part_and_reports_the_offset(tmp_path: Path) -> None:
    packed = gzip.compress(LINES * 20)
    cut = len(packed) // 2
    source = _write(tmp_path / "mail.log.1.gz", packed[:cut])
    got: list[Batch] = []
    with pytest.raises(TruncatedInputError) as caught:
        for batch in read_batches(source, batch_bytes=2000):
            got.append(batch)
    data = b"".join(b.data for b in got)
    assert len(data) > len(LINES) and (LINES * 20).startswith(data)
    assert got[-1].final and not got[0].final
    assert caught.value.offset == cut
    assert caught.value.path == source.path
    assert (
        str(caught.value) == f"{source.path}: compressed data ends early (truncated) at byte {cut}"
    )
    assert isinstance(caught.value, InputError)


def test_corrupt_gzip_names_file_and_offset(tmp_path: Path) -> None:
    packed = bytearray(gzip.compress(os.urandom(40000).hex().encode(), mtime=0))
    packed[30000:30060] = b"\xff" * 60
    source = _write(tmp_path / "bad.gz", bytes(packed))
    with pytest.raises(TruncatedInputError) as caught:
        list(read_batches(source))
    # Deflate notices damage where it decodes nonsense: at or after it, to 8 KiB blocks.
    assert 24576 <= caught.value.offset <= len(packed) and caught.value.offset % 8192 == 0
    assert str(caught.value).startswith(f"{source.path}: compressed data is corrupt at byte ")


@pytest.mark.parametrize("start", [b"\x1f\x8b", b"(\xb5/\xfd", b"x\x9c"])
def test_batch_lines_of_bytes_that_look_compressed(start: bytes) -> None:
    """Found by hypothesis: polars' CSV reader inflated batches starting with these bytes."""
    batch = Batch(data=start + b"garbage\r\nNov 27 10:00:00 mx1 x\n", path="x", first_line=7)
    lines = batch_lines(batch)
    assert lines["line_no"].to_list() == [7, 8]
    assert lines["line"].to_list()[1] == "Nov 27 10:00:00 mx1 x"
    assert lines["line"].to_list()[0].endswith("garbage")


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(st.tuples(st.integers(0, 60), st.booleans()), min_size=0, max_size=40),
    chunk_sizes=st.lists(st.integers(1, 50), min_size=1, max_size=8),
    batch_bytes=st.integers(1, 120),
)
def test_cut_batches_are_whole_lines_whatever_the_chunks(
    lines: list[tuple[int, bool]], chunk_sizes: list[int], batch_bytes: int
) -> None:
    # Lines of any length (longer than a batch too), the last one maybe without its newline,
    # arriving in chunks of any size: the batches give back every byte, end at line ends,
    # hold at most a batch's worth unless one line is longer, and number lines exactly.
    data = b"".join(b"x" * length + (b"\n" if ended else b"") for length, ended in lines)
    chunks, at, turn = [], 0, 0
    while at < len(data):
        size = chunk_sizes[turn % len(chunk_sizes)]
        chunks.append(data[at : at + size])
        at, turn = at + size, turn + 1
    batches = list(_cut(iter(chunks), "p", None, batch_bytes))
    assert b"".join(b.data for b in batches) == data
    line, offset = 1, 0
    for number, batch in enumerate(batches):
        assert batch.data
        assert (batch.first_line, batch.offset) == (line, offset)
        assert batch.newlines == batch.data.count(b"\n") == batch.line_ends()
        if number < len(batches) - 1:
            assert batch.data.endswith(b"\n")
            if len(batch.data) > batch_bytes:  # only a single line may overflow a batch
                assert batch.data.count(b"\n") == 1
        line += batch.data.count(b"\n")
        offset += len(batch.data)
