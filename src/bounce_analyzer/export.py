"""Exports for BI tools: the full event table, daily aggregates, and suppression lists.

Parquet files carry proper types (UTC timestamps, dictionary-encoded strings), statistics and
row groups of about 128k rows, so that DuckDB, Spark, Trino, pandas and Power BI read them as
they are. CSV output neutralizes spreadsheet formulas (remote servers' words are
attacker-controlled). Every function here works on the events it is given (a LazyFrame, such
as `store.scan_events` returns); none reads the store.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from bounce_analyzer.errors import UsageError
from bounce_analyzer.options import ExportFormat as ExportFormat  # (defined there: see options)
from bounce_analyzer.options import ExportKind as ExportKind
from bounce_analyzer.rules import Direction, Rules, solution_for
from bounce_analyzer.schema import hard_failure, soft_failure
from bounce_analyzer.stages import ahead
from bounce_analyzer.writers import neutralize_formulas, output_file, writing

ROW_GROUP_SIZE = 128 * 1024


#: The format an export's name suffix says, where no format is given (no suffix: Parquet).
_SUFFIXES = {".parquet": ExportFormat.parquet, ".csv": ExportFormat.csv}


def export_format_for(output: str, fmt: ExportFormat | None = None) -> ExportFormat:
    """The format of an export to `output`: `fmt` when given, else what its suffix says
    (`.csv`, `.parquet`; none: Parquet, as for a folder of partitions). Another suffix
    (`x.xlsx`) is a usage error rather than Parquet under that name."""
    if fmt is not None:
        return fmt
    suffix = Path(output).suffix.lower()
    if suffix and suffix not in _SUFFIXES:
        raise UsageError(
            f"cannot tell the format of {output} from its suffix: name it .parquet or .csv, "
            "or give --format (parquet or csv)"
        )
    return _SUFFIXES.get(suffix, ExportFormat.parquet)


def parse_partition_by(text: str | None) -> bool:
    """`--partition-by date` -> True (a folder per day); no option -> False."""
    if text not in (None, "date"):
        raise UsageError(f"cannot partition by {text!r}: only by date")
    return text == "date"


def daily_aggregates(events: pl.LazyFrame) -> pl.LazyFrame:
    """Counts per date, source, provider and category, for dashboards."""
    return (
        events.with_columns(pl.col("timestamp").dt.date().alias("date"))
        .group_by("date", "source", "provider", "category", "category_group")
        .agg(
            pl.len().alias("events"),
            (pl.col("event") == "delivered").sum().alias("delivered"),
            (pl.col("event") == "deferred").sum().alias("deferred"),
            (pl.col("event") == "bounced").sum().alias("bounced"),
            (pl.col("event") == "expired").sum().alias("expired"),
            (pl.col("event") == "rejected").sum().alias("rejected"),
            (pl.col("event") == "dropped").sum().alias("dropped"),
            (pl.col("event") == "complained").sum().alias("complained"),
            # (hard and soft as in every report view: docs/REPORTS.md, Hard and soft)
            hard_failure().sum().alias("hard"),
            soft_failure().sum().alias("soft"),
        )
        .sort("date", "source", "provider", "category", nulls_last=True)
    )


def suppressions(events: pl.LazyFrame) -> pl.LazyFrame:
    """Recipients of our mail that hard-bounced, with the last reason and date: feed these back
    into the sender's suppression list.

    Only outbound mail counts (`direction` outbound: we, or an ESP for us, sent it): an
    inbound refusal is our own server turning a client away, and its recipient is one of our
    own addresses, or one that never existed here; it belongs on nobody's suppression list.
    Only hard failures count: the address itself is bad (a blocked IP is soft, however
    permanent). A recipient we delivered to after its last hard bounce is left out (the
    address works again).
    """
    recipients = events.filter(
        pl.col("recipient").is_not_null() & (pl.col("direction") == Direction.outbound.value)
    )
    last_hard = (
        recipients.filter(hard_failure())
        .sort("timestamp", "event_id")
        .group_by("recipient")
        .agg(
            pl.len().alias("hard_bounces"),
            pl.col("timestamp").last().alias("last_bounce"),
            pl.col("category").last(),
            pl.col("smtp_code").last(),
            pl.col("enhanced_code").last(),
            pl.col("diagnostic").last().alias("last_reason"),
            pl.col("provider").last(),
            pl.col("source").last(),
        )
    )
    last_delivered = (
        recipients.filter(pl.col("event") == "delivered")
        .group_by("recipient")
        .agg(pl.col("timestamp").max().alias("_delivered"))
    )
    return (
        last_hard.join(last_delivered, on="recipient", how="left")
        .filter(pl.col("_delivered").is_null() | (pl.col("_delivered") < pl.col("last_bounce")))
        .drop("_delivered")
        .sort("recipient")
    )


def with_rule_text(
    events: pl.LazyFrame, explanations: pl.DataFrame, categories: pl.DataFrame | None = None
) -> pl.LazyFrame:
    """Join each event's rule meaning and solution (`explanations`: rule_id, meaning, solution).

    With `categories` (`Rules.categories`), decisions that no table row or pattern made
    (`event:delivered`, `event:expired` ...) take their category's description and advice,
    and inbound events (our server refused a client, or delivered to one of our mailboxes)
    take the category's inbound advice as their solution, whatever the row says: a row's
    solution, like `advice`, is written for the sender (`rules.solution_for`).
    """
    joined = events.join(explanations.lazy(), on="rule_id", how="left", maintain_order="left")
    if categories is None:
        return joined
    text = categories.lazy().select(
        "category", pl.col("description").alias("_meaning"), "advice", "advice_inbound"
    )
    return (
        joined.join(text, on="category", how="left", maintain_order="left")
        .with_columns(
            pl.coalesce("meaning", "_meaning").alias("meaning"),
            solution_for(pl.col("direction"), pl.col("solution")).alias("solution"),
        )
        .drop("_meaning", "advice", "advice_inbound")
    )


def write_export(
    frame: pl.LazyFrame,
    output: Path,
    *,
    fmt: ExportFormat = ExportFormat.parquet,
    partition_by_date: bool = False,
) -> int:
    """Write `frame` to `output` (a file, or a directory of date partitions); return rows.

    Memory stays bounded whatever the window: polars' streaming engine reads, joins and
    writes the rows to one Parquet file beside `output`, a piece at a time; that file then
    becomes the output, or is read back `_READ_ROWS` at a time into CSV or the partitions.
    A file output takes its place only when whole; a partition replaces the folder of its
    date in `output` (others are left).
    """
    if partition_by_date and fmt is not ExportFormat.parquet:
        raise UsageError("--partition-by date needs --format parquet")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass  # `output_file` (or the partitions' folder) names the path and the reason
    if partition_by_date:
        if output.exists() and not output.is_dir():
            raise UsageError(f"{output}: --partition-by date writes a folder, and it is a file")
        with writing(output):  # a folder that cannot be made fails now, before any reading
            output.mkdir(parents=True, exist_ok=True)
        if "date" not in frame.collect_schema():
            frame = frame.with_columns(pl.col("timestamp").dt.date().alias("date"))
        with _beside(output) as staged:
            rows = _stage(frame, staged)
            _write_partitions(staged, output)
        return rows
    with output_file(output) as written:
        return _write_file(frame, written, fmt)


def _write_file(frame: pl.LazyFrame, output: Path, fmt: ExportFormat) -> int:
    """Stream `frame` into the file `output`; the rows written."""
    if fmt is ExportFormat.parquet:
        return _stage(frame, output)
    with _beside(output) as staged:
        rows = _stage(frame, staged)
        _write_csv(staged, output)
    return rows


def _stage(frame: pl.LazyFrame, path: Path) -> int:
    """Stream `frame` into the Parquet file `path` (the export's settings); the rows."""
    frame.sink_parquet(path, compression="zstd", statistics=True, row_group_size=ROW_GROUP_SIZE)
    return _parquet_rows(path)


@contextlib.contextmanager
def _beside(output: Path) -> Iterator[Path]:
    """A temporary path beside `output` (in its folder, so that a rename moves it into place),
    removed when the block ends if it is still there."""
    temporary = output.with_name(f".{output.name}.{secrets.token_hex(4)}.part")
    try:
        yield temporary
    finally:
        if temporary.is_dir():
            shutil.rmtree(temporary, ignore_errors=True)
        else:
            temporary.unlink(missing_ok=True)


#: Rows read back at a time from the staged file (16k rows of events are about 10 MB).
_READ_ROWS = 16 * 1024


def _parquet_rows(path: Path) -> int:
    """The rows of a Parquet file, as its footer says."""
    import pyarrow.parquet as pq  # lazy: pyarrow is heavy, and only writing exports needs it

    return int(pq.read_metadata(path).num_rows)


def _batches(staged: Path) -> Iterator[pl.DataFrame]:
    """The rows of the Parquet file `staged`, `_READ_ROWS` at a time."""
    import pyarrow.parquet as pq  # lazy: pyarrow is heavy, and only writing exports needs it

    with pq.ParquetFile(str(staged), pre_buffer=False) as source:
        for batch in source.iter_batches(batch_size=_READ_ROWS):
            yield pl.DataFrame(batch)


def _write_csv(staged: Path, output: Path) -> None:
    """The rows of the Parquet file `staged` as CSV in `output`, with spreadsheet formulas
    neutralized."""
    with output.open("wb") as stream:
        header = True
        # Reading and neutralizing the next batch overlaps writing this one.
        for rows in ahead(neutralize_formulas(rows) for rows in _batches(staged)):
            rows.write_csv(stream, include_header=header)
            header = False
        if header:  # no rows: the header alone
            pl.DataFrame(schema=pl.read_parquet_schema(staged)).write_csv(stream)


def _write_partitions(staged: Path, output: Path) -> None:
    """The rows of the Parquet file `staged` in hive folders `output/date=YYYY-MM-DD/`. Each
    date is written beside `output` first, then replaces that date's folder there whole."""
    import pyarrow.parquet as pq  # lazy: pyarrow is heavy, and only writing exports needs it

    from bounce_analyzer.store import DayWriter  # lazy: pyarrow

    columns = pq.read_schema(staged)
    with _beside(output) as folder:
        writer = DayWriter(
            folder, columns.remove(columns.get_field_index("date")), row_group_rows=ROW_GROUP_SIZE
        )
        try:
            for rows in _batches(staged):
                writer.add(rows, pl.col("date").cast(pl.String))
        except BaseException:
            writer.abort()
            raise
        for day in writer.finish():
            target = output / f"date={day}"
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(folder / target.name, target)


def export_events(
    events: pl.LazyFrame,
    output: Path,
    *,
    what: ExportKind = ExportKind.events,
    fmt: ExportFormat = ExportFormat.parquet,
    partition_by_date: bool = False,
    rules: Rules | None = None,
) -> int:
    """Export `events` as `what` to `output`; return the number of rows.

    `rules` gives the events their meaning and solution, and is needed for `what=events`.
    """
    if what is ExportKind.daily:
        frame = daily_aggregates(events)
    elif what is ExportKind.suppressions:
        if partition_by_date:
            raise UsageError("--partition-by date is for events and daily aggregates")
        frame = suppressions(events)
    elif rules is None:
        raise ValueError("`rules` is needed to export events with their meaning and solution")
    else:
        frame = with_rule_text(events, rule_text(rules), rules.categories)
    return write_export(frame, output, fmt=fmt, partition_by_date=partition_by_date)


def rule_text(rules: Rules) -> pl.DataFrame:
    """rule_id -> meaning and solution: a table row's own text, else its category's."""
    rows = rules.codes.select(
        "rule_id",
        "category",
        pl.coalesce("meaning", "message").alias("meaning"),
        pl.col("solution"),
    )
    patterns = rules.patterns.select("rule_id", "category")
    text = rules.categories.select("category", "description", "advice")
    return (
        pl.concat([rows, patterns], how="diagonal_relaxed")
        .join(text, on="category", how="left")
        .select(
            "rule_id",
            pl.coalesce("meaning", "description").alias("meaning"),
            pl.coalesce("solution", "advice").alias("solution"),
        )
        .unique("rule_id", keep="first", maintain_order=True)
    )
