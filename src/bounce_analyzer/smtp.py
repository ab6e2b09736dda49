"""The SMTP vocabulary, defined once: reply codes, enhanced status codes, the domain of an
address, and the machine's local time zone (the zone syslog writes its stamps in).

Every module that recognises one of these notions takes it from here, so that a reply code is
the same thing in a Postfix line, an Exim line, a webhook payload and a report's message key.
"""

from __future__ import annotations

import os
import time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl

#: The second and third digits of a reply code (RFC 5321 section 4.2: 0-5, then 0-9).
_REPLY_DIGITS = r"[0-5][0-9]"

#: An SMTP reply code (RFC 5321 section 4.2: first digit 2-5, second digit 0-5, third 0-9):
#: what a log or payload gives as the reply, where its format says a reply stands.
REPLY_CODE = rf"[2-5]{_REPLY_DIGITS}"

#: A completion reply code (RFC 5321 section 4.2.1: 2yz positive, 4yz transient negative, 5yz
#: permanent negative completion), not the intermediate 3yz that asks for more (`354` after
#: DATA) and ends nothing: what free text is searched for, where a number of three digits is a
#: reply only if it can be an outcome.
COMPLETION_REPLY_CODE = rf"[245]{_REPLY_DIGITS}"

#: An enhanced mail system status code as logs and payloads write it (RFC 3463 section 2:
#: class 2, 4 or 5; subject and detail of one to three digits).
ENHANCED_CODE = r"[245]\.[0-9]{1,3}\.[0-9]{1,3}"

#: An enhanced code whose subject is one RFC 3463 defines (X.0 to X.7): what free text is
#: searched for, where a looser shape would take version numbers and dates for codes.
ENHANCED_CODE_KNOWN = r"[245]\.[0-7]\.[0-9]{1,3}"


#: The characters regex `\s` matches (Unicode White_Space), as `domain_of` strips them.
_WHITE_SPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def domain_of(address: pl.Expr) -> pl.Expr:
    """The lower-cased domain of an address: what follows its last `@`, less a closing `>` and
    white space at the end; null where nothing follows, or what follows holds white space or a
    `>` before its end."""
    # The whole match, then its `@` and its tail cut off: a capture group would cost the slower
    # regex engine that resolves groups (twice the time on 1M addresses). The domain holds no
    # `>` and no white space, so stripping those from its end takes off the tail alone.
    return (
        address.str.extract(r"@[^@\s>]+\s*>?\s*$", 0)
        .str.slice(1)
        .str.strip_chars_end(">" + _WHITE_SPACE)
        .str.to_lowercase()
    )


def local_zone() -> str:
    """The IANA name of this machine's zone (TZ, /etc/localtime, /etc/timezone), else the
    `Etc/GMT±h` zone of its current offset, else UTC."""
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    link = os.path.realpath("/etc/localtime")
    if "zoneinfo/" in link:
        candidates.append(link.split("zoneinfo/", 1)[1])
    try:
        with open("/etc/timezone", encoding="utf-8") as handle:
            candidates.append(handle.read().strip())
    except OSError:
        pass
    for name in candidates:
        if name and known_zone(name):
            return name
    hours, rest = divmod(time.localtime().tm_gmtoff, 3600)
    return f"Etc/GMT{-hours:+d}" if rest == 0 and hours else "UTC"


def known_zone(name: str) -> bool:
    """Whether `name` is a time zone this machine's zone database knows."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True
