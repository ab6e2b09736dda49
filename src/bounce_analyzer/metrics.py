"""Counts of events in the Prometheus text exposition format (`bounce-analyzer metrics`).

A pure function of an events LazyFrame, as the report is: a few streaming group-bys, whose
rows (one per label set, not per event) become the samples. The output suits
node_exporter's textfile collector; docs/MONITORING.md lists the metrics and their labels.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime

import polars as pl

from bounce_analyzer.schema import FAILURES

#: Every metric's name starts so.
PREFIX = "bounce_analyzer_"

#: The label value of a missing provider, category, enhanced code (a delivery has no category).
NONE = "none"

#: The label value an enhanced code takes when the rules' tables do not know it.
OTHER = "other"

#: The reply classes an `X.` code of the rules' tables stands for.
_CLASSES = ("2", "4", "5")


def known_codes(table_codes: Iterable[str | None]) -> frozenset[str]:
    """The enhanced codes kept as label values: those of the rules' tables, with each `X.y.z`
    row standing for 2.y.z, 4.y.z and 5.y.z. A bounded set, whatever the logs hold."""
    known: set[str] = set()
    for code in table_codes:
        if not code:
            continue
        if code[:1] in "xX":
            known.update(f"{number}{code[1:]}" for number in _CLASSES)
        else:
            known.add(code)
    return frozenset(known)


def _escaped(column: str) -> pl.Expr:
    """A label value as the text format writes it: backslash, double quote and newline
    escaped."""
    return (
        pl.col(column)
        .cast(pl.String)
        .fill_null(NONE)
        .str.replace_all("\\", "\\\\", literal=True)
        .str.replace_all('"', '\\"', literal=True)
        .str.replace_all("\n", "\\n", literal=True)
    )


def _samples(counts: pl.DataFrame, name: str, labels: list[str]) -> list[str]:
    """`name{label="value",...} count` for each row of `counts` (its labels and `count`)."""
    if counts.is_empty():
        return []
    parts: list[pl.Expr | str] = []
    for index, label in enumerate(labels):
        parts += [pl.lit(f'{"," if index else ""}{label}="'), _escaped(label), pl.lit('"')]
    line = pl.concat_str(
        [pl.lit(f"{name}{{"), *parts, pl.lit("} "), pl.col("count").cast(pl.String)]
    )
    return counts.sort(labels, nulls_last=False).select(line).to_series().to_list()


def _family(name: str, kind: str, help_text: str, samples: list[str]) -> str:
    return "".join(
        f"{line}\n" for line in [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *samples]
    )


def render_metrics(
    events: pl.LazyFrame,
    *,
    until: datetime,
    since: datetime | None = None,
    codes: Collection[str] | None = None,
) -> str:
    """The events of [since, until) as Prometheus text exposition.

    Counters: events by direction, event, provider and category; by direction, event and
    enhanced code (a code `codes` does not hold counts as `other`; all are kept when `codes`
    is None); failures and deferrals by direction and the blocklist their text names. Gauges:
    the window's end (and start, when it has one) and the time of its last event, in seconds
    since the epoch.
    """
    window = events.filter(pl.col("timestamp") < until)
    if since is not None:
        window = window.filter(pl.col("timestamp") >= since)
    code = pl.col("enhanced_code")
    if codes is not None:
        code = pl.when(code.is_null() | code.is_in(list(codes))).then(code).otherwise(pl.lit(OTHER))
    by_event, by_code, by_list, last = pl.collect_all(
        [
            window.group_by("direction", "event", "provider", "category").agg(
                pl.len().alias("count")
            ),
            window.filter(pl.col("enhanced_code").is_not_null())
            .group_by("direction", "event", code.alias("enhanced_code"))
            .agg(pl.len().alias("count")),
            window.filter(
                pl.col("blocklist").is_not_null() & pl.col("event").is_in([*FAILURES, "deferred"])
            )
            .group_by("direction", "blocklist")
            .agg(pl.len().alias("count")),
            window.select(pl.col("timestamp").max()),
        ],
        engine="streaming",
    )
    events_name = f"{PREFIX}events_total"
    text = [
        _family(
            events_name,
            "counter",
            "Events (one per recipient and delivery attempt) by direction, event, receiving "
            "provider and failure category.",
            _samples(by_event, events_name, ["direction", "event", "provider", "category"]),
        ),
        _family(
            f"{PREFIX}enhanced_code_events_total",
            "counter",
            "Events with an enhanced status code, by direction, event and code (codes the "
            f"rules' tables do not know count as {OTHER}).",
            _samples(
                by_code,
                f"{PREFIX}enhanced_code_events_total",
                ["direction", "event", "enhanced_code"],
            ),
        ),
        _family(
            f"{PREFIX}blocklist_events_total",
            "counter",
            "Failures and deferrals whose reply names a DNS blocklist, by direction and list.",
            _samples(by_list, f"{PREFIX}blocklist_events_total", ["direction", "blocklist"]),
        ),
        _family(
            f"{PREFIX}window_end_timestamp_seconds",
            "gauge",
            "End of the counted window (exclusive), in seconds since the epoch.",
            [f"{PREFIX}window_end_timestamp_seconds {until.timestamp():.0f}"],
        ),
    ]
    if since is not None:
        text.append(
            _family(
                f"{PREFIX}window_start_timestamp_seconds",
                "gauge",
                "Start of the counted window, in seconds since the epoch.",
                [f"{PREFIX}window_start_timestamp_seconds {since.timestamp():.0f}"],
            )
        )
    newest = last.item()
    if newest is not None:
        text.append(
            _family(
                f"{PREFIX}last_event_timestamp_seconds",
                "gauge",
                "Time of the newest event counted, in seconds since the epoch (an old value: "
                "the logs stopped coming).",
                [f"{PREFIX}last_event_timestamp_seconds {newest.timestamp():.0f}"],
            )
        )
    return "".join(text)


__all__ = ["NONE", "OTHER", "PREFIX", "known_codes", "render_metrics"]
