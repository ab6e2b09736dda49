"""The log generator: determinism, exact sizes, shapes, and truth that plain counting confirms."""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bounce_analyzer import generate
from bounce_analyzer.generate import (
    Truth,
    generate_exim,
    generate_mailgun,
    generate_postfix,
    generate_sendgrid,
    output,
    world,
)
from bounce_analyzer.schema import DIRECTIONS, EVENTS

START = datetime(2026, 11, 27, tzinfo=UTC)


def _postfix(n: int, seed: int, **kw: object) -> tuple[bytes, Truth]:
    buf = io.BytesIO()
    truth = generate_postfix(buf, lines=n, seed=seed, start=START, **kw)
    return buf.getvalue(), truth


def _exim(n: int, seed: int, **kw: object) -> tuple[bytes, Truth]:
    buf = io.BytesIO()
    truth = generate_exim(buf, lines=n, seed=seed, start=START, **kw)
    return buf.getvalue(), truth


def _sendgrid(n: int, seed: int, **kw: object) -> tuple[bytes, Truth]:
    buf = io.BytesIO()
    truth = generate_sendgrid(buf, events=n, seed=seed, start=START, **kw)
    return buf.getvalue(), truth


def _mailgun(n: int, seed: int, **kw: object) -> tuple[bytes, Truth]:
    buf = io.BytesIO()
    truth = generate_mailgun(buf, events=n, seed=seed, start=START, **kw)
    return buf.getvalue(), truth


WRITERS: dict[str, Callable[..., tuple[bytes, Truth]]] = {
    "postfix": _postfix,
    "exim": _exim,
    "sendgrid": _sendgrid,
    "mailgun": _mailgun,
}


def _records(data: bytes) -> list[str]:
    text = data.decode("utf-8")
    assert text == "" or text.endswith("\n")
    return text.splitlines()


# ---------------------------------------------------------------------------------------------
# Determinism and sizes


@pytest.mark.parametrize("source", sorted(WRITERS))
def test_same_seed_same_bytes(source: str) -> None:
    first, _ = WRITERS[source](1500, 7)
    again, _ = WRITERS[source](1500, 7)
    other, _ = WRITERS[source](1500, 8)
    assert first == again
    assert first != other


@pytest.mark.parametrize("source", sorted(WRITERS))
@pytest.mark.parametrize("size", [0, 1, 9, 1_234])
def test_record_count_is_exact(source: str, size: int) -> None:
    data, truth = WRITERS[source](size, 3)
    assert len(_records(data)) == size
    assert truth.records == size
    assert truth.event_records + truth.skipped == size
    assert sum(truth.events.values()) == truth.event_records
    assert set(truth.events) == set(EVENTS)


#: A queue id our own clients submitted a message under (smtpd from an application server,
#: or pickup): one per message of the plan.
SUBMITTED = re.compile(
    r"postfix/(?:smtpd\[\d+\]: (\w+): client=(?:app0[12]|crm)\.example\.com"
    r"|pickup\[\d+\]: (\w+): uid=33 )"
)


def _submitted(data: bytes) -> set[str]:
    return {a or b for a, b in SUBMITTED.findall(data.decode())}


def test_segments_join_without_repeating_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """Large outputs are built in segments; ids stay unique and time keeps increasing."""
    monkeypatch.setattr(output, "SEGMENT", 3_000)
    data, truth = _postfix(10_000, 5)
    lines = _records(data)
    assert len(lines) == 10_000
    qids_per_sender: dict[str, set[str]] = {}
    removed: Counter[str] = Counter()
    for line in lines:
        m = re.search(r"qmgr\[\d+\]: ([0-9A-F]+): from=<([^>]*)>, size", line)
        if m:
            qids_per_sender.setdefault(m.group(1), set()).add(m.group(2))
        if m := re.search(r"qmgr\[\d+\]: ([0-9A-F]+): removed", line):
            removed[m.group(1)] += 1
    assert all(len(senders) == 1 for senders in qids_per_sender.values())
    # every queue id (a message, its re-injection by the filter, a bounce notice, a message
    # from outside) is taken and removed once
    assert set(removed) == set(qids_per_sender) and set(removed.values()) == {1}
    assert len(_submitted(data)) == truth.messages
    _assert_monotonic_classic(lines)


# ---------------------------------------------------------------------------------------------
# Postfix


POSTFIX_LINE = re.compile(
    r"^(?P<stamp>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) mx1 (?:postfix/"
    r"(?P<prog>smtpd|smtp|lmtp|local|virtual|pipe|qmgr|cleanup|pickup|bounce|postscreen|anvil)"
    r"\[\d+\]|amavis\[\d+\]|dovecot): (?P<msg>.+)$"
)
POSTFIX_QUEUED = re.compile(r"^(?P<qid>[0-9A-F]{10,11}): ")
#: relay=: a remote MX, amavis on 127.0.0.1:10024, Dovecot's LMTP socket, or a local agent.
POSTFIX_STATUS = re.compile(
    r"^[0-9A-F]{10,11}: to=<(?P<rcpt>[^>]+)>, relay=(?P<relay>none|[a-z0-9.-]+\[[0-9.]+\]:\d+"
    r"|mx1\.example\.com\[private/dovecot-lmtp\]|local|virtual|dovecot), "
    r"delay=[0-9.]+, delays=[0-9.]+/[0-9.]+/[0-9.]+/[0-9.]+, dsn=(?P<dsn>\d\.\d{1,3}\.\d{1,3}), "
    r"status=(?P<status>sent|deferred|bounced) \((?P<text>.+)\)$"
)


def _assert_monotonic_classic(lines: list[str]) -> None:
    stamps = [datetime.strptime("2026 " + line[:15], "%Y %b %d %H:%M:%S") for line in lines]
    assert stamps == sorted(stamps)


def test_postfix_lines_have_the_syslog_shape() -> None:
    data, _ = _postfix(3_000, 11)
    for line in _records(data):
        m = POSTFIX_LINE.match(line)
        assert m, line
        msg = m.group("msg")
        if ": to=<" in msg:
            assert POSTFIX_STATUS.match(msg), line
        elif m.group("prog") in ("qmgr", "cleanup", "bounce", "pickup"):
            assert POSTFIX_QUEUED.match(msg), line
        elif m.group("prog") is None:
            assert re.match(r"\(\d+-\d\d\) Passed CLEAN |lmtp\(\S+@\S+\)<\d+><\w+>: ", msg), line


def test_postfix_timestamps_are_monotonic_and_in_the_window() -> None:
    data, _ = _postfix(3_000, 12)
    lines = _records(data)
    _assert_monotonic_classic(lines)
    assert lines[0].startswith("Nov 27 ") and lines[-1].startswith("Nov 27 ")


def test_postfix_rfc3339_timestamps_in_a_zone() -> None:
    data, _ = _postfix(500, 13, classic_timestamps=False, tz="Europe/Berlin")
    stamps = [datetime.fromisoformat(line.split(" ", 1)[0]) for line in _records(data)]
    assert stamps == sorted(stamps)
    assert all(s.utcoffset() is not None and s.utcoffset().total_seconds() == 3600 for s in stamps)  # type: ignore[union-attr]


def test_postfix_long_queue_ids() -> None:
    data, truth = _postfix(800, 14, long_queue_ids=True)
    text = data.decode()
    qids = set(re.findall(r"qmgr\[\d+\]: ([0-9A-Za-z]+): removed", text))
    qids |= set(re.findall(r"cleanup\[\d+\]: ([0-9A-Za-z]+): milter-reject", text))
    assert len(_submitted(data)) == truth.messages
    assert _submitted(data) <= qids
    assert all(
        re.fullmatch(
            r"[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z]{10}z[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-y]{4}", q
        )
        for q in qids
    )


_Codes = Counter[tuple[str, int | None, str | None]]


def _postfix_counts(lines: list[str]) -> tuple[Counter[str], Counter[tuple[str, str]], _Codes]:
    events: Counter[str] = Counter()
    by_domain: Counter[tuple[str, str]] = Counter()
    by_code: Counter[tuple[str, int | None, str | None]] = Counter()
    names = {"sent": "delivered", "deferred": "deferred", "bounced": "bounced"}
    last_domain: dict[str, str] = {}
    for line in lines:
        msg = line.split(": ", 1)[1]
        if m := POSTFIX_STATUS.match(msg):
            event = names[m.group("status")]
            domain = m.group("rcpt").rsplit("@", 1)[1]
            last_domain[msg[:11].rstrip(":")] = domain
            code_m = re.match(
                r"(?:host \S+ (?:said|refused to talk to me): )?(\d{3})[ -]", m.group("text")
            )
            code = int(code_m.group(1)) if code_m else None
            events[event] += 1
            by_domain[(domain, event)] += 1
            by_code[(event, code, m.group("dsn"))] += 1
        elif "status=expired" in msg:
            domain = last_domain[msg[:11].rstrip(":")]
            events["expired"] += 1
            by_domain[(domain, "expired")] += 1
            by_code[("expired", None, None)] += 1
        elif "NOQUEUE: reject:" in msg or "milter-reject:" in msg:
            m2 = re.search(
                r": (?:(\d{3}) )?(\d\.\d\.\d{1,3}) .*; from=<[^>]*>,? to=<[^@]+@([^>]+)>", msg
            )
            assert m2, line
            events["rejected"] += 1
            by_domain[(m2.group(3), "rejected")] += 1
            code = int(m2.group(1)) if m2.group(1) else None
            by_code[("rejected", code, m2.group(2))] += 1
    return events, by_domain, by_code


def test_postfix_truth_matches_plain_counting() -> None:
    data, truth = _postfix(6_000, 21)
    events, by_domain, by_code = _postfix_counts(_records(data))
    assert {e: n for e, n in truth.events.items() if n} == dict(events)
    flat = {(d, e): n for d, per in truth.by_domain.items() for e, n in per.items() if n}
    assert flat == dict(by_domain)
    assert truth.by_code == dict(by_code)
    assert truth.event_records == sum(events.values())
    assert truth.messages == len(_submitted(data))


def test_postfix_templates_know_their_category() -> None:
    _, truth = _postfix(6_000, 22)
    facts = truth.templates["google.user_unknown"]
    assert facts["category"] == "user_unknown"
    assert (facts["event"], facts["smtp_code"], facts["enhanced_code"]) == ("bounced", 550, "5.1.1")
    assert sum(int(str(t["count"])) for t in truth.templates.values()) == (
        truth.event_records - truth.events["expired"]
    )
    body = json.loads(truth.to_json())
    assert body["events"] == truth.events and body["skipped"] == truth.skipped


def test_postfix_cover_shows_every_failure_text() -> None:
    _, truth = _postfix(2_000, 1, cover=True)
    failures = {r.id for r in world.REPLIES if r.status != "sent"}
    assert failures <= set(truth.templates)


# The replies as each source writes them: exact texts.
REPLY_TEXTS = [
    (
        "google.user_unknown",
        "postfix",
        "550-5.1.1 The email account that you tried to reach does not exist. Please try "
        "550-5.1.1 double-checking the recipient's email address for typos or 550-5.1.1 "
        "unnecessary spaces. For more information, go to 550 5.1.1  "
        "https://support.google.com/mail/?p=NoSuchUser {gid} - gsmtp",
    ),
    (
        "google.over_quota",
        "exim",
        "452-4.2.2 The recipient's inbox is out of storage space. Please direct the\\n"
        "452-4.2.2 recipient to\\n452 4.2.2  https://support.google.com/mail/?p=OverQuotaTemp "
        "{gid} - gsmtp",
    ),
    (
        "google.over_quota",
        "mailgun",
        "4.2.2 The recipient's inbox is out of storage space. Please direct the\n4.2.2 recipient "
        "to\n4.2.2  https://support.google.com/mail/?p=OverQuotaTemp {gid} - gsmtp",
    ),
    (
        "google.over_quota",
        "sendgrid",
        "452 4.2.2 The recipient's inbox is out of storage space. Please direct the recipient to "
        "https://support.google.com/mail/?p=OverQuotaTemp {gid} - gsmtp",
    ),
    (
        "yahoo.no_account",
        "postfix",
        "554 delivery error: dd This user doesn't have a {domain} account ({rcpt}) [0] - "
        "mta{yid}.mail.{ycl}.yahoo.com",
    ),
    (
        "microsoft365.access_denied",
        "postfix",
        "550 5.4.1 Recipient address rejected: Access denied. AS(201806281) "
        "[{eop}.eop-EUR03.prod.protection.outlook.com]",
    ),
    ("local.timeout", "postfix", "connect to {mx}[{mxip}]:25: Connection timed out"),
    ("local.timeout", "exim", "Connection timed out"),
    ("local.null_mx", "postfix", "Domain {domain} does not accept mail (nullMX)"),
]


@pytest.mark.parametrize(("reply_id", "style", "expected"), REPLY_TEXTS)
def test_reply_text(reply_id: str, style: str, expected: str) -> None:
    reply = world.REPLIES[world.REPLY_INDEX[reply_id]]
    assert world.format_reply(reply, style) == expected


# A whole line, exactly: the first smtp line of a fixed seed (pins the format and the bytes).
def test_postfix_first_delivery_line_exactly() -> None:
    data, _ = _postfix(40, 1)
    line = next(x for x in _records(data) if "status=" in x)
    assert line == (
        "Nov 27 03:44:03 mx1 postfix/smtp[60434]: 3F805963E7: to=<felix.lindqvist69@hotmail.com>, "
        "relay=hotmail-com.olc.protection.outlook.com[52.101.21.209]:25, delay=2.0, "
        "delays=0.4/0.35/0.32/0.94, dsn=2.6.0, status=sent (250 2.6.0 "
        "<20261127034401.d3b218cc@example.com> [InternalId=57288986849810, "
        "Hostname=AM4PEPF000E3538.eurprd04.prod.outlook.com] 239498 bytes in 0.920, 27.920 KB/sec "
        "Queued mail for delivery -> 250 2.1.5)"
    )


# ---------------------------------------------------------------------------------------------
# Exim

EXIM_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (?:(?P<id>[0-9A-Za-z]{6}-[0-9A-Za-z]{6}-[0-9A-Za-z]{2}) "
    r"(?P<rest>.+)|(?:SMTP connection|no host name|Start queue|End queue|H=\(|rejected EHLO).+)$"
)
EXIM_REST = re.compile(
    r"^(?:<= \S+ (?:H=|U=).+ S=\d+ id=\S+|(?:=>|->) \S+ R=dnslookup T=remote_smtp H=\S+ \[[0-9.]+\]"
    r' .+ C=".+"|== \S+ R=dnslookup T=remote_smtp defer \(-?\d+\).*: .+|\*\* \S+(?: R=dnslookup'
    r" T=remote_smtp H=\S+ \[[0-9.]+\] .+)?: .+|H=\S+ \[[0-9.]+\] .+|Completed"
    # a bounce message, and deliveries into our own mailboxes
    r"|<= <> R=\S+ U=Debian-exim P=local S=\d+"
    r'|=> \S+@\S+ R=dovecot_user T=dovecot_lmtp C="250 2\.0\.0 <\S+> \w+ Saved"'
    r"|=> \S+@\S+ R=localuser T=local_delivery"
    r"|== \S+@\S+ R=localuser T=local_delivery defer \(-22\): mailbox is full .+"
    # content scanning, at the end of DATA
    r"|H=\(\S+\) \[[0-9.]+\]:\d+ F=<\S+> rejected after DATA: .+)$"
)


def test_exim_lines_have_the_mainlog_shape() -> None:
    data, _ = _exim(3_000, 31)
    lines = _records(data)
    for line in lines:
        m = EXIM_LINE.match(line)
        assert m, line
        if m.group("id"):
            assert EXIM_REST.match(m.group("rest")), line
    stamps = [line[:19] for line in lines]
    assert stamps == sorted(stamps)


def test_exim_new_ids() -> None:
    data, truth = _exim(600, 32, new_ids=True)
    new_id = r"[0-9A-Za-z]{6}-[0-9A-Za-z]{11}-[0-9A-Za-z]{4}"
    completed = re.findall(rf" ({new_id}) Completed", data.decode())
    assert len(completed) == len(set(completed))
    ours = re.findall(
        rf" ({new_id}) <= \S+ (?:H=(?:app0[12]|crm)\.example\.com |U=www-data)", data.decode()
    )
    assert set(ours) <= set(completed)
    assert len(ours) == truth.messages


def test_exim_truth_matches_plain_counting() -> None:
    data, truth = _exim(6_000, 33)
    events: Counter[str] = Counter()
    domains: Counter[tuple[str, str]] = Counter()
    for line in _records(data):
        rest = line[20:]
        m = re.match(r"\S+ (=>|->|==|\*\*) ([^ :]+)", rest)
        if m:
            event = {"=>": "delivered", "->": "delivered", "==": "deferred"}.get(m.group(1))
            if event is None:
                event = "expired" if rest.endswith("retry timeout exceeded") else "bounced"
            events[event] += 1
            domains[(m.group(2).rsplit("@", 1)[1], event)] += 1
        elif " rejected RCPT " in rest or " rejected after DATA: " in rest:
            events["rejected"] += 1
    assert {e: n for e, n in truth.events.items() if n} == dict(events)
    flat = {(d, e): n for d, per in truth.by_domain.items() for e, n in per.items() if n}
    assert {k: v for k, v in flat.items() if k[1] != "rejected"} == dict(domains)


# ---------------------------------------------------------------------------------------------
# Both directions: our mail out, other servers' mail in, the content filter's hop

#: How each of our domains' mail is delivered into its mailboxes (world.toml's own_domains).
POSTFIX_RELAY_OF = {
    "example.com": "mx1.example.com[private/dovecot-lmtp]",
    "news.example.com": "virtual",
    "shop.example.com": "dovecot",
    "status.example.com": "local",
}
EXIM_ROUTE_OF = {
    "example.com": "R=dovecot_user T=dovecot_lmtp",
    "news.example.com": "R=dovecot_user T=dovecot_lmtp",
    "shop.example.com": "R=dovecot_user T=dovecot_lmtp",
    "status.example.com": "R=localuser T=local_delivery",
}
POSTFIX_QID_LINE = re.compile(r"postfix/(\w+)\[\d+\]: (\w+): (.*)$")


def _postfix_by_qid(lines: list[str]) -> dict[str, list[tuple[str, str]]]:
    """Each queue id's (program, text) lines, in order."""
    by_qid: dict[str, list[tuple[str, str]]] = {}
    for line in lines:
        if m := POSTFIX_QID_LINE.search(line):
            by_qid.setdefault(m.group(2), []).append((m.group(1), m.group(3)))
    return by_qid


def _sender(entries: list[tuple[str, str]]) -> str:
    return next(
        m.group(1) for prog, text in entries if (m := re.match(r"from=<([^>]*)>, size", text))
    )


def _direction(relay: str) -> str:
    if relay.startswith("127.0.0.1[127.0.0.1]:10024"):
        return "internal"
    if relay in POSTFIX_RELAY_OF.values():
        return "inbound"
    return "outbound"


def test_postfix_truth_by_direction_matches_plain_counting() -> None:
    data, truth = _postfix(20_000, 61)
    counted: Counter[tuple[str, str]] = Counter()
    names = {"sent": "delivered", "deferred": "deferred", "bounced": "bounced"}
    for line in _records(data):
        msg = line.split(": ", 1)[1]
        if m := POSTFIX_STATUS.match(msg):
            counted[(_direction(m.group("relay")), names[m.group("status")])] += 1
        elif "status=expired" in msg:
            counted[("outbound", "expired")] += 1
        elif "reject:" in msg:
            counted[("inbound", "rejected")] += 1
    flat = {(d, e): n for d, per in truth.by_direction.items() for e, n in per.items() if n}
    assert flat == dict(counted)
    # a mid-size server: most events are our outbound mail, every direction is there
    outbound = sum(truth.by_direction["outbound"].values())
    assert outbound > truth.event_records / 2
    assert truth.by_direction["inbound"]["delivered"] > 100
    assert truth.by_direction["inbound"]["deferred"] > 0
    assert truth.by_direction["internal"]["delivered"] > 100


def test_the_truth_counts_the_directions_of_the_schema() -> None:
    # one definition of the directions: the truth counts by schema.DIRECTIONS, the values the
    # engine gives, and defines none of its own
    assert tuple(Truth(source="postfix", seed=1).by_direction) == DIRECTIONS
    assert generate.truth.DIRECTIONS is DIRECTIONS


def test_postfix_content_filter_hop_gives_the_message_back_under_a_new_queue_id() -> None:
    data, _ = _postfix(20_000, 62)
    lines = _records(data)
    by_qid = _postfix_by_qid(lines)
    people = {
        f"{s[0]}@{s[1]}"
        for s, person in zip(world.SENDERS, world.SENDER_IS_PERSON, strict=True)
        if person
    }
    hops = 0
    for qid, entries in by_qid.items():
        queued = [
            (m.group(1), m.group(2))
            for prog, text in entries
            if (
                m := re.match(
                    r"to=<([^>]+)>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:10024, .*"
                    r"status=sent \(250 2\.0\.0 from MTA\(smtp:\[127\.0\.0\.1\]:10025\): "
                    r"250 2\.0\.0 Ok: queued as (\w+)\)$",
                    text,
                )
            )
        ]
        if not queued:
            continue
        hops += 1
        assert _sender(entries) in people
        assert entries[-1] == ("qmgr", "removed")
        (back,) = {new for _, new in queued}
        again = by_qid[back]
        assert again[0] == ("smtpd", "client=localhost[127.0.0.1]")
        assert _sender(again) == _sender(entries)
        message_ids = {text for prog, text in entries + again if prog == "cleanup"}
        assert len(message_ids) == 1  # the same Message-ID under both ids
        delivered_to = {
            m.group(1) for prog, text in again if (m := re.match(r"to=<([^>]+)>, relay=", text))
        }
        assert delivered_to == {rcpt for rcpt, _ in queued}
        assert any(
            f"Queue-ID: {qid}, " in line and f"queued_as: {back}, " in line for line in lines
        )
    assert hops > 50


def test_postfix_bounce_notices_reach_their_senders_mailboxes() -> None:
    data, truth = _postfix(20_000, 63)
    by_qid = _postfix_by_qid(_records(data))
    notices = 0
    for entries in by_qid.values():
        for prog, text in entries:
            if prog != "bounce":
                continue
            notices += 1
            notice = by_qid[text.rsplit(" ", 1)[1]]
            sender = _sender(entries)
            assert notice[0][0] == "cleanup"
            assert (
                notice[0][1].startswith("message-id=<2026") and "@mx1.example.com>" in notice[0][1]
            )
            assert _sender(notice) == ""
            (status,) = [t for p, t in notice if t.startswith("to=<")]
            relay = POSTFIX_RELAY_OF[sender.split("@")[1]]
            assert status.startswith(f"to=<{sender}>, relay={relay}, ") and "status=sent" in status
            assert notice[-1] == ("qmgr", "removed")
    assert notices == truth.events["bounced"] + truth.events[
        "expired"
    ] - _bounced_recipients_beyond_one(by_qid)
    assert notices > 50


def _bounced_recipients_beyond_one(by_qid: dict[str, list[tuple[str, str]]]) -> int:
    """Failed recipients past the first of their message (a message has one notice)."""
    extra = 0
    for entries in by_qid.values():
        failed = sum(
            1 for _, text in entries if "status=bounced" in text or "status=expired" in text
        )
        extra += max(0, failed - 1)
    return extra


def test_postfix_mail_from_outside_is_delivered_into_our_mailboxes() -> None:
    data, _ = _postfix(20_000, 64)
    by_qid = _postfix_by_qid(_records(data))
    clients = {f"client={c[0]}[{c[1]}]" for c in world.CORRESPONDENTS}
    inbound = 0
    for entries in by_qid.values():
        if entries[0][1] not in clients:
            continue
        inbound += 1
        statuses = [t for p, t in entries if t.startswith("to=<")]
        rcpt = statuses[0][4:].split(">", 1)[0]
        relay = POSTFIX_RELAY_OF[rcpt.split("@")[1]]
        assert all(s.startswith(f"to=<{rcpt}>, relay={relay}, ") for s in statuses)
        assert "status=sent" in statuses[-1]
        assert all("status=deferred" in s and "Quota exceeded" in s for s in statuses[:-1])
    assert inbound > 100


def test_postscreen_rejects_only_when_enforced() -> None:
    plain, _ = _postfix(20_000, 65)
    assert b"postscreen" in plain and not re.search(rb"postscreen\[\d+\]: NOQUEUE: reject", plain)
    data, truth = _postfix(20_000, 65, postscreen_enforce=True)
    rejects = re.findall(
        r"postscreen\[\d+\]: NOQUEUE: reject: RCPT from \[[0-9.]+\]:\d+: 550 5\.(7\.1 Service "
        r"unavailable; client \[[0-9.]+\] blocked using zen\.spamhaus\.org|5\.1 Protocol error); "
        r"from=<[^>]+>, to=<[^>]+@example\.com>, proto=ESMTP, helo=<[^>]+>",
        data.decode(),
    )
    assert len(rejects) > 20
    assert len(rejects) == sum(
        int(str(truth.templates[name]["count"]))
        for name in ("postfix.postscreen.dnsbl", "postfix.postscreen.pregreet")
    )


def test_exim_bounce_messages_and_mail_from_outside_reach_our_mailboxes() -> None:
    data, truth = _exim(20_000, 66)
    lines = [line[20:] for line in _records(data)]
    by_id: dict[str, list[str]] = {}
    for rest in lines:
        if m := re.match(r"(\w{6}-\w{6}-\w{2}) (.*)$", rest):
            by_id.setdefault(m.group(1), []).append(m.group(2))
    senders = {i: e[0].split()[1] for i, e in by_id.items() if e[0].startswith("<= ")}
    bounces = inbound = 0
    for entries in by_id.values():
        if m := re.match(r"<= <> R=(\S+) U=Debian-exim P=local S=\d+$", entries[0]):
            bounces += 1
            parent = by_id[m.group(1)]
            assert any(e.startswith("** ") for e in parent)
            sender = senders[m.group(1)]
            route = EXIM_ROUTE_OF[sender.split("@")[1]]
            assert entries[1].startswith(f"=> {sender} {route}")
            assert entries[2:] == ["Completed"]
        elif " H=" in entries[0] and any(
            f"H={c[0]} [{c[1]}] " in entries[0] for c in world.CORRESPONDENTS
        ):
            inbound += 1
            rcpt = entries[-2].split()[1]
            assert entries[-2].startswith(f"=> {rcpt} {EXIM_ROUTE_OF[rcpt.split('@')[1]]}")
            assert all(e.startswith(f"== {rcpt} ") for e in entries[1:-2])
            assert entries[-1] == "Completed"
    assert bounces > 50 and inbound > 100
    assert truth.by_direction["inbound"]["delivered"] == bounces + inbound
    assert truth.by_direction["inbound"]["rejected"] == truth.events["rejected"]
    assert truth.by_direction["internal"] == dict.fromkeys(EVENTS, 0)


# ---------------------------------------------------------------------------------------------
# SendGrid and Mailgun

SENDGRID_EVENTS = {
    "delivered": "delivered",
    "deferred": "deferred",
    "bounce": "bounced",
    "dropped": "dropped",
    "spamreport": "complained",
}


def test_sendgrid_truth_matches_plain_counting() -> None:
    data, truth = _sendgrid(5_000, 41)
    events: Counter[str] = Counter()
    last = 0
    for line in _records(data):
        event = json.loads(line)
        assert {"email", "timestamp", "event", "sg_event_id", "sg_message_id", "smtp-id"} <= set(
            event
        )
        assert isinstance(event["category"] if "category" in event else "", str | list)
        assert event["timestamp"] >= last
        last = event["timestamp"]
        if event["event"] == "deferred":
            assert isinstance(event["attempt"], str)
        if event["event"] == "bounce":
            assert event["type"] in ("bounce", "blocked") and event["bounce_classification"]
        if event["event"] in SENDGRID_EVENTS:
            events[SENDGRID_EVENTS[event["event"]]] += 1
    assert {e: n for e, n in truth.events.items() if n} == dict(events)


def test_sendgrid_array_is_one_json_document() -> None:
    data, truth = _sendgrid(700, 42, ndjson=False)
    assert data.count(b"\n") == 1 and data.startswith(b"[{") and data.endswith(b"}]\n")
    body = json.loads(data)
    assert isinstance(body, list) and len(body) == 700 == truth.records


def test_mailgun_truth_matches_plain_counting() -> None:
    data, truth = _mailgun(5_000, 51)
    events: Counter[str] = Counter()
    for line in _records(data):
        body = json.loads(line)
        assert set(body) == {"signature", "event-data"}
        event = body["event-data"]
        kind = event["event"]
        if kind == "failed":
            reason = event["reason"]
            if event["severity"] == "temporary":
                events["deferred"] += 1
            elif reason == "bounce":
                events["bounced"] += 1
            elif reason == "old":
                events["expired"] += 1
            else:
                assert reason == "suppress-bounce"
                events["dropped"] += 1
        elif kind in ("delivered", "complained", "rejected"):
            events[kind] += 1
    assert {e: n for e, n in truth.events.items() if n} == dict(events)


def test_mailgun_events_api_items() -> None:
    data, _ = _mailgun(300, 52, webhooks=False)
    items = [json.loads(line) for line in _records(data)]
    assert all("signature" not in item and "event" in item for item in items)


# ---------------------------------------------------------------------------------------------
# Properties and the command line


@settings(max_examples=12, deadline=None)
@given(
    source=st.sampled_from(sorted(WRITERS)),
    size=st.integers(min_value=0, max_value=400),
    seed=st.integers(min_value=0, max_value=2**40),
)
def test_any_size_and_seed_adds_up(source: str, size: int, seed: int) -> None:
    data, truth = WRITERS[source](size, seed)
    assert len(_records(data)) == size
    assert truth.event_records + truth.skipped == size
    assert sum(truth.events.values()) == truth.event_records


def test_main_writes_output_and_truth(tmp_path: pytest.TempPathFactory) -> None:
    out = tmp_path / "x.log"  # type: ignore[operator]
    truth_path = tmp_path / "x.truth.json"  # type: ignore[operator]
    code = generate.main(
        ["postfix", "--lines", "1000", "--seed", "1", "-o", str(out), "--truth", str(truth_path)]
    )
    assert code == 0
    assert out.read_bytes().count(b"\n") == 1000
    assert json.loads(truth_path.read_text())["records"] == 1000


# ---------------------------------------------------------------------------------------------
# The same bytes as ever: sha256 of the output and of the truth, per source and option.
# After an intended change of output, rewrite the table with `pytest tests/test_generate.py
# --update-golden` and say why in the commit.

GOLDEN = Path(__file__).resolve().parent / "golden" / "generate.json"
NOV_26 = datetime(2026, 11, 26, tzinfo=UTC)
RFC3339_BERLIN: dict[str, object] = {"classic_timestamps": False, "tz": "Europe/Berlin"}
COVER_LONG_RFC3339: dict[str, object] = {
    "cover": True,
    "long_queue_ids": True,
    "classic_timestamps": False,
}

#: name -> (source, size, seed, options, rows per segment or None for the default)
GOLDEN_CASES: dict[str, tuple[str, int, int, dict[str, object], int | None]] = {
    "postfix-0": ("postfix", 0, 1, {}, None),
    "postfix-1": ("postfix", 1, 1, {}, None),
    "postfix-9": ("postfix", 9, 3, {}, None),
    "postfix-1234": ("postfix", 1_234, 7, {}, None),
    "postfix-6000": ("postfix", 6_000, 21, {}, None),
    "postfix-big-seed": ("postfix", 2_000, 2**40 + 17, {}, None),
    "postfix-rfc3339-berlin": ("postfix", 1_500, 13, RFC3339_BERLIN, None),
    "postfix-classic-new-york": ("postfix", 1_500, 4, {"tz": "America/New_York"}, None),
    "postfix-long-ids": ("postfix", 2_500, 14, {"long_queue_ids": True}, None),
    "postfix-cover": ("postfix", 900, 1, {"cover": True}, None),
    "postfix-host-days": ("postfix", 3_000, 5, {"host": "mail", "days": 2.5}, None),
    "postfix-quarter-day": ("postfix", 60, 5, {"days": 0.25, "start": NOV_26}, None),
    "postfix-segments": ("postfix", 10_000, 5, {}, 3_000),
    "postfix-segments-cover-long": ("postfix", 7_000, 6, COVER_LONG_RFC3339, 2_500),
    "postfix-postscreen-enforce": ("postfix", 3_000, 15, {"postscreen_enforce": True}, None),
    "exim-0": ("exim", 0, 1, {}, None),
    "exim-1": ("exim", 1, 1, {}, None),
    "exim-9": ("exim", 9, 3, {}, None),
    "exim-1234": ("exim", 1_234, 7, {}, None),
    "exim-6000": ("exim", 6_000, 33, {}, None),
    "exim-new-ids": ("exim", 2_000, 32, {"new_ids": True}, None),
    "exim-tz-days": ("exim", 2_000, 8, {"tz": "Asia/Kolkata", "days": 3.0}, None),
    "exim-cover": ("exim", 600, 1, {"cover": True}, None),
    "exim-segments": ("exim", 9_000, 9, {"new_ids": True, "cover": True}, 2_000),
    "sendgrid-0": ("sendgrid", 0, 1, {}, None),
    "sendgrid-1": ("sendgrid", 1, 1, {}, None),
    "sendgrid-9": ("sendgrid", 9, 3, {}, None),
    "sendgrid-1234": ("sendgrid", 1_234, 7, {}, None),
    "sendgrid-5000": ("sendgrid", 5_000, 41, {}, None),
    "sendgrid-cover": ("sendgrid", 500, 8, {"cover": True, "start": NOV_26}, None),
    "sendgrid-array": ("sendgrid", 700, 42, {"ndjson": False}, None),
    "sendgrid-array-0": ("sendgrid", 0, 42, {"ndjson": False}, None),
    "sendgrid-array-segments": ("sendgrid", 5_000, 43, {"ndjson": False, "days": 2.0}, 1_500),
    "sendgrid-segments-cover": ("sendgrid", 4_000, 44, {"cover": True}, 1_000),
    "mailgun-0": ("mailgun", 0, 1, {}, None),
    "mailgun-1": ("mailgun", 1, 1, {}, None),
    "mailgun-9": ("mailgun", 9, 3, {}, None),
    "mailgun-1234": ("mailgun", 1_234, 7, {}, None),
    "mailgun-5000": ("mailgun", 5_000, 51, {}, None),
    "mailgun-cover": ("mailgun", 500, 10, {"cover": True, "start": NOV_26}, None),
    "mailgun-events-api": ("mailgun", 300, 52, {"webhooks": False, "days": 0.1}, None),
    "mailgun-segments": ("mailgun", 4_000, 53, {"cover": True, "webhooks": False}, 1_000),
}

#: name -> the command line of `python -m bounce_analyzer.generate` (output and truth added).
GOLDEN_COMMANDS: dict[str, list[str]] = {
    "main-postfix": [
        "postfix",
        "--lines",
        "1500",
        "--seed",
        "2",
        "--rfc3339",
        "--tz",
        "Europe/Berlin",
        "--long-queue-ids",
        "--days",
        "0.5",
        "--start",
        "2026-11-26T06:00:00+01:00",
    ],
    "main-exim": ["exim", "--lines", "1500", "--seed", "2", "--new-ids", "--cover"],
    "main-sendgrid": ["sendgrid", "--lines", "800", "--seed", "2", "--array"],
    "main-mailgun": ["mailgun", "--lines", "800", "--seed", "2", "--events-api"],
    "main-defaults": ["postfix"],
}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _golden_case(name: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    source, size, seed, options, segment = GOLDEN_CASES[name]
    if segment is not None:
        monkeypatch.setattr(output, "SEGMENT", segment)
    kw = {"start": START, **options}
    buf = io.BytesIO()
    if source in ("postfix", "exim"):
        writer = generate_postfix if source == "postfix" else generate_exim
        truth = writer(buf, lines=size, seed=seed, **kw)
    else:
        esp = generate_sendgrid if source == "sendgrid" else generate_mailgun
        truth = esp(buf, events=size, seed=seed, **kw)
    return {"output": _sha(buf.getvalue()), "truth": _sha(truth.to_json().encode())}


def _golden_command(name: str, folder: Path) -> dict[str, str]:
    out, truth = folder / f"{name}.out", folder / f"{name}.truth.json"
    assert generate.main([*GOLDEN_COMMANDS[name], "-o", str(out), "--truth", str(truth)]) == 0
    return {"output": _sha(out.read_bytes()), "truth": _sha(truth.read_bytes())}


def _check_golden(name: str, found: dict[str, str], update: bool) -> None:
    table = json.loads(GOLDEN.read_text(encoding="utf-8")) if GOLDEN.exists() else {}
    if update:
        table[name] = found
        GOLDEN.write_text(json.dumps(table, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    assert found == table[name]


@pytest.mark.parametrize("name", sorted(GOLDEN_CASES))
def test_same_seed_same_bytes_as_recorded(
    name: str, monkeypatch: pytest.MonkeyPatch, update_golden: bool
) -> None:
    _check_golden(name, _golden_case(name, monkeypatch), update_golden)


@pytest.mark.parametrize("name", sorted(GOLDEN_COMMANDS))
def test_command_line_writes_the_recorded_bytes(
    name: str, tmp_path: Path, update_golden: bool
) -> None:
    _check_golden(name, _golden_command(name, tmp_path), update_golden)
