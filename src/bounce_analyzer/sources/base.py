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

from bounce_analyzer.reading import Batch

#: Columns of the frame of malformed records a source sets aside.
MALFORMED_SCHEMA: dict[str, pl.DataType] = {
    "origin": pl.String(),  # "path:line" or "path#index"
    "reason": pl.String(),  # what is wrong, for a person
    "raw": pl.String(),  # the record as read (cut to 4096 characters)
}


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
