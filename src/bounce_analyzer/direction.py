"""Which way the mail went: the `direction` verdict (docs/SCHEMA.md, Direction).

`direction_of` is one polars expression over the facts of an event (source, event,
transport, relay, recipient domain) and the settings of `rules/direction.toml`; the first row
of the decision table that fits an event decides, in the order docs/SCHEMA.md gives:

1. SendGrid and Mailgun events: outbound (an ESP sends only our mail);
2. a `rejected` event of Postfix or Exim: inbound (our server refused a client);
3. a relay in `inbound_relays`: inbound (a gateway handing inbound mail to an internal server);
4. a transport in `inbound_transports`: inbound; 5. in `outbound_transports`: outbound;
6. a delivery into our own mailboxes or programs (Postfix local, virtual, pipe, lmtp to a
   socket or to a loopback address; Exim's local transports, `:blackhole:`, a delivery with
   no host): inbound;
7. a relay at a loopback address (a content filter, whose mail comes back): internal;
8. a recipient domain in `local_domains`: inbound;
9. anything else (smtp to another host, error, retry, discard, expiries): outbound.

The classification engine gives every event its direction with it, and the store gives the
events of schema version 1 theirs with the same expression (`store.py`): the verdict depends
on facts and settings only, so it can be recomputed. Every part is vectorized; networks in
`inbound_relays` are looked up once per distinct relay address, and transport names once per
distinct transport.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from functools import lru_cache, partial

import polars as pl

from bounce_analyzer.rules import DirectionSettings
from bounce_analyzer.schema import FACT_SCHEMA, LOG_SOURCES, SOURCE_NAMES

__all__ = [
    "EXIM_INBOUND_TRANSPORTS",
    "POSTFIX_INBOUND_SERVICES",
    "DirectionSettings",
    "direction_of",
    "directions",
]

#: The Postfix services that deliver into our mailboxes or programs (lmtp too, to a socket or
#: a loopback address).
POSTFIX_INBOUND_SERVICES = ("local", "virtual", "pipe")

#: The Exim transports that deliver into our mailboxes or programs: Debian's exim4 defaults,
#: the names cPanel, Dovecot, procmail and maildrop setups use (`*`: any run of characters).
EXIM_INBOUND_TRANSPORTS = (
    "local_delivery",
    "mail_spool",
    "maildir_home",
    "address_pipe",
    "address_file",
    "address_directory",
    "address_reply",
    "*lmtp*",
    "dovecot*",
    "procmail*",
    "maildrop*",
)

#: The facts the decision reads (a frame without some of them has them null).
FACTS = ("source", "event", "transport", "relay_host", "relay_ip", "recipient", "recipient_domain")

_ESPS = [name for name in SOURCE_NAMES if name not in LOG_SOURCES]
_OUTBOUND, _INBOUND, _INTERNAL = "outbound", "inbound", "internal"


def _names(names: Sequence[str], column: pl.Expr) -> pl.Expr:
    """Whether `column` is one of `names`, where `*` matches any run of characters.

    The names are tested on the column's distinct values (a log has a few transports, and
    millions of events), then looked up for each event; a null stays null.
    """
    if not names:
        return pl.lit(False)

    def found(values: pl.Series) -> pl.Series:
        if values.null_count() == len(values):
            # (no value to test: a frame without the column, as `explain`'s)
            return pl.repeat(None, len(values), dtype=pl.Boolean, eager=True)
        distinct = values.unique().alias("value")
        named = distinct.to_frame().select(_name_test(names, pl.col("value"))).to_series()
        return values.is_in(distinct.filter(named.fill_null(False)).implode())

    return column.map_batches(found, pl.Boolean(), is_elementwise=True)


def _name_test(names: Sequence[str], column: pl.Expr) -> pl.Expr:
    """`_names` as an expression over every value of `column`.

    (`x*`, `*x` and `*x*` are literal tests, several times cheaper than a pattern.)
    """
    exact = [name for name in names if "*" not in name]
    found = column.is_in(exact) if exact else pl.lit(False)
    patterns = []
    for name in names:
        inner = name.strip("*")
        if "*" not in name or not inner:
            continue
        if "*" in inner:
            patterns.append(re.escape(name).replace(r"\*", ".*"))
        elif name.startswith("*") and name.endswith("*"):
            found = found | column.str.contains(inner, literal=True)
        elif name.endswith("*"):
            found = found | column.str.starts_with(inner)
        else:
            found = found | column.str.ends_with(inner)
    if patterns:
        found = found | column.str.contains(f"^(?:{'|'.join(patterns)})$")
    return found


def _domains(entries: Sequence[str], column: pl.Expr) -> pl.Expr:
    """Whether `column` (a lower-case domain or host) is one of the `entries` (`example.com`)
    or under one of them (`.example.com`: a subdomain)."""
    exact = [entry for entry in entries if not entry.startswith(".")]
    suffixes = [entry for entry in entries if entry.startswith(".")]
    found = column.is_in(exact) if exact else pl.lit(False)
    if suffixes:
        found = found | column.str.contains(f"(?:{'|'.join(map(re.escape, suffixes))})$")
    return found


def _in_networks(
    addresses: pl.Series, networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> pl.Series:
    """Whether each of `addresses` lies in one of `networks`, worked out once per distinct
    address (a log has a few thousand relays, and millions of events)."""
    distinct = addresses.drop_nulls().unique().to_list()
    inside = []
    for text in distinct:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            continue  # not an address (a socket path)
        if any(address in network for network in networks):
            inside.append(text)
    return addresses.is_in(inside)


def _relays(entries: Sequence[str]) -> pl.Expr:
    """Whether the event's relay is one of `entries` (`inbound_relays`)."""
    networks = []
    addresses = []
    hosts = []
    for entry in entries:
        try:
            if "/" in entry:
                networks.append(ipaddress.ip_network(entry))
            else:
                addresses.append(str(ipaddress.ip_address(entry)))
        except ValueError:
            hosts.append(entry)
    relay_ip = pl.col("relay_ip")
    found = pl.lit(False)
    if hosts:
        found = found | _domains(hosts, pl.col("relay_host").str.to_lowercase())
    if addresses:
        found = found | relay_ip.is_in(addresses)
    if networks:
        check = partial(_in_networks, networks=networks)
        found = found | relay_ip.map_batches(check, pl.Boolean(), is_elementwise=True)
    return found


@lru_cache(maxsize=16)
def direction_of(settings: DirectionSettings) -> pl.Expr:
    """The `direction` of each event: an expression of the `FACTS` columns (the table in the
    module docstring, first row that fits). Built once per settings (a classification call
    reads it)."""
    source, event, transport = pl.col("source"), pl.col("event"), pl.col("transport")
    relay_host, relay_ip = pl.col("relay_host"), pl.col("relay_ip")
    # 127.0.0.0/8, ::1 and IPv4-mapped 127.x, as Postfix and Exim write them
    loopback = (
        relay_ip.str.starts_with("127.")
        | (relay_ip == "::1")
        | relay_ip.str.starts_with("::ffff:127.")
    )
    # relay=mx1.example.com[private/dovecot-lmtp]: a socket, which has no address (or, when
    # Postfix could not connect, the socket's path where an address would be)
    socket = relay_ip.is_null() | relay_ip.str.contains("/", literal=True)
    postfix_inbound = (source == "postfix") & (
        transport.is_in(POSTFIX_INBOUND_SERVICES)
        | ((transport == "lmtp") & (socket | loopback))
        # schema version 1 has no transport: a relay named without an address is a local
        # program or socket (relay=local, relay=virtual, relay=dovecot)
        | (transport.is_null() & relay_host.is_not_null() & relay_ip.is_null())
    )
    exim_inbound = (source == "exim") & (
        _names(EXIM_INBOUND_TRANSPORTS, transport)
        | (pl.col("recipient") == ":blackhole:")
        # => alice <alice@example.com> R=local_user T=...   (a delivery to no host: local)
        | ((event == "delivered") & relay_host.is_null() & relay_ip.is_null())
    )
    return (
        pl.when(source.is_in(_ESPS))
        .then(pl.lit(_OUTBOUND))
        .when(source.is_in(LOG_SOURCES) & (event == "rejected"))
        .then(pl.lit(_INBOUND))
        .when(_relays(settings.inbound_relays))
        .then(pl.lit(_INBOUND))
        .when(_names(settings.inbound_transports, transport))
        .then(pl.lit(_INBOUND))
        .when(_names(settings.outbound_transports, transport))
        .then(pl.lit(_OUTBOUND))
        .when(postfix_inbound | exim_inbound)
        .then(pl.lit(_INBOUND))
        .when(loopback)
        .then(pl.lit(_INTERNAL))
        .when(_domains(settings.local_domains, pl.col("recipient_domain")))
        .then(pl.lit(_INBOUND))
        .otherwise(pl.lit(_OUTBOUND))
        .alias("direction")
    )


def directions(frame: pl.DataFrame, settings: DirectionSettings) -> pl.Series:
    """The `direction` of each row of `frame` (its `FACTS` columns; missing ones are null)."""
    missing = [pl.lit(None, FACT_SCHEMA[name]).alias(name) for name in FACTS if name not in frame]
    return frame.with_columns(missing).select(direction_of(settings)).to_series()
