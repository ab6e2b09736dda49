"""The generator's world, read from the data files beside this module: the receiving domains
and their MX hosts (world.toml), the replies their servers give (replies.toml), the people and
hosts on both sides (world.toml), and the lines between messages (noise.toml)."""

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
    """What a reject line among the noise is: a `rejected` event with these facts."""

    id: str
    smtp_code: int | None
    enhanced_code: str | None
    category: str


@dataclass(frozen=True)
class NoiseLine:
    """One shape of line between messages, and how often it is drawn."""

    weight: float
    text: str
    process: str | None = None  # Postfix's daemon
    reject: Reject | None = None


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
        ),
    )


_WORLD = _load("world.toml")

#: The sending server's public address (TEST-NET-3) and host name.
OUR_IP: str = _WORLD["our_ip"]
HOST: str = _WORLD["host"]

DOMAINS = tuple(
    Domain(d["name"], float(d["weight"]), d["provider"], tuple(d["mx"]), d["ip_prefix"])
    for d in _WORLD["domain"]
)
FIRST_NAMES: tuple[str, ...] = tuple(_WORLD["first_names"])
LAST_NAMES: tuple[str, ...] = tuple(_WORLD["last_names"])
#: Our senders: (local part, domain).
SENDERS: tuple[tuple[str, str], ...] = tuple((s[0], s[1]) for s in _WORLD["senders"])
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
