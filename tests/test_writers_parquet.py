"""`parse -o x.parquet`'s file: which columns carry a dictionary and statistics (the writer's
settings, `writers.EventWriter`), and that the rows come back as written."""

from __future__ import annotations

import io
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from bounce_analyzer import schema
from bounce_analyzer.pipeline import ParseRun
from bounce_analyzer.writers import EventFormat, EventWriter


def test_parquet_dictionaries_only_where_values_repeat(data_path: Path) -> None:
    run = ParseRun([str(data_path / "exim" / "realistic.log")], tz="UTC")
    events = pl.concat([chunk.events for chunk in run])
    buffer = io.BytesIO()
    writer = EventWriter(buffer, EventFormat.parquet)
    writer.write(events.head(5))  # two frames: one file, one schema
    writer.write(events.slice(5))
    writer.close(empty=pl.DataFrame(schema=schema.EVENT_SCHEMA))
    buffer.seek(0)
    metadata = pq.read_metadata(buffer)
    texts = [name for name, dtype in schema.EVENT_SCHEMA.items() if dtype == pl.String()]
    for group in range(metadata.num_row_groups):
        chunks = metadata.row_group(group)
        columns = {
            chunks.column(i).path_in_schema: chunks.column(i) for i in range(chunks.num_columns)
        }
        plain = {name for name in texts if columns[name].dictionary_page_offset is None}
        # ids and long free texts plain (schema.PLAIN_COLUMNS), every other text with one
        assert plain == schema.PLAIN_COLUMNS & set(texts)
        assert {"diagnostic", "message_id", "event_id"} <= plain
    buffer.seek(0)
    assert pl.read_parquet(buffer).equals(events)
