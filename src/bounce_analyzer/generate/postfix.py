"""The Postfix mail log (syslog): the plan written as smtpd, cleanup, qmgr, smtp and bounce
lines, with the noise of postscreen and smtpd between messages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Unpack

import polars as pl

from bounce_analyzer.generate.mta import Lines, add_noise, fitted_plan, noise
from bounce_analyzer.generate.output import Format, Options, Output, Segment, Window, write
from bounce_analyzer.generate.plan import (
    US,
    attempt_time,
    connection_seconds,
    message_times,
    with_rounds,
)
from bounce_analyzer.generate.rng import HEX, HEX_LOWER, Rng, encode
from bounce_analyzer.generate.text import pick, render, render_by_template, seconds_text
from bounce_analyzer.generate.tokens import client_columns, reply_times, with_details, with_sender
from bounce_analyzer.generate.truth import Truth, attempt_events, event_rows
from bounce_analyzer.generate.world import (
    HOST,
    LOCAL_CLIENT,
    NOISE,
    REPLIES,
    format_reply,
    per_reply,
)

#: A pool of delivery agent process ids.
_PIDS = tuple(str((i * 7_919 + 3_001) % 60_000 + 2_000) for i in range(24))
_CLEANUP_PIDS = [2201, 2277, 2310, 2345, 2402, 2468]


def generate_postfix(
    out: Output,
    *,
    lines: int,
    tz: str = "UTC",
    classic_timestamps: bool = True,
    long_queue_ids: bool = False,
    host: str = HOST,
    **options: Unpack[Options],
) -> Truth:
    """Write exactly `lines` lines of a Postfix mail log (syslog) and return the true counts.

    `tz` is the zone the syslog timestamps are written in; `classic_timestamps` chooses
    "Nov 27 06:25:01" (else RFC 3339 with microseconds and offset); `long_queue_ids`: Postfix's
    enable_long_queue_ids; `host`: the syslog host name. `options`: seed, start, days, cover
    (see `Options`).
    """
    fmt = Postfix(tz=tz, classic=classic_timestamps, long_ids=long_queue_ids, host=host)
    return write(fmt, out, lines, options)


@dataclass(frozen=True)
class Postfix(Format):
    """Postfix's syslog lines: `tz` and `classic` say how stamps look, `long_ids` how queue
    ids do (enable_long_queue_ids), `host` is the syslog host name."""

    source = "postfix"
    tz: str
    classic: bool
    long_ids: bool
    host: str

    def record(self) -> pl.Expr:
        when = pl.col("ts").cast(pl.Datetime("us", "UTC")).dt.convert_time_zone(self.tz)
        stamp = when.dt.strftime("%b %e %H:%M:%S" if self.classic else "%Y-%m-%dT%H:%M:%S%.6f%:z")
        return pl.concat_str(stamp, pl.lit(f" {self.host} "), pl.col("text"))

    def segment(self, rng: Rng, window: Window) -> Segment:
        index = window.index
        msgs, att, n_noise = fitted_plan(rng, window, window.size // 5 + 4, _lines_per_message)
        # Times: retries back off, squeezed into a short window; each message fits inside
        # this segment so the log stays in time order.
        n = msgs.height
        msgs, rounds = message_times(rng, msgs, window.start_us, window.span_us)
        msgs = msgs.with_columns(
            rng.ints(n, 1000, 65000).alias("smtpd_pid"),
            rng.ints(n, 0, 6).alias("cleanup_i"),
            rng.token(n, 8, HEX_LOWER).alias("mid_a"),
        )
        msgs = msgs.sort("t0").with_columns(pl.int_range(0, n, dtype=pl.Int64).alias("order"))
        msgs = msgs.with_columns(_queue_ids(n, index, pl.col("t0"), self.long_ids).alias("qid"))
        msgs = with_sender(msgs, *client_columns())
        lines = Lines()
        _submission(lines, msgs, index)
        qmgr_pid = 1200 + index
        qm = rounds.join(
            msgs.select("msg", "qid", "sender", "size", "nrcpt"), on="msg", maintain_order="left"
        ).with_columns(pl.lit(qmgr_pid).alias("qpid"))
        # ... postfix/qmgr[1200]: 4F2A91C2E3A: from=<news@example.com>, size=18734, nrcpt=1
        #     (queue active)
        lines.add(
            qm,
            pl.col("rt"),
            10 + pl.col("r") * 100,
            "postfix/qmgr[{qpid}]: {qid}: from=<{sender}>, size={size}, nrcpt={nrcpt}"
            " (queue active)",
        )
        att = _attempts(rng, with_rounds(att, rounds).sort("msg", "a", "j"), msgs)
        # Nov 27 06:25:03 mx1 postfix/smtp[3041]: Trusted TLS connection established to gmail-...
        lines.add(
            att.filter(pl.col("is_remote")),
            pl.col("ts") - 20_000 - (pl.col("xfer_s") * US).cast(pl.Int64),
            20 + pl.col("a") * 100 + pl.col("j") * 2,
            "postfix/smtp[{smtp_pid}]: Trusted TLS connection established to {mx}[{mxip}]:25:"
            " TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519"
            " server-signature RSA-PSS (2048 bits) server-digest SHA256",
        )
        # ... postfix/smtp[3041]: 4F2A91C2E3A: to=<anna.novak@gmail.com>, relay=gmail-smtp-in.l.
        #     google.com[142.250.27.26]:25, delay=1.2, delays=0.4/0/0.5/0.3, dsn=2.0.0,
        #     status=sent (...)
        lines.add(
            att,
            pl.col("ts"),
            21 + pl.col("a") * 100 + pl.col("j") * 2,
            "postfix/smtp[{smtp_pid}]: {qid}: to=<{rcpt}>, relay={relay}, delay={delay_text},"
            " delays={delays}, {dsn}, status={status} ({reply})",
        )
        last = att.group_by("msg").agg(pl.col("ts").max().alias("last_ts"))
        ends = msgs.join(last, on="msg", maintain_order="left").with_columns(
            pl.lit(qmgr_pid).alias("qpid"),
            rng.token(n, 11, HEX).alias("qid_dsn"),
        )
        expired = ends.filter(pl.col("expired"))
        _ends(lines, ends, expired, index)

        table = NOISE["postfix"]
        extra = noise(rng, n_noise, window, table).with_columns(
            pl.col("ts").cast(pl.Datetime("us", "UTC")).dt.strftime("%b %e %H:%M:%S").alias("stamp")
        )
        texts = {i: f"postfix/{line.process}[{{pid}}]: {line.text}" for i, line in enumerate(table)}
        rejects = add_noise(lines, extra, table, texts)

        # Truth: smtp lines, expiries, rejects.
        first_attempts = att.filter(pl.col("a") == 0)
        exp = first_attempts.join(expired.select("msg"), on="msg", maintain_order="left")
        events = pl.concat([attempt_events(att), event_rows(exp, "expired"), rejects])
        return Segment(lines.frame(), events, n)


def _lines_per_message(msgs: pl.DataFrame, att: pl.DataFrame) -> pl.Series:
    """How many lines each message writes: submission, cleanup, a qmgr line per round, the
    smtp lines (and TLS lines before remote ones), the bounce notice, expiry, removal."""
    per_msg = (
        att.with_columns(per_reply([r.remote_relay for r in REPLIES], pl.Boolean).alias("remote"))
        .group_by("msg")
        .agg((pl.len() + pl.col("remote").sum()).alias("smtp_lines"))
    )
    counted = msgs.join(per_msg, on="msg", maintain_order="left").sort("msg")
    lines = (
        # pickup, or smtpd's connect, client= and disconnect
        pl.when(pl.col("client_i") == LOCAL_CLIENT).then(1).otherwise(3)
        + 1  # cleanup
        + pl.col("rounds")  # qmgr from= per round
        + pl.col("smtp_lines")
        + pl.col("bounced").cast(pl.Int64)
        + pl.col("expired").cast(pl.Int64) * 2  # expired + non-delivery notification
        + 1  # removed
    )
    return counted.select(lines.alias("n")).to_series()


def _queue_ids(n: int, segment: int, t0: pl.Expr, long_ids: bool) -> pl.Expr:
    """Unique queue ids: 5 hex digits of microseconds + the inode in hex (10-11 characters).

    Long ids (enable_long_queue_ids): base-52 seconds and microseconds, 'z', base-51 inode.
    """
    # A bijection of the row number onto [2^19, 2^20): unique, scattered, 5 hex digits; later
    # segments add a sixth digit, so ids never repeat across segments.
    inode = (pl.int_range(0, n, dtype=pl.Int64) * 387_413 + 91_111) % (1 << 19) + (1 << 19)
    inode = inode + segment * (1 << 20)
    if long_ids:
        b51 = "0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxy"  # no vowels, no 'z'
        seconds = (t0 // US).cast(pl.UInt64)
        micros = (t0 % US).cast(pl.UInt64)
        return pl.concat_str(
            encode(seconds, b51 + "z", 6),
            encode(micros, b51 + "z", 4),
            pl.lit("z"),
            encode(inode.cast(pl.UInt64), b51, 4),
        )
    micros = (t0 % US).cast(pl.UInt64)
    six = inode >= (1 << 20)
    return pl.concat_str(
        encode(micros, HEX, 5),
        pl.when(six)
        .then(encode(inode.cast(pl.UInt64), HEX, 6))
        .otherwise(encode(inode.cast(pl.UInt64), HEX, 5)),
    )


def _submission(lines: Lines, msgs: pl.DataFrame, segment: int) -> None:
    """How each message came in: over SMTP (connect, client, disconnect) or by pickup; and
    cleanup's message-id line."""
    smtpd = msgs.filter(pl.col("client_i") != LOCAL_CLIENT)
    local = msgs.filter(pl.col("client_i") == LOCAL_CLIENT)
    # Nov 27 06:25:01 mx1 postfix/smtpd[4242]: connect from app01.example.com[10.0.4.21]
    lines.add(
        smtpd, pl.col("t0") - 40_000, 0, "postfix/smtpd[{smtpd_pid}]: connect from {client}[{cip}]"
    )
    # ... postfix/smtpd[4242]: 4F2A91C2E3A: client=app01.example.com[10.0.4.21], sasl_...
    lines.add(
        smtpd,
        pl.col("t0"),
        1,
        "postfix/smtpd[{smtpd_pid}]: {qid}: client={client}[{cip}], sasl_method=PLAIN,"
        " sasl_username={s_local}@{sender_domain}",
    )
    # ... postfix/pickup[1187]: 4F2A91C2E3A: uid=33 from=<www-data>
    lines.add(
        local, pl.col("t0"), 1, f"postfix/pickup[{1187 + segment}]: {{qid}}: uid=33 from=<www-data>"
    )
    cleanup = msgs.with_columns(
        pl.lit(pl.Series(_CLEANUP_PIDS)).gather(pl.col("cleanup_i")).alias("cleanup_pid")
    )
    # ... postfix/cleanup[2277]: 4F2A91C2E3A: message-id=<20261127062501.9c1e4f0a@example.com>
    lines.add(
        cleanup,
        pl.col("t0") + 90_000,
        2,
        "postfix/cleanup[{cleanup_pid}]: {qid}: message-id=<{mid}>",
    )
    # ... postfix/smtpd[4242]: disconnect from app01... ehlo=2 starttls=1 auth=1 mail=1 rcpt=1 ...
    smtpd = smtpd.with_columns((pl.col("nrcpt") + 6).alias("commands"))
    lines.add(
        smtpd,
        pl.col("t0") + 150_000,
        3,
        "postfix/smtpd[{smtpd_pid}]: disconnect from {client}[{cip}] ehlo=2 starttls=1 auth=1"
        " mail=1 rcpt={nrcpt} data=1 quit=1 commands={commands}",
    )


def _attempts(rng: Rng, att: pl.DataFrame, msgs: pl.DataFrame) -> pl.DataFrame:
    """The attempts (with their round's time) as the smtp lines write them: relay, delays,
    dsn= and the reply (column reply)."""
    na = att.height
    # Postfix draws the connection times after the reply tokens (the others before): the
    # order of the draws is part of the bytes a seed gives.
    att = (
        with_details(rng, att, msgs, "qid", "t0")
        .with_columns(
            *connection_seconds(rng, na),
            pick(_PIDS, rng.ints(na, 0, len(_PIDS))).alias("smtp_pid"),
        )
        .with_columns(attempt_time())
        .with_columns(
            ((pl.col("ts") - pl.col("t0")) / US).alias("delay"),
            ((pl.col("rt") - pl.col("t0")) / US).alias("before_qmgr"),
            *reply_times(),
        )
    )
    remote = per_reply([r.remote_relay for r in REPLIES], pl.Boolean)
    att = att.with_columns(
        per_reply([r.local for r in REPLIES], pl.Boolean).alias("is_local"),
        remote.alias("is_remote"),
        pl.concat_str(pl.lit("dsn="), per_reply([r.dsn for r in REPLIES], pl.String)).alias("dsn"),
        pl.concat_str(
            seconds_text(pl.col("before_qmgr")),
            pl.lit("/"),
            seconds_text(0.2 + pl.col("j") * 0.15),
            pl.lit("/"),
            seconds_text(pl.col("conn_s")),
            pl.lit("/"),
            seconds_text(pl.col("xfer_s")),
        ).alias("delays"),
        seconds_text(pl.col("delay")).alias("delay_text"),
    ).with_columns(
        pl.when(remote).then(render("{mx}[{mxip}]:25")).otherwise(pl.lit("none")).alias("relay")
    )
    texts: dict[int, str] = {}
    for i, reply in enumerate(REPLIES):
        body = format_reply(reply, "postfix")
        if reply.local or reply.status == "sent":
            texts[i] = body
        elif reply.stage == "greeting":
            texts[i] = "host {mx}[{mxip}] refused to talk to me: " + body
        else:
            texts[i] = f"host {{mx}}[{{mxip}}] said: {body} (in reply to {reply.stage} command)"
    return render_by_template(att, texts, "reply")


def _ends(lines: Lines, ends: pl.DataFrame, expired: pl.DataFrame, segment: int) -> None:
    """How each message leaves the queue: expiry, the bounce notice to its sender, removal."""
    # ... postfix/qmgr[1200]: 4F2A91C2E3A: from=<news@example.com>, status=expired,
    #     returned to sender
    lines.add(
        expired,
        pl.col("last_ts") + 1_000,
        90_000,
        "postfix/qmgr[{qpid}]: {qid}: from=<{sender}>, status=expired, returned to sender",
    )
    # ... postfix/bounce[2950]: 4F2A91C2E3A: sender non-delivery notification: 6B1C0D2E11F
    lines.add(
        ends.filter(pl.col("expired") | pl.col("bounced")),
        pl.col("last_ts") + 2_000,
        90_001,
        f"postfix/bounce[{2950 + segment}]: {{qid}}: sender non-delivery notification: {{qid_dsn}}",
    )
    # ... postfix/qmgr[1200]: 4F2A91C2E3A: removed
    lines.add(ends, pl.col("last_ts") + 3_000, 90_002, "postfix/qmgr[{qpid}]: {qid}: removed")
