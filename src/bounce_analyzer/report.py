"""Summaries of classified events: the frames behind `bounce-analyzer report`. Never prints.

Two views of the same events, both labelled in every rendering:
- attempts: every row counts (a message deferred three times counts three deferrals);
- final outcomes: one per message and recipient, its last event (deferred three times, then
  delivered, counts once, as delivered).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import polars as pl

from bounce_analyzer.errors import UsageError

if TYPE_CHECKING:
    from bounce_analyzer.pipeline import FileSummary

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


#: What MTAs wrap around the remote server's words; reports group by the words alone.
_WRAPPERS = (
    # host mx.example.com[192.0.2.1] said: 550 ...   (Postfix)
    r"^host \S+\[[^\]]*\] (?:said|refused to talk to me): ",
    # ... (in reply to RCPT TO command)   (Postfix)
    r"\s*\(in reply to [a-z /]+ command\)$",
    # SMTP error from remote mail server after RCPT TO:<a@b>: 550 ...   (Exim)
    r"^smtp error from remote mail server after [a-z ]+(?::<[^>]*>)?(?: size=\S+)?: ",
)


_TIMESTAMP = r"\b\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:[Zz]|[+-]\d{2}:?\d{2})?"


def message_key(text: pl.Expr) -> pl.Expr:
    """The remote server's words without the MTA's wrapping and without reply codes, normalized.

    Multi-line replies that the MTA or ESP joined (``550-5.1.1 The email ... 550-5.1.1
    double-checking ... 550 5.1.1 https://...``) lose their repeated codes, so that one reason
    is one line whichever source logged it; reports put the event's own codes in front.
    """
    from bounce_analyzer.classify import normalize_message

    unwrapped = text.str.replace_all("\\n", " ", literal=True)
    text = normalize_message(unwrapped.str.replace_all(_TIMESTAMP, "<time>")).str.replace_all(
        "<<address>>", "<address>", literal=True
    )
    for wrapper in _WRAPPERS:
        text = text.str.replace(wrapper, "")
    enhanced = r"[245]\.\d{1,3}\.\d{1,3}"
    return (
        # leading "550-5.1.1 ", "550 5.1.1 ", "550 ", "5.1.1 "
        text.str.replace(rf"^(?:[245]\d\d[ -]?)?(?:{enhanced})?\s+", "")
        # continuation lines joined into one: " 550-5.1.1 ", " 550 5.1.1 ", " 550-", " 5.1.1 "
        # (repeated, for the empty lines of a reply: " 5.7.26 5.7.26  Authentication results")
        .str.replace_all(rf"(?:\s[245]\d\d[ -]{enhanced})+\s", " ")
        .str.replace_all(r"\s[245]\d\d-", " ")
        .str.replace_all(rf"(?:\s{enhanced})+\s", " ")
        # numbered server names (mta1198.mail.bf1.yahoo.com -> mta#.mail.bf1.yahoo.com)
        .str.replace_all(r"\b([a-z]+)\d{3,}\b", "$1#")
        # Google's per-message id before its " - gsmtp" signature
        .str.replace(r"\S*\d\S* - gsmtp", "<id> - gsmtp")
        # the answering server's name as a signature (" - mta#.mail.bf2.yahoo.com")
        .str.replace(r" - [a-z0-9#-]+(?:\.[a-z0-9#-]+)+$", " - <host>")
        # other numbers left in the words (retry delays, counters): "try again in # minute(s)"
        .str.replace_all(r"\b\d+\b", "#")
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
    )


def message_with_codes() -> pl.Expr:
    """`[550 5.1.1] words...`: the event's own codes, then `message_key` of its diagnostic."""
    codes = pl.concat_str(
        [pl.col("smtp_code").cast(pl.String), pl.col("enhanced_code")],
        separator=" ",
        ignore_nulls=True,
    )
    words = message_key(pl.col("diagnostic")).fill_null("(no text)")
    return (
        pl.when(codes.str.len_chars() > 0)
        .then(pl.concat_str([pl.lit("["), codes, pl.lit("] "), words]))
        .otherwise(words)
    )


def _with_date(lf: pl.LazyFrame) -> pl.LazyFrame:
    return lf.with_columns(pl.col("timestamp").dt.date().alias("date"))


#: Columns that belong to the recipient: a whole-message event does not replace them.
_RECIPIENT_COLUMNS = ("recipient", "recipient_domain", "original_recipient", "provider")


#: The columns the counts need (the diagnostic text is read apart, for failures only).
_BASE_COLUMNS = (
    "event_id",
    "timestamp",
    "source",
    "host",
    "event",
    "message_ref",
    "recipient",
    "recipient_domain",
    "sender_domain",
    "provider",
    "category",
    "category_group",
    "bounce_type",
    "smtp_code",
    "enhanced_code",
)


def final_outcomes(events: pl.LazyFrame) -> pl.LazyFrame:
    """One row per message and recipient: its last delivery event (complaints aside).

    A deferral and the final event logged in the same second (Exim writes the last `==` and
    the `** retry timeout exceeded` together) are ordered deferral first, so the outcome is
    the final event. An event of a whole message, without a recipient (Postfix's qmgr
    `status=expired, returned to sender`), ends each recipient of that message still deferred
    before it: the recipient keeps its address, domain and provider and takes the event.
    """
    keys = ["source", "host", "_message"]
    columns = events.collect_schema().names()
    numbered = events.with_row_index("_row").with_columns(
        pl.coalesce(pl.col("message_ref"), pl.col("event_id")).alias("_message")
    )
    # The last row of each message and recipient, found on a few narrow columns (sorting the
    # whole frame would copy every column of every event).
    chosen = (
        numbered.filter(pl.col("event") != "complained")
        .select(*keys, "recipient", "_row", "timestamp", "event", "event_id")
        .group_by(*keys, "recipient")
        .agg(pl.col("_row").sort_by("timestamp", pl.col("event") != "deferred", "event_id").last())
        .select("_row")
    )
    last = numbered.join(chosen, on="_row", how="semi").drop("_row")
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
    # Everything but the remote servers' words, once, in memory: the words (the bulk of the
    # bytes) are read again, for failures only, when messages are grouped below.
    needed = dict.fromkeys([*_BASE_COLUMNS, *(k for k in keys if k != "date")])
    text = lf
    lf = _with_date(lf.select(list(needed))).collect().lazy()
    final = final_outcomes(lf).collect().lazy()  # used by several queries below
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
    message_expr = normalize if normalize is not None else message_with_codes()
    messages = (
        text.filter(pl.col("event").is_in((*FAILURES, "deferred")))
        .select("category", "smtp_code", "enhanced_code", "diagnostic")
        .with_columns(message_expr.fill_null("(no text)").alias("message"))
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


def _category_text(rules_dir: str | None) -> pl.DataFrame:
    from pathlib import Path

    from bounce_analyzer.rules import load_rules, user_rules_dir

    rules = load_rules(user_rules_dir(Path(rules_dir) if rules_dir else None))
    return rules.categories.select("category", "description", "advice")


def _finish(report: Report, rules_dir: str | None) -> Report:
    """Join each category's description and advice (from the rules) onto the report."""
    text = _category_text(rules_dir)
    report.categories = report.categories.join(text, on="category", how="left")
    return report


def report_store(
    store: str,
    *,
    since: datetime | None,
    until: datetime | None = None,
    by: list[str] | None = None,
    top: int = 10,
    rules_dir: str | None = None,
) -> Report:
    """The report over a store's events in [since, until); only those days are read."""
    from bounce_analyzer.store import open_store, scan_events, scan_quarantine

    opened = open_store(store, create=False)
    events = scan_events(opened.path, since=since, until=until)
    malformed = scan_quarantine(opened.path, since=since, until=until).select(pl.len()).collect()
    report = summarize(
        events,
        since=since,
        until=until,
        by=by,
        top=top,
        malformed=int(malformed.item()),
    )
    return _finish(report, rules_dir)


def report_paths(
    paths: list[str],
    *,
    since: datetime | None,
    until: datetime | None = None,
    by: list[str] | None = None,
    top: int = 10,
    source: str | None = None,
    tz: str | None = None,
    rules_dir: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[Report, list[FileSummary]]:
    """The report straight from log or event files, without a store.

    Events are staged in a temporary Parquet file, so memory stays bounded however large the
    inputs are.
    """
    import tempfile
    from pathlib import Path

    from bounce_analyzer.pipeline import ParseRun
    from bounce_analyzer.schema import EVENT_SCHEMA
    from bounce_analyzer.writers import EventFormat, EventWriter

    run = ParseRun(paths, source=source, tz=tz, rules_dir=rules_dir, progress=progress)
    with tempfile.TemporaryDirectory(prefix="bounce-analyzer-") as folder:
        staged = Path(folder) / "events.parquet"
        with staged.open("wb") as stream:
            writer = EventWriter(stream, EventFormat.parquet)
            for chunk in run:
                writer.write(chunk.events)
            writer.close(empty=pl.DataFrame(schema=EVENT_SCHEMA))
        malformed = sum(summary.malformed for summary in run.summaries)
        report = summarize(
            pl.scan_parquet(staged),
            since=since,
            until=until,
            by=by,
            top=top,
            malformed=malformed,
        )
    return _finish(report, rules_dir), run.summaries
