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
import pyarrow as pa
import pyarrow.compute as pc

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

# 2026-11-28 10:00:00   (a plain stamp, as _PLAIN starts)
_PLAIN_STAMP = r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}"

# 2026-11-28 10:00:00 1tE3xY-0001Ab-Cd => ...   2026-11-28 10:00:00 H=... rejected RCPT <a>
# (the plain prefix of most logs: no fraction, zone or pid; _LINE takes the other lines. The
# match ends after the id and its space, or on the first character after the stamp where there
# is none, which is never a `+`, `-` or `[`, so that no zone or pid is taken for text)
_PLAIN = rf"{_PLAIN_STAMP} (?:{_ID} |[ -*,.-Z\\-~])"

#: A _PLAIN match at most this long has no message id (20 characters and one more).
_NO_REF_LENGTH = 30


#: Message ids (_ID) by length: 6-6-2, 6-10-4 and 6-11-4 characters.
_ID_OF_LENGTH = {
    16: r"[0-9A-Za-z]{6}-[0-9A-Za-z]{6}-[0-9A-Za-z]{2}",
    22: r"[0-9A-Za-z]{6}-[0-9A-Za-z]{10}-[0-9A-Za-z]{4}",
    23: r"[0-9A-Za-z]{6}-[0-9A-Za-z]{11}-[0-9A-Za-z]{4}",
}

#: The first lines of a batch that show its usual layout.
_SAMPLE_LINES = 1000

# => rcpt@example.com <orig@example.com> R=dnslookup T=remote_smtp H=mx.example.com [192.0.2.1]
# ** rcpt@example.com: Unrouteable address
# == rcpt@example.com (parent@example.net) <orig@example.net> R=r T=t defer (-44) H=...: ...
# => :blackhole: <CALLER@example.com> R=null
# (prefix only, as _LINE; `separator` ": " means the error text follows the address at once)
_DELIVERY = (
    r"^(?P<delivery_prefix>(?P<flag>=>|->|\*\*|==) (?P<address>:blackhole:|\S+?)"
    r"(?: \((?P<parent>[^)]*)\))?(?: <(?P<orig>[^>]*)>)?(?P<separator>: | |$))"
)

# => rcpt@example.com R=dnslookup T=remote_smtp H=mx.example.com [192.0.2.1] C="250 OK"
# ** rcpt@example.com: Unrouteable address
# (the usual shape: an address with no colon but a last one, not followed by a (parent) or an
# <original>, and no white space but spaces; for these _DELIVERY comes down to literal splits)
_SIMPLE_DELIVERY = r"^(?:=>|->|\*\*|==) [!-9;-~]+(?:: | [ -')-;=-~]| ?$)"

# H=mx.example.com [192.0.2.1]   (as _HOST, in printable ASCII, with a name and no HELO)
_SIMPLE_HOST = r"^(?P<name>[!-'\)-Z\\-~][!-~]*) \[(?P<ip>[^\]]+)\]"

#: Any white space but a space, and (`_ODD_ANY`) any character beyond ASCII: lines that have
#: one take the regular expressions, which know `\s` and `\S`.
_ODD_ASCII = r"[\t\x0b\x0c\r]"
_ODD_ANY = r"[^\x00-\x08\x0e-\x7f]"

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

# 250 2.0.0 OK 1732790000 ...   (a confirmation that starts with its reply, as most do)
_CODES_AT_START = (
    r"^(?P<smtp_code>[245]\d\d)(?:[ -](?P<enhanced_code>[245]\.\d{1,3}\.\d{1,3}))?(?:[ -]|$)"
)

# C="250 2.0.0 OK id=1tE3xY-0001Ab-Cd"
_CONFIRMATION = r'(?:^|\s)C="(?P<confirmation>(?:[^"\\]|\\.)*)"'

# QT=1h2m3s  QT=0.123s  QT=2d3h
_QUEUE_TIME = (
    r"(?:^|\s)QT=(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+(?:\.\d+)?)s)?"
)

# 1h2m3s   (what follows the first QT=)
_QT_VALUE = r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+(?:\.\d+)?)s)?"

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
        frame = pl.DataFrame({"line": _lines(batch.data)}).with_row_index("index")
        heads = _heads(frame, self._tz)
        parts = (
            heads.with_columns(pl.col("body").str.head(3).alias("flag"))
            .with_columns(_kind())
            .drop("flag")
            .partition_by("kind", as_dict=True, include_key=False)
        )
        empty = heads.clear()

        def part(kind: str) -> pl.DataFrame:
            return parts.get((kind,), empty)

        # Lines with no Exim timestamp, or a timestamp that is not a time, are not skipped.
        bad_time = heads.filter(pl.col("dated") & pl.col("timestamp").is_null())
        no_stamp = part("other").filter(pl.col("line") != "")
        odd = _ODD_ASCII if batch.data.isascii() else _ODD_ANY
        known = pl.concat([self._open, _arrivals(part("arrival"), odd)]).unique(
            "message_ref", keep="last", maintain_order=True
        )
        delivered, bad_delivery = _deliveries(part("delivery"), known, odd)
        rejected, bad_reject = _rejects(part("reject"))
        events = pl.concat([delivered, rejected], how="diagonal_relaxed")
        events = events.filter(events["timestamp"].is_not_null()).sort("index")
        origin = _origin(batch)
        malformed = pl.concat(
            [
                _malformed(no_stamp, origin, "not an Exim log line (no timestamp)"),
                _malformed(bad_time, origin, "invalid timestamp"),
                _malformed(
                    bad_delivery.filter(pl.col("timestamp").is_not_null()), origin, "no address"
                ),
                _malformed(
                    bad_reject.filter(pl.col("timestamp").is_not_null()), origin, "no address"
                ),
            ]
        )
        self._remember(known, part("completed")["ref"])
        skipped = frame.height - events.height - malformed.height
        return SourceOutput(
            events=schema.conform(
                events.with_columns(origin, schema.event_id(self.name, pl.col("line")))
            ),
            malformed=malformed,
            read=frame.height,
            skipped=skipped,
        )

    def _remember(self, known: pl.DataFrame, completed: pl.Series) -> None:
        """Keep the open messages' senders for later batches; forget completed messages."""
        still_open = known.filter(~pl.col("message_ref").is_in(completed.implode()))
        self._open = still_open.tail(MAX_OPEN_MESSAGES)


def _lines(data: bytes) -> pl.Series:
    """The batch's lines without their line ends, split by Arrow (no Python object per line).

    Bytes that are not UTF-8 become U+FFFD, as `bytes.decode(errors="replace")` makes them.
    """
    if not data:
        return pl.Series("line", [], dtype=pl.String())
    end = len(data) - 1 if data.endswith(b"\n") else len(data)
    offsets = pa.array([0, end], pa.int64()).buffers()[1]
    whole = pa.Array.from_buffers(pa.large_binary(), 1, [None, offsets, pa.py_buffer(data)])
    try:
        text = whole.cast(pa.large_string())
    except pa.ArrowInvalid:
        return _lines(data.decode("utf-8", "replace").encode("utf-8"))
    lines = pl.Series("line", pc.split_pattern(text, "\n").flatten(), dtype=pl.String())
    if b"\r" in data:
        lines = lines.str.strip_suffix("\r")
    return lines


def _heads(frame: pl.DataFrame, tz: str) -> pl.DataFrame:
    """index, line, ref, body, dated (has an Exim timestamp) and timestamp (UTC) of the lines.

    Lines with the batch's usual layout (a plain stamp and a message id of the length its
    first lines have) are cut at fixed positions; other lines with a plain prefix (`_PLAIN`) at
    the prefix's end, and the rest (fractions, zones, pids; lines without a stamp) by `_LINE`.
    The rows are in no particular order. Plain stamps are parsed once per run of equal stamps.
    """
    line = pl.col("line")
    pieces = []
    sample = frame["line"].head(_SAMPLE_LINES).str.extract(_PLAIN, 0).str.len_bytes()
    id_lengths = sample.filter(sample > _NO_REF_LENGTH) - 21
    if id_lengths.len() and id_lengths[0] in _ID_OF_LENGTH:
        id_length = int(id_lengths[0])
        layout = f"{_PLAIN_STAMP} {_ID_OF_LENGTH[id_length]} "
        usual = frame.select(line.str.contains(layout)).to_series()
        pieces.append(
            frame.filter(usual).select(
                "index",
                "line",
                line.str.slice(20, id_length).alias("ref"),
                line.str.slice(21 + id_length).alias("body"),
            )
        )
        frame = frame.filter(~usual)
    frame = frame.with_columns(
        line.str.extract(_PLAIN, 0).str.len_bytes().cast(pl.Int64()).alias("plain_length")
    )
    # (the plain match ends one character after the stamp when there is no message id)
    has_ref = pl.col("plain_length") > _NO_REF_LENGTH
    pieces.append(
        frame.filter(pl.col("plain_length").is_not_null()).select(
            "index",
            "line",
            pl.when(has_ref).then(line.str.slice(20, pl.col("plain_length") - 21)).alias("ref"),
            line.str.slice(pl.when(has_ref).then(pl.col("plain_length")).otherwise(20)).alias(
                "body"
            ),
        )
    )
    heads = [
        piece.with_columns(
            pl.lit(True).alias("dated"),
            _run_timestamps(piece["line"].str.head(19), tz).alias("timestamp"),
        )
        for piece in pieces
    ]
    other = frame.filter(pl.col("plain_length").is_null())
    if other.height:
        heads.append(
            other.lazy()
            .with_columns(line.str.extract_groups(_LINE).alias("head"))
            .unnest("head")
            .with_columns(_after(line, pl.col("line_prefix")).alias("body"))
            .with_columns(_timestamp(tz))
            .select(
                "index",
                "line",
                "ref",
                "body",
                pl.col("date").is_not_null().alias("dated"),
                "timestamp",
            )
            .collect()
        )
    return pl.concat(heads)


def _run_timestamps(stamp: pl.Series, tz: str) -> pl.Series:
    """`2026-11-28 10:00:00` stamps local to `tz`, as UTC; each run of equal stamps parsed once."""
    runs = stamp.rle().struct.field("value")
    parsed = (
        runs.str.strptime(pl.Datetime("us"), "%Y-%m-%d %H:%M:%S%.f", strict=False)
        .dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null")
        .dt.convert_time_zone("UTC")
    )
    return parsed.gather(stamp.rle_id())


def _kind() -> pl.Expr:
    """What each line is: other (no timestamp), arrival, completed, delivery, reject or skip."""
    ref = pl.col("ref").is_not_null()
    body = pl.col("body")
    flag = pl.col("flag")
    return (
        # (blank line, or no `2026-11-28 10:00:00 ` at the start)
        pl.when(~pl.col("dated") | body.is_null())
        .then(pl.lit("other"))
        # 2026-11-28 10:00:00 1tE3xY-0001Ab-Cd <= sender@example.org H=... S=1234 id=m@x
        .when(ref & (flag == "<= "))
        .then(pl.lit("arrival"))
        # 2026-11-28 10:00:09 1tE3xY-0001Ab-Cd Completed
        .when(ref & (body == "Completed"))
        .then(pl.lit("completed"))
        # 2026-11-28 10:00:02 1tE3xY-0001Ab-Cd ** rcpt@example.com R=... : SMTP error ...
        # (also =>, -> and ==; `*>` deliveries suppressed by -N are skipped)
        .when(ref & flag.is_in(["=> ", "-> ", "** ", "== "]))
        .then(pl.lit("delivery"))
        # 2026-11-28 10:00:12 H=mx.example.net [192.0.2.9] F=<s@x> rejected RCPT <a@y>: ...
        .when(body.str.starts_with("H=") & body.str.contains(" rejected RCPT <", literal=True))
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


def _arrivals(frame: pl.DataFrame, odd: str) -> pl.DataFrame:
    """message_ref, sender and Message-ID of `<= sender@example.org ... id=<message-id>` lines.

    Lines of printable ASCII (no `odd` character) are cut with literal searches; the others
    take the regular expressions.
    """
    body = pl.col("body")
    # (columns, not repeated expressions: an eager frame computes each expression it is given)
    cut = (
        frame.with_columns(
            body.str.slice(3).alias("rest"),
            body.str.slice(body.str.find(" id=", literal=True) + 4).alias("after_id"),
        )
        .with_columns(
            pl.col("rest").str.slice(0, pl.col("rest").str.find(" ", literal=True)).alias("sender"),
            # id=<20261128100000.ABC123@shop.example>   (up to a space or `>`)
            pl.col("after_id").str.strip_prefix("<").alias("unquoted"),
        )
        .with_columns(
            pl.col("unquoted")
            .str.slice(0, pl.col("unquoted").str.find(r"[ >]"))
            .alias("message_id")
        )
        .with_columns(
            # (`id=<>` and the like: \sid= looks further)
            (
                ~body.str.contains(odd)
                & (pl.col("after_id").is_null() | (pl.col("message_id") != ""))
            ).alias("exact")
        )
    )
    fast = cut.filter(pl.col("exact")).select(
        pl.col("index"),
        pl.col("ref").alias("message_ref"),
        # <= <> R=1tE3xY-0001Ab-Cd U=mailnull P=local S=3958   (a bounce message: null sender)
        pl.when(pl.col("sender") == "<>")
        .then(pl.lit(""))
        .when(pl.col("sender") != "")
        .then(pl.col("sender"))
        .alias("sender"),
        pl.col("message_id"),
    )
    others = cut.filter(~pl.col("exact"))
    if others.height == 0:
        return fast.drop("index")
    sender = body.str.extract(r"^<= (\S+)")
    slow = others.select(
        pl.col("index"),
        pl.col("ref").alias("message_ref"),
        pl.when(sender == "<>").then(pl.lit("")).otherwise(sender).alias("sender"),
        body.str.extract(r"\sid=<?([^\s>]+)>?").alias("message_id"),
    )
    return pl.concat([fast, slow]).sort("index").drop("index")


def _deliveries(
    frame: pl.DataFrame, known: pl.DataFrame, odd: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Events of `=>`, `->`, `**` and `==` lines, and the lines without an address.

    Lines of the usual shape (`_SIMPLE_DELIVERY`, printable ASCII, `H=name [ip]`) are cut with
    literal searches and short anchored patterns; the others take `_regex_deliveries`.
    """
    body = pl.col("body")
    rest = pl.col("rest")
    cut = frame.with_columns(
        body.str.head(2).alias("flag"),
        body.str.slice(3).alias("rest"),
        (body.str.contains(_SIMPLE_DELIVERY) & ~body.str.contains(odd)).alias("simple"),
    ).with_columns(
        # ** rcpt@example.com: Unrouteable address   (the address, with the colon it may have)
        rest.str.slice(0, rest.str.find(" ", literal=True)).str.strip_suffix(":").alias("address"),
        # H=mx.example.com [192.0.2.1]   (the first H=, where _HOST finds it)
        rest.str.slice(rest.str.find(" H=", literal=True) + 3)
        .str.extract_groups(_SIMPLE_HOST)
        .alias("host"),
        rest.str.contains(" H=", literal=True).alias("has_host"),
    )
    if cut["rest"].str.contains("QT=", literal=True).any():
        cut = cut.with_columns(
            _queue_seconds(
                rest.str.slice(rest.str.find(" QT=", literal=True) + 4).str.extract_groups(
                    _QT_VALUE
                )
            )
        )
    else:
        cut = cut.with_columns(pl.lit(None, pl.Float64()).alias("delay_s"))
    is_delivered = pl.col("flag").is_in(["=>", "->"])
    fine = pl.col("simple") & (
        ~pl.col("has_host") | pl.col("host").struct.field("ip").is_not_null()
    )
    delivered = _delivered(cut.filter(is_delivered & fine))
    failed = _failed(cut.filter(~is_delivered & fine))
    fast = pl.concat([delivered.filter(pl.col("exact")), failed], how="diagonal_relaxed")
    others = pl.concat(
        [
            cut.filter(~fine).select(frame.columns),
            delivered.filter(~pl.col("exact")).select(frame.columns),
        ]
    )
    host = pl.col("host").struct
    in_text = pl.col("in_text").struct
    events = fast.select(
        "index",
        "line",
        "timestamp",
        "event",
        pl.col("ref").alias("message_ref"),
        pl.col("address").str.to_lowercase().alias("recipient"),
        pl.lit(None, pl.String()).alias("original_recipient"),
        "diagnostic",
        pl.when(host.field("ip").is_not_null())
        .then(host.field("name"))
        .otherwise(in_text.field("relay_host"))
        .alias("relay_host"),
        pl.coalesce(host.field("ip"), in_text.field("relay_ip")).alias("relay_ip"),
        "codes",
        "delay_s",
    ).unnest("codes")
    if others.height:
        slow, bad = _regex_deliveries(others)
        events = pl.concat([events, slow.select(events.columns)])
    else:
        bad = others
    events = events.join(known, on="message_ref", how="left")
    return _with_domains(events), bad


def _delivered(frame: pl.DataFrame) -> pl.DataFrame:
    """`=>` and `->` lines cut by `_deliveries`: the diagnostic is the C="..." confirmation."""
    rest = pl.col("rest")
    quoted = pl.col("quoted")
    return (
        frame.with_columns(rest.str.slice(rest.str.find(' C="', literal=True) + 4).alias("quoted"))
        .with_columns(quoted.str.head(quoted.str.find('"', literal=True)).alias("diagnostic"))
        .with_columns(
            pl.col("flag").replace_strict(_EVENT_OF_FLAG, return_dtype=pl.String()).alias("event"),
            # C="..." with an escaped quote, or no closing quote: _CONFIRMATION decides
            (
                quoted.is_null()
                | (
                    pl.col("diagnostic").is_not_null()
                    & ~pl.col("diagnostic").str.contains("\\", literal=True)
                )
            ).alias("exact"),
        )
        .with_columns(_codes(pl.col("diagnostic"), _CODES_AT_START))
        .with_columns(
            # C="OK: 250 queued" (a reply code after a colon): _CODES decides
            pl.col("exact")
            & (
                pl.col("codes").struct.field("smtp_code").is_not_null()
                | ~pl.col("diagnostic").str.contains(": ", literal=True).fill_null(False)
            ),
            _host_in_text(pl.col("diagnostic")),
        )
    )


def _failed(frame: pl.DataFrame) -> pl.DataFrame:
    """`**` and `==` lines cut by `_deliveries`: the diagnostic follows the first `: `."""
    rest = pl.col("rest")
    return (
        frame.with_columns(
            rest.str.slice(rest.str.find(": ", literal=True) + 2).alias("diagnostic")
        )
        .with_columns(
            _event_of_failure(),
            _codes(pl.col("diagnostic"), _CODES),
            _host_in_text(pl.col("diagnostic")),
        )
        .filter(_attempted())
    )


def _event_of_failure() -> pl.Expr:
    """bounced, deferred, or expired for `** a@b: retry timeout exceeded` and the like."""
    return (
        pl.when((pl.col("flag") == "**") & pl.col("diagnostic").str.contains(_GAVE_UP))
        .then(pl.lit("expired"))
        .otherwise(pl.col("flag").replace_strict(_EVENT_OF_FLAG, return_dtype=pl.String()))
        .alias("event")
    )


def _attempted() -> pl.Expr:
    """False for `== a@b ... defer (-53): retry time not yet reached` (no attempt was made)."""
    return ~(
        (pl.col("flag") == "==") & pl.col("diagnostic").str.contains(_NO_ATTEMPT).fill_null(False)
    )


def _regex_deliveries(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """`_deliveries` for lines of another shape: events (not yet joined) and bad lines."""
    parsed = (
        frame.with_columns(pl.col("body").str.extract_groups(_DELIVERY).alias("d"))
        .unnest("d")
        .with_columns(_after(pl.col("body"), pl.col("delivery_prefix")).alias("tail"))
    )
    bad = parsed.filter(pl.col("flag").is_null()).select(frame.columns)
    tail = pl.col("tail")
    # ** rcpt@example.com: Unrouteable address
    # ** rcpt@example.com R=r T=t H=mx [192.0.2.1] X=TLS1.3:...:256 CV=yes: SMTP error from ...
    error_text = (
        pl.when(pl.col("separator") == ": ")
        .then(tail)
        .otherwise(tail.str.splitn(": ", 2).struct.field("field_1"))
    )
    confirmation = tail.str.extract_groups(_CONFIRMATION).struct.field("confirmation")
    is_delivered = pl.col("flag").is_in(["=>", "->"])
    events = (
        parsed.filter(pl.col("flag").is_not_null())
        .with_columns(
            pl.col("ref").alias("message_ref"),
            pl.col("address").str.to_lowercase().alias("recipient"),
            pl.coalesce(pl.col("orig"), pl.col("parent")).alias("original_recipient"),
            pl.when(is_delivered).then(confirmation).otherwise(error_text).alias("diagnostic"),
            tail.str.extract_groups(_QUEUE_TIME).alias("qt"),
        )
        .with_columns(_event_of_failure())
        .filter(_attempted())
        .with_columns(
            _relay(tail, pl.col("diagnostic")),
            _codes(pl.col("diagnostic"), _CODES),
            _queue_seconds(pl.col("qt")),
        )
        .unnest("relay", "codes")
    )
    return events, bad


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
            _codes(pl.col("diagnostic"), _CODES),
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


def _host_in_text(diagnostic: pl.Expr) -> pl.Expr:
    """`host name [ip]:` in an error text (Exim < 4.8x names the host there, not in H=)."""
    return diagnostic.fill_null("").str.extract_groups(_HOST_IN_TEXT).alias("in_text")


def _codes(text: pl.Expr, pattern: str) -> pl.Expr:
    """The `550 5.1.1` / `451-4.7.1` / `452` reply that `pattern` finds in `text`."""
    found = text.str.extract_groups(pattern)
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


def _origin(batch: Batch) -> pl.Expr:
    """`path:line` of each row, from its index in the batch."""
    return pl.concat_str(
        [pl.lit(f"{batch.path}:"), (pl.col("index") + batch.first_line).cast(pl.String())]
    ).alias("origin")


def _malformed(frame: pl.DataFrame, origin: pl.Expr, reason: str) -> pl.DataFrame:
    """Lines set aside, as MALFORMED_SCHEMA rows."""
    return (
        frame.sort("index")
        .select(origin, pl.lit(reason).alias("reason"), pl.col("line").str.slice(0, 4096))
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
