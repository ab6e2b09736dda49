"""SendGrid Event Webhook payloads: JSON arrays as POSTed, NDJSON, or many bodies in one file.

Accepted inputs: one array of events per webhook body (pretty-printed over many lines or on one
line), one event object per line (NDJSON), one array per line, and arrays written one after
another (`[...][...]`). A document may span batches; it is buffered until complete, up to
`_json.MAX_DOCUMENT_BYTES` (a webhook body is a few MB).

Events and what they become (`event` column):

| SendGrid `event`                                        | event        |
|---------------------------------------------------------|--------------|
| delivered                                               | delivered    |
| deferred                                                | deferred     |
| bounce (`type` "bounce" or "blocked")                   | bounced      |
| dropped                                                 | dropped      |
| spamreport                                              | complained   |
| processed, open, click, unsubscribe, group_unsubscribe, | skipped      |
| group_resubscribe, and any event name not listed here   |              |

Fields: `timestamp` (Unix seconds, integer, float or numeric text), `email` -> recipient,
`sg_message_id` -> message_ref, `smtp-id` -> message_id (without <>), `ip` (the IP SendGrid
sent from) -> host, `status` -> enhanced_code (else the one at the start of the text),
`reason` -> diagnostic for bounce and dropped, `response` for delivered and deferred (each
falling back on the other), smtp_code = the reply code starting that text ("550 5.1.1 ..."),
`attempt` (text or number) -> attempt. SendGrid events name no sender: sender is null.
`category` (text or list), `tls`, `useragent` and the rest are not stored.

esp_classification, for bounce events only: `<type>` or `<type>/<bounce_classification>`,
`type` defaulting to "bounce": "blocked", "bounce/Invalid Address", "blocked/Reputation".

event_id: the hash of the event name and `sg_event_id`; where an event has no `sg_event_id`,
of the event name and the event re-encoded as JSON (the fields read here, in a fixed order),
so the same event gets the same id however it was framed.

origin: `path:line` for a lone event object starting at that line; `path:line#index` for the
index-th (0-based) event of the array (or run of documents) starting at that line.

Malformed (counted, with reason): invalid JSON, a document that is not an object or array of
objects, a field of an unexpected JSON type, an event without `event`, and an outcome event
without a recipient or a valid timestamp.
"""

from __future__ import annotations

import re
from typing import ClassVar

import polars as pl

from bounce_analyzer import schema
from bounce_analyzer.smtp import domain_of
from bounce_analyzer.sources import _json
from bounce_analyzer.sources.base import SourceOutput

#: SendGrid event name -> the `event` column; other names are skipped.
EVENT_MAP: dict[str, str] = {
    "delivered": "delivered",
    "deferred": "deferred",
    "bounce": "bounced",
    "dropped": "dropped",
    "spamreport": "complained",
}

_FIELDS = (
    "event",
    "email",
    "timestamp",
    "smtp-id",
    "sg_event_id",
    "sg_message_id",
    "reason",
    "response",
    "status",
    "attempt",
    "type",
    "bounce_classification",
    "ip",
)
#: What is read of each event (all as text: numbers arrive as their JSON text).
ELEMENT = pl.Struct({name: pl.String() for name in _FIELDS})

_SNIFF_ID = re.compile(r'"sg_(?:event|message)_id"\s*:')
_SNIFF_MAILGUN = re.compile(r'"(?:event-data|recipient)"\s*:')
_SNIFF_KEYS = [re.compile(rf'"{key}"\s*:') for key in ("event", "email", "timestamp")]


class SendGrid(_json.JsonSource):
    """The SendGrid Event Webhook (JSON arrays, NDJSON, concatenated bodies)."""

    name: ClassVar[str] = "sendgrid"

    def sniff(self, head: bytes) -> bool:
        """JSON whose events carry `sg_event_id`/`sg_message_id`, or `event`+`email`+`timestamp`."""
        text = _json.looks_like_json(head)
        if text is None or _SNIFF_MAILGUN.search(text):
            return False
        return bool(_SNIFF_ID.search(text)) or all(key.search(text) for key in _SNIFF_KEYS)

    def _parse_documents(
        self, docs: pl.DataFrame, overlong: pl.DataFrame, path: str
    ) -> SourceOutput:
        # Lines that are not JSON at all: 'Apr  1 10:00:00 host text' -> malformed.
        not_json = docs.filter(~pl.col("text").str.contains(r"^[\[{]"))
        junk = _json.not_json_rows(not_json, path, "not JSON")
        elements, bad = _json.decode_documents(
            docs.filter(pl.col("text").str.contains(r"^[\[{]")), ELEMENT, path, counts=self._counts
        )
        # [{"email":"a@example.com","event":"bounce","timestamp":1513299569,...}, ...]
        frame = elements.select(
            _json.origin(path),
            "element",
            pl.col("element").struct.unnest(),
        ).with_columns(
            name=_json.blank_to_null(pl.col("event")).str.to_lowercase(),
            recipient=_json.blank_to_null(pl.col("email")).str.to_lowercase(),
            ts=_json.epoch_seconds(pl.col("timestamp")),
        )
        mapped = pl.col("name").replace_strict(EVENT_MAP, default=None, return_dtype=pl.String)
        problem = (
            pl.when(pl.col("name").is_null())
            .then(pl.lit('no "event" field'))
            .when(mapped.is_null())
            .then(None)
            .when(pl.col("recipient").is_null())
            .then(pl.concat_str(pl.col("name"), pl.lit(' event without "email"')))
            .when(pl.col("ts").is_null())
            .then(pl.concat_str(pl.col("name"), pl.lit(' event without a valid "timestamp"')))
        )
        frame = frame.with_columns(mapped.alias("outcome"), problem.alias("problem"))
        set_aside = [overlong, junk, bad]
        return self._outcomes(frame, docs, raw="element", facts=_facts, set_aside=set_aside)


def _facts(frame: pl.DataFrame) -> pl.DataFrame:
    """Outcome events (decoded fields) -> fact columns."""
    is_failure = pl.col("name").is_in(["bounce", "dropped"])
    reason = _json.blank_to_null(pl.col("reason"))
    response = _json.blank_to_null(pl.col("response"))
    # bounce/dropped: "reason": "550 5.1.1 The email account that you tried to reach ..."
    # delivered/deferred: "response": "250 OK", "400 try again later"
    diagnostic = (
        pl.when(is_failure)
        .then(pl.coalesce(reason, response))
        .otherwise(pl.coalesce(response, reason))
    )
    # bounce: "type": "blocked", "bounce_classification": "Reputation" -> "blocked/Reputation"
    bounce_type = pl.coalesce(_json.blank_to_null(pl.col("type")), pl.lit("bounce"))
    classification = pl.concat_str(
        bounce_type,
        _json.blank_to_null(pl.col("bounce_classification")),
        separator="/",
        ignore_nulls=True,
    )
    # sg_event_id: "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA"
    event_id = _json.blank_to_null(pl.col("sg_event_id"))
    record = pl.concat_str(
        pl.col("name"),
        pl.lit("\x1f"),
        pl.coalesce(event_id, _json.json_text(frame, event_id, "element")),
    )
    return frame.with_columns(diagnostic=diagnostic).select(
        schema.event_id(SendGrid.name, record),
        pl.col("ts").alias("timestamp"),
        pl.lit(SendGrid.name).alias("source"),
        _json.blank_to_null(pl.col("ip")).alias("host"),
        pl.col("outcome").alias("event"),
        _json.blank_to_null(pl.col("sg_message_id")).alias("message_ref"),
        # "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>"
        _json.blank_to_null(pl.col("smtp-id").str.strip_chars().str.strip_chars("<>")).alias(
            "message_id"
        ),
        "recipient",
        domain_of(pl.col("recipient")).alias("recipient_domain"),
        _json.smtp_code(pl.col("diagnostic")).alias("smtp_code"),
        pl.coalesce(
            _json.valid_enhanced(pl.col("status")), _json.enhanced_code(pl.col("diagnostic"))
        ).alias("enhanced_code"),
        "diagnostic",
        # "attempt": "5" or 5
        pl.col("attempt")
        .str.strip_chars()
        .cast(pl.Float64, strict=False)
        .cast(pl.Int32, strict=False)
        .alias("attempt"),
        pl.when(pl.col("name") == "bounce").then(classification).alias("esp_classification"),
        "origin",
    )
