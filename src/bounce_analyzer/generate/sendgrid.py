"""SendGrid's Event Webhook: the plan written as processed, dropped, deferred, delivered and
bounce events, then opens, clicks, spam reports and unsubscribes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Unpack

import polars as pl

from bounce_analyzer.generate.esp import (
    DROP_REASONS,
    Esp,
    engaged,
    esp_frames,
    fit_events,
    in_flight,
    json_records,
)
from bounce_analyzer.generate.output import Options, Output, Segment, Window, write
from bounce_analyzer.generate.plan import US
from bounce_analyzer.generate.rng import HEX, HEX_LOWER, Rng
from bounce_analyzer.generate.text import pick, render, render_by_template
from bounce_analyzer.generate.truth import Truth, attempt_events, event_rows
from bounce_analyzer.generate.world import REPLIES, TEXT_DSN, format_reply, per_reply

#: Categories whose bounces SendGrid types "blocked" (the rest: "bounce").
_BLOCKED = {
    "blocked",
    "bad_reputation",
    "spam_detected",
    "auth_failure",
    "policy_violation",
    "require_ptr",
    "rate_limited",
    "virus_detected",
}
#: SendGrid's bounce_classification of a category (the rest: "Unclassified").
_CLASS = {
    "user_unknown": "Invalid Address",
    "has_moved": "Invalid Address",
    "host_unknown": "Invalid Address",
    "not_accept": "Invalid Address",
    "mailbox_full": "Mailbox Unavailable",
    "suspend": "Mailbox Unavailable",
    "blocked": "Reputation",
    "bad_reputation": "Reputation",
    "require_ptr": "Reputation",
    "spam_detected": "Content",
    "virus_detected": "Content",
    "policy_violation": "Content",
    "filtered": "Content",
    "rate_limited": "Frequency or Volume",
}
_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like"
    " Gecko) Mobile/15E148",
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
)


def generate_sendgrid(
    out: Output, *, events: int, ndjson: bool = True, **options: Unpack[Options]
) -> Truth:
    """Write exactly `events` SendGrid Event Webhook events.

    `ndjson`: one event per line; else one POST body, a compact JSON array on one line.
    `options`: seed, start, days, cover (see `Options`).
    """
    return write(SendGrid(ndjson=ndjson), out, events, options)


def _common(event: str) -> list[pl.Expr]:
    """The fields every event has."""
    return [
        pl.col("rcpt").alias("email"),
        (pl.col("ts") // US).alias("timestamp"),
        pl.col("smtp_id").alias("smtp-id"),
        pl.lit(event).alias("event"),
        pl.when(pl.col("u_cat") < 0.5)
        .then(pl.lit("newsletter"))
        .otherwise(pl.lit("transactional"))
        .alias("category"),
        pl.concat_str(
            pl.lit(event + "-"),
            pl.col("row").cast(pl.String),
            pl.lit("-"),
            pl.col("sg_message_id"),
        )
        .str.encode("base64")
        .str.strip_chars_end("=")
        .alias("sg_event_id"),
        pl.col("sg_message_id"),
    ]


def _as_list(fields: list[pl.Expr]) -> list[pl.Expr]:
    """The fields with a list of categories."""
    return [
        pl.concat_list(pl.lit("transactional"), pl.lit("receipt")).alias("category")
        if f.meta.output_name() == "category"
        else f
        for f in fields
    ]


@dataclass(frozen=True)
class SendGrid(Esp):
    """SendGrid's events: one per line (`ndjson`), or one POST body."""

    source = "sendgrid"
    ndjson: bool

    def segment(self, rng: Rng, window: Window) -> Segment:
        msgs, att, rc = esp_frames(rng, window)
        msgs = msgs.with_columns(
            rng.token(msgs.height, 10, HEX_LOWER).alias("pod"),
            rng.token(msgs.height, 8, HEX).alias("podts"),
        ).with_columns(
            render("<{mkey}@ismtpd0{n1}p1mdw1.sendgrid.net>").alias("smtp_id"),
            render("{mkey}.filterdrecv-{pod}-1-{podts}-{n1}.0").alias("sg_message_id"),
        )
        keyed = msgs.select("msg", "smtp_id", "sg_message_id", "u_cat")
        texts = {i: format_reply(r, "sendgrid") for i, r in enumerate(REPLIES)}
        att = render_by_template(att, texts, "text").join(keyed, on="msg", maintain_order="left")
        att = att.with_columns(
            per_reply([r.category for r in REPLIES], pl.String).alias("cat"),
            (pl.col("a") + 1).cast(pl.String).alias("attempt"),
            per_reply([r.dsn for r in REPLIES], pl.String).alias("dsn"),
        )
        rc = rc.join(keyed, on="msg", maintain_order="left")
        pieces: list[pl.DataFrame] = []

        def emit(
            frame: pl.DataFrame, event: str, extra: list[pl.Expr], step: pl.Expr | int
        ) -> None:
            frame = frame.with_columns(
                (step if isinstance(step, pl.Expr) else pl.lit(step)).cast(pl.Int64).alias("step"),
                pl.int_range(0, pl.len(), dtype=pl.Int64).alias("row") + len(pieces) * 10_000_000,
            )
            # A category is a string, or a list for messages sent with several (u_cat >= 0.8).
            single = frame.filter(pl.col("u_cat") < 0.8)
            several = frame.filter(pl.col("u_cat") >= 0.8)
            pieces.append(json_records(single, _common(event) + extra))
            pieces.append(json_records(several, _as_list(_common(event)) + extra))

        # {"email":"anna.novak@gmail.com","timestamp":1795738737,"smtp-id":"<...>",
        #  "event":"processed",...}
        accepted = rc.filter(~pl.col("dropped")).with_columns(pl.col("t0").alias("ts"))
        emit(accepted, "processed", [], 0)
        dropped = rc.filter(pl.col("dropped")).with_columns(pl.col("t0").alias("ts"))
        # {"email":...,"event":"dropped",...,"reason":"Bounced Address","status":"5.0.0"}
        emit(
            dropped,
            "dropped",
            [
                pick(DROP_REASONS, pl.col("drop_i")).alias("reason"),
                pl.lit("5.0.0").alias("status"),
            ],
            0,
        )
        ip = pl.lit("149.72.").add(pl.lit("34.12")).alias("ip")
        step = 1 + pl.col("a") * 10
        # {"email":...,"event":"deferred","ip":"149.72.34.12","response":"421 4.7.28 ...",
        #  "attempt":"1"}
        emit(
            att.filter(pl.col("status") == "deferred"),
            "deferred",
            [ip, pl.col("text").alias("response"), pl.col("attempt"), pl.lit(1).alias("tls")],
            step,
        )
        # {"email":...,"event":"delivered","ip":"149.72.34.12","response":"250 2.0.0 OK ...",
        #  "tls":1}
        emit(
            att.filter(pl.col("status") == "sent"),
            "delivered",
            [ip, pl.col("text").alias("response"), pl.lit(1).alias("tls")],
            step,
        )
        # {"email":...,"event":"bounce","reason":"550 5.1.1 ...","status":"5.1.1",
        #  "type":"bounce","bounce_classification":"Invalid Address"}
        emit(
            att.filter(pl.col("status") == "bounced"),
            "bounce",
            [
                ip,
                pl.col("text").alias("reason"),
                pl.col("dsn").alias("status"),
                pl.lit(1).alias("tls"),
                pl.when(pl.col("cat").is_in(sorted(_BLOCKED)))
                .then(pl.lit("blocked"))
                .otherwise(pl.lit("bounce"))
                .alias("type"),
                pl.col("cat")
                .replace_strict(_CLASS, default="Unclassified")
                .alias("bounce_classification"),
            ],
            step,
        )
        opened = engaged(rc, att)
        ua = pick(_UA, (pl.col("u_click") * len(_UA)).cast(pl.Int64)).alias("useragent")
        emit(
            opened.filter(pl.col("u_open") < 0.3),
            "open",
            [ua, pl.lit("66.249.84.13").alias("ip"), pl.lit(False).alias("sg_machine_open")],
            50,
        )
        emit(
            opened.filter(pl.col("u_click") < 0.08).with_columns(pl.col("ts") + 20 * US),
            "click",
            [
                ua,
                pl.lit("66.249.84.13").alias("ip"),
                pl.lit("https://shop.example.com/offer?utm_source=mail").alias("url"),
            ],
            51,
        )
        spam = opened.filter(pl.col("u_spam") < 0.004).with_columns(pl.col("ts") + 60 * US)
        # {"email":...,"timestamp":...,"event":"spamreport",...}
        emit(spam, "spamreport", [], 52)
        unsub = opened.filter(pl.col("u_unsub") < 0.005).with_columns(pl.col("ts") + 90 * US)
        emit(unsub, "unsubscribe", [], 53)

        frame, k = fit_events(pieces, window.size)
        kept = pl.col("msg") < k
        events = pl.concat(
            [
                attempt_events(att.filter(kept & (pl.col("status") == "bounced"))),  # "status"
                attempt_events(att.filter(kept & (pl.col("status") != "bounced")), TEXT_DSN),
                event_rows(dropped.filter(kept), "dropped", "5.0.0"),
                event_rows(spam.filter(kept), "complained"),
            ]
        )
        # Fill: messages still being processed when the export was taken.
        fill = in_flight(rng, window.size - frame.height, window).with_columns(
            pl.concat_str(
                pl.col("mkey"), pl.lit(".filterdrecv-5bd7d8c8b5-hrl9x-1-6747A1B2-1.0")
            ).alias("sg_message_id"),
            render("<{mkey}@ismtpd0001p1mdw1.sendgrid.net>").alias("smtp_id"),
            pl.lit(0.0).alias("u_cat"),
            pl.lit(0, pl.Int64).alias("step"),
            (pl.int_range(0, pl.len(), dtype=pl.Int64) + 99_000_000).alias("row"),
        )
        records = pl.concat([frame, json_records(fill, _common("processed"))], how="vertical")
        return Segment(records, events, k)
