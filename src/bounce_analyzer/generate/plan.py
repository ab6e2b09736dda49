"""The plan every source renders: messages, their recipients and each recipient's delivery
attempts (which reply each one gets), then when each happens.

A source fits as many messages as its record budget holds, then writes the plan its own way
(a Postfix log, an Exim main log, ESP events).
"""

from __future__ import annotations

import polars as pl

from bounce_analyzer.generate.rng import Rng, weighted
from bounce_analyzer.generate.text import pick, render
from bounce_analyzer.generate.world import (
    DOMAINS,
    FIRST_NAMES,
    LAST_NAMES,
    PROVIDERS,
    REPLIES,
    REPLIES_BY_PROVIDER,
    REPLY_INDEX,
)

#: Microseconds in a second: times are integer microseconds since the epoch.
US = 1_000_000

#: What happens to a recipient: sent at once, bounced at once, deferred then sent, deferred then
#: bounced, deferred until the queue lifetime runs out.
SENT, BOUNCE, DEFER_SENT, DEFER_BOUNCE, EXPIRE = range(5)


def plan(
    rng: Rng, n_msgs: int, *, allow_local: bool = True, cover: bool = False
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Messages (one row each) and attempts (one row per recipient per delivery attempt).

    `allow_local=False` (ESPs): no unresolvable domains and none of the MTA's own failures.
    `cover`: the first recipients get every failure text once (for the curated samples).
    """
    msgs = pl.select(
        pl.int_range(0, n_msgs, dtype=pl.Int64).alias("msg"),
        pl.lit(1, pl.Int64).alias("one"),
        rng.choice(n_msgs, [80, 12, 5, 3]).alias("nrcpt_i"),
        rng.choice(n_msgs, [20, 25, 15, 15, 10, 8, 7]).alias("sender_i"),
        rng.choice(n_msgs, [45, 30, 15, 10]).alias("client_i"),
        (rng.floats(n_msgs) * rng.floats(n_msgs) * 400_000 + 1_800).cast(pl.Int64).alias("size"),
    ).with_columns((pl.col("nrcpt_i") + 1).alias("nrcpt"))
    weights = [
        d.weight if allow_local or d.provider not in ("nxdomain", "nullmx") else 0.0
        for d in DOMAINS
    ]
    rc = msgs.select("msg", "nrcpt").with_columns(pl.int_ranges(0, "nrcpt").alias("j")).explode("j")
    n = rc.height
    dom = rng.choice(n, weights)
    rc = rc.with_columns(
        dom.alias("dom_i"),
        rng.choice(n, [30, 20, 15, 10, 15, 10]).alias("pattern"),
        rng.ints(n, 0, len(FIRST_NAMES)).alias("first_i"),
        rng.ints(n, 0, len(LAST_NAMES)).alias("last_i"),
        rng.ints(n, 1, 99).alias("num"),
        rng.floats(n).alias("u_outcome"),
        rng.ints(n, 1, 4).alias("k_defer"),
        rng.ints(n, 3, 6).alias("k_expire"),
        rng.floats(n).alias("u_defer"),
        rng.floats(n).alias("u_final"),
        rng.floats(n).alias("u_sent"),
    )
    provider_of_domain = [PROVIDERS.index(d.provider) for d in DOMAINS]
    rc = rc.with_columns(
        pick([d.name for d in DOMAINS], pl.col("dom_i")).alias("domain"),
        pl.lit(pl.Series(provider_of_domain, dtype=pl.Int64)).gather(pl.col("dom_i")).alias("prov"),
    )
    rc = rc.with_columns(
        pick(FIRST_NAMES, pl.col("first_i")).alias("first"),
        pick(LAST_NAMES, pl.col("last_i")).alias("last"),
    ).with_columns(pl.col("first").str.slice(0, 1).alias("f1"))
    rc = rc.with_columns(
        pl.when(pl.col("pattern") == 0)
        .then(render("{first}.{last}"))
        .when(pl.col("pattern") == 1)
        .then(render("{first}{last}{num}"))
        .when(pl.col("pattern") == 2)
        .then(render("{f1}.{last}"))
        .when(pl.col("pattern") == 3)
        .then(render("{first}_{last}"))
        .when(pl.col("pattern") == 4)
        .then(render("{first}.{last}{num}"))
        .otherwise(render("{first}{num}"))
        .alias("local")
    ).with_columns(render("{local}@{domain}").alias("rcpt"))
    rc = rc.with_columns(*_replies(allow_local), (pl.col("nrcpt") == 1).alias("single"))
    rc = rc.with_columns(_outcome().cast(pl.Int64).alias("outcome")).with_columns(
        pl.when(pl.col("outcome") == EXPIRE)
        .then(pl.col("k_expire"))
        .when(pl.col("outcome").is_in([DEFER_SENT, DEFER_BOUNCE]))
        .then(pl.col("k_defer"))
        .otherwise(0)
        .alias("k"),
    )
    rc = rc.with_columns(
        (pl.col("k") + pl.when(pl.col("outcome") == EXPIRE).then(0).otherwise(1)).alias("attempts")
    )
    if cover:
        rc = _cover(rc, allow_local)
    rounds = rc.group_by("msg").agg(
        pl.col("attempts").max().alias("rounds"),
        (pl.col("outcome") == EXPIRE).any().alias("expired"),
        pl.col("outcome").is_in([BOUNCE, DEFER_BOUNCE]).any().alias("bounced"),
    )
    msgs = msgs.join(rounds, on="msg", maintain_order="left").sort("msg")
    keep = [
        "msg",
        "j",
        "rcpt",
        "domain",
        "dom_i",
        "prov",
        "outcome",
        "k",
        "attempts",
        "sent_tpl",
        "defer_tpl",
        "bounce_tpl",
    ]
    att = (
        rc.select(keep)
        .with_columns(pl.int_ranges(0, "attempts").alias("a"))
        .explode("a")
        .with_columns(
            pl.when(pl.col("a") < pl.col("k"))
            .then(pl.col("defer_tpl"))
            .when(pl.col("outcome").is_in([BOUNCE, DEFER_BOUNCE]))
            .then(pl.col("bounce_tpl"))
            .otherwise(pl.col("sent_tpl"))
            .alias("tpl")
        )
    )
    status_of = pl.lit(pl.Series([r.status for r in REPLIES], dtype=pl.String))
    att = att.with_columns(status_of.gather(pl.col("tpl")).alias("status"))
    return msgs, att


def _replies(allow_local: bool) -> list[pl.Expr]:
    """The reply each recipient gets, by its provider: one success text (sent_tpl), one
    deferral text (defer_tpl), one final failure text (bounce_tpl); whether the provider has
    deferral and failure texts at all (has_defer, has_bounce)."""
    sent_e, defer_e, final_e = (
        pl.lit(None, pl.Int64),
        pl.lit(None, pl.Int64),
        pl.lit(None, pl.Int64),
    )
    has_defer_e, has_bounce_e = pl.lit(False), pl.lit(False)
    for p_i, provider in enumerate(PROVIDERS):
        replies = REPLIES_BY_PROVIDER[provider]
        is_p = pl.col("prov") == p_i
        for status, col in (("sent", "u_sent"), ("deferred", "u_defer"), ("bounced", "u_final")):
            group = [r for r in replies if r.status == status and (allow_local or not r.local)]
            if not group:
                continue
            ids = pl.lit(pl.Series([REPLY_INDEX[r.id] for r in group], dtype=pl.Int64))
            chosen = ids.gather(weighted(pl.col(col), [r.weight for r in group]))
            if status == "sent":
                sent_e = pl.when(is_p).then(chosen).otherwise(sent_e)
            elif status == "deferred":
                defer_e = pl.when(is_p).then(chosen).otherwise(defer_e)
                has_defer_e = pl.when(is_p).then(pl.lit(True)).otherwise(has_defer_e)
            else:
                final_e = pl.when(is_p).then(chosen).otherwise(final_e)
                has_bounce_e = pl.when(is_p).then(pl.lit(True)).otherwise(has_bounce_e)
    return [
        sent_e.alias("sent_tpl"),
        defer_e.alias("defer_tpl"),
        final_e.alias("bounce_tpl"),
        has_defer_e.alias("has_defer"),
        has_bounce_e.alias("has_bounce"),
    ]


def _outcome() -> pl.Expr:
    """What happens to each recipient: drawn (u_outcome), then made possible with the texts
    its provider has (no deferral text: sent at once; expiry only for single recipients)."""
    u = pl.col("u_outcome")
    wanted = (
        pl.when(u < 0.86)
        .then(SENT)
        .when(u < 0.925)
        .then(BOUNCE)
        .when(u < 0.968)
        .then(DEFER_SENT)
        .when(u < 0.975)
        .then(DEFER_BOUNCE)
        .otherwise(EXPIRE)
    )
    no_sent = pl.col("sent_tpl").is_null()
    return (
        pl.when(no_sent)  # nxdomain, nullMX: every attempt fails for good
        .then(BOUNCE)
        .when(wanted.is_in([DEFER_SENT, DEFER_BOUNCE, EXPIRE]) & ~pl.col("has_defer"))
        .then(SENT)
        .when((wanted == DEFER_BOUNCE) & ~pl.col("has_bounce"))
        .then(DEFER_SENT)
        .when((wanted == EXPIRE) & ~pl.col("single"))
        .then(DEFER_SENT)
        .otherwise(wanted)
    )


def _cover(rc: pl.DataFrame, allow_local: bool) -> pl.DataFrame:
    """Give the first recipients (one per message) each failure text once."""
    rows: list[dict[str, object]] = []
    for reply in REPLIES:
        if reply.status == "sent" or (reply.local and not allow_local):
            continue
        provider = next(p for p, rs in REPLIES_BY_PROVIDER.items() if reply in rs)
        dom_i = next(i for i, d in enumerate(DOMAINS) if d.provider == provider)
        deferred = reply.status == "deferred"
        rows.append(
            {
                "msg": len(rows),
                "j": 0,
                "dom_i": dom_i,
                "prov": PROVIDERS.index(provider),
                "domain": DOMAINS[dom_i].name,
                "outcome": DEFER_SENT if deferred else BOUNCE,
                "k": 1 if deferred else 0,
                "attempts": 2 if deferred else 1,
                "defer_tpl": REPLY_INDEX[reply.id] if deferred else None,
                "bounce_tpl": None if deferred else REPLY_INDEX[reply.id],
                "sent_tpl": _first_sent(provider),
            }
        )
    table = pl.DataFrame(
        rows,
        schema_overrides={"defer_tpl": pl.Int64, "bounce_tpl": pl.Int64, "sent_tpl": pl.Int64},
    )
    table = table.filter(pl.col("msg") < rc.get_column("msg").max())
    out = rc.update(table, on=["msg", "j"]).sort("msg", "j")
    return out.with_columns(render("{local}@{domain}").alias("rcpt"))


def _first_sent(provider: str) -> int | None:
    sent = [r for r in REPLIES_BY_PROVIDER[provider] if r.status == "sent"]
    return REPLY_INDEX[sent[0].id] if sent else None


def fit(counts: pl.Series, budget: int) -> int:
    """How many leading messages fit in `budget` records."""
    cumulative = counts.cum_sum()
    return int(cumulative.search_sorted(budget, side="right"))


def message_times(
    rng: Rng, msgs: pl.DataFrame, start_us: int, span_us: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Messages (in `msg` order) with a start time `t0`, and their delivery rounds `r` with a
    time `rt`: retries back off 300 s doubling to 4000 s (Postfix's defaults), squeezed so that
    every message fits in the span (the log stays in time order)."""
    n = msgs.height
    rounds = (
        msgs.select("msg", "rounds")
        .with_columns(pl.int_ranges(0, "rounds").alias("r"))
        .explode("r")
    )
    nr = rounds.height
    rounds = rounds.with_columns(
        pl.when(pl.col("r") == 0)
        .then(0.0)
        .otherwise(
            (pl.lit(300.0) * pl.lit(2.0).pow(pl.col("r") - 1)).clip(upper_bound=4000.0)
            * (1 + rng.floats(nr) * 0.5)
        )
        .alias("backoff")
    ).with_columns(pl.col("backoff").cum_sum().over("msg").alias("offset_s"))
    span_s = rounds.group_by("msg").agg(pl.col("offset_s").max().alias("span_s"))
    longest = _max_float(span_s, "span_s")
    scale = min(1.0, span_us / US * 0.5 / max(1.0, longest + 30))
    msgs = msgs.join(span_s, on="msg", maintain_order="left").sort("msg")
    room = (pl.lit(float(span_us)) - (pl.col("span_s") * scale + 30) * US).clip(lower_bound=0)
    msgs = msgs.with_columns(
        (pl.lit(start_us, pl.Int64) + (rng.floats(n) * room).cast(pl.Int64)).alias("t0")
    )
    rounds = rounds.join(msgs.select("msg", "t0"), on="msg", maintain_order="left").with_columns(
        (pl.col("t0") + 400_000 + (pl.col("offset_s") * scale * US).cast(pl.Int64)).alias("rt")
    )
    return msgs, rounds.drop("t0")


def _max_float(frame: pl.DataFrame, column: str) -> float:
    """The largest value of a numeric column (0.0 for an empty frame)."""
    value = frame.select(pl.col(column).max().cast(pl.Float64)).item()
    return float(value) if value is not None else 0.0


def with_rounds(att: pl.DataFrame, rounds: pl.DataFrame) -> pl.DataFrame:
    """Attempts with the time `rt` of their delivery round, in (msg, a, j) order."""
    return att.join(
        rounds.select("msg", "r", "rt"),
        left_on=["msg", "a"],
        right_on=["msg", "r"],
        maintain_order="left",
    )


def connection_seconds(rng: Rng, n: int) -> list[pl.Expr]:
    """How long each attempt took to connect (conn_s) and to transfer (xfer_s)."""
    return [
        (rng.floats(n) * 1.4 + 0.08).alias("conn_s"),
        (rng.floats(n) * rng.floats(n) * 3 + 0.05).alias("xfer_s"),
    ]


def attempt_time() -> pl.Expr:
    """When each attempt ends (ts): after its round starts, the recipients before it in the
    round, its connection and its transfer."""
    return (
        pl.col("rt")
        + 200_000
        + pl.col("j") * 150_000
        + ((pl.col("conn_s") + pl.col("xfer_s")) * US).cast(pl.Int64)
    ).alias("ts")


def timed_plan(
    rng: Rng, msgs: pl.DataFrame, att: pl.DataFrame, start_us: int, span_us: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Give messages a start time and attempts a time (retries back off, inside the span)."""
    msgs, rounds = message_times(rng, msgs, start_us, span_us)
    na = att.height
    att = (
        with_rounds(att, rounds)
        .join(msgs.select("msg", "t0"), on="msg", maintain_order="left")
        .sort("msg", "a", "j")
    )
    att = att.with_columns(connection_seconds(rng, na)).with_columns(attempt_time())
    return msgs, att
