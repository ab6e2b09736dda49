"""Summaries of classified events: the frames behind `bounce-analyzer report`. Never prints.

Two views of the same events, both labelled in every rendering:
- attempts: every row counts (a message deferred three times counts three deferrals);
- final outcomes: one per message and recipient, its last event (deferred three times, then
  delivered, counts once, as delivered).

Neither view is built row by row: the events are streamed (polars' streaming engine) into
counts by the few columns the tables show, and the failure texts into counts per distinct text,
so a report holds little more than those counts and one group-by over messages in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import polars as pl

from bounce_analyzer.errors import UsageError
from bounce_analyzer.normalize import message_keys, with_event_codes
from bounce_analyzer.schema import FAILURES

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
    twice = [name for name in dict.fromkeys(names) if names.count(name) > 1]
    if twice:
        raise UsageError(f"--by names {', '.join(twice)} more than once")
    return names


def _with_date(lf: pl.LazyFrame) -> pl.LazyFrame:
    return lf.with_columns(pl.col("timestamp").dt.date().alias("date"))


#: Columns that belong to the recipient: a whole-message event does not replace them.
_RECIPIENT_COLUMNS = ("recipient", "recipient_domain", "original_recipient", "provider")

#: The columns the counts are kept by, besides the `--by` columns (every table sums them).
_COUNTED = (
    "date",
    "event",
    "bounce_type",
    "category",
    "category_group",
    "recipient_domain",
    "sender_domain",
)

#: Of those, the ones the final-outcome tables need.
_FINAL_COUNTED = ("event", "bounce_type", "recipient_domain", "sender_domain")

#: The columns that find each message and recipient's last event.
_OUTCOME_COLUMNS = ("source", "host", "message_ref", "event_id", "recipient", "timestamp", "event")

#: The columns the top messages are grouped by.
_TEXT_COLUMNS = ("category", "smtp_code", "enhanced_code", "diagnostic")

#: Events whose text `categories` and `messages` count: failures and deferrals.
_FAILED_OR_DEFERRED = (*FAILURES, "deferred")

#: At most this many events are summarized in one pass; more are split into passes by message
#: (a hash of its key), each reading the window again. The group-by over messages and
#: recipients takes about 300 bytes a key, so a pass stays under 1 GB; below this size, more
#: passes would cost a read each and save little (docs/REPORTS.md).
_PASS_EVENTS = 3_000_000


def _message() -> pl.Expr:
    """The message an event belongs to: its queue or message id, else the event itself."""
    return pl.coalesce(pl.col("message_ref"), pl.col("event_id")).alias("_message")


def _last_rows(numbered: pl.LazyFrame) -> pl.LazyFrame:
    """`_row` of each message and recipient's last event (complaints aside).

    Grouped on a few narrow columns: sorting the events would copy every column of every
    event. Polars runs the sort within each group as a streaming `max_by`.
    """
    return (
        numbered.filter(pl.col("event") != "complained")
        .select("_row", "source", "host", _message(), "recipient", "timestamp", "event", "event_id")
        .group_by("source", "host", "_message", "recipient")
        .agg(pl.col("_row").sort_by("timestamp", pl.col("event") != "deferred", "event_id").last())
        .select("_row")
    )


def final_outcomes(events: pl.LazyFrame) -> pl.LazyFrame:
    """One row per message and recipient: its last delivery event (complaints aside).

    A deferral and the final event logged in the same second (Exim writes the last `==` and
    the `** retry timeout exceeded` together) are ordered deferral first, so the outcome is
    the final event. An event of a whole message, without a recipient (Postfix's qmgr
    `status=expired, returned to sender`), ends each recipient of that message still deferred
    before it: the recipient keeps its address, domain and provider and takes the event.
    `events` is read twice and must give its rows in the same order each time.
    """
    keys = ["source", "host", "_message"]
    columns = events.collect_schema().names()
    numbered = events.with_row_index("_row")
    last = (
        numbered.join(_last_rows(numbered), on="_row", how="semi")
        .drop("_row")
        .with_columns(_message())
    )
    whole = pl.col("recipient").is_null() & pl.col("message_ref").is_not_null()
    ends = last.filter(whole)
    taken = [c for c in columns if c not in (*keys, *_RECIPIENT_COLUMNS)]
    rest = last.filter(~whole)
    # Only the (few) messages with a whole-message event need the join.
    untouched = rest.join(ends.select(keys), on=keys, how="anti", nulls_equal=True)
    joined = rest.join(ends.select(keys), on=keys, how="semi", nulls_equal=True).join(
        ends.select(*keys, *(pl.col(c).alias(f"{c}_end") for c in taken)),
        on=keys,
        how="left",
        nulls_equal=True,
    )
    ended = (pl.col("event") == "deferred") & (pl.col("timestamp_end") >= pl.col("timestamp"))
    joined = joined.with_columns(
        *(pl.when(ended).then(pl.col(f"{c}_end")).otherwise(pl.col(c)).alias(c) for c in taken),
        ended.fill_null(False).alias("_ended"),
    )
    used = joined.filter(pl.col("_ended")).select(keys).unique()
    unused = ends.join(used, on=keys, how="anti", nulls_equal=True)
    return pl.concat([untouched.select(columns), joined.select(columns), unused.select(columns)])


def _count_pass(
    numbered: pl.LazyFrame, counted: list[str], final_counted: list[str]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Attempts and final outcomes of `numbered`, counted (`_events`) by `counted` columns.

    A first read finds each message and recipient's last row, and the messages with a
    whole-message event; a second counts every row as an attempt and the last rows as final
    outcomes. The rows of the messages with a whole-message event (few: Postfix's expiries)
    are counted through `final_outcomes` instead, which gives that event to the recipients it
    ends.
    """
    last = _last_rows(numbered).collect(engine="streaming").get_column("_row")
    wholes = (
        numbered.filter(
            pl.col("recipient").is_null()
            & pl.col("message_ref").is_not_null()
            & (pl.col("event") != "complained")
        )
        .select("source", "host", pl.col("message_ref").alias("_message"))
        .unique()
        .collect(engine="streaming")
    )
    marked = numbered.with_columns(pl.col("_row").is_in(last.implode()).alias("_last"))
    is_final = pl.col("_last")
    queries = []
    if not wholes.is_empty():
        marked = marked.with_columns(_message()).join(
            wholes.lazy().with_columns(pl.lit(True).alias("_whole")),
            on=["source", "host", "_message"],
            how="left",
            nulls_equal=True,
        )
        is_final = is_final & pl.col("_whole").is_null()
        outcome_columns = list(dict.fromkeys([*_OUTCOME_COLUMNS, *final_counted]))
        queries.append(marked.filter(pl.col("_whole")).select(outcome_columns))
    counted_rows = marked.group_by(counted).agg(
        pl.len().alias("_events"), is_final.sum().alias("_final")
    )
    counts, *special = pl.collect_all([counted_rows, *queries], engine="streaming")
    attempts = counts.drop("_final")
    final = counts.filter(pl.col("_final") > 0).select(
        *final_counted, pl.col("_final").alias("_events")
    )
    # collected first: `final_outcomes` reads its input twice, in the same order each time
    ended = [
        final_outcomes(rows.lazy()).group_by(final_counted).agg(pl.len().alias("_events")).collect()
        for rows in special
    ]
    return attempts, pl.concat([final, *ended])


def _text_pass(numbered: pl.LazyFrame, normalize: pl.Expr | None) -> pl.DataFrame:
    """The failures and deferrals of `numbered` by (category, message): count, first row, text.

    Grouped first by distinct text and codes, so that the masking runs once per text.
    """
    texts = (
        numbered.filter(pl.col("event").is_in(_FAILED_OR_DEFERRED))
        .select("_row", *_TEXT_COLUMNS)
        .group_by(_TEXT_COLUMNS)
        .agg(pl.len().alias("count"), pl.col("_row").min())
        .collect(engine="streaming")
    )
    if normalize is None:
        texts = message_keys(texts)
        normalize = with_event_codes(pl.col("_key"))
    return (
        texts.with_columns(normalize.fill_null("(no text)").alias("message"))
        .group_by("category", "message")
        .agg(
            pl.col("count").sum(),
            pl.col("diagnostic").sort_by("_row").first().alias("example"),
            pl.col("_row").min(),
        )
    )


def _counts(counted: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """The event counts of each group of `keys`; `counted` holds `_events` events per row."""
    rows = pl.col("_events")
    event = pl.col("event")
    failed = event.is_in(FAILURES)
    return counted.group_by(keys).agg(
        rows.sum().alias("total"),
        rows.filter(event == "delivered").sum().alias("delivered"),
        rows.filter(event == "deferred").sum().alias("deferred"),
        rows.filter(failed).sum().alias("failed"),
        rows.filter(failed & (pl.col("bounce_type") == "hard")).sum().alias("hard"),
        rows.filter(failed & (pl.col("bounce_type") == "soft")).sum().alias("soft"),
        rows.filter(event == "complained").sum().alias("complained"),
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
    categories: pl.DataFrame | None = None,
) -> Report:
    """Summarize classified events (a LazyFrame of the event table) within [since, until).

    `events` is read a few times and must give its rows in the same order each time (a scan
    of files or a frame does). Above `_PASS_EVENTS` events it is read in several passes, each
    over a share of the messages, so that memory does not grow with the input. `normalize`
    replaces `normalize.message_with_codes` as the message of a failure; it is evaluated once per
    distinct (category, smtp_code, enhanced_code, diagnostic). `categories` (category,
    description, advice: `Rules.categories`) gives the category table its description and
    advice columns. `malformed` is the number of records set aside, for the report to show.
    """
    keys = by or ["provider"]
    lf = events
    if since is not None:
        lf = lf.filter(pl.col("timestamp") >= since)
    if until is not None:
        lf = lf.filter(pl.col("timestamp") < until)
    numbered = _with_date(lf).with_row_index("_row")
    counted = list(dict.fromkeys([*keys, *_COUNTED]))
    final_counted = list(dict.fromkeys([*keys, *_FINAL_COUNTED]))
    passes = max(1, -(-int(lf.select(pl.len()).collect().item()) // _PASS_EVENTS))
    attempt_parts, final_parts, text_parts = [], [], []
    for part in range(passes):
        # a pass counts the events of a share of the messages (all the events of a message
        # together, as its final outcome needs) and the failure texts of a share of the texts
        messages, failures = numbered, numbered
        if passes > 1:
            messages = numbered.filter(
                pl.struct("source", "host", _message()).hash() % passes == part
            )
            failures = numbered.filter(pl.col("diagnostic").hash() % passes == part)
        attempted, ended = _count_pass(messages, counted, final_counted)
        attempt_parts.append(attempted)
        final_parts.append(ended)
        text_parts.append(_text_pass(failures, normalize))
    attempts, final = pl.concat(attempt_parts), pl.concat(final_parts)
    totals = pl.concat(
        [
            _counts(attempts.with_columns(pl.lit("attempts").alias("view")), ["view"]),
            _counts(final.with_columns(pl.lit("final outcomes").alias("view")), ["view"]),
        ]
    ).with_columns(_rate("failed", "total").alias("failure_rate"))
    groups = (
        _counts(final, keys)
        .rename({"total": "messages"})
        .join(
            _counts(attempts, keys).select(
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
    rows = pl.col("_events")
    event = pl.col("event")
    by_category = (
        attempts.filter(event.is_in(_FAILED_OR_DEFERRED))
        .group_by("category", "category_group")
        .agg(
            rows.sum().alias("count"),
            rows.filter(event.is_in(FAILURES)).sum().alias("failed"),
            rows.filter(event == "deferred").sum().alias("deferred"),
            rows.filter(pl.col("bounce_type") == "hard").sum().alias("hard"),
            rows.filter(pl.col("bounce_type") == "soft").sum().alias("soft"),
        )
        .with_columns((pl.col("count") / pl.col("count").sum()).round(4).alias("share"))
        .sort(["count", "category"], descending=[True, False])
    )
    if categories is not None:
        text = categories.select("category", "description", "advice")
        by_category = by_category.join(text, on="category", how="left")
    top_messages = (
        pl.concat(text_parts)
        .group_by("category", "message")
        .agg(pl.col("count").sum(), pl.col("example").sort_by("_row").first())
        .sort(["category", "count", "message"], descending=[False, True, False])
        .group_by("category", maintain_order=True)
        .head(top)
    )
    daily = (
        attempts.group_by("date")
        .agg(
            rows.filter(event == "delivered").sum().alias("delivered"),
            rows.filter(event == "deferred").sum().alias("deferred"),
            rows.filter(event.is_in(FAILURES)).sum().alias("failed"),
            rows.filter(event == "complained").sum().alias("complained"),
        )
        .sort("date")
    )

    def top_domains(column: str) -> pl.DataFrame:
        return (
            _counts(final.filter(pl.col(column).is_not_null()), [column])
            .rename({"total": "messages"})
            .with_columns(_rate("failed", "messages").alias("failure_rate"))
            .sort(["failed", "messages", column], descending=[True, True, False])
            .head(top)
        )

    return Report(
        since=since,
        until=until,
        totals=totals,
        by=keys,
        groups=groups,
        categories=by_category,
        messages=top_messages,
        daily=daily,
        recipient_domains=top_domains("recipient_domain"),
        sender_domains=top_domains("sender_domain"),
        malformed=malformed,
    )
