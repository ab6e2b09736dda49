"""What the two MTA logs (Postfix, Exim) share: the plan cut to the lines a segment holds, the
lines between messages, and the gathering of a segment's lines."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import polars as pl

from bounce_analyzer.generate.output import Window
from bounce_analyzer.generate.plan import fit, plan
from bounce_analyzer.generate.rng import Rng
from bounce_analyzer.generate.text import pick, render, render_by_template
from bounce_analyzer.generate.truth import noise_events
from bounce_analyzer.generate.world import FIRST_NAMES, HELOS, LAST_NAMES, NoiseLine

#: The share of a segment's lines that are noise (connections, scanners, rejects).
NOISE_PERCENT = 12


def fitted_plan(
    rng: Rng,
    window: Window,
    n_msgs: int,
    lines_per_message: Callable[[pl.DataFrame, pl.DataFrame], pl.Series],
) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """The plan of `n_msgs` messages cut to the messages whose lines fit in the window's lines
    with room for the noise; and the number of noise lines that fill the window up."""
    size = window.size
    msgs, att = plan(rng, n_msgs, cover=window.cover)
    counts = lines_per_message(msgs, att)
    k = fit(counts, size - size * NOISE_PERCENT // 100)
    used = int(counts.head(k).sum()) if k else 0
    return msgs.head(k), att.filter(pl.col("msg") < k), size - used


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


def noise(rng: Rng, n: int, window: Window, table: Sequence[NoiseLine]) -> pl.DataFrame:
    """`n` single lines between messages (connects, scanners, rejects): their time, shape
    (tpl) and the values their texts take; `msg` numbers them below every message."""
    start_us, span_us = window.start_us, window.span_us
    return pl.select(
        (pl.lit(start_us, pl.Int64) + (rng.floats(n) * span_us).cast(pl.Int64)).alias("ts"),
        rng.choice(n, [line.weight for line in table]).alias("tpl"),
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
