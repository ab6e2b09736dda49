"""The contract between the input layer and the sources.

The reading layer (`bounce_analyzer.reading`) cuts each input into `Batch`es of whole lines.
A source turns batches into frames of facts (`FACT_SCHEMA` columns) and never decides a
category: `bounce_analyzer.classify` does that over whole frames.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
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
    for their recipients) lives on the instance; a source that also has the methods of
    `CarriesState` keeps it from one run to the next. Accounting: for every output,
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


@runtime_checkable
class CarriesState(Protocol):
    """What a source that keeps its state across runs has besides `Source` (optional).

    An ingest calls `import_state` with what the last run's `export_state` gave (kept with the
    store) before the first batch, and `export_state` after the last one; the store keeps the
    frame as it is. The state is bounded (rows and bytes, the oldest going first), as it is
    within a run.
    """

    def export_state(self) -> pl.DataFrame:
        """What the source carries to the next run, as one frame of its own columns."""
        ...

    def import_state(self, state: pl.DataFrame) -> None:
        """Carry on from `state` (an `export_state` frame of an earlier run)."""
        ...

    @classmethod
    def merge_state(
        cls, carried: pl.DataFrame | None, parts: Sequence[pl.DataFrame]
    ) -> pl.DataFrame:
        """The state one run leaves when its inputs were read in parts (a cluster's log sets),
        each by an instance that imported `carried` (None: nothing): `parts` are what each
        exported. Equal to the state of one instance reading the parts one after the other."""
        ...
