"""The time series and distributions the HTML report draws, from a LazyFrame of events.

A pure function of the events, like `report.summarize`: it never reads a store or the rules.
Each figure is one streaming group-by over the window, so memory holds the groups (days times
providers, 24 hours, providers and domains), never the events, whatever the window's size.
All figures count attempts (every row), as the report's daily trend does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from bounce_analyzer.report import in_window
from bounce_analyzer.schema import failed

#: The outcomes a chart stacks, in their order (bottom first).
OUTCOMES = ("delivered", "deferred", "failed", "complained")


@dataclass
class Series:
    """What the charts of the HTML report draw (attempts of the direction shown)."""

    #: date, provider, attempts, failed, failure_rate: the providers with most attempts.
    provider_daily: pl.DataFrame
    #: hour (0-23, UTC), delivered, deferred, failed, complained: every day of the window
    #: added up by the hour of the day.
    hourly: pl.DataFrame
    #: provider, delivered, median_delay_s, p95_delay_s: delivered attempts with a delay.
    provider_delays: pl.DataFrame
    #: recipient_domain, delivered, median_delay_s, p95_delay_s (the same, by domain).
    domain_delays: pl.DataFrame


def _outcome_counts() -> list[pl.Expr]:
    event = pl.col("event")
    return [
        (event == "delivered").sum().alias("delivered"),
        (event == "deferred").sum().alias("deferred"),
        failed().sum().alias("failed"),
        (event == "complained").sum().alias("complained"),
    ]


def _delays(events: pl.LazyFrame, key: str, top: int) -> pl.LazyFrame:
    """Delivery delay quantiles by `key`: the `top` keys with most delivered attempts."""
    delay = pl.col("delay_s")
    return (
        events.filter((pl.col("event") == "delivered") & delay.is_not_null())
        .filter(pl.col(key).is_not_null())
        .group_by(key)
        .agg(
            pl.len().cast(pl.UInt32).alias("delivered"),
            delay.median().alias("median_delay_s"),
            delay.quantile(0.95, interpolation="linear").alias("p95_delay_s"),
        )
        .sort(["delivered", key], descending=[True, False])
        .head(top)
    )


def chart_series(
    events: pl.LazyFrame,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    direction: str = "outbound",
    top: int = 6,
) -> Series:
    """The charts' figures for the events of [since, until) of `direction` (`all`: every
    event), as `report.summarize` chooses them. `top` providers get a failure-rate line and
    a delay bar; `top` recipient domains a delay bar."""
    window = in_window(events, since=since, until=until, direction=direction).select(
        "timestamp", "event", "provider", "recipient_domain", "delay_s"
    )
    busiest = (
        window.filter(pl.col("provider").is_not_null())
        .group_by("provider")
        .len()
        .sort(["len", "provider"], descending=[True, False])
        .head(top)
        .select("provider")
    )
    provider_daily = (
        window.join(busiest, on="provider", how="semi")
        .group_by(pl.col("timestamp").dt.date().alias("date"), "provider")
        .agg(pl.len().cast(pl.UInt32).alias("attempts"), failed().sum().alias("failed"))
        .with_columns((pl.col("failed") / pl.col("attempts")).round(4).alias("failure_rate"))
        .sort("date", "provider")
    )
    hourly = (
        window.group_by(pl.col("timestamp").dt.hour().alias("hour"))
        .agg(_outcome_counts())
        .sort("hour")
    )
    frames = pl.collect_all(
        [
            provider_daily,
            hourly,
            _delays(window, "provider", top),
            _delays(window, "recipient_domain", top),
        ],
        engine="streaming",
    )
    hours = pl.DataFrame({"hour": range(24)}, schema={"hour": pl.Int8()})
    every_hour = hours.join(frames[1], on="hour", how="left").fill_null(0)
    return Series(
        provider_daily=frames[0],
        hourly=every_hour,
        provider_delays=frames[2],
        domain_delays=frames[3],
    )
