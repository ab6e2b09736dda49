"""Mailgun's events, as webhook bodies or Events API items: the plan written as accepted,
delivered and failed events (temporary, permanent, suppressed), then opens, clicks, complaints
and unsubscribes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Unpack

import polars as pl

from bounce_analyzer.generate import esp
from bounce_analyzer.generate.output import Options, Output, Segment, Window, write
from bounce_analyzer.generate.plan import EXPIRE, US
from bounce_analyzer.generate.rng import BASE64URL, HEX_LOWER, Rng
from bounce_analyzer.generate.text import render, render_by_template
from bounce_analyzer.generate.truth import Truth, attempt_events, event_rows
from bounce_analyzer.generate.world import REPLIES, format_reply, per_reply


def generate_mailgun(
    out: Output, *, events: int, webhooks: bool = True, **options: Unpack[Options]
) -> Truth:
    """Write exactly `events` Mailgun events, one JSON object per line.

    `webhooks`: webhook bodies ({"signature": ..., "event-data": ...}; the signatures are
    random, not valid HMACs); else Events API items (the event-data objects alone).
    `options`: seed, start, days, cover (see `Options`).
    """
    return write(Mailgun(webhooks=webhooks), out, events, options)


class _Events:
    """A segment's events as JSON records: each with a random id, the recipient and the
    message, wrapped in a signed webhook body when `webhooks`."""

    def __init__(self, rng: Rng, webhooks: bool) -> None:
        self._rng = rng
        self._webhooks = webhooks
        self.pieces: list[pl.DataFrame] = []

    def emit(self, frame: pl.DataFrame, fields: list[pl.Expr], step: pl.Expr | int) -> None:
        """An event per row of `frame`, with `fields` after its id and timestamp."""
        rng = self._rng
        n = frame.height
        frame = frame.with_columns(
            (step if isinstance(step, pl.Expr) else pl.lit(step)).cast(pl.Int64).alias("step"),
            rng.token(n, 22, BASE64URL).alias("event_id"),
        )
        data = [
            pl.col("event_id").alias("id"),
            (pl.col("ts").cast(pl.Float64) / US).alias("timestamp"),
            *fields,
            pl.col("rcpt").alias("recipient"),
            pl.col("domain").alias("recipient-domain"),
            pl.struct(
                pl.struct(
                    pl.col("mg_mid").alias("message-id"),
                    pl.col("rcpt").alias("to"),
                    pl.lit("Example Shop <noreply@shop.example.com>").alias("from"),
                ).alias("headers"),
            ).alias("message"),
            pl.concat_list(pl.col("tag")).alias("tags"),
        ]
        if self._webhooks:
            body = [
                pl.struct(
                    rng.token(n, 50, HEX_LOWER).alias("token"),
                    (pl.col("ts") // US).cast(pl.String).alias("timestamp"),
                    rng.token(n, 64, HEX_LOWER).alias("signature"),
                ).alias("signature"),
                pl.struct(data).alias("event-data"),
            ]
        else:
            body = data
        self.pieces.append(esp.json_records(frame, body))


#: {"event":"accepted","log-level":"info","method":"HTTP",...}
_ACCEPTED = [
    pl.lit("accepted").alias("event"),
    pl.lit("info").alias("log-level"),
    pl.lit("HTTP").alias("method"),
]
_ENVELOPE = pl.struct(
    pl.lit("smtp").alias("transport"),
    pl.col("sender"),
    pl.lit("159.135.228.10").alias("sending-ip"),
    pl.col("rcpt").alias("targets"),
).alias("envelope")
_GEO = pl.struct(
    pl.lit("DE").alias("country"), pl.lit("BE").alias("region"), pl.lit("Berlin").alias("city")
).alias("geolocation")
#: The last attempt of a recipient whose queue lifetime runs out.
_EXPIRE_LAST = (pl.col("outcome") == EXPIRE) & (pl.col("a") == pl.col("k") - 1)


def _status(fields: list[pl.Expr]) -> pl.Expr:
    """The delivery-status of an attempt: its number, code, `fields`, the MX and session."""
    return pl.struct(
        (pl.col("a") + 1).alias("attempt-no"),
        pl.col("code"),
        *fields,
        pl.col("mx").alias("mx-host"),
        pl.col("session_s").alias("session-seconds"),
        pl.lit(True).alias("tls"),
        pl.lit(True).alias("utf8"),
        pl.lit(True).alias("certificate-verified"),
    ).alias("delivery-status")


def _failed(level: str, severity: str, reason: str, *more: pl.Expr) -> list[pl.Expr]:
    """The fields of a `failed` event: the attempt's code and text, and `more` status."""
    status_fields = [pl.col("dsn").alias("enhanced-code"), pl.col("text").alias("message")]
    return [
        pl.lit("failed").alias("event"),
        pl.lit(level).alias("log-level"),
        pl.lit(severity).alias("severity"),
        pl.lit(reason).alias("reason"),
        _ENVELOPE,
        _status([*status_fields, *more]),
    ]


@dataclass(frozen=True)
class Mailgun(esp.Esp):
    """Mailgun's events: `webhooks` bodies, else Events API items; one per line."""

    source = "mailgun"
    ndjson = True
    webhooks: bool

    def segment(self, rng: Rng, window: Window) -> Segment:
        msgs, att, rc = esp.esp_frames(rng, window)
        msgs = msgs.with_columns(
            render("{mid_t}.{mid_a}@mg.{sender_domain}").alias("mg_mid"),
            pl.when(pl.col("u_cat") < 0.5)
            .then(pl.lit("newsletter"))
            .otherwise(pl.lit("receipt"))
            .alias("tag"),
        )
        keyed = msgs.select("msg", "mg_mid", "tag", "mkey")
        texts = {i: format_reply(r, "mailgun") for i, r in enumerate(REPLIES)}
        att = render_by_template(att, texts, "text").join(keyed, on="msg", maintain_order="left")
        att = att.with_columns(
            per_reply([r.dsn for r in REPLIES], pl.String).alias("dsn"),
            per_reply([r.code for r in REPLIES], pl.Int64).alias("code"),
            (rng.floats(att.height) * 2).round(3).alias("session_s"),
        )
        rc = rc.join(keyed, on="msg", maintain_order="left").join(
            msgs.select("msg", "sender", "size"), on="msg", maintain_order="left"
        )
        out = _Events(rng, self.webhooks)
        out.emit(rc.filter(~pl.col("dropped")).with_columns(pl.col("t0").alias("ts")), _ACCEPTED, 0)
        att_env = att.join(
            msgs.select("msg", pl.col("sender").alias("sender_m")), on="msg", maintain_order="left"
        ).with_columns(pl.col("sender_m").alias("sender"))
        step = 1 + pl.col("a") * 10
        # {"event":"delivered","delivery-status":{"code":250,"message":"OK",...},...}
        out.emit(
            att_env.filter(pl.col("status") == "sent"),
            [
                pl.lit("delivered").alias("event"),
                pl.lit("info").alias("log-level"),
                _ENVELOPE,
                _status([pl.lit("OK").alias("message"), pl.lit("").alias("description")]),
            ],
            step,
        )
        # {"event":"failed","severity":"temporary","reason":"generic","delivery-status":
        #  {"code":452,"enhanced-code":"4.2.2","message":"4.2.2 The recipient's inbox is out
        #  of storage ...",...}}
        deferred = pl.col("status") == "deferred"
        out.emit(
            att_env.filter(deferred & ~_EXPIRE_LAST),
            _failed(
                "warn",
                "temporary",
                "generic",
                pl.lit("").alias("description"),
                pl.lit(600).alias("retry-seconds"),
            ),
            step,
        )
        # {"event":"failed","severity":"permanent","reason":"old",...} after the last retry
        out.emit(
            att_env.filter(deferred & _EXPIRE_LAST),
            _failed("error", "permanent", "old", pl.lit("Too old").alias("description")),
            step,
        )
        # {"event":"failed","severity":"permanent","reason":"bounce","delivery-status":
        #  {"code":550,...}}
        out.emit(
            att_env.filter(pl.col("status") == "bounced"),
            _failed("error", "permanent", "bounce", pl.lit("").alias("description")),
            step,
        )
        # {"event":"failed","severity":"permanent","reason":"suppress-bounce","delivery-status":
        #  {"code":605,"description":"Not delivering to previously bounced address",...}}
        dropped = rc.filter(pl.col("dropped")).with_columns(pl.col("t0").alias("ts"))
        out.emit(
            dropped,
            [
                pl.lit("failed").alias("event"),
                pl.lit("error").alias("log-level"),
                pl.lit("permanent").alias("severity"),
                pl.lit("suppress-bounce").alias("reason"),
                _ENVELOPE,
                pl.struct(
                    pl.lit(1).alias("attempt-no"),
                    pl.lit("").alias("message"),
                    pl.lit(605).alias("code"),
                    pl.lit("").alias("enhanced-code"),
                    pl.lit("Not delivering to previously bounced address").alias("description"),
                    pl.lit(0).alias("session-seconds"),
                ).alias("delivery-status"),
            ],
            0,
        )
        opened = esp.engaged(rc, att)
        out.emit(
            opened.filter(pl.col("u_open") < 0.3),
            [
                pl.lit("opened").alias("event"),
                pl.lit("info").alias("log-level"),
                pl.lit("66.249.84.13").alias("ip"),
                _GEO,
            ],
            50,
        )
        out.emit(
            opened.filter(pl.col("u_click") < 0.08).with_columns(pl.col("ts") + 20 * US),
            [
                pl.lit("clicked").alias("event"),
                pl.lit("info").alias("log-level"),
                pl.lit("https://shop.example.com/offer").alias("url"),
                _GEO,
            ],
            51,
        )
        spam = opened.filter(pl.col("u_spam") < 0.004).with_columns(pl.col("ts") + 60 * US)
        # {"event":"complained","log-level":"warn",...}
        out.emit(spam, [pl.lit("complained").alias("event"), pl.lit("warn").alias("log-level")], 52)
        out.emit(
            opened.filter(pl.col("u_unsub") < 0.005).with_columns(pl.col("ts") + 90 * US),
            [pl.lit("unsubscribed").alias("event"), pl.lit("info").alias("log-level")],
            53,
        )

        frame, k = esp.fit_events(out.pieces, window.size)
        kept = pl.col("msg") < k
        events = pl.concat(
            [
                attempt_events(att.filter(kept & (pl.col("status") == "bounced"))),
                attempt_events(att.filter(kept & deferred & ~_EXPIRE_LAST)),
                attempt_events(
                    att.filter(kept & (pl.col("status") == "sent")), [None] * len(REPLIES)
                ),
                att.filter(kept & deferred & _EXPIRE_LAST).select(
                    pl.lit("expired").alias("event"),
                    "domain",
                    pl.col("code").alias("smtp_code"),
                    pl.col("dsn").alias("enhanced_code"),
                    per_reply([r.id for r in REPLIES], pl.String).alias("template"),
                    pl.lit("outbound").alias("direction"),
                ),
                # 605 is Mailgun's, not an SMTP reply
                event_rows(dropped.filter(kept), "dropped"),
                event_rows(spam.filter(kept), "complained"),
            ]
        )
        fill = esp.in_flight(rng, window.size - frame.height, window).with_columns(
            pl.lit("gmail.com").alias("domain"),
            pl.concat_str(pl.col("mkey"), pl.lit("@mg.example.com")).alias("mg_mid"),
            pl.lit("newsletter").alias("tag"),
        )
        filler = _Events(rng, self.webhooks)
        filler.emit(fill, _ACCEPTED, 0)
        return Segment(pl.concat([frame, *filler.pieces], how="vertical"), events, k)
