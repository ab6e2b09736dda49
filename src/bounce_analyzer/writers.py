"""Write event frames as they stream by: JSON lines, CSV, Parquet, or a table for people."""

from __future__ import annotations

import io
from collections.abc import Iterable
from enum import StrEnum
from pathlib import PurePath
from typing import IO, TYPE_CHECKING

import polars as pl

from bounce_analyzer import schema
from bounce_analyzer.errors import UsageError

if TYPE_CHECKING:
    import pyarrow.parquet as pq

#: Characters that make a spreadsheet read a cell as a formula. Remote servers' words are
#: attacker-controlled, so CSV output prefixes such cells with a quote (OWASP's advice).
_FORMULA_START = r"^[=+\-@\t\r]"


class EventFormat(StrEnum):
    """Output formats of `parse`."""

    jsonl = "jsonl"
    csv = "csv"
    parquet = "parquet"
    table = "table"


#: The format an output file's name suffix says, where no format is given.
_SUFFIXES = {
    ".parquet": EventFormat.parquet,
    ".csv": EventFormat.csv,
    ".jsonl": EventFormat.jsonl,
    ".ndjson": EventFormat.jsonl,
}


def event_format_for(output: str | None, fmt: str | None = None) -> EventFormat:
    """The format of events written to `output` (None: stdout): `fmt` when given (checked),
    else what the file's suffix says, else JSON lines."""
    if fmt is not None:
        if fmt not in EventFormat.__members__:
            choices = ", ".join(EventFormat.__members__)
            raise UsageError(f"unknown format {fmt!r}: choose one of {choices}")
        return EventFormat(fmt)
    suffix = PurePath(output).suffix.lower() if output else ""
    return _SUFFIXES.get(suffix, EventFormat.jsonl)


def neutralize_formulas(frame: pl.DataFrame) -> pl.DataFrame:
    """Prefix string cells that a spreadsheet would run as a formula with `'`."""
    text_columns = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    return frame.with_columns(
        pl.when(pl.col(name).str.contains(_FORMULA_START))
        .then(pl.lit("'") + pl.col(name))
        .otherwise(pl.col(name))
        .alias(name)
        for name in text_columns
    )


_TABLE_COLUMNS = ("timestamp", "event", "recipient", "smtp_code", "enhanced_code", "category")


def render_event_table(frame: pl.DataFrame, *, width: int = 100) -> str:
    """A compact, aligned view of events for a person at a terminal."""
    view = frame.select(
        pl.col("timestamp").dt.strftime("%Y-%m-%d %H:%M:%S").fill_null(""),
        pl.col("event").fill_null(""),
        pl.col("recipient").fill_null(""),
        pl.col("smtp_code").cast(pl.String).fill_null(""),
        pl.col("enhanced_code").fill_null(""),
        pl.col("category").fill_null(""),
        pl.col("diagnostic").fill_null(""),
    )
    rows = view.rows()
    widths = [len(name) for name in _TABLE_COLUMNS]
    for row in rows:
        for index in range(len(_TABLE_COLUMNS)):
            widths[index] = min(max(widths[index], len(row[index])), 32)
    used = sum(widths) + 2 * len(widths)
    rest = max(width - used, 20)

    def line(cells: Iterable[str]) -> str:
        parts = list(cells)
        fixed = "  ".join(cell[: widths[i]].ljust(widths[i]) for i, cell in enumerate(parts[:-1]))
        return f"{fixed}  {parts[-1][:rest]}".rstrip()

    out = [line([*_TABLE_COLUMNS, "diagnostic"])]
    out.extend(line(row) for row in rows)
    return "\n".join(out) + "\n"


class EventWriter:
    """Writes frames one after another to a binary stream in one format."""

    def __init__(self, stream: IO[bytes], fmt: EventFormat) -> None:
        self._stream = stream
        self._fmt = fmt
        self._parquet: pq.ParquetWriter | None = None
        self._header_done = False
        self.rows = 0

    def write(self, frame: pl.DataFrame) -> None:
        """Write the rows of `frame`. A frame without rows writes nothing: its columns may
        not be the event table's (a stretch of input with no event is not classified), and
        `close` writes the header or schema when no row came."""
        if frame.height:
            self._write(frame)

    def _write(self, frame: pl.DataFrame) -> None:
        self.rows += frame.height
        if self._fmt is EventFormat.jsonl:
            frame.write_ndjson(self._stream)
        elif self._fmt is EventFormat.csv:
            buffer = io.BytesIO()
            neutralize_formulas(frame).write_csv(buffer, include_header=not self._header_done)
            self._header_done = True
            self._stream.write(buffer.getvalue())
        elif self._fmt is EventFormat.parquet:
            import pyarrow.parquet as pq  # lazy: pyarrow is heavy; JSON lines and CSV never load it

            # polars' own string layout (Arrow string views) is handed over without a copy;
            # the copy into classic Arrow strings cost a quarter of the writer's time. The file
            # does not record that layout (no stored Arrow schema): readers see plain UTF-8
            # strings and a UTC timestamp, as Parquet types them.
            table = frame.to_arrow(compat_level=pl.CompatLevel.newest())
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(
                    self._stream,
                    table.schema,
                    compression="zstd",
                    use_dictionary=schema.dictionary_columns(table.schema),
                    store_schema=False,
                )
            self._parquet.write_table(table)
        elif self._fmt is EventFormat.table:
            text = render_event_table(frame)
            if self._header_done:
                text = text.split("\n", 1)[1]
            self._header_done = True
            self._stream.write(text.encode("utf-8"))
        else:  # pragma: no cover - the enum is closed
            raise UsageError(f"unknown format {self._fmt}")

    def close(self, *, empty: pl.DataFrame) -> None:
        """Finish the stream; `empty` gives the columns when nothing was written."""
        if self._fmt is EventFormat.parquet:
            if self._parquet is None:
                self._write(empty)
            assert self._parquet is not None
            self._parquet.close()
        elif self._fmt is EventFormat.csv and not self._header_done:
            self._write(empty)
        self._stream.flush()
