"""The Exim source: expectation tables over tests/data/exim, state across batches, accounting."""

from __future__ import annotations

import io
import itertools
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from bounce_analyzer import schema
from bounce_analyzer.errors import UsageError
from bounce_analyzer.generate import generate_exim
from bounce_analyzer.reading import Batch
from bounce_analyzer.sources import Source, get_source
from bounce_analyzer.sources import exim as exim_module
from bounce_analyzer.sources.base import SourceOutput
from bounce_analyzer.sources.exim import Exim

from ._helpers import assert_adds_up, event_at, merge, utc

DATA = Path(__file__).resolve().parents[1] / "data" / "exim"
GPB01 = "ctorecords-gpbtest__t_01-parse_lines.t.log"
GPB02 = "ctorecords-gpbtest__t_02-parse_chunks.t.log"
LOGSTASH = "logstash-plugins-logstash-patterns-core__spec_patterns_exim_spec.rb.log"


def parse(data: bytes | str, *, tz: str = "UTC", path: str = "mainlog") -> SourceOutput:
    """Parse one batch with a fresh source."""
    raw = data.encode() if isinstance(data, str) else data
    (out,) = Exim(tz=tz).parse([Batch(data=raw, path=path)])
    return out


def parse_file(name: str, *, tz: str = "UTC") -> SourceOutput:
    return parse((DATA / name).read_bytes(), tz=tz, path=name)


T99 = utc(1999, 3, 2, 9, 44, 33)
GMAIL_550 = (
    "SMTP error from remote mail server after RCPT TO:<Jane.Doe@Gmail.com>: 550-5.1.1 The email"
    " account that you tried to reach does not exist. Please try\\n550-5.1.1 double-checking the"
    " recipient's email address for typos or\\n550-5.1.1 unnecessary spaces. For more"
    " information, go to\\n550 5.1.1  https://support.google.com/mail/?p=NoSuchUser"
    " a640c23a62f3a-aa5b1a2b3c4si1234566b.123 - gsmtp"
)
OUTLOOK_541 = (
    "SMTP error from remote mail server after RCPT TO:<john.roe@outlook.com>: 550 5.4.1 Recipient"
    " address rejected: Access denied. For more information see https://aka.ms/EXOSmtpErrors"
    " [AM4PEPF00027A5F.eurprd04.prod.outlook.com 2026-11-28T09:00:03.123Z 08DD0F1A2B3C4D5E]"
)
YAHOO_421 = (
    "SMTP error from remote mail server after pipelined MAIL FROM:<news@shop.example>"
    " SIZE=18234: 421 4.7.0 [TSS04] Messages from 198.51.100.1 temporarily deferred due to"
    " unexpected volume or user complaints - 4.16.55.1; see"
    " https://postmaster.yahooinc.com/error-codes"
)
GREYLIST_451 = (
    "SMTP error from remote mail server after RCPT TO:<bob@greylist.example>: 451 4.7.1"
    " Greylisted, see https://postgrey.example/help/greylist.example.html"
)
GMX_450 = (
    "SMTP error from remote mail server after RCPT TO:<udbbwscdnbegrmloghuf@london.com>: host"
    " mx0.gmx.com [74.208.5.90]: 450 4.3.2 Too many mails (mail bomb), try again in 1 hour(s)"
    " 25 minute(s) and see ( http://portal.gmx.net/serverrules ) {mx-us011}"
)
NEWS_ID = "1tE3xY-000000001Ab-Cdef"
NEWS_MSGID = "20261128100000.ABC123@shop.example"
BILL_ID = "1tE3yA-0002Bc-De"

# realistic.log is read with tz="Europe/Berlin" (UTC+1 in November).
# line, timestamp, event, message_ref, message_id, sender, recipient, original_recipient,
#   peer_host, peer_ip (`_with_peer`), smtp_code, enhanced_code, diagnostic, delay_s
REALISTIC = [
    (2, utc(2026, 11, 28, 9, 0, 2), "bounced", NEWS_ID, NEWS_MSGID, "news@shop.example",
     "jane.doe@gmail.com", None, "gmail-smtp-in.l.google.com", "142.250.27.26", 550, "5.1.1",
     GMAIL_550, None),
    (3, utc(2026, 11, 28, 9, 0, 3), "bounced", NEWS_ID, NEWS_MSGID, "news@shop.example",
     "john.roe@outlook.com", "sales@shop.example", "outlook-com.olc.protection.outlook.com",
     "52.101.68.16", 550, "5.4.1", OUTLOOK_541, None),
    (4, utc(2026, 11, 28, 9, 0, 4), "deferred", NEWS_ID, NEWS_MSGID, "news@shop.example",
     "pat.smith@yahoo.com", None, "mta7.am0.yahoodns.net", "67.195.228.106", 421, "4.7.0",
     YAHOO_421, None),
    (5, utc(2026, 11, 28, 9, 0, 5), "deferred", NEWS_ID, NEWS_MSGID, "news@shop.example",
     "bob@greylist.example", None, "mx.greylist.example", "203.0.113.7", 451, "4.7.1",
     GREYLIST_451, None),
    (6, utc(2026, 11, 28, 9, 0, 6), "delivered", NEWS_ID, NEWS_MSGID, "news@shop.example",
     "alice@corp.example", "all@shop.example", "mx1.corp.example", "192.0.2.25", 250, "2.0.0",
     "250 2.0.0 OK 1732788006 d9443c01a7336-21-v6si1234 - gsmtp", 6.0),
    (7, utc(2026, 11, 28, 9, 0, 6), "delivered", NEWS_ID, NEWS_MSGID, "news@shop.example",
     "carol@corp.example", None, "mx1.corp.example", "192.0.2.25", 250, "2.0.0",
     "250 2.0.0 OK 1732788006 d9443c01a7336-21-v6si1235 - gsmtp", 6.0),
    (13, datetime(2026, 11, 28, 10, 0, 9, 250000, tzinfo=UTC), "bounced", BILL_ID,
     "inv-77@shop.example", "billing@shop.example", "gone@nosuch.example", None, None, None,
     None, None, "Unrouteable address", None),
    (14, utc(2026, 11, 28, 10, 0, 10), "expired", BILL_ID, "inv-77@shop.example",
     "billing@shop.example", "erin@dead.example", None, None, None, None, None,
     "retry time not reached for any host after a long failure period", None),
    (15, datetime(2026, 11, 28, 9, 0, 11, 500000, tzinfo=UTC), "expired", BILL_ID,
     "inv-77@shop.example", "billing@shop.example", "frank@down.example", None, None, None, None,
     None, "all hosts for 'down.example' have been failing for a long time (and retry time not"
     " reached)", None),
    (16, utc(2026, 11, 28, 9, 0, 12), "rejected", None, None, "promo@bulk.example",
     "nobody@shop.example", None, "mail.bulk.example", "203.0.113.66", None, None,
     "rejected RCPT <nobody@shop.example>: Unknown user", None),
    (17, utc(2026, 11, 28, 9, 0, 13), "rejected", None, None, "", "info@shop.example", None, None,
     "203.0.113.67", None, None,
     "temporarily rejected RCPT <info@shop.example>: greylisted, try again later", None),
]  # fmt: skip
REALISTIC_FIELDS = (
    "timestamp", "event", "message_ref", "message_id", "sender", "recipient",
    "original_recipient", "peer_host", "peer_ip", "smtp_code", "enhanced_code", "diagnostic",
    "delay_s",
)  # fmt: skip


def _with_peer(row: dict[str, Any]) -> dict[str, Any]:
    """`row` with `peer_host` and `peer_ip`: the server we handed the mail to (relay_*), or on a
    reject the client our server refused (client_*, and then relay_* are null: issue 13)."""
    if row["event"] == "rejected":
        assert (row["relay_host"], row["relay_ip"]) == (None, None)
        return {**row, "peer_host": row["client_host"], "peer_ip": row["client_ip"]}
    assert (row["client_host"], row["client_ip"]) == (None, None)
    return {**row, "peer_host": row["relay_host"], "peer_ip": row["relay_ip"]}


@pytest.mark.parametrize(
    ("line", "expected"), [(r[0], r[1:]) for r in REALISTIC], ids=[str(r[0]) for r in REALISTIC]
)
def test_realistic(line: int, expected: tuple[Any, ...]) -> None:
    out = parse_file("realistic.log", tz="Europe/Berlin")
    row = _with_peer(event_at(out, f"realistic.log:{line}"))
    assert {f: row[f] for f in REALISTIC_FIELDS} == dict(
        zip(REALISTIC_FIELDS, expected, strict=True)
    )
    assert (row["source"], row["host"], row["attempt"], row["esp_classification"]) == (
        "exim",
        None,
        None,
        None,
    )
    domain = row["recipient"].rpartition("@")[2]
    assert row["recipient_domain"] == domain
    assert row["sender_domain"] == (row["sender"].rpartition("@")[2] or None)


# file, line, timestamp, event, message_ref, sender, recipient, original_recipient, peer_host,
#   peer_ip (`_with_peer`), smtp_code, enhanced_code, diagnostic
CORPUS = [
    ("Exim-exim__test_log_0023.log", 44, T99, "rejected", None, "userx@test.ex",
     "cond-rhubarb@test.ex", None, None, "56.56.57.57", None, None,
     'temporarily rejected RCPT <cond-rhubarb@test.ex>: invalid "condition" value "rhubarb"'),
    ("Exim-exim__test_log_0023.log", 51, T99, "rejected", None, "rcpttest@test.ex",
     "bad1@test.ex", None, None, "56.56.58.58", None, None, "rejected RCPT <bad1@test.ex>"),
    ("Exim-exim__test_log_0023.log", 55, T99, "delivered", "10HmbN-0005vi-00", "rcpttest@test.ex",
     "ok1@test.ex", "ok1@test.ex", None, None, None, None, None),
    ("Exim-exim__test_log_0023.log", 56, T99, "delivered", "10HmbN-0005vi-00", "rcpttest@test.ex",
     "ok2@test.ex", "ok2@test.ex", None, None, None, None, None),
    ("Exim-exim__test_log_0036.log", 3, T99, "delivered", "10HmaX-0005vi-00",
     "CALLER@myhost.test.ex", "abcd@eximtesthost.test.ex", "abcd@eximtesthost",
     "eximtesthost.test.ex", "ip4.ip4.ip4.ip4", 250, None, "250 OK id=10HmaY-0005vi-00"),
    ("Exim-exim__test_log_0036.log", 4, T99, "delivered", "10HmaX-0005vi-00",
     "CALLER@myhost.test.ex", "userx@alias-eximtesthost.test.ex", None, "eximtesthost.test.ex",
     "ip4.ip4.ip4.ip4", 250, None, "250 OK id=10HmaY-0005vi-00"),
    ("Exim-exim__test_log_0099.log", 3, T99, "deferred", "10HmaX-0005vi-00", "CALLER@test.ex",
     "userx@simple", None, None, None, None, None, "Connection refused"),
    ("Exim-exim__test_log_0099.log", 22, T99, "deferred", "10HmbC-0005vi-00", "CALLER@test.ex",
     "userx@nonexist", None, None, None, None, None,
     'lookup of host "nonexist.test.ex" failed in all router'),
    ("Exim-exim__test_log_0106.log", 3, T99, "deferred", "10HmaX-000000005vi-0000",
     "CALLER@myhost.test.ex", "userx@domain1.com", None, "127.0.0.1", "127.0.0.1", None, None,
     "Connection timed out H=127.0.0.1 [127.0.0.1]: SMTP timeout after EHLO myhost.test.ex"),
    ("Exim-exim__test_log_0135.log", 3, T99, "deferred", "10HmaX-0005vi-00", "CALLER@test.ex",
     "c@test.ex", None, None, None, None, None,
     "mailbox is full (MTA-imposed quota exceeded while writing to TESTSUITE/test-mail/c)"),
    ("Exim-exim__test_log_0135.log", 9, T99, "expired", "10HmaX-0005vi-00", "CALLER@test.ex",
     "b@known.ex", None, None, None, None, None, "retry timeout exceeded"),
    ("Exim-exim__test_log_0135.log", 12, T99, "delivered", "10HmaY-0005vi-00", "",
     ":blackhole:", "CALLER@test.ex", None, None, None, None, None),
    ("Exim-exim__test_log_0135.log", 25, T99, "deferred", "10HmbA-0005vi-00", "", "b@known.ex",
     None, None, None, None, None, "Network Error"),
    ("Exim-exim__test_log_0160.log", 3, T99, "deferred", "10HmaX-000000005vi-0000",
     "CALLER@myhost.test.ex", "userx@domain.com", None, "127.0.0.1", "127.0.0.1", 452, None,
     "SMTP error from remote mail server after RCPT TO:<userx@domain.com>: 452 Temporary error"),
    ("Exim-exim__test_log_0160.log", 11, T99, "bounced", "10HmaY-000000005vi-0000", "",
     "caller@myhost.test.ex", None, None, None, None, None, "Unrouteable address"),
    ("Exim-exim__test_log_0227.log", 9, T99, "rejected", None, "uncheckable@localhost1",
     "z@remote.domain", None, None, "V4NET.0.0.3", 550, None,
     'rejected RCPT <z@remote.domain>: response to "RCPT TO:<z@remote.domain>" from 127.0.0.1'
     " [127.0.0.1] was: 550 Recipient not liked"),
    (GPB01, 1, utc(2012, 2, 13, 14, 39, 22), "deferred", "1RookS-000Pg8-VO", None,
     "udbbwscdnbegrmloghuf@london.com", None, "mx0.gmx.com", "74.208.5.90", 450, "4.3.2",
     GMX_450),
    (GPB01, 5, utc(2012, 2, 13, 14, 46, 10), "deferred", "1RwtQA-000Mti-P5", None,
     "ijcxzetfsijoedyg@hsrail.ru", None, None, None, None, None,
     "domain matches queue_smtp_domains, or -odqs set"),
    (GPB02, 7, utc(2012, 2, 13, 14, 46, 14), "delivered", "1RwtQA-000Mti-P5",
     "ysxeuila@rushost.ru", "ijcxzetfsijoedyg@hsrail.ru", None, "mx.hsrail.ru", "213.33.220.238",
     250, "2.6.0",
     "250 2.6.0  <tiraramrjynnyexlzbjmsiobtgwwsitbvgnatrbtid@rushost.ru> Queued mail for"
     " delivery"),
    (LOGSTASH, 6, utc(2020, 2, 11, 17, 9, 47), "bounced", "1j1Z2g-00Faoy-Uh",
     "example@strawberry.active-ns.com", "admin@example.net", None, None, None, None, None,
     "No such person at this address."),
]  # fmt: skip
CORPUS_FIELDS = (
    "timestamp", "event", "message_ref", "sender", "recipient", "original_recipient",
    "peer_host", "peer_ip", "smtp_code", "enhanced_code", "diagnostic",
)  # fmt: skip


@pytest.mark.parametrize(
    ("name", "line", "expected"),
    [(r[0], r[1], r[2:]) for r in CORPUS],
    ids=[f"{r[0][:22]}:{r[1]}" for r in CORPUS],
)
def test_corpus(name: str, line: int, expected: tuple[Any, ...]) -> None:
    row = _with_peer(event_at(parse_file(name), f"{name}:{line}"))
    assert {f: row[f] for f in CORPUS_FIELDS} == dict(zip(CORPUS_FIELDS, expected, strict=True))


# file, lines read, events, skipped, malformed
COUNTS = [
    ("Exim-exim__test_log_0022.log", 19, 0, 19, 0),
    ("Exim-exim__test_log_0023.log", 61, 26, 35, 0),
    ("Exim-exim__test_log_0036.log", 11, 4, 7, 0),
    ("Exim-exim__test_log_0099.log", 26, 7, 19, 0),
    ("Exim-exim__test_log_0106.log", 6, 2, 4, 0),
    ("Exim-exim__test_log_0135.log", 28, 12, 16, 0),
    ("Exim-exim__test_log_0160.log", 14, 3, 11, 0),
    # (lines 12 and 13: rejected after DATA, events since issue 13)
    ("Exim-exim__test_log_0227.log", 20, 13, 7, 0),
    (GPB01, 5, 3, 2, 0),
    (GPB02, 8, 4, 4, 0),
    (LOGSTASH, 6, 1, 5, 0),
    ("realistic.log", 18, 11, 7, 0),
]


@pytest.mark.parametrize(("name", "read", "events", "skipped", "malformed"), COUNTS)
def test_counts(name: str, read: int, events: int, skipped: int, malformed: int) -> None:
    out = parse_file(name)
    assert (out.read, out.events.height, out.skipped, out.malformed_count) == (
        read,
        events,
        skipped,
        malformed,
    )
    assert_adds_up(out)


# Lines read and deliberately not turned into events.
SKIPPED = [
    ("Exim-exim__test_log_0022.log", 5),  # *> accept <accept@y> R=accept T=appendfile
    ("Exim-exim__test_log_0099.log", 5),  # == ... defer (-54): retry time not reached for any..
    ("Exim-exim__test_log_0135.log", 15),  # == ... defer (-53): Retry time not yet reached
    ("Exim-exim__test_log_0135.log", 27),  # b@known.ex: error ignored
    ("Exim-exim__test_log_0227.log", 1),  # H=... sender verify fail for <bad@localhost>: ...
    ("Exim-exim__test_log_0036.log", 2),  # Start queue run: pid=pppp -qf
    (GPB01, 3),  # <= <> R=1RookS-000Pg8-VO U=mailnull P=local S=3958
    (GPB01, 4),  # Completed
    ("realistic.log", 8),  # == dave@dead.example ... defer (-53): retry time not reached
    ("realistic.log", 10),  # *> news@shop.example R=dnslookup T=remote_smtp
]


@pytest.mark.parametrize(("name", "line"), SKIPPED)
def test_skipped(name: str, line: int) -> None:
    out = parse_file(name)
    assert out.events.filter(pl.col("origin") == f"{name}:{line}").height == 0
    assert out.malformed.filter(pl.col("origin") == f"{name}:{line}").height == 0


def test_ctorecords_expectations_agree() -> None:
    """The fields ctorecords/gpbtest asserts (datetime, int_id, flag, email) for its lines."""
    expected = [  # from corpus/logs/expected/ctorecords-gpbtest_exim.jsonl (flag, email)
        ("2012-02-13 14:39:22", "1RookS-000Pg8-VO", "==", "udbbwscdnbegrmloghuf@london.com"),
        ("2012-02-13 14:39:22", "1RookS-000Pg8-VO", "**", "fwxvparobkymnbyemevz@london.com"),
        ("2012-02-13 14:39:22", "1RwtJa-000AFJ-3B", "<=", None),
        ("2012-02-13 14:39:22", "1RookS-000Pg8-VO", None, None),
        ("2012-02-13 14:46:10", "1RwtQA-000Mti-P5", "==", "ijcxzetfsijoedyg@hsrail.ru"),
    ]
    out = parse_file(GPB01)
    by_origin = {row["origin"]: row for row in out.events.to_dicts()}
    for line, (stamp, int_id, flag, email) in enumerate(expected, start=1):
        row = by_origin.get(f"{GPB01}:{line}")
        if email is None:
            assert row is None
            continue
        assert row is not None
        when = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        # line 2 is "** ...: retry timeout exceeded": Exim gave up retrying, so expired
        event = {"==": "deferred", "**": "expired"}[flag]
        assert (row["timestamp"], row["message_ref"], row["event"], row["recipient"]) == (
            when,
            int_id,
            event,
            email,
        )


def test_logstash_arrivals_join_onto_deliveries() -> None:
    """Sender and Message-ID of logstash's `<=` lines (as it asserts them) reach a later `=>`."""
    lines = (DATA / LOGSTASH).read_text().splitlines()[:5]
    deliveries = [
        "2013-03-20 12:44:03 1UIIN7-0004t9-8R => a@example.net R=dnslookup T=remote_smtp",
        "2014-08-10 11:18:36 [28107] 1gsu1C-003dCu-Hb => aaron+forward@domain.com R=local",
        "1995-10-31 08:57:54 0tACW1-0005MB-00 => b@example.net R=dnslookup T=remote_smtp",
    ]
    out = parse("\n".join(lines + deliveries) + "\n")
    got = out.events.select("message_ref", "sender", "message_id").rows()
    assert got == [
        ("1UIIN7-0004t9-8R", "root@example.com",
         "201303201244.r2KCi11V018784@hostname.example.com"),
        ("1gsu1C-003dCu-Hb", "aaron@domain.com", "d2b648f00f1a1b0813c483d552778dc6@domain.com"),
        ("0tACW1-0005MB-00", "kryten@dwarf.fict.example",
         "f828ca60127d8646a0fa75cbf8db9ba3@dwarf.fict.example"),
    ]  # fmt: skip


ARRIVAL = "2026-11-28 10:00:00 1tE3xY-0001Ab-Cd <= s@shop.example U=app P=local S=9 id=m1@shop"
BOUNCE = "2026-11-28 10:00:05 1tE3xY-0001Ab-Cd ** r@example.com: Unrouteable address"
DONE = "2026-11-28 10:00:06 1tE3xY-0001Ab-Cd Completed"


def sender_of_bounce(*batches: Batch) -> list[tuple[str | None, str | None]]:
    outputs = list(Exim(tz="UTC").parse(batches))
    for out in outputs:
        assert_adds_up(out)
    events = pl.concat([out.events for out in outputs])
    return events.select("sender", "message_id").rows()


def test_arrival_joins_across_batches() -> None:
    first = Batch(data=f"{ARRIVAL}\n".encode(), path="mainlog", first_line=1, final=False)
    second = Batch(data=f"{BOUNCE}\n".encode(), path="mainlog", first_line=2)
    assert sender_of_bounce(first, second) == [("s@shop.example", "m1@shop")]


def test_arrival_joins_across_files() -> None:
    first = Batch(data=f"{ARRIVAL}\n".encode(), path="mainlog.1")
    second = Batch(data=f"{BOUNCE}\n{DONE}\n".encode(), path="mainlog")
    assert sender_of_bounce(first, second) == [("s@shop.example", "m1@shop")]


def test_completed_forgets_the_message() -> None:
    first = Batch(data=f"{ARRIVAL}\n{DONE}\n".encode(), path="mainlog")
    second = Batch(data=f"{BOUNCE}\n".encode(), path="mainlog", first_line=3)
    source = Exim(tz="UTC")
    outputs = list(source.parse([first, second]))
    assert outputs[1].events.select("sender", "message_id").rows() == [(None, None)]
    assert source._open.height == 0


def test_unseen_arrival_leaves_sender_null() -> None:
    assert sender_of_bounce(Batch(data=BOUNCE.encode(), path="mainlog")) == [(None, None)]


def test_open_messages_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exim_module, "MAX_OPEN_MESSAGES", 2)
    arrivals = "".join(ARRIVAL.replace("0001Ab", f"000{n}Ab") + "\n" for n in range(3))
    bounces = "".join(BOUNCE.replace("0001Ab", f"000{n}Ab") + "\n" for n in range(3))
    source = Exim(tz="UTC")
    outputs = list(
        source.parse(
            [Batch(data=arrivals.encode(), path="a"), Batch(data=bounces.encode(), path="b")]
        )
    )
    assert outputs[1].events["sender"].to_list() == [None, "s@shop.example", "s@shop.example"]
    assert source._open.height == 2


def test_open_messages_are_bounded_in_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """1 KB senders, room for two: the oldest of three messages is gone when its bounce comes."""
    monkeypatch.setattr(exim_module, "MAX_STATE_BYTES", 2500)
    long = "s" * 1000 + "@shop.example"
    arrival = ARRIVAL.replace("s@shop.example", long)
    arrivals = [arrival.replace("0001Ab", f"000{n}Ab") for n in range(3)]
    bounces = [BOUNCE.replace("0001Ab", f"000{n}Ab") for n in range(3)]
    data = "".join(line + "\n" for line in [*arrivals, *bounces]).encode()
    source = Exim(tz="UTC")
    events = merge(list(source.parse(batches_of(data, [0, 1, 2])))).events
    assert events["sender"].is_not_null().to_list() == [False, True, True]
    assert source._open["arrived"].to_list() == ["1tE3xY-0001Ab-Cd", "1tE3xY-0002Ab-Cd"]


REPEATED = [
    # 2026-11-28 10:00:12 H=mx.example.net [192.0.2.9] F=<s@x> rejected RCPT <a@y>: ...
    "2026-11-28 10:00:12 H=c.example [192.0.2.9] F=<s@x.example> rejected RCPT <a@y.example>: "
    "relay not permitted",
    ARRIVAL,
    BOUNCE,
]


def test_identical_lines_get_ids_of_their_own_in_any_batches() -> None:
    """A reject, an arrival and a bounce three times each: six events, each with its own id,
    whatever the batches; the first of each keeps the id of a single line."""
    lines = [line for line in REPEATED for _ in range(3)]
    data = "".join(line + "\n" for line in lines).encode()
    whole = parse_batches([Batch(data=data, path="mainlog")])
    assert whole.events.height == 6
    assert whole.events["event_id"].n_unique() == 6
    single = parse_batches([Batch(data=(REPEATED[0] + "\n").encode(), path="other")])
    assert whole.events["event_id"][0] == single.events["event_id"][0]
    for cuts in ([0], [1], [4], list(range(8))):
        assert_frame_equal(parse_batches(batches_of(data, cuts)).events, whole.events)


def test_a_line_repeated_after_the_clock_went_back_keeps_its_first_id() -> None:
    """Repeats are counted while their stamp is within a minute of the latest one read: one
    further behind (a log whose clock went back, or logs run together) keeps the id of a
    first occurrence, whatever the batches."""
    later = REPEATED[0].replace("10:00:12", "10:05:00")
    data = "".join(f"{line}\n" for line in [REPEATED[0], later, REPEATED[0]]).encode()
    whole = parse_batches([Batch(data=data, path="mainlog")])
    ids = whole.events["event_id"].to_list()
    assert ids[0] == ids[2] != ids[1]
    for cuts in ([0], [1], [0, 1]):
        assert_frame_equal(parse_batches(batches_of(data, cuts)).events, whole.events)


# timestamp text, tz, expected UTC (None: the line is malformed)
TIMES = [
    ("2026-11-28 10:00:00", "UTC", utc(2026, 11, 28, 10, 0, 0)),
    ("2026-11-28 10:00:00", "Europe/Berlin", utc(2026, 11, 28, 9, 0, 0)),
    ("2026-07-01 10:00:00", "Europe/Berlin", utc(2026, 7, 1, 8, 0, 0)),
    ("2026-11-28 10:00:00", "America/New_York", utc(2026, 11, 28, 15, 0, 0)),
    ("2026-11-28 10:00:00.123", "UTC", datetime(2026, 11, 28, 10, 0, 0, 123000, tzinfo=UTC)),
    ("2026-11-28 10:00:00 +0100", "America/New_York", utc(2026, 11, 28, 9, 0, 0)),
    ("2026-11-28 10:00:00.5 -0530", "UTC", datetime(2026, 11, 28, 15, 30, 0, 500000, tzinfo=UTC)),
    ("2026-11-28 10:00:00 [31337]", "UTC", utc(2026, 11, 28, 10, 0, 0)),
    ("2026-11-28 10:00:00 +0000 [31337]", "Asia/Tokyo", utc(2026, 11, 28, 10, 0, 0)),
    # DST fall-back: 02:30 happens twice in Berlin; the earlier (summer time) is taken
    ("2026-10-25 02:30:00", "Europe/Berlin", utc(2026, 10, 25, 0, 30, 0)),
    # DST spring-forward: 02:30 does not exist in Berlin
    ("2026-03-29 02:30:00", "Europe/Berlin", None),
    ("2026-02-30 10:00:00", "UTC", None),
]


@pytest.mark.parametrize(("stamp", "tz", "expected"), TIMES)
def test_timestamps(stamp: str, tz: str, expected: datetime | None) -> None:
    out = parse(f"{stamp} 1tE3xY-0001Ab-Cd ** r@example.com: Unrouteable address\n", tz=tz)
    assert_adds_up(out)
    if expected is None:
        assert out.events.height == 0
        assert out.malformed.rows() == [
            ("mainlog:1", "invalid timestamp", f"{stamp} 1tE3xY-0001Ab-Cd ** r@example.com: "
             "Unrouteable address"),
        ]  # fmt: skip
    else:
        assert out.events["timestamp"].to_list() == [expected]


def test_machine_zone_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    (out,) = Exim().parse([Batch(data=BOUNCE.encode(), path="mainlog")])
    assert out.events["timestamp"].to_list() == [utc(2026, 11, 28, 1, 0, 5)]


def test_brief_style_new_message_id() -> None:
    """A 6-10-4 id, as the Exim 4.97 id is sometimes written, is still a message id."""
    line = "2026-11-28 10:00:00 1tE3xY-00000001Ab-Cdef == a@b.example R=r T=t defer (-1): x"
    assert parse(line).events["message_ref"].to_list() == ["1tE3xY-00000001Ab-Cdef"]


MALFORMED = [
    ("this is not an exim line", "not an Exim log line (no timestamp)"),
    ("2026-11-28 10:00:00 1tE3xY-0001Ab-Cd ** ", "no address"),
    ("2026-11-28 10:00:00 H=[192.0.2.1] F=<a@b> rejected RCPT <unterminated", "no address"),
    ("2026-11-28 99:00:00 1tE3xY-0001Ab-Cd Completed", "invalid timestamp"),
]


@pytest.mark.parametrize(("line", "reason"), MALFORMED)
def test_malformed(line: str, reason: str) -> None:
    out = parse(f"{BOUNCE}\n{line}\n")
    assert_adds_up(out)
    assert out.events["origin"].to_list() == ["mainlog:1"]
    assert out.malformed.rows() == [("mainlog:2", reason, line)]


def test_malformed_raw_is_cut() -> None:
    out = parse("x" * 5000)
    assert out.malformed["raw"].str.len_chars().to_list() == [4096]


def test_blank_lines_crlf_and_line_numbers() -> None:
    data = f"\r\n{BOUNCE}\r\n\n{DONE}\r\n".encode()
    (out,) = Exim(tz="UTC").parse([Batch(data=data, path="mainlog", first_line=101)])
    assert (out.read, out.events.height, out.skipped, out.malformed_count) == (4, 1, 3, 0)
    assert out.events.select("origin", "diagnostic").rows() == [
        ("mainlog:102", "Unrouteable address")
    ]


def test_empty_batch() -> None:
    out = parse(b"")
    assert (out.read, out.events.height, out.skipped, out.malformed_count) == (0, 0, 0, 0)
    assert_adds_up(out)


def test_event_ids_are_deterministic_and_distinct() -> None:
    first = parse_file("realistic.log")
    second = parse_file("realistic.log")
    ids = first.events["event_id"]
    assert ids.to_list() == second.events["event_id"].to_list()
    assert ids.n_unique() == ids.len()
    assert ids.str.contains(r"^[0-9a-f]{32}$").all()


SNIFF = [
    (DATA / "Exim-exim__test_log_0022.log", True),
    (DATA / "Exim-exim__test_log_0227.log", True),  # reject lines only
    (DATA / GPB01, True),
    (DATA / "realistic.log", True),
]


@pytest.mark.parametrize(("path", "expected"), SNIFF, ids=lambda v: getattr(v, "name", str(v)))
def test_sniff_files(path: Path, expected: bool) -> None:
    assert Exim().sniff(path.read_bytes()[:4096]) is expected


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"Nov 28 10:00:00 mx postfix/smtp[123]: 4F1A2B3C4D: to=<a@b.example>, status=bounced\n",
        b"2026-11-28T10:00:00+01:00 mx postfix/qmgr[9]: 4F1A2B3C4D: removed\n",
        json.dumps([{"event": "bounce", "email": "a@b.example"}]).encode(),
        b"2026-11-28 10:00:00 Start queue run: pid=123\n",
        b"\xff\xfe\x00garbage",
    ],
)
def test_sniff_rejects_other_formats(head: bytes) -> None:
    assert Exim().sniff(head) is False


def test_registry_and_protocol() -> None:
    source = get_source("exim", tz="UTC")
    assert isinstance(source, Exim)
    assert isinstance(source, Source)
    assert Exim.name == "exim"


FRAGMENTS = [line + "\n" for line in (DATA / "realistic.log").read_text().splitlines()] + [
    "2026-11-28 10:00:00 ",
    "1tE3xY-0001Ab-Cd ",
    "** ",
    "== ",
    "=> ",
    "H=",
    "[192.0.2.1]",
    " rejected RCPT <",
    ">: ",
    "\n",
    "\r\n",
    ": ",
    'C="250 ',
    "QT=1h2m3s",
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    (out,) = Exim(tz="UTC").parse([Batch(data=data, path="fuzz")])
    assert_adds_up(out)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=20), max_size=30))
def test_exim_like_text_never_raises(pieces: list[str]) -> None:
    data = "".join(pieces).encode("utf-8", "surrogatepass")
    (out,) = Exim(tz="Europe/Berlin").parse([Batch(data=data, path="fuzz")])
    assert_adds_up(out)
    assert out.events["event"].is_in(list(schema.EVENTS)).all()


def test_unknown_zone_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="^unknown time zone 'Mars/Olympus': use an IANA name"):
        Exim(tz="Mars/Olympus")


# --- two stages, fast paths ------------------------------------------------------------------
# `parse` reads each batch alone (`_cut`, in a thread of its own) and joins the senders known
# so far afterwards (`_outcomes`); the usual line shapes are cut with literal searches that
# must read each line as the regular expressions (the slow paths) do.


def generated_log(lines: int, *, new_ids: bool = False) -> bytes:
    out = io.BytesIO()
    generate_exim(
        out, lines=lines, seed=7, start=datetime(2026, 11, 27, tzinfo=UTC), new_ids=new_ids
    )
    return out.getvalue()


def batches_of(data: bytes, cuts: list[int]) -> list[Batch]:
    """`data` cut after the lines numbered in `cuts` (0-based line ends), as the reader does."""
    ends = [i + 1 for i, byte in enumerate(data) if byte == 0x0A]
    bounds = [0, *(ends[cut] for cut in cuts), len(data)]
    batches = []
    for start, end in itertools.pairwise(bounds):
        batches.append(
            Batch(
                data=data[start:end],
                path="mainlog",
                first_line=data[:start].count(b"\n") + 1,
                offset=start,
                final=end == len(data),
            )
        )
    return batches


def parse_batches(batches: list[Batch], *, tz: str = "UTC") -> SourceOutput:
    return merge(list(Exim(tz=tz).parse(batches)))


@pytest.mark.parametrize("new_ids", [False, True])
def test_batches_give_the_events_of_one_batch(new_ids: bool) -> None:
    """Cut anywhere, a log gives the events it gives whole: senders join across the cuts."""
    data = generated_log(3000, new_ids=new_ids)
    whole = parse_batches([Batch(data=data, path="mainlog")], tz="Europe/Berlin")
    assert whole.events.height > 500
    assert whole.events["sender"].null_count() < whole.events.height // 4
    for cuts in ([1500], [0, 1, 2, 700, 701, 2998], list(range(99, 2999, 100))):
        split = parse_batches(batches_of(data, cuts), tz="Europe/Berlin")
        assert_frame_equal(split.events, whole.events)
        assert_frame_equal(split.malformed, whole.malformed)
        assert (split.read, split.skipped) == (whole.read, whole.skipped)


def test_batches_with_odd_lines_give_the_events_of_one_batch() -> None:
    """As above, with every test log (odd layouts, malformed lines) in one stream.

    (These logs reuse message ids, and a batch's arrivals join onto all its deliveries, even
    earlier ones: the senders may differ, nothing else may.)
    """
    data = b"".join((DATA / name).read_bytes() for name, *_ in COUNTS)
    whole = parse_batches([Batch(data=data, path="mainlog")])
    lines = data.count(b"\n")
    alone = pl.exclude("sender", "sender_domain", "message_id")
    for step in (1, 2, 7):
        split = parse_batches(batches_of(data, list(range(step - 1, lines - 1, step))))
        assert_frame_equal(split.events.select(alone), whole.events.select(alone))
        assert_frame_equal(split.malformed, whole.malformed)
        assert (split.read, split.skipped) == (whole.read, whole.skipped)


def python_lines(data: bytes) -> list[str]:
    """The lines as Python splits them: the reference `_lines` (CSV reader or Arrow) meets."""
    if not data:
        return []
    text = data.decode("utf-8", "replace")
    text = text[:-1] if text.endswith("\n") else text
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


LINE_BYTES = st.lists(
    st.sampled_from(
        [b"a", b" ", b"\n", b"\r", b"\r\n", b"\x00", b"\xff", b"\xe2\x82", b"\xe2\x82\xac",
         b"\xef\xbb\xbf", b'"', b",", b"#", b"\x1f\x8b", b"x\x9c", b"\xed\xa0\x80", b"\t"]
    ),
    max_size=40,
).map(b"".join)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(LINE_BYTES | st.binary(max_size=200))
def test_lines_are_split_as_python_splits_them(data: bytes) -> None:
    """Invalid UTF-8, CR, NUL, a byte order mark, a last line without newline: as Python."""
    assert exim_module._lines(Batch(data=data, path="p")).to_list() == python_lines(data)


REJECT_PIECES = [
    "H=", "(helo)", "(a b)", "[192.0.2.1]", "[192.0.2.1]:25", "mx.example", " ", " ", "  ",
    "U=root", "I=[198.51.100.1]:25", "F=<s@x>", "F=<>", "F=<a b>", "F=<s>x>", "temporarily",
    "rejected", "RCPT", "<a@b>", "<A@B.example>", "<a@b", ">", "<", "=", ":", ": reason",
    "rejected RCPT <r@x>", " F=<", "é", "\t", "x=y", "F=", "<>", "rejected RCPT <", ": 550 5.1.1",
]  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from(REJECT_PIECES), min_size=1, max_size=12).map("".join),
        min_size=1,
        max_size=8,
    )
)
@example(
    [
        "(helo) [192.0.2.1]:25 F=<s@x>",  # the usual shape: cut literally
        "a rejected RCPT <x@y> F=<s@x>",  # the first `rejected RCPT <` is the diagnostic
        "(helo) [192.0.2.1]:25 U=root F=<s@x>",  # U=root may start no client
        "mx (helo) [192.0.2.1] F=<a b> x F=<t@x>",
        "[192.0.2.1] F=<s>x>",
        "(héllo) [192.0.2.1] F=<s@x>",
    ]
)
def test_rejects_are_read_as_the_pattern_reads_them(texts: list[str]) -> None:
    """The literal cut of `H=... F=<s> rejected RCPT <a>` lines agrees with `_REJECT`."""
    lines = [f"2026-11-28 10:00:00 H={text} rejected RCPT <r@x>: no" for text in texts]
    lines += [f"2026-11-28 10:00:01 H={text}" for text in texts]
    out = parse("".join(line + "\n" for line in lines))
    assert_adds_up(out)
    body = pl.col("line").str.slice(20)
    expected = (
        pl.DataFrame({"line": lines})
        .with_row_index("row", offset=1)
        .filter(body.str.contains(" rejected RCPT <", literal=True))
        .with_columns(body.str.extract_groups(exim_module._REJECT).alias("r"))
        .unnest("r")
        .filter(pl.col("address").is_not_null())
        .select(
            pl.format("mainlog:{}", "row").alias("origin"),
            "sender",
            pl.col("address").str.to_lowercase().alias("recipient"),
            "diagnostic",
            pl.concat_str(pl.lit("H="), "client")
            .str.extract_groups(exim_module._HOST)
            .struct.field("relay_host", "relay_ip"),
        )
        # (the H= of a reject names the client our server refused: issue 13)
        .rename({"relay_host": "client_host", "relay_ip": "client_ip"})
    )
    columns = ["origin", "sender", "recipient", "diagnostic", "client_host", "client_ip"]
    assert out.events.select(pl.col("relay_host", "relay_ip").null_count()).row(0) == (
        out.events.height,
        out.events.height,
    )
    assert_frame_equal(out.events.select(columns), expected.select(columns))


REPLY_PIECES = [
    "550", "250", "451", "4.7.1", "5.1.1", "5.1.1234", "5.12.345", "2.0.0", "1", "12", ".", "-",
    " ", ": ", ":", "x", "OK", "5", "2", "é",
]  # fmt: skip


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.sampled_from(REPLY_PIECES), max_size=10).map("".join), max_size=50))
def test_replies_are_read_as_the_patterns_read_them(texts: list[str]) -> None:
    """`_with_codes` and `_with_codes_at_start` (once per distinct reply) agree with `_codes`."""
    frame = pl.DataFrame({"diagnostic": [*texts, None]}, schema={"diagnostic": pl.String()})
    for helper, pattern in [
        (exim_module._with_codes, exim_module._CODES),
        (exim_module._with_codes_at_start, exim_module._CODES_AT_START),
    ]:
        expected = frame.with_columns(exim_module._codes(pl.col("diagnostic"), pattern))
        assert_frame_equal(helper(frame).select(expected.columns), expected)


# a line's text after the message id -> recipient_domain, smtp_code, enhanced_code
VOCABULARY = [
    ("** r@Example.com: SMTP error from remote mail server after RCPT TO:<r@example.com>: 550"
     " 5.1.1 unknown", "example.com", 550, "5.1.1"),
    # a second digit 6 makes no reply code (560 was one before); the engine reads the text
    ("** r@example.com: SMTP error from remote mail server after RCPT TO:<r@example.com>: 560"
     " 5.1.1 unknown", "example.com", None, None),
    # a `>` at the end of the address is no part of the domain (it was before)
    ("** r@Example.com>: Unrouteable address", "example.com", None, None),
]  # fmt: skip


@pytest.mark.parametrize(("text", "domain", "code", "enhanced"), VOCABULARY)
def test_codes_and_domains_are_the_smtp_vocabulary(
    text: str, domain: str, code: int | None, enhanced: str | None
) -> None:
    row = event_at(parse(f"2026-11-28 10:00:05 1tE3xY-0001Ab-Cd {text}\n"), "mainlog:1")
    assert (row["recipient_domain"], row["smtp_code"], row["enhanced_code"]) == (
        domain,
        code,
        enhanced,
    )


# text after the message id (a line of its own, after ARRIVAL) -> relay_host, relay_ip, diagnostic
RELAYS = [
    ("=> a@b.example R=r T=t H=mx.b.example [192.0.2.1] C=\"250 OK\"", "mx.b.example",
     "192.0.2.1", "250 OK"),
    ("=> a@b.example R=r T=t H=mx.b.example [192.0.2.1]:25 C=\"250 OK\"", "mx.b.example",
     "192.0.2.1", "250 OK"),
    ("=> a@b.example R=r T=t H=[192.0.2.1] C=\"250 OK\"", None, "192.0.2.1", "250 OK"),
    ("=> a@b.example R=r T=t H=(helo) [192.0.2.1] C=\"250 OK\"", None, "192.0.2.1", "250 OK"),
    ("=> a@b.example R=r T=t H=mx (helo) [192.0.2.1] C=\"250 OK\"", "mx", "192.0.2.1", "250 OK"),
    ("=> a@b.example R=r T=t H=mx.b.example [2001:db8::1] C=\"250 OK\"", "mx.b.example",
     "2001:db8::1", "250 OK"),
    ("=> a@b.example R=r T=t H=mx.b.example [192.0.2.1 C=\"250 OK\"", None, None, "250 OK"),
    ("** a@b.example R=r T=t H=mx.é.example [192.0.2.1]: 550 5.1.1 Benutzer unbekannt: Müller",
     "mx.é.example", "192.0.2.1", "550 5.1.1 Benutzer unbekannt: Müller"),
    ("== a@b.example R=r T=t defer (-44): SMTP error from remote mail server after RCPT TO:<a@b>:"
     " host mx.b.example [192.0.2.7]: 450 4.2.0 try later", "mx.b.example", "192.0.2.7",
     "SMTP error from remote mail server after RCPT TO:<a@b>: host mx.b.example [192.0.2.7]:"
     " 450 4.2.0 try later"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "host", "ip", "diagnostic"), RELAYS)
def test_relays(text: str, host: str | None, ip: str | None, diagnostic: str) -> None:
    out = parse(f"{ARRIVAL}\n2026-11-28 10:00:01 1tE3xY-0001Ab-Cd {text}\n")
    assert out.events.select("relay_host", "relay_ip", "diagnostic", "sender").rows() == [
        (host, ip, diagnostic, "s@shop.example")
    ]


# Both directions on one Debian/Ubuntu server (tests/data/direction/exim-debian.log):
# line -> event, transport, recipient, message_ref, relay_ip, client_host, client_ip, sender
DEBIAN = [
    (2, "delivered", "remote_smtp", "jane.doe@gmail.com", "1tE3xY-0001Ab-Cd", "192.0.2.27",
     None, None, "news@example.com"),
    (3, "bounced", "remote_smtp", "nobody@example.org", "1tE3xY-0001Ab-Cd", "192.0.2.25", None,
     None, "news@example.com"),
    # the bounce notice of line 3, delivered into a local mailbox
    (6, "delivered", "mail_spool", "news@example.com", "1tE3xZ-0001Ac-De", None, None, None, ""),
    (9, "deferred", "remote_smtp_smarthost", "sam@yahoo.com", "1tE3yC-0002Ca-Aa", "192.0.2.50",
     None, None, "billing@example.com"),
    (11, "delivered", "maildir_home", "alice@example.com", "1tE3yA-0002Bc-Ef", None, None, None,
     "friend@gmail.com"),
    (12, "delivered", "dovecot_lmtp", "carol@example.com", "1tE3yA-0002Bc-Ef", None, None, None,
     "friend@gmail.com"),
    (13, "delivered", "address_pipe", "bob@example.com", "1tE3yA-0002Bc-Ef", None, None, None,
     "friend@gmail.com"),
    # => :blackhole: <devnull@example.com> R=system_aliases   (no T=: the router)
    (14, "delivered", "system_aliases", ":blackhole:", "1tE3yA-0002Bc-Ef", None, None, None,
     "friend@gmail.com"),
    (15, "deferred", "maildir_home", "dave@example.com", "1tE3yA-0002Bc-Ef", None, None, None,
     "friend@gmail.com"),
    (17, "rejected", None, "bob@example.com", None, None, None, "203.0.113.77",
     "promo@bulk.example.net"),
    (18, "rejected", None, "nobody@example.com", None, None, "mail.example.org", "192.0.2.25",
     "newsletter@example.org"),
    (19, "rejected", None, "victim@example.net", None, None, None, "203.0.113.9",
     "spam@example.net"),
    # rejected after DATA: the whole message's event (no recipient), with or without an id
    (20, "rejected", None, None, "1tE3yB-0002Bd-Fg", None, None, "203.0.113.88",
     "win@prize.example.net"),
    (21, "rejected", None, None, None, None, None, "203.0.113.89", "win@prize.example.net"),
    (23, "delivered", "amavis_smtp", "erin@example.com", "1tE3yD-0002Da-Bb", "127.0.0.1", None,
     None, "news@example.com"),
]  # fmt: skip
DEBIAN_FIELDS = (
    "event", "transport", "recipient", "message_ref", "relay_ip", "client_host", "client_ip",
    "sender",
)  # fmt: skip


def test_the_transport_and_the_peer_of_each_event_issue_13() -> None:
    name = "exim-debian.log"
    out = parse((DATA.parent / "direction" / name).read_bytes(), path=name)
    got = {
        int(row["origin"].rsplit(":", 1)[1]): tuple(row[f] for f in DEBIAN_FIELDS)
        for row in out.events.to_dicts()
    }
    assert got == {line: tuple(fields) for line, *fields in DEBIAN}
    assert (out.read, out.skipped, out.malformed_count) == (24, 9, 0)
    after_data = event_at(out, f"{name}:20")
    assert after_data["diagnostic"] == (
        "rejected after DATA: Your message scored 15.2 SpamAssassin points. Report follows:"
    )
    assert (after_data["recipient_domain"], after_data["relay_host"]) == (None, None)


def test_an_unreadable_rejected_after_data_line_is_malformed() -> None:
    # H= and the words, but no "F=<...> rejected after DATA" Exim writes after the client
    out = parse("2026-11-28 10:07:00 H=[192.0.2.1] said rejected after DATAx\n")
    assert (out.read, out.events.height, out.malformed_count) == (1, 0, 1)
    assert out.malformed["reason"].to_list() == ["unreadable rejected after DATA line"]


def test_lines_beyond_ascii_take_the_patterns() -> None:
    """A character beyond ASCII or a NUL byte in a batch changes nothing in its other lines."""
    lines = [
        ARRIVAL.replace("s@shop", "sé@shop"),
        "2026-11-28 10:00:01 1tE3xY-0001Ab-Cd ** r@example.com: Empfänger unbekannt",
        "2026-11-28 10:00:02 H=(héllo) [192.0.2.1]:25 F=<s@x> rejected RCPT <Ré@x>: no",
        BOUNCE,
    ]
    expected = [
        ("sé@shop.example", "r@example.com", "Empfänger unbekannt", None),
        ("s@x", "ré@x", "rejected RCPT <Ré@x>: no", "192.0.2.1"),
        ("sé@shop.example", "r@example.com", "Unrouteable address", None),
    ]
    for data in ("\n".join(lines) + "\n", "\n".join(lines) + "\n\x00 not exim\n"):
        out = parse(data)
        assert_adds_up(out)
        # (the reject's address is its client's: issue 13)
        peer = pl.coalesce("relay_ip", "client_ip")
        got = out.events.select("sender", "recipient", "diagnostic", peer).rows()
        assert got == expected


# A delivery into a local mailbox, pipe or file names the local part, not an address
# (Debian's exim4 with its default local_user router; the chain of an alias, as Exim logs it)
# line -> recipient, recipient_domain, original_recipient
LOCAL_DELIVERIES = [
    ("=> jana <jana.kraus@example.com> R=local_user T=mail_spool",
     "jana.kraus@example.com", "example.com", "jana.kraus@example.com"),
    ("=> news <News@Example.com> R=local_user T=mail_spool",
     "news@example.com", "example.com", "News@Example.com"),
    # sales@ is an alias of info@, which the local_user router delivers to jana: the parent
    ("=> jana (info@example.com) <sales@example.com> R=local_user T=mail_spool",
     "info@example.com", "example.com", "sales@example.com"),
    ("=> |/usr/bin/procmail (bob@example.com) <bob@example.com> R=userforward T=address_pipe",
     "bob@example.com", "example.com", "bob@example.com"),
    ("=> /home/bob/mbox <bob@example.com> R=userforward T=address_file",
     "bob@example.com", "example.com", "bob@example.com"),
    # thrown away: no mailbox got it
    ("=> :blackhole: <devnull@example.com> R=system_aliases",
     ":blackhole:", None, "devnull@example.com"),
    # an address stays the recipient, as before
    ("=> jana.kraus@example.com <info@example.com> R=dnslookup T=remote_smtp H=mx.example.com"
     " [192.0.2.1]", "jana.kraus@example.com", "example.com", "info@example.com"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "recipient", "domain", "original"), LOCAL_DELIVERIES)
def test_a_local_delivery_is_for_the_address_it_came_from_issue_13(
    text: str, recipient: str, domain: str | None, original: str
) -> None:
    out = parse(f"2026-11-28 10:00:00 1tE3xY-0001Ab-Cd {text}\n")
    row = event_at(out, "mainlog:1")
    assert (row["recipient"], row["recipient_domain"], row["original_recipient"]) == (
        recipient,
        domain,
        original,
    )
