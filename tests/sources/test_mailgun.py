"""The Mailgun source: expectation tables over real payloads, pages, legacy bodies, malformed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _cli import invoke
from bounce_analyzer.sources import detect, get_source
from bounce_analyzer.sources.base import SourceOutput
from bounce_analyzer.sources.mailgun import Mailgun

from ._helpers import assert_adds_up, consecutive_batches, event_id, json_values, merge

DATA = Path(__file__).resolve().parents[1] / "data" / "mailgun"

OVER_QUOTA = (
    "4.2.2 The email account that you tried to reach is over quota. Please direct\n"
    "4.2.2 the recipient to\n4.2.2  https://support.example.com/mail/?p=422"
)


def run(*chunks: bytes, path: str = "events.json") -> list[SourceOutput]:
    """Parse `chunks` as consecutive batches of one input (each a run of whole lines)."""
    return list(Mailgun().parse(consecutive_batches(*chunks, path=path)))


def parse_bytes(data: bytes, path: str = "events.json") -> SourceOutput:
    out = merge(run(data, path=path))
    assert_adds_up(out)
    return out


def parse_file(name: str) -> SourceOutput:
    return parse_bytes((DATA / name).read_bytes(), path=name)


def mg_id(name: str, mailgun_id: str) -> str:
    return event_id("mailgun", f"{name}\x1f{mailgun_id}")


# -- every corpus payload: (file, read, skipped, malformed) ----------------------------------
COUNTS = [
    ("symfony__accepted.json", 1, 1, 0),
    ("symfony__clicks.json", 1, 1, 0),
    ("symfony__delivered_messages.json", 1, 0, 0),
    ("symfony__opens.json", 1, 1, 0),
    ("symfony__permanent_failure.json", 1, 0, 0),
    ("symfony__permanent_failure_no_description.json", 1, 0, 0),
    ("symfony__permanent_failure_suppress_bounce.json", 1, 0, 0),
    ("symfony__spam_complaints.json", 1, 0, 0),
    ("symfony__temporary_failure.json", 1, 0, 0),
    ("symfony__unsubscribes.json", 1, 1, 0),
]


@pytest.mark.parametrize(("name", "read", "skipped", "malformed"), COUNTS)
def test_corpus_counts(name: str, read: int, skipped: int, malformed: int) -> None:
    out = parse_file(name)
    assert (out.read, out.skipped, out.malformed_count) == (read, skipped, malformed)


def test_every_corpus_file_is_listed() -> None:
    assert sorted(p.name for p in DATA.glob("*.json")) == sorted(row[0] for row in COUNTS)


FAILURE: dict[str, Any] = {
    "event_id": mg_id("failed", "G9Bn5sl1TC6nu79C8C0bwg"),
    "timestamp": datetime(2018, 3, 16, 20, 46, 35, 375624, tzinfo=UTC),
    "source": "mailgun",
    "host": None,
    "event": "bounced",
    "message_ref": "20130503192659.13651.20287@app.symfony.com",
    "message_id": "20130503192659.13651.20287@app.symfony.com",
    "sender": "bob@app.symfony.com",
    "sender_domain": "app.symfony.com",
    "recipient": "alice@example.com",
    "recipient_domain": "example.com",
    "original_recipient": None,
    "relay_host": None,
    "relay_ip": None,
    "smtp_code": 550,
    "enhanced_code": None,
    "diagnostic": "No Such User Here",
    "attempt": 1,
    "delay_s": None,
    "esp_classification": "permanent/bounce",
}
EVENTS = [
    (
        "symfony__delivered_messages.json",
        {
            **FAILURE,
            "event_id": mg_id("delivered", "CPgfbmQMTCKtHW6uIWtuVe"),
            "timestamp": datetime(2018, 3, 19, 15, 11, 2, 908181, tzinfo=UTC),
            "host": "209.61.154.250",
            "event": "delivered",
            "message_ref": "20130503182626.18666.16540@app.symfony.com",
            "message_id": "20130503182626.18666.16540@app.symfony.com",
            "relay_host": "smtp-in.example.com",
            "smtp_code": 250,
            "diagnostic": "OK",
            "esp_classification": None,
            "origin": "symfony__delivered_messages.json:1",
        },
    ),
    ("symfony__permanent_failure.json", {**FAILURE, "origin": "symfony__permanent_failure.json:1"}),
    (
        "symfony__permanent_failure_no_description.json",
        {**FAILURE, "origin": "symfony__permanent_failure_no_description.json:1"},
    ),
    (
        "symfony__permanent_failure_suppress_bounce.json",
        {
            **FAILURE,
            "event": "dropped",
            "smtp_code": None,  # 605: Mailgun's own code, not SMTP
            "diagnostic": "Not delivering to previously bounced address",
            "esp_classification": "permanent/suppress-bounce",
            "origin": "symfony__permanent_failure_suppress_bounce.json:1",
        },
    ),
    (
        "symfony__temporary_failure.json",
        {
            **FAILURE,
            "event_id": mg_id("failed", "Fs7-5t81S2ispqxqDw2U4Q"),
            "timestamp": datetime(2018, 3, 19, 15, 11, 2, 908181, tzinfo=UTC),
            "host": "209.61.154.250",
            "event": "deferred",
            "message_ref": "20130503182626.18666.16540@app.symfony.com",
            "message_id": "20130503182626.18666.16540@app.symfony.com",
            "relay_host": "smtp-in.example.com",
            "smtp_code": 452,
            "enhanced_code": "4.2.2",
            "diagnostic": OVER_QUOTA,
            "esp_classification": "temporary/generic",
            "origin": "symfony__temporary_failure.json:1",
        },
    ),
    (
        "symfony__spam_complaints.json",
        {
            **FAILURE,
            "event_id": mg_id("complained", "-Agny091SquKnsrW2NEKUA"),
            "timestamp": datetime(2018, 3, 16, 20, 45, 23, 501324, tzinfo=UTC),
            "host": "173.193.210.33",
            "event": "complained",
            "message_ref": "20110215055645.25246.63817@app.symfony.com",
            "message_id": "20110215055645.25246.63817@app.symfony.com",
            "recipient_domain": "example.com",  # no recipient-domain: from the address
            "smtp_code": None,
            "diagnostic": None,
            "attempt": None,
            "esp_classification": None,
            "origin": "symfony__spam_complaints.json:1",
        },
    ),
]


@pytest.mark.parametrize(("name", "expected"), EVENTS)
def test_corpus_events(name: str, expected: dict[str, Any]) -> None:
    out = parse_file(name)
    assert out.events.height == 1
    row = out.events.row(0, named=True)
    assert {key: row[key] for key in expected} == expected


# -- other framings and forms ----------------------------------------------------------------
def failed(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event": "failed",
        "id": "ev-1",
        "timestamp": 1700000000.5,
        "severity": "permanent",
        "reason": "bounce",
        "recipient": "Carol@Example.ORG",
        "delivery-status": {"code": 550, "message": "5.1.1 No such user", "attempt-no": "2"},
        "message": {"headers": {"message-id": "<m1@mg.example.net>", "from": "news@example.net"}},
    }
    return {**base, **fields}


def test_events_api_page() -> None:
    page = {
        "items": [
            failed(id="a"),
            {"event": "opened", "id": "b", "timestamp": 1700000001, "recipient": "x@y.example"},
            failed(id="c", severity="temporary", reason="generic"),
        ],
        "paging": {"next": "https://api.example.net/v3/events/W3siYSI6IGZhbHNlfV0="},
    }
    out = parse_bytes(json.dumps(page, indent=2).encode())
    assert (out.read, out.skipped, out.malformed_count) == (3, 1, 0)
    assert out.events.select(
        "event_id", "event", "recipient", "recipient_domain", "sender", "sender_domain",
        "smtp_code", "enhanced_code", "diagnostic", "attempt", "message_ref", "origin",
    ).rows() == [
        (
            mg_id("failed", "a"), "bounced", "carol@example.org", "example.org",
            "news@example.net", "example.net", 550, "5.1.1", "5.1.1 No such user", 2,
            "m1@mg.example.net", "events.json:1#0",
        ),
        (
            mg_id("failed", "c"), "deferred", "carol@example.org", "example.org",
            "news@example.net", "example.net", 550, "5.1.1", "5.1.1 No such user", 2,
            "m1@mg.example.net", "events.json:1#2",
        ),
    ]  # fmt: skip


def test_ndjson_of_webhook_bodies_pages_and_events() -> None:
    bodies = [json.loads((DATA / name).read_bytes()) for name, *_ in COUNTS]
    page = {"items": [failed(id="p1"), failed(id="p2")], "paging": {}}
    lines = [json.dumps(body) for body in bodies] + [json.dumps(page), json.dumps(failed())]
    out = parse_bytes(("\n".join(lines) + "\n").encode(), path="mg.ndjson")
    assert (out.read, out.skipped, out.malformed_count) == (13, 4, 0)
    assert out.events["origin"].to_list() == [
        "mg.ndjson:3",
        "mg.ndjson:5",
        "mg.ndjson:6",
        "mg.ndjson:7",
        "mg.ndjson:8",
        "mg.ndjson:9",
        "mg.ndjson:11#0",
        "mg.ndjson:11#1",
        "mg.ndjson:12",
    ]


LEGACY_FORM = (
    "event=bounced&recipient=alice%40example.com&domain=mg.example.com"
    "&code=550&error=5.1.1+The+email+account+that+you+tried+to+reach+does+not+exist"
    "&notification=&Message-Id=%3C20130503182626.18666.16540%40mg.example.com%3E"
    "&timestamp=1521233195&token=a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0"
    "&signature=2a4a1e5ca3c8b3ab38d85bd9f7a4f1f1a3c6e1f1d2e1c0e4e6b8e2c9f0a1b2c3"
)


def test_legacy_form_encoded_body() -> None:
    out = parse_bytes(LEGACY_FORM.encode() + b"\n", path="hooks.txt")
    assert (out.read, out.malformed_count) == (1, 0)
    row = out.events.row(0, named=True)
    assert {k: v for k, v in row.items() if k != "event_id"} == {
        "timestamp": datetime(2018, 3, 16, 20, 46, 35, tzinfo=UTC),
        "source": "mailgun",
        "host": None,
        "event": "bounced",
        "message_ref": "20130503182626.18666.16540@mg.example.com",
        "message_id": "20130503182626.18666.16540@mg.example.com",
        "sender": None,
        "sender_domain": "mg.example.com",
        "recipient": "alice@example.com",
        "recipient_domain": "example.com",
        "original_recipient": None,
        "relay_host": None,
        "relay_ip": None,
        "client_host": None,
        "client_ip": None,
        "transport": None,  # an ESP's event: no program of ours logged it
        "smtp_code": 550,
        "enhanced_code": "5.1.1",
        "diagnostic": "5.1.1 The email account that you tried to reach does not exist",
        "attempt": None,
        "delay_s": None,
        "esp_classification": "bounced",
        "origin": "hooks.txt:1",
    }
    assert len(row["event_id"]) == 32


LEGACY = [
    # (form fields as a JSON object, event, esp_classification, smtp_code, diagnostic)
    (
        {"event": "dropped", "reason": "hardfail", "code": "605",
         "description": "Not delivering to previously bounced address"},
        "dropped", "dropped/hardfail", None, "Not delivering to previously bounced address",
    ),
    (
        {"event": "dropped", "reason": "old", "code": "605", "description": "Too old"},
        "expired", "dropped/old", None, "Too old",
    ),
    ({"event": "delivered"}, "delivered", None, None, None),
    ({"event": "complained"}, "complained", None, None, None),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "event", "classification", "code", "diagnostic"), LEGACY)
def test_legacy_json_object(
    fields: dict[str, str],
    event: str,
    classification: str | None,
    code: int | None,
    diagnostic: str | None,
) -> None:
    body = {"recipient": "bob@example.com", "timestamp": "1521233195", "token": "t", **fields}
    out = parse_bytes(json.dumps(body).encode())
    assert out.events.select(
        "event", "esp_classification", "smtp_code", "diagnostic", "recipient", "timestamp"
    ).rows() == [
        (
            event,
            classification,
            code,
            diagnostic,
            "bob@example.com",
            datetime(2018, 3, 16, 20, 46, 35, tzinfo=UTC),
        )
    ]


OUTCOMES = [
    # (event-data fields over `failed()`, event, esp_classification, smtp_code, diagnostic)
    ({}, "bounced", "permanent/bounce", 550, "5.1.1 No such user"),
    ({"reason": "old"}, "expired", "permanent/old", 550, "5.1.1 No such user"),
    ({"reason": "suppress-unsubscribe", "delivery-status": {"code": 498, "message": "x"}},
     "dropped", "permanent/suppress-unsubscribe", None, "x"),
    ({"severity": "temporary", "reason": "espblock"}, "deferred", "temporary/espblock", 550,
     "5.1.1 No such user"),
    ({"delivery-status": {"code": "554", "message": "short",
                          "description": "554 5.7.1 a longer description"}},
     "bounced", "permanent/bounce", 554, "554 5.7.1 a longer description"),
    ({"event": "rejected", "severity": None, "reason": None, "delivery-status": None,
      "reject": {"reason": "Sandbox subdomains are for test purposes only",
                 "description": ""}},
     "dropped", "rejected/Sandbox subdomains are for test purposes only", None,
     "Sandbox subdomains are for test purposes only"),
    ({"event": "delivered", "delivery-status": {"code": 250, "message": "OK", "attempt-no": 1}},
     "delivered", None, 250, "OK"),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "event", "classification", "code", "diagnostic"), OUTCOMES)
def test_event_mapping(
    fields: dict[str, Any],
    event: str,
    classification: str | None,
    code: int | None,
    diagnostic: str | None,
) -> None:
    body = {"signature": {"token": "t"}, "event-data": failed(**fields)}
    out = parse_bytes(json.dumps(body).encode())
    assert out.events.select("event", "esp_classification", "smtp_code", "diagnostic").rows() == [
        (event, classification, code, diagnostic)
    ]


def test_a_mailgun_rejected_is_dropped_like_a_sendgrid_drop_14(
    tmp_path: Path, sample_logs_path: Path, data_path: Path
) -> None:
    """Mailgun's `rejected` (Mailgun refused to send) is `dropped`, as SendGrid's drop; it was
    `rejected`, the event of a refusal at SMTP time. Permanent and soft, as the drop is."""
    # The hand-added `rejected` webhook of sample_logs/mailgun/webhooks.ndjson (line 251: the
    # 429 text of Mailgun's sending limit, sample_logs/README.md).
    limit = (sample_logs_path / "mailgun" / "webhooks.ndjson").read_text().splitlines()
    # A `rejected` event with the words of the Symfony suppress-bounce fixture
    # (tests/data/mailgun/symfony__permanent_failure_suppress_bounce.json) in its `reject`.
    suppressed = failed(
        event="rejected",
        severity=None,
        reason=None,
        **{"delivery-status": None},
        reject={"reason": "Not delivering to previously bounced address", "description": ""},
    )
    events = tmp_path / "mailgun.ndjson"
    events.write_text(f"{limit[250]}\n{json.dumps({'event-data': suppressed})}\n")
    # SendGrid's drop of an earlier bounce (the Symfony fixture, tests/data/sendgrid/).
    drop = data_path / "sendgrid" / "symfony__dropped.json"
    result = invoke("parse", str(events), str(drop), "--tz", "UTC", "--format", "jsonl")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    fields = ("source", "event", "category", "bounce_type", "permanent", "direction")
    assert [tuple(row[name] for name in fields) for row in rows] == [
        ("mailgun", "dropped", "rate_limited", "soft", True, "outbound"),
        ("mailgun", "dropped", "suppressed", "soft", True, "outbound"),
        ("sendgrid", "dropped", "suppressed", "soft", True, "outbound"),
    ]
    assert [row["esp_classification"] for row in rows[:2]] == [
        "rejected/" + json.loads(limit[250])["event-data"]["reject"]["reason"],
        "rejected/Not delivering to previously bounced address",
    ]


TIMES = [
    (1521233195.375624, datetime(2018, 3, 16, 20, 46, 35, 375624, tzinfo=UTC)),
    (1521233195, datetime(2018, 3, 16, 20, 46, 35, tzinfo=UTC)),
    ("1521233195.5", datetime(2018, 3, 16, 20, 46, 35, 500000, tzinfo=UTC)),
    ("Fri, 16 Mar 2018 20:46:35 GMT", datetime(2018, 3, 16, 20, 46, 35, tzinfo=UTC)),
    ("Fri, 16 Mar 2018 16:46:35 -0400", datetime(2018, 3, 16, 20, 46, 35, tzinfo=UTC)),
    ("16 Mar 2018 20:46:35 +0000", datetime(2018, 3, 16, 20, 46, 35, tzinfo=UTC)),
]


@pytest.mark.parametrize(("value", "expected"), TIMES)
def test_timestamp_forms(value: float | str, expected: datetime) -> None:
    out = parse_bytes(json.dumps(failed(timestamp=value)).encode())
    assert out.events["timestamp"].to_list() == [expected]


@pytest.mark.parametrize(("value", "expected"), [("3", 3), (3, 3), (None, None), ("x", None)])
def test_attempt_as_text_or_number(value: Any, expected: int | None) -> None:
    status = {"code": 550, "message": "no", "attempt-no": value}
    out = parse_bytes(json.dumps(failed(**{"delivery-status": status})).encode())
    assert out.events["attempt"].to_list() == [expected]


def test_tags_and_variables_of_any_shape_are_ignored() -> None:
    body = failed(tags=["a", {"b": 1}], campaigns=[], **{"user-variables": {"k": [1, 2]}})
    assert parse_bytes(json.dumps(body).encode()).events.height == 1


# -- malformed records -----------------------------------------------------------------------
MALFORMED = [
    ('{"signature": {}, "event-data": {"event": "failed",', "invalid JSON"),
    (json.dumps(failed(severity=None)), 'failed event without "severity"'),
    (json.dumps(failed(recipient=None)), 'failed event without "recipient"'),
    (json.dumps(failed(timestamp="yesterday")), 'failed event without a valid "timestamp"'),
    (json.dumps({"signature": {}, "event-data": "x"}), '"event-data" is not a JSON object'),
    (json.dumps({"paging": {}}), 'no "event" field'),
    ("Mar  1 10:00:00 mx postfix/smtp[1]: not an event", "neither JSON nor a form-encoded"),
]


@pytest.mark.parametrize(("line", "reason"), MALFORMED)
def test_malformed_is_counted_with_origin(line: str, reason: str) -> None:
    good = json.dumps(failed())
    out = parse_bytes(f"{good}\n{line}\n{good}\n".encode(), path="in.json")
    assert out.events["origin"].to_list() == ["in.json:1", "in.json:3"]
    assert out.malformed["origin"].to_list() == ["in.json:2"]
    assert out.malformed["reason"][0].startswith(reason)


def test_webhook_body_across_batches() -> None:
    body = (DATA / "symfony__temporary_failure.json").read_bytes()
    lines = body.splitlines(keepends=True)
    outputs = run(b"".join(lines[:20]), b"".join(lines[20:40]), b"".join(lines[40:]))
    assert [o.read for o in outputs] == [0, 0, 1]
    assert outputs[2].events["origin"].to_list() == ["events.json:1"]


# -- sniffing and registry -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("head", "expected"),
    [
        ((DATA / "symfony__permanent_failure.json").read_bytes()[:200], True),
        (b'{"items": [{"event": "delivered"}], "paging": {"next": "x"}}', True),
        (b'{"event": "failed", "recipient": "a@b.c", "log-level": "error"}', True),
        (LEGACY_FORM.encode(), True),
        (b'{"recipient": "a@b.c", "Message-Id": "<x@y>", "event": "delivered"}', True),
        (b'[{"email":"a@b.c","event":"bounce","sg_event_id":"x"}]', False),
        (b"event=bounced", False),
        (b"Mar  1 10:00:00 mx postfix/smtp[1]: 4F: to=<a@b.c>, status=sent", False),
        (b"", False),
    ],
)
def test_sniff(head: bytes, expected: bool) -> None:
    assert Mailgun().sniff(head) is expected


def test_registry() -> None:
    assert isinstance(get_source("mailgun"), Mailgun)
    assert detect((DATA / "symfony__delivered_messages.json").read_bytes()) == "mailgun"


# -- properties (and tests/sources/test_common.py) ----------------------------------------------
KEYS = ["event", "event-data", "items", "recipient", "timestamp", "severity", "delivery-status"]
JSONISH = json_values(KEYS)


@settings(max_examples=60, deadline=None)
@given(st.lists(JSONISH | st.text(max_size=30), max_size=5), st.booleans())
def test_json_values_and_forms_never_raise(values: list[Any], pretty: bool) -> None:
    text = "\n".join(
        v if isinstance(v, str) and "=" in v else json.dumps(v, indent=1 if pretty else None)
        for v in values
    )
    out = parse_bytes(text.encode())
    assert out.read == out.events.height + out.skipped + out.malformed_count
