"""Delays, hourly traffic and sending hosts, from a LazyFrame of events. Never prints.

Pure functions of the events, like `report.summarize` (which calls them) and
`series.chart_series` (whose delay charts are `delivery_delays`): they never read a store or
the rules. Every table is a streaming group-by whose memory holds groups, never events:

- delivery delay (`delay_s` of delivered attempts) by provider and by recipient domain, with
  exact medians and 95th percentiles computed from counts per distinct delay (`_quantile`),
  so that a group holds its distinct delays, not its deliveries;
- a queue-time histogram of the same deliveries, eximstats' buckets (`QUEUE_TIMES`);
- the time from a recipient's first deferral to its final outcome, per provider
  (`resolutions`);
- attempts by hour of the day (UTC, as the daily trend's days are UTC days);
- attempts by our sending host: the `host` column (Postfix's syslog host name; SendGrid's and
  Mailgun's sending IP; Exim's mainlog names none).

What `delay_s` is: Postfix's `delay=` (the time from the message's arrival in our queue to
this outcome, time in the queue after deferrals included) and Exim's `QT=` (the time the
message had been on our queue, logged with `log_selector = +queue_time`). SendGrid and
Mailgun events carry no delay.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import polars as pl

from bounce_analyzer.schema import failed, failed_share, outcome_order
from bounce_analyzer.shares import detached

#: The queue-time histogram's buckets (eximstats' limits): name, upper bound in seconds.
QUEUE_TIMES = (
    ("<1m", 60),
    ("1-5m", 300),
    ("5-15m", 900),
    ("15-60m", 3_600),
    ("1-4h", 14_400),
    ("4-24h", 86_400),
    (">1d", None),
)


def delay_schema(key: str) -> dict[str, pl.DataType]:
    """The columns of a delivery-delay table by `key` (`provider`, `recipient_domain`)."""
    return {
        key: pl.String(),
        "delivered": pl.UInt32(),
        "median_delay_s": pl.Float64(),
        "p95_delay_s": pl.Float64(),
        "max_delay_s": pl.Float64(),
    }


#: The columns of the queue-time histogram.
QUEUE_TIME_SCHEMA: dict[str, pl.DataType] = {
    "queue_time": pl.String(),
    "delivered": pl.UInt32(),
    "share": pl.Float64(),
}

#: The columns of the deferral resolutions (per provider).
RESOLUTION_SCHEMA: dict[str, pl.DataType] = {
    "provider": pl.String(),
    "deferred": pl.UInt32(),
    "delivered": pl.UInt32(),
    "failed": pl.UInt32(),
    "pending": pl.UInt32(),
    "median_to_delivery_s": pl.Float64(),
    "p95_to_delivery_s": pl.Float64(),
    "median_to_failure_s": pl.Float64(),
}

#: The columns of the hourly traffic (24 rows, hours without traffic at zero).
HOURLY_SCHEMA: dict[str, pl.DataType] = {
    "hour": pl.Int8(),
    "attempts": pl.UInt32(),
    "delivered": pl.UInt32(),
    "deferred": pl.UInt32(),
    "failed": pl.UInt32(),
    "complained": pl.UInt32(),
    "failure_rate": pl.Float64(),
}

#: The columns of the sending hosts.
HOSTS_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.String(),
    "host": pl.String(),
    "attempts": pl.UInt32(),
    "delivered": pl.UInt32(),
    "deferred": pl.UInt32(),
    "failed": pl.UInt32(),
    "blocks": pl.UInt32(),
    "failure_rate": pl.Float64(),
}


def _empty(schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


@dataclass
class Delays:
    """The delay, hourly and sending-host tables of one report (`summarize_delays`)."""

    provider_delays: pl.DataFrame = field(default_factory=lambda: _empty(delay_schema("provider")))
    domain_delays: pl.DataFrame = field(
        default_factory=lambda: _empty(delay_schema("recipient_domain"))
    )
    queue_times: pl.DataFrame = field(default_factory=lambda: _empty(QUEUE_TIME_SCHEMA))
    resolutions: pl.DataFrame = field(default_factory=lambda: _empty(RESOLUTION_SCHEMA))
    hourly: pl.DataFrame = field(default_factory=lambda: _empty(HOURLY_SCHEMA))
    sending_hosts: pl.DataFrame = field(default_factory=lambda: _empty(HOSTS_SCHEMA))
    #: The rows `top` left out of the tables it cuts (by table name).
    omitted: dict[str, int] = field(default_factory=dict)


def _delivered_with_delay(events: pl.LazyFrame) -> pl.LazyFrame:
    return events.filter((pl.col("event") == "delivered") & pl.col("delay_s").is_not_null())


def _quantile(q: float, value: str = "delay_s") -> pl.Expr:
    """Within a group of rows (`value`, `_n`, `_cum`: `_n` rows of each distinct `value`,
    `_cum` their running total in the order of the values), the `q` quantile of the rows'
    values, interpolated linearly as polars' `quantile(q, "linear")` and `median` are."""
    position = q * (pl.col("_n").sum() - 1)
    low, high = position.floor(), position.ceil()
    # the smallest value whose running total passes the position (min: no order needed here)
    below = pl.col(value).filter(pl.col("_cum") > low).min()
    above = pl.col(value).filter(pl.col("_cum") > high).min()
    return below + (position - low) * (above - below)


def _spread(counted: pl.LazyFrame, key: str, value: str) -> pl.LazyFrame:
    """`counted` (`key`, `value`, `_n`: rows per distinct value) with `_cum`, each key's
    running total of `_n` in the order of the values, for `_quantile`."""
    return (
        counted.filter(pl.col(value).is_not_null())
        .sort(key, value)
        .with_columns(pl.col("_n").cum_sum().over(key).alias("_cum"))
    )


def delivery_delays(events: pl.LazyFrame, key: str, top: int) -> pl.LazyFrame:
    """The delay of delivered attempts (`delay_s`) by `key`, for the `top` keys with most such
    deliveries (most first): delivered, median_delay_s, p95_delay_s, max_delay_s.

    Counted per key and distinct delay, so memory holds the top keys' distinct delays (a few
    thousand at most: Postfix writes two significant digits under 10 s and whole seconds
    above 100 s), not their deliveries; the quantiles are still exact.
    """
    delivered = _delivered_with_delay(events).filter(pl.col(key).is_not_null())
    busiest = (
        delivered.group_by(key)
        .len()
        .sort(["len", key], descending=[True, False])
        .head(top)
        .select(key)
    )
    counted = (
        delivered.join(busiest, on=key, how="semi")
        .group_by(key, "delay_s")
        .agg(pl.len().alias("_n"))
    )
    return (
        _spread(counted, key, "delay_s")
        .group_by(key)
        .agg(
            pl.col("_n").sum().cast(pl.UInt32).alias("delivered"),
            _quantile(0.5).round(2).alias("median_delay_s"),
            _quantile(0.95).round(2).alias("p95_delay_s"),
            pl.col("delay_s").max().alias("max_delay_s"),
        )
        .sort(["delivered", key], descending=[True, False])
        .select(list(delay_schema(key)))
        .cast(delay_schema(key))  # type: ignore[arg-type]
    )


def _keys(events: pl.LazyFrame, key: str) -> pl.LazyFrame:
    """How many distinct `key`s have a delivery with a delay (what `top` cuts)."""
    return (
        _delivered_with_delay(events)
        .filter(pl.col(key).is_not_null())
        .select(pl.col(key).n_unique().alias(key))
    )


def queue_times(events: pl.LazyFrame) -> pl.LazyFrame:
    """The delivered attempts with a delay by queue-time bucket (`QUEUE_TIMES`), every bucket
    in its order, with its share; no rows when no delivery has a delay."""
    delay = pl.col("delay_s")
    bucket: pl.Expr = pl.lit(QUEUE_TIMES[-1][0])
    for name, limit in reversed(QUEUE_TIMES[:-1]):
        bucket = pl.when(delay < limit).then(pl.lit(name)).otherwise(bucket)
    counted = (
        _delivered_with_delay(events).group_by(bucket.alias("queue_time")).agg(pl.len().alias("n"))
    )
    names = pl.LazyFrame(
        {"queue_time": [name for name, _ in QUEUE_TIMES], "_order": range(len(QUEUE_TIMES))}
    )
    total = pl.col("delivered").sum()
    return (
        names.join(counted, on="queue_time", how="left")
        .sort("_order")
        .select("queue_time", pl.col("n").fill_null(0).cast(pl.UInt32).alias("delivered"))
        .with_columns((pl.col("delivered") / total).round(4).alias("share"))
        .filter(total > 0)
    )


def _weighted(events: pl.LazyFrame, weights: pl.DataFrame | None) -> tuple[pl.LazyFrame, pl.Expr]:
    """`events` with the weight of each (`_weight`): a whole-message event that the report
    gives to several recipients (`weights`: event_id, _weight) counts once for each, as in
    the report's attempts; every other event once."""
    if weights is None or weights.is_empty():
        return events.with_columns(pl.lit(1, pl.UInt32).alias("_weight")), pl.col("_weight")
    joined = events.join(weights.lazy(), on="event_id", how="left")
    return joined, pl.col("_weight").fill_null(1)


def _outcomes(weight: pl.Expr) -> list[pl.Expr]:
    event = pl.col("event")
    return [
        weight.sum().cast(pl.UInt32).alias("attempts"),
        weight.filter(event == "delivered").sum().cast(pl.UInt32).alias("delivered"),
        weight.filter(event == "deferred").sum().cast(pl.UInt32).alias("deferred"),
        weight.filter(failed()).sum().cast(pl.UInt32).alias("failed"),
        weight.filter(event == "complained").sum().cast(pl.UInt32).alias("complained"),
    ]


def failure_rate() -> pl.Expr:
    """`failure_rate`: the failed share of a row's `attempts` (null without any), rounded to 4
    places, as the hourly traffic, the sending hosts and the daily trend show it."""
    return failed_share("attempts").round(4).alias("failure_rate")


def hourly(events: pl.LazyFrame, weights: pl.DataFrame | None = None) -> pl.LazyFrame:
    """Attempts by hour of the day (0-23, UTC: the daily trend's days are UTC days), every
    day of the window added up: attempts, delivered, deferred, failed, complained and the
    failure rate; all 24 hours, those without traffic at zero."""
    weighted, weight = _weighted(events, weights)
    counted = weighted.group_by(pl.col("timestamp").dt.hour().alias("hour")).agg(_outcomes(weight))
    hours = pl.LazyFrame({"hour": range(24)}, schema={"hour": pl.Int8()})
    return (
        hours.join(counted.with_columns(pl.col("hour").cast(pl.Int8)), on="hour", how="left")
        .with_columns(pl.col(pl.UInt32).fill_null(0))
        .with_columns(failure_rate())
        .sort("hour")
        .select(list(HOURLY_SCHEMA))
        .cast(HOURLY_SCHEMA)  # type: ignore[arg-type]
    )


def sending_hosts(events: pl.LazyFrame, weights: pl.DataFrame | None = None) -> pl.LazyFrame:
    """Attempts by source and our sending host (`host`: Postfix's syslog host name, an ESP's
    sending IP; null where the log names none, as in Exim's mainlog), most attempts first:
    delivered, deferred, failed, `blocks` (failed and deferred attempts whose reply names a
    blocklist, as the blocks-by-list table counts them) and the failure rate."""
    weighted, weight = _weighted(events, weights)
    blocked = pl.col("blocklist").is_not_null() & (failed() | (pl.col("event") == "deferred"))
    return (
        weighted.group_by("source", "host")
        .agg(*_outcomes(weight), weight.filter(blocked).sum().cast(pl.UInt32).alias("blocks"))
        .with_columns(failure_rate())
        .sort(["attempts", "source", "host"], descending=[True, False, False], nulls_last=True)
        .select(list(HOSTS_SCHEMA))
        .cast(HOSTS_SCHEMA)  # type: ignore[arg-type]
    )


def informative_hosts(hosts: pl.DataFrame) -> bool:
    """Whether the sending-host table tells a reader something: it names more than one host,
    or an IP address (an ESP's sending IP, the address a blocklist or a provider's block
    names). A single Postfix host name is every attempt of the report again."""
    named = [host for host in hosts.get_column("host").to_list() if host is not None]
    if len(set(named)) > 1:
        return True
    return any(_is_address(host) for host in named)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def resolutions(
    events: pl.LazyFrame,
    *,
    message: Sequence[str],
    whole: pl.Expr,
    shares: Iterable[pl.LazyFrame] | None = None,
) -> pl.DataFrame:
    """What became of the recipients that were deferred, per provider: one row per provider
    with `deferred` (message and recipient pairs deferred at least once), how many were then
    `delivered`, how many `failed` for good, how many are still `pending` (their last event
    is a deferral), the median and 95th percentile of the time from the first deferral to the
    delivery, and the median time from the first deferral to the failure. Most deferred first.

    A pair is the report's final-outcome key: `message` (the columns that name a message, as
    `report` names it) and the recipient; its outcome is its last event (complaints aside,
    a deferral before another event of the same second), or the last event of the whole
    message (`whole`: Postfix's qmgr `status=expired` without a recipient) where that comes
    no earlier than a last deferral, as the report's final outcomes resolve it.

    Memory: a first streaming read keeps the messages with a deferral (their keys); a second
    groups the events of those messages alone by message and recipient, so the peak is about
    200 bytes for each deferred message and recipient read (a 30-day window of a server that
    defers 2 % of 10 million recipients: 200,000 pairs, some 40 MB), never the events.
    `shares` (the report's shares of `events`, each holding every event of its messages) are
    read one at a time instead of `events`, each holding its share of the pairs; what is kept
    from one share to the next is the pairs counted by provider, outcome and distinct time
    taken, so that the peak follows a share, not the window.
    """
    keys = list(message)
    event = pl.col("event")
    order = outcome_order()
    counted: pl.DataFrame | None = None
    for share in [events] if shares is None else shares:
        deferred = share.filter(event == "deferred").select(keys).unique()
        mine = share.join(deferred, on=keys, how="semi", nulls_equal=True)
        pairs = (
            mine.filter(pl.col("recipient").is_not_null() & (event != "complained") & ~whole)
            .group_by(*keys, "recipient")
            .agg(
                pl.col("timestamp").filter(event == "deferred").min().alias("_first"),
                event.sort_by(*order).last().alias("_event"),
                pl.col("timestamp").sort_by(*order).last().alias("_at"),
                pl.col("provider").sort_by(*order).last().fill_null("other").alias("provider"),
            )
            .filter(pl.col("_first").is_not_null())
        )
        ends = (
            mine.filter(whole)
            .group_by(keys)
            .agg(
                event.sort_by("timestamp", "event_id").last().alias("_end"),
                pl.col("timestamp").sort_by("timestamp", "event_id").last().alias("_end_at"),
            )
        )
        found, ended = pl.collect_all([pairs, ends], engine="streaming")
        given = (pl.col("_event") == "deferred") & (pl.col("_end_at") >= pl.col("_at"))
        outcome = found.join(ended, on=keys, how="left", nulls_equal=True).select(
            "provider",
            pl.when(given).then(pl.col("_end")).otherwise(pl.col("_event")).alias("event"),
            (pl.when(given).then(pl.col("_end_at")).otherwise(pl.col("_at")) - pl.col("_first"))
            .dt.total_microseconds()
            .truediv(1_000_000)
            .alias("_took"),
        )
        # the pairs counted by provider, outcome and distinct time taken: what is kept from
        # share to share grows with the distinct times (whole seconds in most logs), not
        # with the pairs of the window; the medians stay exact (`_quantile`)
        part = outcome.group_by("provider", "event", "_took").agg(pl.len().alias("_n"))
        both = part if counted is None else pl.concat([counted, part])
        counted = detached(
            both.group_by("provider", "event", "_took").agg(pl.col("_n").sum())
        )  # (not a view into the share's texts)
    if counted is None or counted.is_empty():
        return _empty(RESOLUTION_SCHEMA)
    n = pl.col("_n")
    delivered, failing = event == "delivered", failed()
    totals = counted.group_by("provider").agg(
        n.sum().alias("deferred"),
        n.filter(delivered).sum().alias("delivered"),
        n.filter(failing).sum().alias("failed"),
        n.filter(event == "deferred").sum().alias("pending"),
    )
    to_delivery = (
        _spread(counted.lazy().filter(delivered), "provider", "_took")
        .group_by("provider")
        .agg(
            _quantile(0.5, "_took").round(2).alias("median_to_delivery_s"),
            _quantile(0.95, "_took").round(2).alias("p95_to_delivery_s"),
        )
    )
    to_failure = (
        _spread(counted.lazy().filter(failing), "provider", "_took")
        .group_by("provider")
        .agg(_quantile(0.5, "_took").round(2).alias("median_to_failure_s"))
    )
    return (
        totals.lazy()
        .join(to_delivery, on="provider", how="left")
        .join(to_failure, on="provider", how="left")
        .sort(["deferred", "provider"], descending=[True, False])
        .select(list(RESOLUTION_SCHEMA))
        .cast(RESOLUTION_SCHEMA)  # type: ignore[arg-type]
        .collect()
    )


def summarize_delays(
    events: pl.LazyFrame,
    *,
    message: Sequence[str],
    whole: pl.Expr,
    weights: pl.DataFrame | None = None,
    shares: Iterable[pl.LazyFrame] | None = None,
    top: int = 10,
) -> Delays:
    """Every table of this module for the events of one report (the window and direction
    already chosen), `top` keys of the delay tables, the resolutions and the sending hosts
    (the rows left out in `omitted`). `message`, `whole`, `weights` and `shares` are the
    report's (`resolutions`, `hourly`)."""
    # one after the other: collected together, polars keeps the read they share in memory
    # (a 30-day window's columns), where each alone holds only its groups
    tables = [
        table.collect(engine="streaming")
        for table in (
            delivery_delays(events, "provider", top),
            delivery_delays(events, "recipient_domain", top),
            _keys(events, "provider"),
            _keys(events, "recipient_domain"),
            queue_times(events),
            hourly(events, weights),
            sending_hosts(events, weights),
        )
    ]
    providers, domains, provider_keys, domain_keys, buckets, hours, hosts = tables
    resolved = resolutions(events, message=message, whole=whole, shares=shares)
    omitted = {
        "provider_delays": max(0, int(provider_keys.item()) - top),
        "domain_delays": max(0, int(domain_keys.item()) - top),
        "resolutions": max(0, resolved.height - top),
        "sending_hosts": max(0, hosts.height - top),
    }
    return Delays(
        provider_delays=providers,
        domain_delays=domains,
        queue_times=buckets,
        resolutions=resolved.head(top),
        hourly=hours,
        sending_hosts=hosts.head(top),
        omitted=omitted,
    )
