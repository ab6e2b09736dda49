"""Time the Parquet write alone: the events of a file, written as `parse -o x.parquet` writes
them (25k-row frames, zstd, dictionary strings), with min/max statistics on every column and
with statistics only where readers filter (`schema.statistics_columns`).

    python bench/parquet_write.py EVENTS.parquet [--repeat 5]

EVENTS.parquet is any events file, e.g. `bounce-analyzer parse LOG --tz UTC -o EVENTS.parquet`.
Prints the median and minimum process CPU time of each setting and the bytes written.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import polars as pl
import pyarrow.parquet as pq

from bounce_analyzer import schema

FRAME_ROWS = 25_000


def write_once(frames: list[pl.DataFrame], every_column: bool) -> tuple[float, int]:
    """CPU seconds to write `frames` to memory, and the bytes written."""
    buffer = io.BytesIO()
    start = time.process_time()
    writer: pq.ParquetWriter | None = None
    for frame in frames:
        table = frame.to_arrow(compat_level=pl.CompatLevel.newest())
        if writer is None:
            writer = pq.ParquetWriter(
                buffer,
                table.schema,
                compression="zstd",
                use_dictionary=schema.dictionary_columns(table.schema),
                write_statistics=True if every_column else schema.statistics_columns(table.schema),
                store_schema=False,
            )
        writer.write_table(table)
    assert writer is not None
    writer.close()
    return time.process_time() - start, buffer.tell()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", help="a Parquet file of events")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    events = pl.read_parquet(args.events)
    frames = [events.slice(at, FRAME_ROWS) for at in range(0, events.height, FRAME_ROWS)]
    print(f"{events.height:,} events in {len(frames)} frames")
    for every_column in (True, False):
        runs = [write_once(frames, every_column) for _ in range(args.repeat)]
        cpu = [seconds for seconds, _ in runs]
        lean = schema.statistics_columns(events.head(0).to_arrow().schema)
        label = "every column" if every_column else ", ".join(lean)
        print(
            f"statistics on {label}: median {statistics.median(cpu):.3f} s cpu, "
            f"min {min(cpu):.3f} s, {runs[-1][1]:,} bytes"
        )


if __name__ == "__main__":
    main()
