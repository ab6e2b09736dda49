"""A seeded, deterministic generator of realistic mail logs and ESP events, with the true counts.

Used by end-to-end tests (parse a generated file, compare with its `Truth`) and by benchmarks
(1M and 5M lines). Everything is built column-wise with polars: random numbers come from a
counter-based generator (splitmix64 over the row index, written as polars integer arithmetic),
so the same seed gives the same bytes on every machine, and no Python code runs per line.

Example: ``python -m bounce_analyzer.generate postfix --lines 1000000 --seed 1 -o /tmp/x.log
--truth /tmp/x.truth.json``
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

import polars as pl

from bounce_analyzer.schema import EVENTS

__all__ = [
    "Truth",
    "generate_exim",
    "generate_mailgun",
    "generate_postfix",
    "generate_sendgrid",
    "main",
]

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_US = 1_000_000
#: Rows rendered at once: bounds memory (a segment is written before the next is built).
_SEGMENT = 400_000
#: The sending server's public address (TEST-NET-3) and names.
_OUR_IP = "203.0.113.25"
_HOST = "mx1"
#: A pool of delivery agent process ids.
_PIDS = tuple(str((i * 7_919 + 3_001) % 60_000 + 2_000) for i in range(24))


# --------------------------------------------------------------------------------------------
# Random numbers: splitmix64 of (seed, stream, row), as polars expressions.


def _splitmix_int(x: int) -> int:
    x = (x + _GOLDEN) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def _splitmix(x: pl.Expr) -> pl.Expr:
    x = x + pl.lit(_GOLDEN, pl.UInt64)
    x = x.xor(x // (1 << 30)) * pl.lit(0xBF58476D1CE4E5B9, pl.UInt64)
    x = x.xor(x // (1 << 27)) * pl.lit(0x94D049BB133111EB, pl.UInt64)
    return x.xor(x // (1 << 31))


class _Rng:
    """Independent streams of random columns; each call draws a new stream."""

    def __init__(self, seed: int, segment: int = 0) -> None:
        self._key = _splitmix_int(_splitmix_int(seed & _MASK) ^ (segment * 0x632BE59BD9B4E019))
        self._stream = 0

    def u64(self, n: int) -> pl.Expr:
        """`n` random UInt64 values (an expression of length n)."""
        self._stream += 1
        base = _splitmix_int(self._key ^ (self._stream * 0xD1B54A32D192ED03 & _MASK))
        values = pl.select(_splitmix(pl.int_range(0, n, dtype=pl.UInt64) + pl.lit(base, pl.UInt64)))
        # Computed once, here: expressions that use the values many times stay small.
        return pl.lit(values.to_series().alias("u64"))

    def floats(self, n: int) -> pl.Expr:
        """Uniform floats in [0, 1)."""
        return (self.u64(n) // (1 << 11)).cast(pl.Float64) / float(1 << 53)

    def ints(self, n: int, low: int, high: int) -> pl.Expr:
        """Uniform integers in [low, high)."""
        return ((self.u64(n) // (1 << 11)) % (high - low)).cast(pl.Int64) + low

    def choice(self, n: int, weights: Sequence[float]) -> pl.Expr:
        """Indices drawn with the given weights."""
        total = 0.0
        cumulative = []
        for w in weights:
            total += w
            cumulative.append(total)
        edges = pl.Series(cumulative[:-1], dtype=pl.Float64)
        return pl.lit(edges).search_sorted(self.floats(n) * total, side="right").cast(pl.Int64)

    def token(self, n: int, width: int, alphabet: str) -> pl.Expr:
        """Random strings of `width` characters from `alphabet`."""
        parts: list[pl.Expr] = []
        base = len(alphabet)
        per_draw = 1
        while base ** (per_draw + 1) < (1 << 53):
            per_draw += 1
        while width > 0:
            take = min(width, per_draw)
            parts.append(_encode(self.u64(n) // (1 << 11), alphabet, take))
            width -= take
        return pl.concat_str(parts)


def _encode(value: pl.Expr, alphabet: str, width: int) -> pl.Expr:
    """`value` written in base len(alphabet), `width` digits, most significant first."""
    base = len(alphabet)
    table = pl.lit(pl.Series(list(alphabet)))
    digits = [table.gather((value // (base**i) % base).cast(pl.Int64)) for i in range(width)]
    return pl.concat_str(digits[::-1])


_HEX = "0123456789ABCDEF"
_hex = "0123456789abcdef"
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_ALNUM = "0123456789abcdefghijklmnopqrstuvwxyz"


def _pick(values: Sequence[str], index: pl.Expr) -> pl.Expr:
    return pl.lit(pl.Series(list(values), dtype=pl.String)).gather(index)


def _render(template: str) -> pl.Expr:
    """A concat_str expression for a template with `{column}` placeholders (`{{` is a brace)."""
    parts: list[pl.Expr] = []
    literal = ""
    i = 0
    while i < len(template):
        char = template[i]
        if char in "{}" and template[i : i + 2] in ("{{", "}}"):
            literal += char
            i += 2
        elif char == "{":
            close_at = template.index("}", i)
            if literal:
                parts.append(pl.lit(literal))
                literal = ""
            parts.append(pl.col(template[i + 1 : close_at]).cast(pl.String))
            i = close_at + 1
        else:
            literal += char
            i += 1
    if literal:
        parts.append(pl.lit(literal))
    return pl.concat_str(parts) if parts else pl.lit("")


def _seconds_text(seconds: pl.Expr) -> pl.Expr:
    """Postfix's delay style: 0.26, 1.7, 43, 0."""
    return (
        pl.when(seconds < 0.005)
        .then(pl.lit("0"))
        .when(seconds < 1)
        .then(seconds.round(2).cast(pl.String))
        .when(seconds < 10)
        .then(seconds.round(1).cast(pl.String))
        .otherwise(seconds.round(0).cast(pl.Int64).cast(pl.String))
    )


# --------------------------------------------------------------------------------------------
# What the world says: receiving domains, their MX hosts, and their replies.


@dataclass(frozen=True)
class _Domain:
    name: str
    weight: float
    provider: str
    mx: tuple[str, ...]
    ip_prefix: str  # two octets


_DOMAINS: tuple[_Domain, ...] = (
    _Domain(
        "gmail.com",
        30,
        "google",
        (
            "gmail-smtp-in.l.google.com",
            "alt1.gmail-smtp-in.l.google.com",
            "alt2.gmail-smtp-in.l.google.com",
        ),
        "142.250",
    ),
    _Domain("googlemail.com", 1, "google", ("gmail-smtp-in.l.google.com",), "74.125"),
    _Domain(
        "globex.example", 2, "google", ("aspmx.l.google.com", "alt1.aspmx.l.google.com"), "172.253"
    ),
    _Domain("outlook.com", 8, "microsoft", ("outlook-com.olc.protection.outlook.com",), "52.101"),
    _Domain("hotmail.com", 7, "microsoft", ("hotmail-com.olc.protection.outlook.com",), "52.101"),
    _Domain("live.com", 2, "microsoft", ("live-com.olc.protection.outlook.com",), "52.101"),
    _Domain(
        "contoso.com", 2, "microsoft365", ("contoso-com.mail.protection.outlook.com",), "52.101"
    ),
    _Domain(
        "fabrikam.com", 2, "microsoft365", ("fabrikam-com.mail.protection.outlook.com",), "104.47"
    ),
    _Domain(
        "yahoo.com",
        8,
        "yahoo",
        ("mta5.am0.yahoodns.net", "mta6.am0.yahoodns.net", "mta7.am0.yahoodns.net"),
        "67.195",
    ),
    _Domain("aol.com", 1, "yahoo", ("mx-aol.mail.gm0.yahoodns.net",), "67.195"),
    _Domain("icloud.com", 5, "apple", ("mx01.mail.icloud.com", "mx02.mail.icloud.com"), "17.57"),
    _Domain("me.com", 1, "apple", ("mx01.mail.icloud.com",), "17.57"),
    _Domain("gmx.de", 3, "gmx", ("mx00.gmx.net", "mx01.gmx.net"), "212.227"),
    _Domain("web.de", 3, "gmx", ("mx-ha03.web.de", "mx-ha02.web.de"), "212.227"),
    _Domain("mail.ru", 2, "mailru", ("mxs.mail.ru",), "94.100"),
    _Domain("yandex.ru", 2, "yandex", ("mx.yandex.ru",), "77.88"),
    _Domain("initech.example", 1, "proofpoint", ("mx0a-00234501.pphosted.com",), "148.163"),
    _Domain("umbrella.example", 1.5, "generic", ("mail.umbrella.example",), "198.51"),
    _Domain("example.org", 1, "generic", ("mx1.example.org", "mx2.example.org"), "198.51"),
    _Domain("example.net", 1, "generic", ("mail.example.net",), "198.51"),
    _Domain("gmial.com", 0.3, "nxdomain", ("gmial.com",), "0.0"),
    _Domain("hotmial.com", 0.2, "nxdomain", ("hotmial.com",), "0.0"),
    _Domain("parked.example", 0.2, "nullmx", ("parked.example",), "0.0"),
)


@dataclass(frozen=True)
class _Reply:
    """One reply text (or one of the MTA's own failure texts) with its facts."""

    id: str
    status: str  # "sent" | "deferred" | "bounced"
    code: int | None
    dsn: str  # Postfix's dsn= (the enhanced status code)
    lines: tuple[str, ...]  # reply lines without the "550-5.1.1 " prefix
    category: str | None  # the obvious category, None where it is not obvious
    stage: str = "RCPT TO"  # RCPT TO | MAIL FROM | end of DATA | greeting
    enhanced_in_text: bool = True
    weight: float = 1.0
    local: bool = False  # the MTA's own words: no remote reply
    remote_relay: bool = True  # a relay=host[ip]:25 is known (False: relay=none)
    exim: str | None = None  # Exim's words for a local failure


_G = "https://support.google.com/mail"
_MS_TAIL = "[{msid}.eurprd04.prod.outlook.com {mstime} {mshex}]"

_REPLIES_BY_PROVIDER: dict[str, tuple[_Reply, ...]] = {
    "google": (
        _Reply("google.sent", "sent", 250, "2.0.0", ("OK  {unix} {gid} - gsmtp",), None),
        _Reply(
            "google.user_unknown",
            "bounced",
            550,
            "5.1.1",
            (
                "The email account that you tried to reach does not exist. Please try",
                "double-checking the recipient's email address for typos or",
                "unnecessary spaces. For more information, go to",
                f" {_G}/?p=NoSuchUser {{gid}} - gsmtp",
            ),
            "user_unknown",
            weight=50,
        ),
        _Reply(
            "google.disabled",
            "bounced",
            550,
            "5.2.1",
            (
                "The email account that you tried to reach is disabled. Learn more at",
                f" {_G}/?p=DisabledUser {{gid}} - gsmtp",
            ),
            "suspend",
            weight=8,
        ),
        _Reply(
            "google.over_quota_inactive",
            "bounced",
            552,
            "5.2.2",
            (
                "The recipient's inbox is out of storage space and inactive. Please direct",
                "the recipient to",
                f" {_G}/?p=OverQuotaPerm {{gid}} - gsmtp",
            ),
            "mailbox_full",
            weight=5,
        ),
        _Reply(
            "google.unauthenticated",
            "bounced",
            550,
            "5.7.26",
            (
                "This mail has been blocked because the sender is unauthenticated.",
                "Gmail requires all senders to authenticate with either SPF or DKIM.",
                "",
                " Authentication results:",
                " DKIM = did not pass",
                " SPF [{sender_domain}] with ip: [{ip}] = did not pass",
                "",
                " For instructions on setting up authentication, go to",
                f" {_G}/answer/81126#authentication {{gid}} - gsmtp",
            ),
            "auth_failure",
            stage="end of DATA",
            weight=5,
        ),
        _Reply(
            "google.dmarc",
            "bounced",
            550,
            "5.7.26",
            (
                "Unauthenticated email from {sender_domain} is not accepted due to",
                "domain's DMARC policy. Please contact the administrator of",
                "{sender_domain} domain if this was a legitimate mail. To learn about the",
                "DMARC initiative, go to",
                f" {_G}/?p=DmarcRejection {{gid}} - gsmtp",
            ),
            "auth_failure",
            stage="end of DATA",
            weight=2,
        ),
        _Reply(
            "google.spam",
            "bounced",
            550,
            "5.7.1",
            (
                "[{ip}] Our system has detected that this message is",
                "likely unsolicited mail. To reduce the amount of spam sent to Gmail,",
                "this message has been blocked. For more information, go to",
                f" {_G}/?p=UnsolicitedMessageError {{gid}} - gsmtp",
            ),
            "spam_detected",
            stage="end of DATA",
            weight=5,
        ),
        _Reply(
            "google.low_reputation",
            "bounced",
            550,
            "5.7.1",
            (
                "[{ip}] Gmail has detected that this message",
                "is likely suspicious due to the very low reputation of the sending",
                "domain. To best protect our users from spam, the message has been",
                "blocked. For more information, go to",
                f" {_G}/answer/188131 {{gid}} - gsmtp",
            ),
            "bad_reputation",
            stage="end of DATA",
            weight=3,
        ),
        _Reply(
            "google.policy",
            "bounced",
            550,
            "5.7.1",
            (
                "The user or domain that you are sending to (or from) has a policy that",
                "prohibited the mail that you sent. Please contact your domain",
                "administrator for further details. For more information, go to",
                " https://support.google.com/a/answer/172179 {gid} - gsmtp",
            ),
            "policy_violation",
            stage="end of DATA",
            weight=2,
        ),
        _Reply(
            "google.too_large",
            "bounced",
            552,
            "5.3.4",
            (
                "Your message exceeded Google's message size limits. For more",
                "information, go to",
                f" {_G}/?p=MaxSizeError {{gid}} - gsmtp",
            ),
            "email_too_large",
            stage="end of DATA",
            weight=2,
        ),
        _Reply(
            "google.no_ptr",
            "bounced",
            550,
            "5.7.25",
            (
                "[{ip}] The IP address sending this message does not",
                "have a PTR record setup, or the corresponding forward DNS entry does not",
                "point to the sending IP. As a policy, Gmail does not accept messages",
                "from IPs with missing PTR records. For more information, go to",
                f" {_G}/answer/81126#ip-practices {{gid}} - gsmtp",
            ),
            "require_ptr",
            stage="MAIL FROM",
            weight=1,
        ),
        _Reply(
            "google.over_quota",
            "deferred",
            452,
            "4.2.2",
            (
                "The recipient's inbox is out of storage space. Please direct the",
                "recipient to",
                f" {_G}/?p=OverQuotaTemp {{gid}} - gsmtp",
            ),
            "mailbox_full",
            weight=10,
        ),
        _Reply(
            "google.rate_limited",
            "deferred",
            421,
            "4.7.28",
            (
                "[{ip}      15] Our system has detected an unusual rate of",
                "unsolicited mail originating from your IP address. To protect our",
                "users from spam, mail sent from your IP address has been temporarily",
                "rate limited. For more information, go to",
                f" {_G}/?p=UnsolicitedRateLimitError to",
                "review our Bulk Email Senders Guidelines. {gid} - gsmtp",
            ),
            "rate_limited",
            stage="end of DATA",
            weight=8,
        ),
        _Reply(
            "google.receiving_rate",
            "deferred",
            450,
            "4.2.1",
            (
                "The user you are trying to contact is receiving mail at a rate that",
                "prevents additional messages from being delivered. Please resend your",
                "message at a later time. If the user is able to receive mail at that",
                "time, your message will be delivered. For more information, go to",
                f" {_G}/?p=ReceivingRate {{gid}} - gsmtp",
            ),
            "rate_limited",
            weight=4,
        ),
    ),
    "microsoft": (
        _Reply(
            "microsoft.sent",
            "sent",
            250,
            "2.6.0",
            (
                "<{mid}> [InternalId={internal_id}, Hostname={msid}.eurprd04.prod.outlook.com]"
                " {size} bytes in 0.{n}, {n2}.{n} KB/sec Queued mail for delivery -> 250 2.1.5",
            ),
            None,
        ),
        _Reply(
            "microsoft.mailbox_unavailable",
            "bounced",
            550,
            "5.5.0",
            (f"Requested action not taken: mailbox unavailable (S2017062302). {_MS_TAIL}",),
            "user_unknown",
            weight=40,
        ),
        _Reply(
            "microsoft.s3150",
            "bounced",
            550,
            "5.7.1",
            (
                "Unfortunately, messages from [{ip}] weren't sent. Please contact your Internet"
                " service provider since part of their network is on our block list (S3150)."
                " You can also refer your provider to"
                f" http://mail.live.com/mail/troubleshooting.aspx#errors. {_MS_TAIL}",
            ),
            "blocked",
            stage="MAIL FROM",
            weight=8,
        ),
        _Reply(
            "microsoft.auth_fail",
            "bounced",
            550,
            "5.7.515",
            (
                "Access denied, sending domain [{sender_domain_upper}] does not meet the required"
                " authentication level. The sender's domain in the 5322.From address doesn't"
                " meet the authentication requirements defined for the sender. To learn more"
                " about this error code, visit https://aka.ms/AuthFail",
            ),
            "auth_failure",
            stage="end of DATA",
            weight=4,
        ),
        _Reply(
            "microsoft.ip_reputation",
            "deferred",
            451,
            "4.7.650",
            (
                "The mail server [{ip}] has been temporarily rate limited due to IP reputation."
                " For e-mail delivery information, see https://postmaster.live.com (S775)"
                f" {_MS_TAIL}",
            ),
            "bad_reputation",
            stage="MAIL FROM",
            weight=10,
        ),
        _Reply(
            "microsoft.server_busy",
            "deferred",
            451,
            "4.7.500",
            (f"Server busy. Please try again later from [{{ip}}]. (S77714) {_MS_TAIL}",),
            "rate_limited",
            stage="MAIL FROM",
            weight=4,
        ),
    ),
    "microsoft365": (
        _Reply(
            "microsoft365.sent",
            "sent",
            250,
            "2.6.0",
            (
                "<{mid}> [InternalId={internal_id}, Hostname={msid}.eurprd04.prod.outlook.com]"
                " {size} bytes in 0.{n}, {n2}.{n} KB/sec Queued mail for delivery",
            ),
            None,
        ),
        _Reply(
            "microsoft365.access_denied",
            "bounced",
            550,
            "5.4.1",
            (
                "Recipient address rejected: Access denied. AS(201806281)"
                " [{eop}.eop-EUR03.prod.protection.outlook.com]",
            ),
            "user_unknown",
            weight=30,
        ),
        _Reply(
            "microsoft365.banned_ip",
            "bounced",
            550,
            "5.7.606",
            (
                "Access denied, banned sending IP [{ip}]. To request removal from this list"
                " please visit https://sender.office.com/ and follow the directions. For more"
                " information please go to  http://go.microsoft.com/fwlink/?LinkID=526655"
                " AS(1430) [{eop}.eop-EUR03.prod.protection.outlook.com]",
            ),
            "blocked",
            stage="MAIL FROM",
            weight=4,
        ),
        _Reply(
            "microsoft365.relay_denied",
            "bounced",
            550,
            "5.7.64",
            (
                "TenantAttribution; Relay Access Denied"
                " [{eop}.eop-EUR03.prod.protection.outlook.com]",
            ),
            "no_relaying",
            weight=2,
        ),
    ),
    "yahoo": (
        _Reply("yahoo.sent", "sent", 250, "2.0.0", ("ok dirdel",), None, enhanced_in_text=False),
        _Reply(
            "yahoo.no_account",
            "bounced",
            554,
            "5.0.0",
            (
                "delivery error: dd This user doesn't have a {domain} account ({rcpt}) [0]"
                " - mta{yid}.mail.{ycl}.yahoo.com",
            ),
            "user_unknown",
            stage="end of DATA",
            enhanced_in_text=False,
            weight=30,
        ),
        _Reply(
            "yahoo.disabled",
            "bounced",
            554,
            "5.0.0",
            (
                "delivery error: dd Sorry your message to {rcpt} cannot be delivered. This"
                " mailbox is disabled (554.30). - mta{yid}.mail.{ycl}.yahoo.com",
            ),
            "suspend",
            stage="end of DATA",
            enhanced_in_text=False,
            weight=6,
        ),
        _Reply(
            "yahoo.tss09",
            "bounced",
            553,
            "5.7.2",
            (
                "[TSS09] All messages from {ip} will be permanently deferred; Retrying will NOT"
                " succeed. See https://postmaster.yahooinc.com/error-codes",
            ),
            "blocked",
            stage="MAIL FROM",
            weight=3,
        ),
        _Reply(
            "yahoo.unauthenticated",
            "bounced",
            550,
            "5.7.9",
            (
                "This mail has been blocked because the sender is unauthenticated. Yahoo"
                " requires all senders to authenticate with either SPF or DKIM.",
            ),
            "auth_failure",
            stage="end of DATA",
            weight=3,
        ),
        _Reply(
            "yahoo.tss04",
            "deferred",
            421,
            "4.7.0",
            (
                "[TSS04] Messages from {ip} temporarily deferred due to unexpected volume or"
                " user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
            ),
            None,  # volume or complaints: rate or reputation, not obvious
            stage="MAIL FROM",
            weight=10,
        ),
    ),
    "apple": (
        _Reply("apple.sent", "sent", 250, "2.0.0", ("Ok: queued as {qid2}",), None),
        _Reply(
            "apple.user_unknown",
            "bounced",
            550,
            "5.1.1",
            ("<{rcpt}>: user does not exist",),
            "user_unknown",
            weight=20,
        ),
        _Reply(
            "apple.over_quota",
            "bounced",
            552,
            "5.2.2",
            ("<{rcpt}>: user is over quota",),
            "mailbox_full",
            weight=5,
        ),
        _Reply(
            "apple.no_longer",
            "bounced",
            550,
            "5.1.6",
            ("recipient no longer on server: {rcpt}",),
            "has_moved",
            weight=3,
        ),
        _Reply(
            "apple.local_policy",
            "bounced",
            554,
            "5.7.1",
            (
                "[CS01] Message rejected due to local policy. Please visit"
                " https://support.apple.com/en-us/HT204137",
            ),
            "policy_violation",
            stage="end of DATA",
            weight=3,
        ),
    ),
    "gmx": (
        _Reply(
            "gmx.sent",
            "sent",
            250,
            "2.0.0",
            ("Requested mail action okay, completed: id={gmxid}",),
            None,
            enhanced_in_text=False,
        ),
        _Reply(
            "gmx.mailbox_unavailable",
            "bounced",
            550,
            "5.0.0",
            ("Requested action not taken: mailbox unavailable",),
            "user_unknown",
            enhanced_in_text=False,
            weight=20,
        ),
        _Reply(
            "gmx.block_listed",
            "bounced",
            554,
            "5.0.0",
            (
                "{domain} ({gmxmx}) Nemesis ESMTP Service not available",
                "No SMTP service",
                "IP address is block listed.",
                "For explanation visit https://www.gmx.net/mail/senderguidelines?c=bl",
            ),
            "blocked",
            stage="greeting",
            enhanced_in_text=False,
            weight=5,
        ),
        _Reply(
            "gmx.mail_bomb",
            "deferred",
            450,
            "4.3.2",
            (
                "Too many mails (mail bomb), try again in 1 hour(s) {n2} minute(s) and see"
                " ( http://portal.gmx.net/serverrules ) {{mx-eu0{n1}}}",
            ),
            "rate_limited",
            weight=5,
        ),
    ),
    "mailru": (
        _Reply(
            "mailru.sent", "sent", 250, "2.0.0", ("OK id={eximid}",), None, enhanced_in_text=False
        ),
        _Reply(
            "mailru.user_not_found",
            "bounced",
            550,
            "5.0.0",
            (
                "Message was not accepted -- invalid mailbox.  Local mailbox {rcpt} is"
                " unavailable: user not found",
            ),
            "user_unknown",
            stage="end of DATA",
            enhanced_in_text=False,
            weight=15,
        ),
        _Reply(
            "mailru.spam",
            "bounced",
            550,
            "5.0.0",
            (
                "spam message rejected. Please visit https://help.mail.ru/notspam-support/id?c="
                "{mrid} or  report details to abuse@corp.mail.ru. Error code: {mrhex}. ID:"
                " {mrhex2}.",
            ),
            "spam_detected",
            stage="end of DATA",
            enhanced_in_text=False,
            weight=4,
        ),
    ),
    "yandex": (
        _Reply(
            "yandex.sent",
            "sent",
            250,
            "2.0.0",
            (
                "Ok: queued on mail-nwsmtp-mxfront-production-main-{n1}.vla.yp-c.yandex.net"
                " as {yxid}",
            ),
            None,
        ),
        _Reply(
            "yandex.no_such_user",
            "bounced",
            550,
            "5.7.1",
            ("No such user!",),
            "user_unknown",
            weight=15,
        ),
        _Reply(
            "yandex.spam",
            "bounced",
            554,
            "5.7.1",
            ("[2] Message rejected under suspicion of SPAM; https://ya.cc/1IrBc {yxid}",),
            "spam_detected",
            stage="end of DATA",
            weight=4,
        ),
        _Reply(
            "yandex.unavailable",
            "deferred",
            451,
            "4.7.1",
            ("Sorry, the service is currently unavailable. Please come back later. {yxid}",),
            None,
            stage="end of DATA",
            weight=5,
        ),
    ),
    "proofpoint": (
        _Reply(
            "proofpoint.sent",
            "sent",
            250,
            "2.0.0",
            ("{ppid} Message accepted for delivery",),
            None,
        ),
        _Reply(
            "proofpoint.user_unknown",
            "bounced",
            550,
            "5.1.1",
            ("User Unknown",),
            "user_unknown",
            weight=10,
        ),
        _Reply(
            "proofpoint.blocked",
            "bounced",
            554,
            "5.7.1",
            ("Blocked - see https://ipcheck.proofpoint.com/?ip={ip}",),
            "blocked",
            stage="MAIL FROM",
            weight=5,
        ),
    ),
    "generic": (
        _Reply("generic.sent", "sent", 250, "2.0.0", ("Ok: queued as {qid2}",), None),
        _Reply(
            "generic.user_unknown",
            "bounced",
            550,
            "5.1.1",
            ("<{rcpt}>: Recipient address rejected: User unknown in virtual mailbox table",),
            "user_unknown",
            weight=15,
        ),
        _Reply(
            "generic.mailbox_full",
            "bounced",
            552,
            "5.2.2",
            ("<{rcpt}>: Recipient address rejected: Mailbox full",),
            "mailbox_full",
            weight=3,
        ),
        _Reply(
            "generic.too_large",
            "bounced",
            552,
            "5.3.4",
            ("Message size exceeds fixed limit",),
            "email_too_large",
            stage="end of DATA",
            weight=3,
        ),
        _Reply(
            "generic.spamhaus",
            "bounced",
            554,
            "5.7.1",
            (
                "Service unavailable; Client host [{ip}] blocked using zen.spamhaus.org;"
                " https://www.spamhaus.org/query/ip/{ip}",
            ),
            "blocked",
            weight=4,
        ),
        _Reply(
            "generic.relay_denied",
            "bounced",
            554,
            "5.7.1",
            ("<{rcpt}>: Relay access denied",),
            "no_relaying",
            weight=2,
        ),
        _Reply(
            "generic.sender_rejected",
            "bounced",
            550,
            "5.7.1",
            ("<{sender}>: Sender address rejected: Access denied",),
            "rejected",
            weight=2,
        ),
        _Reply(
            "generic.virus",
            "bounced",
            554,
            "5.7.0",
            ("Reject, id={amid} - INFECTED: Win.Test.EICAR_HDB-1",),
            "virus_detected",
            stage="end of DATA",
            weight=1,
        ),
        _Reply(
            "generic.filtered",
            "bounced",
            550,
            "5.2.0",
            ("Message Filtered",),
            "filtered",
            stage="end of DATA",
            weight=1,
        ),
        _Reply(
            "generic.starttls_required",
            "bounced",
            530,
            "5.7.0",
            ("Must issue a STARTTLS command first",),
            "failed_starttls",
            stage="MAIL FROM",
            weight=1,
        ),
        _Reply(
            "generic.greylisted",
            "deferred",
            450,
            "4.2.0",
            (
                "<{rcpt}>: Recipient address rejected: Greylisted, see"
                " http://postgrey.schweikert.ch/help/{domain}.html",
            ),
            None,
            weight=6,
        ),
        _Reply(
            "generic.greylisting",
            "deferred",
            451,
            "4.7.1",
            ("Greylisting in action, please come back later",),
            None,
            weight=3,
        ),
        _Reply(
            "generic.no_hostname",
            "deferred",
            450,
            "4.7.1",
            ("Client host rejected: cannot find your hostname, [{ip}]",),
            "require_ptr",
            weight=2,
        ),
        _Reply(
            "generic.quota",
            "deferred",
            452,
            "4.2.2",
            ("<{rcpt}>: Quota exceeded (mailbox for user is full)",),
            "mailbox_full",
            weight=2,
        ),
        _Reply(
            "local.timeout",
            "deferred",
            None,
            "4.4.1",
            ("connect to {mx}[{mxip}]:25: Connection timed out",),
            "network_error",
            local=True,
            remote_relay=False,
            weight=6,
            exim="Connection timed out",
        ),
        _Reply(
            "local.refused",
            "deferred",
            None,
            "4.4.1",
            ("connect to {mx}[{mxip}]:25: Connection refused",),
            "network_error",
            local=True,
            remote_relay=False,
            weight=3,
            exim="Connection refused",
        ),
        _Reply(
            "local.tls_required",
            "deferred",
            None,
            "4.7.4",
            ("TLS is required, but was not offered by host {mx}[{mxip}]",),
            "failed_starttls",
            local=True,
            weight=1,
            exim="a TLS session is required, but the server did not offer TLS support",
        ),
    ),
    "nxdomain": (
        _Reply(
            "local.host_not_found",
            "bounced",
            None,
            "5.4.4",
            (
                "Host or domain name not found. Name service error for name={domain} type=A:"
                " Host not found",
            ),
            "host_unknown",
            local=True,
            remote_relay=False,
            exim="Unrouteable address",
        ),
    ),
    "nullmx": (
        _Reply(
            "local.null_mx",
            "bounced",
            None,
            "5.1.10",
            ("Domain {domain} does not accept mail (nullMX)",),
            "not_accept",
            local=True,
            remote_relay=False,
            exim="Unrouteable address",
        ),
    ),
}

_REPLIES: tuple[_Reply, ...] = tuple(r for rs in _REPLIES_BY_PROVIDER.values() for r in rs)
_REPLY_INDEX = {r.id: i for i, r in enumerate(_REPLIES)}
_PROVIDERS = tuple(_REPLIES_BY_PROVIDER)

_FIRST = (
    "anna",
    "ben",
    "carla",
    "david",
    "elena",
    "felix",
    "grace",
    "hannah",
    "ivan",
    "julia",
    "karim",
    "lena",
    "marco",
    "nina",
    "oscar",
    "paula",
    "quentin",
    "rosa",
    "sven",
    "tanja",
    "umar",
    "vera",
    "walter",
    "xenia",
    "yusuf",
    "zoe",
    "li",
    "mateo",
    "sofia",
    "noah",
)
_LAST = (
    "mueller",
    "schmidt",
    "garcia",
    "rossi",
    "novak",
    "smith",
    "johnson",
    "ivanova",
    "kowalski",
    "dubois",
    "jensen",
    "silva",
    "tanaka",
    "nguyen",
    "okafor",
    "peeters",
    "lindqvist",
    "horvat",
    "moreau",
    "fischer",
    "weber",
    "santos",
    "brown",
    "petrov",
)
_SENDERS = (
    ("newsletter", "news.example.com"),
    ("noreply", "shop.example.com"),
    ("billing", "example.com"),
    ("support", "example.com"),
    ("alerts", "status.example.com"),
    ("jana.kraus", "example.com"),
    ("tom.becker", "example.com"),
)
_CLIENTS = (
    ("app01.example.com", "10.0.4.21"),
    ("app02.example.com", "10.0.4.22"),
    ("crm.example.com", "10.0.5.10"),
    ("localhost", "127.0.0.1"),
)


# --------------------------------------------------------------------------------------------
# The plan: messages, recipients, attempts. Shared by every source.

_SENT, _BOUNCE, _DEFER_SENT, _DEFER_BOUNCE, _EXPIRE = range(5)


def _plan(
    rng: _Rng, n_msgs: int, *, allow_local: bool = True, cover: bool = False
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
        for d in _DOMAINS
    ]
    rc = msgs.select("msg", "nrcpt").with_columns(pl.int_ranges(0, "nrcpt").alias("j")).explode("j")
    n = rc.height
    dom = rng.choice(n, weights)
    rc = rc.with_columns(
        dom.alias("dom_i"),
        rng.choice(n, [30, 20, 15, 10, 15, 10]).alias("pattern"),
        rng.ints(n, 0, len(_FIRST)).alias("first_i"),
        rng.ints(n, 0, len(_LAST)).alias("last_i"),
        rng.ints(n, 1, 99).alias("num"),
        rng.floats(n).alias("u_outcome"),
        rng.ints(n, 1, 4).alias("k_defer"),
        rng.ints(n, 3, 6).alias("k_expire"),
        rng.floats(n).alias("u_defer"),
        rng.floats(n).alias("u_final"),
        rng.floats(n).alias("u_sent"),
    )
    provider_of_domain = [_PROVIDERS.index(d.provider) for d in _DOMAINS]
    rc = rc.with_columns(
        _pick([d.name for d in _DOMAINS], pl.col("dom_i")).alias("domain"),
        pl.lit(pl.Series(provider_of_domain, dtype=pl.Int64)).gather(pl.col("dom_i")).alias("prov"),
    )
    rc = rc.with_columns(
        _pick(_FIRST, pl.col("first_i")).alias("first"),
        _pick(_LAST, pl.col("last_i")).alias("last"),
    ).with_columns(pl.col("first").str.slice(0, 1).alias("f1"))
    rc = rc.with_columns(
        pl.when(pl.col("pattern") == 0)
        .then(_render("{first}.{last}"))
        .when(pl.col("pattern") == 1)
        .then(_render("{first}{last}{num}"))
        .when(pl.col("pattern") == 2)
        .then(_render("{f1}.{last}"))
        .when(pl.col("pattern") == 3)
        .then(_render("{first}_{last}"))
        .when(pl.col("pattern") == 4)
        .then(_render("{first}.{last}{num}"))
        .otherwise(_render("{first}{num}"))
        .alias("local")
    ).with_columns(_render("{local}@{domain}").alias("rcpt"))

    # The reply each recipient gets: one deferral text, one final text, per provider.
    sent_e, defer_e, final_e = (
        pl.lit(None, pl.Int64),
        pl.lit(None, pl.Int64),
        pl.lit(None, pl.Int64),
    )
    has_defer_e, has_bounce_e = pl.lit(False), pl.lit(False)
    for p_i, provider in enumerate(_PROVIDERS):
        replies = _REPLIES_BY_PROVIDER[provider]
        is_p = pl.col("prov") == p_i
        for status, col in (("sent", "u_sent"), ("deferred", "u_defer"), ("bounced", "u_final")):
            group = [r for r in replies if r.status == status and (allow_local or not r.local)]
            if not group:
                continue
            ids = pl.lit(pl.Series([_REPLY_INDEX[r.id] for r in group], dtype=pl.Int64))
            edges = []
            total = 0.0
            for r in group:
                total += r.weight
                edges.append(total)
            idx = pl.lit(pl.Series(edges[:-1], dtype=pl.Float64)).search_sorted(
                pl.col(col) * total, side="right"
            )
            chosen = ids.gather(idx.cast(pl.Int64))
            if status == "sent":
                sent_e = pl.when(is_p).then(chosen).otherwise(sent_e)
            elif status == "deferred":
                defer_e = pl.when(is_p).then(chosen).otherwise(defer_e)
                has_defer_e = pl.when(is_p).then(pl.lit(True)).otherwise(has_defer_e)
            else:
                final_e = pl.when(is_p).then(chosen).otherwise(final_e)
                has_bounce_e = pl.when(is_p).then(pl.lit(True)).otherwise(has_bounce_e)
    rc = rc.with_columns(
        sent_e.alias("sent_tpl"),
        defer_e.alias("defer_tpl"),
        final_e.alias("bounce_tpl"),
        has_defer_e.alias("has_defer"),
        has_bounce_e.alias("has_bounce"),
        (pl.col("nrcpt") == 1).alias("single"),
    )
    u = pl.col("u_outcome")
    wanted = (
        pl.when(u < 0.86)
        .then(_SENT)
        .when(u < 0.925)
        .then(_BOUNCE)
        .when(u < 0.968)
        .then(_DEFER_SENT)
        .when(u < 0.975)
        .then(_DEFER_BOUNCE)
        .otherwise(_EXPIRE)
    )
    no_sent = pl.col("sent_tpl").is_null()
    outcome = (
        pl.when(no_sent)  # nxdomain, nullMX: every attempt fails for good
        .then(_BOUNCE)
        .when(wanted.is_in([_DEFER_SENT, _DEFER_BOUNCE, _EXPIRE]) & ~pl.col("has_defer"))
        .then(_SENT)
        .when((wanted == _DEFER_BOUNCE) & ~pl.col("has_bounce"))
        .then(_DEFER_SENT)
        .when((wanted == _EXPIRE) & ~pl.col("single"))
        .then(_DEFER_SENT)
        .otherwise(wanted)
    )
    rc = rc.with_columns(outcome.cast(pl.Int64).alias("outcome")).with_columns(
        pl.when(pl.col("outcome") == _EXPIRE)
        .then(pl.col("k_expire"))
        .when(pl.col("outcome").is_in([_DEFER_SENT, _DEFER_BOUNCE]))
        .then(pl.col("k_defer"))
        .otherwise(0)
        .alias("k"),
    )
    rc = rc.with_columns(
        (pl.col("k") + pl.when(pl.col("outcome") == _EXPIRE).then(0).otherwise(1)).alias("attempts")
    )
    if cover:
        rc = _cover(rc, allow_local)
    rounds = rc.group_by("msg").agg(
        pl.col("attempts").max().alias("rounds"),
        (pl.col("outcome") == _EXPIRE).any().alias("expired"),
        pl.col("outcome").is_in([_BOUNCE, _DEFER_BOUNCE]).any().alias("bounced"),
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
            .when(pl.col("outcome").is_in([_BOUNCE, _DEFER_BOUNCE]))
            .then(pl.col("bounce_tpl"))
            .otherwise(pl.col("sent_tpl"))
            .alias("tpl")
        )
    )
    status_of = pl.lit(pl.Series([r.status for r in _REPLIES], dtype=pl.String))
    att = att.with_columns(status_of.gather(pl.col("tpl")).alias("status"))
    return msgs, att


def _cover(rc: pl.DataFrame, allow_local: bool) -> pl.DataFrame:
    """Give the first recipients (one per message) each failure text once."""
    rows: list[dict[str, object]] = []
    for reply in _REPLIES:
        if reply.status == "sent" or (reply.local and not allow_local):
            continue
        provider = next(p for p, rs in _REPLIES_BY_PROVIDER.items() if reply in rs)
        dom_i = next(i for i, d in enumerate(_DOMAINS) if d.provider == provider)
        deferred = reply.status == "deferred"
        rows.append(
            {
                "msg": len(rows),
                "j": 0,
                "dom_i": dom_i,
                "prov": _PROVIDERS.index(provider),
                "domain": _DOMAINS[dom_i].name,
                "outcome": _DEFER_SENT if deferred else _BOUNCE,
                "k": 1 if deferred else 0,
                "attempts": 2 if deferred else 1,
                "defer_tpl": _REPLY_INDEX[reply.id] if deferred else None,
                "bounce_tpl": None if deferred else _REPLY_INDEX[reply.id],
                "sent_tpl": _first_sent(provider),
            }
        )
    table = pl.DataFrame(
        rows,
        schema_overrides={"defer_tpl": pl.Int64, "bounce_tpl": pl.Int64, "sent_tpl": pl.Int64},
    )
    table = table.filter(pl.col("msg") < rc.get_column("msg").max())
    out = rc.update(table, on=["msg", "j"]).sort("msg", "j")
    return out.with_columns(_render("{local}@{domain}").alias("rcpt"))


def _first_sent(provider: str) -> int | None:
    sent = [r for r in _REPLIES_BY_PROVIDER[provider] if r.status == "sent"]
    return _REPLY_INDEX[sent[0].id] if sent else None


def _lines_per_message_postfix(msgs: pl.DataFrame, att: pl.DataFrame) -> pl.Series:
    remote = pl.lit(pl.Series([r.remote_relay for r in _REPLIES], dtype=pl.Boolean))
    per_msg = (
        att.with_columns(remote.gather(pl.col("tpl")).alias("remote"))
        .group_by("msg")
        .agg((pl.len() + pl.col("remote").sum()).alias("smtp_lines"))
    )
    counted = msgs.join(per_msg, on="msg", maintain_order="left").sort("msg")
    lines = (
        pl.when(pl.col("client_i") == 3).then(1).otherwise(3)  # pickup, or connect/client/disc.
        + 1  # cleanup
        + pl.col("rounds")  # qmgr from= per round
        + pl.col("smtp_lines")
        + pl.col("bounced").cast(pl.Int64)
        + pl.col("expired").cast(pl.Int64) * 2  # expired + non-delivery notification
        + 1  # removed
    )
    return counted.select(lines.alias("n")).to_series()


# --------------------------------------------------------------------------------------------
# Truth.


@dataclass
class Truth:
    """What a correct parser must find in a generated input.

    `records` is what was written (lines, or JSON events); `event_records` how many of them
    give an event (the rest are `skipped`: connects, queue bookkeeping, opens...). `events`
    counts events by type (every name in `schema.EVENTS`); `by_domain` by recipient domain and
    type; `by_code` by (event, smtp_code, enhanced_code), where smtp_code is the remote
    server's reply code (None for the MTA's own failures: timeouts, DNS, expiry) and
    enhanced_code is Postfix's dsn=, the ESP's status / enhanced-code, or the code in the text.
    `templates` gives, per distinct diagnostic template, its event, codes, count and the
    category it obviously belongs to (None where not obvious).
    """

    source: str
    seed: int
    records: int = 0
    event_records: int = 0
    messages: int = 0
    events: dict[str, int] = field(default_factory=lambda: dict.fromkeys(EVENTS, 0))
    by_domain: dict[str, dict[str, int]] = field(default_factory=dict)
    by_code: dict[tuple[str, int | None, str | None], int] = field(default_factory=dict)
    templates: dict[str, dict[str, object]] = field(default_factory=dict)

    @property
    def skipped(self) -> int:
        """Records that are understood and are not delivery outcomes."""
        return self.records - self.event_records

    def to_json(self) -> str:
        """The truth as JSON (by_code as a list of records)."""
        body = {
            "source": self.source,
            "seed": self.seed,
            "records": self.records,
            "event_records": self.event_records,
            "skipped": self.skipped,
            "messages": self.messages,
            "events": self.events,
            "by_domain": self.by_domain,
            "by_code": [
                {"event": e, "smtp_code": c, "enhanced_code": x, "count": n}
                for (e, c, x), n in sorted(self.by_code.items(), key=lambda kv: str(kv[0]))
            ],
            "templates": self.templates,
        }
        return json.dumps(body, indent=2, sort_keys=True)

    def _add(self, events: pl.DataFrame) -> None:
        """Count a frame with columns event, domain, smtp_code, enhanced_code, template."""
        for event, n in events.group_by("event").len().iter_rows():
            self.events[str(event)] += int(n)
        for domain, event, n in events.group_by("domain", "event").len().iter_rows():
            per = self.by_domain.setdefault(str(domain), dict.fromkeys(EVENTS, 0))
            per[str(event)] += int(n)
        for event, code, enhanced, n in (
            events.group_by("event", "smtp_code", "enhanced_code").len().iter_rows()
        ):
            key = (str(event), None if code is None else int(code), enhanced)
            self.by_code[key] = self.by_code.get(key, 0) + int(n)
        for template, n in events.group_by("template").len().iter_rows():
            if template is None:
                continue
            entry = self.templates.get(str(template))
            if entry is None:
                entry = dict(_template_facts(str(template)))
                entry["count"] = 0
                self.templates[str(template)] = entry
            count = entry["count"]
            assert isinstance(count, int)
            entry["count"] = count + int(n)


_EXTRA_TEMPLATES: dict[str, dict[str, object]] = {}


def _template_facts(template: str) -> dict[str, object]:
    if template in _EXTRA_TEMPLATES:
        return dict(_EXTRA_TEMPLATES[template])
    reply = _REPLIES[_REPLY_INDEX[template]]
    event = {"sent": "delivered", "deferred": "deferred", "bounced": "bounced"}[reply.status]
    return {
        "event": event,
        "smtp_code": reply.code,
        "enhanced_code": reply.dsn,
        "category": reply.category,
    }


def _extra(
    template: str, event: str, code: int | None, enhanced: str | None, category: str | None
) -> str:
    _EXTRA_TEMPLATES[template] = {
        "event": event,
        "smtp_code": code,
        "enhanced_code": enhanced,
        "category": category,
    }
    return template


# --------------------------------------------------------------------------------------------
# Shared helpers for the writers.


def _start_us(start: datetime) -> int:
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    return int((start - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))


def _open(out: BinaryIO | Path | str) -> tuple[BinaryIO, bool]:
    if isinstance(out, str | Path):
        return Path(out).open("wb"), True
    return out, False


def _segments(total: int, size: int) -> list[int]:
    """Split `total` records into segments of at most `size` (at least one segment)."""
    count = max(1, -(-total // size))
    base, extra = divmod(total, count)
    return [base + (1 if i < extra else 0) for i in range(count)]


def _max_float(frame: pl.DataFrame, column: str) -> float:
    """The largest value of a numeric column (0.0 for an empty frame)."""
    value = frame.select(pl.col(column).max().cast(pl.Float64)).item()
    return float(value) if value is not None else 0.0


def _fit(counts: pl.Series, budget: int) -> int:
    """How many leading messages fit in `budget` records."""
    cumulative = counts.cum_sum()
    return int(cumulative.search_sorted(budget, side="right"))


def _reply_columns(rng: _Rng, n: int) -> list[pl.Expr]:
    """The per-row tokens reply texts are made of (Gmail's trailing id, Outlook's host...)."""
    return [
        pl.concat_str(
            rng.token(n, 13, _hex),
            pl.lit("-"),
            rng.token(n, 10, _ALNUM),
            pl.lit("si"),
            rng.token(n, 8, "0123456789"),
            rng.token(n, 3, _ALNUM),
            pl.lit("."),
            rng.ints(n, 1, 999).cast(pl.String),
        ).alias("gid"),
        pl.concat_str(
            _pick(["AM4PEPF000", "DB5PEPF000", "AMS0EPF000", "VI1PEPF000"], rng.ints(n, 0, 4)),
            rng.token(n, 5, _HEX),
        ).alias("msid"),
        rng.token(n, 16, _HEX).alias("mshex"),
        pl.concat_str(
            _pick(["DB5EUR03FT", "AM2PEPF0001", "VI1EUR04FT", "HE1EUR02FT"], rng.ints(n, 0, 4)),
            rng.ints(n, 100, 999).cast(pl.String),
        ).alias("eop"),
        rng.ints(n, 1000, 9999).cast(pl.String).alias("yid"),
        _pick(["bf1", "bf2", "gq1", "ne1"], rng.ints(n, 0, 4)).alias("ycl"),
        rng.token(n, 22, _B62).alias("yxid"),
        rng.ints(n, 10, 99).cast(pl.String).alias("n1"),
        rng.ints(n, 1, 59).cast(pl.String).alias("n2"),
        rng.ints(n, 100, 999).cast(pl.String).alias("n"),
        rng.token(n, 12, _HEX).alias("qid2"),
        rng.ints(n, 10**13, 10**14 - 1).cast(pl.String).alias("internal_id"),
        pl.concat_str(
            rng.token(n, 5, "0123456789"),
            pl.lit("-"),
            rng.ints(n, 1, 20).cast(pl.String).str.zfill(2),
        ).alias("amid"),
        pl.concat_str(
            rng.token(n, 5, _B62),
            pl.lit("-"),
            rng.token(n, 10, _B62),
            pl.lit("-"),
            rng.token(n, 6, _B62),
        ).alias("gmxid"),
        pl.concat_str(pl.lit("mxgmx"), rng.ints(n, 100, 130).cast(pl.String)).alias("gmxmx"),
        pl.concat_str(
            rng.token(n, 6, _B62),
            pl.lit("-"),
            rng.token(n, 6, _B62),
            pl.lit("-"),
            rng.token(n, 2, _B62),
        ).alias("eximid"),
        rng.token(n, 40, _hex).alias("mrid"),
        rng.token(n, 16, _hex).alias("mrhex"),
        rng.token(n, 32, _hex).alias("mrhex2"),
        pl.concat_str(rng.token(n, 10, _alnum_lower()), pl.lit("-1")).alias("ppid"),
    ]


def _alnum_lower() -> str:
    return "0123456789abcdefghijklmnopqrstuvwxyz"


def _relay_columns(rng: _Rng, n: int) -> list[pl.Expr]:
    """MX host and address for each attempt row (needs dom_i)."""
    mx_first = []
    mx_count = []
    names: list[str] = []
    for d in _DOMAINS:
        mx_first.append(len(names))
        mx_count.append(len(d.mx))
        names.extend(d.mx)
    first = pl.lit(pl.Series(mx_first, dtype=pl.Int64)).gather(pl.col("dom_i"))
    count = pl.lit(pl.Series(mx_count, dtype=pl.Int64)).gather(pl.col("dom_i"))
    which = first + rng.ints(n, 0, 1 << 30) % count
    prefix = _pick([d.ip_prefix for d in _DOMAINS], pl.col("dom_i"))
    ip = pl.concat_str(
        prefix,
        pl.lit("."),
        rng.ints(n, 1, 254).cast(pl.String),
        pl.lit("."),
        rng.ints(n, 1, 254).cast(pl.String),
    )
    return [_pick(names, which).alias("mx"), ip.alias("mxip")]


def _sender_columns() -> list[pl.Expr]:
    return [
        _render("{s_local}@{sender_domain}").alias("sender"),
        pl.col("sender_domain").str.to_uppercase().alias("sender_domain_upper"),
    ]


def _with_senders(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(
        _pick([s[0] for s in _SENDERS], pl.col("sender_i")).alias("s_local"),
        _pick([s[1] for s in _SENDERS], pl.col("sender_i")).alias("sender_domain"),
    ).with_columns(_sender_columns())


def _format_reply(reply: _Reply, style: str) -> str:
    """The reply as each source writes it (a template with placeholders)."""
    if reply.local:
        if style == "exim" and reply.exim is not None:
            return reply.exim
        return reply.lines[0]
    code = str(reply.code)
    prefix = f"{reply.dsn} " if reply.enhanced_in_text else ""
    if style == "postfix" or style == "exim":
        parts = []
        for i, line in enumerate(reply.lines):
            sep = " " if i == len(reply.lines) - 1 else "-"
            parts.append(
                f"{code}{sep}{prefix}{line}".rstrip(" ")
                if not line
                else f"{code}{sep}{prefix}{line}"
            )
        joiner = " " if style == "postfix" else "\\n"
        return joiner.join(parts)
    if style == "mailgun":
        return "\n".join(f"{prefix}{line}" for line in reply.lines)
    # sendgrid: one line, code first
    return f"{code} {prefix}" + " ".join(line.strip() for line in reply.lines if line.strip())


def _render_by_template(frame: pl.DataFrame, texts: dict[int, str], alias: str) -> pl.DataFrame:
    """Add column `alias`: each row's template (column tpl) rendered with its own columns."""
    pieces = []
    for (tpl,), part in frame.partition_by("tpl", as_dict=True, maintain_order=True).items():
        pieces.append(part.with_columns(_render(texts[int(tpl)]).alias(alias)))
    if not pieces:
        return frame.with_columns(pl.lit(None, pl.String).alias(alias))
    return pl.concat(pieces, how="vertical")


# --------------------------------------------------------------------------------------------
# Postfix.


def _queue_ids(rng: _Rng, n: int, segment: int, t0: pl.Expr, long_ids: bool) -> pl.Expr:
    """Unique queue ids: 5 hex digits of microseconds + the inode in hex (10-11 characters).

    Long ids (enable_long_queue_ids): base-52 seconds and microseconds, 'z', base-51 inode.
    """
    # A bijection of the row number onto [2^19, 2^20): unique, scattered, 5 hex digits; later
    # segments add a sixth digit, so ids never repeat across segments.
    inode = (pl.int_range(0, n, dtype=pl.Int64) * 387_413 + 91_111) % (1 << 19) + (1 << 19)
    inode = inode + segment * (1 << 20)
    if long_ids:
        b51 = "0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxy"  # no vowels, no 'z'
        seconds = (t0 // _US).cast(pl.UInt64)
        micros = (t0 % _US).cast(pl.UInt64)
        return pl.concat_str(
            _encode(seconds, b51 + "z", 6),
            _encode(micros, b51 + "z", 4),
            pl.lit("z"),
            _encode(inode.cast(pl.UInt64), b51, 4),
        )
    micros = (t0 % _US).cast(pl.UInt64)
    six = inode >= (1 << 20)
    return pl.concat_str(
        _encode(micros, _HEX, 5),
        pl.when(six)
        .then(_encode(inode.cast(pl.UInt64), _HEX, 6))
        .otherwise(_encode(inode.cast(pl.UInt64), _HEX, 5)),
    )


_NOISE_POSTFIX = (
    # (weight, process, text, event template or None)
    (10, "postscreen", "CONNECT from [{cip}]:{port} to [203.0.113.25]:25", None),
    (8, "postscreen", "PASS OLD [{cip}]:{port}", None),
    (10, "postscreen", "DISCONNECT [{cip}]:{port}", None),
    (2, "postscreen", "DNSBL rank 4 for [{cip}]:{port}", None),
    (1, "postscreen", "PREGREET 11 after 0.14 from [{cip}]:{port}: EHLO User\\r\\n", None),
    (8, "smtpd", "connect from unknown[{cip}]", None),
    (8, "smtpd", "disconnect from unknown[{cip}] ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4", None),
    (4, "smtpd", "lost connection after AUTH from unknown[{cip}]", None),
    (2, "smtpd", "warning: unknown[{cip}]: SASL LOGIN authentication failed: UGFzc3dvcmQ6", None),
    (1, "anvil", "statistics: max connection rate 3/60s for (smtp:{cip}) at {stamp}", None),
    (
        3,
        "smtpd",
        "NOQUEUE: reject: RCPT from unknown[{cip}]: 450 4.7.1 Client host rejected: cannot find"
        " your hostname, [{cip}]; from=<{rsender}> to=<{rlocal}@example.com> proto=ESMTP"
        " helo=<{helo}>",
        _extra("postfix.reject.no_hostname", "rejected", 450, "4.7.1", "require_ptr"),
    ),
    (
        4,
        "smtpd",
        "NOQUEUE: reject: RCPT from unknown[{cip}]: 554 5.7.1 Service unavailable; Client host"
        " [{cip}] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/{cip};"
        " from=<{rsender}> to=<{rlocal}@example.com> proto=ESMTP helo=<{helo}>",
        _extra("postfix.reject.spamhaus", "rejected", 554, "5.7.1", "blocked"),
    ),
    (
        3,
        "smtpd",
        "NOQUEUE: reject: RCPT from mail.{helo}[{cip}]: 550 5.1.1 <{rlocal}@example.com>:"
        " Recipient address rejected: User unknown in virtual mailbox table; from=<{rsender}>"
        " to=<{rlocal}@example.com> proto=ESMTP helo=<mail.{helo}>",
        _extra("postfix.reject.user_unknown", "rejected", 550, "5.1.1", "user_unknown"),
    ),
    (
        2,
        "smtpd",
        "NOQUEUE: reject: RCPT from unknown[{cip}]: 554 5.7.1 <{rlocal}@{helo}>: Relay access"
        " denied; from=<{rsender}> to=<{rlocal}@{helo}> proto=ESMTP helo=<{helo}>",
        _extra("postfix.reject.relay", "rejected", 554, "5.7.1", "no_relaying"),
    ),
    (
        1,
        "smtpd",
        "NOQUEUE: reject: RCPT from mail.{helo}[{cip}]: 450 4.1.8 <{rsender}>: Sender address"
        " rejected: Domain not found; from=<{rsender}> to=<{rlocal}@example.com> proto=ESMTP"
        " helo=<mail.{helo}>",
        _extra("postfix.reject.sender_domain", "rejected", 450, "4.1.8", "rejected"),
    ),
)

_HELOS = ("bulkmail.example.info", "ylmf-pc", "promo-sender.example.biz", "vps-12345.example.top")


def _noise(
    rng: _Rng, n: int, start_us: int, span_us: int, table: Sequence[tuple[object, ...]]
) -> pl.DataFrame:
    """`n` single lines between messages: connects, scanners, rejects."""
    frame = pl.select(
        (pl.lit(start_us, pl.Int64) + (rng.floats(n) * span_us).cast(pl.Int64)).alias("ts"),
        rng.choice(n, [float(str(t[0])) for t in table]).alias("tpl"),
        pl.concat_str(
            _pick(
                ["198.51.100", "192.0.2", "185.220.101", "45.155.205", "80.94.95"],
                rng.ints(n, 0, 5),
            ),
            pl.lit("."),
            rng.ints(n, 2, 254).cast(pl.String),
        ).alias("cip"),
        rng.ints(n, 1024, 65535).alias("port"),
        rng.ints(n, 1000, 99999).alias("pid"),
        _pick(_HELOS, rng.ints(n, 0, len(_HELOS))).alias("helo"),
        pl.concat_str(
            _pick(_FIRST, rng.ints(n, 0, len(_FIRST))),
            pl.lit("."),
            _pick(_LAST, rng.ints(n, 0, len(_LAST))),
        ).alias("rlocal"),
        pl.concat_str(
            _pick(["info", "sales", "promo", "admin"], rng.ints(n, 0, 4)),
            pl.lit("@"),
            _pick(_HELOS, rng.ints(n, 0, len(_HELOS))),
        ).alias("rsender"),
    )
    return frame


def generate_postfix(
    out: BinaryIO | Path | str,
    *,
    lines: int,
    seed: int = 0,
    start: datetime,
    days: float = 1.0,
    tz: str = "UTC",
    classic_timestamps: bool = True,
    long_queue_ids: bool = False,
    host: str = _HOST,
    cover: bool = False,
) -> Truth:
    """Write exactly `lines` lines of a Postfix mail log (syslog) and return the true counts.

    `tz` is the zone the syslog timestamps are written in; `classic_timestamps` chooses
    "Nov 27 06:25:01" (else RFC 3339 with microseconds and offset). `cover`: every failure
    text at least once near the start of the plan (for small curated samples).
    """
    if lines < 0 or days <= 0:
        raise ValueError("`lines` must be >= 0 and `days` > 0")
    truth = Truth(source="postfix", seed=seed)
    fh, close = _open(out)
    try:
        begin = _start_us(start)
        total_us = int(days * 86_400 * _US)
        sizes = _segments(lines, _SEGMENT)
        offset = 0
        for segment, size in enumerate(sizes):
            seg_start = begin + total_us * offset // max(lines, 1)
            seg_span = max(1, total_us * size // max(lines, 1))
            frame = _postfix_segment(
                _Rng(seed, segment),
                size,
                segment,
                seg_start,
                seg_span,
                long_queue_ids,
                cover,
                truth,
            )
            _write_syslog(fh, frame, tz=tz, classic=classic_timestamps, host=host)
            offset += size
        truth.records = lines
    finally:
        if close:
            fh.close()
    return truth


def _write_syslog(fh: BinaryIO, frame: pl.DataFrame, *, tz: str, classic: bool, host: str) -> None:
    when = pl.col("ts").cast(pl.Datetime("us", "UTC")).dt.convert_time_zone(tz)
    stamp = when.dt.strftime("%b %e %H:%M:%S" if classic else "%Y-%m-%dT%H:%M:%S%.6f%:z")
    lines = frame.sort("ts", "msg", "step").select(
        pl.concat_str(stamp, pl.lit(f" {host} "), pl.col("text")).alias("line")
    )
    _write_lines(fh, lines)


def _write_lines(fh: BinaryIO, lines: pl.DataFrame) -> None:
    if lines.height:
        lines.write_csv(fh, include_header=False, quote_style="never")


def _postfix_segment(
    rng: _Rng,
    size: int,
    segment: int,
    start_us: int,
    span_us: int,
    long_ids: bool,
    cover: bool,
    truth: Truth,
) -> pl.DataFrame:
    noise_target = size * 12 // 100
    msgs, att = _plan(rng, size // 5 + 4, cover=cover and segment == 0)
    counts = _lines_per_message_postfix(msgs, att)
    k = _fit(counts, size - noise_target)
    msgs = msgs.head(k)
    att = att.filter(pl.col("msg") < k)
    used = int(counts.head(k).sum()) if k else 0
    n_noise = size - used
    truth.messages += k

    # Times: retries back off 300 s doubling to 4000 s (Postfix's defaults), squeezed into a
    # short window; each message fits inside this segment so the log stays in time order.
    n = msgs.height
    msgs, rounds = _message_times(rng, msgs, start_us, span_us)
    msgs = msgs.with_columns(
        rng.ints(n, 1000, 65000).alias("smtpd_pid"),
        rng.ints(n, 0, 6).alias("cleanup_i"),
        rng.token(n, 8, _hex).alias("mid_a"),
    )
    msgs = msgs.sort("t0").with_columns(pl.int_range(0, n, dtype=pl.Int64).alias("order"))
    msgs = msgs.with_columns(_queue_ids(rng, n, segment, pl.col("t0"), long_ids).alias("qid"))
    msgs = _with_senders(msgs).with_columns(
        _pick([c[0] for c in _CLIENTS], pl.col("client_i")).alias("client"),
        _pick([c[1] for c in _CLIENTS], pl.col("client_i")).alias("cip"),
        (pl.col("t0").cast(pl.Datetime("us", "UTC")).dt.strftime("%Y%m%d%H%M%S")).alias("mid_t"),
    )
    msgs = msgs.with_columns(_render("{mid_t}.{mid_a}@{sender_domain}").alias("mid"))
    qmgr_pid = 1200 + segment
    cleanup_pids = [2201, 2277, 2310, 2345, 2402, 2468]

    parts: list[pl.DataFrame] = []

    def part(frame: pl.DataFrame, ts: pl.Expr, step: pl.Expr | int, text: str) -> None:
        parts.append(
            frame.select(
                ts.alias("ts"),
                pl.col("msg"),
                (step if isinstance(step, pl.Expr) else pl.lit(step)).cast(pl.Int64).alias("step"),
                _render(text).alias("text"),
            )
        )

    smtpd = msgs.filter(pl.col("client_i") != 3)
    local = msgs.filter(pl.col("client_i") == 3)
    # Nov 27 06:25:01 mx1 postfix/smtpd[4242]: connect from app01.example.com[10.0.4.21]
    part(
        smtpd, pl.col("t0") - 40_000, 0, "postfix/smtpd[{smtpd_pid}]: connect from {client}[{cip}]"
    )
    # ... postfix/smtpd[4242]: 4F2A91C2E3A: client=app01.example.com[10.0.4.21], sasl_...
    part(
        smtpd,
        pl.col("t0"),
        1,
        "postfix/smtpd[{smtpd_pid}]: {qid}: client={client}[{cip}], sasl_method=PLAIN,"
        " sasl_username={s_local}@{sender_domain}",
    )
    # ... postfix/pickup[1187]: 4F2A91C2E3A: uid=33 from=<www-data>
    part(
        local, pl.col("t0"), 1, f"postfix/pickup[{1187 + segment}]: {{qid}}: uid=33 from=<www-data>"
    )
    cleanup = msgs.with_columns(
        pl.lit(pl.Series(cleanup_pids)).gather(pl.col("cleanup_i")).alias("cleanup_pid")
    )
    # ... postfix/cleanup[2277]: 4F2A91C2E3A: message-id=<20261127062501.9c1e4f0a@example.com>
    part(
        cleanup,
        pl.col("t0") + 90_000,
        2,
        "postfix/cleanup[{cleanup_pid}]: {qid}: message-id=<{mid}>",
    )
    # ... postfix/smtpd[4242]: disconnect from app01... ehlo=2 starttls=1 auth=1 mail=1 rcpt=1 ...
    smtpd = smtpd.with_columns((pl.col("nrcpt") + 6).alias("commands"))
    part(
        smtpd,
        pl.col("t0") + 150_000,
        3,
        "postfix/smtpd[{smtpd_pid}]: disconnect from {client}[{cip}] ehlo=2 starttls=1 auth=1"
        " mail=1 rcpt={nrcpt} data=1 quit=1 commands={commands}",
    )
    qm = rounds.join(
        msgs.select("msg", "qid", "sender", "size", "nrcpt"), on="msg", maintain_order="left"
    ).with_columns(pl.lit(qmgr_pid).alias("qpid"))
    # ... postfix/qmgr[1200]: 4F2A91C2E3A: from=<news@example.com>, size=18734, nrcpt=1
    #     (queue active)
    part(
        qm,
        pl.col("rt"),
        10 + pl.col("r") * 100,
        "postfix/qmgr[{qpid}]: {qid}: from=<{sender}>, size={size}, nrcpt={nrcpt} (queue active)",
    )

    # One row per recipient attempt: the smtp line (and a TLS line before remote ones).
    na = att.height
    att = (
        att.join(
            rounds.select("msg", "r", "rt"),
            left_on=["msg", "a"],
            right_on=["msg", "r"],
            maintain_order="left",
        )
        .join(
            msgs.select(
                "msg", "qid", "t0", "sender", "sender_domain", "sender_domain_upper", "size", "mid"
            ),
            on="msg",
            maintain_order="left",
        )
        .sort("msg", "a", "j")
        .with_columns(_relay_columns(rng, na))
        .with_columns(_reply_columns(rng, na))
        .with_columns(
            pl.lit(_OUR_IP).alias("ip"),
            (rng.floats(na) * 1.4 + 0.08).alias("conn_s"),
            (rng.floats(na) * rng.floats(na) * 3 + 0.05).alias("xfer_s"),
            _pick(_PIDS, rng.ints(na, 0, len(_PIDS))).alias("smtp_pid"),
        )
    )
    att = att.with_columns(
        (
            pl.col("rt")
            + 200_000
            + pl.col("j") * 150_000
            + ((pl.col("conn_s") + pl.col("xfer_s")) * _US).cast(pl.Int64)
        ).alias("ts"),
    ).with_columns(
        ((pl.col("ts") - pl.col("t0")) / _US).alias("delay"),
        ((pl.col("rt") - pl.col("t0")) / _US).alias("before_qmgr"),
        (pl.col("ts") // _US).cast(pl.String).alias("unix"),
        pl.col("ts")
        .cast(pl.Datetime("us", "UTC"))
        .dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .alias("mstime"),
    )
    local_flag = pl.lit(pl.Series([r.local for r in _REPLIES], dtype=pl.Boolean))
    remote_flag = pl.lit(pl.Series([r.remote_relay for r in _REPLIES], dtype=pl.Boolean))
    att = att.with_columns(
        local_flag.gather(pl.col("tpl")).alias("is_local"),
        remote_flag.gather(pl.col("tpl")).alias("is_remote"),
        pl.concat_str(
            pl.lit("dsn="), pl.lit(pl.Series([r.dsn for r in _REPLIES])).gather(pl.col("tpl"))
        ).alias("dsn"),
        pl.concat_str(
            _seconds_text(pl.col("before_qmgr")),
            pl.lit("/"),
            _seconds_text(0.2 + pl.col("j") * 0.15),
            pl.lit("/"),
            _seconds_text(pl.col("conn_s")),
            pl.lit("/"),
            _seconds_text(pl.col("xfer_s")),
        ).alias("delays"),
        _seconds_text(pl.col("delay")).alias("delay_text"),
    ).with_columns(
        pl.when(remote_flag.gather(pl.col("tpl")))
        .then(_render("{mx}[{mxip}]:25"))
        .otherwise(pl.lit("none"))
        .alias("relay")
    )
    texts: dict[int, str] = {}
    for i, reply in enumerate(_REPLIES):
        body = _format_reply(reply, "postfix")
        if reply.local:
            texts[i] = body
        elif reply.status == "sent":
            texts[i] = body
        elif reply.stage == "greeting":
            texts[i] = "host {mx}[{mxip}] refused to talk to me: " + body
        else:
            texts[i] = f"host {{mx}}[{{mxip}}] said: {body} (in reply to {reply.stage} command)"
    att = _render_by_template(att, texts, "reply")
    # Nov 27 06:25:03 mx1 postfix/smtp[3041]: Trusted TLS connection established to gmail-smtp-...
    part(
        att.filter(pl.col("is_remote")),
        pl.col("ts") - 20_000 - (pl.col("xfer_s") * _US).cast(pl.Int64),
        20 + pl.col("a") * 100 + pl.col("j") * 2,
        "postfix/smtp[{smtp_pid}]: Trusted TLS connection established to {mx}[{mxip}]:25:"
        " TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519"
        " server-signature RSA-PSS (2048 bits) server-digest SHA256",
    )
    # ... postfix/smtp[3041]: 4F2A91C2E3A: to=<anna.novak@gmail.com>, relay=gmail-smtp-in.l.
    #     google.com[142.250.27.26]:25, delay=1.2, delays=0.4/0/0.5/0.3, dsn=2.0.0,
    #     status=sent (...)
    part(
        att,
        pl.col("ts"),
        21 + pl.col("a") * 100 + pl.col("j") * 2,
        "postfix/smtp[{smtp_pid}]: {qid}: to=<{rcpt}>, relay={relay}, delay={delay_text},"
        " delays={delays}, {dsn}, status={status} ({reply})",
    )
    last = att.group_by("msg").agg(pl.col("ts").max().alias("last_ts"))
    ends = msgs.join(last, on="msg", maintain_order="left").with_columns(
        pl.lit(qmgr_pid).alias("qpid"),
        rng.token(n, 11, _HEX).alias("qid_dsn"),
    )
    expired = ends.filter(pl.col("expired"))
    # ... postfix/qmgr[1200]: 4F2A91C2E3A: from=<news@example.com>, status=expired,
    #     returned to sender
    part(
        expired,
        pl.col("last_ts") + 1_000,
        90_000,
        "postfix/qmgr[{qpid}]: {qid}: from=<{sender}>, status=expired, returned to sender",
    )
    # ... postfix/bounce[2950]: 4F2A91C2E3A: sender non-delivery notification: 6B1C0D2E11F
    part(
        ends.filter(pl.col("expired") | pl.col("bounced")),
        pl.col("last_ts") + 2_000,
        90_001,
        f"postfix/bounce[{2950 + segment}]: {{qid}}: sender non-delivery notification: {{qid_dsn}}",
    )
    # ... postfix/qmgr[1200]: 4F2A91C2E3A: removed
    part(ends, pl.col("last_ts") + 3_000, 90_002, "postfix/qmgr[{qpid}]: {qid}: removed")

    noise = _noise(rng, n_noise, start_us, span_us, _NOISE_POSTFIX)
    noise = noise.with_columns(
        pl.col("ts").cast(pl.Datetime("us", "UTC")).dt.strftime("%b %e %H:%M:%S").alias("stamp"),
        (-1 - pl.int_range(0, n_noise, dtype=pl.Int64)).alias("msg"),
    )
    noise_texts = {i: f"postfix/{t[1]}[{{pid}}]: {t[2]}" for i, t in enumerate(_NOISE_POSTFIX)}
    noise = _render_by_template(noise, noise_texts, "text")
    parts.append(noise.select("ts", "msg", pl.lit(0, pl.Int64).alias("step"), "text"))

    # Truth: smtp lines, expiries, rejects.
    reply_code = pl.lit(pl.Series([r.code for r in _REPLIES], dtype=pl.Int64))
    reply_dsn = pl.lit(pl.Series([r.dsn for r in _REPLIES], dtype=pl.String))
    reply_id = pl.lit(pl.Series([r.id for r in _REPLIES], dtype=pl.String))
    event_of = {"sent": "delivered", "deferred": "deferred", "bounced": "bounced"}
    events = att.select(
        pl.col("status").replace_strict(event_of).alias("event"),
        pl.col("domain"),
        reply_code.gather(pl.col("tpl")).alias("smtp_code"),
        reply_dsn.gather(pl.col("tpl")).alias("enhanced_code"),
        reply_id.gather(pl.col("tpl")).alias("template"),
    )
    exp = (
        att.filter(pl.col("a") == 0)
        .join(expired.select("msg"), on="msg", maintain_order="left")
        .select(
            pl.lit("expired").alias("event"),
            pl.col("domain"),
            pl.lit(None, pl.Int64).alias("smtp_code"),
            pl.lit(None, pl.String).alias("enhanced_code"),
            pl.lit(None, pl.String).alias("template"),
        )
    )
    rejects = _noise_events(noise, _NOISE_POSTFIX, 3)
    all_events = pl.concat([events, exp, rejects], how="vertical")
    truth._add(all_events)
    truth.event_records += all_events.height
    return pl.concat(parts, how="vertical")


# --------------------------------------------------------------------------------------------
# Exim.

_NOISE_EXIM = (
    (10, "SMTP connection from [{cip}]:{port} (TCP/IP connection count = {n})", None),
    (8, "SMTP connection from ({helo}) [{cip}]:{port} closed by QUIT", None),
    (3, "SMTP connection from ({helo}) [{cip}]:{port} lost D={n}s", None),
    (4, "no host name found for IP address {cip}", None),
    (2, "Start queue run: pid={pid}", None),
    (2, "End queue run: pid={pid}", None),
    (
        3,
        "H=({helo}) [{cip}]:{port} F=<{rsender}> rejected RCPT <{rlocal}@example.com>:"
        " Unrouteable address",
        _extra("exim.reject.unrouteable", "rejected", None, None, "user_unknown"),
    ),
    (
        2,
        "H=({helo}) [{cip}]:{port} F=<{rsender}> rejected RCPT <{rlocal}@{helo}>: relay not"
        " permitted",
        _extra("exim.reject.relay", "rejected", None, None, "no_relaying"),
    ),
    (
        3,
        "H=({helo}) [{cip}]:{port} F=<{rsender}> rejected RCPT <{rlocal}@example.com>: {cip} is"
        " listed at zen.spamhaus.org",
        _extra("exim.reject.spamhaus", "rejected", None, None, "blocked"),
    ),
)

_EXIM_STAGE = {
    "RCPT TO": ("RCPT TO:<{rcpt}>", "-44"),
    "MAIL FROM": ("MAIL FROM:<{sender}> SIZE={size}", "-45"),
    "end of DATA": ("end of data", "-46"),
    "greeting": ("initial connection", "-18"),
}
_EXIM_ERRNO = {"local.timeout": "110", "local.refused": "111", "local.tls_required": "-1"}
_TLS = "X=TLS1.3:TLS_AES_256_GCM_SHA384:256"


def _exim_ids(n: int, segment: int, t0: pl.Expr, new_ids: bool) -> pl.Expr:
    """Message ids: base-62 time, a unique "pid", base-62 fraction of the second.

    Old format 1tGxYz-00AbCd-Ef (6-6-2); Exim 4.97's new format 1tGxYz-0000000AbCd-EfGh (6-11-4).
    """
    seconds = (t0 // _US).cast(pl.UInt64)
    unique = (pl.int_range(0, n, dtype=pl.Int64) * 387_413 + 91_111) % (1 << 19) + 3_000
    unique = (unique + segment * (1 << 19)).cast(pl.UInt64)
    micros = (t0 % _US).cast(pl.UInt64)
    if new_ids:
        return pl.concat_str(
            _encode(seconds, _B62, 6),
            pl.lit("-"),
            _encode(unique, _B62, 11),
            pl.lit("-"),
            _encode(micros, _B62, 4),
        )
    return pl.concat_str(
        _encode(seconds, _B62, 6),
        pl.lit("-"),
        _encode(unique, _B62, 6),
        pl.lit("-"),
        _encode(micros * 3844 // _US, _B62, 2),
    )


def generate_exim(
    out: BinaryIO | Path | str,
    *,
    lines: int,
    seed: int = 0,
    start: datetime,
    days: float = 1.0,
    tz: str = "UTC",
    new_ids: bool = False,
    cover: bool = False,
) -> Truth:
    """Write exactly `lines` lines of an Exim main log and return the true counts."""
    if lines < 0 or days <= 0:
        raise ValueError("`lines` must be >= 0 and `days` > 0")
    truth = Truth(source="exim", seed=seed)
    fh, close = _open(out)
    try:
        begin = _start_us(start)
        total_us = int(days * 86_400 * _US)
        offset = 0
        for segment, size in enumerate(_segments(lines, _SEGMENT)):
            seg_start = begin + total_us * offset // max(lines, 1)
            seg_span = max(1, total_us * size // max(lines, 1))
            frame = _exim_segment(
                _Rng(seed, segment), size, segment, seg_start, seg_span, new_ids, cover, truth
            )
            when = pl.col("ts").cast(pl.Datetime("us", "UTC")).dt.convert_time_zone(tz)
            _write_lines(
                fh,
                frame.sort("ts", "msg", "step").select(
                    pl.concat_str(when.dt.strftime("%Y-%m-%d %H:%M:%S"), pl.lit(" "), "text").alias(
                        "line"
                    )
                ),
            )
            offset += size
        truth.records = lines
    finally:
        if close:
            fh.close()
    return truth


def _message_times(
    rng: _Rng, msgs: pl.DataFrame, start_us: int, span_us: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Messages (in `msg` order) with a start time `t0`, and their delivery rounds `r` with a
    time `rt`: retries back off 300 s doubling to 4000 s, squeezed so that every message fits
    in the span (the log stays in time order)."""
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
    scale = min(1.0, span_us / _US * 0.5 / max(1.0, longest + 30))
    msgs = msgs.join(span_s, on="msg", maintain_order="left").sort("msg")
    room = (pl.lit(float(span_us)) - (pl.col("span_s") * scale + 30) * _US).clip(lower_bound=0)
    msgs = msgs.with_columns(
        (pl.lit(start_us, pl.Int64) + (rng.floats(n) * room).cast(pl.Int64)).alias("t0")
    )
    rounds = rounds.join(msgs.select("msg", "t0"), on="msg", maintain_order="left").with_columns(
        (pl.col("t0") + 400_000 + (pl.col("offset_s") * scale * _US).cast(pl.Int64)).alias("rt")
    )
    return msgs, rounds.drop("t0")


def _timed_plan(
    rng: _Rng, msgs: pl.DataFrame, att: pl.DataFrame, start_us: int, span_us: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Give messages a start time and attempts a time (retries back off, inside the span)."""
    msgs, rounds = _message_times(rng, msgs, start_us, span_us)
    na = att.height
    att = (
        att.join(
            rounds.select("msg", "r", "rt"),
            left_on=["msg", "a"],
            right_on=["msg", "r"],
            maintain_order="left",
        )
        .join(msgs.select("msg", "t0"), on="msg", maintain_order="left")
        .sort("msg", "a", "j")
    )
    att = att.with_columns(
        (rng.floats(na) * 1.4 + 0.08).alias("conn_s"),
        (rng.floats(na) * rng.floats(na) * 3 + 0.05).alias("xfer_s"),
    ).with_columns(
        (
            pl.col("rt")
            + 200_000
            + pl.col("j") * 150_000
            + ((pl.col("conn_s") + pl.col("xfer_s")) * _US).cast(pl.Int64)
        ).alias("ts")
    )
    return msgs, att


#: The enhanced code as it shows in the text (Exim, SendGrid responses): none for the MTA's own
#: failures and for replies without one (Postfix's dsn=5.0.0 for "554 delivery error" is its own).
_TEXT_DSN = tuple(r.dsn if r.enhanced_in_text and not r.local else None for r in _REPLIES)


def _attempt_events(att: pl.DataFrame, enhanced: Sequence[str | None] = ()) -> pl.DataFrame:
    """Truth rows (event, domain, smtp_code, enhanced_code, template) for attempt rows.

    `enhanced`: per reply, the enhanced code the record shows (default: Postfix's dsn=).
    """
    reply_code = pl.lit(pl.Series([r.code for r in _REPLIES], dtype=pl.Int64))
    dsn = enhanced or tuple(r.dsn for r in _REPLIES)
    reply_dsn = pl.lit(pl.Series(list(dsn), dtype=pl.String))
    reply_id = pl.lit(pl.Series([r.id for r in _REPLIES], dtype=pl.String))
    event_of = {"sent": "delivered", "deferred": "deferred", "bounced": "bounced"}
    return att.select(
        pl.col("status").replace_strict(event_of).alias("event"),
        pl.col("domain"),
        reply_code.gather(pl.col("tpl")).alias("smtp_code"),
        reply_dsn.gather(pl.col("tpl")).alias("enhanced_code"),
        reply_id.gather(pl.col("tpl")).alias("template"),
    )


def _noise_events(
    noise: pl.DataFrame, table: Sequence[tuple[object, ...]], template_col: int
) -> pl.DataFrame:
    """Truth rows for the reject lines among the noise."""
    rejects = noise.with_columns(
        pl.lit(pl.Series([t[template_col] for t in table], dtype=pl.String))
        .gather(pl.col("tpl"))
        .alias("template")
    ).filter(pl.col("template").is_not_null())
    return rejects.select(
        pl.lit("rejected").alias("event"),
        pl.when(pl.col("template").str.ends_with(".relay"))
        .then(pl.col("helo"))
        .otherwise(pl.lit("example.com"))
        .alias("domain"),
        pl.col("template")
        .replace_strict(
            {k: v["smtp_code"] for k, v in _EXTRA_TEMPLATES.items()}, return_dtype=pl.Int64
        )
        .alias("smtp_code"),
        pl.col("template")
        .replace_strict(
            {k: v["enhanced_code"] for k, v in _EXTRA_TEMPLATES.items()}, return_dtype=pl.String
        )
        .alias("enhanced_code"),
        pl.col("template"),
    )


def _exim_segment(
    rng: _Rng,
    size: int,
    segment: int,
    start_us: int,
    span_us: int,
    new_ids: bool,
    cover: bool,
    truth: Truth,
) -> pl.DataFrame:
    noise_target = size * 12 // 100
    msgs, att = _plan(rng, size // 4 + 4, cover=cover and segment == 0)
    local_deferral = pl.lit(
        pl.Series([r.local and not r.remote_relay and r.status == "deferred" for r in _REPLIES])
    )
    per_msg = (
        att.with_columns(local_deferral.gather(pl.col("tpl")).alias("extra"))
        .group_by("msg")
        .agg((pl.len() + pl.col("extra").sum()).alias("att_lines"))
    )
    counts = (
        msgs.join(per_msg, on="msg", maintain_order="left")
        .sort("msg")
        .select(2 + pl.col("att_lines") + pl.col("expired").cast(pl.Int64))
        .to_series()
    )
    k = _fit(counts, size - noise_target)
    msgs = msgs.head(k)
    att = att.filter(pl.col("msg") < k)
    n_noise = size - (int(counts.head(k).sum()) if k else 0)
    truth.messages += k
    msgs, att = _timed_plan(rng, msgs, att, start_us, span_us)
    n = msgs.height
    msgs = msgs.sort("t0").with_columns(_exim_ids(n, segment, pl.col("t0"), new_ids).alias("eid"))
    msgs = (
        _with_senders(msgs)
        .with_columns(
            _pick([c[0] for c in _CLIENTS], pl.col("client_i")).alias("client"),
            _pick([c[1] for c in _CLIENTS], pl.col("client_i")).alias("cip"),
            pl.col("t0").cast(pl.Datetime("us", "UTC")).dt.strftime("%Y%m%d%H%M%S").alias("mid_t"),
            rng.token(n, 8, _hex).alias("mid_a"),
        )
        .with_columns(_render("{mid_t}.{mid_a}@{sender_domain}").alias("mid"))
    )
    na = att.height
    att = (
        att.join(
            msgs.select(
                "msg", "eid", "sender", "sender_domain", "sender_domain_upper", "size", "mid"
            ),
            on="msg",
            maintain_order="left",
        )
        .sort("msg", "a", "j")
        .with_columns(_relay_columns(rng, na))
        .with_columns(_reply_columns(rng, na))
        .with_columns(
            pl.lit(_OUR_IP).alias("ip"),
            (pl.col("ts") // _US).cast(pl.String).alias("unix"),
            pl.col("ts")
            .cast(pl.Datetime("us", "UTC"))
            .dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
            .alias("mstime"),
        )
    )
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
    texts: dict[int, str] = {}
    for i, reply in enumerate(_REPLIES):
        body = _format_reply(reply, "exim")
        host = "R=dnslookup T=remote_smtp"
        if reply.local and reply.status == "deferred":
            errno = _EXIM_ERRNO.get(reply.id, "-1")
            # 2026-11-27 06:25:01 1tGxYz-00AbCd-Ef == x@umbrella.example R=dnslookup
            #     T=remote_smtp defer (110): Connection timed out
            texts[i] = f"{{eid}} == {{rcpt}} {host} defer ({errno}): {body}"
        elif reply.local:
            # ... 1tGxYz-00AbCd-Ef ** x@gmial.com: Unrouteable address
            texts[i] = f"{{eid}} ** {{rcpt}}: {body}"
        elif reply.status == "sent":
            # ... => x@gmail.com R=dnslookup T=remote_smtp H=gmail-smtp-in.l.google.com
            #     [142.250.27.26] X=TLS1.3:TLS_AES_256_GCM_SHA384:256 CV=yes C="250 2.0.0 OK ..."
            texts[i] = (
                f'{{eid}} {{arrow}} {{rcpt}} {host} H={{mx}} [{{mxip}}] {_TLS} CV=yes C="{body}"'
            )
        else:
            stage, errno = _EXIM_STAGE[reply.stage]
            said = f"SMTP error from remote mail server after {stage}: {body}"
            if reply.status == "deferred":
                # ... == x@gmail.com R=dnslookup T=remote_smtp defer (-44) H=gmail-smtp-in...
                #     [142.250.27.26]: SMTP error from remote mail server after RCPT TO:<x>: 452-...
                texts[i] = f"{{eid}} == {{rcpt}} {host} defer ({errno}) H={{mx}} [{{mxip}}]: {said}"
            else:
                # ... ** x@gmail.com R=dnslookup T=remote_smtp H=... [...] X=...: SMTP error ...
                texts[i] = f"{{eid}} ** {{rcpt}} {host} H={{mx}} [{{mxip}}] {_TLS} CV=yes: {said}"
    att = att.with_columns(
        pl.when(pl.col("more")).then(pl.lit("->")).otherwise(pl.lit("=>")).alias("arrow")
    )
    att = _render_by_template(att, texts, "text")

    parts: list[pl.DataFrame] = []

    def part(frame: pl.DataFrame, ts: pl.Expr, step: pl.Expr | int, text: str | None) -> None:
        parts.append(
            frame.select(
                ts.alias("ts"),
                pl.col("msg"),
                (step if isinstance(step, pl.Expr) else pl.lit(step)).cast(pl.Int64).alias("step"),
                (pl.col("text") if text is None else _render(text)).alias("text"),
            )
        )

    # ... 1tGxYz-00AbCd-Ef <= news@example.com H=app01.example.com [10.0.4.21] P=esmtpsa X=...
    #     CV=no A=dovecot_plain:news@example.com S=18734 id=20261127062501.9c1e4f0a@example.com
    part(
        msgs.filter(pl.col("client_i") != 3),
        pl.col("t0"),
        0,
        f"{{eid}} <= {{sender}} H={{client}} [{{cip}}] P=esmtpsa {_TLS} CV=no"
        " A=dovecot_plain:{sender} S={size} id={mid}",
    )
    # ... 1tGxYz-00AbCd-Ef <= noreply@shop.example.com U=www-data P=local S=4211 id=...
    part(
        msgs.filter(pl.col("client_i") == 3),
        pl.col("t0"),
        0,
        "{eid} <= {sender} U=www-data P=local S={size} id={mid}",
    )
    # ... 1tGxYz-00AbCd-Ef H=mail.umbrella.example [198.51.100.20] Connection timed out
    conn = att.filter(local_deferral.gather(pl.col("tpl")))
    conn = conn.with_columns(
        pl.lit(pl.Series([r.exim or "" for r in _REPLIES])).gather(pl.col("tpl")).alias("why")
    )
    part(
        conn,
        pl.col("ts") - 1,
        1 + pl.col("a") * 100 + pl.col("j") * 2,
        "{eid} H={mx} [{mxip}] {why}",
    )
    part(att, pl.col("ts"), 2 + pl.col("a") * 100 + pl.col("j") * 2, None)
    last = att.group_by("msg").agg(
        pl.col("ts").max().alias("last_ts"), pl.col("rcpt").first().alias("rcpt")
    )
    ends = msgs.join(last, on="msg", maintain_order="left")
    # ... 1tGxYz-00AbCd-Ef ** x@umbrella.example: retry timeout exceeded
    part(
        ends.filter(pl.col("expired")),
        pl.col("last_ts") + 1,
        90_000,
        "{eid} ** {rcpt}: retry timeout exceeded",
    )
    # ... 1tGxYz-00AbCd-Ef Completed
    part(ends, pl.col("last_ts") + 2, 90_001, "{eid} Completed")

    noise = _noise(rng, n_noise, start_us, span_us, _NOISE_EXIM).with_columns(
        (-1 - pl.int_range(0, n_noise, dtype=pl.Int64)).alias("msg"),
        rng.ints(n_noise, 1, 4).alias("n"),
    )
    noise = _render_by_template(noise, {i: str(t[1]) for i, t in enumerate(_NOISE_EXIM)}, "text")
    parts.append(noise.select("ts", "msg", pl.lit(0, pl.Int64).alias("step"), "text"))

    exp = att.filter(pl.col("a") == 0).join(
        msgs.filter(pl.col("expired")).select("msg"), on="msg", maintain_order="left"
    )
    events = pl.concat(
        [
            _attempt_events(att, _TEXT_DSN),
            exp.select(
                pl.lit("expired").alias("event"),
                "domain",
                pl.lit(None, pl.Int64).alias("smtp_code"),
                pl.lit(None, pl.String).alias("enhanced_code"),
                pl.lit(None, pl.String).alias("template"),
            ),
            _noise_events(noise, _NOISE_EXIM, 2),
        ]
    )
    truth._add(events)
    truth.event_records += events.height
    return pl.concat(parts, how="vertical")


# --------------------------------------------------------------------------------------------
# SendGrid and Mailgun: one JSON object per event.

_SG_BLOCKED = {
    "blocked",
    "bad_reputation",
    "spam_detected",
    "auth_failure",
    "policy_violation",
    "require_ptr",
    "rate_limited",
    "virus_detected",
}
_SG_CLASS = {
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
_SG_DROP_REASONS = ("Bounced Address", "Unsubscribed Address", "Spam Reporting Address", "Invalid")
_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like"
    " Gecko) Mobile/15E148",
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
)


def _esp_frames(
    rng: _Rng, n_msgs: int, start_us: int, span_us: int, cover: bool
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Messages, attempts (timed) and per-recipient extras shared by both ESPs."""
    msgs, att = _plan(rng, n_msgs, allow_local=False, cover=cover)
    msgs, att = _timed_plan(rng, msgs, att, start_us, span_us)
    n = msgs.height
    msgs = (
        _with_senders(msgs)
        .with_columns(
            rng.token(n, 22, _B64URL).alias("mkey"),
            rng.floats(n).alias("u_cat"),
            pl.col("t0").cast(pl.Datetime("us", "UTC")).dt.strftime("%Y%m%d%H%M%S").alias("mid_t"),
            rng.token(n, 8, _hex).alias("mid_a"),
            rng.ints(n, 1, 60).alias("n1"),
        )
        .with_columns(_render("{mid_t}.{mid_a}@{sender_domain}").alias("mid"))
    )
    rc = att.filter(pl.col("a") == 0).select("msg", "j", "rcpt", "domain", "outcome", "t0")
    nr = rc.height
    rc = rc.with_columns(
        rng.floats(nr).alias("u_drop"),
        rng.floats(nr).alias("u_open"),
        rng.floats(nr).alias("u_click"),
        rng.floats(nr).alias("u_spam"),
        rng.floats(nr).alias("u_unsub"),
        rng.ints(nr, 0, len(_SG_DROP_REASONS)).alias("drop_i"),
    ).with_columns(((pl.col("u_drop") < 0.02) & (pl.col("outcome") == _SENT)).alias("dropped"))
    att = att.join(rc.select("msg", "j", "dropped"), on=["msg", "j"], maintain_order="left").filter(
        ~pl.col("dropped")
    )
    na = att.height
    att = (
        att.join(
            msgs.select("msg", "sender", "sender_domain", "sender_domain_upper", "size", "mid"),
            on="msg",
            maintain_order="left",
        )
        .with_columns(_relay_columns(rng, na))
        .with_columns(_reply_columns(rng, na))
        .with_columns(
            pl.lit(_OUR_IP).alias("ip"),
            (pl.col("ts") // _US).cast(pl.String).alias("unix"),
            pl.col("ts")
            .cast(pl.Datetime("us", "UTC"))
            .dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
            .alias("mstime"),
        )
    )
    return msgs, att, rc


def generate_sendgrid(
    out: BinaryIO | Path | str,
    *,
    events: int,
    seed: int = 0,
    start: datetime,
    days: float = 1.0,
    ndjson: bool = True,
    cover: bool = False,
) -> Truth:
    """Write exactly `events` SendGrid Event Webhook events.

    `ndjson`: one event per line; else one POST body, a compact JSON array on one line.
    """
    return _write_esp(
        "sendgrid", out, events, seed, start, days, ndjson=ndjson, webhooks=True, cover=cover
    )


def generate_mailgun(
    out: BinaryIO | Path | str,
    *,
    events: int,
    seed: int = 0,
    start: datetime,
    days: float = 1.0,
    webhooks: bool = True,
    cover: bool = False,
) -> Truth:
    """Write exactly `events` Mailgun events, one JSON object per line.

    `webhooks`: webhook bodies ({"signature": ..., "event-data": ...}; the signatures are
    random, not valid HMACs); else Events API items (the event-data objects alone).
    """
    return _write_esp(
        "mailgun", out, events, seed, start, days, ndjson=True, webhooks=webhooks, cover=cover
    )


def _write_esp(
    source: str,
    out: BinaryIO | Path | str,
    events: int,
    seed: int,
    start: datetime,
    days: float,
    *,
    ndjson: bool,
    webhooks: bool,
    cover: bool,
) -> Truth:
    if events < 0 or days <= 0:
        raise ValueError("`events` must be >= 0 and `days` > 0")
    truth = Truth(source=source, seed=seed)
    fh, close = _open(out)
    try:
        begin = _start_us(start)
        total_us = int(days * 86_400 * _US)
        sizes = _segments(events, _SEGMENT)
        if not ndjson:
            fh.write(b"[")
        offset = 0
        for segment, size in enumerate(sizes):
            seg_start = begin + total_us * offset // max(events, 1)
            seg_span = max(1, total_us * size // max(events, 1))
            build = _sendgrid_segment if source == "sendgrid" else _mailgun_segment
            frame = build(
                _Rng(seed, segment),
                size,
                seg_start,
                seg_span,
                webhooks,
                cover and segment == 0,
                truth,
            )
            lines = frame.sort("ts", "msg", "step").select("json")
            if ndjson:
                _write_lines(fh, lines)
            elif lines.height:
                # The POST body as SendGrid sends it: one compact array on one line.
                joined = lines.select(pl.col("json").str.join(",")).item()
                fh.write((b"," if offset else b"") + str(joined).encode("utf-8"))
            offset += size
        if not ndjson:
            fh.write(b"]\n")
        truth.records = events
    finally:
        if close:
            fh.close()
    return truth


def _fit_events(frame: pl.DataFrame, budget: int) -> int:
    counts = frame.group_by("msg").len().sort("msg").get_column("len")
    return _fit(counts, budget)


def _json(frame: pl.DataFrame, fields: list[pl.Expr]) -> pl.DataFrame:
    """ts, msg, step and the JSON text of each row."""
    return frame.select("ts", "msg", "step", pl.struct(fields).struct.json_encode().alias("json"))


def _sendgrid_segment(
    rng: _Rng, size: int, start_us: int, span_us: int, webhooks: bool, cover: bool, truth: Truth
) -> pl.DataFrame:
    msgs, att, rc = _esp_frames(rng, size // 3 + 4, start_us, span_us, cover)
    msgs = msgs.with_columns(
        rng.token(msgs.height, 10, _hex).alias("pod"),
        rng.token(msgs.height, 8, _HEX).alias("podts"),
    ).with_columns(
        _render("<{mkey}@ismtpd0{n1}p1mdw1.sendgrid.net>").alias("smtp_id"),
        _render("{mkey}.filterdrecv-{pod}-1-{podts}-{n1}.0").alias("sg_message_id"),
    )
    category = pl.col("u_cat")
    keyed = msgs.select("msg", "smtp_id", "sg_message_id", "u_cat")
    texts = {i: _format_reply(r, "sendgrid") for i, r in enumerate(_REPLIES)}
    att = _render_by_template(att, texts, "text").join(keyed, on="msg", maintain_order="left")
    cats = pl.lit(pl.Series([r.category for r in _REPLIES], dtype=pl.String)).gather(pl.col("tpl"))
    att = att.with_columns(
        cats.alias("cat"),
        (pl.col("a") + 1).cast(pl.String).alias("attempt"),
        pl.lit(pl.Series([r.dsn for r in _REPLIES])).gather(pl.col("tpl")).alias("dsn"),
    )
    rc = rc.join(keyed, on="msg", maintain_order="left")

    def common(event: str) -> list[pl.Expr]:
        return [
            pl.col("rcpt").alias("email"),
            (pl.col("ts") // _US).alias("timestamp"),
            pl.col("smtp_id").alias("smtp-id"),
            pl.lit(event).alias("event"),
            pl.when(category < 0.5)
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

    def as_list(fields: list[pl.Expr]) -> list[pl.Expr]:
        return [
            pl.concat_list(pl.lit("transactional"), pl.lit("receipt")).alias("category")
            if f.meta.output_name() == "category"
            else f
            for f in fields
        ]

    pieces: list[pl.DataFrame] = []

    def emit(frame: pl.DataFrame, event: str, extra: list[pl.Expr], step: pl.Expr | int) -> None:
        frame = frame.with_columns(
            (step if isinstance(step, pl.Expr) else pl.lit(step)).cast(pl.Int64).alias("step"),
            pl.int_range(0, pl.len(), dtype=pl.Int64).alias("row") + len(pieces) * 10_000_000,
        )
        # A category is a string, or a list for messages sent with several (u_cat >= 0.8).
        single = frame.filter(pl.col("u_cat") < 0.8)
        several = frame.filter(pl.col("u_cat") >= 0.8)
        pieces.append(_json(single, common(event) + extra))
        pieces.append(_json(several, as_list(common(event)) + extra))

    # {"email":"anna.novak@gmail.com","timestamp":1795738737,"smtp-id":"<...>",
    #  "event":"processed",...}
    emit(rc.filter(~pl.col("dropped")).with_columns(pl.col("t0").alias("ts")), "processed", [], 0)
    dropped = rc.filter(pl.col("dropped")).with_columns(pl.col("t0").alias("ts"))
    # {"email":...,"event":"dropped",...,"reason":"Bounced Address","status":"5.0.0"}
    emit(
        dropped,
        "dropped",
        [
            _pick(_SG_DROP_REASONS, pl.col("drop_i")).alias("reason"),
            pl.lit("5.0.0").alias("status"),
        ],
        0,
    )
    ip = pl.lit("149.72.").add(pl.lit("34.12")).alias("ip")
    step = 1 + pl.col("a") * 10
    # {"email":...,"event":"deferred","ip":"149.72.34.12","response":"421 4.7.28 ...","attempt":"1"}
    emit(
        att.filter(pl.col("status") == "deferred"),
        "deferred",
        [ip, pl.col("text").alias("response"), pl.col("attempt"), pl.lit(1).alias("tls")],
        step,
    )
    # {"email":...,"event":"delivered","ip":"149.72.34.12","response":"250 2.0.0 OK ...","tls":1}
    emit(
        att.filter(pl.col("status") == "sent"),
        "delivered",
        [ip, pl.col("text").alias("response"), pl.lit(1).alias("tls")],
        step,
    )
    # {"email":...,"event":"bounce","reason":"550 5.1.1 ...","status":"5.1.1","type":"bounce",
    #  "bounce_classification":"Invalid Address"}
    bounced = att.filter(pl.col("status") == "bounced")
    emit(
        bounced,
        "bounce",
        [
            ip,
            pl.col("text").alias("reason"),
            pl.col("dsn").alias("status"),
            pl.lit(1).alias("tls"),
            pl.when(pl.col("cat").is_in(sorted(_SG_BLOCKED)))
            .then(pl.lit("blocked"))
            .otherwise(pl.lit("bounce"))
            .alias("type"),
            pl.col("cat")
            .replace_strict(_SG_CLASS, default="Unclassified")
            .alias("bounce_classification"),
        ],
        step,
    )
    delivered = att.filter(pl.col("status") == "sent").select("msg", "j", "ts")
    engaged = rc.join(delivered, on=["msg", "j"], maintain_order="left").with_columns(
        (pl.col("ts") + (pl.col("u_open") * 3_600 * _US).cast(pl.Int64)).alias("ts")
    )
    opens = engaged.filter(pl.col("u_open") < 0.3)
    ua = _pick(_UA, (pl.col("u_click") * len(_UA)).cast(pl.Int64)).alias("useragent")
    emit(
        opens,
        "open",
        [ua, pl.lit("66.249.84.13").alias("ip"), pl.lit(False).alias("sg_machine_open")],
        50,
    )
    clicks = engaged.filter(pl.col("u_click") < 0.08).with_columns(pl.col("ts") + 20 * _US)
    emit(
        clicks,
        "click",
        [
            ua,
            pl.lit("66.249.84.13").alias("ip"),
            pl.lit("https://shop.example.com/offer?utm_source=mail").alias("url"),
        ],
        51,
    )
    spam = engaged.filter(pl.col("u_spam") < 0.004).with_columns(pl.col("ts") + 60 * _US)
    # {"email":...,"timestamp":...,"event":"spamreport",...}
    emit(spam, "spamreport", [], 52)
    unsub = engaged.filter(pl.col("u_unsub") < 0.005).with_columns(pl.col("ts") + 90 * _US)
    emit(unsub, "unsubscribe", [], 53)

    frame = (
        pl.concat([p for p in pieces if p.height], how="vertical")
        if any(p.height for p in pieces)
        else _empty_json()
    )
    k = _fit_events(frame, size - max(1, size // 50))
    frame = frame.filter(pl.col("msg") < k)
    truth.messages += k
    # Events: per-frame truth rows.
    att_k = att.filter(pl.col("msg") < k)
    event_rows = [
        _attempt_events(att_k.filter(pl.col("status") == "bounced")),  # "status" field
        _attempt_events(att_k.filter(pl.col("status") != "bounced"), _TEXT_DSN),
        dropped.filter(pl.col("msg") < k).select(
            pl.lit("dropped").alias("event"),
            "domain",
            pl.lit(None, pl.Int64).alias("smtp_code"),
            pl.lit("5.0.0").alias("enhanced_code"),
            pl.lit(None, pl.String).alias("template"),
        ),
        spam.filter(pl.col("msg") < k).select(
            pl.lit("complained").alias("event"),
            "domain",
            pl.lit(None, pl.Int64).alias("smtp_code"),
            pl.lit(None, pl.String).alias("enhanced_code"),
            pl.lit(None, pl.String).alias("template"),
        ),
    ]
    events = pl.concat(event_rows)
    truth._add(events)
    truth.event_records += events.height
    # Fill: messages still being processed when the export was taken.
    filler = size - frame.height
    fill = _esp_filler(rng, filler, start_us, span_us).with_columns(
        pl.concat_str(pl.col("mkey"), pl.lit(".filterdrecv-5bd7d8c8b5-hrl9x-1-6747A1B2-1.0")).alias(
            "sg_message_id"
        ),
        _render("<{mkey}@ismtpd0001p1mdw1.sendgrid.net>").alias("smtp_id"),
        pl.lit(0.0).alias("u_cat"),
        pl.lit(0, pl.Int64).alias("step"),
        (pl.int_range(0, pl.len(), dtype=pl.Int64) + 99_000_000).alias("row"),
    )
    filled = _json(fill, common("processed"))
    return pl.concat([frame, filled], how="vertical")


def _empty_json() -> pl.DataFrame:
    return pl.DataFrame(
        schema={"ts": pl.Int64, "msg": pl.Int64, "step": pl.Int64, "json": pl.String}
    )


def _esp_filler(rng: _Rng, n: int, start_us: int, span_us: int) -> pl.DataFrame:
    """`n` recipients accepted at the very end of the window (no outcome yet)."""
    return pl.select(
        (
            pl.lit(start_us + span_us - span_us // 50, pl.Int64)
            + (rng.floats(n) * (span_us // 50)).cast(pl.Int64)
        ).alias("ts"),
        (pl.lit(10_000_000, pl.Int64) + pl.int_range(0, n, dtype=pl.Int64)).alias("msg"),
        pl.concat_str(
            _pick(_FIRST, rng.ints(n, 0, len(_FIRST))),
            pl.lit("."),
            _pick(_LAST, rng.ints(n, 0, len(_LAST))),
            pl.lit("@gmail.com"),
        ).alias("rcpt"),
        rng.token(n, 22, _B64URL).alias("mkey"),
        rng.token(n, 22, _B64URL).alias("eid"),
    )


def _mailgun_segment(
    rng: _Rng, size: int, start_us: int, span_us: int, webhooks: bool, cover: bool, truth: Truth
) -> pl.DataFrame:
    msgs, att, rc = _esp_frames(rng, size // 3 + 4, start_us, span_us, cover)
    msgs = msgs.with_columns(
        _render("{mid_t}.{mid_a}@mg.{sender_domain}").alias("mg_mid"),
        pl.when(pl.col("u_cat") < 0.5)
        .then(pl.lit("newsletter"))
        .otherwise(pl.lit("receipt"))
        .alias("tag"),
    )
    keyed = msgs.select("msg", "mg_mid", "tag", "mkey")
    texts = {i: _format_reply(r, "mailgun") for i, r in enumerate(_REPLIES)}
    att = _render_by_template(att, texts, "text").join(keyed, on="msg", maintain_order="left")
    att = att.with_columns(
        pl.lit(pl.Series([r.dsn for r in _REPLIES])).gather(pl.col("tpl")).alias("dsn"),
        pl.lit(pl.Series([r.code for r in _REPLIES], dtype=pl.Int64))
        .gather(pl.col("tpl"))
        .alias("code"),
        (rng.floats(att.height) * 2).round(3).alias("session_s"),
    )
    rc = rc.join(keyed, on="msg", maintain_order="left").join(
        msgs.select("msg", "sender", "size"), on="msg", maintain_order="left"
    )
    pieces: list[pl.DataFrame] = []
    sig_n = 0

    def emit(frame: pl.DataFrame, fields: list[pl.Expr], step: pl.Expr | int) -> None:
        nonlocal sig_n
        n = frame.height
        frame = frame.with_columns(
            (step if isinstance(step, pl.Expr) else pl.lit(step)).cast(pl.Int64).alias("step"),
            rng.token(n, 22, _B64URL).alias("event_id"),
        )
        data = [
            pl.col("event_id").alias("id"),
            (pl.col("ts").cast(pl.Float64) / _US).alias("timestamp"),
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
        if webhooks:
            sig_n += 1
            body = [
                pl.struct(
                    rng.token(n, 50, _hex).alias("token"),
                    (pl.col("ts") // _US).cast(pl.String).alias("timestamp"),
                    rng.token(n, 64, _hex).alias("signature"),
                ).alias("signature"),
                pl.struct(data).alias("event-data"),
            ]
        else:
            body = data
        pieces.append(_json(frame, body))

    envelope = pl.struct(
        pl.lit("smtp").alias("transport"),
        pl.col("sender"),
        pl.lit("159.135.228.10").alias("sending-ip"),
        pl.col("rcpt").alias("targets"),
    ).alias("envelope")
    accepted = rc.filter(~pl.col("dropped")).with_columns(pl.col("t0").alias("ts"))
    # {"id":"...","timestamp":1795738737.1,"event":"accepted","log-level":"info",
    #  "method":"HTTP",...}
    emit(
        accepted,
        [
            pl.lit("accepted").alias("event"),
            pl.lit("info").alias("log-level"),
            pl.lit("HTTP").alias("method"),
        ],
        0,
    )

    def status(fields: list[pl.Expr]) -> pl.Expr:
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

    att_env = att.join(
        msgs.select("msg", pl.col("sender").alias("sender_m")), on="msg", maintain_order="left"
    ).with_columns(pl.col("sender_m").alias("sender"))
    step = 1 + pl.col("a") * 10
    # {"event":"delivered","delivery-status":{"code":250,"message":"OK",...},...}
    emit(
        att_env.filter(pl.col("status") == "sent"),
        [
            pl.lit("delivered").alias("event"),
            pl.lit("info").alias("log-level"),
            envelope,
            status([pl.lit("OK").alias("message"), pl.lit("").alias("description")]),
        ],
        step,
    )
    # {"event":"failed","severity":"temporary","reason":"generic","delivery-status":{"code":452,
    #  "enhanced-code":"4.2.2","message":"4.2.2 The recipient's inbox is out of storage ...",...}}
    expire_last = (pl.col("outcome") == _EXPIRE) & (pl.col("a") == pl.col("k") - 1)
    temp = att_env.filter((pl.col("status") == "deferred") & ~expire_last)

    def failed(frame: pl.DataFrame, level: str, severity: str, reason: str, *more: pl.Expr) -> None:
        """A `failed` event of `frame`'s attempts: their code and text, and `more` status."""
        status_fields = [pl.col("dsn").alias("enhanced-code"), pl.col("text").alias("message")]
        fields = [
            pl.lit("failed").alias("event"),
            pl.lit(level).alias("log-level"),
            pl.lit(severity).alias("severity"),
            pl.lit(reason).alias("reason"),
            envelope,
            status([*status_fields, *more]),
        ]
        emit(frame, fields, step)

    failed(
        temp,
        "warn",
        "temporary",
        "generic",
        pl.lit("").alias("description"),
        pl.lit(600).alias("retry-seconds"),
    )
    # {"event":"failed","severity":"permanent","reason":"old",...} after the last retry
    old = att_env.filter((pl.col("status") == "deferred") & expire_last)
    failed(old, "error", "permanent", "old", pl.lit("Too old").alias("description"))
    # {"event":"failed","severity":"permanent","reason":"bounce","delivery-status":{"code":550,...}}
    bounced = att_env.filter(pl.col("status") == "bounced")
    failed(bounced, "error", "permanent", "bounce", pl.lit("").alias("description"))
    # {"event":"failed","severity":"permanent","reason":"suppress-bounce","delivery-status":
    #  {"code":605,"description":"Not delivering to previously bounced address",...}}
    dropped = rc.filter(pl.col("dropped")).with_columns(pl.col("t0").alias("ts"))
    emit(
        dropped,
        [
            pl.lit("failed").alias("event"),
            pl.lit("error").alias("log-level"),
            pl.lit("permanent").alias("severity"),
            pl.lit("suppress-bounce").alias("reason"),
            envelope,
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
    delivered = att.filter(pl.col("status") == "sent").select("msg", "j", "ts")
    engaged = rc.join(delivered, on=["msg", "j"], maintain_order="left").with_columns(
        (pl.col("ts") + (pl.col("u_open") * 3_600 * _US).cast(pl.Int64)).alias("ts")
    )
    geo = pl.struct(
        pl.lit("DE").alias("country"), pl.lit("BE").alias("region"), pl.lit("Berlin").alias("city")
    ).alias("geolocation")
    emit(
        engaged.filter(pl.col("u_open") < 0.3),
        [
            pl.lit("opened").alias("event"),
            pl.lit("info").alias("log-level"),
            pl.lit("66.249.84.13").alias("ip"),
            geo,
        ],
        50,
    )
    emit(
        engaged.filter(pl.col("u_click") < 0.08).with_columns(pl.col("ts") + 20 * _US),
        [
            pl.lit("clicked").alias("event"),
            pl.lit("info").alias("log-level"),
            pl.lit("https://shop.example.com/offer").alias("url"),
            geo,
        ],
        51,
    )
    spam = engaged.filter(pl.col("u_spam") < 0.004).with_columns(pl.col("ts") + 60 * _US)
    # {"event":"complained","log-level":"warn",...}
    emit(spam, [pl.lit("complained").alias("event"), pl.lit("warn").alias("log-level")], 52)
    emit(
        engaged.filter(pl.col("u_unsub") < 0.005).with_columns(pl.col("ts") + 90 * _US),
        [pl.lit("unsubscribed").alias("event"), pl.lit("info").alias("log-level")],
        53,
    )

    frame = (
        pl.concat([p for p in pieces if p.height], how="vertical")
        if any(p.height for p in pieces)
        else _empty_json()
    )
    k = _fit_events(frame, size - max(1, size // 50))
    frame = frame.filter(pl.col("msg") < k)
    truth.messages += k
    kept = pl.col("msg") < k
    none_i, none_s = pl.lit(None, pl.Int64), pl.lit(None, pl.String)
    reply_id = pl.lit(pl.Series([r.id for r in _REPLIES], dtype=pl.String)).gather(pl.col("tpl"))
    event_rows = [
        _attempt_events(att.filter(kept & (pl.col("status") == "bounced"))),
        _attempt_events(att.filter(kept & (pl.col("status") == "deferred") & ~expire_last)),
        _attempt_events(
            att.filter(kept & (pl.col("status") == "sent")), tuple(None for _ in _REPLIES)
        ),
        att.filter(kept & (pl.col("status") == "deferred") & expire_last).select(
            pl.lit("expired").alias("event"),
            "domain",
            pl.col("code").alias("smtp_code"),
            pl.col("dsn").alias("enhanced_code"),
            reply_id.alias("template"),
        ),
        dropped.filter(kept).select(
            pl.lit("dropped").alias("event"),
            "domain",
            none_i.alias("smtp_code"),  # 605 is Mailgun's, not an SMTP reply
            none_s.alias("enhanced_code"),
            none_s.alias("template"),
        ),
        spam.filter(kept).select(
            pl.lit("complained").alias("event"),
            "domain",
            none_i.alias("smtp_code"),
            none_s.alias("enhanced_code"),
            none_s.alias("template"),
        ),
    ]
    events = pl.concat(event_rows)
    truth._add(events)
    truth.event_records += events.height
    fill = _esp_filler(rng, size - frame.height, start_us, span_us).with_columns(
        pl.lit("gmail.com").alias("domain"),
        pl.concat_str(pl.col("mkey"), pl.lit("@mg.example.com")).alias("mg_mid"),
        pl.lit("newsletter").alias("tag"),
    )
    pieces.clear()
    emit(
        fill,
        [
            pl.lit("accepted").alias("event"),
            pl.lit("info").alias("log-level"),
            pl.lit("HTTP").alias("method"),
        ],
        0,
    )
    return pl.concat([frame, *pieces], how="vertical")


# --------------------------------------------------------------------------------------------
# Command line.


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bounce_analyzer.generate postfix --lines N --seed S -o FILE --truth FILE`."""
    parser = argparse.ArgumentParser(prog="python -m bounce_analyzer.generate", description=__doc__)
    parser.add_argument("source", choices=["postfix", "exim", "sendgrid", "mailgun"])
    parser.add_argument("--lines", type=int, default=10_000, help="lines (or JSON events) to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", default="2026-11-27T00:00:00+00:00", help="ISO 8601 start")
    parser.add_argument("--days", type=float, default=1.0)
    parser.add_argument("--tz", default="UTC", help="zone of log timestamps (postfix, exim)")
    parser.add_argument("--rfc3339", action="store_true", help="postfix: RFC 3339 timestamps")
    parser.add_argument("--long-queue-ids", action="store_true", help="postfix: long queue ids")
    parser.add_argument("--new-ids", action="store_true", help="exim: 4.97 message ids")
    parser.add_argument("--array", action="store_true", help="sendgrid: one JSON array")
    parser.add_argument("--events-api", action="store_true", help="mailgun: Events API items")
    parser.add_argument("--cover", action="store_true", help="every failure text at least once")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--truth", type=Path, help="where to write the true counts (JSON)")
    args = parser.parse_args(argv)
    common = {
        "seed": args.seed,
        "start": datetime.fromisoformat(args.start),
        "days": args.days,
        "cover": args.cover,
    }
    if args.source == "postfix":
        truth = generate_postfix(
            args.output,
            lines=args.lines,
            tz=args.tz,
            classic_timestamps=not args.rfc3339,
            long_queue_ids=args.long_queue_ids,
            **common,
        )
    elif args.source == "exim":
        truth = generate_exim(
            args.output, lines=args.lines, tz=args.tz, new_ids=args.new_ids, **common
        )
    elif args.source == "sendgrid":
        truth = generate_sendgrid(args.output, events=args.lines, ndjson=not args.array, **common)
    else:
        truth = generate_mailgun(
            args.output, events=args.lines, webhooks=not args.events_api, **common
        )
    if args.truth is not None:
        args.truth.write_text(truth.to_json() + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
