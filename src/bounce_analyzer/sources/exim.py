"""Exim mainlog: one event per delivery outcome line, per rejected RCPT, per rejected message.

A mainlog line is `date time [+zone] [[pid]] [message-id] text`:

    2026-11-28 10:00:00 1tE3xY-0001Ab-Cd <= sender@example.org H=... P=esmtp S=1234 id=<x>
    2026-11-28 10:00:01 +0100 [4242] 1tE3xY-000000001Ab-Cdef ** rcpt@example.com R=dnslookup
        T=remote_smtp H=mx.example.com [192.0.2.1]: SMTP error from remote mail server after ...

Events: `=>` and `->` delivered, `**` bounced, `==` deferred, `H=... rejected RCPT <a>` and
`H=... rejected after DATA` rejected. Everything else (`<=` arrivals, `*>` suppressed
deliveries, `Completed`, per-host notes, queue runs, daemon starts) is read and skipped.
Decisions:

- `== a@b ... defer (-53|-54): retry time not (yet) reached ...` is skipped: Exim made no
  attempt, it only notes that the previous deferral still stands.
- `** a@b: retry timeout exceeded` (and the other "gave up after retrying" texts) is
  `expired`, like Postfix's `status=expired`; every other `**` line is `bounced`.
- `H=client [ip] F=<s> rejected after DATA: text` (an ACL refused the message after its data,
  with or without its message id) names no recipient, and the recipients of a refused message
  are logged nowhere else (it gets no `<=` line): it is one `rejected` event of the whole
  message, with a null recipient. Counts of recipients leave such rows out
  (docs/SCHEMA.md, `recipient`); they count as one refused message.
- `sender verify` lines are skipped (no recipient, and no refusal of mail yet).
- The client of a reject (`H=`) is `client_host`/`client_ip`: our server refused it;
  `relay_host`/`relay_ip` name only a server we handed mail to (`H=` of a delivery line).
- `transport` is the `T=` of a delivery line, else its router `R=` (a line without a
  transport, such as `=> :blackhole: <a@b> R=system_aliases`); null on rejects.
- `<= <>` (null envelope sender) gives sender "" on later lines; an unseen `<=` gives null.
- original_recipient is the `<top-level address>` where logged, else the `(parent)`.
- A delivery to a local part, a pipe or a file names no address: `=> jana
  <jana.kraus@example.com> R=local_user T=mail_spool`. Its recipient (and recipient_domain)
  is the address it came from: the `(parent)` where that is an address, else the
  `<top-level address>` (so `jana.kraus@example.com`, and original_recipient too). The local
  part, the pipe or the file is kept in no column, only in the line (`origin`): it is how our
  server delivered, not whom the mail was for. `=> :blackhole: <a@b>` keeps `:blackhole:`
  (the mail was thrown away, into no mailbox).

The sender and Message-ID of each `<=` line are kept on the instance, keyed by Exim message id,
until the message's `Completed` line, so that they join onto delivery lines in later batches and
files. The table is capped at `MAX_OPEN_MESSAGES` rows and `MAX_STATE_BYTES` bytes (oldest
dropped first: a later line of a dropped message is an event without a sender). An ingest keeps
it with the store for its next run (`export_state`, `import_state`), with the counts that number
identical lines (`_carry.Repeats`: a line written twice is two events, each with its own id).

`parse` runs in two stages, in two threads: `_cut` reads a batch as far as it goes alone (lines,
kinds, arrivals, events without their sender), then `Exim._outcomes` joins the senders known
so far onto the events. Only the second stage touches the instance.

Where the C tokenizer is built (native/exim.c; docs/NATIVE.md), `_cut` takes its cut of the
batch's lines (`_tokenized`): events, arrivals, and, where it cut every arrival of the batch,
the senders of the batch's own messages joined on and the arrivals that stay open (so that
`_outcomes` joins only the messages of earlier batches). The lines and batches it leaves go
the polars way below, which stays the reference, and the frames are the same either way
(tests/test_native_exim.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import polars as pl
import pyarrow as pa

from bounce_analyzer import native, schema
from bounce_analyzer.errors import UsageError
from bounce_analyzer.reading import Batch, batch_lines
from bounce_analyzer.smtp import (
    COMPLETION_REPLY_CODE,
    ENHANCED_CODE,
    domain_of,
    known_zone,
    local_zone,
)
from bounce_analyzer.sources import _carry
from bounce_analyzer.sources._carry import Repeats, compact, newest_within, state_frame, state_part
from bounce_analyzer.sources._views import number_column, string_column
from bounce_analyzer.sources.base import MALFORMED_SCHEMA, SourceOutput
from bounce_analyzer.stages import ahead

__all__ = ["MAX_OPEN_MESSAGES", "MAX_STATE_BYTES", "Exim"]

#: At most this many arrived-but-not-completed messages are remembered across batches...
MAX_OPEN_MESSAGES = 250_000
#: ... and at most this many bytes of them (with their senders and Message-IDs).
MAX_STATE_BYTES = 256 * 2**20

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

# H=mx.example.com [192.0.2.1]   (as _HOST, in printable ASCII, with a name and no HELO; the
# whole match is taken, not groups, which cost a slower engine: the name ends at its space)
_SIMPLE_HOST = r"^[!-'\)-Z\\-~][!-~]* \[[^\]]+\]"

#: Any white space but a space: lines that have one, or a character beyond ASCII (`_odd`),
#: take the regular expressions, which know `\s` and `\S`.
_ODD_ASCII = r"[\t\x0b\x0c\r]"

# H=mail.example.net (helo.example.net) [192.0.2.9]:4711 I=[198.51.100.1]:25
#   F=<sender@example.net> temporarily rejected RCPT <rcpt@example.com>: greylisted
_REJECT = (
    r"^H=(?P<client>.*?) (?:\S+=\S* )*?(?:F=<(?P<sender>[^>]*)> )?"
    r"(?P<diagnostic>(?:temporarily )?rejected RCPT <(?P<address>[^>]*)>.*)$"
)

# R=dnslookup T=remote_smtp   R=local_user T=mail_spool   R=system_aliases   (after the address:
# the router, and the transport where the line names one)
_DRIVERS = r"^R=(?P<router>[^\s:]+)(?: T=(?P<transport>[^\s:]+))?"

#: How many characters after the address `_DRIVERS` is given where a line has no `H=` to end
#: them (Exim's driver names are short; the error text that follows does not matter).
_DRIVERS_LENGTH = 128

# H=(prize.example.net) [192.0.2.88] I=[198.51.100.7]:25 F=<win@example.net> rejected after
#   DATA: Your message scored 15.2 SpamAssassin points.
# (as _REJECT: the client, `key=value` fields, which may be quoted, and the text)
_FIELD = r'\S+=(?:"(?:[^"\\]|\\.)*"|\S*) '
_DATA_REJECT = (
    rf"^H=(?P<client>.*?) (?:{_FIELD})*?(?:F=<(?P<sender>[^>]*)> )?(?:{_FIELD})*?"
    r"(?P<diagnostic>(?:temporarily )?rejected after DATA(?::? .*)?)$"
)

# H=mx.example.com [192.0.2.1]:25   H=(helo.example.net) [192.0.2.9]   H=[192.0.2.9]
_HOST = r"(?:^|\s)H=(?:(?P<relay_host>[^\s\[(]\S*) )?(?:\([^)]*\) ?)?\[(?P<relay_ip>[^\]]+)\]"

# ...RCPT TO:<a@example.com>: host mx.example.com [192.0.2.1]: 450 4.3.2 ... (Exim < 4.8x)
_HOST_IN_TEXT = r": host (?P<relay_host>\S+) \[(?P<relay_ip>[^\]]+)\]:"

# ...RCPT TO:<a@example.com>: 550-5.1.1 The email account ...   (first code after ": ")
# C="250 2.0.0 OK 1732790000 ..."                                 (delivery confirmation)
# (a reply searched for in text: a completion reply, as `bounce_analyzer.extract` finds them)
_CODES = (
    rf"(?:^|: )(?P<smtp_code>{COMPLETION_REPLY_CODE})"
    rf"(?:[ -](?P<enhanced_code>{ENHANCED_CODE}))?(?:[ -]|$)"
)

# : 550-5.1.1   (the whole match of _CODES, found without groups: see `_with_codes`)
_REPLY = rf"(?:^|: ){COMPLETION_REPLY_CODE}(?:[ -]{ENHANCED_CODE})?(?:[ -]|$)"

# 250 2.0.0 OK 1732790000 ...   (a confirmation that starts with its reply, as most do)
_CODES_AT_START = (
    rf"^(?P<smtp_code>{COMPLETION_REPLY_CODE})"
    rf"(?:[ -](?P<enhanced_code>{ENHANCED_CODE}))?(?:[ -]|$)"
)

# C="250 2.0.0 OK id=1tE3xY-0001Ab-Cd"
_CONFIRMATION = r'(?:^|\s)C="(?P<confirmation>(?:[^"\\]|\\.)*)"'

# QT=1h2m3s  QT=0.123s  QT=2d3h
_QUEUE_TIME = (
    r"(?:^|\s)QT=(?:(?P<d>[0-9]+)d)?(?:(?P<h>[0-9]+)h)?(?:(?P<m>[0-9]+)m)?"
    r"(?:(?P<s>[0-9]+(?:\.[0-9]+)?)s)?"
)

# 1h2m3s   (what follows the first QT=)
_QT_VALUE = (
    r"^(?:(?P<d>[0-9]+)d)?(?:(?P<h>[0-9]+)h)?(?:(?P<m>[0-9]+)m)?(?:(?P<s>[0-9]+(?:\.[0-9]+)?)s)?"
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
#: Events by `flag`, the first three characters of a delivery line's text.
_EVENT_OF_FLAG = {"=> ": "delivered", "-> ": "delivered", "** ": "bounced", "== ": "deferred"}

#: What a `<=` line tells about its message (`arrived` is the Exim message id).
_OPEN_SCHEMA: dict[str, pl.DataType] = {
    "arrived": pl.String(),
    "sender": pl.String(),
    "message_id": pl.String(),
    "sender_domain": pl.String(),
}

#: The columns of the events `_cut` makes (the sender's only for rejects: see `_outcomes`).
_EVENT_COLUMNS = [
    "index",
    "line",
    "timestamp",
    "event",
    "message_ref",
    "arrived",
    "sender",
    "sender_domain",
    "message_id",
    "recipient",
    "recipient_domain",
    "original_recipient",
    "relay_host",
    "relay_ip",
    "client_host",
    "client_ip",
    "transport",
    "smtp_code",
    "enhanced_code",
    "diagnostic",
    "delay_s",
]


@dataclass(frozen=True)
class _Cut:
    """One batch read as far as it goes without the messages of earlier batches (`_cut`)."""

    events: pl.DataFrame  # in line order; `arrived` set where the sender is still to join
    arrivals: pl.DataFrame  # _OPEN_SCHEMA rows, in line order
    #: the arrivals that stay open after the batch where the C tokenizer found them, else None
    staying: pl.DataFrame | None
    completed: pl.Series  # the message ids of `Completed` lines
    malformed: pl.DataFrame
    read: int
    skipped: int
    start: int  # the batch's first byte in its input
    end: int  # its last byte + 1


class Exim:
    """Exim's mainlog (`log_file_path`), with or without `+pid`, `+millisec`, `log_timezone`."""

    name: ClassVar[str] = "exim"

    def __init__(self, *, tz: str | None = None) -> None:
        if tz is not None and not known_zone(tz):
            raise UsageError(f"unknown time zone {tz!r}: use an IANA name such as Europe/Berlin")
        self._tz = tz if tz is not None else local_zone()
        self._open = pl.DataFrame(schema=_OPEN_SCHEMA)
        self._repeats = Repeats(self.name)

    def sniff(self, head: bytes) -> bool:
        """Whether `head` has an Exim mainlog delivery/arrival line or an Exim reject line."""
        return _SNIFF.search(head.decode("utf-8", "replace")) is not None

    def parse(self, batches: Iterable[Batch]) -> Iterator[SourceOutput]:
        """One `SourceOutput` per batch; arrivals join onto later batches' deliveries.

        `_cut` runs a batch ahead, in a thread of its own: it holds no state, so that only
        `_outcomes` (in the consumer's thread) reads and changes the open messages.
        """
        tz = self._tz
        for cut in ahead(_cut(batch, tz) for batch in batches):
            yield self._outcomes(cut)

    def _outcomes(self, cut: _Cut) -> SourceOutput:
        """The batch's events with the sender and Message-ID of their messages joined on."""
        # (only the open messages the batch names are looked up: the table is never copied whole)
        events = cut.events
        named = events["arrived"].drop_nulls().unique()
        if named.len():
            # (the batch's last arrival of a message, else the one carried; the senders of the
            # C path's events whose message arrived in the batch are already there)
            wanted = pl.col("arrived").is_in(named.implode())
            known = pl.concat([self._open.filter(wanted), cut.arrivals.filter(wanted)]).unique(
                "arrived", keep="last", maintain_order=True
            )
            # (the rows of the events still to join, and what is known of their message: a
            # delivery has only the joined sender, a reject its own and no `arrived`)
            found = (
                events.select("arrived")
                .with_row_index("row")
                .filter(pl.col("arrived").is_not_null())
                .join(known, on="arrived", how="inner")
            )
            rows = found["row"]
            events = events.with_columns(
                events[name].scatter(
                    rows, found.select(pl.coalesce(events[name].gather(rows), name)).to_series()
                )
                for name in ("sender", "message_id", "sender_domain")
            )
        events = self._repeats.number(events, "line", start=cut.start, end=cut.end)
        self._remember(cut.arrivals, cut.completed, cut.staying)
        return SourceOutput(
            events=schema.conform(events),
            malformed=cut.malformed,
            read=cut.read,
            skipped=cut.skipped,
        )

    def _remember(
        self, arrivals: pl.DataFrame, completed: pl.Series, staying: pl.DataFrame | None
    ) -> None:
        """Keep the open messages' senders for later batches; forget completed messages.

        The table is in the order the messages arrived (a message that arrives again moves to
        the end), so that the oldest go first when it is full. `staying`, where the C
        tokenizer found them, are the batch's arrivals that stay open: each message's last
        arrival, where no `Completed` line of the batch names it.
        """
        if not arrivals.height and not completed.len():
            return
        if staying is None:
            new = arrivals.unique("arrived", keep="last", maintain_order=True)
            staying = new.filter(~pl.col("arrived").is_in(completed.implode()))
        replaced = pl.concat([arrivals["arrived"], completed])
        gone = _carry.named_in(self._open, "arrived", replaced)
        still_open = pl.concat([self._open.filter(~gone), compact(staying)])
        self._open = newest_within(still_open, rows=MAX_OPEN_MESSAGES, size=MAX_STATE_BYTES)

    def export_state(self) -> pl.DataFrame:
        """The open messages and the counts of repeated lines (`CarriesState`)."""
        return state_frame(messages=self._open, repeats=self._repeats.export_state())

    def import_state(self, state: pl.DataFrame) -> None:
        """Carry on from an earlier run's `export_state` (before the first batch)."""
        messages = state_part(state, "messages", _OPEN_SCHEMA)
        self._open = newest_within(
            messages.filter(pl.col("arrived").is_not_null()),
            rows=MAX_OPEN_MESSAGES,
            size=MAX_STATE_BYTES,
        )
        self._repeats.import_state(state)

    @classmethod
    def merge_state(
        cls, carried: pl.DataFrame | None, parts: Sequence[pl.DataFrame]
    ) -> pl.DataFrame:
        """The state of a run read in parts, each by an instance that imported `carried` (None:
        nothing), from what each part exported (`CarriesState`): the open messages in order of
        arrival, those no part touched first."""
        return _carry.merged_state(
            lambda: cls(tz="UTC"), carried, parts, table="messages", columns=_OPEN_SCHEMA
        )


def _cut(batch: Batch, tz: str) -> _Cut:
    """The events, arrivals, completed messages and malformed lines of one batch.

    Where the C tokenizer runs (`native.module("exim")`), it cuts the lines, and the
    deliveries, rejects and arrivals of the usual shapes (`_tokenized`); the polars path reads
    whatever it leaves, and the whole batch where it declines it. Both give the same frames
    (tests/test_native_exim.py).
    """
    tokenizer = native.module(Exim.name)
    tokens = tokenizer.cut(batch.data, batch.line_ends()) if tokenizer is not None else None
    staying = None
    if tokens is None:
        frame = _lines(batch).to_frame().with_row_index("index")
        read = frame.height
        heads = _heads(frame, tz)
        parts = _kinds(heads)
        cut_deliveries = None
        arrivals = None
    else:
        cut = _tokenized(tokens, batch.data, tz)
        read, heads, parts, staying = cut.read, cut.heads, cut.parts, cut.staying
        cut_deliveries, cut_arrivals = cut.events, cut.arrivals
        if parts["arrival"].height:
            left = _with_sender_domain(_arrival_rows(parts["arrival"])).select(cut_arrivals.columns)
            cut_arrivals = pl.concat([cut_arrivals, left]).sort("index")
        arrivals = cut_arrivals.drop("index")
    # Lines with no Exim timestamp, or a timestamp that is not a time, are not skipped.
    bad_time = heads.filter(pl.col("dated") & pl.col("timestamp").is_null())
    no_stamp = parts["other"].filter(pl.col("line") != "")
    if arrivals is None:
        arrivals = _arrivals(parts["arrival"])
    deliveries = parts["delivery"]
    if bad_time.height:
        deliveries = deliveries.filter(pl.col("timestamp").is_not_null())
    if cut_deliveries is None or deliveries.height:
        delivered, bad_delivery = _deliveries(deliveries)
    else:  # (the C tokenizer cut every delivery: spare the fixed cost of the calls)
        delivered, bad_delivery = cut_deliveries.clear(), deliveries
    if cut_deliveries is not None:
        if bad_time.height:
            cut_deliveries = cut_deliveries.filter(pl.col("timestamp").is_not_null())
        delivered = pl.concat([cut_deliveries, delivered]) if delivered.height else cut_deliveries
    # 2026-11-28 10:00:12 H=mx.example.net [192.0.2.9] F=<s@x> rejected RCPT <a@y>: ...
    # 2026-11-28 10:07:00 1tE3yB-0002Bd-Fg H=(c.example) [192.0.2.88] F=<s@x> rejected after
    #   DATA: Your message scored 15.2 SpamAssassin points.   (the message id is optional)
    clients = parts["skip"].filter(pl.col("body").str.starts_with("H="))
    if bad_time.height:
        clients = clients.filter(pl.col("timestamp").is_not_null())
    rejects = clients.filter(pl.col("body").str.contains(" rejected RCPT <", literal=True))
    data_rejects = clients.filter(pl.col("body").str.contains(" rejected after DATA", literal=True))
    if rejects.height:
        rejected, bad_reject = _rejects(rejects)
    else:  # (the C tokenizer cut them all: spare the fixed cost of the calls)
        rejected, bad_reject = delivered.clear(), rejects
    if data_rejects.height:
        data_rejected, bad_data_reject = _data_rejects(data_rejects)
    else:  # (the usual case: spare the fixed cost of the calls)
        data_rejected, bad_data_reject = delivered.clear(), data_rejects
    # (stable: a line both rejected RCPT and after DATA gives its two events in this order)
    nonempty = [frame for frame in (delivered, rejected, data_rejected) if frame.height]
    if len(nonempty) == 1 and nonempty[0] is cut_deliveries:
        joined = cut_deliveries  # (the C tokenizer's events alone: in line order already)
    else:
        joined = pl.concat([delivered, rejected, data_rejected]).sort("index", maintain_order=True)
    origin = _origin(batch)
    set_aside = [
        (no_stamp, "not an Exim log line (no timestamp)"),
        (bad_time, "invalid timestamp"),
        (bad_delivery, "no address"),
        (bad_reject, "no address"),
        (bad_data_reject, "unreadable rejected after DATA line"),
    ]
    # (most batches set nothing aside: spare the fixed cost of five empty frames)
    malformed = pl.concat(
        [_malformed(lines, origin, reason) for lines, reason in set_aside if lines.height]
        or [_malformed(no_stamp, origin, "")]
    )
    completed = parts["completed"].filter(pl.col("body") == "Completed")["ref"]
    return _Cut(
        events=joined.with_columns(
            origin, schema.event_id(Exim.name, pl.col("line")), pl.lit(Exim.name).alias("source")
        ),
        arrivals=arrivals,
        staying=staying,
        completed=completed,
        malformed=malformed,
        read=read,
        skipped=read - joined.height - malformed.height,
        start=batch.offset,
        end=batch.offset + len(batch.data),
    )


# --- the C tokenizer's output (native/exim.c; docs/NATIVE.md) ----------------------------------

#: Line kinds of native/exim.c's `cut` (its enum, in order).
(
    _K_FALLBACK,
    _K_UNDATED,
    _K_ARRIVAL,
    _K_COMPLETED,
    _K_DELIVERY,
    _K_CUT,
    _K_CLIENT,
    _K_SKIP,
    _K_ARRIVED,
    _K_REJECTED,
) = range(10)
#: The events of the rows it cuts, by their number.
_CUT_EVENTS = ["delivered", "bounced", "deferred", "expired", "rejected"]


#: The buffers `cut` returns after its three counts, in order (native/exim.c, `B_...`).
_BUFFERS = (
    "kind line ref ref_valid body row event sender sender_valid diagnostic diagnostic_valid "
    "relay_host relay_ip relay_valid transport transport_valid enhanced enhanced_valid code "
    "code_valid delay delay_valid zoned time offset offset_valid recipient domain domain_valid "
    "recipient_valid sender_domain sender_domain_valid client_host client_host_valid client_ip "
    "client_ip_valid message_id message_id_valid arrived arrived_valid arrival_line "
    "arrival_sender arrival_sender_valid arrival_message_id arrival_message_id_valid "
    "arrival_domain arrival_domain_valid stays run run_start"
).split()


def _tokenized(tokens: tuple[Any, ...], data: bytes | bytearray, tz: str) -> _Tokens:
    """What `_cut` needs of a batch the C tokenizer cut (`_Tokens`). The lines it left (kind
    FALLBACK) are read by `_heads` and `_kinds` here, and their parts joined to its own in
    line order."""
    count, cut_count, zoned_count = tokens[:3]
    b = dict(zip(_BUFFERS, tokens[3 : 3 + len(_BUFFERS)], strict=True))
    lowered, every_arrival, arrival_count, run_count = tokens[3 + len(_BUFFERS) :]
    frame = pl.DataFrame(
        [
            string_column("line", count, b["line"], data),
            string_column("ref", count, b["ref"], data, b["ref_valid"]),
            string_column("body", count, b["body"], data),
            number_column("kind", pa.uint8(), count, b["kind"]),
        ]
    ).with_row_index("index")
    # (as `_heads`: every line's first 19 characters, parsed once per run of equal stamps that
    # the C tokenizer found; the heads `_LINE` reads, with a fraction, a zone or a pid, from
    # their own time and zone)
    starts = number_column("start", pa.uint32(), run_count, b["run_start"])
    stamps = _stamps(frame["line"].gather(starts).str.head(19), tz).gather(
        number_column("run", pa.uint32(), count, b["run"])
    )
    if zoned_count:
        heads = (
            pl.DataFrame(
                [
                    frame["index"],
                    frame["line"].str.head(10).alias("date"),
                    string_column("time", count, b["time"], data),
                    string_column("offset", count, b["offset"], data, b["offset_valid"]),
                ]
            )
            .filter(number_column("zoned", pa.uint8(), count, b["zoned"]) == 1)
            .with_columns(_timestamp(tz))
        )
        stamps = stamps.scatter(heads["index"], heads["timestamp"])
    frame = frame.with_columns(stamps.alias("timestamp"), pl.lit(True).alias("dated"))
    kind_column = pl.col("kind")
    # (of the dated lines, only those `_cut` looks for: a stamp that is no time)
    heads = frame.filter((kind_column >= _K_ARRIVAL) & pl.col("timestamp").is_null()).select(
        "index", "line", "ref", "body", "dated", "timestamp"
    )
    parts = {
        "other": frame.filter(kind_column == _K_UNDATED).select("index", "line"),
        "arrival": frame.filter(kind_column == _K_ARRIVAL).select("index", "ref", "body"),
        "completed": frame.filter(kind_column == _K_COMPLETED).select("ref", "body"),
        "delivery": frame.filter(kind_column == _K_DELIVERY).select(
            "index",
            "line",
            "ref",
            "body",
            "timestamp",
            pl.col("body").str.head(3).alias("flag"),
        ),
        "skip": frame.filter(kind_column == _K_CLIENT).select(
            "index", "line", "ref", "body", "timestamp"
        ),
    }
    left = frame.filter(kind_column == _K_FALLBACK).select("index", "line")
    if left.height:
        left_heads = _heads(left, tz)
        heads = pl.concat([heads, left_heads])
        for name, part in _kinds(left_heads).items():
            joined = pl.concat([parts[name], part])
            parts[name] = joined.sort("index") if "index" in joined.columns else joined

    def strings(name: str, buffer: str, count: int, *, lower: bool = False) -> pl.Series:
        valid = b.get(f"{buffer}_valid")
        second = lowered if lower else None
        return string_column(name, count, b[buffer], data, valid, second=second)

    found = frame.select("index", "line", "timestamp", "ref").gather(
        number_column("row", pa.uint32(), cut_count, b["row"])
    )
    # (the views of lower-cased text point into the batch, or into `lowered`, data buffer 1;
    # a delivery's sender is joined on by its message id, `arrived`, where the C tokenizer
    # did not find it in the batch; a reject has its own)
    events = pl.DataFrame(
        [
            found["index"],
            found["line"],
            found["timestamp"],
            pl.Series("event", _CUT_EVENTS, dtype=pl.String()).gather(
                number_column("event", pa.uint8(), cut_count, b["event"])
            ),
            found["ref"].alias("message_ref"),
            strings("arrived", "arrived", cut_count),
            strings("sender", "sender", cut_count),
            strings("sender_domain", "sender_domain", cut_count, lower=True),
            strings("message_id", "message_id", cut_count),
            strings("recipient", "recipient", cut_count, lower=True),
            strings("recipient_domain", "domain", cut_count, lower=True),
            pl.repeat(None, cut_count, dtype=pl.String(), eager=True).alias("original_recipient"),
            string_column("relay_host", cut_count, b["relay_host"], data, b["relay_valid"]),
            string_column("relay_ip", cut_count, b["relay_ip"], data, b["relay_valid"]),
            strings("client_host", "client_host", cut_count),
            strings("client_ip", "client_ip", cut_count),
            strings("transport", "transport", cut_count),
            number_column("smtp_code", pa.int16(), cut_count, b["code"], b["code_valid"]),
            strings("enhanced_code", "enhanced", cut_count),
            strings("diagnostic", "diagnostic", cut_count),
            number_column("delay_s", pa.float64(), cut_count, b["delay"], b["delay_valid"]),
        ]
    )
    arrival_rows = number_column("line", pa.uint32(), arrival_count, b["arrival_line"])
    arrivals = pl.DataFrame(
        [
            frame["index"].gather(arrival_rows),
            frame["ref"].gather(arrival_rows).alias("arrived"),
            strings("sender", "arrival_sender", arrival_count),
            strings("message_id", "arrival_message_id", arrival_count),
            strings("sender_domain", "arrival_domain", arrival_count, lower=True),
        ]
    )
    staying = None
    if every_arrival:
        # (where the C tokenizer found every arrival of the batch: those that stay open)
        stays = number_column("stays", pa.uint8(), arrival_count, b["stays"])
        staying = arrivals.filter(stays == 1).drop("index")
    return _Tokens(count, heads, parts, events, arrivals, staying)


@dataclass(frozen=True)
class _Tokens:
    """What `_cut` takes of a batch the C tokenizer cut (`_tokenized`)."""

    read: int  # lines
    heads: pl.DataFrame  # of the dated lines whose stamp is no time (at least), as `_heads`
    parts: dict[str, pl.DataFrame]  # the lines by kind, as `_kinds`
    events: pl.DataFrame  # the deliveries and rejects it cut (`_EVENT_COLUMNS`, line order)
    arrivals: pl.DataFrame  # the arrivals it cut (as `_arrival_rows`, with `sender_domain`)
    #: where it cut every arrival of the batch: the `_OPEN_SCHEMA` rows that stay open after
    #: the batch (a message's last arrival in it, not completed in it), else None
    staying: pl.DataFrame | None


def _lines(batch: Batch) -> pl.Series:
    """The batch's lines without their line ends (and without the `\\r` of a CRLF end).

    Bytes that are not UTF-8 become U+FFFD, as `bytes.decode(errors="replace")` makes them.
    `reading.batch_lines` (polars' CSV reader, on several threads) cuts them; it drops NUL
    bytes, which a line keeps here, so a batch that has one is split by Arrow instead.
    """
    if b"\x00" in batch.data:
        return _split_lines(batch.data)
    return batch_lines(batch)["line"]


def _split_lines(data: bytes | bytearray) -> pl.Series:
    """`_lines`, split by Arrow (no Python object per line)."""
    import pyarrow.compute as pc  # (0.03 s to import: only a batch with a NUL byte needs it)

    if not data:
        return pl.Series("line", [], dtype=pl.String())
    end = len(data) - 1 if data.endswith(b"\n") else len(data)
    offsets = pa.array([0, end], pa.int64()).buffers()[1]
    whole = pa.Array.from_buffers(pa.large_binary(), 1, [None, offsets, pa.py_buffer(data)])
    try:
        text = whole.cast(pa.large_string())
    except pa.ArrowInvalid:
        return _split_lines(data.decode("utf-8", "replace").encode("utf-8"))
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
    # (every line's first 19 characters, parsed once per run in line order: the runs are longer
    # than in the pieces, and the lines whose stamp is not plain get theirs from _LINE)
    frame = frame.with_columns(
        _run_timestamps(frame["line"].str.head(19), tz).alias("timestamp"),
        pl.lit(True).alias("dated"),
    )
    sample = frame["line"].head(_SAMPLE_LINES).str.extract(_PLAIN, 0).str.len_bytes()
    id_lengths = sample.filter(sample > _NO_REF_LENGTH) - 21
    if id_lengths.len() and id_lengths[0] in _ID_OF_LENGTH:
        id_length = int(id_lengths[0])
        layout = f"{_PLAIN_STAMP} {_ID_OF_LENGTH[id_length]} "
        usual = frame.select(line.str.contains(layout)).to_series()
        every = usual.all()
        pieces.append(
            (frame if every else frame.filter(usual)).select(
                "index",
                "line",
                line.str.slice(20, id_length).alias("ref"),
                line.str.slice(21 + id_length).alias("body"),
                "dated",
                "timestamp",
            )
        )
        frame = frame.clear() if every else frame.filter(~usual)
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
            "dated",
            "timestamp",
        )
    )
    other = frame.filter(pl.col("plain_length").is_null())
    if other.height:
        pieces.append(
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
    return pl.concat(pieces)


def _run_timestamps(stamp: pl.Series, tz: str) -> pl.Series:
    """`2026-11-28 10:00:00` stamps local to `tz`, as UTC; each run of equal stamps parsed once."""
    runs = stamp.rle()
    lengths = runs.struct.field("len")
    parsed = _stamps(runs.struct.field("value"), tz)
    # each line's run: a 1 where a run starts, summed (cheaper than `rle_id` on the stamps)
    starts = pl.zeros(stamp.len(), pl.UInt32(), eager=True).scatter(lengths.cum_sum().head(-1), 1)
    return parsed.gather(starts.cum_sum())


def _stamps(stamp: pl.Series, tz: str) -> pl.Series:
    """`2026-11-28 10:00:00` stamps local to `tz`, as UTC (null where no such time)."""
    return (
        # (no `%.f`: the stamps have no fraction, and this format takes polars' fast path)
        stamp.str.strptime(pl.Datetime("us"), "%Y-%m-%d %H:%M:%S", strict=False)
        .dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null")
        .dt.convert_time_zone("UTC")
    )


def _kinds(heads: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """The lines by kind: other (no timestamp), arrival, completed, delivery and skip.

    `completed` holds every line whose text starts with `Com` and `skip` the rejects: callers
    take the `Completed` and `H=... rejected RCPT` lines out of them (a test on those rows
    only). Each frame has the columns its kind needs, of index, line, ref, body, timestamp
    and (deliveries) `flag`, the first three characters of the text.
    """
    flag = pl.col("flag")
    # (comparisons of short strings, and filters: several times cheaper than a partition)
    kinds = heads.with_columns(pl.col("body").str.head(3).alias("flag")).with_columns(
        # (blank line, or no `2026-11-28 10:00:00 ` at the start)
        pl.when(~pl.col("dated"))
        .then(pl.lit("other"))
        # 2026-11-28 10:00:12 H=mx.example.net [192.0.2.9] F=<s@x> rejected RCPT <a@y>: ...
        # (and Start queue run, SMTP connection from ...: the lines without a message id)
        .when(pl.col("ref").is_null())
        .then(pl.lit("skip"))
        # 2026-11-28 10:00:00 1tE3xY-0001Ab-Cd <= sender@example.org H=... S=1234 id=m@x
        .when(flag == "<= ")
        .then(pl.lit("arrival"))
        # 2026-11-28 10:00:09 1tE3xY-0001Ab-Cd Completed
        .when(flag == "Com")
        .then(pl.lit("completed"))
        # 2026-11-28 10:00:02 1tE3xY-0001Ab-Cd ** rcpt@example.com R=... : SMTP error ...
        # (also =>, -> and ==; `*>` deliveries suppressed by -N are skipped)
        .when((flag == "=> ") | (flag == "-> ") | (flag == "** ") | (flag == "== "))
        .then(pl.lit("delivery"))
        # frozen, error ignored, rejected after DATA, ...
        .otherwise(pl.lit("skip"))
        .alias("kind")
    )
    kind = kinds["kind"]
    columns = {
        "other": ["index", "line"],
        "arrival": ["index", "ref", "body"],
        "completed": ["ref", "body"],
        "delivery": ["index", "line", "ref", "body", "timestamp", "flag"],
        "skip": ["index", "line", "ref", "body", "timestamp"],
    }
    return {name: kinds.select(names).filter(kind == name) for name, names in columns.items()}


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
    """`_OPEN_SCHEMA` rows of `<= sender@example.org ... id=<message-id>` lines, in line order."""
    return _with_sender_domain(_arrival_rows(frame).drop("index"))


def _arrival_rows(frame: pl.DataFrame) -> pl.DataFrame:
    """index, arrived, sender and message_id of arrival lines, in line order (`_arrivals`).

    Lines of printable ASCII (not `_odd`) are cut with literal searches; the others
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
            (~_odd(body) & (pl.col("after_id").is_null() | (pl.col("message_id") != ""))).alias(
                "exact"
            )
        )
    )
    fast = cut.filter(pl.col("exact")).select(
        pl.col("index"),
        pl.col("ref").alias("arrived"),
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
        # (in line order whatever order the lines came in: `_heads` gives them in none)
        return fast.sort("index")
    sender = body.str.extract(r"^<= (\S+)")
    slow = others.select(
        pl.col("index"),
        pl.col("ref").alias("arrived"),
        pl.when(sender == "<>").then(pl.lit("")).otherwise(sender).alias("sender"),
        body.str.extract(r"\sid=<?([^\s>]+)>?").alias("message_id"),
    )
    return pl.concat([fast, slow]).sort("index")


def _deliveries(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Events of `=>`, `->`, `**` and `==` lines, and the lines without an address.

    Lines of the usual shape (`_SIMPLE_DELIVERY`, printable ASCII, `H=name [ip]`) are cut with
    literal searches and short anchored patterns; the others take `_regex_deliveries`. The
    events are in no particular order; their sender and Message-ID are still to be joined on
    (by `arrived`, the message id).
    """
    body = pl.col("body")
    rest = pl.col("rest")
    cut = (
        frame.with_columns(
            body.str.slice(3).alias("rest"),
            (body.str.contains(_SIMPLE_DELIVERY) & ~_odd(body)).alias("simple"),
        )
        .with_columns(
            rest.str.find(" ", literal=True).alias("space_at"),
            rest.str.find(" H=", literal=True).alias("host_at"),
        )
        .with_columns(
            # ** rcpt@example.com: Unrouteable address   (the address, with the colon it may have)
            rest.str.slice(0, pl.col("space_at")).str.strip_suffix(":").alias("address"),
        )
    )
    host = pl.col("host")
    cut = (
        cut.with_columns(
            # H=mx.example.com [192.0.2.1]   (the first H=, where _HOST finds it)
            rest.str.slice(pl.col("host_at") + 3).str.extract(_SIMPLE_HOST, 0).alias("host")
        )
        .with_columns(host.str.find(" ", literal=True).alias("space"))
        .with_columns(
            host.str.head(pl.col("space")).alias("host_name"),
            host.str.slice(pl.col("space") + 2).str.head(-1).alias("host_ip"),
        )
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
    is_delivered = (pl.col("flag") == "=> ") | (pl.col("flag") == "-> ")
    fine = pl.col("simple") & (pl.col("host_at").is_null() | host.is_not_null())
    delivered = _delivered(cut.filter(is_delivered & fine))
    failed = _failed(cut.filter(~is_delivered & fine))
    fast = pl.concat([delivered.filter(pl.col("exact")), failed], how="diagonal_relaxed")
    columns = [name for name in frame.columns if name != "flag"]
    others = pl.concat(
        [cut.filter(~fine).select(columns), delivered.filter(~pl.col("exact")).select(columns)]
    )
    # Exim < 4.8x names the host in the error text, not in H=: `host name [ip]:` (rare)
    in_text = pl.col("in_text").struct
    if (
        fast.select(
            pl.col("diagnostic").filter(pl.col("host_at").is_null()).str.contains(": host ")
        )
        .to_series()
        .any()
    ):
        fast = fast.with_columns(_host_in_text(pl.col("diagnostic")))
        relay = [
            pl.when(host.is_not_null())
            .then(pl.col("host_name"))
            .otherwise(in_text.field("relay_host"))
            .alias("relay_host"),
            pl.coalesce(pl.col("host_ip"), in_text.field("relay_ip")).alias("relay_ip"),
        ]
    else:
        # (without an H= the host's fields are null, as they would be without a match)
        relay = [pl.col("host_name").alias("relay_host"), pl.col("host_ip").alias("relay_ip")]
    # => a@b R=dnslookup T=remote_smtp H=...   (what follows the address, up to the host: a few
    # distinct texts, each read once; a line without H= gives its first characters)
    space_at, host_at = pl.col("space_at"), pl.col("host_at")
    drivers = rest.str.slice(space_at + 1, pl.coalesce(host_at - space_at - 1, _DRIVERS_LENGTH))
    fast = fast.with_columns(drivers.alias("drivers"))
    fast = _per_distinct(fast, "drivers", _transport("drivers"))
    events = fast.select(
        "index",
        "line",
        "timestamp",
        "event",
        pl.col("ref").alias("message_ref"),
        pl.col("address").str.to_lowercase().alias("recipient"),
        pl.lit(None, pl.String()).alias("original_recipient"),
        "diagnostic",
        *relay,
        "transport",
        "codes",
        "delay_s",
    ).unnest("codes")
    if others.height:
        slow, bad = _regex_deliveries(others)
        events = pl.concat([events, slow.select(events.columns)])
    else:
        bad = others
    return _delivery_events(_with_recipient_domain(events)), bad


def _delivery_events(events: pl.DataFrame) -> pl.DataFrame:
    """Deliveries cut into their own fields as `_EVENT_COLUMNS`: the message id to join the
    sender on (`arrived`), and nulls for what `_outcomes` joins on and for the client fields
    of rejects."""
    return events.with_columns(
        pl.col("message_ref").alias("arrived"),
        pl.lit(None, pl.String()).alias("sender"),
        pl.lit(None, pl.String()).alias("message_id"),
        pl.lit(None, pl.String()).alias("sender_domain"),
        pl.lit(None, pl.String()).alias("client_host"),
        pl.lit(None, pl.String()).alias("client_ip"),
    ).select(_EVENT_COLUMNS)


def _delivered(frame: pl.DataFrame) -> pl.DataFrame:
    """`=>` and `->` lines cut by `_deliveries`: the diagnostic is the C="..." confirmation."""
    rest = pl.col("rest")
    quoted = pl.col("quoted")
    return (
        frame.with_columns(rest.str.slice(rest.str.find(' C="', literal=True) + 4).alias("quoted"))
        .with_columns(quoted.str.head(quoted.str.find('"', literal=True)).alias("diagnostic"))
        .with_columns(
            pl.lit("delivered").alias("event"),
            # C="..." with an escaped quote, or no closing quote: _CONFIRMATION decides
            (
                quoted.is_null()
                | (
                    pl.col("diagnostic").is_not_null()
                    & ~pl.col("diagnostic").str.contains("\\", literal=True)
                )
            ).alias("exact"),
        )
        .pipe(_with_codes_at_start)
        .with_columns(
            # C="OK: 250 queued" (a reply code after a colon): _CODES decides
            pl.col("exact")
            & (
                pl.col("codes").struct.field("smtp_code").is_not_null()
                | ~pl.col("diagnostic").str.contains(": ", literal=True).fill_null(False)
            )
        )
    )


def _failed(frame: pl.DataFrame) -> pl.DataFrame:
    """`**` and `==` lines cut by `_deliveries`: the diagnostic follows the first `: `."""
    rest = pl.col("rest")
    return (
        frame.with_columns(
            rest.str.slice(rest.str.find(": ", literal=True) + 2).alias("diagnostic")
        )
        .with_columns(_event_of_failure())
        .pipe(_with_codes)
        .filter(_attempted())
    )


def _event_of_failure() -> pl.Expr:
    """bounced, deferred, or expired for `** a@b: retry timeout exceeded` and the like."""
    return (
        pl.when((pl.col("flag") == "** ") & pl.col("diagnostic").str.contains(_GAVE_UP))
        .then(pl.lit("expired"))
        .otherwise(pl.col("flag").replace_strict(_EVENT_OF_FLAG, return_dtype=pl.String()))
        .alias("event")
    )


def _attempted() -> pl.Expr:
    """False for `== a@b ... defer (-53): retry time not yet reached` (no attempt was made)."""
    return ~(
        (pl.col("flag") == "== ") & pl.col("diagnostic").str.contains(_NO_ATTEMPT).fill_null(False)
    )


def _recipient() -> pl.Expr:
    """The lower-case recipient of a delivery line cut by `_DELIVERY`: its address, or, for a
    local part or a pipe or file (no `@`), the nearest address it came from."""
    address = pl.col("address")
    # => jana <jana.kraus@example.com> R=local_user T=mail_spool   (the top-level address)
    # => |/usr/bin/procmail (bob@example.com) <bob@example.com> R=userforward T=address_pipe
    # (the parent, the address the pipe or local part was made from, before the top level;
    # `:blackhole:` stays itself: no mailbox got the mail)
    came_from = pl.coalesce(
        pl.when(pl.col("parent").str.contains("@", literal=True)).then(pl.col("parent")),
        pl.when(pl.col("orig").str.contains("@", literal=True)).then(pl.col("orig")),
    )
    local = ~address.str.contains("@", literal=True) & (address != ":blackhole:")
    return (
        pl.when(local & came_from.is_not_null())
        .then(came_from)
        .otherwise(address)
        .str.to_lowercase()
    )


def _regex_deliveries(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """`_deliveries` for lines of another shape: events (not yet joined) and bad lines."""
    parsed = (
        frame.with_columns(pl.col("body").str.extract_groups(_DELIVERY).alias("d"))
        .unnest("d")
        .with_columns(_after(pl.col("body"), pl.col("delivery_prefix")).alias("tail"))
    )
    bad = parsed.filter(pl.col("flag").is_null()).select(frame.columns)
    parsed = parsed.with_columns(pl.col("flag") + " ")  # (as `_EVENT_OF_FLAG` has it)
    tail = pl.col("tail")
    # ** rcpt@example.com: Unrouteable address
    # ** rcpt@example.com R=r T=t H=mx [192.0.2.1] X=TLS1.3:...:256 CV=yes: SMTP error from ...
    error_text = (
        pl.when(pl.col("separator") == ": ")
        .then(tail)
        .otherwise(tail.str.splitn(": ", 2).struct.field("field_1"))
    )
    confirmation = tail.str.extract_groups(_CONFIRMATION).struct.field("confirmation")
    is_delivered = (pl.col("flag") == "=> ") | (pl.col("flag") == "-> ")
    events = (
        parsed.filter(pl.col("flag").is_not_null())
        .with_columns(
            pl.col("ref").alias("message_ref"),
            _recipient().alias("recipient"),
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
            # (R= and T= follow the address and its parent and original, after a space)
            _transport(pl.when(pl.col("separator") == " ").then(tail)),
        )
        .unnest("relay", "codes")
    )
    return events, bad


def _rejects(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Events of `H=... F=<s> [temporarily ]rejected RCPT <a>: reason` lines, and bad lines.

    Lines of the usual shape are cut with literal searches; the others take `_REJECT`, whose
    lazy client makes it slow (tens of microseconds a line). The literal cuts take only ASCII
    lines: `str.find` counts bytes, `str.slice` characters.
    """
    body = pl.col("body")
    after = pl.col("after")
    text = pl.col("text")
    rcpt = pl.col("rcpt")
    # H=(helo.example.net) [192.0.2.9]:4711 F=<s@example.net> rejected RCPT <a@example.com>: ..
    # ("H=client F=<sender> text": where the client has no `=` and no `rejected RCPT <`,
    # _REJECT can only split the line there, as no shorter client leaves a match behind it)
    cut = (
        frame.with_columns(body.str.find(" F=<", literal=True).alias("at"))
        .with_columns(
            body.str.head(pl.col("at")).alias("client"),
            body.str.slice(pl.col("at") + 4).alias("after"),
        )
        .with_columns(after.str.find(">", literal=True).alias("gt"))
        .with_columns(
            after.str.head(pl.col("gt")).alias("sender"),
            after.str.slice(pl.col("gt") + 1).alias("text"),
        )
        .with_columns(text.str.slice(text.str.find("<", literal=True) + 1).alias("rcpt"))
        .with_columns(
            text.str.slice(1).alias("diagnostic"),
            rcpt.str.head(rcpt.str.find(">", literal=True)).alias("address"),
            (
                (pl.col("client").str.count_matches("=", literal=True) == 1)
                & ~pl.col("client").str.contains("rejected RCPT <", literal=True)
                & (
                    text.str.starts_with(" rejected RCPT <")
                    | text.str.starts_with(" temporarily rejected RCPT <")
                )
            ).alias("usual"),
        )
    )
    usual = cut.select(
        pl.col("usual")
        & pl.col("address").is_not_null()
        & (body.str.len_bytes() == body.str.len_chars())
    ).to_series()
    parsed = cut.filter(usual).select(
        *frame.columns, pl.col("client").str.slice(2), "sender", "diagnostic", "address"
    )
    others = frame.filter(~usual)
    if others.height:
        parsed = pl.concat(
            [
                parsed,
                others.with_columns(pl.col("body").str.extract_groups(_REJECT).alias("r"))
                .unnest("r")
                .select(parsed.columns),
            ]
        )
    bad = parsed.filter(pl.col("address").is_null())
    refused = parsed.filter(pl.col("address").is_not_null())
    return _refused(refused, pl.col("address").str.to_lowercase()), bad


def _data_rejects(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Events of `H=... F=<s> [temporarily ]rejected after DATA: reason` lines, and bad lines.

    The line names no recipient: its event is the whole message's (recipient null), refused
    by our server after it had the recipients (docs/SCHEMA.md, `recipient`).
    """
    parsed = frame.with_columns(pl.col("body").str.extract_groups(_DATA_REJECT).alias("r")).unnest(
        "r"
    )
    bad = parsed.filter(pl.col("diagnostic").is_null()).select(frame.columns)
    refused = parsed.filter(pl.col("diagnostic").is_not_null())
    return _refused(refused, pl.lit(None, pl.String())), bad


def _refused(parsed: pl.DataFrame, recipient: pl.Expr) -> pl.DataFrame:
    """The `rejected` events of reject lines cut into `ref`, `client`, `sender` and
    `diagnostic`, for `recipient` (`_EVENT_COLUMNS`)."""
    events = (
        parsed.with_columns(
            pl.lit("rejected").alias("event"),
            pl.col("ref").alias("message_ref"),
            recipient.alias("recipient"),
            pl.lit(None, pl.String()).alias("message_id"),
            pl.lit(None, pl.String()).alias("arrived"),
            pl.lit(None, pl.String()).alias("original_recipient"),
            pl.lit(None, pl.Float64()).alias("delay_s"),
            _client(pl.col("client")),
        )
        .pipe(_with_codes)
        .unnest("client", "codes")
    )
    return _with_sender_domain(_with_recipient_domain(events)).select(_EVENT_COLUMNS)


def _client(client: pl.Expr) -> pl.Expr:
    """`client_host`, `client_ip` and a null `relay_*` and `transport` (a struct `client`) of
    the `H=` text of a line where our server refused an SMTP client.

    H=(helo.example.net) [192.0.2.9] names the client that connected to us, not a server we
    handed mail to: relay_host and relay_ip stay null, and no transport of ours was involved.
    """
    host = pl.concat_str([pl.lit("H="), client]).str.extract_groups(_HOST)
    return pl.struct(
        host.struct.field("relay_host").alias("client_host"),
        host.struct.field("relay_ip").alias("client_ip"),
        pl.lit(None, pl.String()).alias("relay_host"),
        pl.lit(None, pl.String()).alias("relay_ip"),
        pl.lit(None, pl.String()).alias("transport"),
    ).alias("client")


def _odd(text: pl.Expr) -> pl.Expr:
    """Whether `text` has white space but a space (`_ODD_ASCII`) or a character beyond ASCII.

    (A line's lengths in bytes and in characters differ where it has such a character: cheaper
    than a pattern of every character beyond ASCII, or than testing the whole batch.)
    """
    return text.str.contains(_ODD_ASCII) | (text.str.len_bytes() != text.str.len_chars())


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


def _transport(fields: pl.Expr | str) -> pl.Expr:
    """The transport of `R=router T=transport ...` (`_DRIVERS`), else the router of a line
    that names no transport (`== a@b R=bydns defer (-1): ...`); null where neither starts it."""
    found = (pl.col(fields) if isinstance(fields, str) else fields).str.extract_groups(_DRIVERS)
    return pl.coalesce(found.struct.field("transport"), found.struct.field("router")).alias(
        "transport"
    )


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


def _with_codes(frame: pl.DataFrame) -> pl.DataFrame:
    """Add the `codes` (`_codes`) of the reply `_CODES` finds in the `diagnostic`.

    The reply is found whole (`_REPLY`: an engine without groups is several times faster)
    and read once per distinct reply; `_CODES` reads its groups in that match as it would in
    the whole diagnostic, since the match holds every character it looks at.
    """
    return frame.with_columns(pl.col("diagnostic").str.extract(_REPLY, 0).alias("reply")).pipe(
        _per_distinct, "reply", _codes(pl.col("reply"), _CODES)
    )


def _with_codes_at_start(frame: pl.DataFrame) -> pl.DataFrame:
    """Add the `codes` (`_codes`) of the reply `_CODES_AT_START` finds in the `diagnostic`.

    The pattern looks at 14 characters at most (and at whether the text ends before them),
    and confirmations start alike: it reads each distinct 14-character start once.
    """
    return frame.with_columns(pl.col("diagnostic").str.head(14).alias("start")).pipe(
        _per_distinct, "start", _codes(pl.col("start"), _CODES_AT_START)
    )


def _queue_seconds(qt: pl.Expr) -> pl.Expr:
    """`QT=1h2m3.5s` (time on queue) in seconds, null where the line has no QT=."""
    parts = [qt.struct.field(unit).cast(pl.Float64()) for unit in ("d", "h", "m", "s")]
    seconds = pl.sum_horizontal(
        p.fill_null(0.0) * factor for p, factor in zip(parts, (86400, 3600, 60, 1), strict=True)
    )
    any_part = pl.any_horizontal(p.is_not_null() for p in parts)
    return pl.when(any_part).then(seconds).alias("delay_s")


def _with_recipient_domain(events: pl.DataFrame) -> pl.DataFrame:
    """Add the (lower-case) recipient's domain."""
    return events.with_columns(domain_of(pl.col("recipient")).alias("recipient_domain"))


def _with_sender_domain(frame: pl.DataFrame) -> pl.DataFrame:
    """Add the lower-case sender domain (a log has few senders: worked out once per sender)."""
    return _per_distinct(frame, "sender", domain_of(pl.col("sender")).alias("sender_domain"))


def _per_distinct(frame: pl.DataFrame, key: str, *columns: pl.Expr) -> pl.DataFrame:
    """`frame` with `columns` (expressions of column `key` alone) added, each computed once
    per distinct value of `key` and looked up for the rows: cheaper where values repeat."""
    distinct = frame.select(pl.col(key).unique()).with_columns(*columns)
    found = frame.select(key).join(
        distinct, on=key, how="left", maintain_order="left", nulls_equal=True
    )
    return frame.with_columns(found.drop(key))


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
