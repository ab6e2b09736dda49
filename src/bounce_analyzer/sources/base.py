"""The contract between the input layer and the sources.

The reading layer (`bounce_analyzer.reading`) cuts each input into `Batch`es of whole lines.
A source turns batches into frames of facts (`FACT_SCHEMA` columns) and never decides a
category: `bounce_analyzer.classify` does that over whole frames.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, runtime_checkable

import polars as pl

#: Columns of the frame of malformed records a source sets aside.
MALFORMED_SCHEMA: dict[str, pl.DataType] = {
    "origin": pl.String(),  # "path:line" or "path#index"
    "reason": pl.String(),  # what is wrong, for a person
    "raw": pl.String(),  # the record as read (cut to 4096 characters)
}


@dataclass(frozen=True)
class Batch:
    """A run of whole lines from one input.

    `data` ends at a line boundary (the last line of a file may lack its newline). `first_line`
    is the 1-based number of the first line in `data`; `offset` the byte offset of `data` in the
    decompressed stream. `final` is true for the last batch of an input. `mtime` is the
    input's modification time (None for stdin): sources whose timestamps lack a year infer it
    from this. `newlines` is the number of line ends in `data` when the reader counted them
    (None: not counted; `line_ends` counts then). `raw_end` is how many bytes of the input as
    stored (compressed or not) had been read when the batch was cut (None for stdin): what a
    progress bar measured against the size on disk counts.
    """

    data: bytes
    path: str
    first_line: int = 1
    offset: int = 0
    final: bool = True
    mtime: float | None = None
    newlines: int | None = None
    raw_end: int | None = None

    def line_ends(self) -> int:
        """The number of newline bytes in `data`."""
        return self.newlines if self.newlines is not None else self.data.count(b"\n")


@dataclass
class SourceOutput:
    """What a source makes of one or more batches."""

    events: pl.DataFrame  # FACT_SCHEMA columns (schema.conform makes sure)
    malformed: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=MALFORMED_SCHEMA))
    read: int = 0  # lines (or JSON events) read
    skipped: int = 0  # read, understood, and irrelevant (not a delivery outcome)

    @property
    def malformed_count(self) -> int:
        return self.malformed.height


@runtime_checkable
class Source(Protocol):
    """A log or event format bounce-analyzer reads.

    One instance serves one run: state that spans batches and files (Postfix queue ids waiting
    for their recipients) lives on the instance. Accounting: for every output,
    `read == events.height_of_records + skipped + malformed` where a record that yields several
    events (one per recipient) counts once in `read`.
    """

    name: ClassVar[str]

    def __init__(self, *, tz: str | None = None) -> None:
        """`tz`: the IANA zone of timestamps without an offset (None: the machine's zone)."""
        ...

    def sniff(self, head: bytes) -> bool:
        """Whether `head` (the first few KB of an input, decompressed) is this format."""
        ...

    def parse(self, batches: Iterable[Batch]) -> Iterator[SourceOutput]:
        """Turn batches into frames of facts, in order."""
        ...
