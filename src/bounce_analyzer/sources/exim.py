"""Exim mainlog: one event per delivery outcome line and per rejected RCPT.

A mainlog line is `date time [+zone] [[pid]] [message-id] text`:

    2026-11-28 10:00:00 1tE3xY-0001Ab-Cd <= sender@example.org H=... P=esmtp S=1234 id=<x>
    2026-11-28 10:00:01 +0100 [4242] 1tE3xY-000000001Ab-Cdef ** rcpt@example.com R=dnslookup
        T=remote_smtp H=mx.example.com [192.0.2.1]: SMTP error from remote mail server after ...

Events: `=>` and `->` delivered, `**` bounced, `==` deferred, `H=... rejected RCPT <a>`
rejected. Everything else (`<=` arrivals, `*>` suppressed deliveries, `Completed`, per-host
notes, queue runs, daemon starts) is read and skipped. Decisions:

- `== a@b ... defer (-53|-54): retry time not (yet) reached ...` is skipped: Exim made no
  attempt, it only notes that the previous deferral still stands.
- `** a@b: retry timeout exceeded` (and the other "gave up after retrying" texts) is
  `expired`, like Postfix's `status=expired`; every other `**` line is `bounced`.
- `rejected after DATA` and `sender verify` lines are skipped (no recipient).
- `<= <>` (null envelope sender) gives sender "" on later lines; an unseen `<=` gives null.
- original_recipient is the `<top-level address>` where logged, else the `(parent)`.

The sender and Message-ID of each `<=` line are kept on the instance, keyed by Exim message id,
until the message's `Completed` line, so that they join onto delivery lines in later batches and
files. The table is capped at `MAX_OPEN_MESSAGES` (oldest dropped first).
"""

from __future__ import annotations

import os
import re
import zoneinfo
from collections.abc import Iterable, Iterator
from typing import ClassVar

import polars as pl

from bounce_analyzer import schema
from bounce_analyzer.errors import UsageError
from bounce_analyzer.sources.base import MALFORMED_SCHEMA, Batch, SourceOutput

__all__ = ["MAX_OPEN_MESSAGES", "Exim"]

#: At most this many arrived-but-not-completed messages are remembered across batches.
MAX_OPEN_MESSAGES = 250_000

# 1tE3xY-0001Ab-Cd (6-6-2, before 4.97) or 1tE3xY-000000001Ab-Cdef (6-11-4, 4.97 and later;
# a 10-character middle part is accepted too, as written in some documentation)
_ID = r"[0-9A-Za-z]{6}-(?:[0-9A-Za-z]{10,11}-[0-9A-Za-z]{4}|[0-9A-Za-z]{6}-[0-9A-Za-z]{2})"

# 2026-11-28 10:00:00.123 +0100 [4242] 1tE3xY-0001Ab-Cd => ...
# (fractional seconds, zone offset, pid and message id are each optional)
# (only the prefix is matched: the body is sliced off after it, which is much faster)
_LINE = (
    r"^(?P<line_prefix>(?P<date>\d{4}-\d{2}-\d{2}) (?P<time>\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?)"
    r"(?: (?P<offset>[+-]\d{4}))?(?: \[\d+(?::\d+)?\])? "
    rf"(?:(?P<ref>{_ID}) )?)"
)

# => rcpt@example.com <orig@example.com> R=dnslookup T=remote_smtp H=mx.example.com [192.0.2.1]
# ** rcpt@example.com: Unrouteable address
# == rcpt@example.com (parent@example.net) <orig@example.net> R=r T=t defer (-44) H=...: ...
# => :blackhole: <CALLER@example.com> R=null
# (prefix only, as _LINE; `separator` ": " means the error text follows the address at once)
_DELIVERY = (
    r"^(?P<delivery_prefix>(?P<flag>=>|->|\*\*|==) (?P<address>:blackhole:|\S+?)"
    r"(?: \((?P<parent>[^)]*)\))?(?: <(?P<orig>[^>]*)>)?(?P<separator>: | |$))"
)

# H=mail.example.net (helo.example.net) [192.0.2.9]:4711 I=[198.51.100.1]:25
#   F=<sender@example.net> temporarily rejected RCPT <rcpt@example.com>: greylisted
_REJECT = (
    r"^H=(?P<client>.*?) (?:\S+=\S* )*?(?:F=<(?P<sender>[^>]*)> )?"
    r"(?P<diagnostic>(?:temporarily )?rejected RCPT <(?P<address>[^>]*)>.*)$"
)

# H=mx.example.com [192.0.2.1]:25   H=(helo.example.net) [192.0.2.9]   H=[192.0.2.9]
_HOST = r"(?:^|\s)H=(?:(?P<relay_host>[^\s\[(]\S*) )?(?:\([^)]*\) ?)?\[(?P<relay_ip>[^\]]+)\]"

# ...RCPT TO:<a@example.com>: host mx.example.com [192.0.2.1]: 450 4.3.2 ... (Exim < 4.8x)
_HOST_IN_TEXT = r": host (?P<relay_host>\S+) \[(?P<relay_ip>[^\]]+)\]:"

# ...RCPT TO:<a@example.com>: 550-5.1.1 The email account ...   (first code after ": ")
# C="250 2.0.0 OK 1732790000 ..."                                 (delivery confirmation)
_CODES = (
    r"(?:^|: )(?P<smtp_code>[245]\d\d)(?:[ -](?P<enhanced_code>[245]\.\d{1,3}\.\d{1,3}))?(?:[ -]|$)"
)

# C="250 2.0.0 OK id=1tE3xY-0001Ab-Cd"
_CONFIRMATION = r'(?:^|\s)C="(?P<confirmation>(?:[^"\\]|\\.)*)"'

# QT=1h2m3s  QT=0.123s  QT=2d3h
_QUEUE_TIME = (
    r"(?:^|\s)QT=(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+(?:\.\d+)?)s)?"
)

# defer (-53): Retry time not yet reached / defer (-54): retry time not reached for any host
_NO_ATTEMPT = r"(?i)^retry time not (?:yet )?reached"

_SNIFF = re.compile(
    r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)?(?: [+-]\d{4})?(?: \[\d+(?::\d+)?\])? "
    rf"(?:{_ID} (?:<=|=>|->|\*>|\*\*|==|Completed)|H=\S.* rejected (?:RCPT|after|MAIL|connection))",
    re.MULTILINE,
)

#: `**` lines where Exim gave up because the retry time ran out, not because the remote refused:
#: ** a@b: retry timeout exceeded
#: ** a@b: retry time not reached for any host after a long failure period
#: ** a@b R=r T=t: all hosts for 'b' have been failing for a long time (and retry time not reached)
_GAVE_UP = (
    r"(?i)^(?:retry timeout exceeded|retry time not reached for any host after a long failure"
    r" period|all hosts for \S+ have been failing for a long time)"
)
_EVENT_OF_FLAG = {"=>": "delivered", "->": "delivered", "**": "bounced", "==": "deferred"}

_OPEN_SCHEMA: dict[str, pl.DataType] = {
    "message_ref": pl.String(),
    "sender": pl.String(),
    "message_id": pl.String(),
}


class Exim:
    """Exim's mainlog (`log_file_path`), with or without `+pid`, `+millisec`, `log_timezone`."""

    name: ClassVar[str] = "exim"

    def __init__(self, *, tz: str | None = None) -> None:
        if tz is not None:
            try:
                zoneinfo.ZoneInfo(tz)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise UsageError(
                    f"unknown time zone {tz!r}: use an IANA name such as Europe/Berlin"
                ) from None
        self._tz = tz if tz is not None else _local_zone()
        self._open = pl.DataFrame(schema=_OPEN_SCHEMA)

    def sniff(self, head: bytes) -> bool:
        """Whether `head` has an Exim mainlog delivery/arrival line or an Exim reject line."""
        return _SNIFF.search(head.decode("utf-8", "replace")) is not None

    def parse(self, batches: Iterable[Batch]) -> Iterator[SourceOutput]:
        """One `SourceOutput` per batch; arrivals join onto later batches' deliveries."""
        for batch in batches:
            yield self._parse_batch(batch)

    def _parse_batch(self, batch: Batch) -> SourceOutput:
        lines = batch.data.decode("utf-8", "replace").split("\n")
        if lines[-1] == "":
            lines.pop()
        frame = (
            pl.DataFrame({"line": lines}, schema={"line": pl.String()})
            .with_row_index("index")
            .lazy()
            .with_columns(
                pl.col("line").str.strip_suffix("\r"),
                pl.concat_str(
                    [
                        pl.lit(f"{batch.path}:"),
                        (pl.col("index") + batch.first_line).cast(pl.String()),
                    ]
                ).alias("origin"),
            )
            .with_columns(pl.col("line").str.extract_groups(_LINE).alias("head"))
            .unnest("head")
            .with_columns(_after(pl.col("line"), pl.col("line_prefix")).alias("body"))
            .with_columns(_timestamp(self._tz))
            .with_columns(_kind())
            .collect()
        )
        # Lines with no Exim timestamp, or a timestamp that is not a time, are not skipped.
        bad_time = frame.filter(pl.col("date").is_not_null() & pl.col("timestamp").is_null())
        no_stamp = frame.filter((pl.col("kind") == "other") & (pl.col("line") != ""))
        arrivals = _arrivals(frame.filter(pl.col("kind") == "arrival"))
        known = pl.concat([self._open, arrivals]).unique(
            "message_ref", keep="last", maintain_order=True
        )
        delivered, bad_delivery = _deliveries(frame.filter(pl.col("kind") == "delivery"), known)
        rejected, bad_reject = _rejects(frame.filter(pl.col("kind") == "reject"))
        events = pl.concat([delivered, rejected], how="diagonal_relaxed")
        ok_time = events["timestamp"].is_not_null()
        events = events.filter(ok_time).sort("index")
        malformed = pl.concat(
            [
                _malformed(no_stamp, "not an Exim log line (no timestamp)"),
                _malformed(bad_time, "invalid timestamp"),
                _malformed(bad_delivery.filter(pl.col("timestamp").is_not_null()), "no address"),
                _malformed(bad_reject.filter(pl.col("timestamp").is_not_null()), "no address"),
            ]
        )
        self._remember(known, frame.filter(pl.col("kind") == "completed")["ref"])
        skipped = frame.height - events.height - malformed.height
        return SourceOutput(
            events=schema.conform(events.with_columns(schema.event_id(self.name, pl.col("line")))),
            malformed=malformed,
            read=frame.height,
            skipped=skipped,
        )

    def _remember(self, known: pl.DataFrame, completed: pl.Series) -> None:
        """Keep the open messages' senders for later batches; forget completed messages."""
        still_open = known.filter(~pl.col("message_ref").is_in(completed.implode()))
        self._open = still_open.tail(MAX_OPEN_MESSAGES)


def _kind() -> pl.Expr:
    """What each line is: other (no timestamp), arrival, completed, delivery, reject or skip."""
    ref = pl.col("ref").is_not_null()
    body = pl.col("body")
    return (
        # (blank line, or no `2026-11-28 10:00:00 ` at the start)
        pl.when(pl.col("date").is_null() | body.is_null())
        .then(pl.lit("other"))
        # 2026-11-28 10:00:00 1tE3xY-0001Ab-Cd <= sender@example.org H=... S=1234 id=m@x
        .when(ref & body.str.starts_with("<= "))
        .then(pl.lit("arrival"))
        # 2026-11-28 10:00:09 1tE3xY-0001Ab-Cd Completed
        .when(ref & (body == "Completed"))
        .then(pl.lit("completed"))
        # 2026-11-28 10:00:02 1tE3xY-0001Ab-Cd ** rcpt@example.com R=... : SMTP error ...
        # (also =>, -> and ==; `*>` deliveries suppressed by -N are skipped)
        .when(ref & body.str.contains(r"^(?:=>|->|\*\*|==) "))
        .then(pl.lit("delivery"))
        # 2026-11-28 10:00:12 H=mx.example.net [192.0.2.9] F=<s@x> rejected RCPT <a@y>: ...
        .when(body.str.contains(r"^H=.* rejected RCPT <"))
        .then(pl.lit("reject"))
        # Start queue run, H=... Connection refused, frozen, error ignored, rejected after DATA
        .otherwise(pl.lit("skip"))
        .alias("kind")
    )


def _timestamp(tz: str) -> pl.Expr:
    """`date time [offset]` as UTC; without an offset the time is local to `tz`."""
    local = (
        pl.concat_str(["date", pl.lit(" "), "time"])
        .str.strptime(pl.Datetime("us"), "%Y-%m-%d %H:%M:%S%.f", strict=False)
        .dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null")
        .dt.convert_time_zone("UTC")
    )
    zoned = pl.concat_str(["date", pl.lit(" "), "time", pl.lit(" "), "offset"]).str.strptime(
        pl.Datetime("us", "UTC"), "%Y-%m-%d %H:%M:%S%.f %z", strict=False
    )
    return pl.when(pl.col("offset").is_null()).then(local).otherwise(zoned).alias("timestamp")


def _arrivals(frame: pl.DataFrame) -> pl.DataFrame:
    """Sender and Message-ID of `<= sender@example.org ... id=<message-id>` lines."""
    sender = pl.col("body").str.extract(r"^<= (\S+)")
    return frame.select(
        pl.col("ref").alias("message_ref"),
        # <= <> R=1tE3xY-0001Ab-Cd U=mailnull P=local S=3958   (a bounce message: null sender)
        pl.when(sender == "<>").then(pl.lit("")).otherwise(sender).alias("sender"),
        pl.col("body").str.extract(r"\sid=<?([^\s>]+)>?").alias("message_id"),
    )


def _deliveries(frame: pl.DataFrame, known: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Events of `=>`, `->`, `**` and `==` lines, and the lines without an address."""
    parsed = (
        frame.with_columns(pl.col("body").str.extract_groups(_DELIVERY).alias("d"))
        .unnest("d")
        .with_columns(_after(pl.col("body"), pl.col("delivery_prefix")).alias("tail"))
    )
    bad = parsed.filter(pl.col("flag").is_null())
    tail = pl.col("tail")
    # ** rcpt@example.com: Unrouteable address
    # ** rcpt@example.com R=r T=t H=mx [192.0.2.1] X=TLS1.3:...:256 CV=yes: SMTP error from ...
    colon = tail.str.find(": ", literal=True)
    error_text = (
        pl.when(pl.col("separator") == ": ")
        .then(tail)
        .when(colon.is_not_null())
        .then(tail.str.slice(colon + 2))
    )
    confirmation = tail.str.extract_groups(_CONFIRMATION).struct.field("confirmation")
    is_delivered = pl.col("flag").is_in(["=>", "->"])
    events = (
        parsed.filter(pl.col("flag").is_not_null())
        .with_columns(
            pl.col("flag").replace_strict(_EVENT_OF_FLAG, return_dtype=pl.String()).alias("event"),
            pl.col("ref").alias("message_ref"),
            pl.col("address").str.to_lowercase().alias("recipient"),
            pl.coalesce(pl.col("orig"), pl.col("parent")).alias("original_recipient"),
            pl.when(is_delivered).then(confirmation).otherwise(error_text).alias("diagnostic"),
            tail.str.extract_groups(_QUEUE_TIME).alias("qt"),
        )
        .with_columns(
            pl.when((pl.col("flag") == "**") & pl.col("diagnostic").str.contains(_GAVE_UP))
            .then(pl.lit("expired"))
            .otherwise(pl.col("event"))
            .alias("event")
        )
        .filter(
            ~(
                (pl.col("flag") == "==")
                & pl.col("diagnostic").str.contains(_NO_ATTEMPT).fill_null(False)
            )
        )
        .with_columns(
            _relay(tail, pl.col("diagnostic")),
            _codes(pl.col("diagnostic")),
            _queue_seconds(pl.col("qt")),
        )
        .unnest("relay", "codes")
        .join(known, on="message_ref", how="left")
    )
    return _with_domains(events), bad


def _rejects(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Events of `H=... F=<s> [temporarily ]rejected RCPT <a>: reason` lines, and bad lines."""
    parsed = frame.with_columns(pl.col("body").str.extract_groups(_REJECT).alias("r")).unnest("r")
    bad = parsed.filter(pl.col("address").is_null())
    events = (
        parsed.filter(pl.col("address").is_not_null())
        .with_columns(
            pl.lit("rejected").alias("event"),
            pl.col("ref").alias("message_ref"),
            pl.col("address").str.to_lowercase().alias("recipient"),
            pl.lit(None, pl.String()).alias("message_id"),
            # H=(helo.example.net) [192.0.2.9] names the SMTP client, which is the peer here
            pl.concat_str([pl.lit("H="), pl.col("client")])
            .str.extract_groups(_HOST)
            .alias("relay"),
            _codes(pl.col("diagnostic")),
        )
        .unnest("relay", "codes")
    )
    return _with_domains(events), bad


def _after(text: pl.Expr, prefix: pl.Expr) -> pl.Expr:
    """`text` without its leading `prefix` (null where the prefix did not match)."""
    return pl.when(prefix.is_not_null()).then(text.str.slice(prefix.str.len_chars()))


def _relay(tail: pl.Expr, diagnostic: pl.Expr) -> pl.Expr:
    """relay_host and relay_ip from `H=name [ip]`, or from `host name [ip]:` in the error."""
    fields = tail.str.extract_groups(_HOST)
    in_text = diagnostic.fill_null("").str.extract_groups(_HOST_IN_TEXT)
    return pl.struct(
        pl.coalesce(fields.struct.field("relay_ip"), in_text.struct.field("relay_ip")).alias(
            "relay_ip"
        ),
        pl.when(fields.struct.field("relay_ip").is_not_null())
        .then(fields.struct.field("relay_host"))
        .otherwise(in_text.struct.field("relay_host"))
        .alias("relay_host"),
    ).alias("relay")


def _codes(text: pl.Expr) -> pl.Expr:
    """The first `550 5.1.1` / `451-4.7.1` / `452` reply after a colon in `text`."""
    found = text.str.extract_groups(_CODES)
    return pl.struct(
        found.struct.field("smtp_code").cast(pl.Int16()).alias("smtp_code"),
        found.struct.field("enhanced_code"),
    ).alias("codes")


def _queue_seconds(qt: pl.Expr) -> pl.Expr:
    """`QT=1h2m3.5s` (time on queue) in seconds, null where the line has no QT=."""
    parts = [qt.struct.field(unit).cast(pl.Float64()) for unit in ("d", "h", "m", "s")]
    seconds = pl.sum_horizontal(
        p.fill_null(0.0) * factor for p, factor in zip(parts, (86400, 3600, 60, 1), strict=True)
    )
    any_part = pl.any_horizontal(p.is_not_null() for p in parts)
    return pl.when(any_part).then(seconds).alias("delay_s")


def _with_domains(events: pl.DataFrame) -> pl.DataFrame:
    """Add the lower-case recipient and sender domains."""
    return events.with_columns(
        pl.col("recipient").str.extract(r"@([^@\s]+)$").alias("recipient_domain"),
        pl.col("sender").str.extract(r"@([^@\s]+)$").str.to_lowercase().alias("sender_domain"),
        pl.lit("exim").alias("source"),
    )


def _malformed(frame: pl.DataFrame, reason: str) -> pl.DataFrame:
    """Lines set aside, as MALFORMED_SCHEMA rows."""
    return (
        frame.select(
            pl.col("origin"), pl.lit(reason).alias("reason"), pl.col("line").str.slice(0, 4096)
        )
        .rename({"line": "raw"})
        .cast(pl.Schema(MALFORMED_SCHEMA))
    )


def _local_zone() -> str:
    """The machine's IANA zone name (TZ, then /etc/localtime), or UTC when unknown."""
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    target = os.path.realpath("/etc/localtime")
    if "zoneinfo/" in target:
        candidates.append(target.split("zoneinfo/", 1)[1])
    for name in candidates:
        if not name:
            continue
        try:
            zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            continue
        return name
    return "UTC"
