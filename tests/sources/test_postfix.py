"""The Postfix source: expectation tables over real and hand-written log lines."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bounce_analyzer.errors import UsageError
from bounce_analyzer.reading import Batch, expand_inputs, read_batches
from bounce_analyzer.sources import detect, get_source
from bounce_analyzer.sources.base import Source, SourceOutput
from bounce_analyzer.sources.postfix import Postfix

from ._helpers import consecutive_batches, event_at, merge, utc

DATA = Path(__file__).resolve().parents[1] / "data" / "postfix"
CORPUS = DATA / "corpus"
SYNTHETIC = DATA / "synthetic"
#: The modification time given to every test input: 2026-11-28 12:00 UTC.
MTIME = datetime(2026, 11, 28, 12, 0, tzinfo=UTC).timestamp()


def parse_bytes(
    data: bytes, *, path: str = "t.log", tz: str = "UTC", mtime: float | None = MTIME
) -> SourceOutput:
    batch = Batch(data=data, path=path, mtime=mtime)
    return merge(list(Postfix(tz=tz).parse([batch])))


def parse_file(path: Path, *, tz: str = "UTC", batch_bytes: int = 32 * 2**20) -> SourceOutput:
    os.utime(path, (MTIME, MTIME))
    [source] = expand_inputs([str(path)])
    return merge(list(Postfix(tz=tz).parse(read_batches(source, batch_bytes=batch_bytes))))


def copy_to(tmp_path: Path, source: Path) -> Path:
    target = tmp_path / source.name
    target.write_bytes(source.read_bytes())
    return target


# --- the contract -----------------------------------------------------------------------------


def test_postfix_is_a_registered_source() -> None:
    source = get_source("postfix", tz="UTC")
    assert isinstance(source, Postfix) and isinstance(source, Source)
    assert Postfix.name == "postfix"


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"Nov 28 10:00:00 mx postfix/smtp[123]: 3F2A1B: to=<a@example.com>, ...\n", True),
        (b"<22>Mar 14 11:18:49 mx postfix/smtp[60271]: 3D77: to=<a@example.com>\n", True),
        (b"2026-11-28T10:00:00.123456+01:00 mx postfix/qmgr[9]: 3F2A: removed\n", True),
        (b"2013 Jun 16 16:05:06.123 gds39d postfix/smtpd[7052]: connect from x\n", True),
        (b"Jan 31 13:55:24 xxx postfix-incoming/smtpd[3462]: NOQUEUE: reject: ...\n", True),
        (b"Nov 28 10:00:00 mx sshd[1]: Accepted\nNov 28 10:00:01 mx postfix/qmgr[2]: A\n", True),
        (b'{"MESSAGE":"x","SYSLOG_IDENTIFIER":"postfix/smtp","_PID":"1"}\n', True),
        (b"__CURSOR=s=1\nSYSLOG_IDENTIFIER=postfix/smtp\nMESSAGE=x\n", True),
        (b"2026-11-28 10:00:00 1rAbCd-000123-AB => a@example.com R=dnslookup\n", False),
        (b'{"event":"bounce","email":"a@example.com","sg_event_id":"x"}\n', False),
        (b"Nov 28 10:00:00 mx dovecot[1]: imap-login: Login\n", False),
        (b"", False),
    ],
)
def test_sniff(head: bytes, expected: bool) -> None:
    assert Postfix(tz="UTC").sniff(head) is expected


def test_detect_picks_postfix_for_a_postfix_log() -> None:
    assert detect((SYNTHETIC / "providers.log").read_bytes()[:4096]) == "postfix"


def test_unknown_time_zone_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown time zone 'Mars/Olympus'"):
        Postfix(tz="Mars/Olympus")


# --- exact fields -----------------------------------------------------------------------------

# file, line, expected fields (the others are checked to be null where listed as None).
EXPECTED: list[tuple[str, int, dict[str, Any]]] = [
    (
        "synthetic/providers.log",
        5,
        {
            "timestamp": utc(2026, 11, 27, 9, 0, 1),
            "host": "mx1",
            "event": "bounced",
            "message_ref": "4XyzAbc1dQz9mR",
            "message_id": "order-1001@shop.example.net",
            "sender": "news@shop.example.net",
            "sender_domain": "shop.example.net",
            "recipient": "jane.doe@gmail.com",
            "recipient_domain": "gmail.com",
            "original_recipient": None,
            "relay_host": "gmail-smtp-in.l.google.com",
            "relay_ip": "2001:db8:4860::1b",
            "client_host": None,
            "client_ip": None,
            "transport": "smtp",
            "smtp_code": 550,
            "enhanced_code": "5.1.1",
            "diagnostic": "host gmail-smtp-in.l.google.com[2001:db8:4860::1b] said: 550-5.1.1 "
            "The email account that you tried to reach does not exist. Please try 550-5.1.1 "
            "double-checking the recipient's email address for typos or 550-5.1.1 unnecessary "
            "spaces. For more information, go to 550 5.1.1  "
            "https://support.google.com/mail/?p=NoSuchUser "
            "a1-20020a05600c000000b00000000000si.0 - gsmtp (in reply to RCPT TO command)",
            "delay_s": 1.2,
        },
    ),
    (
        "synthetic/providers.log",
        6,
        {
            "event": "bounced",
            "recipient": "john.roe@outlook.com",
            "original_recipient": "john@example.org",
            "relay_host": "outlook-com.olc.protection.outlook.com",
            "relay_ip": "192.0.2.44",
            "smtp_code": 550,
            "enhanced_code": "5.5.0",
            "diagnostic": "host outlook-com.olc.protection.outlook.com[192.0.2.44] said: 550 "
            "5.5.0 Requested action not taken: mailbox unavailable (S2017062302). "
            "[AM0EUR00FT000.eop-EUR00.prod.protection.outlook.com 2026-11-27T09:00:02.000Z "
            "08DE000000000000] (in reply to RCPT TO command)",
            "sender": "news@shop.example.net",
        },
    ),
    (
        "synthetic/providers.log",
        7,
        {
            "event": "deferred",
            "recipient": "sam@yahoo.com",
            "relay_host": "mta5.am0.yahoodns.net",
            "smtp_code": 421,
            "enhanced_code": "4.7.0",
            "delay_s": 3.0,
        },
    ),
    (
        # postfix/error: relay=none, the host comes from the text
        "synthetic/providers.log",
        9,
        {
            "event": "deferred",
            "transport": "error",
            "relay_host": "mta5.am0.yahoodns.net",
            "relay_ip": "192.0.2.55",
            "smtp_code": 421,
            "enhanced_code": "4.7.0",
            "diagnostic": "delivery temporarily suspended: host mta5.am0.yahoodns.net"
            "[192.0.2.55] refused to talk to me: 421 4.7.0 [TSS04] Messages from 198.51.100.7 "
            "temporarily deferred",
            "delay_s": 600.0,
        },
    ),
    (
        # no from= line for this queue id: kept, sender unknown
        "synthetic/providers.log",
        11,
        {
            "event": "bounced",
            "message_ref": "3F2A1B2C3D",
            "sender": None,
            "sender_domain": None,
            "message_id": None,
            "recipient": "a@example.com",
            "relay_host": "mx.example.com",
            "relay_ip": "192.0.2.7",
            "smtp_code": 550,
            "enhanced_code": "5.1.1",
            "diagnostic": "host mx.example.com[192.0.2.7] said: 550 5.1.1 <a@example.com>: "
            "Recipient address rejected: User unknown (in reply to RCPT TO command)",
        },
    ),
    (
        # lmtp over a unix socket: no IP
        "synthetic/providers.log",
        12,
        {
            "event": "bounced",
            "transport": "lmtp",
            "relay_host": "mail.example.org",
            "relay_ip": None,
            "smtp_code": 552,
            "enhanced_code": "5.2.2",
        },
    ),
    (
        "synthetic/providers.log",
        13,
        {
            "event": "rejected",
            "message_ref": None,
            "sender": "spam@example.net",
            "recipient": "x@example.com",
            # the client our server refused (relay_* until issue 13)
            "relay_host": None,
            "relay_ip": None,
            "client_host": "unknown",
            "client_ip": "2001:db8::25",
            "transport": "smtpd",
            "smtp_code": 554,
            "enhanced_code": "5.7.1",
            "diagnostic": "554 5.7.1 <x@example.com>: Relay access denied",
        },
    ),
    (
        "synthetic/providers.log",
        14,
        {
            "event": "rejected",
            "message_ref": "6A7B8C9D0E",
            "sender": "s@example.net",
            "recipient": "r@example.com",
            "relay_host": None,
            "relay_ip": None,
            "client_host": "client.example.net",
            "client_ip": "192.0.2.99",
            "transport": "cleanup",
            "smtp_code": None,
            "enhanced_code": "5.7.1",
            "diagnostic": "5.7.1 Message content rejected",
        },
    ),
    (
        "synthetic/providers.log",
        16,
        {
            "event": "delivered",
            "smtp_code": 250,
            "enhanced_code": "2.0.0",
            "diagnostic": "250 2.0.0 OK 1795770900 z1si123456 - gsmtp",
        },
    ),
    (
        # <PRI> prefix; relay=none and no host in the text
        "corpus/SEKOIA-IO-intake-formats__Postfix_postfix_tests_bounced.json.log",
        1,
        {
            "timestamp": utc(2026, 3, 14, 11, 18, 49),
            "host": "hostname",
            "event": "bounced",
            "message_ref": "3D770111AF50",
            "recipient": "username@corp.com",
            "relay_host": None,
            "relay_ip": None,
            "smtp_code": None,
            "enhanced_code": "5.4.4",
            "diagnostic": "Host or domain name not found. Name service error for name=corp.com "
            "type=AAAA: Host not found",
            "delay_s": 1.2,
        },
    ),
    (
        # RFC 3339 stamp, IPv6 relay, multi-line Gmail reply; sender/Message-ID joined
        "corpus/youyo-postfix-log-parser__test_test-iso8601.log",
        40,
        {
            "timestamp": utc(2021, 2, 6, 10, 19, 26),
            "host": "mail1.example.com",
            "event": "bounced",
            "message_ref": "42E683DD0B",
            "message_id": "0tgs2nv56aexq9wn-dz6hijmzyfbesxxz-bcd8-493db@some.com",
            "sender": "18546-55426-655542-8520-recipient1=sender1@mail.some.com",
            "sender_domain": "mail.some.com",
            "recipient": "recipient1@destdom.com",
            "relay_host": "aspmx.l.google.com",
            "relay_ip": "2a00:1450:400c:c04::1b",
            "smtp_code": 550,
            "enhanced_code": "5.7.26",
            "delay_s": 0.59,
        },
    ),
    (
        # qmgr "removed" without colon after the pid; null sender <> kept as ""
        "corpus/youyo-postfix-log-parser__test_test-iso8601.log",
        35,
        {
            "timestamp": utc(2021, 2, 6, 10, 19, 18, 189624),
            "event": "bounced",
            "sender": "",
            "sender_domain": None,
            "message_id": "20210206101916.672CC1B4E5@sender.example.com",
            "recipient": "dest@domain.com",
            "smtp_code": 554,
            "enhanced_code": "5.7.1",
            "diagnostic": "host relay.domain.com[22.33.44.55] said: 554 5.7.1 <dest@domain.com>: "
            "Relay access denied (in reply to RCPT TO command)",
        },
    ),
    (
        "corpus/youyo-postfix-log-parser__test_test-milter.log",
        3,
        {
            "event": "rejected",
            "message_ref": "D6DDA23B0F",
            "message_id": "20210206095814.2B34E19A19F6@host.sender.domain",
            "sender": "user2@example.com",
            "recipient": "some.dest@destdomain.com",
            "relay_host": None,
            "relay_ip": None,
            "client_host": "unknown",
            "client_ip": "99.88.77.66",
            "smtp_code": None,
            "enhanced_code": "4.7.1",
            "diagnostic": "4.7.1 Greylisting in action, try again later",
        },
    ),
    (
        # year-first stamps with milliseconds, long queue ids, qmgr expiry
        "corpus/FgForrest-Postfix-Deliverability-Analytics__server_src_test_resources_META-INF_"
        "logs_parser_backup-single-client.log.1.log",
        26,
        {
            "timestamp": utc(2013, 6, 15, 16, 28, 52, 123000),
            "host": "gds39d",
            "event": "expired",
            "transport": "qmgr",
            "message_ref": "3bYscs22wBz37Dv",
            "message_id": "98494.321.654@test-mail-module",
            "sender": "no-reply@directmail.fg.cz",
            "recipient": None,
            "diagnostic": "returned to sender",
        },
    ),
    (
        "corpus/A1essandr0-postfix_log_parser__test_fixtures_error_mailbox_not_found.txt.log",
        2,
        {
            "timestamp": utc(2026, 7, 10, 10, 9, 21),
            "event": "bounced",
            "sender": "krasteplokomplekt@yandex.ru",
            "message_id": None,
            "recipient": "arsenya08@mail.ru",
            "relay_host": "mxs.mail.ru",
            "relay_ip": "94.100.176.20",
            "smtp_code": 550,
            "enhanced_code": "5.0.0",
            "diagnostic": "host mxs.mail.ru[94.100.176.20] said: 550 Message was not accepted -- "
            "invalid mailbox.  Local mailbox arsenya08@mail.ru is unavailable: user not found "
            "(in reply to end of DATA command)",
        },
    ),
    (
        # relay=none: the host and address come from "connect to host[ip]"
        "corpus/A1essandr0-postfix_log_parser__test_fixtures_error_expired.txt.log",
        21,
        {
            "event": "deferred",
            "relay_host": "yugorsk.ru",
            "relay_ip": "193.232.159.145",
            "smtp_code": None,
            "enhanced_code": "4.4.1",
            "diagnostic": "connect to yugorsk.ru[193.232.159.145]: No route to host",
            "delay_s": 94.0,
        },
    ),
    (
        # a content filter hop (amavis on 127.0.0.1:10024) with orig_to
        "corpus/pixelpark-postfix-logsums__tests_mail.log__excerpt.log",
        15,
        {
            "timestamp": utc(2023, 3, 13, 23, 8, 35, 948047),
            "event": "delivered",
            "message_ref": "4PbC4x469Jz3tBr",
            "original_recipient": "frank@brehm-berlin.de",
            "recipient": "user01.test@uhu-banane.net",
            "relay_host": "127.0.0.1",
            "relay_ip": "127.0.0.1",
            # postfix/amavis/smtp: a content filter's smtp client, named by its syslog_name
            "transport": "smtp",
        },
    ),
    (
        "corpus/fail2ban-fail2ban__fail2ban_tests_files_logs_postfix.log",
        2,
        {
            "timestamp": utc(2026, 7, 12, 7, 47, 48),
            "host": "saturn",
            "event": "rejected",
            "sender": "john@example.com",
            "recipient": "smtp@example.org",
            "relay_host": None,
            "relay_ip": None,
            "client_host": "1-2-3-4-example.com",
            "client_ip": "1.2.3.4",
            "smtp_code": 554,
            "enhanced_code": "5.7.1",
            "diagnostic": "554 5.7.1 <smtp@example.com>: Relay access denied",
        },
    ),
]


@pytest.mark.parametrize(
    ("file", "line", "expected"),
    EXPECTED,
    ids=[f"{file.rsplit('/', 1)[1][:24]}:{line}" for file, line, _ in EXPECTED],
)
def test_exact_fields(file: str, line: int, expected: dict[str, Any]) -> None:
    out = parse_file(DATA / file)
    event = event_at(out, f"{file.rsplit('/', 1)[1]}:{line}")
    assert {key: event[key] for key in expected} == expected
    assert event["source"] == "postfix"
    assert len(event["event_id"]) == 32


# --- the SMTP vocabulary (bounce_analyzer.smtp) ------------------------------------------------

STATUS = (
    "Nov 28 10:00:00 mx postfix/smtp[5]: 3F2A1B2C3D: to=<{to}>, relay=mx.b.example[192.0.2.7]:25,"
    " delay=1.2, delays=0.1/0/0.5/0.6, dsn={dsn}, status=bounced (host mx.b.example[192.0.2.7]"
    " said: {reply} unknown user (in reply to RCPT TO command))\n"
)


# recipient, dsn, the reply in the text -> recipient_domain, smtp_code, enhanced_code
VOCABULARY = [
    ("a@B.example", "5.1.1", "550 5.1.1", "b.example", 550, "5.1.1"),
    # a second digit 6 makes no reply code (560 was one before); the dsn gives the code
    ("a@b.example", "5.1.1", "560 5.1.1", "b.example", None, "5.1.1"),
    # class 3 makes no enhanced code (3.1.1 was one before); the dsn gives the code
    ("a@b.example", "5.1.1", "550 3.1.1", "b.example", 550, "5.1.1"),
    # white space at the end of the address is no part of the domain (it was before)
    ("a@b.example ", "5.1.1", "550 5.1.1", "b.example", 550, "5.1.1"),
]


@pytest.mark.parametrize(("to", "dsn", "reply", "domain", "code", "enhanced"), VOCABULARY)
def test_codes_and_domains_are_the_smtp_vocabulary(
    to: str, dsn: str, reply: str, domain: str, code: int | None, enhanced: str
) -> None:
    out = parse_bytes(STATUS.format(to=to, dsn=dsn, reply=reply).encode())
    row = event_at(out, ":1")
    assert (row["recipient_domain"], row["smtp_code"], row["enhanced_code"]) == (
        domain,
        code,
        enhanced,
    )


# The Verizon line of issue 14: the reply's enhanced code (4.2.1) disagrees in class with its
# reply code (550), so Postfix wrote its own dsn=5.0.0. The reply text is the one the issue
# quotes from a user's log; the line around it is Postfix's status line as above, with the
# address and the relay's address replaced.
VERIZON_14 = (
    "Nov 28 10:00:00 mx postfix/smtp[5]: 3F2A1B2C3D: to=<a.user@verizon.net>,"
    " relay=relay.verizon.net[192.0.2.25]:25, delay=1.2, delays=0.1/0/0.5/0.6, dsn=5.0.0,"
    " status=bounced (host relay.verizon.net[192.0.2.25] said: 550 4.2.1 mailbox temporarily"
    " disabled: a.user@verizon.net (in reply to RCPT TO command))\n"
)


def test_the_dsn_wins_over_the_code_in_the_text_14() -> None:
    """The event's enhanced code is the dsn Postfix logged, not the reply's 4.2.1 (it was)."""
    row = event_at(parse_bytes(VERIZON_14.encode()), ":1")
    assert (row["event"], row["smtp_code"], row["enhanced_code"]) == ("bounced", 550, "5.0.0")


# dsn, status, reply -> enhanced_code: the dsn wins whenever the line has one
DSN_WINS = [
    # the classes agree: Postfix copied the reply's code, the two are the same
    ("5.1.1", "bounced", "550 5.1.1", "5.1.1"),
    # soft_bounce=yes: Postfix defers the 5xx and writes its dsn with class 4
    ("4.1.1", "deferred", "550 5.1.1", "4.1.1"),
    # the reply gives no enhanced code: Postfix writes X.0.0 of the reply's class
    ("4.0.0", "deferred", "451", "4.0.0"),
]


@pytest.mark.parametrize(("dsn", "status", "reply", "enhanced"), DSN_WINS)
def test_the_dsn_is_the_enhanced_code(dsn: str, status: str, reply: str, enhanced: str) -> None:
    line = STATUS.format(to="a@b.example", dsn=dsn, reply=reply).replace("=bounced", "=" + status)
    assert event_at(parse_bytes(line.encode()), ":1")["enhanced_code"] == enhanced


def test_without_a_dsn_the_code_in_the_text_counts() -> None:
    """Postfix before 2.3 wrote no dsn=: the reply's enhanced code is the event's."""
    line = STATUS.replace(" dsn={dsn},", "").format(to="a@b.example", reply="550 5.1.1")
    assert event_at(parse_bytes(line.encode()), ":1")["enhanced_code"] == "5.1.1"


def test_a_dsn_that_is_no_enhanced_code_is_malformed() -> None:
    """`dsn=3.0.0` is no status Postfix writes: the line is unreadable (it was an event before)."""
    out = parse_bytes(STATUS.format(to="a@b.example", dsn="3.0.0", reply="550 5.1.1").encode())
    assert out.events.height == 0
    assert out.malformed["reason"].to_list() == ["unreadable recipient status line"]


# --- what other parsers assert about the same lines ---------------------------------------------


# SEKOIA-IO asserts (per message-only line) action.name and email.to.address; the lines have
# no syslog prefix, so the test adds one.
SEKOIA = [
    (1, "deferred", "admin@corp.com"),
    (2, "deferred", "user@example.com"),
    (3, "delivered", "firstname.lastname@corp.com"),
    (4, "delivered", "jdoe@example.org"),
    (5, "delivered", "jdoe@example.org"),
    (12, "delivered", "user@example.com"),
    (14, "delivered", "f.lastname@corp.com"),
    (17, "delivered", "user@example.com"),
    (18, "deferred", "rob@exemple.com"),
]


def test_sekoia_message_lines() -> None:
    text = (CORPUS / "SEKOIA-IO-intake-formats__Postfix_postfix_tests__msgonly.log").read_text()
    prefixed = "".join(
        f"Nov 28 10:00:00 mx postfix/smtp[1]: {line}\n" for line in text.splitlines()
    )
    out = parse_bytes(prefixed.encode(), path="sekoia")
    got = [
        (int(row["origin"].split(":")[1]), row["event"], row["recipient"])
        for row in out.events.to_dicts()
    ]
    assert got == SEKOIA
    # 6, 7: NOQUEUE filter; 8, 15, 16: "host said" before the status line; 9-11: TLS/warning;
    # 13: qmgr from= -- all skipped.
    assert (out.read, out.skipped, out.malformed_count) == (18, 9, 0)
    deferred = event_at(out, "sekoia:18")
    assert (deferred["relay_host"], deferred["relay_ip"], deferred["smtp_code"]) == (
        "exemple.com",
        "174.133.212.29",
        452,
    )
    assert deferred["enhanced_code"] == "4.3.1"
    assert event_at(out, "sekoia:5")["original_recipient"] is None
    assert event_at(out, "sekoia:17")["original_recipient"] == "john.doe@host.example.com"


# fail2ban asserts the client address of each reject (host) and the time (month, day, clock).
FAIL2BAN = [
    (1, "192.0.43.10", (2, 21, 9, 21, 54)),
    (2, "1.2.3.4", (7, 12, 7, 47, 48)),
    (3, "192.51.100.65", (7, 18, 23, 12, 56)),
    (4, "192.51.100.43", (7, 18, 23, 12, 56)),
    (5, "72.53.132.234", (8, 10, 10, 55, 38)),
    (9, "93.184.216.34", (12, 21, 21, 17, 29)),
    (10, "1.2.3.4", (11, 22, 22, 33, 44)),
    (11, "78.107.251.238", (1, 31, 13, 55, 24)),
    (12, "78.107.251.238", (1, 31, 13, 55, 24)),
]


# Both directions on one Debian/Ubuntu server (tests/data/direction/postfix-debian.log):
# line -> event, transport, recipient, relay_host, relay_ip, client_host, client_ip
DEBIAN = [
    # postscreen: "NOQUEUE: reject: RCPT from [ip]:port: ...; from=<s>, to=<a>, proto=ESMTP"
    (5, "rejected", "postscreen", "alice@example.com", None, None, None, "203.0.113.45"),
    (12, "delivered", "smtp", "jane.doe@gmail.com", "gmail-smtp-in.l.google.com", "192.0.2.27",
     None, None),
    (13, "bounced", "smtp", "nobody@example.org", "mx.example.org", "192.0.2.25", None, None),
    (14, "bounced", "smtp", "john.roe@outlook.com", "outlook-com.olc.protection.outlook.com",
     "192.0.2.44", None, None),
    # the bounce notice of line 13, delivered into a local mailbox
    (19, "delivered", "local", "news@example.com", "local", None, None, None),
    (22, "rejected", "smtpd", "bob@example.com", None, None, "unknown", "203.0.113.77"),
    (24, "rejected", "smtpd", "nobody@example.com", None, None, "mail.example.org",
     "192.0.2.25"),
    (25, "rejected", "smtpd", "victim@example.net", None, None, "unknown", "203.0.113.9"),
    (26, "rejected", "smtpd", "carol@example.com", None, None, "unknown", "203.0.113.12"),
    # postfix/submission/smtpd
    (27, "rejected", "smtpd", "friend@example.org", None, None, "unknown", "203.0.113.50"),
    # the content filter hop, then dovecot's lmtp socket
    (33, "delivered", "smtp", "alice@example.com", "127.0.0.1", "127.0.0.1", None, None),
    (40, "delivered", "lmtp", "alice@example.com", "mx1.example.com", None, None, None),
    (43, "bounced", "lmtp", "dave@example.com", "127.0.0.1", "127.0.0.1", None, None),
    (46, "delivered", "virtual", "erin@example.net", "virtual", None, None, None),
    (47, "deferred", "pipe", "frank@example.com", "dovecot", None, None, None),
    (48, "bounced", "local", "olduser@mx1.example.com", "local", None, None, None),
    (49, "rejected", "cleanup", "frank@example.com", None, None, "unknown", "203.0.113.88"),
    (50, "deferred", "error", "sales@example.net", "mx.example.net", "192.0.2.5", None, None),
    (51, "expired", "qmgr", None, None, None, None, None),
    # postfix-out/smtp (a second instance)
    (52, "deferred", "smtp", "sam@yahoo.com", "mta5.am0.yahoodns.net", "192.0.2.55", None, None),
]  # fmt: skip
DEBIAN_FIELDS = (
    "event", "transport", "recipient", "relay_host", "relay_ip", "client_host", "client_ip",
)  # fmt: skip


def test_the_program_and_the_peer_of_each_event_issue_13() -> None:
    log = DATA.parent / "direction" / "postfix-debian.log"
    out = parse_bytes(log.read_bytes(), path="postfix-debian.log")
    got = {
        int(row["origin"].rsplit(":", 1)[1]): tuple(row[f] for f in DEBIAN_FIELDS)
        for row in out.events.to_dicts()
    }
    assert got == {line: tuple(fields) for line, *fields in DEBIAN}
    assert (out.read, out.skipped, out.malformed_count) == (52, 32, 0)


def test_fail2ban_rejects() -> None:
    out = parse_file(CORPUS / "fail2ban-fail2ban__fail2ban_tests_files_logs_postfix.log")
    got = [
        (
            int(row["origin"].rsplit(":", 1)[1]),
            row["client_ip"],  # (relay_ip until issue 13)
            (row["timestamp"].month, row["timestamp"].day)
            + (row["timestamp"].hour, row["timestamp"].minute, row["timestamp"].second),
        )
        for row in out.events.to_dicts()
    ]
    assert got == FAIL2BAN
    assert set(out.events["event"]) == {"rejected"}
    # improper pipelining lines (6-8) are not outcomes
    assert (out.read, out.skipped, out.malformed_count) == (12, 3, 0)


def test_youyo_readme_line() -> None:
    out = parse_file(CORPUS / "youyo-postfix-log-parser__README.md.log")
    [row] = out.events.to_dicts()
    assert (row["host"], row["message_ref"], row["recipient"], row["event"]) == (
        "mail.example.com",
        "DFBEFDBF00C5",
        "test@example-to.com",
        "delivered",
    )


# A1essandr0/postfix_log_parser asserts, per fixture and envelope sender, how many messages
# were finally delivered or failed, and the delivered recipients.
A1ESSANDR0 = {
    "sent_rightaway": {
        "t.ivanova@dalvl.ru": (1, 0, ["elena_buh@krovinfo.ru"]),
        "oksana_b@kubometr-samara.ru": (1, 0, ["ninachekmeneva@mail.ru"]),
        "VolodinV@echoavto.ru": (1, 0, ["e.baklagenko@echoauto.ru"]),
        "sclad@cement116.ru": (1, 0, ["cembaza@mail.ru"]),
    },
    "sent_after": {
        "krasteplokomplekt@yandex.ru": (2, 0, ["arsez24@rambler.ru", "arsez@rambler.ru"]),
        "roman@skgsk.ru": (1, 0, ["malkina@pkdt.ru"]),
    },
    "greylisting_spam": {
        "krasteplokomplekt@yandex.ru": (0, 1, []),
        "": (1, 0, ["krasteplokomplekt@yandex.ru"]),
    },
    "error_mailbox_not_found": {
        "krasteplokomplekt@yandex.ru": (0, 1, []),
        "": (1, 0, ["krasteplokomplekt@yandex.ru"]),
        "r.ismiev@energomost-group.ru": (0, 1, []),
    },
    "error_expired": {"tduds@wmess.ru": (0, 2, [])},
}


@pytest.mark.parametrize("fixture", list(A1ESSANDR0))
def test_a1essandr0_per_sender_outcomes(fixture: str) -> None:
    path = CORPUS / f"A1essandr0-postfix_log_parser__test_fixtures_{fixture}.txt.log"
    events = parse_file(path).events
    assert events["sender"].null_count() == 0
    got = {}
    for sender in events["sender"].unique().to_list():
        mine = events.filter(pl.col("sender") == sender)
        delivered = mine.filter(pl.col("event") == "delivered")
        failed = mine.filter(pl.col("event").is_in(["bounced", "expired"]))
        got[sender] = (
            delivered["message_ref"].n_unique(),
            failed["message_ref"].n_unique(),
            sorted(delivered["recipient"].to_list(), key=lambda r: r.replace("@", " ")),
        )
    expected = {
        sender: (d, f, sorted((r.lower() for r in rs), key=lambda r: r.replace("@", " ")))
        for sender, (d, f, rs) in A1ESSANDR0[fixture].items()
    }
    assert got == expected


# --- counts -----------------------------------------------------------------------------------

# file -> read, events, skipped, malformed
COUNTS = {
    "A1essandr0-postfix_log_parser__test_fixtures_error_expired.txt.log": (34, 14, 20, 0),
    "A1essandr0-postfix_log_parser__test_fixtures_error_mailbox_not_found.txt.log": (17, 4, 13, 0),
    "A1essandr0-postfix_log_parser__test_fixtures_greylisting_spam.txt.log": (16, 4, 12, 0),
    "A1essandr0-postfix_log_parser__test_fixtures_sent_after.txt.log": (23, 6, 17, 0),
    "A1essandr0-postfix_log_parser__test_fixtures_sent_rightaway.txt.log": (20, 4, 16, 0),
    # two hand-edited "status=failed" lines are malformed
    "Anantg21-Python-Dashboard-for-Postfix-Logs__maillog.log": (26, 6, 18, 2),
    "FgForrest-Postfix-Deliverability-Analytics__server_src_test_resources_META-INF_logs_"
    "parser_backup-single-client.log.1.log": (42, 16, 26, 0),
    # message-only lines: no syslog prefix
    "SEKOIA-IO-intake-formats__Postfix_postfix_tests__msgonly.log": (18, 0, 0, 18),
    "SEKOIA-IO-intake-formats__Postfix_postfix_tests_bounced.json.log": (1, 1, 0, 0),
    "fail2ban-fail2ban__fail2ban_tests_files_logs_postfix.log": (12, 9, 3, 0),
    "kumina-postfix_exporter__postfix_exporter_test.go.log": (44, 4, 40, 0),
    "pixelpark-postfix-logsums__tests_mail.log__excerpt.log": (18, 2, 16, 0),
    # "tox=<...>" is a damaged status line
    "pk65-search_postfix_log__src_test_resources_mail.log": (25, 2, 22, 1),
    "vignemail1-pflogsumm-go__testdata_rfc3339.log": (4, 1, 3, 0),
    "vignemail1-pflogsumm-go__testdata_sample.log": (31, 8, 23, 0),
    "youyo-postfix-log-parser__README.md.log": (1, 1, 0, 0),
    "youyo-postfix-log-parser__test_test-iso8601.log": (47, 9, 38, 0),
    "youyo-postfix-log-parser__test_test-milter.log": (6, 1, 5, 0),
    "youyo-postfix-log-parser__test_test.log": (22, 4, 18, 0),
}


@pytest.mark.parametrize("name", list(COUNTS))
def test_counts_add_up(name: str) -> None:
    out = parse_file(CORPUS / name)
    assert (out.read, out.events.height, out.skipped, out.malformed_count) == COUNTS[name]


def test_every_corpus_file_is_counted() -> None:
    assert sorted(p.name for p in CORPUS.glob("*.log")) == sorted(COUNTS)


def test_malformed_rows_say_where_and_why() -> None:
    out = parse_file(CORPUS / "pk65-search_postfix_log__src_test_resources_mail.log")
    [row] = out.malformed.to_dicts()
    assert row["origin"].endswith("pk65-search_postfix_log__src_test_resources_mail.log:23")
    assert row["reason"] == "status line without to=<...> or relay="
    assert row["raw"].startswith(
        "Sep 04 09:57:35 service9 postfix/smtp[658082]: C77FF1920080: tox="
    )


# --- sender / Message-ID join -------------------------------------------------------------------

MESSAGE = (SYNTHETIC / "one-message.log").read_bytes()


@pytest.mark.parametrize("batch_bytes", [1, 80, 200, 10_000])
def test_join_across_batch_boundaries(tmp_path: Path, batch_bytes: int) -> None:
    path = tmp_path / "mail.log"
    path.write_bytes(MESSAGE)
    out = parse_file(path, batch_bytes=batch_bytes)
    assert out.events.select("recipient", "sender", "sender_domain", "message_id").rows() == [
        ("a@example.com", "s@Example.ORG", "example.org", "m1@example.org"),
        ("b@example.com", "s@Example.ORG", "example.org", "m1@example.org"),
        # after qmgr "removed" the queue id is forgotten; the line is kept all the same
        ("late@example.com", None, None, None),
    ]
    assert (out.read, out.skipped, out.malformed_count) == (8, 5, 0)


def test_recipient_before_its_from_line_in_the_same_batch() -> None:
    lines = MESSAGE.splitlines(keepends=True)
    reordered = b"".join([lines[4], lines[0], lines[1]])
    out = parse_bytes(reordered)
    assert out.events.select("recipient", "sender", "message_id").rows() == [
        ("a@example.com", "s@Example.ORG", "m1@example.org")
    ]


def test_join_across_two_files_of_one_run(tmp_path: Path) -> None:
    lines = MESSAGE.splitlines(keepends=True)
    (tmp_path / "mail.log.1").write_bytes(b"".join(lines[:2]))
    (tmp_path / "mail.log").write_bytes(b"".join(lines[2:6]))
    for path in tmp_path.iterdir():
        os.utime(path, (MTIME, MTIME))
    source = Postfix(tz="UTC")
    inputs = expand_inputs([str(tmp_path)])
    assert [Path(i.path).name for i in inputs] == ["mail.log.1", "mail.log"]
    outputs = [out for i in inputs for out in source.parse(read_batches(i))]
    events = merge(outputs).events
    assert events.select("recipient", "sender", "message_id").rows() == [
        ("a@example.com", "s@Example.ORG", "m1@example.org"),
        ("b@example.com", "s@Example.ORG", "m1@example.org"),
    ]
    assert events["origin"].to_list() == [
        f"{tmp_path / 'mail.log'}:3",
        f"{tmp_path / 'mail.log'}:4",
    ]


def test_open_queue_ids_are_bounded() -> None:
    lines = MESSAGE.splitlines(keepends=True)
    other = lines[1].replace(b"1A2B3C4D5E", b"9F9F9F9F9F")
    source = Postfix(tz="UTC", max_open_ids=1)
    batches = [Batch(data=d, path="m", mtime=MTIME) for d in (lines[1], other, lines[4])]
    events = merge(list(source.parse(batches))).events
    assert events["sender"].to_list() == [None]  # the older id was evicted


def test_open_queue_ids_are_bounded_in_bytes() -> None:
    """1 KB senders, room for two: the oldest of three ids is gone when its bounce comes."""
    long = "s" * 1000 + "@example.org"
    arrived = [
        f"Nov 27 10:00:0{n} mx postfix/qmgr[9]: A000{n}: from=<{long}>, size=1, nrcpt=1 "
        "(queue active)\n"
        for n in range(3)
    ]
    bounced = "".join(
        f"Nov 27 10:01:0{n} mx postfix/smtp[5]: A000{n}: to=<r{n}@example.com>, relay=none, "
        "delay=1, dsn=5.4.4, status=bounced (Host not found)\n"
        for n in range(3)
    )
    source = Postfix(tz="UTC", max_state_bytes=2500)
    chunks = [line.encode() for line in [*arrived, bounced]]
    events = merge(list(source.parse(consecutive_batches(*chunks, path="m")))).events
    assert events["sender"].is_not_null().to_list() == [False, True, True]
    assert sorted(source._open["message_ref"]) == ["A0001", "A0002"]


#: Nov 27 10:00:02 mx postfix/smtpd[7]: NOQUEUE: reject: RCPT from c.example[192.0.2.1]: ...
REJECT = (
    "Nov 27 10:00:02 mx postfix/smtpd[7]: NOQUEUE: reject: RCPT from c.example[192.0.2.1]: "
    "554 5.7.1 <a@example.com>: Relay access denied; from=<s@example.org> to=<a@example.com> "
    "proto=ESMTP helo=<c>"
)


def test_identical_lines_get_ids_of_their_own_in_any_batches() -> None:
    """A reject and a bounce three times each: six events, six ids, whatever the batches (a
    journal record, unlike a line, is one entry however often it is exported)."""
    bounce = MESSAGE.splitlines(keepends=True)[4].decode()
    lines = [line for line in (REJECT + "\n", bounce) for _ in range(3)]

    def ids(size: int) -> list[str]:
        chunks = ["".join(lines[i : i + size]).encode() for i in range(0, len(lines), size)]
        out = merge(list(Postfix(tz="UTC").parse(consecutive_batches(*chunks, path="m"))))
        return list(out.events["event_id"])

    whole = ids(len(lines))
    assert len(set(whole)) == 6
    for size in (1, 2, 4):
        assert ids(size) == whole


# --- time ---------------------------------------------------------------------------------------


def test_year_inferred_across_new_year(tmp_path: Path) -> None:
    path = copy_to(tmp_path, SYNTHETIC / "new-year.log")
    written = datetime(2027, 1, 1, 0, 5, tzinfo=UTC).timestamp()
    os.utime(path, (written, written))
    [source] = expand_inputs([str(path)])
    events = merge(list(Postfix(tz="UTC").parse(read_batches(source)))).events
    assert events["timestamp"].to_list() == [
        utc(2026, 12, 31, 23, 59, 58),
        utc(2027, 1, 1, 0, 0, 2),
    ]


def test_year_from_mtime_and_stdin_without_mtime() -> None:
    line = (
        b"Mar  5 08:00:00 mx postfix/smtp[1]: 1A2B3C4D5E: to=<a@example.com>, relay=none,"
        b" delay=1, dsn=5.4.4, status=bounced (Host not found)\n"
    )
    in_2024 = datetime(2024, 6, 1, tzinfo=UTC).timestamp()
    assert parse_bytes(line, mtime=in_2024).events["timestamp"][0] == utc(2024, 3, 5, 8)
    # no mtime (stdin): this year, or the year before if Mar 5 is more than a day ahead
    stamp = parse_bytes(line, mtime=None).events["timestamp"][0]
    now = datetime.now(UTC)
    assert (stamp.month, stamp.day) == (3, 5) and stamp.year in (now.year, now.year - 1)


@pytest.mark.parametrize(
    ("tz", "line_start", "expected"),
    [
        ("Europe/Paris", b"Jul 10 10:22:52", utc(2026, 7, 10, 8, 22, 52)),  # CEST, UTC+2
        ("Europe/Paris", b"Nov 10 10:22:52", utc(2026, 11, 10, 9, 22, 52)),  # CET, UTC+1
        ("America/New_York", b"Nov 10 10:22:52.250", utc(2026, 11, 10, 15, 22, 52, 250000)),
        ("UTC", b"Nov 10 10:22:52", utc(2026, 11, 10, 10, 22, 52)),
        # an offset in the stamp wins over tz
        ("Asia/Tokyo", b"2026-11-10T10:22:52.5+01:00", utc(2026, 11, 10, 9, 22, 52, 500000)),
        ("Asia/Tokyo", b"2026-11-10T10:22:52Z", utc(2026, 11, 10, 10, 22, 52)),
        ("Asia/Tokyo", b"2026-11-10T10:22:52", utc(2026, 11, 10, 1, 22, 52)),
        ("Europe/Paris", b"2013 Jun 16 16:05:06.123", utc(2013, 6, 16, 14, 5, 6, 123000)),
    ],
)
def test_time_zones(tz: str, line_start: bytes, expected: datetime) -> None:
    line = (
        line_start
        + b" mx postfix/qmgr[1]: 1A2B3C4D5E: from=<s@example.org>, status=expired,"
        + b" returned to sender\n"
    )
    assert parse_bytes(line, tz=tz).events["timestamp"].to_list() == [expected]


def test_invalid_date_is_malformed() -> None:
    out = parse_bytes(b"Feb 30 10:00:00 mx postfix/qmgr[1]: 1A2B3C4D5E: removed\n")
    assert out.malformed.select("reason").rows() == [("invalid timestamp",)]


# --- journald -----------------------------------------------------------------------------------


def test_journald_json(tmp_path: Path) -> None:
    out = parse_file(copy_to(tmp_path, SYNTHETIC / "journal.json"))
    [event] = out.events.to_dicts()
    assert {k: event[k] for k in ("timestamp", "host", "event", "message_ref", "sender")} == {
        "timestamp": utc(2026, 11, 28, 10, 0, 1, 500000),
        "host": "mx2",
        "event": "bounced",
        "message_ref": "D1E2F3A4B5",
        "sender": "alerts@example.org",
    }
    assert event["diagnostic"] == (
        'host mx.example.com[192.0.2.7] said: 550 5.7.1 "Message rejected" \\ policy '
        "(in reply to end of DATA command)"
    )
    assert event["origin"].endswith("journal.json:2")
    assert out.malformed.select("reason").rows() == [
        ("journal record without a text MESSAGE",),
        ("not a journal JSON record",),
    ]
    assert (out.read, out.skipped) == (5, 2)  # qmgr from=, sshd


@pytest.mark.parametrize("batch_bytes", [1, 2, 100, 10_000])
def test_journald_json_after_blank_lines_in_any_batches(tmp_path: Path, batch_bytes: int) -> None:
    # A first batch of blank lines once fixed the format as syslog: the journal records after
    # it were malformed with small batches and read with one batch (found by tools/fuzz.py).
    path = tmp_path / "journal.json"
    path.write_bytes(b"\n\n" + (SYNTHETIC / "journal.json").read_bytes())
    out = parse_file(path, batch_bytes=batch_bytes)
    assert out.events.select("message_ref", "event").rows() == [("D1E2F3A4B5", "bounced")]
    assert out.events["origin"][0].endswith("journal.json:4")
    assert out.malformed.select("reason").rows() == [
        ("journal record without a text MESSAGE",),
        ("not a journal JSON record",),
    ]
    assert (out.read, out.skipped) == (7, 4)  # two blank lines, qmgr from=, sshd


@pytest.mark.parametrize("batch_bytes", [1, 2, 100, 10_000])
def test_journald_export_after_blank_lines_in_any_batches(tmp_path: Path, batch_bytes: int) -> None:
    # Blank lines separate export records and are not counted, even when a batch ends after
    # them, before any line said the format.
    path = tmp_path / "journal.export"
    path.write_bytes(b"\n\n\n" + (SYNTHETIC / "journal.export").read_bytes())
    out = parse_file(path, batch_bytes=batch_bytes)
    assert out.events.select("message_ref", "event").rows() == [("E1F2A3B4C5", "deferred")]
    assert (out.read, out.skipped, out.malformed_count) == (3, 2, 0)


@pytest.mark.parametrize("batch_bytes", [1, 100, 10_000])
def test_journald_export(tmp_path: Path, batch_bytes: int) -> None:
    out = parse_file(copy_to(tmp_path, SYNTHETIC / "journal.export"), batch_bytes=batch_bytes)
    [event] = out.events.to_dicts()
    expected = {
        "timestamp": utc(2026, 11, 28, 10, 0, 4),
        "host": "mx3",
        "event": "deferred",
        "sender": "billing@example.org",
        "recipient": "payer@example.com",
        "smtp_code": 452,
        "enhanced_code": "4.2.2",
    }
    assert {k: event[k] for k in expected} == expected
    assert event["origin"].endswith("journal.export:8")
    assert (out.read, out.skipped, out.malformed_count) == (3, 2, 0)


def test_journald_export_binary_field_is_malformed() -> None:
    record = (
        b"__REALTIME_TIMESTAMP=1795860000123456\nSYSLOG_IDENTIFIER=postfix/smtp\n"
        b"MESSAGE\n\x05\x00\x00\x00\x00\x00\x00\x00hello\n\n"
    )
    out = parse_bytes(record)
    assert (out.read, out.malformed_count) == (1, 1)
    assert out.malformed["origin"].to_list() == ["t.log:1"]


def test_journald_json_is_the_same_event_as_syslog() -> None:
    message = "1A2B3C4D5E: to=<a@example.com>, relay=none, delay=1, dsn=5.4.4, status=bounced (x)"
    record = {
        "__REALTIME_TIMESTAMP": "1795860000000000",
        "_HOSTNAME": "mx",
        "SYSLOG_IDENTIFIER": "postfix/smtp",
        "MESSAGE": message,
    }
    from_json = parse_bytes(json.dumps(record).encode() + b"\n").events
    from_syslog = parse_bytes(f"Nov 28 10:00:00 mx postfix/smtp[1]: {message}\n".encode()).events
    same = ["timestamp", "host", "event", "recipient", "enhanced_code", "diagnostic"]
    assert from_json.select(same).rows() == from_syslog.select(same).rows()


# --- properties ---------------------------------------------------------------------------------

PREFIXES = st.sampled_from(
    [
        "",
        "Nov 28 10:00:00 mx postfix/smtp[1]: ",
        "<22>Feb 29 10:00:00 mx postfix/qmgr[1]: 1A2B3C: ",
        "2026-11-28T10:00:00+01:00 mx postfix/cleanup[1]: NOQUEUE: reject: ",
        '{"MESSAGE":"',
        "MESSAGE=",
        "3F2A1B2C3D: to=<",
    ]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(PREFIXES, st.one_of(st.binary(max_size=60), st.text(max_size=60))), max_size=12
    )
)
def test_parse_never_raises_and_counts_add_up(pieces: list[tuple[str, bytes | str]]) -> None:
    data = b"".join(
        prefix.encode() + (body if isinstance(body, bytes) else body.encode()) + b"\n"
        for prefix, body in pieces
    )
    out = parse_bytes(data)  # merge() checks read == events + skipped + malformed per output
    assert out.read <= data.count(b"\n") + 1


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=1, max_value=64))
def test_arbitrary_bytes_in_tiny_batches(data: bytes, size: int) -> None:
    chunks = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
    batches = [
        Batch(data=c, path="x", first_line=1 + i, final=i == len(chunks) - 1, mtime=MTIME)
        for i, c in enumerate(chunks)
    ]
    merge(list(Postfix(tz="UTC").parse(batches)))
