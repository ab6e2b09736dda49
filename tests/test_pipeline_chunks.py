"""How many events `ParseRun` classifies at once (issue 18: large calls, bounded by memory):
a chunk ends at `classify_rows` events or with the events of `classify_bytes` of input,
whichever comes first; the events are the same however they are cut."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from _native import extension_or_skip
from bounce_analyzer import pipeline, reading
from bounce_analyzer.generate import generate_exim, generate_postfix
from bounce_analyzer.pipeline import CLASSIFY_BYTES, CLASSIFY_ROWS, ParseRun, own_texts
from bounce_analyzer.sources import get_source

NOW = datetime(2026, 11, 28, tzinfo=UTC)


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("chunks") / "mainlog"
    with path.open("wb") as out:
        generate_exim(out, lines=3000, seed=18, start=datetime(2026, 11, 27, tzinfo=UTC))
    return path


def _chunks(path: Path, **options: int) -> list[pl.DataFrame]:
    run = ParseRun([str(path)], tz="UTC", now=NOW, **options)
    return [chunk.events for chunk in run]


def test_the_defaults_are_large_calls_bounded_by_input() -> None:
    assert CLASSIFY_ROWS >= 100_000
    # more than one of `parse`'s 16 MiB batches, at most two: 48 MiB took the peak RSS of
    # `ingest` of 5M Exim lines past 1 GiB (the measurements in pipeline.py)
    assert 16 * 2**20 < CLASSIFY_BYTES <= 32 * 2**20


def test_chunks_end_with_the_events_of_classify_bytes_of_input(log: Path) -> None:
    batches = _chunks(log, batch_bytes=32768, classify_bytes=1 << 30)
    whole = _chunks(log, batch_bytes=32768, classify_bytes=3 * 32768)
    one = _chunks(log, batch_bytes=32768, classify_bytes=1)
    assert len(batches) == 1
    assert len(one) > 10 and len(whole) == -(-len(one) // 3)
    reference = pl.concat(batches)
    for cut in (whole, one):
        assert pl.concat(cut).equals(reference, null_equal=True)


def test_chunks_end_at_classify_rows(log: Path) -> None:
    chunks = _chunks(log, batch_bytes=32768, classify_rows=250, classify_bytes=1 << 30)
    heights = [frame.height for frame in chunks]
    assert len(heights) > 3
    # Each but the last ends with the batch that took it to 250 events or more.
    assert all(height >= 250 for height in heights[:-1])


def _text_buffer_bytes(frame: pl.DataFrame) -> int:
    """The bytes of the distinct data buffers the text columns of `frame` point into."""
    buffers: dict[int, int] = {}
    for column in frame.iter_columns():
        if column.dtype != pl.String:
            continue
        array = column.to_arrow(compat_level=pl.CompatLevel.newest())
        for buffer in array.buffers()[2:]:  # (validity, views, then the data buffers)
            if buffer is not None:
                buffers[buffer.address] = buffer.size
    return sum(buffers.values())


@pytest.mark.parametrize("source", ["postfix", "exim"])
def test_events_own_their_texts_and_not_their_batch(source: str, tmp_path: Path) -> None:
    """The C path's events point into their whole input batch (docs/NATIVE.md), which they
    would keep alive until written; `own_texts` copies their texts out, the same values,
    where the buffers they point into are more than twice their texts: Postfix's events
    (under half of their batch), not Exim's (most of it)."""
    extension_or_skip(source)
    path = tmp_path / "log"
    generate = generate_postfix if source == "postfix" else generate_exim
    with path.open("wb") as out:
        generate(out, lines=20_000, seed=18, start=datetime(2026, 11, 27, tzinfo=UTC))
    [item] = reading.expand_inputs([str(path)])
    batch_bytes = path.stat().st_size
    [output] = get_source(source, tz="UTC").parse(reading.read_batches(item, batch_bytes=2**30))
    events = output.events
    assert events.height > 1000
    assert _text_buffer_bytes(events) >= batch_bytes  # the whole batch, at least
    texts = [name for name, dtype in events.schema.items() if dtype == pl.String]
    used = events.select(pl.sum_horizontal(pl.col(texts).str.len_bytes().sum())).item()
    owned = own_texts(events)
    assert owned.equals(events, null_equal=True)
    assert owned.schema == events.schema
    assert _text_buffer_bytes(owned) <= 2 * used
    if source == "postfix":
        assert used < batch_bytes / 2
        assert _text_buffer_bytes(owned) < batch_bytes / 2  # copied: the batch can go
    else:
        assert used > batch_bytes / 2
        assert _text_buffer_bytes(owned) == _text_buffer_bytes(events)  # left as it was
    empty = events.clear()
    assert own_texts(empty).equals(empty)


@pytest.mark.parametrize("source", ["postfix", "exim"])
def test_no_batch_outlives_the_run(
    source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a run's chunks are written (here: dropped), nothing holds its input batches: not
    the sources' carried state, nor what classification remembers across calls (its keys'
    texts were views into Exim's batches, and kept every batch of a run alive to its end),
    so that the reused read buffers (`reading._Buffers`) find them free."""
    extension_or_skip(source)
    path = tmp_path / "log"
    generate = generate_postfix if source == "postfix" else generate_exim
    with path.open("wb") as out:
        generate(out, lines=20_000, seed=18, start=datetime(2026, 11, 27, tzinfo=UTC))
    pools: list[reading._Buffers] = []
    made = reading._Buffers.__init__

    def kept(self: reading._Buffers, size: int, count: int = reading._REUSED) -> None:
        made(self, size, count)
        pools.append(self)

    monkeypatch.setattr(reading._Buffers, "__init__", kept)
    run = ParseRun([str(path)], tz="UTC", now=NOW, batch_bytes=2**18, classify_bytes=2**19)
    events = sum(chunk.events.height for chunk in run)
    assert events > 1000
    [pool] = pools
    assert len(pool._kept) >= 3
    held = [pool._references(index) - pool._free_count for index in range(len(pool._kept))]
    assert held == [0] * len(pool._kept)


def test_the_tokenizers_let_go_of_their_tables_when_a_run_ends(
    log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    released: list[int] = []
    monkeypatch.setattr(pipeline, "_release_tables", lambda: released.append(len(chunks)))
    chunks: list[pl.DataFrame] = []
    run = ParseRun([str(log)], tz="UTC", now=NOW, batch_bytes=2**16, classify_bytes=2**16)
    for chunk in run:
        chunks.append(chunk.events)
        assert not released or len(released) == 1 and released[0] >= len(chunks) - 1
    # (once, after the last chunk was made: the run is a chunk ahead of its reader)
    assert len(chunks) > 2 and len(released) == 1 and released[0] >= len(chunks) - 1
