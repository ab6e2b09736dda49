"""The event table (schema version 3): one row per recipient per delivery attempt or ESP event.

Defined once here, as a polars schema and the matching Arrow schema. docs/SCHEMA.md explains
each column and why the schema is shaped as it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    import pyarrow as pa

SCHEMA_VERSION = 3

#: The values of the `event` column.
EVENTS = ("delivered", "deferred", "bounced", "expired", "dropped", "rejected", "complained")

#: The events that are a final failure of delivery (reports count them as failed).
FAILURES = ("bounced", "expired", "rejected", "dropped")


def advice_for(direction: pl.Expr) -> pl.Expr:
    """A category's advice for an event going `direction`, from the columns of the rules'
    category table (`Rules.categories`): `advice_inbound` for inbound mail (our server refused
    a client, or delivered into or failed at one of our mailboxes), `advice` for the rest (mail
    we sent). Defined here, below the rules and the report, so that both use this one."""
    return (
        pl.when(direction == "inbound").then(pl.col("advice_inbound")).otherwise(pl.col("advice"))
    )


def failed() -> pl.Expr:
    """A final failure of delivery (`FAILURES`)."""
    return pl.col("event").is_in(FAILURES)


def failed_share(of: str) -> pl.Expr:
    """The failure rate of a counted row: its `failed` count over the count `of` (`attempts`,
    `messages`, a view's `total`), unrounded; null where `of` is 0. Every table's rate."""
    return pl.when(pl.col(of) > 0).then(pl.col("failed") / pl.col(of))


def outcome_order() -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """The order of one message and recipient's events whose last is its final outcome: by
    time, a deferral before another event of the same second, then by event id (a stable
    tie-break)."""
    return pl.col("timestamp"), pl.col("event") != "deferred", pl.col("event_id")


def hard_failure() -> pl.Expr:
    """A hard failure: the address itself is bad (`bounce_type` hard, as classified)."""
    return failed() & pl.col("bounce_type").eq_missing("hard")


def soft_failure() -> pl.Expr:
    """A soft failure: every other failure (a block of our IP however permanent, and a failure
    the rules left without a `bounce_type`), so that hard + soft = failed in every view."""
    return failed() & pl.col("bounce_type").eq_missing("hard").not_()


#: The values of the `source` column.
SOURCE_NAMES = ("postfix", "exim", "sendgrid", "mailgun")

#: The sources that are our own server's log (the others are ESPs sending for us).
LOG_SOURCES = ("postfix", "exim")

#: The values of the `direction` column: which way the mail went (docs/SCHEMA.md, Direction).
DIRECTIONS = ("outbound", "inbound", "internal")

#: Columns a source fills in (facts read from the input).
FACT_SCHEMA: dict[str, pl.DataType] = {
    "event_id": pl.String(),
    "timestamp": pl.Datetime("us", "UTC"),
    "source": pl.String(),
    "host": pl.String(),
    "event": pl.String(),
    "message_ref": pl.String(),
    "message_id": pl.String(),
    "sender": pl.String(),
    "sender_domain": pl.String(),
    "recipient": pl.String(),
    "recipient_domain": pl.String(),
    "original_recipient": pl.String(),
    "relay_host": pl.String(),
    "relay_ip": pl.String(),
    "client_host": pl.String(),
    "client_ip": pl.String(),
    "transport": pl.String(),
    "smtp_code": pl.Int16(),
    "enhanced_code": pl.String(),
    "diagnostic": pl.String(),
    "attempt": pl.Int32(),
    "delay_s": pl.Float64(),
    "esp_classification": pl.String(),
    "origin": pl.String(),
}

#: The tier of a pattern that reads only what the words of a text say in general (its `tier`
#: key in the rules, docs/RULES.md): it decides after the code tables' rows and the
#: blocklists, before the enhanced and reply codes alone.
WORDS_TIER = "words"
#: How the `rule_id` of an event that tier decided starts (`words:<id>`): reports count those
#: events among the unclassified (`report.fell_through`), so the prefix is defined here, with
#: the columns, where reading a store needs no rules.
WORDS_RULE = f"{WORDS_TIER}:"

#: Columns the classification engine adds.
CLASSIFICATION_SCHEMA: dict[str, pl.DataType] = {
    "provider": pl.String(),
    "category": pl.String(),
    "category_group": pl.String(),
    "bounce_type": pl.String(),
    "permanent": pl.Boolean(),
    "rule_id": pl.String(),
    "direction": pl.String(),
    "blocklist": pl.String(),
    "retry_after": pl.Int32(),
}

EVENT_SCHEMA: dict[str, pl.DataType] = {**FACT_SCHEMA, **CLASSIFICATION_SCHEMA}

#: Columns (of events and set-aside records) that Parquet writers write plain, without trying
#: dictionary encoding: their values are all different (`event_id`, `origin`, `raw`), nearly
#: so (`message_id`, `message_ref`, `relay_ip`: a message's or an attempt's own), or long
#: texts most of which differ (`diagnostic`, whose dictionary outgrows its page within a few
#: thousand rows anyway). Their dictionaries cost time and made the files bigger: measured on
#: the events of 1M generated lines (bench/RESULTS.md, "Parquet without hopeless
#: dictionaries"), Exim's write 0.70 -> 0.59 s of CPU and 31.5 -> 30.7 MB, Postfix's 0.21 ->
#: 0.19 s and 12.8 -> 12.4 MB.
PLAIN_COLUMNS = frozenset(
    {"event_id", "origin", "raw", "message_id", "message_ref", "relay_ip", "diagnostic"}
)

#: Columns (of events and set-aside records) that readers select rows by: Parquet writers keep
#: min/max statistics on these only. A reader skips a row group by its range of times (the
#: store's scans filter on `timestamp` and `read_at`, and so do DuckDB or Spark queries over a
#: window); every other column holds much the same spread of values in every row group, so
#: its statistics never skip one and cost 13-16% of the write.
FILTERED_COLUMNS = ("timestamp", "read_at")


def statistics_columns(arrow_schema: pa.Schema) -> list[str]:
    """The columns of `arrow_schema` that Parquet statistics are written for."""
    return [name for name in FILTERED_COLUMNS if name in arrow_schema.names]


def dictionary_columns(arrow_schema: pa.Schema) -> list[str]:
    """The string columns of `arrow_schema` worth dictionary encoding in Parquet."""
    import pyarrow as pa  # lazy: parsing to JSON lines never loads it

    return [
        f.name
        for f in arrow_schema
        if f.name not in PLAIN_COLUMNS
        and (
            pa.types.is_large_string(f.type)
            or pa.types.is_string(f.type)
            or pa.types.is_string_view(f.type)
        )
    ]


def event_id(source: str, record: pl.Expr, occurrence: pl.Expr | None = None) -> pl.Expr:
    """The deterministic event id: xxh3-128 of the source name and the raw record, as 32 hex digits.

    `record` is the raw line (log sources) or the ESP's own event id where it has one, with
    whatever else makes it unique (a recipient index for multi-recipient records). The same
    input always gets the same id, whatever the polars version, so that re-reading a file
    duplicates nothing. `occurrence` (n >= 1) is given for the n-th repeat of an identical
    record in the same input (`sources._carry.Repeats`): it is hashed after a newline, which
    no log line holds, so a repeat's id is no other record's; a first occurrence has none, so its
    id is the one it always had.
    """
    import polars_hash as plh  # lazy: a plugin, loaded only where ids are made

    parts = [pl.lit(source + "\x1f"), record]
    if occurrence is not None:
        parts += [pl.lit("\n"), occurrence.cast(pl.String())]
    digest = plh.NonCryptographicHashingNameSpace(pl.concat_str(parts)).xxh3_128(
        return_binary=True, byte_order="big"
    )
    return digest.bin.encode("hex").alias("event_id")


def empty_facts() -> pl.DataFrame:
    """An empty frame with the fact columns."""
    return pl.DataFrame(schema=FACT_SCHEMA)


def conform(frame: pl.DataFrame, schema: dict[str, pl.DataType] = FACT_SCHEMA) -> pl.DataFrame:
    """Return `frame` with exactly the columns of `schema`, in order: missing ones null, cast."""
    missing = [pl.lit(None, dtype).alias(n) for n, dtype in schema.items() if n not in frame]
    return frame.with_columns(missing).select(
        pl.col(name).cast(dtype) for name, dtype in schema.items()
    )


def arrow_schema() -> pa.Schema:
    """The event table as an Arrow schema (for Parquet writers and readers)."""
    return pl.DataFrame(schema=EVENT_SCHEMA).to_arrow().schema
