"""What the two MTA logs (Postfix, Exim) share: the plan cut to the lines a segment holds, the
mail other servers send to our mailboxes, the lines between messages, and the gathering of a
segment's lines.

A segment's lines are shared out as a mid-size server's are: our outbound messages first (with
their bounce notices to our own senders and the content filter's hops), fitted into
100 - NOISE_PERCENT - INBOUND_PERCENT percent of the lines; then other servers' messages
delivered into our mailboxes, fitted into INBOUND_PERCENT percent; the lines between messages
(connections, scanners, refusals) fill the rest exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence

import polars as pl

from bounce_analyzer.generate.output import Window
from bounce_analyzer.generate.plan import US, fit, plan
from bounce_analyzer.generate.rng import BASE62, HEX_LOWER, Rng
from bounce_analyzer.generate.text import pick, render, render_by_template
from bounce_analyzer.generate.truth import noise_events
from bounce_analyzer.generate.world import (
    CORRESPONDENTS,
    FIRST_NAMES,
    HELOS,
    INBOUND_WEIGHTS,
    LAST_NAMES,
    SENDERS,
    NoiseLine,
)

#: The share of a segment's lines that are noise (connections, scanners, rejects).
NOISE_PERCENT = 12
#: The share of a segment's lines that are other servers' mail delivered into our mailboxes.
INBOUND_PERCENT = 10
#: The `msg` numbers of inbound messages start here (above every outbound message's).
INBOUND_MSG = 5_000_000
#: The longest wait before a deferred inbound delivery is tried again, in seconds.
_RETRY_S = 600
#: The share of inbound deliveries that are deferred first (where the mailbox can defer).
INBOUND_DEFERRED = 0.03


def fitted_plan(
    rng: Rng,
    window: Window,
    n_msgs: int,
    lines_per_message: Callable[[pl.DataFrame, pl.DataFrame], pl.Series],
) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """The plan of `n_msgs` outbound messages cut to the messages whose lines fit in the
    window's outbound share of lines; and the number of lines left for the rest."""
    size = window.size
    msgs, att = plan(rng, n_msgs, cover=window.cover)
    counts = lines_per_message(msgs, att)
    k = fit(counts, size - size * (NOISE_PERCENT + INBOUND_PERCENT) // 100)
    used = int(counts.head(k).sum()) if k else 0
    return msgs.head(k), att.filter(pl.col("msg") < k), size - used


def inbound_plan(
    rng: Rng,
    window: Window,
    lines_per_message: Callable[[pl.DataFrame], pl.Series],
) -> tuple[pl.DataFrame, int]:
    """Other servers' messages to our addresses (one recipient each), cut to those whose lines
    fit in the window's inbound share; and how many lines they take.

    Columns: msg, t0 (arrival), retry_us (how long after its first try a deferred delivery is
    tried again), cor_i (the sending server, world.CORRESPONDENTS), rcpt_i (our address,
    world.SENDERS), u_defer (a deferral where below the MTA's share), client, cip, port,
    xsender, rcpt, rlocal, rdomain, mid, size, session (Dovecot's LMTP session id) and pid.
    """
    budget = window.size * INBOUND_PERCENT // 100
    n = budget // 3 + 1
    start_us, span_us = window.start_us, window.span_us
    scale = min(1.0, span_us / US * 0.5 / _RETRY_S)
    room = max(0, span_us - int((_RETRY_S * scale + 12) * US))
    inb = pl.select(
        (INBOUND_MSG + pl.int_range(0, n, dtype=pl.Int64)).alias("msg"),
        (pl.lit(start_us + 2 * US, pl.Int64) + (rng.floats(n) * room).cast(pl.Int64)).alias("t0"),
        ((rng.floats(n) * 0.5 + 0.5) * _RETRY_S * scale * US)
        .cast(pl.Int64)
        .clip(lower_bound=US)
        .alias("retry_us"),
        rng.ints(n, 0, len(CORRESPONDENTS)).alias("cor_i"),
        rng.choice(n, INBOUND_WEIGHTS).alias("rcpt_i"),
        rng.floats(n).alias("u_defer"),
        rng.ints(n, 1024, 65535).alias("port"),
        pick(FIRST_NAMES, rng.ints(n, 0, len(FIRST_NAMES))).alias("x_first"),
        pick(LAST_NAMES, rng.ints(n, 0, len(LAST_NAMES))).alias("x_last"),
        (rng.floats(n) * rng.floats(n) * 250_000 + 2_400).cast(pl.Int64).alias("size"),
        rng.token(n, 22, BASE62).alias("session"),
        rng.token(n, 8, HEX_LOWER).alias("mid_a"),
        rng.ints(n, 1000, 65000).alias("pid"),
    )
    inb = inb.with_columns(
        pick([c[0] for c in CORRESPONDENTS], pl.col("cor_i")).alias("client"),
        pick([c[1] for c in CORRESPONDENTS], pl.col("cor_i")).alias("cip"),
        pick([c[2] for c in CORRESPONDENTS], pl.col("cor_i")).alias("xdomain"),
        pick([s[0] for s in SENDERS], pl.col("rcpt_i")).alias("rlocal"),
        pick([s[1] for s in SENDERS], pl.col("rcpt_i")).alias("rdomain"),
        pl.col("t0").cast(pl.Datetime("us", "UTC")).dt.strftime("%Y%m%d%H%M%S").alias("mid_t"),
    ).with_columns(
        render("{x_first}.{x_last}@{xdomain}").alias("xsender"),
        render("{rlocal}@{rdomain}").alias("rcpt"),
        render("{mid_t}.{mid_a}@{xdomain}").alias("mid"),
    )
    counts = lines_per_message(inb)
    k = fit(counts, budget)
    used = int(counts.head(k).sum()) if k else 0
    return inb.head(k), used


class Lines:
    """A segment's lines, gathered as frames of (ts, msg, step, text): `msg` and `step` order
    lines of one time (a message's lines in the order it writes them)."""

    def __init__(self) -> None:
        self._parts: list[pl.DataFrame] = []

    def add(self, frame: pl.DataFrame, ts: pl.Expr, step: pl.Expr | int, text: str | None) -> None:
        """A line per row of `frame`: its `text` template (None: the frame's text column)."""
        self._parts.append(
            frame.select(
                ts.alias("ts"),
                pl.col("msg"),
                (step if isinstance(step, pl.Expr) else pl.lit(step)).cast(pl.Int64).alias("step"),
                (pl.col("text") if text is None else render(text)).alias("text"),
            )
        )

    def frame(self) -> pl.DataFrame:
        """All the lines."""
        return pl.concat(self._parts, how="vertical")


def noise(
    rng: Rng,
    n: int,
    window: Window,
    table: Sequence[NoiseLine],
    options: Collection[str] = (),
) -> pl.DataFrame:
    """`n` single lines between messages (connects, scanners, rejects): their time, shape
    (tpl) and the values their texts take; `msg` numbers them below every message. A shape
    with an option is drawn only when `options` has it."""
    start_us, span_us = window.start_us, window.span_us
    weights = [
        line.weight if line.option is None or line.option in options else 0.0 for line in table
    ]
    return pl.select(
        (pl.lit(start_us, pl.Int64) + (rng.floats(n) * span_us).cast(pl.Int64)).alias("ts"),
        rng.choice(n, weights).alias("tpl"),
        pl.concat_str(
            pick(
                ["198.51.100", "192.0.2", "185.220.101", "45.155.205", "80.94.95"],
                rng.ints(n, 0, 5),
            ),
            pl.lit("."),
            rng.ints(n, 2, 254).cast(pl.String),
        ).alias("cip"),
        rng.ints(n, 1024, 65535).alias("port"),
        rng.ints(n, 1000, 99999).alias("pid"),
        pick(HELOS, rng.ints(n, 0, len(HELOS))).alias("helo"),
        pl.concat_str(
            pick(FIRST_NAMES, rng.ints(n, 0, len(FIRST_NAMES))),
            pl.lit("."),
            pick(LAST_NAMES, rng.ints(n, 0, len(LAST_NAMES))),
        ).alias("rlocal"),
        pl.concat_str(
            pick(["info", "sales", "promo", "admin"], rng.ints(n, 0, 4)),
            pl.lit("@"),
            pick(HELOS, rng.ints(n, 0, len(HELOS))),
        ).alias("rsender"),
    ).with_columns((-1 - pl.int_range(0, n, dtype=pl.Int64)).alias("msg"))


def add_noise(
    lines: Lines, noise: pl.DataFrame, table: Sequence[NoiseLine], texts: Mapping[int, str]
) -> pl.DataFrame:
    """Add the noise lines (`texts`: each shape's template) and return their truth rows."""
    rendered = render_by_template(noise, texts, "text")
    lines.add(rendered, pl.col("ts"), 0, None)
    return noise_events(rendered, table)


def inbound_kind(inb: pl.DataFrame, sent: Sequence[int], deferred: Sequence[int]) -> pl.DataFrame:
    """Inbound messages with the delivery they get, as indices of an MTA's mailbox texts (per
    recipient, `world.mailbox_texts_by_sender`): a deferral first (defer, or null), then a
    delivery (sent)."""
    defer = pl.lit(pl.Series(list(deferred), dtype=pl.Int64)).gather(pl.col("rcpt_i"))
    return inb.with_columns(
        pl.lit(pl.Series(list(sent), dtype=pl.Int64)).gather(pl.col("rcpt_i")).alias("sent"),
        pl.when((pl.col("u_defer") < INBOUND_DEFERRED) & (defer >= 0))
        .then(defer)
        .otherwise(None)
        .alias("defer"),
    )
