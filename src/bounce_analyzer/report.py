"""Summaries of classified events: the frames behind `bounce-analyzer report`. Never prints.

Two views of the same events, both labelled in every rendering:
- attempts: every row counts (a message deferred three times counts three deferrals);
- final outcomes: one per message and recipient, its last event (deferred three times, then
  delivered, counts once, as delivered).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import polars as pl

from bounce_analyzer.errors import UsageError

#: Columns `--by` may group by.
GROUPABLE = (
    "provider",
    "category",
    "category_group",
    "source",
    "recipient_domain",
    "sender_domain",
    "smtp_code",
    "enhanced_code",
    "date",
    "event",
    "bounce_type",
    "host",
)

#: Events that are a final failure of delivery.
FAILURES = ("bounced", "expired", "rejected", "dropped")


@dataclass
class Report:
    """Everything one report shows, as frames; `render.py` turns it into text."""

    since: datetime | None
    until: datetime | None
    totals: pl.DataFrame  # view, events, delivered, deferred, failed, hard, soft, complained
    by: list[str]
    groups: pl.DataFrame  # the --by table (final outcomes) with attempt counts beside
    categories: pl.DataFrame  # category, group, count, share, hard, soft, advice
    messages: pl.DataFrame  # category, message (normalized), count, example
    daily: pl.DataFrame  # date, delivered, deferred, failed, complained (attempts)
    recipient_domains: pl.DataFrame
    sender_domains: pl.DataFrame
    malformed: int = 0
    notes: list[str] = field(default_factory=list)


def parse_by(text: str | None) -> list[str]:
    """`--by provider,category` -> ["provider", "category"], checked."""
    if not text:
        return ["provider"]
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in GROUPABLE]
    if unknown or not names:
        bad = ", ".join(unknown) or repr(text)
        raise UsageError(f"cannot group by {bad}: choose from {', '.join(GROUPABLE)}")
    return names


def _with_date(lf: pl.LazyFrame) -> pl.LazyFrame:
    return lf.with_columns(pl.col("timestamp").dt.date().alias("date"))


def final_outcomes(events: pl.LazyFrame) -> pl.LazyFrame:
    """One row per message and recipient: its last delivery event (complaints aside)."""
    key = pl.coalesce(pl.col("message_ref"), pl.col("event_id"))
    return (
        events.filter(pl.col("event") != "complained")
        .with_columns(key.alias("_message"))
        .sort("timestamp", "event_id")
        .group_by("source", "host", "_message", "recipient", maintain_order=True)
        .last()
        .drop("_message")
    )


def _counts(lf: pl.LazyFrame, keys: list[str]) -> pl.LazyFrame:
    failed = pl.col("event").is_in(FAILURES)
    return lf.group_by(keys).agg(
        pl.len().alias("total"),
        (pl.col("event") == "delivered").sum().alias("delivered"),
        (pl.col("event") == "deferred").sum().alias("deferred"),
        failed.sum().alias("failed"),
        (failed & (pl.col("bounce_type") == "hard")).sum().alias("hard"),
        (failed & (pl.col("bounce_type") == "soft")).sum().alias("soft"),
        (pl.col("event") == "complained").sum().alias("complained"),
    )


def _rate(numerator: str, denominator: str) -> pl.Expr:
    return (
        pl.when(pl.col(denominator) > 0)
        .then(pl.col(numerator) / pl.col(denominator))
        .otherwise(None)
        .round(4)
    )


def summarize(
    events: pl.LazyFrame,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    by: list[str] | None = None,
    top: int = 10,
    malformed: int = 0,
    normalize: pl.Expr | None = None,
) -> Report:
    """Summarize classified events (a LazyFrame of the event table) within [since, until)."""
    keys = by or ["provider"]
    lf = events
    if since is not None:
        lf = lf.filter(pl.col("timestamp") >= since)
    if until is not None:
        lf = lf.filter(pl.col("timestamp") < until)
    lf = _with_date(lf).cache()
    final = final_outcomes(lf)
    attempts_totals, final_totals, attempts_groups, final_groups = pl.collect_all(
        [
            _counts(lf.with_columns(pl.lit("attempts").alias("view")), ["view"]),
            _counts(final.with_columns(pl.lit("final outcomes").alias("view")), ["view"]),
            _counts(lf, keys),
            _counts(final, keys),
        ]
    )
    totals = pl.concat([attempts_totals, final_totals]).with_columns(
        _rate("failed", "total").alias("failure_rate")
    )
    groups = (
        final_groups.rename({"total": "messages"})
        .join(
            attempts_groups.select(
                *keys, pl.col("total").alias("attempts"), pl.col("deferred").alias("deferrals")
            ),
            on=keys,
            how="full",
            coalesce=True,
            nulls_equal=True,
        )
        .with_columns(pl.col(pl.UInt32, pl.Int64).fill_null(0))
        .with_columns(_rate("failed", "messages").alias("failure_rate"))
        .sort(["failed", "attempts", *keys], descending=[True, True, *([False] * len(keys))])
    )
    failures = lf.filter(pl.col("event").is_in((*FAILURES, "deferred")))
    categories = (
        failures.group_by("category", "category_group")
        .agg(
            pl.len().alias("count"),
            pl.col("event").is_in(FAILURES).sum().alias("failed"),
            (pl.col("event") == "deferred").sum().alias("deferred"),
            (pl.col("bounce_type") == "hard").sum().alias("hard"),
            (pl.col("bounce_type") == "soft").sum().alias("soft"),
        )
        .with_columns((pl.col("count") / pl.col("count").sum()).round(4).alias("share"))
        .sort(["count", "category"], descending=[True, False])
        .collect()
    )
    message_expr = normalize if normalize is not None else pl.col("diagnostic")
    messages = (
        failures.with_columns(message_expr.fill_null("(no text)").alias("message"))
        .group_by("category", "message")
        .agg(pl.len().alias("count"), pl.col("diagnostic").first().alias("example"))
        .sort(["category", "count", "message"], descending=[False, True, False])
        .group_by("category", maintain_order=True)
        .head(top)
        .collect()
    )
    daily = (
        lf.group_by("date")
        .agg(
            (pl.col("event") == "delivered").sum().alias("delivered"),
            (pl.col("event") == "deferred").sum().alias("deferred"),
            pl.col("event").is_in(FAILURES).sum().alias("failed"),
            (pl.col("event") == "complained").sum().alias("complained"),
        )
        .sort("date")
        .collect()
    )

    def top_domains(column: str) -> pl.DataFrame:
        return (
            _counts(final.filter(pl.col(column).is_not_null()), [column])
            .rename({"total": "messages"})
            .with_columns(_rate("failed", "messages").alias("failure_rate"))
            .sort(["failed", "messages", column], descending=[True, True, False])
            .head(top)
            .collect()
        )

    return Report(
        since=since,
        until=until,
        totals=totals,
        by=keys,
        groups=groups,
        categories=categories,
        messages=messages,
        daily=daily,
        recipient_domains=top_domains("recipient_domain"),
        sender_domains=top_domains("sender_domain"),
        malformed=malformed,
    )
