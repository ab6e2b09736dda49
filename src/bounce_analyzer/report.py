"""Summaries of classified events: the frames behind `bounce-analyzer report`. Never prints.

A report is about one direction of mail (`direction`: outbound by default, inbound, or all):
the other events of the window are counted, not summarized. Inbound mail also gets its own
section (`Inbound`): our server's refusals by reason, the clients refused, the local
recipients aimed at, and the deliveries into our mailboxes.

Two views of the same events, both labelled in every rendering:
- attempts: every row counts (a message deferred three times counts three deferrals);
- final outcomes: one per message and recipient, its last event (deferred three times, then
  delivered, counts once, as delivered).

Neither view is built row by row: the events are streamed (polars' streaming engine) into
counts by the few columns the tables show, and the failure texts into counts per distinct text,
so a report holds little more than those counts and one group-by over messages in memory; a
window of more than `_PASS_EVENTS` events is split by message into shares on disk, one
group-by each (`shares.py`), so that this group-by does not grow with the window either.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date, datetime

import polars as pl

from bounce_analyzer.delays import Delays, summarize_delays
from bounce_analyzer.errors import UsageError
from bounce_analyzer.normalize import message_keys, with_event_codes
from bounce_analyzer.options import GROUPABLE as GROUPABLE  # (defined there: see options)
from bounce_analyzer.options import ReportDirection as ReportDirection
from bounce_analyzer.schema import (
    DIRECTIONS,
    FAILURES,
    WORDS_RULE,
    advice_for,
    failed,
    failed_share,
    hard_failure,
    outcome_order,
    soft_failure,
)
from bounce_analyzer.shares import detached, split_by_hash

REPORT_DIRECTIONS = tuple(direction.value for direction in ReportDirection)

#: Why our server refused a client: each reason with what the refusal's text says, tried in
#: this order after the blocklist the classification named (`blocklist`) and after
#: postscreen's own tests (`transport` postscreen); the first that matches is the reason. The
#: texts are those Postfix and Exim write (and the usual policy services and milters):
#: `Relay access denied`, `relay not permitted`; `Greylisted`, Exim's greylisting ACL's `is not
#: yet authorized to deliver mail from`; `Helo command rejected`,
#: `Client host rejected: cannot find your hostname`; `Sender address rejected: Domain not
#: found`; `User unknown in local recipient table`, `Unrouteable address`; `milter-reject`,
#: `rejected after DATA: ... spam`. docs/REPORTS.md lists them.
_REJECT_REASONS = (
    ("relay access denied", r"relay access denied|relay not permitted|relaying denied"),
    ("greylisting", r"greyl|grayl|not yet authorized to deliver"),
    (
        "helo/ptr checks",
        r"helo command rejected|invalid helo|helo name|cannot find your (?:reverse )?hostname"
        r"|reverse dns|reverse hostname|\bptr\b",
    ),
    (
        "sender/domain checks",
        r"sender address rejected|sender domain|sender verify failed|unverifiable sender"
        r"|domain not found|\bspf\b",
    ),
    (
        "unknown user",
        r"user unknown|unknown user|no such user|unrouteable address|mailbox unavailable"
        r"|undeliverable address|invalid recipient|unknown in (?:local|virtual|relay)",
    ),
    ("content/milter", r"spam|virus|malware|milter|content|attachment|message rejected"),
)

#: Every value of `reject_reason`, in the order of the table (blocklist and postscreen first).
REJECT_REASONS = (
    "blocklist",
    "postscreen",
    *(reason for reason, _ in _REJECT_REASONS),
    "other",
)

#: A blocklist a text names without the blocklist table knowing the list (a private zone).
_UNNAMED_BLOCKLIST = r"blocked using|listed at|listed in|\bdnsbl\b|\brbl\b"


def reject_reason() -> pl.Expr:
    """Why our server refused a client (one of `REJECT_REASONS`), for an inbound reject; null
    for every other event. One expression over the whole frame."""
    text = pl.col("diagnostic").fill_null("").str.to_lowercase()
    cases = [
        (pl.col("blocklist").is_not_null() | text.str.contains(_UNNAMED_BLOCKLIST), "blocklist"),
        (pl.col("transport") == "postscreen", "postscreen"),
        *((text.str.contains(pattern), reason) for reason, pattern in _REJECT_REASONS),
        (pl.col("transport") == "cleanup", "content/milter"),  # a milter or header check
    ]
    reason: pl.Expr = pl.lit("other")
    for condition, name in reversed(cases):
        reason = pl.when(condition).then(pl.lit(name)).otherwise(reason)
    rejected = (pl.col("direction") == "inbound") & (pl.col("event") == "rejected")
    return pl.when(rejected).then(reason)


@dataclass
class Inbound:
    """The inbound section: what our server refused, and what it delivered to our mailboxes."""

    rejects: pl.DataFrame  # reject_reason, blocklist, rejects, share
    clients: pl.DataFrame  # client_host, client_ip, rejects (the clients refused most)
    recipients: pl.DataFrame  # recipient, rejected, delivered, deferred, failed (no relaying)
    deliveries: pl.DataFrame  # transport, delivered, deferred, failed (attempts)


#: The columns of `Report.blocklists`.
BLOCKS_SCHEMA: dict[str, pl.DataType] = {
    "direction": pl.String(),
    "blocklist": pl.String(),
    "attempts": pl.UInt32(),
    "failed": pl.UInt32(),
    "deferred": pl.UInt32(),
    "providers": pl.String(),
    "label": pl.String(),
    "lookup": pl.String(),
}

#: The columns of the advised-waits table (`waits`).
WAITS_SCHEMA: dict[str, pl.DataType] = {
    "provider": pl.String(),
    "category": pl.String(),
    "attempts": pl.UInt32(),
    "median_wait_s": pl.Int32(),
    "max_wait_s": pl.Int32(),
}

#: The columns of the unclassified texts (`unclassified_texts`).
UNCLASSIFIED_SCHEMA: dict[str, pl.DataType] = {
    "message": pl.String(),
    "count": pl.UInt32(),
    "provider": pl.String(),
    "rule_id": pl.String(),
    "example": pl.String(),
}


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
    #: Rows that `top` left out of each cut table ("groups", "messages", "recipient_domains",
    #: "sender_domains", and "clients", "recipients" of the inbound section).
    omitted: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: The report of the previous period of equal length, where this one is compared with it
    #: (`compare.with_previous`, `report --compare`).
    previous: Report | None = None
    #: The direction shown: one of `REPORT_DIRECTIONS`.
    direction: str = "outbound"
    #: The events of the window by direction (`unknown` for those without), shown or not.
    directions: dict[str, int] = field(default_factory=dict)
    #: The inbound section, for the inbound and all directions.
    inbound: Inbound | None = None
    #: Failures and deferrals whose text names a blocklist, by list (attempts): direction,
    #: blocklist, attempts, failed, deferred, providers (those refused most, up to three),
    #: label and lookup (the page to look the address up on, where the rules know the list).
    blocklists: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=BLOCKS_SCHEMA))
    #: The waits the servers asked for (`retry_after`) by provider and category: `waits`.
    waits: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=WAITS_SCHEMA))
    #: The texts that fell to a fallback rule, most frequent first: `unclassified_texts`.
    unclassified: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(schema=UNCLASSIFIED_SCHEMA)
    )
    #: Delivery delays, the queue-time histogram, deferral resolutions, hourly traffic and
    #: the sending hosts (`delays.summarize_delays`).
    delays: Delays = field(default_factory=Delays)


#: What hard and soft mean, in every view: a failure is hard when the classification says the
#: address itself is bad (`bounce_type` hard); every other failure is soft.
BOUNCE_TYPES = {
    "hard": "the address itself is bad (suppress it)",
    "soft": "any other failure, a block of our IP or domain included however permanent (fix "
    "the cause, or let it retry)",
}


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


def _with_derived(lf: pl.LazyFrame, keys: list[str]) -> pl.LazyFrame:
    """`lf` with the columns a report derives: `date`, and `reject_reason` when grouped by."""
    derived = [pl.col("timestamp").dt.date().alias("date")]
    if "reject_reason" in keys:
        derived.append(reject_reason().alias("reject_reason"))
    return lf.with_columns(derived)


#: Columns that belong to the recipient: a whole-message event does not replace them.
_RECIPIENT_COLUMNS = ("recipient", "recipient_domain", "original_recipient", "provider")

#: The columns the attempts are counted by, besides the `--by` columns (every table of
#: attempts sums them). Not the domains: a table of attempts by day and domain would grow
#: with the window's days times its domains; the domain tables count final outcomes.
_COUNTED = ("date", "direction", "event", "bounce_type", "category", "category_group")

#: The columns the final outcomes are counted by, besides the `--by` columns.
_FINAL_COUNTED = ("direction", "event", "bounce_type", "recipient_domain", "sender_domain")

#: The columns that find each message and recipient's last event.
_OUTCOME_COLUMNS = ("source", "host", "message_ref", "event_id", "recipient", "timestamp", "event")

#: The columns the top messages are grouped by.
_TEXT_COLUMNS = ("direction", "category", "smtp_code", "enhanced_code", "diagnostic")

#: Events whose text `categories` and `messages` count: failures and deferrals.
_FAILED_OR_DEFERRED = (*FAILURES, "deferred")

#: At most this many events are summarized in one pass. A window with more is split in one
#: read into shares by message (a hash of its key: every event of a message in one share),
#: written to temporary files (`shares.split_by_hash`), and each share is summarized alone, its
#: counts added to the others'. The group-by over messages and recipients holds a pass's keys,
#: so the peak follows the size of a share, not of the window: a 30-day window costs about
#: what a one-day window of a million events does, shares being smaller than such a day
#: (docs/STORE.md, "Reports in bounded memory"). Below this size the split would cost a
#: write and save little.
_PASS_EVENTS = 500_000


def _message() -> pl.Expr:
    """The message an event belongs to: its queue or message id, else the event itself."""
    return pl.coalesce(pl.col("message_ref"), pl.col("event_id")).alias("_message")


#: The columns that name a message (with `_message`).
_MESSAGE_KEYS = ["source", "host", "_message"]


def _whole() -> pl.Expr:
    """A whole-message event: one that names its message but no recipient (Postfix's qmgr
    `status=expired, returned to sender`); complaints aside."""
    return (
        pl.col("recipient").is_null()
        & pl.col("message_ref").is_not_null()
        & (pl.col("event") != "complained")
    )


def _last_rows(numbered: pl.LazyFrame) -> pl.LazyFrame:
    """`_row` of each message and recipient's last event (complaints aside).

    Grouped on a few narrow columns: sorting the events would copy every column of every
    event. Polars runs the sort within each group as a streaming `max_by`.
    """
    return (
        numbered.filter(pl.col("event") != "complained")
        .select("_row", "source", "host", _message(), "recipient", "timestamp", "event", "event_id")
        .group_by(*_MESSAGE_KEYS, "recipient")
        .agg(pl.col("_row").sort_by(*outcome_order()).last())
        .select("_row")
    )


def _complaint_rows(numbered: pl.LazyFrame) -> pl.LazyFrame:
    """`_row` of each message and recipient's first complaint: a recipient who complains about
    a message counts once in the final-outcome view, beside its delivery."""
    return (
        numbered.filter(pl.col("event") == "complained")
        .select("_row", "source", "host", _message(), "recipient")
        .group_by(*_MESSAGE_KEYS, "recipient")
        .agg(pl.col("_row").min())
        .select("_row")
    )


def _given_to_recipients(rows: pl.LazyFrame) -> pl.LazyFrame:
    """`rows` (every event of some messages) with each message's whole-message events given to
    the recipients they end.

    A recipient whose last event (complaints aside) is a deferral no later than the message's
    last whole-message event takes that event: it keeps its address, domain and provider and
    takes the rest (event, time, text, category ...). The whole-message events of a message
    that ends some recipient go; those of a message that ends none stay as they are, a message
    of their own without a recipient.
    """
    columns = rows.collect_schema().names()
    own = [c for c in _RECIPIENT_COLUMNS if c in columns]
    taken = [c for c in columns if c not in ("source", "host", *own)]
    keyed = rows.with_columns(_message())
    ends = (
        keyed.filter(_whole())
        .sort("timestamp", "event_id")
        .unique(subset=_MESSAGE_KEYS, keep="last", maintain_order=True)
    )
    lasts = (
        keyed.filter(~_whole() & (pl.col("event") != "complained"))
        .sort("timestamp", pl.col("event") != "deferred", "event_id")
        .unique(subset=[*_MESSAGE_KEYS, "recipient"], keep="last", maintain_order=True)
    )
    ended = lasts.join(
        ends.select(*_MESSAGE_KEYS, pl.col("timestamp").alias("_end_at")),
        on=_MESSAGE_KEYS,
        nulls_equal=True,
    ).filter((pl.col("event") == "deferred") & (pl.col("_end_at") >= pl.col("timestamp")))
    copies = ended.select(*_MESSAGE_KEYS, *own).join(
        ends.select(*_MESSAGE_KEYS, *taken), on=_MESSAGE_KEYS, nulls_equal=True
    )
    used = ended.select(*_MESSAGE_KEYS).unique().with_columns(pl.lit(True).alias("_used"))
    kept = keyed.join(used, on=_MESSAGE_KEYS, how="left", nulls_equal=True).filter(
        ~(_whole() & pl.col("_used").fill_null(False))
    )
    return pl.concat([kept.select(columns), copies.select(columns)])


def final_outcomes(events: pl.LazyFrame) -> pl.LazyFrame:
    """One row per message and recipient: its last delivery event (complaints aside).

    A deferral and the final event logged in the same second (Exim writes the last `==` and
    the `** retry timeout exceeded` together) are ordered deferral first, so the outcome is
    the final event. An event of a whole message, without a recipient (Postfix's qmgr
    `status=expired, returned to sender`), ends each recipient of that message still deferred
    before it (`_given_to_recipients`); when it ends none, it is a message of its own. The
    events are collected: `summarize` counts the same rows without building them.
    """
    numbered = _given_to_recipients(events).collect().lazy().with_row_index("_row")
    return numbered.join(_last_rows(numbered), on="_row", how="semi").drop("_row")


def _count_rows(
    numbered: pl.LazyFrame, counted: list[str], final_counted: list[str]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Attempts and final outcomes of `numbered`, counted (`_events`) by `counted` and
    `final_counted` columns, with no whole-message event to resolve."""
    chosen = _final_rows(numbered).collect(engine="streaming")
    marked = _marked_final(numbered, chosen)
    attempts, ended = pl.collect_all(_tallies(marked, counted, final_counted), engine="streaming")
    return attempts, ended


def _final_rows(numbered: pl.LazyFrame) -> pl.LazyFrame:
    """The `_row` of each message and recipient's final outcome (its last row) and of its
    first complaint: the rows a report counts as outcomes."""
    return pl.concat([_last_rows(numbered), _complaint_rows(numbered)])


def _marked_final(numbered: pl.LazyFrame, chosen: pl.DataFrame) -> pl.LazyFrame:
    """`numbered` with `_final`: whether its `_row` is one of `chosen`'s."""
    return numbered.with_columns(
        pl.col("_row").is_in(chosen.get_column("_row").implode()).alias("_final")
    )


def _tallies(
    marked: pl.LazyFrame, counted: list[str], final_counted: list[str]
) -> list[pl.LazyFrame]:
    """The attempts of `marked` (every row) by `counted` columns and its final outcomes (the
    rows marked `_final`) by `final_counted` columns, `_events` each."""
    return [
        marked.group_by(counted).agg(pl.len().alias("_events")),
        marked.filter(pl.col("_final")).group_by(final_counted).agg(pl.len().alias("_events")),
    ]


def _count_pass(
    numbered: pl.LazyFrame, counted: list[str], final_counted: list[str]
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Attempts and final outcomes of `numbered`, counted (`_events`) by `counted` columns; and
    the weight of each whole-message event given to several recipients (`event_id`,
    `_weight`), for the failure texts to count it as often.

    A first read finds each message and recipient's last row (and first complaint), and the
    messages with a whole-message event; a second counts every row as an attempt and the
    chosen rows as final outcomes. The rows of the messages with a whole-message event (few:
    Postfix's expiries) are collected and counted apart, once the event is given to the
    recipients it ends (`_given_to_recipients`): in both views it then counts once for each
    of them.
    """
    chosen, wholes = pl.collect_all(
        [
            _final_rows(numbered),
            numbered.filter(_whole())
            .select("source", "host", pl.col("message_ref").alias("_message"))
            .unique(),
        ],
        engine="streaming",
    )
    marked = _marked_final(numbered, chosen)
    special: list[pl.LazyFrame] = []
    if not wholes.is_empty():
        marked = marked.with_columns(_message()).join(
            wholes.lazy().with_columns(pl.lit(True).alias("_whole")),
            on=_MESSAGE_KEYS,
            how="left",
            nulls_equal=True,
        )
        needed = [*_OUTCOME_COLUMNS, *_RECIPIENT_COLUMNS, *counted, *final_counted]
        needed = list(dict.fromkeys(needed))
        special.append(marked.filter(pl.col("_whole")).select(needed))
        marked = marked.filter(pl.col("_whole").is_null())
    tallies = _tallies(marked, counted, final_counted)
    attempts, final, *rows = pl.collect_all([*tallies, *special], engine="streaming")
    weights = pl.DataFrame(schema={"event_id": pl.String(), "_weight": pl.UInt32()})
    if rows:
        # collected first: the rows are read twice and must come in the same order each time
        given = _given_to_recipients(rows[0].lazy()).collect().lazy().with_row_index("_row")
        more_attempts, more_final = _count_rows(given, counted, final_counted)
        attempts = pl.concat([attempts, more_attempts])
        final = pl.concat([final, more_final])
        weights = (
            given.join(
                rows[0].lazy().filter(_whole()).select("event_id"), on="event_id", how="semi"
            )
            .group_by("event_id")
            .agg(pl.len().alias("_weight"))
            .collect()
        )
    return attempts, final, weights


def _added(total: pl.DataFrame | None, part: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """The counts (`_events`, and `_final` where there is one) of `total` and `part` added up by
    `keys`: one row per group of either. With no `total`, `part` as it is."""
    if total is None:
        return part
    sums = [c for c in ("_events", "_final") if c in part.columns]
    return (
        pl.concat([total, part])
        .group_by(keys, maintain_order=True)
        .agg(pl.col(sums).sum())
        .cast({c: part.schema[c] for c in sums})
    )


def _added_texts(total: pl.DataFrame | None, part: pl.DataFrame) -> pl.DataFrame:
    """The failure texts of `total` and `part` (`_text_pass`) by direction, category and
    message: counts added up, the example and row of the first."""
    both = part if total is None else pl.concat([total, part])
    return (
        both.group_by("direction", "category", "message")
        .agg(
            pl.col("count").sum(),
            pl.col("example").sort_by("_row").first(),
            pl.col("_row").min(),
        )
        .cast({"count": part.schema["count"]})
    )


def _text_pass(
    numbered: pl.LazyFrame, normalize: pl.Expr | None, weights: pl.DataFrame
) -> pl.DataFrame:
    """The failures and deferrals of `numbered` by (category, message): count, first row, text.

    Grouped first by distinct text and codes, so that the masking runs once per text. A
    whole-message event given to several recipients counts once for each (`weights`), as in
    the category counts.
    """
    failures = numbered.filter(pl.col("event").is_in(_FAILED_OR_DEFERRED)).select(
        "_row", "event_id", *_TEXT_COLUMNS
    )
    weight = pl.len()
    if not weights.is_empty():
        failures = failures.join(weights.lazy(), on="event_id", how="left")
        weight = pl.col("_weight").fill_null(1).sum()
    texts = (
        failures.group_by(_TEXT_COLUMNS)
        .agg(weight.alias("count"), pl.col("_row").min())
        .collect(engine="streaming")
    )
    if normalize is None:
        texts = message_keys(texts)
        normalize = with_event_codes(pl.col("_key"))
    return (
        texts.with_columns(normalize.fill_null("(no text)").alias("message"))
        .group_by("direction", "category", "message")
        .agg(
            pl.col("count").sum(),
            pl.col("diagnostic").sort_by("_row").first().alias("example"),
            pl.col("_row").min(),
        )
    )


def _counts(counted: pl.DataFrame, keys: list[str], *, outcomes: bool = False) -> pl.DataFrame:
    """The event counts of each group of `keys`; `counted` holds `_events` events per row.

    `total` counts every event, or with `outcomes` (the final-outcome view) every outcome: a
    complaint is counted beside the delivery it is about, not as a message of its own.
    """
    rows = pl.col("_events")
    event = pl.col("event")
    return counted.group_by(keys).agg(
        (rows.filter(event != "complained") if outcomes else rows).sum().alias("total"),
        rows.filter(event == "delivered").sum().alias("delivered"),
        rows.filter(event == "deferred").sum().alias("deferred"),
        rows.filter(failed()).sum().alias("failed"),
        rows.filter(hard_failure()).sum().alias("hard"),
        rows.filter(soft_failure()).sum().alias("soft"),
        rows.filter(event == "complained").sum().alias("complained"),
    )


#: The columns that tell one row of the category table from another.
_CATEGORY_KEYS = ("category", "category_group", "direction")


def _with_advice(by_category: pl.DataFrame, categories: pl.DataFrame) -> pl.DataFrame:
    """The category table with each category's description and the advice of its direction:
    `advice_inbound` for inbound rows (none where the rules have no such column or leave it
    empty: a client on a blocklist is not our IP to delist), `advice` for the others."""
    inbound = (
        pl.col("advice_inbound")
        if "advice_inbound" in categories.columns
        else pl.lit(None, pl.String()).alias("advice_inbound")
    )
    text = categories.select("category", "description", "advice", inbound)
    return (
        by_category.join(text, on="category", how="left")
        .with_columns(advice_for(pl.col("direction")).replace("", None).alias("advice"))
        .drop("advice_inbound")
    )


def _inbound(events: pl.LazyFrame, top: int) -> tuple[Inbound, dict[str, int]]:
    """The inbound section of the inbound `events` of the window; the rows `top` left out of
    its clients and recipients."""
    event = pl.col("event")
    rejected = event == "rejected"
    events = events.with_columns(reject_reason().alias("reject_reason"))
    rejects = events.filter(rejected)
    # a relay attempt aims at someone else's address, not at one of our mailboxes
    relayed = pl.col("reject_reason").eq_missing("relay access denied")
    queries = [
        rejects.group_by("reject_reason", "blocklist").agg(pl.len().alias("rejects")),
        rejects.group_by("client_host", "client_ip")
        .agg(pl.len().alias("rejects"))
        .sort(["rejects", "client_ip", "client_host"], descending=[True, False, False]),
        events.filter(pl.col("recipient").is_not_null() & (event != "complained") & ~relayed)
        .group_by("recipient")
        .agg(
            rejected.sum().alias("rejected"),
            (event == "delivered").sum().alias("delivered"),
            (event == "deferred").sum().alias("deferred"),
            (failed() & ~rejected).sum().alias("failed"),
        )
        .sort(
            ["rejected", "delivered", "recipient"], descending=[True, True, False], nulls_last=True
        ),
        events.filter(~rejected & (event != "complained"))
        .group_by("transport")
        .agg(
            (event == "delivered").sum().alias("delivered"),
            (event == "deferred").sum().alias("deferred"),
            failed().sum().alias("failed"),
        )
        .sort(["delivered", "transport"], descending=[True, False], nulls_last=True),
    ]
    reasons, clients, recipients, deliveries = pl.collect_all(queries, engine="streaming")
    order = {reason: rank for rank, reason in enumerate(REJECT_REASONS)}
    reasons = (
        reasons.with_columns(
            (pl.col("rejects") / pl.col("rejects").sum()).round(4).alias("share"),
            pl.col("reject_reason").replace_strict(order, return_dtype=pl.Int32).alias("_rank"),
        )
        .sort(["_rank", "rejects", "blocklist"], descending=[False, True, False])
        .drop("_rank")
    )
    left_out = {
        "clients": max(0, clients.height - top),
        "recipients": max(0, recipients.height - top),
    }
    section = Inbound(
        rejects=reasons,
        clients=clients.head(top),
        recipients=recipients.head(top),
        deliveries=deliveries,
    )
    return section, left_out


def _blocks(events: pl.LazyFrame, lists: pl.DataFrame | None) -> pl.DataFrame:
    """`Report.blocklists` of `events`: one streaming group-by of the failures and deferrals
    that name a list (few keys: list, direction, provider), so memory stays flat."""
    named = events.filter(
        pl.col("blocklist").is_not_null() & pl.col("event").is_in(_FAILED_OR_DEFERRED)
    )
    by_provider = (
        named.group_by("direction", "blocklist", pl.col("provider").fill_null("other"))
        .agg(
            pl.len().alias("attempts"),
            failed().sum().cast(pl.UInt32).alias("failed"),
            (pl.col("event") == "deferred").sum().cast(pl.UInt32).alias("deferred"),
        )
        .collect(engine="streaming")
    )
    table = (
        by_provider.sort(["attempts", "provider"], descending=[True, False])
        .group_by("direction", "blocklist", maintain_order=True)
        .agg(
            pl.col("attempts", "failed", "deferred").sum(),
            pl.col("provider").head(_BLOCK_PROVIDERS).str.join(", ").alias("providers"),
        )
    )
    names = (lists if lists is not None else pl.DataFrame(schema=BLOCKS_SCHEMA)).select(
        "blocklist", pl.col("label").cast(pl.String), pl.col("lookup").cast(pl.String)
    )
    return (
        table.join(names, on="blocklist", how="left")
        .sort(["attempts", "blocklist", "direction"], descending=[True, False, False])
        .select(list(BLOCKS_SCHEMA))
        .cast(BLOCKS_SCHEMA)  # type: ignore[arg-type]
    )


#: How many providers a row of the blocks-by-list table names.
_BLOCK_PROVIDERS = 3


def fell_through() -> pl.Expr:
    """An event whose text no rule read: decided by the engine's default (`default:on_hold`,
    `default:undefined`), by a code alone, a reply code's row (`reply:421`) or an enhanced
    code's (`enhanced:enhanced-046`, a row of the X.y.z table), or by the words tier's broad
    families (`words:...`, docs/RULES.md): a guess from general words, never a rule written
    for the text."""
    rule = pl.col("rule_id")
    return (
        rule.str.starts_with("default:")
        | rule.str.starts_with("reply:")
        | rule.str.starts_with("enhanced:")
        | rule.str.starts_with(WORDS_RULE)
    ).fill_null(False)


def waits(events: pl.LazyFrame) -> pl.DataFrame:
    """The waits the servers asked for, by provider and category: the failed and deferred
    attempts whose text states one (`retry_after`), with its median and largest value in
    seconds; most attempts first. Small: one row per provider and category."""
    wait = pl.col("retry_after")
    return (
        events.filter(pl.col("event").is_in(_FAILED_OR_DEFERRED) & wait.is_not_null())
        .group_by("provider", "category")
        .agg(
            pl.len().alias("attempts"),
            wait.median().round(0).cast(pl.Int32).alias("median_wait_s"),
            wait.max().cast(pl.Int32).alias("max_wait_s"),
        )
        .sort(["attempts", "provider", "category"], descending=[True, False, False])
        .collect(engine="streaming")
        .cast(pl.Schema(WAITS_SCHEMA))
    )


def in_window(
    events: pl.LazyFrame,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    direction: str = "outbound",
) -> pl.LazyFrame:
    """The events of [since, until) of `direction` (`all`: of every direction)."""
    if since is not None:
        events = events.filter(pl.col("timestamp") >= since)
    if until is not None:
        events = events.filter(pl.col("timestamp") < until)
    if direction != "all":
        events = events.filter(pl.col("direction") == direction)
    return events


def unclassified_texts(
    events: pl.LazyFrame,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    direction: str = "outbound",
) -> pl.DataFrame:
    """The failed and deferred attempts of `direction` within [since, until) whose text fell to
    a fallback rule (`fell_through`), by masked message (the top messages' masking, with the
    event's codes in front): `count`, the provider and the rule of most of them, and one
    original text (`example`); most frequent first. These are the texts to write rules for.

    Grouped first by distinct text, codes, provider and rule, so that the masking runs once per
    text; memory grows with the distinct texts that fell through, not with the events.
    """
    if direction not in REPORT_DIRECTIONS:
        raise UsageError(
            f"invalid direction {direction!r}: choose from {', '.join(REPORT_DIRECTIONS)}"
        )
    events = in_window(events, since=since, until=until, direction=direction)
    texts = (
        events.filter(pl.col("event").is_in(_FAILED_OR_DEFERRED) & fell_through())
        .group_by("direction", "smtp_code", "enhanced_code", "diagnostic", "provider", "rule_id")
        .agg(pl.len().alias("count"))
        .collect(engine="streaming")
    )
    keyed = message_keys(texts).with_columns(
        with_event_codes(pl.col("_key")).fill_null("(no text)").alias("message")
    )
    most = pl.col("count").sum()

    def commonest(column: str) -> pl.Expr:
        # the value of `column` with the most events (ties: the first in order of value)
        return pl.col(column).sort_by(pl.col("count"), pl.col(column), descending=[True, False])

    provider = keyed.group_by("message", "provider").agg(most.alias("count"))
    rule = keyed.group_by("message", "rule_id").agg(most.alias("count"))
    return (
        keyed.group_by("message")
        .agg(
            most,
            pl.col("diagnostic")
            .sort_by(pl.col("count"), pl.col("diagnostic"), descending=[True, False])
            .first()
            .alias("example"),
        )
        .join(
            provider.group_by("message").agg(commonest("provider").first()),
            on="message",
            how="left",
        )
        .join(rule.group_by("message").agg(commonest("rule_id").first()), on="message", how="left")
        .sort(["count", "message"], descending=[True, False])
        .select(list(UNCLASSIFIED_SCHEMA))
        .cast(pl.Schema(UNCLASSIFIED_SCHEMA))
    )


def _days(events: pl.LazyFrame) -> list[date]:
    """The UTC days `events` holds, in order."""
    days = events.select(pl.col("timestamp").dt.date().drop_nulls().unique().sort())
    return days.collect(engine="streaming").to_series().to_list()


def _empty_window(
    since: datetime | None, until: datetime | None, days: Sequence[date], holder: str
) -> str:
    """What a report of an empty window says: the window, and the days `holder` holds."""

    def stamp(moment: datetime | None, default: str) -> str:
        return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else default

    window = f"no events between {stamp(since, 'the beginning')} and {stamp(until, 'now')}"
    if not days:
        return f"{window}; {holder} holds none"
    count = f"{len(days)} day{'s' if len(days) != 1 else ''}"
    return f"{window}; {holder} holds {_spans(days)} ({count})"


#: The most runs of days the note on an empty window names; more are said as one span.
_SPANS = 3


def _spans(days: Sequence[date]) -> str:
    """`days` as runs of consecutive days (`2025-12-08 .. 2025-12-10, 2026-11-27 ..
    2026-12-07`), so that a gap (logs of last year beside this year's) does not read as a
    year of days; first .. last when there are more than `_SPANS` runs."""
    ordered = sorted(days)
    runs = [[ordered[0], ordered[0]]]
    for day in ordered[1:]:
        if (day - runs[-1][1]).days == 1:
            runs[-1][1] = day
        else:
            runs.append([day, day])
    if len(runs) > _SPANS:
        runs = [[ordered[0], ordered[-1]]]
    return ", ".join(f"{first} .. {last}" if first != last else str(first) for first, last in runs)


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
    blocklists: pl.DataFrame | None = None,
    held: Sequence[date] | None = None,
    holder: str = "the input",
    direction: str = "outbound",
) -> Report:
    """Summarize classified events (a LazyFrame of the event table) within [since, until).

    `events` is read a few times and must give its rows in the same order each time (a scan
    of files or a frame does). Above `_PASS_EVENTS` events its messages are split into shares
    in temporary files (`TMPDIR`), each summarized alone, so that memory does not grow with
    the input. `normalize` replaces `normalize.message_with_codes` as the message of a
    failure; it is evaluated once per distinct (category, smtp_code, enhanced_code,
    diagnostic). `categories` (category, description, advice and, where the rules have it,
    advice_inbound: `Rules.categories`)
    gives the category table its description and the advice of its direction; `blocklists`
    (blocklist, label, lookup: `Rules.blocklists`) names the lists of the blocks-by-list
    table and their lookup pages. `malformed` is
    the number of records set aside, for the report to show. `direction` (one of
    `REPORT_DIRECTIONS`) chooses the events summarized; the others of the window are only
    counted (`Report.directions`), and the inbound and all directions add the inbound
    section. `top` cuts every table whose rows grow with the data (the `--by` table, the top
    messages of each category, the domain tables, the inbound clients and recipients); the
    category table, the daily trend and the inbound reasons and transports are whole. When
    the window holds no event, a note says which UTC days `holder` holds: `held` (a store's
    day partitions), else the days of `events` itself.
    """
    if direction not in REPORT_DIRECTIONS:
        raise UsageError(
            f"invalid direction {direction!r}: choose from {', '.join(REPORT_DIRECTIONS)}"
        )
    direction = str(direction)
    keys = by or ["provider"]
    window = events
    if since is not None:
        window = window.filter(pl.col("timestamp") >= since)
    if until is not None:
        window = window.filter(pl.col("timestamp") < until)
    counts = window.group_by("direction").len().collect(engine="streaming").iter_rows()
    found = {str(name or "unknown"): int(count) for name, count in counts}
    directions = {name: found[name] for name in (*DIRECTIONS, "unknown") if name in found}
    lf = window
    if direction != "all":
        lf = window.filter(pl.col("direction") == direction)
    numbered = _with_derived(lf, keys).with_row_index("_row")
    counted = list(dict.fromkeys([*keys, *_COUNTED]))
    final_counted = list(dict.fromkeys([*keys, *_FINAL_COUNTED]))
    size = sum(directions.values())
    shown = size if direction == "all" else directions.get(direction, 0)
    passes = max(1, -(-shown // _PASS_EVENTS))
    with ExitStack() as spill:
        shares: Iterable[pl.LazyFrame] = [numbered]
        if passes > 1:
            # the messages split into shares on disk in one read, each share then read alone:
            # a pass holds the keys of a share's messages, whatever the window's size
            needed = [
                "_row", *counted, *final_counted, *_OUTCOME_COLUMNS, *_RECIPIENT_COLUMNS,
                *_TEXT_COLUMNS,
            ]  # fmt: skip
            shares = spill.enter_context(
                split_by_hash(
                    numbered.select(list(dict.fromkeys(needed))),
                    pl.struct("source", "host", _message()),
                    passes,
                )
            )
        attempts = final = texts = None
        weight_parts = []
        for messages in shares:
            # a pass counts the events of a share of the messages (all the events of a message
            # together, as its final outcome needs), and their failure texts; its counts are
            # added to those of the passes before, so that what is kept is one set of counts
            attempted, ended, weights = _count_pass(messages, counted, final_counted)
            attempts = detached(_added(attempts, attempted, counted))
            final = detached(_added(final, ended, final_counted))
            texts = detached(_added_texts(texts, _text_pass(messages, normalize, weights)))
            weight_parts.append(detached(weights))
        weights = pl.concat(weight_parts)
        # delays, hours and hosts: the same events, message keys and weights as the tables
        delays = summarize_delays(
            lf.with_columns(_message()),
            message=_MESSAGE_KEYS,
            whole=_whole(),
            weights=weights,
            shares=(share.with_columns(_message()) for share in shares),
            top=top,
        )
    assert attempts is not None and final is not None and texts is not None  # (a pass ran)
    totals = pl.concat(
        [
            _counts(attempts.with_columns(pl.lit("attempts").alias("view")), ["view"]),
            _counts(
                final.with_columns(pl.lit("final outcomes").alias("view")), ["view"], outcomes=True
            ),
        ]
    ).with_columns(failed_share("total").round(4).alias("failure_rate"))
    groups = (
        _counts(final, keys, outcomes=True)
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
        .with_columns(failed_share("messages").round(4).alias("failure_rate"))
        .sort(["failed", "attempts", *keys], descending=[True, True, *([False] * len(keys))])
    )
    rows = pl.col("_events")
    event = pl.col("event")
    by_category = (
        attempts.filter(event.is_in(_FAILED_OR_DEFERRED))
        .group_by("direction", "category", "category_group")
        .agg(
            rows.sum().alias("count"),
            rows.filter(failed()).sum().alias("failed"),
            rows.filter(event == "deferred").sum().alias("deferred"),
            rows.filter(hard_failure()).sum().alias("hard"),
            rows.filter(soft_failure()).sum().alias("soft"),
        )
        .with_columns((pl.col("count") / pl.col("count").sum()).round(4).alias("share"))
        .sort(["count", "category", "direction"], descending=[True, False, False])
        .select("category", "category_group", "direction", pl.exclude(_CATEGORY_KEYS))
    )
    if categories is not None:
        by_category = _with_advice(by_category, categories)
    all_messages = texts.sort(
        ["category", "direction", "count", "message"], descending=[False, False, True, False]
    ).select("category", "direction", "message", "count", "example")
    top_messages = all_messages.group_by("category", "direction", maintain_order=True).head(top)
    daily = (
        attempts.group_by("date")
        .agg(
            rows.filter(event == "delivered").sum().alias("delivered"),
            rows.filter(event == "deferred").sum().alias("deferred"),
            rows.filter(failed()).sum().alias("failed"),
            rows.filter(event == "complained").sum().alias("complained"),
        )
        .sort("date")
    )

    def top_domains(column: str) -> pl.DataFrame:
        return (
            _counts(final.filter(pl.col(column).is_not_null()), [column], outcomes=True)
            .rename({"total": "messages"})
            .with_columns(failed_share("messages").round(4).alias("failure_rate"))
            .sort(["failed", "messages", column], descending=[True, True, False])
        )

    recipient_domains, sender_domains = (
        top_domains("recipient_domain"),
        top_domains("sender_domain"),
    )
    omitted = {
        "groups": max(0, groups.height - top),
        "messages": all_messages.height - top_messages.height,
        "recipient_domains": max(0, recipient_domains.height - top),
        "sender_domains": max(0, sender_domains.height - top),
    }
    unclassified = unclassified_texts(lf, direction="all")  # (lf: the direction shown)
    omitted["unclassified"] = max(0, unclassified.height - top)
    inbound = None
    if direction in ("inbound", "all"):
        inbound, left_out = _inbound(window.filter(pl.col("direction") == "inbound"), top)
        omitted.update(left_out)
    omitted.update(delays.omitted)
    notes = []
    if size == 0 and (since is not None or until is not None):
        days = _days(events) if held is None else list(held)
        notes.append(_empty_window(since, until, days, holder))
    return Report(
        since=since,
        until=until,
        totals=totals,
        by=keys,
        groups=groups.head(top),
        categories=by_category,
        messages=top_messages,
        daily=daily,
        recipient_domains=recipient_domains.head(top),
        sender_domains=sender_domains.head(top),
        malformed=malformed,
        omitted=omitted,
        notes=notes,
        direction=direction,
        directions=directions,
        inbound=inbound,
        blocklists=_blocks(lf, blocklists),
        waits=waits(lf),
        unclassified=unclassified.head(top),
        delays=delays,
    )
