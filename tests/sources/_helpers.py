"""What the source tests share: batches of one input, a run's outputs as one, the contract."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import polars as pl
from hypothesis import strategies as st

from bounce_analyzer import schema
from bounce_analyzer.reading import Batch
from bounce_analyzer.sources.base import MALFORMED_SCHEMA, SourceOutput


def utc(*parts: int) -> datetime:
    """A time in UTC: `utc(2026, 11, 28, 10)`."""
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def consecutive_batches(*chunks: bytes, path: str) -> list[Batch]:
    """`chunks` as consecutive batches of one input (each a run of whole lines)."""
    batches = []
    line = 1
    offset = 0
    for number, data in enumerate(chunks):
        final = number == len(chunks) - 1
        batches.append(Batch(data=data, path=path, first_line=line, offset=offset, final=final))
        line += data.count(b"\n")
        offset += len(data)
    return batches


def assert_adds_up(out: SourceOutput) -> None:
    """The contract: every record read is an event, skipped or malformed; the frames' schemas."""
    assert out.read == out.events.height + out.skipped + out.malformed_count
    assert out.events.schema == pl.Schema(schema.FACT_SCHEMA)
    assert out.malformed.schema == pl.Schema(MALFORMED_SCHEMA)


def merge(outputs: Sequence[SourceOutput]) -> SourceOutput:
    """All outputs of a run as one (counts added up, each output checked on the way)."""
    for out in outputs:
        assert_adds_up(out)
    return SourceOutput(
        events=pl.concat([o.events for o in outputs]) if outputs else schema.empty_facts(),
        malformed=pl.concat([o.malformed for o in outputs])
        if outputs
        else pl.DataFrame(schema=MALFORMED_SCHEMA),
        read=sum(o.read for o in outputs),
        skipped=sum(o.skipped for o in outputs),
    )


def event_at(out: SourceOutput, origin_suffix: str) -> dict[str, Any]:
    """The one event whose origin ends with `origin_suffix` (`mainlog:5`, `:5`)."""
    rows = out.events.filter(pl.col("origin").str.ends_with(origin_suffix)).to_dicts()
    assert len(rows) == 1, f"{origin_suffix}: {len(rows)} events"
    return rows[0]


def json_values(keys: Sequence[str]) -> st.SearchStrategy[Any]:
    """JSON values: atoms, and lists and objects (with keys from `keys`) of them, nested."""
    atoms = st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8)
    )
    return st.recursive(
        atoms,
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(keys), inner, max_size=4)
        ),
        max_leaves=8,
    )


def event_id(source: str, raw: str) -> str:
    """The `event_id` a `source` gives the record `raw` (for the JSON sources: kind and id)."""
    frame = pl.DataFrame({"r": [raw]})
    return str(frame.select(schema.event_id(source, pl.col("r"))).item())
