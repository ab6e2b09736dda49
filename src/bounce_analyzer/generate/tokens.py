"""What varies from line to line inside a reply or a record: Gmail's trailing id, Outlook's
server names, Yahoo's mta host, the MX host and address an attempt went to, the client, the
sender and the Message-ID of a message."""

from __future__ import annotations

import polars as pl

from bounce_analyzer.generate.plan import US
from bounce_analyzer.generate.rng import ALNUM, BASE62, HEX, HEX_LOWER, Rng
from bounce_analyzer.generate.text import pick, render
from bounce_analyzer.generate.world import CLIENTS, DOMAINS, OUR_IP, SENDERS


def reply_columns(rng: Rng, n: int) -> list[pl.Expr]:
    """The per-row tokens reply texts are made of (Gmail's trailing id, Outlook's host...)."""
    return [
        pl.concat_str(
            rng.token(n, 13, HEX_LOWER),
            pl.lit("-"),
            rng.token(n, 10, ALNUM),
            pl.lit("si"),
            rng.token(n, 8, "0123456789"),
            rng.token(n, 3, ALNUM),
            pl.lit("."),
            rng.ints(n, 1, 999).cast(pl.String),
        ).alias("gid"),
        pl.concat_str(
            pick(["AM4PEPF000", "DB5PEPF000", "AMS0EPF000", "VI1PEPF000"], rng.ints(n, 0, 4)),
            rng.token(n, 5, HEX),
        ).alias("msid"),
        rng.token(n, 16, HEX).alias("mshex"),
        pl.concat_str(
            pick(["DB5EUR03FT", "AM2PEPF0001", "VI1EUR04FT", "HE1EUR02FT"], rng.ints(n, 0, 4)),
            rng.ints(n, 100, 999).cast(pl.String),
        ).alias("eop"),
        rng.ints(n, 1000, 9999).cast(pl.String).alias("yid"),
        pick(["bf1", "bf2", "gq1", "ne1"], rng.ints(n, 0, 4)).alias("ycl"),
        rng.token(n, 22, BASE62).alias("yxid"),
        rng.ints(n, 10, 99).cast(pl.String).alias("n1"),
        rng.ints(n, 1, 59).cast(pl.String).alias("n2"),
        rng.ints(n, 100, 999).cast(pl.String).alias("n"),
        rng.token(n, 12, HEX).alias("qid2"),
        rng.ints(n, 10**13, 10**14 - 1).cast(pl.String).alias("internal_id"),
        pl.concat_str(
            rng.token(n, 5, "0123456789"),
            pl.lit("-"),
            rng.ints(n, 1, 20).cast(pl.String).str.zfill(2),
        ).alias("amid"),
        _dashed(rng, n, (5, 10, 6)).alias("gmxid"),
        pl.concat_str(pl.lit("mxgmx"), rng.ints(n, 100, 130).cast(pl.String)).alias("gmxmx"),
        _dashed(rng, n, (6, 6, 2)).alias("eximid"),
        rng.token(n, 40, HEX_LOWER).alias("mrid"),
        rng.token(n, 16, HEX_LOWER).alias("mrhex"),
        rng.token(n, 32, HEX_LOWER).alias("mrhex2"),
        pl.concat_str(rng.token(n, 10, ALNUM), pl.lit("-1")).alias("ppid"),
    ]


def _dashed(rng: Rng, n: int, widths: tuple[int, ...]) -> pl.Expr:
    """Base-62 tokens of these widths joined by dashes (GMX's and Exim's ids)."""
    parts: list[pl.Expr] = []
    for width in widths:
        parts.extend([pl.lit("-"), rng.token(n, width, BASE62)])
    return pl.concat_str(parts[1:])


def relay_columns(rng: Rng, n: int) -> list[pl.Expr]:
    """MX host and address for each attempt row (needs dom_i)."""
    mx_first = []
    mx_count = []
    names: list[str] = []
    for d in DOMAINS:
        mx_first.append(len(names))
        mx_count.append(len(d.mx))
        names.extend(d.mx)
    first = pl.lit(pl.Series(mx_first, dtype=pl.Int64)).gather(pl.col("dom_i"))
    count = pl.lit(pl.Series(mx_count, dtype=pl.Int64)).gather(pl.col("dom_i"))
    which = first + rng.ints(n, 0, 1 << 30) % count
    prefix = pick([d.ip_prefix for d in DOMAINS], pl.col("dom_i"))
    ip = pl.concat_str(
        prefix,
        pl.lit("."),
        rng.ints(n, 1, 254).cast(pl.String),
        pl.lit("."),
        rng.ints(n, 1, 254).cast(pl.String),
    )
    return [pick(names, which).alias("mx"), ip.alias("mxip")]


def client_columns() -> list[pl.Expr]:
    """The client that handed each message to us: its name (client) and address (cip)."""
    return [
        pick([c[0] for c in CLIENTS], pl.col("client_i")).alias("client"),
        pick([c[1] for c in CLIENTS], pl.col("client_i")).alias("cip"),
    ]


def with_sender(msgs: pl.DataFrame, *columns: pl.Expr) -> pl.DataFrame:
    """Messages with their sender (s_local, sender_domain, sender, sender_domain_upper), the
    `columns` given, and their Message-ID (mid): their time, a token (mid_a, among `columns`
    unless the messages have it already) and the sender's domain."""
    return (
        msgs.with_columns(
            pick([s[0] for s in SENDERS], pl.col("sender_i")).alias("s_local"),
            pick([s[1] for s in SENDERS], pl.col("sender_i")).alias("sender_domain"),
        )
        .with_columns(
            render("{s_local}@{sender_domain}").alias("sender"),
            pl.col("sender_domain").str.to_uppercase().alias("sender_domain_upper"),
            *columns,
            pl.col("t0").cast(pl.Datetime("us", "UTC")).dt.strftime("%Y%m%d%H%M%S").alias("mid_t"),
        )
        .with_columns(render("{mid_t}.{mid_a}@{sender_domain}").alias("mid"))
    )


def with_details(rng: Rng, att: pl.DataFrame, msgs: pl.DataFrame, *ids: str) -> pl.DataFrame:
    """Attempts with their message's `ids` and sender, size and Message-ID, the MX host and
    address they went to, the tokens of their reply, and our address (ip)."""
    na = att.height
    return (
        att.join(
            msgs.select(
                "msg", *ids, "sender", "sender_domain", "sender_domain_upper", "size", "mid"
            ),
            on="msg",
            maintain_order="left",
        )
        .with_columns(relay_columns(rng, na))
        .with_columns(reply_columns(rng, na))
        .with_columns(pl.lit(OUR_IP).alias("ip"))
    )


def reply_times() -> list[pl.Expr]:
    """The attempt's time (ts) as replies write it: Unix seconds (unix), Outlook's (mstime)."""
    return [
        (pl.col("ts") // US).cast(pl.String).alias("unix"),
        pl.col("ts")
        .cast(pl.Datetime("us", "UTC"))
        .dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .alias("mstime"),
    ]
