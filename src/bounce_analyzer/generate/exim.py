"""The Exim main log: the plan written as arrivals (<=), deliveries (=>, ->), deferrals (==),
failures (**) and completions; each bounce message (<= <> R=<parent>) delivered into its
sender's mailbox; other servers' mail delivered into ours (dovecot_lmtp, local_delivery); and
connections and rejects between messages."""

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
from bounce_analyzer.generate.plan import US, timed_plan
from bounce_analyzer.generate.rng import BASE62, HEX_LOWER, Rng, encode
from bounce_analyzer.generate.text import render_by_template
from bounce_analyzer.generate.tokens import client_columns, reply_times, with_details, with_sender
from bounce_analyzer.generate.truth import Truth, attempt_events, event_rows, mailbox_events
from bounce_analyzer.generate.world import (
    LOCAL_CLIENT,
    MAILBOX_TEXTS,
    NOISE,
    REPLIES,
    TEXT_DSN,
    MailboxText,
    Reply,
    format_reply,
    mailbox_texts_by_sender,
    per_reply,
)

#: The command a reply answers, as Exim writes it, and the errno of its deferral.
_STAGE = {
    "RCPT TO": ("RCPT TO:<{rcpt}>", "-44"),
    "MAIL FROM": ("MAIL FROM:<{sender}> SIZE={size}", "-45"),
    "end of DATA": ("end of data", "-46"),
    "greeting": ("initial connection", "-18"),
}
_ERRNO = {"local.timeout": "110", "local.refused": "111", "local.tls_required": "-1"}
_TLS = "X=TLS1.3:TLS_AES_256_GCM_SHA384:256"
_ROUTE = "R=dnslookup T=remote_smtp"
#: Replies that are the MTA's own failure to connect: Exim writes a connection line first.
_CONNECT_FAILURE = [r.local and not r.remote_relay and r.status == "deferred" for r in REPLIES]
#: The texts of the lines about our own mailboxes.
_TEXTS: tuple[MailboxText, ...] = MAILBOX_TEXTS["exim"]
#: Per sender (world.SENDERS), the delivery into its mailbox and the deferral it can give.
_SENT_TO_SENDER, _DEFER_TO_SENDER = mailbox_texts_by_sender("exim")


def generate_exim(
    out: Output, *, lines: int, tz: str = "UTC", new_ids: bool = False, **options: Unpack[Options]
) -> Truth:
    """Write exactly `lines` lines of an Exim main log and return the true counts.

    `tz` is the zone of the timestamps; `new_ids`: Exim 4.97's message ids. `options`: seed,
    start, days, cover (see `Options`).
    """
    return write(Exim(tz=tz, new_ids=new_ids), out, lines, options)


@dataclass(frozen=True)
class Exim(Format):
    """Exim's main log: stamps in `tz`; `new_ids`: Exim 4.97's longer message ids."""

    source = "exim"
    tz: str
    new_ids: bool

    def record(self) -> pl.Expr:
        when = pl.col("ts").cast(pl.Datetime("us", "UTC")).dt.convert_time_zone(self.tz)
        return pl.concat_str(when.dt.strftime("%Y-%m-%d %H:%M:%S"), pl.lit(" "), "text")

    def segment(self, rng: Rng, window: Window) -> Segment:
        msgs, att, rest = fitted_plan(rng, window, window.size // 4 + 4, _lines_per_message)
        inb, inbound_lines = inbound_plan(rng, window, _inbound_lines)
        n_noise = rest - inbound_lines
        msgs, att = timed_plan(rng, msgs, att, window.start_us, window.span_us)
        n = msgs.height
        msgs = msgs.sort("t0").with_columns(
            _ids(n, window.index, pl.col("t0"), self.new_ids).alias("eid")
        )
        msgs = with_sender(msgs, *client_columns(), rng.token(n, 8, HEX_LOWER).alias("mid_a"))
        att = with_details(rng, att, msgs, "eid").with_columns(reply_times())
        # "->" for further recipients of one delivery (same message, round and domain, all sent).
        att = att.with_columns(
            (
                (pl.col("status") == "sent")
                & (pl.col("status").shift(1) == "sent")
                & (pl.col("msg").shift(1) == pl.col("msg"))
                & (pl.col("a").shift(1) == pl.col("a"))
                & (pl.col("domain").shift(1) == pl.col("domain"))
            )
            .fill_null(False)
            .alias("more")
        )
        att = att.with_columns(
            pl.when(pl.col("more")).then(pl.lit("->")).otherwise(pl.lit("=>")).alias("arrow")
        )
        att = render_by_template(att, {i: _text(r) for i, r in enumerate(REPLIES)}, "text")

        lines = Lines()
        # ... 1tGxYz-00AbCd-Ef <= news@example.com H=app01.example.com [10.0.4.21] P=esmtpsa
        #     X=... CV=no A=dovecot_plain:news@example.com S=18734 id=20261127062501.9c1e4f0a@...
        lines.add(
            msgs.filter(pl.col("client_i") != LOCAL_CLIENT),
            pl.col("t0"),
            0,
            f"{{eid}} <= {{sender}} H={{client}} [{{cip}}] P=esmtpsa {_TLS} CV=no"
            " A=dovecot_plain:{sender} S={size} id={mid}",
        )
        # ... 1tGxYz-00AbCd-Ef <= noreply@shop.example.com U=www-data P=local S=4211 id=...
        lines.add(
            msgs.filter(pl.col("client_i") == LOCAL_CLIENT),
            pl.col("t0"),
            0,
            "{eid} <= {sender} U=www-data P=local S={size} id={mid}",
        )
        # ... 1tGxYz-00AbCd-Ef H=mail.umbrella.example [198.51.100.20] Connection timed out
        conn = att.filter(per_reply(_CONNECT_FAILURE, pl.Boolean)).with_columns(
            per_reply([r.exim or "" for r in REPLIES], pl.String).alias("why")
        )
        lines.add(
            conn,
            pl.col("ts") - 1,
            1 + pl.col("a") * 100 + pl.col("j") * 2,
            "{eid} H={mx} [{mxip}] {why}",
        )
        lines.add(att, pl.col("ts"), 2 + pl.col("a") * 100 + pl.col("j") * 2, None)
        last = att.group_by("msg").agg(
            pl.col("ts").max().alias("last_ts"), pl.col("rcpt").first().alias("rcpt")
        )
        ends = msgs.join(last, on="msg", maintain_order="left")
        # ... 1tGxYz-00AbCd-Ef ** x@umbrella.example: retry timeout exceeded
        lines.add(
            ends.filter(pl.col("expired")),
            pl.col("last_ts") + 1,
            90_000,
            "{eid} ** {rcpt}: retry timeout exceeded",
        )
        notices = _notices(
            rng, lines, ends.filter(pl.col("expired") | pl.col("bounced")), window, self.new_ids, n
        )
        # ... 1tGxYz-00AbCd-Ef Completed
        lines.add(ends, pl.col("last_ts") + 3, 90_002, "{eid} Completed")
        k = inb.height
        delivered_in = _inbound(rng, lines, inb, window, self.new_ids, first=2 * n)

        table = NOISE["exim"]
        extra = noise(rng, n_noise, window, table).with_columns(
            rng.ints(n_noise, 1, 4).alias("n"),
            _ids(n_noise, window.index, pl.col("ts"), self.new_ids, first=2 * n + k).alias("xid"),
        )
        rejects = add_noise(lines, extra, table, {i: line.text for i, line in enumerate(table)})

        exp = att.filter(pl.col("a") == 0).join(
            msgs.filter(pl.col("expired")).select("msg"), on="msg", maintain_order="left"
        )
        events = pl.concat(
            [
                attempt_events(att, TEXT_DSN),
                event_rows(exp, "expired"),
                mailbox_events(notices),
                mailbox_events(delivered_in),
                rejects,
            ]
        )
        return Segment(lines.frame(), events, n)


def _lines_per_message(msgs: pl.DataFrame, att: pl.DataFrame) -> pl.Series:
    """How many lines each message writes: arrival, one per attempt (two where the connection
    failed), expiry, completion, and its bounce message's arrival, delivery and completion."""
    per_msg = (
        att.with_columns(per_reply(_CONNECT_FAILURE, pl.Boolean).alias("extra"))
        .group_by("msg")
        .agg((pl.len() + pl.col("extra").sum()).alias("att_lines"))
    )
    return (
        msgs.join(per_msg, on="msg", maintain_order="left")
        .sort("msg")
        .select(
            2
            + pl.col("att_lines")
            + pl.col("expired").cast(pl.Int64)
            + (pl.col("expired") | pl.col("bounced")).cast(pl.Int64) * 3
        )
        .to_series()
    )


def _inbound_lines(inb: pl.DataFrame) -> pl.Series:
    """How many lines each inbound message writes: arrival, delivery, completion, and a
    deferral before the delivery where there is one."""
    return (
        inbound_kind(inb, _SENT_TO_SENDER, _DEFER_TO_SENDER)
        .select(3 + pl.col("defer").is_not_null().cast(pl.Int64))
        .to_series()
    )


def _ids(n: int, segment: int, t0: pl.Expr, new_ids: bool, *, first: int = 0) -> pl.Expr:
    """Message ids: base-62 time, a unique "pid", base-62 fraction of the second. `first`: the
    number of the first row (ids of rows numbered apart never meet).

    Old format 1tGxYz-00AbCd-Ef (6-6-2); Exim 4.97's new format 1tGxYz-0000000AbCd-EfGh (6-11-4).
    """
    seconds = (t0 // US).cast(pl.UInt64)
    rows = pl.int_range(first, first + n, dtype=pl.Int64)
    unique = (rows * 387_413 + 91_111) % (1 << 19) + 3_000
    unique = (unique + segment * (1 << 19)).cast(pl.UInt64)
    micros = (t0 % US).cast(pl.UInt64)
    if new_ids:
        return pl.concat_str(
            encode(seconds, BASE62, 6),
            pl.lit("-"),
            encode(unique, BASE62, 11),
            pl.lit("-"),
            encode(micros, BASE62, 4),
        )
    return pl.concat_str(
        encode(seconds, BASE62, 6),
        pl.lit("-"),
        encode(unique, BASE62, 6),
        pl.lit("-"),
        encode(micros * 3844 // US, BASE62, 2),
    )


def _text(reply: Reply) -> str:
    """The line (after the stamp) of an attempt that gets `reply`."""
    body = format_reply(reply, "exim")
    if reply.local and reply.status == "deferred":
        errno = _ERRNO.get(reply.id, "-1")
        # 2026-11-27 06:25:01 1tGxYz-00AbCd-Ef == x@umbrella.example R=dnslookup
        #     T=remote_smtp defer (110): Connection timed out
        return f"{{eid}} == {{rcpt}} {_ROUTE} defer ({errno}): {body}"
    if reply.local:
        # ... 1tGxYz-00AbCd-Ef ** x@gmial.com: Unrouteable address
        return f"{{eid}} ** {{rcpt}}: {body}"
    if reply.status == "sent":
        # ... => x@gmail.com R=dnslookup T=remote_smtp H=gmail-smtp-in.l.google.com
        #     [142.250.27.26] X=TLS1.3:TLS_AES_256_GCM_SHA384:256 CV=yes C="250 2.0.0 OK ..."
        return f'{{eid}} {{arrow}} {{rcpt}} {_ROUTE} H={{mx}} [{{mxip}}] {_TLS} CV=yes C="{body}"'
    stage, errno = _STAGE[reply.stage]
    said = f"SMTP error from remote mail server after {stage}: {body}"
    if reply.status == "deferred":
        # ... == x@gmail.com R=dnslookup T=remote_smtp defer (-44) H=gmail-smtp-in...
        #     [142.250.27.26]: SMTP error from remote mail server after RCPT TO:<x>: 452-...
        return f"{{eid}} == {{rcpt}} {_ROUTE} defer ({errno}) H={{mx}} [{{mxip}}]: {said}"
    # ... ** x@gmail.com R=dnslookup T=remote_smtp H=... [...] X=...: SMTP error ...
    return f"{{eid}} ** {{rcpt}} {_ROUTE} H={{mx}} [{{mxip}}] {_TLS} CV=yes: {said}"


def _delivery_lines(arrow: str) -> dict[int, str]:
    """Each of _TEXTS as an Exim delivery (`=>`) or deferral (`==`) line (a template per index)."""
    texts: dict[int, str] = {}
    for i, text in enumerate(_TEXTS):
        tail = f" {text.text}" if text.text else ""
        texts[i] = f"{{id}} {arrow} {{rcpt}} {text.route}{tail}"
    return texts


def _names() -> dict[int, str]:
    return {i: text.id for i, text in enumerate(_TEXTS)}


def _notices(
    rng: Rng, lines: Lines, ends: pl.DataFrame, window: Window, new_ids: bool, first: int
) -> pl.DataFrame:
    """Each bounce message delivered into its sender's mailbox (our own), and the truth rows:
    Exim writes it (`<= <> R=<parent id> U=Debian-exim P=local`) before the parent's
    `Completed`, then delivers it and completes it. `first` numbers the new ids apart."""
    n = ends.height
    notes = ends.with_columns(
        (pl.col("last_ts") + 2).alias("born"),
        pl.lit(pl.Series(_SENT_TO_SENDER, dtype=pl.Int64)).gather(pl.col("sender_i")).alias("tpl"),
        rng.token(n, 22, BASE62).alias("session"),
        (pl.col("size").clip(upper_bound=100_000) + 2_600).alias("nsize"),
        pl.col("sender").alias("rcpt"),
    ).with_columns(_ids(n, window.index, pl.col("born"), new_ids, first=first).alias("id"))
    # ... 1tGxZa-00AbCe-Gh <= <> R=1tGxYz-00AbCd-Ef U=Debian-exim P=local S=104873
    lines.add(notes, pl.col("born"), 90_001, "{id} <= <> R={eid} U=Debian-exim P=local S={nsize}")
    # ... 1tGxZa-00AbCe-Gh => jana.kraus@example.com R=dovecot_user T=dovecot_lmtp C="250 ..."
    lines.add(
        render_by_template(notes, _delivery_lines("=>"), "text"),
        pl.col("born") + 200_000,
        90_003,
        None,
    )
    # ... 1tGxZa-00AbCe-Gh Completed
    lines.add(notes, pl.col("born") + 200_001, 90_004, "{id} Completed")
    return notes.select(
        pl.col("sender_domain").alias("domain"),
        pl.col("tpl").replace_strict(_names()).alias("template"),
        pl.lit("inbound").alias("direction"),
    )


def _inbound(
    rng: Rng, lines: Lines, inb: pl.DataFrame, window: Window, new_ids: bool, *, first: int
) -> pl.DataFrame:
    """Other servers' messages delivered into our mailboxes, and their truth rows: arrival,
    a deferral where the mailbox is full (delivered at a later queue run), delivery,
    completion. `first` numbers the messages' ids apart from the others'."""
    inb = inbound_kind(inb, _SENT_TO_SENDER, _DEFER_TO_SENDER)
    n = inb.height
    inb = inb.with_columns(
        _ids(n, window.index, pl.col("t0"), new_ids, first=first).alias("id"),
        (pl.col("t0") + 50_000 + (rng.floats(n) * 300_000).cast(pl.Int64)).alias("first_ts"),
    ).with_columns(
        pl.when(pl.col("defer").is_null())
        .then(pl.col("first_ts"))
        .otherwise(pl.col("t0") + pl.col("retry_us"))
        .alias("ts")
    )
    # ... 1tGxYz-00AbCd-Ef <= lena.jensen@example.net H=mail.example.net [198.51.100.25]
    #     P=esmtps X=TLS1.3:TLS_AES_256_GCM_SHA384:256 CV=no S=28413 id=...@example.net
    lines.add(
        inb,
        pl.col("t0"),
        0,
        f"{{id}} <= {{xsender}} H={{client}} [{{cip}}] P=esmtps {_TLS} CV=no S={{size}} id={{mid}}",
    )
    deferred = inb.filter(pl.col("defer").is_not_null()).with_columns(pl.col("defer").alias("tpl"))
    # ... 1tGxYz-00AbCd-Ef == alerts@status.example.com R=localuser T=local_delivery defer (-22):
    #     mailbox is full (MTA-imposed quota exceeded while writing to /var/mail/alerts)
    lines.add(
        render_by_template(deferred, _delivery_lines("=="), "text"), pl.col("first_ts"), 1, None
    )
    sent = inb.with_columns(pl.col("sent").alias("tpl"))
    # ... 1tGxYz-00AbCd-Ef => newsletter@news.example.com R=dovecot_user T=dovecot_lmtp
    #     C="250 2.0.0 <newsletter@news.example.com> 8N2bM0VKR2m2WAAA0J78UA Saved"
    lines.add(render_by_template(sent, _delivery_lines("=>"), "text"), pl.col("ts"), 2, None)
    # ... 1tGxYz-00AbCd-Ef Completed
    lines.add(inb, pl.col("ts") + 1, 3, "{id} Completed")
    return pl.concat(
        [
            frame.select(
                pl.col("rdomain").alias("domain"),
                pl.col("tpl").replace_strict(_names()).alias("template"),
                pl.lit("inbound").alias("direction"),
            )
            for frame in (deferred, sent)
        ]
    )
