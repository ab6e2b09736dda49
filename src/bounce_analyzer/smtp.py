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

#: An SMTP reply code (RFC 5321 section 4.2: first digit 2-5, second digit 0-5, third 0-9).
REPLY_CODE = r"[2-5][0-5][0-9]"

#: An enhanced mail system status code as logs and payloads write it (RFC 3463 section 2:
#: class 2, 4 or 5; subject and detail of one to three digits).
ENHANCED_CODE = r"[245]\.[0-9]{1,3}\.[0-9]{1,3}"

#: An enhanced code whose subject is one RFC 3463 defines (X.0 to X.7): what free text is
#: searched for, where a looser shape would take version numbers and dates for codes.
ENHANCED_CODE_KNOWN = r"[245]\.[0-7]\.[0-9]{1,3}"


def domain_of(address: pl.Expr) -> pl.Expr:
    """The lower-cased domain of an address: what follows its last `@`, without a closing `>`
    and surrounding white space; null where there is none or it holds white space."""
    return address.str.extract(r"@([^@\s>]+)\s*>?\s*$", 1).str.to_lowercase()


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
