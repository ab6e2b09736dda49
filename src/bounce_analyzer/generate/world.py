"""The generator's world, read from the data files beside this module: the receiving domains
and their MX hosts (world.toml), the replies their servers give (replies.toml), the people and
hosts on both sides and our own domains (world.toml), how our server delivers into our own
mailboxes (mailboxes.toml), and the lines between messages (noise.toml)."""

from __future__ import annotations

import importlib.resources
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl


def _load(name: str) -> dict[str, Any]:
    """A data file of this package, read from the checkout or the installed wheel."""
    data = importlib.resources.files("bounce_analyzer.generate").joinpath(name)
    with data.open("rb") as handle:
        return tomllib.load(handle)


@dataclass(frozen=True)
class Domain:
    """A receiving domain: how often mail goes to it, whose replies it gives, its MX hosts."""

    name: str
    weight: float
    provider: str
    mx: tuple[str, ...]
    ip_prefix: str  # two octets


@dataclass(frozen=True)
class Reply:
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


@dataclass(frozen=True)
class Reject:
    """What a reject line among the noise is: a `rejected` event with these facts; `domain`:
    its recipient's domain (None: example.com, or the HELO name for relay attempts)."""

    id: str
    smtp_code: int | None
    enhanced_code: str | None
    category: str
    domain: str | None = None


@dataclass(frozen=True)
class OwnDomain:
    """One of our own domains and the kind of delivery into its mailboxes, per MTA."""

    name: str
    postfix: str
    exim: str


@dataclass(frozen=True)
class MailboxText:
    """A line of our server about our own mailboxes (or the content filter's hop)."""

    id: str
    kind: str
    status: str  # "sent" | "deferred"
    text: str
    code: int | None = None
    dsn: str | None = None
    category: str | None = None
    agent: str | None = None  # Postfix's delivery agent
    relay: str | None = None  # Postfix's relay=
    route: str | None = None  # Exim's router and transport


@dataclass(frozen=True)
class NoiseLine:
    """One shape of line between messages, and how often it is drawn; `option`: drawn only
    when the generator is given this option (else never)."""

    weight: float
    text: str
    process: str | None = None  # Postfix's daemon
    reject: Reject | None = None
    option: str | None = None


def _reply(table: dict[str, Any]) -> Reply:
    return Reply(
        id=table["id"],
        status=table["status"],
        code=table.get("code"),
        dsn=table["dsn"],
        lines=tuple(table["lines"]),
        category=table.get("category"),
        stage=table.get("stage", "RCPT TO"),
        enhanced_in_text=table.get("enhanced_in_text", True),
        weight=float(table.get("weight", 1.0)),
        local=table.get("local", False),
        remote_relay=table.get("remote_relay", True),
        exim=table.get("exim"),
    )


def _noise_line(table: dict[str, Any]) -> NoiseLine:
    reject = table.get("reject")
    return NoiseLine(
        weight=float(table["weight"]),
        text=table["text"],
        process=table.get("process"),
        reject=None
        if reject is None
        else Reject(
            id=reject["id"],
            smtp_code=reject.get("smtp_code"),
            enhanced_code=reject.get("enhanced_code"),
            category=reject["category"],
            domain=reject.get("domain"),
        ),
        option=table.get("option"),
    )


def _mailbox_text(table: dict[str, Any]) -> MailboxText:
    return MailboxText(
        id=table["id"],
        kind=table["kind"],
        status=table["status"],
        text=table["text"],
        code=table.get("code"),
        dsn=table.get("dsn"),
        category=table.get("category"),
        agent=table.get("agent"),
        relay=table.get("relay"),
        route=table.get("route"),
    )


_WORLD = _load("world.toml")

#: The sending server's public address (TEST-NET-3), syslog host name and full name.
OUR_IP: str = _WORLD["our_ip"]
HOST: str = _WORLD["host"]
MYHOSTNAME: str = _WORLD["myhostname"]

DOMAINS = tuple(
    Domain(d["name"], float(d["weight"]), d["provider"], tuple(d["mx"]), d["ip_prefix"])
    for d in _WORLD["domain"]
)
FIRST_NAMES: tuple[str, ...] = tuple(_WORLD["first_names"])
LAST_NAMES: tuple[str, ...] = tuple(_WORLD["last_names"])
#: Our senders: (local part, domain); the same addresses receive other servers' mail.
SENDERS: tuple[tuple[str, str], ...] = tuple((s[0], s[1]) for s in _WORLD["senders"])
#: Whether each sender is a person (whose mail passes the content filter).
SENDER_IS_PERSON: tuple[bool, ...] = tuple(s[2] == "person" for s in _WORLD["senders"])
#: How often each sender's address is the recipient of other servers' mail.
INBOUND_WEIGHTS: tuple[float, ...] = tuple(float(w) for w in _WORLD["inbound_weights"])
#: Our own domains, with what delivers into their mailboxes.
OWN_DOMAINS: tuple[OwnDomain, ...] = tuple(OwnDomain(*d) for d in _WORLD["own_domains"])
#: The servers whose mail comes to us: (client name, address, sender's domain).
CORRESPONDENTS: tuple[tuple[str, str, str], ...] = tuple(
    (c[0], c[1], c[2]) for c in _WORLD["correspondents"]
)
#: The clients that hand mail to us: (name, address).
CLIENTS: tuple[tuple[str, str], ...] = tuple((c[0], c[1]) for c in _WORLD["clients"])
#: The client that submits locally (Postfix's pickup, Exim's P=local), not over SMTP: the last.
LOCAL_CLIENT = len(CLIENTS) - 1
HELOS: tuple[str, ...] = tuple(_WORLD["helos"])

REPLIES_BY_PROVIDER: dict[str, tuple[Reply, ...]] = {
    provider: tuple(_reply(r) for r in replies)
    for provider, replies in _load("replies.toml").items()
}
REPLIES: tuple[Reply, ...] = tuple(r for rs in REPLIES_BY_PROVIDER.values() for r in rs)
REPLY_INDEX = {r.id: i for i, r in enumerate(REPLIES)}
PROVIDERS = tuple(REPLIES_BY_PROVIDER)

#: Our server's lines about our own mailboxes and the content filter, by MTA (postfix, exim).
MAILBOX_TEXTS: dict[str, tuple[MailboxText, ...]] = {
    mta: tuple(_mailbox_text(text) for text in texts)
    for mta, texts in _load("mailboxes.toml").items()
}
MAILBOX_INDEX = {text.id: text for texts in MAILBOX_TEXTS.values() for text in texts}


def mailbox_text(mta: str, kind: str, status: str) -> MailboxText | None:
    """The text `mta` writes for a delivery of `kind` with `status` (None: it has none)."""
    found = [t for t in MAILBOX_TEXTS[mta] if t.kind == kind and t.status == status]
    return found[0] if found else None


def own_domain_of(sender_domain: str) -> OwnDomain:
    """Our own domain of that name."""
    return next(d for d in OWN_DOMAINS if d.name == sender_domain)


def mailbox_texts_by_sender(mta: str) -> tuple[list[int], list[int]]:
    """Per sender (SENDERS), the index in MAILBOX_TEXTS[mta] of the delivery into its
    mailbox, and of the deferral its mailbox can give (-1: none)."""
    texts = MAILBOX_TEXTS[mta]
    sent: list[int] = []
    deferred: list[int] = []
    for _, domain in SENDERS:
        kind = getattr(own_domain_of(domain), mta)
        sent.append(texts.index(mailbox_text(mta, kind, "sent")))
        defer = mailbox_text(mta, kind, "deferred")
        deferred.append(-1 if defer is None else texts.index(defer))
    return sent, deferred


#: The lines between messages, by source (postfix, exim).
NOISE: dict[str, tuple[NoiseLine, ...]] = {
    source: tuple(_noise_line(line) for line in lines)
    for source, lines in _load("noise.toml").items()
}
REJECTS = {
    line.reject.id: line.reject
    for lines in NOISE.values()
    for line in lines
    if line.reject is not None
}

#: The enhanced code as it shows in the text (Exim, SendGrid responses): none for the MTA's own
#: failures and for replies without one (Postfix's dsn=5.0.0 for "554 delivery error" is its own).
TEXT_DSN = tuple(r.dsn if r.enhanced_in_text and not r.local else None for r in REPLIES)


def per_reply(values: Sequence[object], dtype: pl.DataType | type[pl.DataType]) -> pl.Expr:
    """Each row's value of `values` (one per reply, in REPLIES order) for its reply (column tpl)."""
    return pl.lit(pl.Series(list(values), dtype=dtype)).gather(pl.col("tpl"))


def format_reply(reply: Reply, style: str) -> str:
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
