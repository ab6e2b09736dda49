"""The time series and distributions the HTML report draws, from a LazyFrame of events.

A pure function of the events, like `report.summarize`: it never reads a store or the rules.
Each figure is one streaming group-by over the window, so memory holds the groups (days times
providers; the busiest providers' and domains' distinct delays), never the events, whatever
the window's size. The failure rates count attempts (every row), as the report's daily trend
does. The daily, hourly and queue-time charts draw the report's own tables (`Report.daily`,
`Report.delays`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from bounce_analyzer.delays import delivery_delays
from bounce_analyzer.report import in_window
from bounce_analyzer.schema import failed, failed_share

#: The outcomes a chart stacks, in their order (bottom first).
OUTCOMES = ("delivered", "deferred", "failed", "complained")


@dataclass
class Series:
    """What the charts of the HTML report draw (attempts of the direction shown)."""

    #: date, provider, attempts, failed, failure_rate: the providers with most attempts.
    provider_daily: pl.DataFrame
    #: provider, delivered, median_delay_s, p95_delay_s, max_delay_s: delivered attempts with
    #: a delay (`delays.delivery_delays`, as the report's delay tables).
    provider_delays: pl.DataFrame
    #: recipient_domain, delivered, median_delay_s, ... (the same, by domain).
    domain_delays: pl.DataFrame


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
        .with_columns(failed_share("attempts").round(4).alias("failure_rate"))
        .sort("date", "provider")
    )
    frames = pl.collect_all(
        [
            provider_daily,
            delivery_delays(window, "provider", top),
            delivery_delays(window, "recipient_domain", top),
        ],
        engine="streaming",
    )
    return Series(provider_daily=frames[0], provider_delays=frames[1], domain_delays=frames[2])
