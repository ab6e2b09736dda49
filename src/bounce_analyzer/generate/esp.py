"""What the two ESPs (SendGrid, Mailgun) share: the plan with message keys and engagement
draws, the JSON records, the cut to the event budget, the messages still in flight that fill
it up, and the writing of one event per line or of one JSON array."""

from __future__ import annotations

from typing import BinaryIO

import polars as pl

from bounce_analyzer.generate.output import Format, Window
from bounce_analyzer.generate.plan import SENT, US, fit, plan, timed_plan
from bounce_analyzer.generate.rng import BASE64URL, HEX_LOWER, Rng
from bounce_analyzer.generate.text import pick
from bounce_analyzer.generate.tokens import reply_times, with_details, with_sender
from bounce_analyzer.generate.world import FIRST_NAMES, LAST_NAMES

#: Why SendGrid drops a message before sending it.
DROP_REASONS = ("Bounced Address", "Unsubscribed Address", "Spam Reporting Address", "Invalid")


class Esp(Format):
    """An ESP's events: one JSON object per line (`ndjson`), or one compact JSON array."""

    unit = "events"
    #: One event per line; else one JSON array on one line.
    ndjson: bool

    def record(self) -> pl.Expr:
        return pl.col("json")

    def begin(self, fh: BinaryIO) -> None:
        if not self.ndjson:
            fh.write(b"[")

    def write(self, fh: BinaryIO, texts: pl.Series, *, first: bool) -> None:
        if self.ndjson:
            super().write(fh, texts, first=first)
        elif texts.len():
            # The POST body as SendGrid sends it: one compact array on one line.
            joined = str(texts.str.join(",").item())
            fh.write((b"" if first else b",") + joined.encode("utf-8"))

    def end(self, fh: BinaryIO) -> None:
        if not self.ndjson:
            fh.write(b"]\n")


def esp_frames(rng: Rng, window: Window) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Messages, attempts (timed, without the dropped recipients) and recipients (with their
    engagement draws and whether the ESP dropped them) for a window's events."""
    n_msgs = window.size // 3 + 4
    msgs, att = plan(rng, n_msgs, allow_local=False, cover=window.cover)
    msgs, att = timed_plan(rng, msgs, att, window.start_us, window.span_us)
    n = msgs.height
    msgs = with_sender(
        msgs,
        rng.token(n, 22, BASE64URL).alias("mkey"),
        rng.floats(n).alias("u_cat"),
        rng.token(n, 8, HEX_LOWER).alias("mid_a"),
        rng.ints(n, 1, 60).alias("n1"),
    )
    rc = att.filter(pl.col("a") == 0).select("msg", "j", "rcpt", "domain", "outcome", "t0")
    nr = rc.height
    rc = rc.with_columns(
        rng.floats(nr).alias("u_drop"),
        rng.floats(nr).alias("u_open"),
        rng.floats(nr).alias("u_click"),
        rng.floats(nr).alias("u_spam"),
        rng.floats(nr).alias("u_unsub"),
        rng.ints(nr, 0, len(DROP_REASONS)).alias("drop_i"),
    ).with_columns(((pl.col("u_drop") < 0.02) & (pl.col("outcome") == SENT)).alias("dropped"))
    att = att.join(rc.select("msg", "j", "dropped"), on=["msg", "j"], maintain_order="left").filter(
        ~pl.col("dropped")
    )
    att = with_details(rng, att, msgs).with_columns(reply_times())
    return msgs, att, rc


def engaged(rc: pl.DataFrame, att: pl.DataFrame) -> pl.DataFrame:
    """The delivered recipients, at the time they open the message (if they do: u_open)."""
    delivered = att.filter(pl.col("status") == "sent").select("msg", "j", "ts")
    return rc.join(delivered, on=["msg", "j"], maintain_order="left").with_columns(
        (pl.col("ts") + (pl.col("u_open") * 3_600 * US).cast(pl.Int64)).alias("ts")
    )


def json_records(frame: pl.DataFrame, fields: list[pl.Expr]) -> pl.DataFrame:
    """ts, msg, step and the JSON text of each row."""
    return frame.select("ts", "msg", "step", pl.struct(fields).struct.json_encode().alias("json"))


def fit_events(pieces: list[pl.DataFrame], size: int) -> tuple[pl.DataFrame, int]:
    """The events of the leading messages that fit in `size` events with room for the
    messages still in flight, and how many messages that is."""
    kept = [p for p in pieces if p.height]
    frame = pl.concat(kept, how="vertical") if kept else _empty()
    counts = frame.group_by("msg").len().sort("msg").get_column("len")
    k = fit(counts, size - max(1, size // 50))
    return frame.filter(pl.col("msg") < k), k


def _empty() -> pl.DataFrame:
    return pl.DataFrame(
        schema={"ts": pl.Int64, "msg": pl.Int64, "step": pl.Int64, "json": pl.String}
    )


def in_flight(rng: Rng, n: int, window: Window) -> pl.DataFrame:
    """`n` recipients accepted at the very end of the window (no outcome yet)."""
    start_us, span_us = window.start_us, window.span_us
    return pl.select(
        (
            pl.lit(start_us + span_us - span_us // 50, pl.Int64)
            + (rng.floats(n) * (span_us // 50)).cast(pl.Int64)
        ).alias("ts"),
        (pl.lit(10_000_000, pl.Int64) + pl.int_range(0, n, dtype=pl.Int64)).alias("msg"),
        pl.concat_str(
            pick(FIRST_NAMES, rng.ints(n, 0, len(FIRST_NAMES))),
            pl.lit("."),
            pick(LAST_NAMES, rng.ints(n, 0, len(LAST_NAMES))),
            pl.lit("@gmail.com"),
        ).alias("rcpt"),
        rng.token(n, 22, BASE64URL).alias("mkey"),
        rng.token(n, 22, BASE64URL).alias("eid"),
    )
