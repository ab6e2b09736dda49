"""The one generator loop: a `Format` (one per source) builds each segment's records from the
plan; the loop cuts the record budget and the time window into segments, writes each segment's
records in time order and counts its truth.

Segments bound memory: one is written before the next is built. Each has a random stream of its
own (`Rng(seed, segment)`), so the bytes depend on the seed, the options and the segment size.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO, ClassVar, Required, TypedDict

import polars as pl

from bounce_analyzer.generate.plan import US
from bounce_analyzer.generate.rng import Rng
from bounce_analyzer.generate.truth import Truth

#: Records built at once: bounds memory (a segment is written before the next is built).
SEGMENT = 400_000

#: Where a generator writes: a binary file object, or the path of a file it creates.
Output = BinaryIO | Path | str


class Options(TypedDict, total=False):
    """What every generator takes besides its size and its own options.

    `seed` (default 0): the same seed gives the same bytes. `start`: the first moment of the
    window (naive: UTC); `days` (default 1.0): its length. `cover` (default False): every
    failure text at least once near the start of the plan (for small curated samples).
    """

    seed: int
    start: Required[datetime]
    days: float
    cover: bool


@dataclass(frozen=True)
class Window:
    """What one segment is to hold: `size` records in [start_us, start_us + span_us); `index`
    counts segments; `cover`: every failure text once (the first segment of a covering run)."""

    index: int
    size: int
    start_us: int
    span_us: int
    cover: bool


@dataclass(frozen=True)
class Segment:
    """One segment's records (columns ts, msg, step and what `Format.record` reads), its truth
    rows (see `Truth.count`) and how many messages it holds."""

    records: pl.DataFrame
    events: pl.DataFrame
    messages: int


class Format:
    """How one source writes: builds a segment's records, says what a record's text is, and
    writes the texts (one per line, by default)."""

    #: The source's name, as in `Truth.source`.
    source: ClassVar[str]
    #: What the caller calls a record: "lines" or "events".
    unit: ClassVar[str] = "lines"

    def segment(self, rng: Rng, window: Window) -> Segment:
        """Exactly `window.size` records in the window, drawn from `rng`."""
        raise NotImplementedError

    def record(self) -> pl.Expr:
        """A record's text, from a segment's columns."""
        raise NotImplementedError

    def begin(self, fh: BinaryIO) -> None:
        """Write what comes before the first record."""

    def write(self, fh: BinaryIO, texts: pl.Series, *, first: bool) -> None:
        """Write one segment's record texts, in order."""
        if texts.len():
            texts.to_frame().write_csv(fh, include_header=False, quote_style="never")

    def end(self, fh: BinaryIO) -> None:
        """Write what comes after the last record."""


def write(fmt: Format, out: Output, records: int, options: Options) -> Truth:
    """Write exactly `records` records of `fmt` with `options`; return the truth."""
    seed = options.get("seed", 0)
    days = options.get("days", 1.0)
    if records < 0 or days <= 0:
        raise ValueError(f"`{fmt.unit}` must be >= 0 and `days` > 0")
    truth = Truth(source=fmt.source, seed=seed)
    fh, close = _open(out)
    try:
        begin = _start_us(options["start"])
        total_us = int(days * 86_400 * US)
        fmt.begin(fh)
        offset = 0
        for index, size in enumerate(_segments(records, SEGMENT)):
            window = Window(
                index=index,
                size=size,
                start_us=begin + total_us * offset // max(records, 1),
                span_us=max(1, total_us * size // max(records, 1)),
                cover=options.get("cover", False) and index == 0,
            )
            _write_segment(fmt, fh, fmt.segment(Rng(seed, index), window), truth, first=index == 0)
            offset += size
        fmt.end(fh)
        truth.records = records
    finally:
        if close:
            fh.close()
    return truth


def _write_segment(
    fmt: Format, fh: BinaryIO, segment: Segment, truth: Truth, *, first: bool
) -> None:
    """Write a segment's records in time order and count its truth (a function of its own so
    that the segment is dropped before the next one is built)."""
    texts = segment.records.sort("ts", "msg", "step").select(fmt.record()).to_series()
    fmt.write(fh, texts, first=first)
    truth.count(segment.events)
    truth.messages += segment.messages


def _start_us(start: datetime) -> int:
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    return int((start - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))


def _open(out: Output) -> tuple[BinaryIO, bool]:
    if isinstance(out, str | Path):
        return Path(out).open("wb"), True
    return out, False


def _segments(total: int, size: int) -> list[int]:
    """Split `total` records into segments of at most `size` (at least one segment)."""
    count = max(1, -(-total // size))
    base, extra = divmod(total, count)
    return [base + (1 if i < extra else 0) for i in range(count)]
