"""The C tokenizers keep a batch's tables for the next batch (native/reuse.h): a table is
written again only when nothing else refers to it, and a batch read into reused tables gives
the same frames as one read into fresh ones.

Generated logs (several seeds) cut by each module directly, results held or dropped between
calls; the frames compared are the sources' own (`postfix._native_events`, `exim._tokenized`).
Under tools/sanitizers.py this runs with AddressSanitizer too.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal

from _native import extension_or_skip
from bounce_analyzer import native
from bounce_analyzer.generate import generate_exim, generate_postfix
from bounce_analyzer.sources import exim, postfix

START = datetime(2026, 11, 27, tzinfo=UTC)
REFERENCE = datetime(2026, 11, 28)  # (naive, as `Postfix._reference` gives it)


def _log(source: str, seed: int) -> bytes:
    out = io.BytesIO()
    make = generate_postfix if source == "postfix" else generate_exim
    make(out, lines=3000, seed=seed, start=START)
    return out.getvalue()


def _cut(module: ModuleType, source: str) -> Callable[[bytes], Any]:
    if source == "postfix":
        return lambda data: module.tokenize(data, 1, b"")
    return lambda data: module.cut(data)


def _tables(result: Any) -> list[bytearray]:
    """The bytearrays a call handed out (the tables it may keep)."""
    values = result.values() if isinstance(result, dict) else result
    return [value for value in values if isinstance(value, bytearray)]


def _frames(source: str, data: bytes, result: Any) -> list[pl.DataFrame]:
    """The frames the source makes of a call's result (copied: they outlive the tables)."""
    if source == "postfix":
        events = postfix._native_events(data, result, "UTC", REFERENCE, 0)
        frames = [events, postfix._native_malformed(data, result)]
    else:
        cut = exim._tokenized(result, data, "UTC")
        frames = [cut.events, cut.arrivals, cut.heads, *cut.parts.values()]
    return [frame.with_columns(pl.col(pl.String) + "") for frame in frames]


@pytest.fixture(params=["postfix", "exim"])
def source(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv(native.ENV, raising=False)
    return str(request.param)


def test_a_table_still_referred_to_is_never_written_again(source: str) -> None:
    module = extension_or_skip(source)
    cut = _cut(module, source)
    first = cut(_log(source, 1))
    tables = _tables(first)
    as_made = [bytes(table) for table in tables]
    # (an Arrow buffer over a table, as the sources' columns hold it: the table's last holder)
    held = [pa.py_buffer(table) for table in tables]
    del first, tables
    later = [cut(_log(source, seed)) for seed in (2, 3, 4, 5)]
    assert [buffer.to_pybytes() for buffer in held] == as_made
    assert not {id(buffer) for buffer in held} & {id(t) for r in later for t in _tables(r)}


def test_tables_let_go_are_reused_and_read_alike(source: str) -> None:
    module = extension_or_skip(source)
    cut = _cut(module, source)
    data = _log(source, 7)
    fresh = cut(data)  # (held: the next call cannot have its tables)
    expected = _frames(source, data, fresh)
    other = cut(_log(source, 8))
    dropped = {id(table) for table in _tables(other)}  # (the keeper holds them: ids stay theirs)
    del other
    again = cut(data)
    assert dropped & {id(table) for table in _tables(again)}, "no table was reused"
    for got, want in zip(_frames(source, data, again), expected, strict=True):
        assert_frame_equal(got, want)


def test_release_lets_go_of_the_kept_tables(source: str) -> None:
    module = extension_or_skip(source)
    result = _cut(module, source)(_log(source, 9))
    table = max(_tables(result), key=len)
    del result
    kept = sys.getrefcount(table)
    module.release()
    assert sys.getrefcount(table) == kept - 1  # (the keeper's reference gone; ours is left)
    module.release()  # (nothing kept: nothing to do)
    assert sys.getrefcount(table) == kept - 1
