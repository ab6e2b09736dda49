"""Postfix: delivery outcomes from the mail log (syslog files, `journalctl -o json` or `-o export`).

One event per record that states an outcome:

- a delivery agent's recipient line (smtp, lmtp, local, virtual, pipe, error, retry...):
  `status=sent` -> delivered, `deferred` -> deferred, `bounced` -> bounced, `expired` ->
  expired. A `status=deferred` line stays deferred even when its text says the message timed
  out; only qmgr's `status=expired, returned to sender` line is an `expired` event (for the
  whole message: recipient null). `status=deliverable/undeliverable` come from address
  verification probes, not from mail: skipped.
- smtpd/cleanup `reject:` and `milter-reject:` lines, before (`NOQUEUE`) or after a queue id
  was given (header/body checks), and postscreen's `NOQUEUE: reject:` -> rejected: our server
  refused a client, whose host and address are `client_host` and `client_ip` (never `relay_*`,
  which name only a server we handed mail to). `reject_warning`, `filter`, `hold`, `discard`:
  skipped.

Every event's `transport` is the Postfix service that logged it: the last part of the syslog
program (`postfix/smtp`, `postfix-out/smtp` -> smtp; `postfix/submission/smtpd` -> smtpd).

qmgr `from=<...>` and cleanup `message-id=<...>` lines give the sender and Message-ID of a
queue id; they are remembered across batches and files (on the instance, until qmgr logs
`removed`; at most `max_open_ids` ids and `max_state_bytes` bytes of them, the oldest dropped
first: a later line of a dropped id is an event without a sender) and joined onto the events.
An ingest keeps them with the store for its next run (`export_state`, `import_state`), with the
counts that number identical syslog lines (`_carry.Repeats`: a line written twice is two
events, each with its own id).
Everything else a Postfix log holds (connects, TLS, `host ... said` lines that precede the
status line, bounce notifications...) is skipped; lines that are not syslog lines at all, or
status lines that cannot be read, are malformed.

Sender: `""` is the null reverse-path `<>` (bounces), null means unknown. Times: classic
syslog stamps have no year and no zone: the year comes from the file's mtime (a stamp more
than a day after it belongs to the year before), the zone from `tz`. RFC 3339 stamps carry
their offset, journald records their epoch time.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar, NamedTuple
from zoneinfo import ZoneInfo

import polars as pl
import pyarrow as pa

from bounce_analyzer import native, schema
from bounce_analyzer.errors import UsageError
from bounce_analyzer.reading import Batch, batch_lines
from bounce_analyzer.smtp import ENHANCED_CODE, REPLY_CODE, domain_of, known_zone, local_zone
from bounce_analyzer.sources import _carry
from bounce_analyzer.sources._carry import Repeats, compact, newest_within, state_frame, state_part
from bounce_analyzer.sources._views import number_column, string_column
from bounce_analyzer.sources.base import MALFORMED_SCHEMA, SourceOutput
from bounce_analyzer.stages import ahead

__all__ = ["MAX_STATE_BYTES", "Postfix"]

#: At most this many bytes of open queue ids (with their senders and Message-IDs) are kept.
MAX_STATE_BYTES = 256 * 2**20

# --- patterns -----------------------------------------------------------------------------

#: A syslog line: optional <PRI>, a classic, RFC 3339 or year-first stamp, host, program[pid].
_SYSLOG = (
    r"^(?P<prefix>(?:<\d{1,3}>)?"
    r"(?:(?P<classic>[A-Z][a-z]{2} +\d{1,2} \d\d:\d\d:\d\d(?:\.\d+)?)"
    r"|(?P<rfc>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?)"
    r"|(?P<yearful>\d{4} [A-Z][a-z]{2} +\d{1,2} \d\d:\d\d:\d\d(?:\.\d+)?))"
    r" +(?P<host>\S+) +(?P<program>[^\s\[\]:]+)(?:\[\d+\])?:? +)"
)
# (The message is what follows the prefix: capturing `.*` would make the regex 4x slower.)

#: Postfix programs: postfix/smtp, postfix-out/smtp, postfix/submission/smtpd, or a custom
#: syslog_name followed by a Postfix service name.
_PROGRAM = (
    r"^(?:postfix[^/\s]*(?:/\S+)?|\S+/(?:smtp|lmtp|local|virtual|pipe|error|retry|discard"
    r"|bounce|defer|trace|qmgr|nqmgr|cleanup|smtpd|postscreen|pickup|verify|anvil|tlsproxy))$"
)

#: `<queue id>: `: short hex ids, long ids (enable_long_queue_ids) or NOQUEUE.
_QUEUED = r"^(NOQUEUE|[0-9A-F]{5,}|[0-9A-Za-z]*[0-9][0-9A-Za-z]*): "

#: A recipient status line, to its status. One regex with the fields as groups, written so
#: that the next character always tells which way to go (`dsn=` is `dsn` or `dsn_alone`):
#: the engine then takes the groups in one pass, 2.3x cheaper than the same groups written
#: loosely, and cheaper than one whole-match regex per field. The dsn is an enhanced code
#: written with `[0-9]`, not `\d` (which takes any Unicode digit): `dsn=5.1.٥` would be
#: stored as an enhanced code; like any other dsn Postfix does not write (`dsn=3.0.0`), it
#: leaves the line unreadable (malformed).
_RECIPIENT = (
    r"^(?P<head>to=<(?P<recipient>[^>]*)>, (?:orig_to=<(?P<original_recipient>[^>]*)>, )?"
    r"relay=(?P<relay>[^,\s]+), (?:conn_use=\d+, )?delay=(?P<delay>[0-9.]+), "
    rf"(?:d(?:elays=[0-9./]+, (?:dsn=(?P<dsn>{ENHANCED_CODE}), )?"
    rf"|sn=(?P<dsn_alone>{ENHANCED_CODE}), ))?status=(?P<status>[a-z]+))"
)
_REMOTE = r"(?:host|connect to) (?P<remote_host>[^\s\[\]]+)\[(?P<remote_ip>[^\]]+)\]"
_SAID = (
    rf"(?:said|refused to talk to me): (?P<code>{REPLY_CODE})(?:[ -](?P<enhanced>{ENHANCED_CODE}))?"
)
_LEADING_CODES = rf"^(?P<code>{REPLY_CODE})?[ -]?(?P<enhanced>{ENHANCED_CODE})?(?:\s|$)"
#: The same, without groups: in its match, a code is the first three characters if they are
#: digits, and an enhanced code is the only `d.d.d` (see `_recipient_events`).
_LEADING_CODES_SHAPE = rf"^(?:{REPLY_CODE})?[ -]?(?:{ENHANCED_CODE})?(?:\s|$)"
#: A stage reject up to its text (which ends at the first "; from=<" or "; proto=").
_STAGE_REJECT = r"^(?:milter-)?reject: [A-Z-]+ from [^\s\[\]]*\[[^\]]*\](?::\d+)?: "
_CONTENT_REJECT = (
    r"^(?:milter-)?reject: (?:header|body) .*; from=<[^>]*> to=<[^>]*>"
    r"(?: proto=\S+)?(?: helo=<[^>]*>)?: (?P<diagnostic>.*)$"
)
_CLIENT = r" from (?P<client_host>[^\s\[\]]*)\[(?P<client_ip>[^\]]+)\]"
#: `; from=<s> to=<a> proto=...` (smtpd, cleanup); `; from=<s>, to=<a>, proto=...` (postscreen)
_ENVELOPE = r"; from=<(?P<sender>[^>]*)>,?(?: to=<(?P<recipient>[^>]*)>)?"

#: A JSON string value (validated, so that decoding it cannot fail).
_JSON_STRING = r'"((?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*)"'

_STATUS_EVENTS = {
    "sent": "delivered",
    "deferred": "deferred",
    "bounced": "bounced",
    "expired": "expired",
}
_PROBE_STATUSES = ("deliverable", "undeliverable")

_SNIFF = re.compile(
    r"^(?:<\d{1,3}>)?(?:[A-Z][a-z]{2} +\d{1,2} \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT\S+"
    r"|\d{4} [A-Z][a-z]{2} +\d{1,2} \S+) +\S+ postfix[^\s\[:]*/[\w/.-]+\[\d+\]:? "
    r'|"SYSLOG_IDENTIFIER"\s*:\s*"postfix[^"/]*/'
    r"|^SYSLOG_IDENTIFIER=postfix[^/\s]*/",
    re.MULTILINE,
)

_RECORD = {
    "line_no": pl.Int64(),
    "raw": pl.String(),
    "timestamp": pl.Datetime("us", "UTC"),
    "host": pl.String(),
    "program": pl.String(),
    "message": pl.String(),
    "bad": pl.String(),
}
#: Any leap year: classic stamps are parsed in it first.
_LEAP_YEAR = 2000

_OPEN = {
    "message_ref": pl.String(),
    "sender": pl.String(),
    "message_id": pl.String(),
    "seq": pl.Int64(),
}


class _Kinds(NamedTuple):
    """The records of a stretch of one input that matter (`_kinds`), and its counts."""

    frame: pl.DataFrame
    path: str
    read: int
    skipped: int
    #: The stretch's first and last byte + 1, for syslog lines, which `Repeats` numbers (None
    #: for journal records: two identical ones are one journal entry, exported twice).
    span: tuple[int, int] | None = None
    #: The C path's queue ids of the batch, with what its state lines say of each
    #: (`_native_ids`); the batch's events (`events`) then carry what those lines say of
    #: their queue id (`_CARRIED`). None: the batch's state lines are in `frame`, and the
    #: state join is `_join_open_ids`.
    ids: pl.DataFrame | None = None
    #: The C path's events, not yet joined with the senders of earlier batches (line order),
    #: and its malformed rows (line_no, raw, reason): `frame` then holds only state lines.
    #: None: the events are made from `frame` (`_events_of`).
    events: pl.DataFrame | None = None
    malformed: pl.DataFrame | None = None


def _json_field(key: str) -> pl.Expr:
    """The string value of `key` in a one-line JSON object, decoded; null when absent."""
    found = pl.col("line").str.extract(f'"{re.escape(key)}"\\s*:\\s*{_JSON_STRING}', 1)
    return pl.format('"{}"', found).str.json_decode(pl.String()).alias(key)


def _empty_to_null(expr: pl.Expr) -> pl.Expr:
    return pl.when(expr == "").then(None).otherwise(expr)


class Postfix:
    """Postfix mail logs: syslog files, `journalctl -o json` and `journalctl -o export`."""

    name: ClassVar[str] = "postfix"

    def __init__(
        self,
        *,
        tz: str | None = None,
        max_open_ids: int = 1_000_000,
        max_state_bytes: int | None = None,
    ) -> None:
        """`tz`: zone of classic syslog stamps (None: the machine's); `max_open_ids` and
        `max_state_bytes` (default `MAX_STATE_BYTES`): the bounds of the map of open queue ids
        (the oldest go first)."""
        if tz is not None and not known_zone(tz):
            raise UsageError(f"unknown time zone {tz!r}: use an IANA name like Europe/Paris")
        self.tz = tz if tz is not None else local_zone()
        self.max_open_ids = max_open_ids
        self.max_state_bytes = MAX_STATE_BYTES if max_state_bytes is None else max_state_bytes
        self._open = pl.DataFrame(schema=_OPEN)
        self._repeats = Repeats(self.name)
        self._batches = 0
        self._format: tuple[str, str] = ("", "syslog")  # (path, format) of the current input
        self._carry: pl.DataFrame | None = None  # an unfinished journal export record
        self._carry_path = ""
        # The blank lines that start an input, held until a line says its format.
        self._blank: tuple[Batch, pl.DataFrame] | None = None
        # The C tokenizer of syslog lines (None: the polars path for every line).
        self._tokenizer = native.module(self.name)

    # --- the Source interface ---------------------------------------------------------------

    def sniff(self, head: bytes) -> bool:
        """Whether `head` holds Postfix syslog lines or journal records from Postfix."""
        text = head[:65536].decode("utf-8", "replace")
        return _SNIFF.search(text) is not None

    def parse(self, batches: Iterable[Batch]) -> Iterator[SourceOutput]:
        """One `SourceOutput` per batch (an export record cut by a batch end waits for the next).

        Two stages in two threads: lines to the lines that matter (`_kinds_of`), then those
        to events with the sender and Message-ID joined (`_outcomes`, which holds the state).
        """
        for kinds in ahead(self._kinds_of(batches)):
            yield self._outcomes(kinds)

    def _kinds_of(self, batches: Iterable[Batch]) -> Iterator[_Kinds]:
        """Per batch: the records that matter, and the counts.

        Blank lines that start an input wait for the next batch, so that they are counted as
        the format that follows them says (a journal export does not count them), whatever
        the batch ends.
        """
        for batch in batches:
            if self._carry is not None and self._carry_path != batch.path:
                yield self._flush_carry()
            if self._tokenizer is not None and self._blank is None:
                # The C path: syslog lines cut from the batch's bytes (docs/NATIVE.md).
                head = _first_line(batch)
                if self._input_format(batch, head) == "syslog":
                    yield self._native_syslog(batch)
                    continue
            lines = batch_lines(batch)
            start = batch.offset
            if self._blank is not None:
                held, blank = self._blank
                self._blank = None
                if held.path == batch.path:
                    lines = pl.concat([blank, lines])
                    start = held.offset
                else:
                    yield self._syslog(held, blank)
            kind = self._input_format(batch, _first_text(lines))
            if kind is None:
                if not batch.final and lines.height < _MAX_HELD_BLANK:
                    self._blank = (batch, lines)
                    continue
                kind = "syslog"
            if kind == "syslog":
                yield self._syslog(batch, lines, start=start)
                continue
            seq_base = self._next_seq_base()
            if kind == "json":
                records = _json_records(lines)
            else:
                records = self._export_records(batch, lines)
            frame, skipped = _kinds(records, seq_base)
            yield _Kinds(frame, batch.path, records.height, skipped)
        if self._blank is not None:
            yield self._syslog(*self._blank)
            self._blank = None
        if self._carry is not None:
            yield self._flush_carry()

    def _syslog(self, batch: Batch, lines: pl.DataFrame, *, start: int | None = None) -> _Kinds:
        """`_Kinds` of syslog `lines`: those of `batch`, after the blank ones from `start` on."""
        seq_base = self._next_seq_base()
        frame, skipped = _syslog_kinds(lines, self.tz, self._reference(batch), seq_base)
        span = (batch.offset if start is None else start, batch.offset + len(batch.data))
        return _Kinds(frame, batch.path, lines.height, skipped, span)

    def _native_syslog(self, batch: Batch) -> _Kinds:
        """`_Kinds` of a batch of syslog lines, cut by the C tokenizer into events, malformed
        rows and state lines; the lines it leaves go down the polars path (`_syslog_kinds`),
        which reads them as it would read them in the whole batch."""
        seq_base = self._next_seq_base()
        reference = self._reference(batch)
        gaps = "".join(_gap_hours(self.tz, reference.year)).encode()
        cut = self._tokenizer.tokenize(  # type: ignore[union-attr]
            batch.data, batch.first_line, gaps, batch.line_ends()
        )
        events = _native_events(batch.data, cut, self.tz, reference, seq_base)
        malformed = _native_malformed(batch.data, cut)
        # (the state lines and probes are counted as skipped: they make no event)
        skipped = cut["lines"] - cut["kept"] - cut["bad"] - cut["others"]
        span = (batch.offset, batch.offset + len(batch.data))
        if cut["others"]:
            others = batch_lines(Batch(cut["other_data"], batch.path)).with_columns(
                line_no=number_column("line_no", pa.int64(), cut["others"], cut["other_line_no"])
            )
            kept, others_skipped = _syslog_kinds(others, self.tz, reference, seq_base)
            skipped += others_skipped
            if kept.height:
                # Lines the polars path kept: their events and malformed rows as it makes
                # them, and the batch joined as the polars path joins it, its state lines
                # among the others' (rare: lines of another shape).
                more, more_malformed, more_skipped = _events_of(kept)
                state = pl.concat(
                    [
                        _native_state(batch.data, cut, seq_base),
                        _state_fields(kept.filter(pl.col("kind").is_in(_STATE_KINDS))).select(
                            _STATE_COLUMNS
                        ),
                    ]
                ).sort("line_no")
                # (the C path's events with the sender they name themselves, as the others)
                own = events.with_columns(sender=pl.when("sender_own").then("sender")).drop(
                    *_CARRIED, "message_id", "sender_domain"
                )
                events = pl.concat([own, more], how="diagonal_relaxed").sort("line_no")
                malformed = pl.concat([malformed, more_malformed]).sort("line_no")
                skipped += more_skipped
                return _Kinds(
                    state,
                    batch.path,
                    cut["lines"],
                    skipped,
                    span,
                    events=events,
                    malformed=malformed,
                )
        ids = _native_ids(batch.data, cut, seq_base)
        return _Kinds(
            events.clear(), batch.path, cut["lines"], skipped, span, ids, events, malformed
        )

    def _next_seq_base(self) -> int:
        """A base for `seq` (line order across batches): batch number << 32, plus line_no."""
        self._batches += 1
        return self._batches << 32

    # --- inputs -------------------------------------------------------------------------------

    def _input_format(self, batch: Batch, start: str | None) -> str | None:
        """syslog, json or export, as `start` (the first line of the input that is not blank)
        says; None when no line of this input has said yet (the lines so far are blank)."""
        path, kind = self._format
        if path == batch.path and batch.first_line > 1:
            return kind
        if start is None:
            return None
        if start.startswith("{"):
            # {"__CURSOR":"s=...","MESSAGE":"...","SYSLOG_IDENTIFIER":"postfix/smtp",...}
            kind = "json"
        elif re.match(r"^[A-Z_][A-Z0-9_]*=", start):
            # __CURSOR=s=...   (journalctl -o export: KEY=value lines, records split by "")
            kind = "export"
        else:
            kind = "syslog"
        self._format = (batch.path, kind)
        return kind

    def _reference(self, batch: Batch) -> datetime:
        """The file's modification time (else now) as a naive time in the log's zone."""
        mtime = batch.mtime
        zone = ZoneInfo(self.tz)
        moment = datetime.fromtimestamp(mtime, zone) if mtime is not None else datetime.now(zone)
        return moment.replace(tzinfo=None)

    def _export_records(self, batch: Batch, lines: pl.DataFrame) -> pl.DataFrame:
        if self._carry is not None:
            lines = pl.concat([self._carry, lines])
            self._carry = None
        lines = lines.with_columns(record=(pl.col("line") == "").cum_sum())
        if not batch.final and lines.height and lines["line"][-1] != "":
            last = lines["record"][-1]
            self._carry = lines.filter(pl.col("record") == last).select("line_no", "line")
            self._carry_path = batch.path
            lines = lines.filter(pl.col("record") != last)
        return _export_frame(lines)

    def _flush_carry(self) -> _Kinds:
        assert self._carry is not None
        carry, path = self._carry, self._carry_path
        self._carry = None
        records = _export_frame(carry.with_columns(record=pl.lit(0, pl.UInt32())))
        frame, skipped = _kinds(records, self._next_seq_base())
        return _Kinds(frame, path, records.height, skipped)

    # --- state carried to the next run -------------------------------------------------------

    def export_state(self) -> pl.DataFrame:
        """The open queue ids and the counts of repeated lines (`CarriesState`)."""
        return state_frame(queue_ids=self._open, repeats=self._repeats.export_state())

    def import_state(self, state: pl.DataFrame) -> None:
        """Carry on from an earlier run's `export_state` (before the first batch)."""
        open_ids = state_part(state, "queue_ids", _OPEN).filter(pl.col("message_ref").is_not_null())
        # The lines of an earlier run come before every line of this one: their `seq` becomes
        # 0, 1, ... in their order (this run's lines start at 1 << 32).
        self._open = self._bounded(
            open_ids.sort("seq", nulls_last=False, maintain_order=True).with_columns(
                seq=pl.int_range(pl.len(), dtype=pl.Int64())
            )
        )
        self._repeats.import_state(state)

    @classmethod
    def merge_state(
        cls, carried: pl.DataFrame | None, parts: Sequence[pl.DataFrame]
    ) -> pl.DataFrame:
        """The state of a run read in parts, each by an instance that imported `carried` (None:
        nothing), from what each part exported (`CarriesState`): the open queue ids, those no
        part touched first, `seq` numbered again in that order."""
        return _carry.merged_state(
            lambda: cls(tz="UTC"), carried, parts, table="queue_ids", columns=_OPEN, order="seq"
        )

    def _bounded(self, open_ids: pl.DataFrame) -> pl.DataFrame:
        """`open_ids` (in `seq` order) within `max_open_ids` rows and `max_state_bytes` bytes,
        the oldest gone."""
        return newest_within(open_ids, rows=self.max_open_ids, size=self.max_state_bytes)

    # --- records -> outcomes ------------------------------------------------------------------

    def _outcomes(self, kinds: _Kinds) -> SourceOutput:
        """Events and malformed records from the lines `_kinds` kept; `skipped` the rest."""
        frame, path, read, skipped = kinds.frame, kinds.path, kinds.read, kinds.skipped
        if kinds.events is None or kinds.malformed is None:
            events, malformed, more_skipped = _events_of(frame)
            skipped += more_skipped
        else:
            events, malformed = kinds.events, kinds.malformed
        if kinds.ids is None:
            events = self._join_open_ids(frame, events).with_columns(
                recipient=_empty_to_null(pl.col("recipient").str.to_lowercase())
            )
            events = events.with_columns(
                recipient_domain=domain_of(pl.col("recipient")),
                sender_domain=domain_of(pl.col("sender")),
            )
        else:
            # (the recipient and the domains came lower-cased from the C path)
            events = self._join_batch_ids(kinds.ids, events)
        events = events.with_columns(
            source=pl.lit(self.name),
            origin=pl.format("{}:{}", pl.lit(path), pl.col("line_no")),
            original_recipient=_empty_to_null(pl.col("original_recipient")),
        ).with_columns(schema.event_id(self.name, pl.col("raw")))
        if kinds.ids is None:
            # (the C path's events come in line order, and its join keeps it)
            events = events.sort("line_no")
        if kinds.span is not None:
            start, end = kinds.span
            events = self._repeats.number(events, "raw", start=start, end=end)
        return SourceOutput(
            events=schema.conform(events),
            malformed=malformed.select(
                origin=pl.format("{}:{}", pl.lit(path), pl.col("line_no")),
                reason=pl.col("reason"),
                raw=pl.col("raw").str.slice(0, 4096),
            ).cast(MALFORMED_SCHEMA),  # type: ignore[arg-type]
            read=read,
            skipped=skipped,
        )

    def _join_batch_ids(self, ids: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
        """`_join_open_ids` where the C path has joined the batch's own state lines: `ids`
        (`_native_ids`) holds what they say of each queue id the batch names, and `events`
        their sender, its domain and Message-ID as those lines give them, and where the map
        of open ids is to give them instead (`_CARRIED`: the batch says nothing newer, and a
        batch's lines come after every line the map has seen). The map is updated as
        `_join_open_ids` updates it."""
        prior = self._open.filter(_carry.named_in(self._open, "message_ref", ids["message_ref"]))
        if prior.height:
            # (the map holds an id once: the rows of the events whose queue id it has, and
            # what it says of it; a few, put in place in the events' columns)
            found = (
                events.select("message_ref", "sender_open", "message_id_open")
                .with_row_index("row")
                .join(
                    prior.select(
                        "message_ref",
                        prior_sender="sender",
                        prior_message_id="message_id",
                        prior_sender_domain=domain_of(pl.col("sender")),
                    ),
                    on="message_ref",
                    how="inner",
                )
            )
            senders = found.filter("sender_open")
            message_ids = found.filter("message_id_open")
            events = events.with_columns(
                events["sender"].scatter(senders["row"], senders["prior_sender"]),
                events["sender_domain"].scatter(senders["row"], senders["prior_sender_domain"]),
                events["message_id"].scatter(message_ids["row"], message_ids["prior_message_id"]),
            )
        events = events.drop(*_CARRIED)
        changed = ids.filter(pl.col("state"))
        if changed.height:
            # Per queue id that stays open: the last sender and Message-ID (the batch's, else
            # the map's) and the batch's last line that gave one.
            still_open = (
                ids.filter(pl.col("open"))
                .join(
                    prior.select(
                        "message_ref", prior_sender="sender", prior_message_id="message_id"
                    ),
                    on="message_ref",
                    how="left",
                )
                .select(
                    "message_ref",
                    sender=pl.coalesce("sender", "prior_sender"),
                    message_id=pl.coalesce("message_id", "prior_message_id"),
                    seq="seq",
                )
            )
            # (a changed id's `seq` is of this batch: after every id left as it was)
            unchanged = self._open.filter(
                ~_carry.named_in(self._open, "message_ref", changed["message_ref"])
            )
            updated = still_open.cast(_OPEN).sort("seq")  # type: ignore[arg-type]
            self._open = self._bounded(pl.concat([unchanged, compact(updated)]))
        return events

    def _join_open_ids(self, frame: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
        """Join sender and Message-ID by queue id; update the map of open queue ids.

        The map (`_open`) is in `seq` order, oldest first. Only the ids the batch names are
        looked up and only those it changes are replaced (moved to the end): the map is never
        grouped or copied whole, so a batch costs about the same however many ids are open.
        """
        kind = pl.col("kind")
        state = frame.filter(kind.is_in(["from", "message_id", "removed"]))
        if "state_sender" not in state.columns:
            state = _state_fields(state)
        state = state.select(
            message_ref="qid",
            sender="state_sender",
            message_id="state_message_id",
            seq=pl.when(kind != "removed").then(pl.col("seq")),
            # ...qmgr[9]: 3F2A1B2C3D: removed
            removed_seq=pl.when(kind == "removed").then(pl.col("seq")),
        )
        changed = state["message_ref"].unique().implode()
        named = pl.concat([state["message_ref"], events["message_ref"]]).drop_nulls().unique()
        prior = self._open.filter(pl.col("message_ref").is_in(named.implode()))
        # Per queue id: the last sender and Message-ID (in line order), the last line that
        # gave one, the last "removed".
        known = (
            pl.concat([prior.with_columns(removed_seq=pl.lit(None, pl.Int64())), state])
            .group_by("message_ref")
            .agg(
                pl.col("sender").drop_nulls().last(),
                pl.col("message_id").drop_nulls().last(),
                pl.col("seq").max(),
                pl.col("removed_seq").max(),
            )
        )
        # A line after qmgr's "removed" (and no newer from=/message-id=) gets nothing.
        current = (
            pl.col("removed_seq").is_null()
            | (pl.col("seq") < pl.col("removed_seq"))
            | (pl.col("known_seq") > pl.col("removed_seq"))
        )
        events = events.join(
            known.select(
                "message_ref",
                "removed_seq",
                open_sender="sender",
                open_message_id="message_id",
                known_seq="seq",
            ),
            on="message_ref",
            how="left",
            nulls_equal=False,
        ).with_columns(
            sender=pl.coalesce("sender", pl.when(current).then(pl.col("open_sender"))),
            message_id=pl.when(current).then(pl.col("open_message_id")),
        )
        if state.height:
            still_open = known.filter(
                pl.col("message_ref").is_in(changed)
                & (pl.col("removed_seq").is_null() | (pl.col("removed_seq") < pl.col("seq")))
            )
            # (a changed id's `seq` is of this batch: after every id left as it was)
            unchanged = self._open.filter(~pl.col("message_ref").is_in(changed))
            updated = still_open.select(list(_OPEN)).cast(_OPEN).sort("seq")  # type: ignore[arg-type]
            self._open = self._bounded(pl.concat([unchanged, compact(updated)]))
        return events.drop("open_sender", "open_message_id", "known_seq", "removed_seq")


# --- records -> the lines that matter -------------------------------------------------------

#: At most this many blank lines that start an input wait for a line that says its format
#: (beyond, they are counted as syslog lines are: read and skipped).
_MAX_HELD_BLANK = 1 << 20

#: What a line can be about; `skip`: nothing of interest.
_KIND = pl.Enum(
    [
        "recipient",
        "expired",
        "reject",
        "from",
        "message_id",
        "removed",
        "bad",
        "bad_status",
        "skip",
    ]
)
#: The start of a message body (what follows the queue id) that may matter.
_BODY_START = (
    r"^(?:to=<|from=<[^>]*>, (?:status=expired|size=)|message-id=|removed$|(?:milter-)?reject: )"
)
#: The kind a `_BODY_START` match says, by its last three characters.
_KIND_BY_END = {
    # ...smtp[5]: 3F2A1B2C3D: to=<a@example.com>, relay=..., dsn=5.1.1, status=bounced (...)
    "o=<": "recipient",
    # ...qmgr[9]: 3F2A1B2C3D: from=<s@example.org>, status=expired, returned to sender
    "red": "expired",
    # ...qmgr[9]: 3F2A1B2C3D: from=<s@example.org>, size=4303, nrcpt=1 (queue active)
    "ze=": "from",
    # ...cleanup[8]: 3F2A1B2C3D: message-id=<20261128.abc@example.org>
    "id=": "message_id",
    # ...qmgr[9]: 3F2A1B2C3D: removed
    "ved": "removed",
    # ...smtpd[7]: NOQUEUE: reject: RCPT from c.example[192.0.2.1]: 554 5.7.1 ...
    # ...cleanup[8]: 3F2A1B2C3D: milter-reject: END-OF-MESSAGE from c[192.0.2.1]: ...
    "t: ": "reject",
}
#: ...smtp[5]: 3F2A1B2C3D: tox=<a@example.com>, relay=..., status=sent  (damaged)
_DAMAGED_STATUS = r"^\S+=<[^>]*>.*, status=[a-z]+"
#: The kinds that make events.
_EVENT_KINDS = ("recipient", "expired", "reject")


def _with_body_kind(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with `kind`: what its `body` (the message after the queue id) says."""
    body = pl.col("body")
    start = pl.col("start")
    return (
        frame.with_columns(start=body.str.extract(_BODY_START, 0))
        .with_columns(
            kind=pl.coalesce(
                start.str.tail(3).replace_strict(_KIND_BY_END, default=None, return_dtype=_KIND),
                # Only the lines of no known start are tried for damage (`extract` passes
                # over nulls; `contains` would search them all).
                pl.when(
                    pl.when(start.is_null())
                    .then(body)
                    .str.extract(_DAMAGED_STATUS, 0)
                    .is_not_null()
                ).then(pl.lit("bad_status", _KIND)),
                pl.lit("skip", _KIND),
            )
        )
        .drop("start")
    )


#: The columns of the lines that matter (events, sender/Message-ID state, malformed).
_KEPT = ("line_no", "seq", "raw", "timestamp", "host", "transport", "qid", "body", "kind", "bad")


def _service(program: pl.Expr) -> pl.Expr:
    """The Postfix service of a syslog program: its last part (`postfix/smtp`, `postfix-out/smtp`
    and `postfix/amavis/smtp` are `smtp`, `postfix/submission/smtpd` is `smtpd`); null for a
    program without one."""
    return program.str.extract(r"/([^/]+)$", 1)


def _kinds(records: pl.DataFrame, seq_base: int) -> tuple[pl.DataFrame, int]:
    """Records -> (the records that matter, with `qid`, `body` and `kind`; how many others)."""
    frame = records.with_columns(
        qid=pl.col("message").str.extract(_QUEUED, 1),
        postfix=pl.col("program").str.contains(_PROGRAM),
    ).with_columns(body=pl.col("message").str.slice(pl.col("qid").str.len_chars() + 2))
    frame = _with_body_kind(frame).with_columns(
        seq=pl.col("line_no") + seq_base,
        transport=pl.when(pl.col("kind").is_in(_EVENT_KINDS)).then(_service(pl.col("program"))),
        kind=pl.when(pl.col("bad").is_not_null())
        .then(pl.lit("bad", _KIND))
        .when(~pl.col("postfix").fill_null(False) | pl.col("qid").is_null())
        # Nov 28 10:00:00 mx postfix/smtpd[123]: connect from client.example[192.0.2.1]
        .then(pl.lit("skip", _KIND))
        .otherwise(pl.col("kind")),
    )
    kept = frame.filter(pl.col("kind") != "skip").select(_KEPT)
    return kept, records.height - kept.height


_MONTH_DAY = (
    r"(?:(?:Jan|Mar|May|Jul|Aug|Oct|Dec) (?:[ 0][1-9]|[12][0-9]|3[01])"
    r"|(?:Apr|Jun|Sep|Nov) (?:[ 0][1-9]|[12][0-9]|30)|Feb (?:[ 0][1-9]|[12][0-9]))"
)
_POSTFIX_PROGRAM = (
    r"(?:postfix[^/\s\[\]:]*(?:/[^\s\[\]:]+)?|[^\s\[\]:]+/(?:smtp|lmtp|local|virtual|pipe"
    r"|error|retry|discard|bounce|defer|trace|qmgr|nqmgr|cleanup|smtpd|postscreen|pickup"
    r"|verify|anvil|tlsproxy))"
)
#: The common shape, read fast: a classic stamp of a real day and time (15 characters),
#: single spaces, host, program[pid]. Every line of another shape takes the general path
#: (_SYSLOG).
_FAST_START = rf"^{_MONTH_DAY} (?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9] [^\s]+ "
#: A line of the common shape, of any program.
_FAST_ANY = rf"{_FAST_START}[^\s\[\]:]+\[[0-9]+\]: "
#: A Postfix line of the common shape, up to and with its `<queue id>: `.
_FAST_QUEUED = (
    rf"{_FAST_START}{_POSTFIX_PROGRAM}\[[0-9]+\]: +"
    r"(?:NOQUEUE|[0-9A-F]{5,}|[0-9A-Za-z]*[0-9][0-9A-Za-z]*): "
)
#: Every line that may matter holds one of these (see `_KIND_BY_END` and `_DAMAGED_STATUS`).
#: A regex of literals only is searched for all at once, for about the cost of one.
_MAY_MATTER = r": to=<|: from=<|message-id=|: removed|reject: | status="
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
#: The length of a classic stamp as _FAST_START reads it.
_CLASSIC_LENGTH = 15


def _syslog_kinds(
    lines: pl.DataFrame, tz: str, reference: datetime, seq_base: int
) -> tuple[pl.DataFrame, int]:
    """Syslog lines -> (the lines that matter, as `_kinds` gives them; how many others).

    Lines of the common shape are read with a literal search and one cheap test each, and
    only Postfix lines that may matter are taken apart; the others go through
    `_syslog_records` and `_kinds`.
    """
    line = pl.col("line")
    # Nov 28 10:00:03 mx postfix/smtp[5]: 3F2A1B2C3D: to=<a@example.com>, relay=...
    # (the match: up to and with "3F2A1B2C3D: "; only where a line may matter)
    may_matter = lines.select(line.str.contains(_MAY_MATTER)).to_series()
    matter = lines.filter(may_matter).with_columns(queued=line.str.extract(_FAST_QUEUED, 0))
    fast = matter.filter(pl.col("queued").is_not_null())
    others = pl.concat(
        [lines.filter(~may_matter), matter.filter(pl.col("queued").is_null()).drop("queued")]
    )
    # Nov 28 10:00:01 mx postfix/smtpd[7]: connect from c.example[192.0.2.1]  (skipped)
    general = ~line.str.contains(_FAST_ANY)
    gaps = _gap_pattern(tz, reference.year)
    if gaps is not None:
        # An hour the clocks skip: invalid stamps, the general path says so.
        general = general | line.str.contains(gaps)
        in_gap = fast.select(line.str.contains(gaps)).to_series()
        others = pl.concat([others, fast.filter(in_gap).drop("queued")])
        fast = fast.filter(~in_gap)
    general_rows = others.filter(general).select("line_no", "line")
    kept, skipped = None, others.height - general_rows.height
    if general_rows.height:  # (none in most logs: spare the fixed cost)
        kept, others_skipped = _kinds(_syslog_records(general_rows, tz, reference), seq_base)
        skipped += others_skipped
    queued = pl.col("queued")
    fast = fast.select(
        "line_no",
        "queued",
        raw="line",
        body=line.str.strip_prefix(queued),
    )
    fast_height = fast.height
    fast = _with_body_kind(fast).filter(pl.col("kind") != "skip")
    # Only events need a time and a host (the stamp is valid: _FAST_START and _gap_pattern
    # say so). A log has few distinct stamps: each is read once.
    event_queued = pl.when(pl.col("kind").is_in(_EVENT_KINDS)).then(queued)
    # mx postfix/smtp[5]: 3F2A1B2C3D:   (after the stamp: the host and the program, up to its
    # pid; a log has a few of them: each is read once, as the stamps are)
    fast = fast.with_columns(
        stamp=event_queued.str.head(_CLASSIC_LENGTH),
        writer=event_queued.str.slice(_CLASSIC_LENGTH + 1)
        .str.splitn("[", 2)
        .struct.field("field_0"),
    )
    stamps = fast.select(pl.col("stamp").unique().drop_nulls())
    # (a stamp of the common shape has no fraction: _FAST_START)
    times = _zoned(_classic_time(pl.col("stamp"), reference, fraction=False), tz)
    stamps = stamps.with_columns(timestamp=times)
    writer = pl.col("writer").str.splitn(" ", 2)
    writers = fast.select(pl.col("writer").unique().drop_nulls()).with_columns(
        host=writer.struct.field("field_0"), transport=_service(writer.struct.field("field_1"))
    )
    fast = fast.select(
        "line_no",
        seq=pl.col("line_no") + seq_base,
        raw="raw",
        timestamp=pl.col("stamp").replace_strict(
            stamps["stamp"],
            stamps["timestamp"],
            default=None,
            return_dtype=stamps["timestamp"].dtype,
        ),
        host=pl.col("writer").replace_strict(
            writers["writer"], writers["host"], default=None, return_dtype=pl.String()
        ),
        transport=pl.col("writer").replace_strict(
            writers["writer"], writers["transport"], default=None, return_dtype=pl.String()
        ),
        qid=queued.str.extract(r"[0-9A-Za-z]+: $", 0).str.head(-2),
        body="body",
        kind="kind",
        bad=pl.lit(None, pl.String()),
    )
    skipped += fast_height - fast.height
    if kept is not None and kept.height:
        fast = pl.concat([kept, fast]).sort("line_no")  # line order: the state join needs it
    return fast, skipped


def _gap_pattern(tz: str, year: int) -> str | None:
    """A regex for classic stamps in an hour the clocks skip in `year` or the year before."""
    hours = _gap_hours(tz, year)
    if not hours:
        return None
    return "^(?:" + "|".join(re.escape(hour) for hour in hours) + ")"


@functools.lru_cache(maxsize=16)
def _gap_hours(tz: str, year: int) -> tuple[str, ...]:
    """`Mar 29 02:` for every hour of `year` and the year before with a time that does not exist
    in `tz` (it is skipped when the clocks go forward); in five-minute steps."""
    local = pl.datetime_range(
        datetime(year - 1, 1, 1), datetime(year + 1, 1, 1), "5m", closed="left", eager=True
    )
    zoned = local.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null")
    hours: set[str] = set()
    for moment in local.filter(zoned.is_null()).to_list():  # a few dozen at most
        days = {f"{moment.day:2d}", f"{moment.day:02d}"}
        if (moment.month, moment.day) == (2, 28):
            days.add("29")  # Feb 29 is read in a leap year, then moved to Feb 28
        month = _MONTHS[moment.month - 1]
        hours.update(f"{month} {day} {moment.hour:02d}:" for day in days)
    return tuple(sorted(hours))


# --- input formats -> records ---------------------------------------------------------------


def _syslog_records(lines: pl.DataFrame, tz: str, reference: datetime) -> pl.DataFrame:
    """Syslog lines -> records: the stamp in UTC, host, program and message."""
    parts = (
        lines.select("line_no", raw="line", parsed=pl.col("line").str.extract_groups(_SYSLOG))
        .unnest("parsed")
        .with_columns(message=pl.col("raw").str.slice(pl.col("prefix").str.len_chars()))
    )
    fmt = "%Y %b %d %H:%M:%S%.f"
    yearful = pl.col("yearful").str.strptime(pl.Datetime("us"), fmt, strict=False)
    local = pl.coalesce(_classic_time(pl.col("classic"), reference), yearful, _rfc_local())
    stamped = pl.coalesce(_zoned(local, tz), _rfc_utc())
    parts = parts.with_columns(stamped=stamped)
    stamped = pl.col("stamped")
    return parts.select(
        "line_no",
        "raw",
        timestamp=stamped,
        host="host",
        program="program",
        message="message",
        bad=pl.when(pl.col("raw").str.strip_chars() == "")
        .then(None)  # a blank line: skipped
        .when(pl.col("message").is_null())
        .then(pl.lit("not a syslog line (timestamp host program: message)"))
        .when(stamped.is_null())
        .then(pl.lit("invalid timestamp")),
    ).with_columns(
        # A blank line is read and skipped: give it no program.
        program=pl.when(pl.col("raw").str.strip_chars() == "")
        .then(None)
        .otherwise(pl.col("program")),
    )


def _classic_time(classic: pl.Expr, reference: datetime, *, fraction: bool = True) -> pl.Expr:
    """A classic stamp (`Nov 28 10:00:00`) as a naive time in the log's zone; null if invalid.

    It is parsed once in a leap year (so that Feb 29 exists), then moved to the year of
    `reference`, or to the year before when that would put it more than a day after
    `reference` (Dec 31 in a file written on Jan 1). Without `fraction`, the stamps have no
    fraction of a second (polars parses those several times faster).
    """
    fmt = "%Y %b %d %H:%M:%S%.f" if fraction else "%Y %b %d %H:%M:%S"
    in_leap_year = pl.concat_str([pl.lit(f"{_LEAP_YEAR} "), classic]).str.strptime(
        pl.Datetime("us"), fmt, strict=False
    )
    return _in_reference_year(in_leap_year, reference)


def _in_reference_year(in_leap_year: pl.Expr, reference: datetime) -> pl.Expr:
    """A time of `_LEAP_YEAR` moved to the year of `reference`, or to the year before (see
    `_classic_time`)."""
    this_year = in_leap_year.dt.offset_by(f"{reference.year - _LEAP_YEAR}y")
    year_before = in_leap_year.dt.offset_by(f"{reference.year - 1 - _LEAP_YEAR}y")
    limit = reference + timedelta(days=1)
    return pl.when(this_year > pl.lit(limit)).then(year_before).otherwise(this_year)


def _zoned(local: pl.Expr, tz: str) -> pl.Expr:
    """A naive time in `tz` -> UTC; null in an hour the clocks skip."""
    zoned = local.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null")
    return zoned.dt.convert_time_zone("UTC")


def _rfc_utc() -> pl.Expr:
    # 2026-11-28T10:00:00.123456+01:00 mx postfix/smtp[123]: ...
    return (
        pl.col("rfc")
        .str.replace(r"Z$", "+00:00")
        .str.strptime(pl.Datetime("us", "UTC"), "%Y-%m-%dT%H:%M:%S%.f%z", strict=False)
    )


def _rfc_local() -> pl.Expr:
    # 2026-11-28T10:00:00.123456 mx postfix/smtp[123]: ...   (no offset: the log's zone)
    return pl.col("rfc").str.strptime(pl.Datetime("us"), "%Y-%m-%dT%H:%M:%S%.f", strict=False)


def _journal_time(column: str) -> pl.Expr:
    micros = pl.col(column).cast(pl.Int64(), strict=False)
    return pl.from_epoch(micros, time_unit="us").dt.replace_time_zone("UTC")


def _json_records(lines: pl.DataFrame) -> pl.DataFrame:
    """`journalctl -o json` lines -> records."""
    # {"__REALTIME_TIMESTAMP":"1795860000123456","_HOSTNAME":"mx","SYSLOG_IDENTIFIER":
    #  "postfix/smtp","_PID":"123","MESSAGE":"3F2A1B2C3D: to=<a@example.com>, ..."}
    fields = lines.select(
        "line_no",
        raw="line",
        json=pl.col("line").str.contains(r"^\s*\{.*\}\s*$"),
        time=_json_field("__REALTIME_TIMESTAMP"),
        host=_json_field("_HOSTNAME"),
        program=_json_field("SYSLOG_IDENTIFIER"),
        message=_json_field("MESSAGE"),
    )
    timestamp = _journal_time("time")
    return fields.select(
        "line_no",
        "raw",
        timestamp=timestamp,
        host="host",
        program=pl.when(pl.col("raw").str.strip_chars() == "")
        .then(None)
        .otherwise(pl.col("program")),
        message="message",
        bad=pl.when(pl.col("raw").str.strip_chars() == "")
        .then(None)
        .when(~pl.col("json"))
        .then(pl.lit("not a journal JSON record"))
        .when(~pl.col("program").str.contains(_PROGRAM).fill_null(False))
        .then(None)  # another program's record: skipped
        .when(pl.col("message").is_null())
        .then(pl.lit("journal record without a text MESSAGE"))
        .when(timestamp.is_null())
        .then(pl.lit("journal record without __REALTIME_TIMESTAMP")),
    )


def _export_frame(lines: pl.DataFrame) -> pl.DataFrame:
    """`journalctl -o export` lines (with their record number) -> one record per record."""
    # __REALTIME_TIMESTAMP=1795860000123456
    # _HOSTNAME=mx
    # SYSLOG_IDENTIFIER=postfix/smtp
    # MESSAGE=3F2A1B2C3D: to=<a@example.com>, relay=..., status=bounced (...)
    # (blank line)
    content = lines.filter(pl.col("line") != "").with_columns(
        pl.col("line").str.extract_groups(r"^(?P<key>[A-Za-z0-9_]+)=(?P<value>.*)$").struct.unnest()
    )

    def value(key: str) -> pl.Expr:
        return pl.col("value").filter(pl.col("key") == key).first().alias(key)

    records = content.group_by("record", maintain_order=True).agg(
        pl.col("line_no").first(),
        raw=pl.col("line").str.join("\n"),
        binary=pl.col("key").is_null().any(),
        time=value("__REALTIME_TIMESTAMP"),
        host=value("_HOSTNAME"),
        program=value("SYSLOG_IDENTIFIER"),
        message=value("MESSAGE"),
    )
    timestamp = _journal_time("time")
    return records.select(
        "line_no",
        "raw",
        timestamp=timestamp,
        host="host",
        program="program",
        message="message",
        bad=pl.when(pl.col("binary"))
        .then(pl.lit("journal export record with a binary field or a line without KEY="))
        .when(~pl.col("program").str.contains(_PROGRAM).fill_null(False))
        .then(None)
        .when(pl.col("message").is_null())
        .then(pl.lit("journal record without MESSAGE"))
        .when(timestamp.is_null())
        .then(pl.lit("journal record without __REALTIME_TIMESTAMP")),
    ).cast(_RECORD)  # type: ignore[arg-type]


# --- records -> events ----------------------------------------------------------------------


def _events_of(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """The lines that matter (`_kinds`) -> (their events, not yet joined with their queue
    id's sender and Message-ID; the malformed rows, line_no, raw and reason, in line order;
    how many of the lines are skipped: probes and state lines)."""
    kind = pl.col("kind")
    recipients, recipient_skips, recipient_bad = _recipient_events(
        frame.filter(kind == "recipient")
    )
    events = pl.concat(
        [
            recipients,
            _expired_events(frame.filter(kind == "expired")),
            _reject_events(frame.filter(kind == "reject")),
        ],
        how="diagonal_relaxed",
    )
    malformed = pl.concat(
        [
            frame.filter(kind == "bad").select("line_no", "raw", reason="bad"),
            frame.filter(kind == "bad_status").select(
                "line_no", "raw", reason=pl.lit(_NATIVE_REASONS[0])
            ),
            recipient_bad,
        ],
        how="diagonal_relaxed",
    ).sort("line_no")
    skipped = recipient_skips + frame.filter(kind.is_in(_STATE_KINDS)).height
    return events, malformed, skipped


def _recipient_events(frame: pl.DataFrame) -> tuple[pl.DataFrame, int, pl.DataFrame]:
    """Recipient status lines -> (events, number skipped, malformed)."""
    # ...smtp[5]: 3F2A1B2C3D: to=<a@example.com>, orig_to=<b@example.com>,
    #   relay=mx.example.com[192.0.2.7]:25, delay=1.2, delays=0.1/0/0.5/0.6, dsn=5.1.1,
    #   status=bounced (host mx.example.com[192.0.2.7] said: 550 5.1.1 <a@example.com>:
    #   Recipient address rejected: User unknown (in reply to RCPT TO command))
    if "status" not in frame.columns:
        frame = _recipient_fields(frame)
    parsed = frame.with_columns(
        event=pl.col("status").replace_strict(
            _STATUS_EVENTS, default=None, return_dtype=pl.String()
        )
    )
    bad = parsed.filter(
        pl.col("status").is_null()
        | (pl.col("event").is_null() & ~pl.col("status").is_in(_PROBE_STATUSES))
    ).select(
        "line_no",
        "raw",
        reason=pl.when(pl.col("status").is_null())
        .then(pl.lit("unreadable recipient status line"))
        .otherwise(pl.format("unknown status={}", pl.col("status"))),
    )
    # ...smtp[5]: 3F2A1B2C3D: to=<a@example.com>, ..., status=undeliverable (...)  (a probe)
    skips = parsed.filter(pl.col("status").is_in(_PROBE_STATUSES)).height
    good = parsed.filter(pl.col("event").is_not_null())
    no_relay = pl.col("relay_host").is_null() | (pl.col("relay_host") == "none")
    events = good.select(
        "line_no",
        "seq",
        "raw",
        "timestamp",
        "host",
        "event",
        "recipient",
        "original_recipient",
        "diagnostic",
        "transport",
        message_ref="qid",
        # relay=none: the host is in the text ("connect to mx.example.com[192.0.2.7]:25: ...").
        relay_host=pl.when(no_relay).then(pl.col("remote_host")).otherwise(pl.col("relay_host")),
        relay_ip=pl.when(no_relay).then(pl.col("remote_ip")).otherwise(pl.col("relay_ip")),
        smtp_code=pl.coalesce("said_code", "leading_code").cast(pl.Int16()),
        # The dsn is the status Postfix recorded, so it wins over a code in the text:
        # Postfix copies the reply's enhanced code into it only when their classes agree,
        # and writes X.0.0 of the reply's class otherwise (`said: 550 4.2.1 mailbox
        # temporarily disabled` is logged `dsn=5.0.0`); soft_bounce turns a 5 into a 4.
        # The text's code counts only on lines without a dsn (Postfix before 2.3).
        enhanced_code=pl.coalesce(
            "dsn",
            "dsn_alone",
            "said_enhanced",
            "leading_enhanced",
        ),
        delay_s=pl.col("delay").cast(pl.Float64(), strict=False),
        sender=pl.lit(None, pl.String()),
    )
    return events, skips, bad


def _recipient_fields(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with the fields of `_RECIPIENT` cut from `body` (all null where it does not
    match), `rest` (the body after them), the relay's host and address, and what the
    diagnostic says: the text, the codes that lead it or that a server said, and where the
    relay names no host, the host in the text."""
    rest, diagnostic = pl.col("rest"), pl.col("diagnostic")
    frame = (
        frame.with_columns(fields=pl.col("body").str.extract_groups(_RECIPIENT))
        .unnest("fields")
        # (A literal cut: byte-exact, where a `find` offset would be read as characters.)
        .with_columns(
            rest=pl.col("body").str.strip_prefix(pl.col("head")),
            relay_host=pl.col("relay").str.extract(r"^[^\[\]:]+", 0),
            relay_ip=pl.col("relay")
            .str.extract(r"\[[0-9A-Fa-f:.]+\]", 0)
            .str.slice(1)
            .str.head(-1),
        )
        .drop("head")
        # The whole text in the outer parentheses (which nest) after the status, whatever
        # follows them.
        .with_columns(diagnostic=pl.when(rest.str.starts_with(" (")).then(rest.str.slice(2)))
        .with_columns(
            diagnostic=pl.when(diagnostic.str.ends_with(")"))
            .then(diagnostic.str.head(-1))
            .otherwise(
                pl.coalesce(
                    # The longest start that ends with ")", without it (rare: found only there).
                    pl.when(~diagnostic.str.ends_with(")"))
                    .then(diagnostic)
                    .str.extract(r"^.*\)", 0)
                    .str.head(-1),
                    diagnostic,
                )
            )
        )
    )
    # 250 2.0.0 Ok: queued as 4F2A   (the codes that lead the text; its first characters)
    leading = diagnostic.str.extract(_LEADING_CODES_SHAPE, 0)
    # relay=none: the host is in the text ("connect to mx.example.com[192.0.2.7]:25: ...").
    no_relay = pl.col("relay_host").is_null() | (pl.col("relay_host") == "none")
    return frame.with_columns(
        said=diagnostic.str.extract_groups(_SAID).struct.rename_fields(
            ["said_code", "said_enhanced"]
        ),
        leading_code=leading.str.extract(f"^{REPLY_CODE}", 0),
        leading_enhanced=leading.str.extract(ENHANCED_CODE, 0),
        remote=pl.when(no_relay).then(diagnostic).str.extract_groups(_REMOTE),
    ).unnest("said", "remote")


#: The fields `_state_fields` adds (the C tokenizer cuts the same: native/postfix.c).
_STATE_FIELDS = ("state_sender", "state_message_id")

#: The kinds of the state lines: what they say of a queue id is joined onto its events.
_STATE_KINDS = ("from", "message_id", "removed")
#: The columns of the state lines that `_join_open_ids` reads.
_STATE_COLUMNS = ("line_no", "seq", "qid", "kind", *_STATE_FIELDS)


def _state_fields(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with the sender of qmgr's from= lines and the Message-ID of cleanup's
    message-id= lines (null on other lines; a Message-ID that is empty is null)."""
    kind, body = pl.col("kind"), pl.col("body")
    return frame.with_columns(
        # ...qmgr[9]: 3F2A1B2C3D: from=<s@example.org>, size=4303, nrcpt=1 (queue active)
        # (whole matches, then their known lead cut off: cheaper than a group)
        state_sender=pl.when(kind == "from")
        .then(body)
        .str.extract(r"^from=<[^>]*", 0)
        .str.slice(6),
        # ...cleanup[8]: 3F2A1B2C3D: message-id=<20261128.abc@example.org>
        state_message_id=_empty_to_null(
            pl.when(kind == "message_id")
            .then(body)
            .str.extract(r"^message-id=<?[^<>\s]*", 0)
            .str.slice(11)
            .str.strip_prefix("<")
        ),
    )


def _expired_events(frame: pl.DataFrame) -> pl.DataFrame:
    # ...qmgr[9]: 3F2A1B2C3D: from=<s@example.org>, status=expired, returned to sender
    return frame.select(
        "line_no",
        "seq",
        "raw",
        "timestamp",
        "host",
        "transport",
        event=pl.lit("expired"),
        message_ref="qid",
        sender=pl.col("body").str.extract(r"^from=<([^>]*)>", 1),
        diagnostic=pl.col("body").str.extract(r", status=expired, (.*)$", 1),
        recipient=pl.lit(None, pl.String()),
    )


def _reject_fields(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with a reject's `stage` text (null when the line has no stage and client),
    `client_host` and `client_ip` (`_CLIENT`), `envelope_sender` and `envelope_recipient`
    (`_ENVELOPE`), cut from `body`."""
    body = pl.col("body")
    # ...smtpd[7]: NOQUEUE: reject: RCPT from c.example[192.0.2.1]: 554 5.7.1 <a@example.com>:
    #   Relay access denied; from=<s@example.org> to=<a@example.com> proto=ESMTP helo=<c>
    # ...postscreen[6]: NOQUEUE: reject: RCPT from [192.0.2.1]:4711: 550 5.7.1 Service
    #   unavailable; client [192.0.2.1] blocked using zen.spamhaus.org; from=<s@example.org>,
    #   to=<a@example.com>, proto=ESMTP, helo=<c>
    # ...cleanup[8]: 3F2A1B2C3D: milter-reject: END-OF-MESSAGE from c[192.0.2.1]: 4.7.1
    #   Greylisting in action; from=<s@example.org> to=<a@example.com> proto=ESMTP helo=<c>
    # The text: after the stage and client, up to the first "; from=<" or "; proto=".
    stage = body.str.strip_prefix(body.str.extract(_STAGE_REJECT, 0))
    stage = stage.str.splitn("; from=<", 2).struct.field("field_0")
    stage = stage.str.splitn("; proto=", 2).struct.field("field_0")
    envelope = body.str.extract_groups(_ENVELOPE).struct
    return frame.with_columns(
        stage=stage,
        client=body.str.extract_groups(_CLIENT),
        envelope=envelope.rename_fields(["envelope_sender", "envelope_recipient"]),
    ).unnest("client", "envelope")


def _reject_events(frame: pl.DataFrame) -> pl.DataFrame:
    if "stage" not in frame.columns:
        frame = _reject_fields(frame)
    body = pl.col("body")
    # ...cleanup[8]: 3F2A1B2C3D: reject: header Subject: win from c[192.0.2.1];
    #   from=<s@example.org> to=<a@example.com> proto=ESMTP helo=<c>: 5.7.1 Spam rejected
    # (rare: read only where the stage is not; a null is not searched)
    content = pl.when(pl.col("stage").is_null()).then(body).str.extract(_CONTENT_REJECT, 1)
    # Anything else: all that follows "reject: ".
    anything = body.str.splitn("reject: ", 2).struct.field("field_1")
    parsed = frame.with_columns(diagnostic=pl.coalesce("stage", content, anything)).with_columns(
        codes=pl.col("diagnostic").str.extract_groups(_LEADING_CODES)
    )
    return parsed.select(
        "line_no",
        "seq",
        "raw",
        "timestamp",
        "host",
        "diagnostic",
        "transport",
        event=pl.lit("rejected"),
        message_ref=pl.when(pl.col("qid") == "NOQUEUE").then(None).otherwise(pl.col("qid")),
        # the client our server refused (postscreen names no host: "RCPT from [192.0.2.1]")
        client_host=_empty_to_null(pl.col("client_host")),
        client_ip="client_ip",
        sender="envelope_sender",
        recipient="envelope_recipient",
        smtp_code=pl.col("codes").struct.field("code").cast(pl.Int16()),
        enhanced_code=pl.col("codes").struct.field("enhanced"),
    )


# --- the C path (native/postfix.c) ----------------------------------------------------------


def _first_line(batch: Batch) -> str | None:
    """The first line of `batch` as `batch_lines` reads it, when it is not blank and plainly
    cut (None: let the lines say; the polars path reads the batch)."""
    head = bytes(memoryview(batch.data)[:65536])
    end = head.find(b"\n")
    if end < 0 and len(head) < len(batch.data):
        return None
    first = (head if end < 0 else head[:end]).replace(b"\x00", b"")
    if first.endswith(b"\r"):
        first = first[:-1]
    if not first or b"\r" in first:
        return None
    return first.decode("utf-8", "replace")


def _first_text(lines: pl.DataFrame) -> str | None:
    """The first line of `lines` that is not blank."""
    first = lines.filter(pl.col("line") != "").head(1)["line"].to_list()
    return first[0] if first else None


def _stamp_times(keys: pl.Series, tz: str, reference: datetime) -> pl.DataFrame:
    """The distinct `stamp_key`s (native/postfix.c: ((month * 32 + day) * 24 + hour) * 3600
    + minute * 60 + second, of a real day and time) -> their UTC times, as the polars path
    reads the stamps (`_classic_time`, then `_zoned`)."""
    key = pl.col("key")
    hours = key // 3600
    in_leap_year = pl.datetime(
        _LEAP_YEAR, hours // 24 // 32, hours // 24 % 32, hours % 24, key % 3600 // 60, key % 60
    )
    times = _zoned(_in_reference_year(in_leap_year, reference), tz)
    return keys.unique().drop_nulls().to_frame("key").select("key", timestamp=times)


#: What the C path's events carry beside their own columns (`tokenize`), whose `sender`,
#: `sender_domain` and `message_id` are those the batch's state lines give: whether the
#: line names its sender itself, and whether the map of open ids is to give its sender (and
#: the sender's domain) and its Message-ID where it has the event's queue id.
_CARRIED = ("sender_own", "sender_open", "message_id_open")
#: The events of `tokenize`'s `event` column, by number (native/postfix.c, `EV_...`).
_NATIVE_EVENTS = ("delivered", "deferred", "bounced", "expired", "rejected")
#: Why `tokenize` put a line among the malformed, by number (`R_...`): the reasons
#: `_events_of` gives (the third names the status).
_NATIVE_REASONS = (
    "status line without to=<...> or relay=",
    "unreadable recipient status line",
    "unknown status={}",
)


def _native_events(
    data: bytes | bytearray, cut: dict[str, Any], tz: str, reference: datetime, seq_base: int
) -> pl.DataFrame:
    """The events of `tokenize` with the columns `_recipient_events`, `_expired_events` and
    `_reject_events` give, in line order, the recipient and its domain lower-cased, and the
    sender, its domain and the Message-ID the batch's own state lines give (`_CARRIED`)."""
    count = cut["kept"]

    def strings(name: str) -> pl.Series:
        # (views into the batch, or into its lower-cased copies: `lower`)
        return string_column(
            name, count, cut[name], data, cut[f"{name}_valid"], second=cut["lower"]
        )

    def numbers(name: str, kind: pa.DataType) -> pl.Series:
        return number_column(name, kind, count, cut[name], cut[f"{name}_valid"])

    views = (
        "raw",
        "host",
        "transport",
        "message_ref",
        "recipient",
        "recipient_domain",
        "original_recipient",
        "diagnostic",
        "relay_host",
        "relay_ip",
        "client_host",
        "client_ip",
        "enhanced_code",
        "delay",
        "sender",
        "sender_domain",
        "message_id",
    )
    frame = pl.DataFrame(
        [
            number_column("line_no", pa.int64(), count, cut["line_no"]),
            number_column("key", pa.int32(), count, cut["stamp"]),
            number_column("event", pa.uint8(), count, cut["event"]),
            *(strings(name) for name in views),
            numbers("smtp_code", pa.int16()),
            *(
                number_column(name, pa.uint8(), count, cut[name]).cast(pl.Boolean())
                for name in _CARRIED
            ),
        ]
    )
    times = _stamp_times(frame["key"], tz, reference)
    timestamp = pl.col("key").replace_strict(
        times["key"], times["timestamp"], default=None, return_dtype=pl.Datetime("us", "UTC")
    )
    event = pl.lit(pl.Series(_NATIVE_EVENTS, dtype=pl.String())).gather(pl.col("event"))
    seq = (pl.col("line_no") + seq_base).alias("seq")
    return frame.select(
        "line_no",
        seq,
        timestamp.alias("timestamp"),
        event.alias("event"),
        *views,
        "smtp_code",
        *_CARRIED,
        delay_s=pl.col("delay").cast(pl.Float64(), strict=False),
    ).drop("delay")


def _native_malformed(data: bytes | bytearray, cut: dict[str, Any]) -> pl.DataFrame:
    """The malformed lines of `tokenize` (line_no, raw, reason), in line order."""
    count = cut["bad"]
    reason = number_column("reason", pa.uint8(), count, cut["bad_reason"])
    status = string_column("status", count, cut["bad_status"], data, cut["bad_status_valid"])
    named = pl.Series(_NATIVE_REASONS, dtype=pl.String()).gather(reason)
    return pl.DataFrame(
        [
            number_column("line_no", pa.int64(), count, cut["bad_line_no"]),
            string_column("raw", count, cut["bad_raw"], data),
            named.alias("reason"),
            status,
        ]
    ).select(
        "line_no",
        "raw",
        reason=pl.when(pl.col("status").is_null())
        .then("reason")
        .otherwise(pl.format("unknown status={}", pl.col("status"))),
    )


def _native_state(data: bytes | bytearray, cut: dict[str, Any], seq_base: int) -> pl.DataFrame:
    """The state lines of `tokenize` (qmgr from=, cleanup message-id=, removed) as
    `_syslog_kinds` and `_state_fields` give them (their `raw` and `body` left null: the
    state join reads neither)."""
    count = cut["state"]
    line_no = number_column("line_no", pa.int64(), count, cut["state_line_no"])
    kind = pl.lit(pl.Series(_KIND.categories, dtype=_KIND)).gather(pl.col("kind"))
    return pl.DataFrame(
        [
            line_no,
            number_column("kind", pa.uint8(), count, cut["state_kind"]),
            string_column("qid", count, cut["state_qid"], data),
            *(
                string_column(name, count, cut[name], data, cut[f"{name}_valid"])
                for name in _STATE_FIELDS
            ),
        ]
    ).select(
        "line_no",
        (pl.col("line_no") + seq_base).alias("seq"),
        "qid",
        kind.alias("kind"),
        *_STATE_FIELDS,
    )


def _native_ids(data: bytes | bytearray, cut: dict[str, Any], seq_base: int) -> pl.DataFrame:
    """The queue ids a batch names (`tokenize`'s `ids`), with what its state lines say of
    each: `message_ref`, the last `sender` and `message_id`, the `seq` of the last line that
    gave one and the `removed_seq` of the last `removed`; `state`: whether a state line names
    it; `open`: whether it stays open after the batch (no `removed` after its last from= or
    message-id=)."""
    count = cut["ids"]

    def strings(name: str, key: str) -> pl.Series:
        return string_column(name, count, cut[key], data, cut.get(f"{key}_valid"))

    def seqs(name: str, key: str) -> pl.Series:
        return number_column(name, pa.int64(), count, cut[key], cut[f"{key}_valid"]) + seq_base

    return pl.DataFrame(
        [
            strings("message_ref", "id_qid"),
            strings("sender", "id_sender"),
            strings("message_id", "id_message_id"),
            seqs("seq", "id_seq"),
            seqs("removed_seq", "id_removed"),
            number_column("state", pa.uint8(), count, cut["id_state"]).cast(pl.Boolean()),
            number_column("open", pa.uint8(), count, cut["id_open"]).cast(pl.Boolean()),
        ]
    )
