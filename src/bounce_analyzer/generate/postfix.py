"""The Postfix mail log (syslog): the plan written as smtpd, cleanup, qmgr, smtp and bounce
lines; a person's mail through the amavis content filter first (smtp to 127.0.0.1:10024,
re-injected on 127.0.0.1:10025 under a new queue id); each bounce notice delivered into its
sender's mailbox; other servers' mail delivered into ours (lmtp to Dovecot, virtual, pipe,
local); and the noise of postscreen and smtpd between messages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Unpack

import polars as pl

from bounce_analyzer.generate.mta import (
    Lines,
    add_noise,
    fitted_plan,
    inbound_kind,
    inbound_plan,
    noise,
)
from bounce_analyzer.generate.output import Format, Options, Output, Segment, Window, write
from bounce_analyzer.generate.plan import (
    US,
    attempt_time,
    connection_seconds,
    message_times,
    with_rounds,
)
from bounce_analyzer.generate.rng import BASE62, BASE64URL, HEX, HEX_LOWER, Rng, encode
from bounce_analyzer.generate.text import pick, render, render_by_template, seconds_text
from bounce_analyzer.generate.tokens import client_columns, reply_times, with_details, with_sender
from bounce_analyzer.generate.truth import Truth, attempt_events, event_rows, mailbox_events
from bounce_analyzer.generate.world import (
    HOST,
    LOCAL_CLIENT,
    MAILBOX_TEXTS,
    MYHOSTNAME,
    NOISE,
    OUR_IP,
    REPLIES,
    SENDER_IS_PERSON,
    MailboxText,
    format_reply,
    mailbox_texts_by_sender,
    per_reply,
)

#: A pool of delivery agent process ids.
_PIDS = tuple(str((i * 7_919 + 3_001) % 60_000 + 2_000) for i in range(24))
_CLEANUP_PIDS = [2201, 2277, 2310, 2345, 2402, 2468]
#: amavisd-new's child processes.
_AMAVIS_PIDS = ["19833", "19834"]
#: The texts of the lines about our own mailboxes, and the content filter's.
_TEXTS: tuple[MailboxText, ...] = MAILBOX_TEXTS["postfix"]
_HOP = next(i for i, text in enumerate(_TEXTS) if text.kind == "content_filter")
#: Per sender (world.SENDERS), the delivery into its mailbox and the deferral it can give.
_SENT_TO_SENDER, _DEFER_TO_SENDER = mailbox_texts_by_sender("postfix")


def generate_postfix(
    out: Output,
    *,
    lines: int,
    tz: str = "UTC",
    classic_timestamps: bool = True,
    long_queue_ids: bool = False,
    host: str = HOST,
    postscreen_enforce: bool = False,
    **options: Unpack[Options],
) -> Truth:
    """Write exactly `lines` lines of a Postfix mail log (syslog) and return the true counts.

    `tz` is the zone the syslog timestamps are written in; `classic_timestamps` chooses
    "Nov 27 06:25:01" (else RFC 3339 with microseconds and offset); `long_queue_ids`: Postfix's
    enable_long_queue_ids; `host`: the syslog host name; `postscreen_enforce`: postscreen
    rejects the clients that fail its DNSBL and pregreet tests (else it only logs them, as
    Postfix does by default). `options`: seed, start, days, cover (see `Options`).
    """
    fmt = Postfix(
        tz=tz,
        classic=classic_timestamps,
        long_ids=long_queue_ids,
        host=host,
        postscreen_enforce=postscreen_enforce,
    )
    return write(fmt, out, lines, options)


@dataclass(frozen=True)
class Postfix(Format):
    """Postfix's syslog lines: `tz` and `classic` say how stamps look, `long_ids` how queue
    ids do (enable_long_queue_ids), `host` is the syslog host name; `postscreen_enforce`:
    postscreen rejects what its tests catch."""

    source = "postfix"
    tz: str
    classic: bool
    long_ids: bool
    host: str
    postscreen_enforce: bool = False

    def record(self) -> pl.Expr:
        when = pl.col("ts").cast(pl.Datetime("us", "UTC")).dt.convert_time_zone(self.tz)
        stamp = when.dt.strftime("%b %e %H:%M:%S" if self.classic else "%Y-%m-%dT%H:%M:%S%.6f%:z")
        return pl.concat_str(stamp, pl.lit(f" {self.host} "), pl.col("text"))

    def segment(self, rng: Rng, window: Window) -> Segment:
        index = window.index
        msgs, att, rest = fitted_plan(rng, window, window.size // 5 + 4, _lines_per_message)
        inb, inbound_lines = inbound_plan(rng, window, _inbound_lines)
        n_noise = rest - inbound_lines
        # Times: retries back off, squeezed into a short window; each message fits inside
        # this segment so the log stays in time order.
        n = msgs.height
        msgs, rounds = message_times(rng, msgs, window.start_us, window.span_us)
        msgs = msgs.with_columns(
            rng.ints(n, 1000, 65000).alias("smtpd_pid"),
            rng.ints(n, 0, 6).alias("cleanup_i"),
            rng.token(n, 8, HEX_LOWER).alias("mid_a"),
            # A person's mail passes amavis: the filter takes this long to give it back.
            pl.when(_is_person())
            .then(1_000_000 + (rng.floats(n) * 1_500_000).cast(pl.Int64))
            .otherwise(0)
            .alias("hop_us"),
        )
        msgs = msgs.sort("t0").with_columns(
            pl.int_range(0, n, dtype=pl.Int64).alias("order"),
            (pl.col("t0") + pl.col("hop_us")).alias("t_in"),
            (pl.col("hop_us") > 0).alias("filtered"),
        )
        # The queue id a message arrives under (qid_in) and the one it is delivered under
        # (qid: the one the filter's re-injection gave it, else the same).
        msgs = msgs.with_columns(
            _queue_ids(n, index, pl.col("t0"), self.long_ids).alias("qid_in"),
            pl.when(pl.col("filtered"))
            .then(_queue_ids(n, index, pl.col("t_in"), self.long_ids, first=n))
            .otherwise(_queue_ids(n, index, pl.col("t0"), self.long_ids))
            .alias("qid"),
        )
        msgs = with_sender(msgs, *client_columns()).with_columns(
            pl.when(pl.col("filtered"))
            .then(pl.col("size") + 612)  # amavis's headers
            .otherwise(pl.col("size"))
            .alias("qsize")
        )
        rounds = rounds.join(
            msgs.select("msg", "hop_us"), on="msg", maintain_order="left"
        ).with_columns(pl.col("rt") + pl.col("hop_us"))
        lines = Lines()
        _submission(lines, msgs, index)
        qmgr_pid = 1200 + index
        qm = rounds.join(
            msgs.select("msg", "qid", "sender", "qsize", "nrcpt"), on="msg", maintain_order="left"
        ).with_columns(pl.lit(qmgr_pid).alias("qpid"))
        # ... postfix/qmgr[1200]: 4F2A91C2E3A: from=<news@example.com>, size=18734, nrcpt=1
        #     (queue active)
        lines.add(
            qm,
            pl.col("rt"),
            10 + pl.col("r") * 100,
            "postfix/qmgr[{qpid}]: {qid}: from=<{sender}>, size={qsize}, nrcpt={nrcpt}"
            " (queue active)",
        )
        att = _attempts(rng, with_rounds(att, rounds).sort("msg", "a", "j"), msgs)
        hops = _content_filter(rng, lines, msgs, att, qmgr_pid)
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
        # The bounce notices' queue ids: given when each message's last attempt is done.
        ends = (
            msgs.join(last, on="msg", maintain_order="left")
            .sort("order")
            .with_columns(
                pl.lit(qmgr_pid).alias("qpid"),
                _queue_ids(
                    n, index, pl.col("last_ts") + 1_500, self.long_ids, first=2 * n + inb.height
                ).alias("qid_dsn"),
            )
        )
        expired = ends.filter(pl.col("expired"))
        _ends(lines, ends, expired, index)
        notices = _notices(rng, lines, ends.filter(pl.col("expired") | pl.col("bounced")))
        delivered_in = _inbound(rng, lines, inb, index, self.long_ids, first=2 * n)

        table = NOISE["postfix"]
        options = ["postscreen_enforce"] if self.postscreen_enforce else []
        extra = noise(rng, n_noise, window, table, options).with_columns(
            pl.col("ts")
            .cast(pl.Datetime("us", "UTC"))
            .dt.strftime("%b %e %H:%M:%S")
            .alias("stamp"),
            _queue_ids(n_noise, index, pl.col("ts"), self.long_ids, first=3 * n + inb.height).alias(
                "nqid"
            ),
        )
        texts = {i: f"postfix/{line.process}[{{pid}}]: {line.text}" for i, line in enumerate(table)}
        rejects = add_noise(lines, extra, table, texts)

        # Truth: smtp lines, expiries, the filter's hops, deliveries into our mailboxes, rejects.
        first_attempts = att.filter(pl.col("a") == 0)
        exp = first_attempts.join(expired.select("msg"), on="msg", maintain_order="left")
        events = pl.concat(
            [
                attempt_events(att),
                event_rows(exp, "expired"),
                mailbox_events(hops),
                mailbox_events(notices),
                mailbox_events(delivered_in),
                rejects,
            ]
        )
        return Segment(lines.frame(), events, n)


def _is_person() -> pl.Expr:
    """Whether a message's sender (column sender_i) is a person."""
    return pl.lit(pl.Series(SENDER_IS_PERSON, dtype=pl.Boolean)).gather(pl.col("sender_i"))


def _sender_kind_lmtp() -> pl.Expr:
    """Whether a message's sender's mailbox (column sender_i) is Dovecot's, over LMTP (whose
    deliveries Dovecot logs too)."""
    lmtp = [_TEXTS[i].agent == "lmtp" for i in _SENT_TO_SENDER]
    return pl.lit(pl.Series(lmtp, dtype=pl.Boolean)).gather(pl.col("sender_i"))


def _lines_per_message(msgs: pl.DataFrame, att: pl.DataFrame) -> pl.Series:
    """How many lines each message writes: submission, cleanup, the content filter's hop (a
    person's mail: qmgr, the re-injection's connect, client, cleanup and disconnect, amavis's
    line, a line per recipient, removal), a qmgr line per round, the smtp lines (and TLS lines
    before remote ones), the bounce notice and its delivery to the sender (cleanup, qmgr,
    Dovecot's line for LMTP, the delivery, removal), expiry, removal."""
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
        + pl.when(_is_person()).then(pl.col("nrcpt") + 7).otherwise(0)
        + pl.when(pl.col("bounced") | pl.col("expired"))
        .then(4 + _sender_kind_lmtp().cast(pl.Int64))
        .otherwise(0)
    )
    return counted.select(lines.alias("n")).to_series()


def _inbound_lines(inb: pl.DataFrame) -> pl.Series:
    """How many lines each inbound message writes: postscreen's CONNECT and PASS OLD, smtpd's
    connect, client and disconnect, cleanup, qmgr, the delivery (and Dovecot's line for LMTP),
    removal; a deferral adds its line and qmgr's line for the retry."""
    inb = inbound_kind(inb, _SENT_TO_SENDER, _DEFER_TO_SENDER)
    lmtp = pl.lit(pl.Series([t.agent == "lmtp" for t in _TEXTS], dtype=pl.Boolean))
    return inb.select(
        9
        + lmtp.gather(pl.col("sent")).cast(pl.Int64)
        + pl.col("defer").is_not_null().cast(pl.Int64) * 2
    ).to_series()


def _queue_ids(n: int, segment: int, t0: pl.Expr, long_ids: bool, *, first: int = 0) -> pl.Expr:
    """Unique queue ids: 5 hex digits of microseconds + the inode in hex (10-11 characters).
    `first`: the number of the first row (ids of rows numbered apart never meet).

    Long ids (enable_long_queue_ids): base-52 seconds and microseconds, 'z', base-51 inode.
    """
    # A bijection of the row number onto [2^19, 2^20): unique, scattered, 5 hex digits; later
    # segments add a sixth digit, so ids never repeat across segments.
    rows = pl.int_range(first, first + n, dtype=pl.Int64)
    inode = (rows * 387_413 + 91_111) % (1 << 19) + (1 << 19)
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
    """How each message came in (under its queue id qid_in): over SMTP (connect, client,
    disconnect) or by pickup; and cleanup's message-id line."""
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
        "postfix/smtpd[{smtpd_pid}]: {qid_in}: client={client}[{cip}], sasl_method=PLAIN,"
        " sasl_username={s_local}@{sender_domain}",
    )
    # ... postfix/pickup[1187]: 4F2A91C2E3A: uid=33 from=<noreply@shop.example.com>
    #     (sendmail -f: pickup logs the envelope sender)
    lines.add(
        local,
        pl.col("t0"),
        1,
        f"postfix/pickup[{1187 + segment}]: {{qid_in}}: uid=33 from=<{{sender}}>",
    )
    cleanup = msgs.with_columns(
        pl.lit(pl.Series(_CLEANUP_PIDS)).gather(pl.col("cleanup_i")).alias("cleanup_pid")
    )
    # ... postfix/cleanup[2277]: 4F2A91C2E3A: message-id=<20261127062501.9c1e4f0a@example.com>
    lines.add(
        cleanup,
        pl.col("t0") + 90_000,
        2,
        "postfix/cleanup[{cleanup_pid}]: {qid_in}: message-id=<{mid}>",
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
    # order of the draws is part of the bytes a seed gives. Delays count from the arrival
    # under the delivering queue id (t_in).
    att = (
        with_details(rng, att, msgs, "qid", "t_in")
        .with_columns(
            *connection_seconds(rng, na),
            pick(_PIDS, rng.ints(na, 0, len(_PIDS))).alias("smtp_pid"),
        )
        .with_columns(attempt_time())
        .with_columns(
            ((pl.col("ts") - pl.col("t_in")) / US).alias("delay"),
            ((pl.col("rt") - pl.col("t_in")) / US).alias("before_qmgr"),
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


def _delays(before_qmgr: pl.Expr, delay: pl.Expr) -> pl.Expr:
    """Postfix's delays= of a delivery inside our host: before the queue manager, 0.01 in it,
    no connection, the rest in the delivery."""
    return pl.concat_str(
        seconds_text(before_qmgr),
        pl.lit("/0.01/0/"),
        seconds_text((delay - before_qmgr - 0.01).clip(lower_bound=0)),
    )


def _mailbox_line(step: str) -> dict[int, str]:
    """Each of _TEXTS as a status line of the delivery agent (a template per index)."""
    texts: dict[int, str] = {}
    for i, text in enumerate(_TEXTS):
        relay = (text.relay or "").replace("{myhostname}", MYHOSTNAME)
        body = text.text.replace("{myhostname}", MYHOSTNAME)
        texts[i] = (
            f"postfix/{text.agent}[{{agent_pid}}]: {{{step}}}: to=<{{rcpt}}>, relay={relay},"
            f" delay={{delay_text}}, delays={{delays}}, dsn={text.dsn}, status={text.status}"
            f" ({body})"
        )
    return texts


def _content_filter(
    rng: Rng, lines: Lines, msgs: pl.DataFrame, att: pl.DataFrame, qmgr_pid: int
) -> pl.DataFrame:
    """The hop of filtered messages through amavis, and its truth rows: qmgr takes the message
    (qid_in), the smtp client hands it to amavis on 127.0.0.1:10024, amavis re-injects it on
    127.0.0.1:10025 (smtpd, cleanup: the new queue id qid) and answers 250, one status line
    per recipient; qmgr removes qid_in."""
    hop = msgs.filter(pl.col("filtered"))
    n = hop.height
    rcpts = (
        att.filter(pl.col("a") == 0)
        .group_by("msg", maintain_order=True)
        .agg(pl.format("<{}>", pl.col("rcpt")).str.join(",").alias("rcpts"))
    )
    hop = hop.join(rcpts, on="msg", maintain_order="left").with_columns(
        pl.lit(qmgr_pid).alias("qpid"),
        rng.ints(n, 1000, 65000).alias("rpid"),
        pick(_AMAVIS_PIDS, rng.ints(n, 0, len(_AMAVIS_PIDS))).alias("apid"),
        rng.ints(n, 1, 100).cast(pl.String).str.zfill(2).alias("nn"),
        rng.ints(n, 1024, 65535).alias("cport"),
        rng.token(n, 12, BASE64URL).alias("mail_id"),
        pl.format(
            "-{}.{}", rng.ints(n, 0, 4), rng.ints(n, 0, 100).cast(pl.String).str.zfill(2)
        ).alias("hits"),
        (pl.col("hop_us") // 1000 - 250).alias("ms"),
        (pl.col("nrcpt") + 4).alias("commands"),
        pl.col("t_in").alias("back"),
    )
    # ... postfix/qmgr[1200]: 3D5F8E2A71: from=<jana.kraus@example.com>, size=48211, nrcpt=1
    #     (queue active)
    lines.add(
        hop,
        pl.col("t0") + 160_000,
        4,
        "postfix/qmgr[{qpid}]: {qid_in}: from=<{sender}>, size={size}, nrcpt={nrcpt}"
        " (queue active)",
    )
    # ... postfix/smtpd[24110]: connect from localhost[127.0.0.1]
    lines.add(
        hop, pl.col("back") - 300_000, 5, "postfix/smtpd[{rpid}]: connect from localhost[127.0.0.1]"
    )
    # ... postfix/smtpd[24110]: 8F0A6C1B94: client=localhost[127.0.0.1]
    lines.add(
        hop,
        pl.col("back") - 290_000,
        6,
        "postfix/smtpd[{rpid}]: {qid}: client=localhost[127.0.0.1]",
    )
    # ... postfix/cleanup[2201]: 8F0A6C1B94: message-id=<...> (the same Message-ID)
    lines.add(
        hop.with_columns(
            pl.lit(pl.Series(_CLEANUP_PIDS)).gather(pl.col("cleanup_i")).alias("cleanup_pid")
        ),
        pl.col("back") - 250_000,
        7,
        "postfix/cleanup[{cleanup_pid}]: {qid}: message-id=<{mid}>",
    )
    # ... postfix/smtpd[24110]: disconnect from localhost[127.0.0.1] ehlo=1 mail=1 rcpt=1 ...
    lines.add(
        hop,
        pl.col("back") - 200_000,
        8,
        "postfix/smtpd[{rpid}]: disconnect from localhost[127.0.0.1] ehlo=1 mail=1"
        " rcpt={nrcpt} data=1 quit=1 commands={commands}",
    )
    # ... amavis[19833]: (19833-07) Passed CLEAN {RelayedOutbound}, ORIGINATING LOCAL
    #     [10.0.4.21]:50412 <jana.kraus@example.com> -> <paula.rossi@gmail.com>, Queue-ID: ...
    lines.add(
        hop,
        pl.col("back") - 150_000,
        9,
        "amavis[{apid}]: ({apid}-{nn}) Passed CLEAN {{RelayedOutbound}}, ORIGINATING LOCAL"
        " [{cip}]:{cport} <{sender}> -> {rcpts}, Queue-ID: {qid_in}, Message-ID: <{mid}>,"
        " mail_id: {mail_id}, Hits: {hits}, size: {size}, queued_as: {qid}, {ms} ms",
    )
    # ... postfix/smtp[24105]: 3D5F8E2A71: to=<paula.rossi@gmail.com>, relay=127.0.0.1[127.0.0.1]
    #     :10024, delay=1.5, delays=0.11/0.01/0.01/1.4, dsn=2.0.0, status=sent (250 2.0.0 from
    #     MTA(smtp:[127.0.0.1]:10025): 250 2.0.0 Ok: queued as 8F0A6C1B94)
    each = (
        att.filter(pl.col("a") == 0)
        .select("msg", "j", "rcpt", "domain")
        .join(hop.select("msg", "t0", "back", "qid_in", "qid"), on="msg", maintain_order="left")
    )
    k = each.height
    each = each.with_columns(
        (pl.col("back") - 100_000 + pl.col("j") * 1_000).alias("ts"),
        pick(_PIDS, rng.ints(k, 0, len(_PIDS))).alias("agent_pid"),
        pl.lit(_HOP, pl.Int64).alias("tpl"),
    ).with_columns(
        seconds_text((pl.col("ts") - pl.col("t0")) / US).alias("delay_text"),
        _delays(pl.lit(0.16), (pl.col("ts") - pl.col("t0")) / US).alias("delays"),
    )
    lines.add(
        render_by_template(each, _mailbox_line("qid_in"), "text"),
        pl.col("ts"),
        10 + pl.col("j"),
        None,
    )
    # ... postfix/qmgr[1200]: 3D5F8E2A71: removed
    lines.add(hop, pl.col("back") - 50_000, 11, "postfix/qmgr[{qpid}]: {qid_in}: removed")
    return each.select(
        "domain",
        pl.lit(_TEXTS[_HOP].id).alias("template"),
        pl.lit("internal").alias("direction"),
    )


def _notices(rng: Rng, lines: Lines, ends: pl.DataFrame) -> pl.DataFrame:
    """Each bounce notice delivered into its sender's mailbox (our own), and the truth rows:
    cleanup writes it (before bounce's line names it), qmgr takes it from <>, the sender's
    delivery agent delivers it (Dovecot logs its LMTP deliveries too), qmgr removes it."""
    n = ends.height
    notes = ends.with_columns(
        pl.lit(pl.Series(_SENT_TO_SENDER, dtype=pl.Int64)).gather(pl.col("sender_i")).alias("tpl"),
        pl.lit(pl.Series(_CLEANUP_PIDS)).gather(pl.col("cleanup_i")).alias("cleanup_pid"),
        pick(_PIDS, rng.ints(n, 0, len(_PIDS))).alias("agent_pid"),
        rng.ints(n, 1000, 65000).alias("dpid"),
        rng.token(n, 22, BASE62).alias("session"),
        ((pl.col("size").clip(upper_bound=50_000)) + 2_400).alias("nsize"),
        (rng.floats(n) * 0.2 + 0.03).alias("nd"),
        pl.col("last_ts")
        .cast(pl.Datetime("us", "UTC"))
        .dt.strftime("%Y%m%d%H%M%S")
        .alias("nstamp"),
    ).with_columns(
        (pl.col("last_ts") + 2_500 + (pl.col("nd") * US).cast(pl.Int64)).alias("ts"),
        pl.col("sender").alias("rcpt"),
        seconds_text(pl.col("nd")).alias("delay_text"),
        _delays(pl.lit(0.01), pl.col("nd")).alias("delays"),
    )
    # ... postfix/cleanup[2201]: 2C7D95E0F14: message-id=<20261127064703.2C7D95E0F14@mx1.exa...>
    lines.add(
        notes,
        pl.col("last_ts") + 1_500,
        90_001,
        f"postfix/cleanup[{{cleanup_pid}}]: {{qid_dsn}}: message-id=<{{nstamp}}.{{qid_dsn}}@"
        f"{MYHOSTNAME}>",
    )
    # ... postfix/qmgr[1200]: 2C7D95E0F14: from=<>, size=26305, nrcpt=1 (queue active)
    lines.add(
        notes,
        pl.col("last_ts") + 2_500,
        90_003,
        "postfix/qmgr[{qpid}]: {qid_dsn}: from=<>, size={nsize}, nrcpt=1 (queue active)",
    )
    lmtp = pl.lit(pl.Series([t.agent == "lmtp" for t in _TEXTS], dtype=pl.Boolean))
    # ... dovecot: lmtp(billing@example.com)<31874><kJ7m...>: msgid=<...>: saved mail to INBOX
    lines.add(
        notes.filter(lmtp.gather(pl.col("tpl"))),
        pl.col("ts") - 2_000,
        90_004,
        f"dovecot: lmtp({{rcpt}})<{{dpid}}><{{session}}>: msgid=<{{nstamp}}.{{qid_dsn}}@"
        f"{MYHOSTNAME}>: saved mail to INBOX",
    )
    # ... postfix/lmtp[31871]: 411DEDF1C5C: to=<billing@example.com>, relay=mx1.example.com
    #     [private/dovecot-lmtp], delay=0.13, ..., status=sent (250 2.0.0 <billing@...> ... Saved)
    lines.add(
        render_by_template(notes, _mailbox_line("qid_dsn"), "text"),
        pl.col("ts"),
        90_005,
        None,
    )
    # ... postfix/qmgr[1200]: 2C7D95E0F14: removed
    lines.add(notes, pl.col("ts") + 1_000, 90_006, "postfix/qmgr[{qpid}]: {qid_dsn}: removed")
    return notes.select(
        pl.col("sender_domain").alias("domain"),
        pl.col("tpl").replace_strict({i: t.id for i, t in enumerate(_TEXTS)}).alias("template"),
        pl.lit("inbound").alias("direction"),
    )


def _inbound(
    rng: Rng, lines: Lines, inb: pl.DataFrame, segment: int, long_ids: bool, *, first: int
) -> pl.DataFrame:
    """Other servers' messages delivered into our mailboxes, and their truth rows: postscreen
    lets the client through, smtpd and cleanup take the message, qmgr hands it to our
    mailbox's delivery agent (a full Dovecot mailbox defers it first: qmgr tries again), qmgr
    removes it. `first` numbers the messages' queue ids apart from the others'."""
    inb = inbound_kind(inb, _SENT_TO_SENDER, _DEFER_TO_SENDER)
    n = inb.height
    qmgr_pid = 1200 + segment
    inb = inb.with_columns(
        _queue_ids(n, segment, pl.col("t0"), long_ids, first=first).alias("qid"),
        pl.lit(qmgr_pid).alias("qpid"),
        pl.lit(1150 + segment).alias("ps_pid"),
        pl.lit(pl.Series(_CLEANUP_PIDS)).gather(rng.ints(n, 0, 6)).alias("cleanup_pid"),
        pick(_PIDS, rng.ints(n, 0, len(_PIDS))).alias("agent_pid"),
        rng.ints(n, 1000, 65000).alias("dpid"),
        (rng.floats(n) * 0.25 + 0.03).alias("d1"),
        (rng.floats(n) * 0.25 + 0.03).alias("d2"),
        pl.lit(OUR_IP).alias("our_ip"),
    ).with_columns(
        (pl.col("t0") + 140_000 + (pl.col("d1") * US).cast(pl.Int64)).alias("first_ts"),
        (pl.col("t0") + pl.col("retry_us") + (pl.col("d2") * US).cast(pl.Int64)).alias("retry_ts"),
    )
    inb = inb.with_columns(
        pl.when(pl.col("defer").is_null())
        .then(pl.col("first_ts"))
        .otherwise(pl.col("retry_ts"))
        .alias("ts"),
        pl.when(pl.col("defer").is_null())
        .then(pl.lit(0.14))
        .otherwise((pl.col("retry_us") - 20_000) / US)
        .alias("before_qmgr"),
    )
    # ... postfix/postscreen[1150]: CONNECT from [198.51.100.25]:41822 to [203.0.113.25]:25
    lines.add(
        inb,
        pl.col("t0") - 1_300_000,
        0,
        "postfix/postscreen[{ps_pid}]: CONNECT from [{cip}]:{port} to [{our_ip}]:25",
    )
    # ... postfix/postscreen[1150]: PASS OLD [198.51.100.25]:41822
    lines.add(
        inb, pl.col("t0") - 1_200_000, 1, "postfix/postscreen[{ps_pid}]: PASS OLD [{cip}]:{port}"
    )
    # ... postfix/smtpd[20583]: connect from mail.example.net[198.51.100.25]
    lines.add(
        inb, pl.col("t0") - 1_100_000, 2, "postfix/smtpd[{pid}]: connect from {client}[{cip}]"
    )
    # ... postfix/smtpd[20583]: 7A2C31D4E9: client=mail.example.net[198.51.100.25]
    lines.add(inb, pl.col("t0"), 3, "postfix/smtpd[{pid}]: {qid}: client={client}[{cip}]")
    # ... postfix/cleanup[2402]: 7A2C31D4E9: message-id=<...@example.net>
    lines.add(
        inb, pl.col("t0") + 90_000, 4, "postfix/cleanup[{cleanup_pid}]: {qid}: message-id=<{mid}>"
    )
    queued = "postfix/qmgr[{qpid}]: {qid}: from=<{xsender}>, size={size}, nrcpt=1 (queue active)"
    # ... postfix/qmgr[1200]: 7A2C31D4E9: from=<lena.jensen@example.net>, size=28413, nrcpt=1
    #     (queue active)
    lines.add(inb, pl.col("t0") + 140_000, 5, queued)
    # ... postfix/smtpd[20583]: disconnect from mail.example.net[198.51.100.25] ehlo=2 ...
    lines.add(
        inb,
        pl.col("t0") + 150_000,
        6,
        "postfix/smtpd[{pid}]: disconnect from {client}[{cip}] ehlo=2 starttls=1 mail=1 rcpt=1"
        " data=1 quit=1 commands=7",
    )
    deferred = inb.filter(pl.col("defer").is_not_null()).with_columns(
        pl.col("defer").alias("tpl"),
        seconds_text((pl.col("first_ts") - pl.col("t0")) / US).alias("delay_text"),
        _delays(pl.lit(0.14), (pl.col("first_ts") - pl.col("t0")) / US).alias("delays"),
    )
    # ... postfix/lmtp[31899]: 7A2C31D4E9: to=<tom.becker@example.com>, relay=mx1.example.com
    #     [private/dovecot-lmtp], ..., dsn=4.2.2, status=deferred (host mx1.example.com[private/
    #     dovecot-lmtp] said: 452 4.2.2 <tom.becker@example.com> Quota exceeded (mailbox for
    #     user is full) (in reply to end of DATA command))
    lines.add(
        render_by_template(deferred, _mailbox_line("qid"), "text"), pl.col("first_ts"), 7, None
    )
    lines.add(deferred, pl.col("t0") + pl.col("retry_us") - 20_000, 8, queued)
    sent = inb.with_columns(
        pl.col("sent").alias("tpl"),
        seconds_text((pl.col("ts") - pl.col("t0")) / US).alias("delay_text"),
        _delays(pl.col("before_qmgr"), (pl.col("ts") - pl.col("t0")) / US).alias("delays"),
    )
    lmtp = pl.lit(pl.Series([t.agent == "lmtp" for t in _TEXTS], dtype=pl.Boolean))
    # ... dovecot: lmtp(jana.kraus@example.com)<31902><mH4t...>: msgid=<...>: saved mail to INBOX
    lines.add(
        sent.filter(lmtp.gather(pl.col("tpl"))),
        pl.col("ts") - 2_000,
        9,
        "dovecot: lmtp({rcpt})<{dpid}><{session}>: msgid=<{mid}>: saved mail to INBOX",
    )
    # ... postfix/lmtp[31899]: 7A2C31D4E9: to=<jana.kraus@example.com>, relay=mx1.example.com
    #     [private/dovecot-lmtp], ..., status=sent (250 2.0.0 <jana.kraus@example.com> ... Saved)
    lines.add(render_by_template(sent, _mailbox_line("qid"), "text"), pl.col("ts"), 10, None)
    # ... postfix/qmgr[1200]: 7A2C31D4E9: removed
    lines.add(inb, pl.col("ts") + 1_000, 11, "postfix/qmgr[{qpid}]: {qid}: removed")
    names = {i: text.id for i, text in enumerate(_TEXTS)}
    return pl.concat(
        [
            frame.select(
                pl.col("rdomain").alias("domain"),
                pl.col("tpl").replace_strict(names).alias("template"),
                pl.lit("inbound").alias("direction"),
            )
            for frame in (deferred, sent)
        ]
    )
