"""Mailgun events: webhook bodies, Events API pages, single events, NDJSON, legacy webhooks.

Accepted inputs, alone or mixed, pretty-printed or one per line (NDJSON), in arrays or one
after another:

- webhook bodies: `{"signature": {...}, "event-data": {...}}`;
- Events API pages: `{"items": [{...}, ...], "paging": {...}}`;
- single event objects: `{"event": "failed", "id": "...", ...}`;
- legacy (pre-2018) webhooks: a form-encoded body per line
  (`event=bounced&recipient=a%40b.example&code=550&error=...`), or the same form fields as a JSON
  object. Form bodies are decoded with `urllib.parse`, once per body (one event each): the only
  per-record Python step, for a format Mailgun has retired.

A document may span batches; it is buffered until complete, up to `_json.MAX_DOCUMENT_BYTES`.

Events and what they become (`event` column):

| Mailgun `event` (and `reason`, `severity`)                  | event      |
|-------------------------------------------------------------|------------|
| delivered                                                   | delivered  |
| failed, reason suppress-bounce/-unsubscribe/-complaint      | dropped    |
| failed, reason old (retry period exceeded)                  | expired    |
| failed, severity permanent                                  | bounced    |
| failed, severity temporary                                  | deferred   |
| rejected (Mailgun refused to send the message)              | dropped    |
| complained                                                  | complained |
| legacy bounced                                              | bounced    |
| legacy dropped (reason old: expired)                        | dropped    |
| accepted, opened, clicked, unsubscribed, stored, any other  | skipped    |

A `failed` event with neither a suppress/old reason nor a severity is malformed.

Mailgun's `rejected` is Mailgun itself refusing to send (a sandbox domain, a sending limit,
a suppressed address): no receiving server was asked, as with SendGrid's `dropped`, so it is
`dropped`, not `rejected` (a refusal at SMTP time). `esp_classification` keeps Mailgun's word.

Fields: `timestamp` (Unix seconds as a number or numeric text, or an RFC 2822 date),
`recipient` (else `envelope.targets`), `recipient-domain` (else the recipient's domain),
sender = the address in `message.headers.from` (else `envelope.sender`), sender_domain = its
domain (legacy: the `domain` field, the sending domain), host = `envelope.sending-ip`,
relay_host = `delivery-status.mx-host`, attempt = `delivery-status.attempt-no`.
message_ref and message_id are both `message.headers.message-id` (legacy `Message-Id`),
without <>: Mailgun's sending API returns it as the message's id and the Events API filters
by it, so it is Mailgun's handle for the message (`storage.key` is absent from most events).
delay_s stays null (`session-seconds` is the SMTP session time, not the delay).

smtp_code: `delivery-status.code` (legacy `code`) only when it is a real SMTP reply code
(first digit 2-5, second 0-5): Mailgun's own codes such as 605 (suppressed) and 498 are null.
enhanced_code: `delivery-status.enhanced-code`, else the one at the start of the text.
diagnostic: the longer of `delivery-status.description` and `delivery-status.message` (empty
ones ignored); else legacy `error`, `description`, `notification`; else `reject.description`,
`reject.reason`.

esp_classification: Mailgun's own words joined by "/": `<severity>/<reason>` for failed events
("permanent/bounce", "temporary/generic", "permanent/suppress-bounce"), "rejected" or
`rejected/<reject.reason>`, and `<event>` or `<event>/<reason>` for legacy bounced and dropped
("bounced", "dropped/hardfail").

event_id: the hash of the event name and Mailgun's event `id`; without one (legacy), of the
event name and the event re-encoded as JSON (the fields read here, the token included).

origin: `path:line` for a lone event (or webhook body) starting at that line; `path:line#index`
for the index-th (0-based) event of an array, page or run of documents starting there.
"""

from __future__ import annotations

import json
import re
from typing import ClassVar
from urllib.parse import parse_qsl

import polars as pl

from bounce_analyzer import schema
from bounce_analyzer.smtp import REPLY_CODE, domain_of
from bounce_analyzer.sources import _json
from bounce_analyzer.sources.base import SourceOutput

S = pl.String()
_EVENT_FIELDS: dict[str, pl.DataType] = {
    "event": S,
    "id": S,
    "timestamp": S,
    "severity": S,
    "reason": S,
    "recipient": S,
    "recipient-domain": S,
    "delivery-status": pl.Struct(
        dict.fromkeys(
            ("code", "message", "description", "enhanced-code", "attempt-no", "mx-host"), S
        )
    ),
    "envelope": pl.Struct({"sender": S, "targets": S, "sending-ip": S}),
    "message": pl.Struct({"headers": pl.Struct({"message-id": S, "from": S})}),
    "reject": pl.Struct({"reason": S, "description": S}),
    # legacy webhooks (form fields)
    "Message-Id": S,
    "code": S,
    "error": S,
    "notification": S,
    "description": S,
    "domain": S,
    "token": S,
}
EVENT = pl.Struct(_EVENT_FIELDS)
#: What is read of each top-level object: an event, a webhook body or an Events API page.
ELEMENT = pl.Struct({**_EVENT_FIELDS, "event-data": EVENT, "items": pl.List(EVENT)})

#: Event names that are not delivery outcomes (others not in the table are skipped too).
SKIPPED_EVENTS = ("accepted", "opened", "clicked", "unsubscribed", "stored")

_FORM = r"^[A-Za-z0-9_.%-]+=[^&]*(?:&|$)"
_SNIFF_JSON = [
    re.compile(r'"event-data"\s*:'),
    # {"signature": {"token": "...", "timestamp": "...", "signature": "..."}, "event-data": ...
    re.compile(r'"signature"\s*:\s*\{[^}]*"token"\s*:'),
    re.compile(r'"items"\s*:[\s\S]*"paging"\s*:|"paging"\s*:[\s\S]*"items"\s*:'),
    re.compile(r'"recipient"\s*:[\s\S]*"(?:log-level|delivery-status|recipient-domain)"\s*:'),
    re.compile(r'"(?:Message-Id|message-headers)"\s*:'),
]
_SNIFF_FORM = re.compile(r"^(?=[^\n]*(?:^|&)event=)(?=[^\n]*(?:^|&)recipient=)[^\n]*=")


class Mailgun(_json.JsonSource):
    """Mailgun webhooks (current and legacy), Events API pages and single events."""

    name: ClassVar[str] = "mailgun"

    def sniff(self, head: bytes) -> bool:
        """A webhook body, an Events API page, a Mailgun event, or a legacy form body."""
        text = _json.looks_like_json(head)
        if text is None:
            first = head.decode("utf-8", "replace").lstrip("\ufeff \t\r\n")
            return bool(_SNIFF_FORM.match(first))
        if '"sg_event_id"' in text or '"sg_message_id"' in text:
            return False
        return any(pattern.search(text) for pattern in _SNIFF_JSON)

    def _parse_documents(
        self, docs: pl.DataFrame, overlong: pl.DataFrame, path: str
    ) -> SourceOutput:
        is_json = pl.col("text").str.contains(r"^[\[{]")
        is_form = ~is_json & pl.col("text").str.contains(_FORM)
        # event=bounced&recipient=alice%40example.com&code=550&error=5.1.1+No+such+user
        forms = docs.filter(is_form)
        if forms.height:
            texts = [json.dumps(dict(parse_qsl(text))) for text in forms["text"]]
            forms = forms.with_columns(text=pl.Series(texts, dtype=pl.String))
        # Lines neither JSON nor a form body: 'Apr  1 10:00:00 host text' -> malformed.
        junk = _json.not_json_rows(
            docs.filter(~is_json & ~is_form), path, "neither JSON nor a form-encoded webhook body"
        )
        elements, bad = _json.decode_documents(
            pl.concat([docs.filter(is_json), forms], how="diagonal_relaxed"),
            ELEMENT,
            path,
            counts=self._counts,
        )
        frame = _events(elements).select(
            _json.origin(path),
            "ev",
            pl.col("ev").struct.unnest(),
        )
        frame = _outcomes(frame)
        set_aside = [overlong, junk, bad]
        return self._outcomes(frame, docs, raw="ev", facts=_facts, set_aside=set_aside)


def _events(elements: pl.DataFrame) -> pl.DataFrame:
    """One row (`ev`: an EVENT struct) per event of the top-level objects, in input order."""
    element = pl.col("element")
    keys = ["doc", "line", "multi", "pos"]
    # {"signature": {...}, "event-data": {"event": "failed", ...}}
    bodies = elements.filter(element.struct.field("event-data").is_not_null()).select(
        *keys,
        pl.lit(0, pl.Int64).alias("item"),
        pl.lit(False).alias("page"),
        element.struct.field("event-data").alias("ev"),
    )
    # {"items": [{"event": "delivered", ...}, ...], "paging": {...}}
    pages = (
        elements.filter(
            element.struct.field("event-data").is_null()
            & element.struct.field("items").is_not_null()
        )
        .select(*keys, element.struct.field("items").alias("ev"))
        .filter(pl.col("ev").list.len() > 0)
        .with_columns(item=pl.int_ranges(0, pl.col("ev").list.len(), dtype=pl.Int64))
        .explode("ev", "item")
        .with_columns(multi=pl.lit(True), page=pl.lit(True))
    )
    # {"event": "failed", "id": "...", ...} or legacy {"event": "bounced", "code": "550", ...}
    lone = elements.filter(
        element.struct.field("event-data").is_null() & element.struct.field("items").is_null()
    ).select(
        *keys,
        pl.lit(0, pl.Int64).alias("item"),
        pl.lit(False).alias("page"),
        pl.struct([element.struct.field(name) for name in _EVENT_FIELDS]).alias("ev"),
    )
    frame = pl.concat([bodies, pages.select(bodies.columns), lone]).sort("doc", "pos", "item")
    # An event of a page: its index among the events of the document (an array of pages
    # counts on from one page to the next).
    return frame.with_columns(
        pos=pl.when(pl.col("page")).then(pl.int_range(pl.len()).over("doc")).otherwise("pos")
    )


def _outcomes(frame: pl.DataFrame) -> pl.DataFrame:
    """Add `name`, `outcome` (the event column, null if skipped) and `problem` (malformed)."""
    name = _json.blank_to_null(pl.col("event")).str.to_lowercase()
    reason = _json.blank_to_null(pl.col("reason")).str.to_lowercase()
    severity = _json.blank_to_null(pl.col("severity")).str.to_lowercase()
    recipient = pl.coalesce(
        _json.blank_to_null(pl.col("recipient")),
        _json.blank_to_null(pl.col("envelope").struct.field("targets")),
    ).str.to_lowercase()
    frame = frame.with_columns(
        name=name,
        reason_=reason,
        severity_=severity,
        recipient_=recipient,
        ts=pl.coalesce(
            _json.epoch_seconds(pl.col("timestamp")), _json.rfc2822(pl.col("timestamp"))
        ),
    )
    name, reason, severity = pl.col("name"), pl.col("reason_"), pl.col("severity_")
    outcome = (
        # "event": "delivered"
        pl.when(name == "delivered")
        .then(pl.lit("delivered"))
        # "event": "failed", "severity": "permanent", "reason": "suppress-bounce"
        .when((name == "failed") & reason.str.starts_with("suppress-"))
        .then(pl.lit("dropped"))
        # "event": "failed", "severity": "permanent", "reason": "old"
        .when((name == "failed") & (reason == "old"))
        .then(pl.lit("expired"))
        # "event": "failed", "severity": "permanent", "reason": "bounce"
        .when((name == "failed") & (severity == "permanent"))
        .then(pl.lit("bounced"))
        # "event": "failed", "severity": "temporary", "reason": "generic"
        .when((name == "failed") & (severity == "temporary"))
        .then(pl.lit("deferred"))
        # "event": "rejected", "reject": {"reason": "...", "description": "..."}: Mailgun
        # refused to send, as SendGrid drops
        .when(name == "rejected")
        .then(pl.lit("dropped"))
        # "event": "complained"
        .when(name == "complained")
        .then(pl.lit("complained"))
        # legacy: event=bounced&code=550&error=...
        .when(name == "bounced")
        .then(pl.lit("bounced"))
        # legacy: event=dropped&reason=old&code=605&description=...
        .when((name == "dropped") & (reason == "old"))
        .then(pl.lit("expired"))
        # legacy: event=dropped&reason=hardfail&code=605&description=...
        .when(name == "dropped")
        .then(pl.lit("dropped"))
    )
    problem = (
        pl.when(name.is_null())
        .then(pl.lit('no "event" field'))
        .when((name == "failed") & pl.col("outcome").is_null())
        .then(pl.lit('failed event without "severity"'))
        .when(pl.col("outcome").is_null())
        .then(None)
        .when(pl.col("recipient_").is_null())
        .then(pl.concat_str(name, pl.lit(' event without "recipient"')))
        .when(pl.col("ts").is_null())
        .then(pl.concat_str(name, pl.lit(' event without a valid "timestamp"')))
    )
    return frame.with_columns(outcome=outcome).with_columns(problem=problem)


def _longer(first: pl.Expr, second: pl.Expr) -> pl.Expr:
    """The longer of two texts (nulls ignored; `first` on a tie)."""
    return (
        pl.when(second.is_null())
        .then(first)
        .when(first.is_null())
        .then(second)
        .when(first.str.len_chars() >= second.str.len_chars())
        .then(first)
        .otherwise(second)
    )


def _address(expr: pl.Expr) -> pl.Expr:
    """The address in a From header: '"Bob" <bob@example.com>' or 'bob@example.com'."""
    return pl.coalesce(
        expr.str.extract(r"<\s*([^<>\s]+@[^<>\s]+)\s*>", 1),
        expr.str.extract(r"^\s*([^<>\s\"]+@[^<>\s\"]+)\s*$", 1),
    )


def _facts(frame: pl.DataFrame) -> pl.DataFrame:
    """Outcome events (decoded fields) -> fact columns."""
    status = pl.col("delivery-status")
    headers = pl.col("message").struct.field("headers")
    reject = pl.col("reject")
    # "delivery-status": {"code": 550, "message": "No Such User Here", "description": "", ...}
    diagnostic = pl.coalesce(
        _longer(
            _json.blank_to_null(status.struct.field("description")),
            _json.blank_to_null(status.struct.field("message")),
        ),
        # legacy: error=..., description=..., notification=...
        _json.blank_to_null(pl.col("error")),
        _json.blank_to_null(pl.col("description")),
        _json.blank_to_null(pl.col("notification")),
        # "reject": {"reason": "...", "description": "..."}
        _json.blank_to_null(reject.struct.field("description")),
        _json.blank_to_null(reject.struct.field("reason")),
    )
    code = pl.coalesce(
        _json.blank_to_null(status.struct.field("code")), _json.blank_to_null(pl.col("code"))
    )
    sender = pl.coalesce(
        _address(headers.struct.field("from")),
        _json.blank_to_null(pl.col("envelope").struct.field("sender")),
    )
    message_id = pl.coalesce(
        _json.blank_to_null(headers.struct.field("message-id")),
        _json.blank_to_null(pl.col("Message-Id")),
    ).str.strip_chars("<>")
    name, reason = pl.col("name"), _json.blank_to_null(pl.col("reason"))
    classification = (
        pl.when(name == "failed")
        .then(pl.concat_str(pl.col("severity").fill_null(""), reason.fill_null(""), separator="/"))
        .when(name.is_in(["rejected", "bounced", "dropped"]))
        .then(
            pl.concat_str(
                name,
                pl.when(name == "rejected")
                .then(_json.blank_to_null(reject.struct.field("reason")))
                .otherwise(reason),
                separator="/",
                ignore_nulls=True,
            )
        )
    )
    # "id": "G9Bn5sl1TC6nu79C8C0bwg"
    event_id = _json.blank_to_null(pl.col("id"))
    record = pl.concat_str(
        name, pl.lit("\x1f"), pl.coalesce(event_id, _json.json_text(frame, event_id, "ev"))
    )
    return frame.with_columns(diagnostic=diagnostic, sender_=sender).select(
        schema.event_id(Mailgun.name, record),
        pl.col("ts").alias("timestamp"),
        pl.lit(Mailgun.name).alias("source"),
        _json.blank_to_null(pl.col("envelope").struct.field("sending-ip")).alias("host"),
        pl.col("outcome").alias("event"),
        message_id.alias("message_ref"),
        message_id.alias("message_id"),
        pl.col("sender_").alias("sender"),
        pl.coalesce(
            domain_of(pl.col("sender_")),
            _json.blank_to_null(pl.col("domain")).str.to_lowercase(),
        ).alias("sender_domain"),
        pl.col("recipient_").alias("recipient"),
        pl.coalesce(
            _json.blank_to_null(pl.col("recipient-domain")).str.to_lowercase(),
            domain_of(pl.col("recipient_")),
        ).alias("recipient_domain"),
        _json.blank_to_null(status.struct.field("mx-host")).alias("relay_host"),
        code.str.extract(rf"^({REPLY_CODE})$", 1).cast(pl.Int16).alias("smtp_code"),
        pl.coalesce(
            _json.valid_enhanced(status.struct.field("enhanced-code")),
            _json.enhanced_code(pl.col("diagnostic")),
        ).alias("enhanced_code"),
        "diagnostic",
        status.struct.field("attempt-no")
        .str.strip_chars()
        .cast(pl.Float64, strict=False)
        .cast(pl.Int32, strict=False)
        .alias("attempt"),
        classification.alias("esp_classification"),
        "origin",
    )
