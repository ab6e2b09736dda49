"""Exports for BI tools: the full event table, daily aggregates, and suppression lists.

Parquet files carry proper types (UTC timestamps, dictionary-encoded strings), statistics and
row groups of about 128k rows, so that DuckDB, Spark, Trino, pandas and Power BI read them as
they are. CSV output neutralizes spreadsheet formulas (remote servers' words are
attacker-controlled). Every function here works on the events it is given (a LazyFrame, such
as `store.scan_events` returns); none reads the store.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from bounce_analyzer.errors import UsageError
from bounce_analyzer.schema import FAILURES
from bounce_analyzer.writers import neutralize_formulas, output_file

if TYPE_CHECKING:
    from bounce_analyzer.rules import Rules

ROW_GROUP_SIZE = 128 * 1024


class ExportKind(StrEnum):
    """What `export` writes."""

    events = "events"
    daily = "daily"
    suppressions = "suppressions"


class ExportFormat(StrEnum):
    """The file format of an export."""

    parquet = "parquet"
    csv = "csv"


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
            (pl.col("event").is_in(FAILURES) & (pl.col("bounce_type") == "hard"))
            .sum()
            .alias("hard"),
            (pl.col("event").is_in(FAILURES) & (pl.col("bounce_type") == "soft"))
            .sum()
            .alias("soft"),
        )
        .sort("date", "source", "provider", "category", nulls_last=True)
    )


def suppressions(events: pl.LazyFrame) -> pl.LazyFrame:
    """Recipients that hard-bounced, with the last reason and date: feed these back into the
    sender's suppression list. A recipient delivered to after its last hard bounce is left out
    (the address works again)."""
    recipients = events.filter(pl.col("recipient").is_not_null())
    last_hard = (
        recipients.filter(pl.col("event").is_in(FAILURES) & (pl.col("bounce_type") == "hard"))
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

    Decisions that no table row or pattern made (`event:delivered`, `event:expired` ...) take
    their category's description and advice from `categories` (category, description, advice).
    """
    joined = events.join(explanations.lazy(), on="rule_id", how="left", maintain_order="left")
    if categories is None:
        return joined
    text = categories.lazy().select(
        "category", pl.col("description").alias("_meaning"), pl.col("advice").alias("_solution")
    )
    return (
        joined.join(text, on="category", how="left", maintain_order="left")
        .with_columns(
            pl.coalesce("meaning", "_meaning").alias("meaning"),
            pl.coalesce("solution", "_solution").alias("solution"),
        )
        .drop("_meaning", "_solution")
    )


def write_export(
    frame: pl.LazyFrame,
    output: Path,
    *,
    fmt: ExportFormat = ExportFormat.parquet,
    partition_by_date: bool = False,
) -> int:
    """Write `frame` to `output` (a file, or a directory of date partitions); return rows."""
    data = frame.collect()
    if partition_by_date:
        if fmt is not ExportFormat.parquet:
            raise UsageError("--partition-by date needs --format parquet")
        import pyarrow.dataset as ds  # lazy: pyarrow is heavy, and only writing Parquet needs it

        if "date" not in data.columns:
            data = data.with_columns(pl.col("timestamp").dt.date().alias("date"))
        output.mkdir(parents=True, exist_ok=True)
        ds.write_dataset(
            data.to_arrow(),
            output,
            format="parquet",
            partitioning=["date"],
            partitioning_flavor="hive",
            existing_data_behavior="delete_matching",
            max_rows_per_group=ROW_GROUP_SIZE,
            file_options=ds.ParquetFileFormat().make_write_options(compression="zstd"),
        )
        return data.height
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass  # `output_file` names the path and the reason
    with output_file(output) as written:
        _write_file(data, written, fmt)
    return data.height


def _write_file(data: pl.DataFrame, output: Path, fmt: ExportFormat) -> None:
    if fmt is ExportFormat.csv:
        neutralize_formulas(data).write_csv(output)
    else:
        import pyarrow.parquet as pq  # lazy: pyarrow is heavy, and only writing Parquet needs it

        pq.write_table(
            data.to_arrow(),
            output,
            compression="zstd",
            use_dictionary=True,
            write_statistics=True,
            row_group_size=ROW_GROUP_SIZE,
        )


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
    patterns = rules.patterns.select(
        pl.concat_str(pl.lit("pattern:"), pl.col("id")).alias("rule_id"), "category"
    )
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
