"""native/postfix.c's `compact`: a string-view column's texts copied into one buffer of their
own (`pipeline.own_texts`, so that a batch's bytes can go once its events are made). Run
again under AddressSanitizer and UBSan by tools/sanitizers.py (docs/NATIVE.md "Testing")."""

from __future__ import annotations

import struct

import polars as pl
import pytest

from bounce_analyzer import native, pipeline
from bounce_analyzer.sources._views import string_column

compact = getattr(native.built("postfix"), "compact", None)
needs_compact = pytest.mark.skipif(compact is None, reason="the Postfix C module is not built")


def _owned_by_column(column: pl.Series) -> pl.Series:
    size = column.str.len_bytes().sum() or 0
    assert compact is not None
    return pipeline._compacted(column, size, compact)


def _data_bytes(column: pl.Series) -> int:
    return pipeline._buffer_bytes(column.to_frame())


@needs_compact
@pytest.mark.parametrize(
    "column",
    [
        pl.Series("t", [f"recipient{i}@example.com" for i in range(1000)] + [None, "", "é" * 30]),
        pl.Series("t", ["short", None, "x" * 12, "y" * 13]),  # inline and not
        pl.Series("t", [None, None], dtype=pl.String()),
        pl.Series("t", [], dtype=pl.String()),
        # starting inside a validity byte, and at a byte's start
        pl.Series("t", ["z" * 30 if i % 3 else None for i in range(100)]).slice(3, 50),
        pl.Series("t", ["z" * 30 if i % 3 else None for i in range(100)]).slice(16, 50),
        # two chunks, each over buffers of its own
        pl.concat(
            [pl.Series("t", ["q" * 40] * 5), pl.Series("t", ["ü" * 40, None])], rechunk=False
        ),
    ],
    ids=["texts", "inline", "all null", "empty", "offset 3", "offset 16", "chunks"],
)
def test_compact_keeps_every_value_and_null(column: pl.Series) -> None:
    owned = _owned_by_column(column)
    assert owned.equals(column)
    assert owned.null_count() == column.null_count()
    assert owned.name == column.name


@needs_compact
def test_compact_takes_only_the_bytes_of_its_texts() -> None:
    """Views into a big batch (as the C path's columns are): copied, the column holds its
    texts' bytes and nothing else, and no longer needs the batch."""
    data = bytes(range(97, 123)) * 40_000  # ~1 MB of "batch"
    rows = [(13 + i % 20, 0, 997 * i) for i in range(500)] + [(5, 0, 3)]
    column = string_column("t", len(rows), _views(*rows, data=data), data)
    assert _data_bytes(column) == len(data)
    owned = _owned_by_column(column)
    assert owned.equals(column)
    assert owned.to_list()[:2] == [data[0:13].decode(), data[997 : 997 + 14].decode()]
    assert _data_bytes(owned) == sum(length for length, _, _ in rows if length > 12)


def _views(*rows: tuple[int, int, int], data: bytes = b"") -> bytes:
    """Arrow string views of (length, buffer index, offset): a view of 12 bytes or less holds
    them (from `data`), a longer one their first 4 as its prefix."""
    views = b""
    for length, index, at in rows:
        if 0 <= length <= 12:
            views += struct.pack("<i", length) + data[at : at + length].ljust(12, b"\0")
        else:
            views += struct.pack("<i4sii", length, data[at : at + 4].ljust(4, b"\0"), index, at)
    return views


@needs_compact
@pytest.mark.parametrize(
    ("views", "count", "offset"),
    [
        (_views((20, 0, 40)), 1, 0),  # past the end of its buffer (50 bytes)
        (_views((20, 1, 0)), 1, 0),  # a buffer that is not there
        (_views((20, 0, -4)), 1, 0),  # before its buffer
        (_views((-1, 0, 0)), 1, 0),  # a negative length
        (_views((20, 0, 0)), 2, 0),  # more rows than views
        (_views((20, 0, 0)), 1, 1),  # rows past the views
    ],
    ids=["past the end", "no such buffer", "before", "negative length", "rows", "offset"],
)
def test_compact_refuses_views_outside_their_buffers(views: bytes, count: int, offset: int) -> None:
    assert compact is not None
    out_views, out_data = bytearray(64), bytearray(64)
    with pytest.raises(ValueError, match="compact: "):
        compact(views, count, offset, None, [b"x" * 50], out_views, out_data)


@needs_compact
def test_compact_refuses_output_buffers_too_small() -> None:
    assert compact is not None
    views = _views((20, 0, 0), (20, 0, 20))
    with pytest.raises(ValueError, match="too small"):
        compact(views, 2, 0, None, [b"x" * 50], bytearray(32), bytearray(39))
    with pytest.raises(ValueError, match="too small"):
        compact(views, 2, 0, None, [b"x" * 50], bytearray(16), bytearray(40))
    out_views, out_data = bytearray(32), bytearray(40)
    assert compact(views, 2, 0, None, [b"x" * 50], out_views, out_data) == 40
    assert struct.unpack_from("<i", out_views, 16)[0] == 20  # the second text's length,
    assert struct.unpack_from("<ii", out_views, 24) == (0, 20)  # in buffer 0, at byte 20
