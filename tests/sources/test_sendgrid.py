"""The SendGrid source: expectation tables over real payloads, framings, malformed input."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bounce_analyzer.reading import Batch
from bounce_analyzer.sources import detect, get_source
from bounce_analyzer.sources.base import MALFORMED_SCHEMA, SourceOutput
from bounce_analyzer.sources.sendgrid import SendGrid

from ._helpers import assert_adds_up, consecutive_batches, event_id, json_values, merge

DATA = Path(__file__).resolve().parents[1] / "data" / "sendgrid"

SYMFONY_TIME = datetime(2017, 12, 15, 0, 59, 29, tzinfo=UTC)
NODE_ID = "LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0"
NODE_SMTP_ID = "LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net"
SYMFONY_SMTP_ID = "14c5d75ce93.dfd.64b469@ismtpd-555"
GMAIL_OVER_QUOTA = (
    "552 5.2.2 The email account that you tried to reach is over quota and inactive. Please "
    "direct the recipient to https://support.google.com/mail/?p=OverQuotaPerm "
    "c17si1130468pgv.34 - gsmtp"
)


def run(*chunks: bytes, path: str = "events.json") -> list[SourceOutput]:
    """Parse `chunks` as consecutive batches of one input (each a run of whole lines)."""
    return list(SendGrid().parse(consecutive_batches(*chunks, path=path)))


def parse_bytes(data: bytes, path: str = "events.json") -> SourceOutput:
    out = merge(run(data, path=path))
    assert_adds_up(out)
    return out


def parse_file(name: str) -> SourceOutput:
    return parse_bytes((DATA / name).read_bytes(), path=name)


def sg_id(name: str, sg_event_id: str) -> str:
    return event_id("sendgrid", f"{name}\x1f{sg_event_id}")


# -- every corpus payload: (file, read, skipped, malformed) ----------------------------------
COUNTS = [
    ("sendgrid-nodejs__eventwebhook_signed_multi.json", 2, 1, 0),
    ("sendgrid-nodejs__eventwebhook_signed_single.json", 1, 0, 0),
    ("symfony__batch.json", 2, 1, 0),
    ("symfony__bounce.json", 1, 0, 0),
    ("symfony__click.json", 1, 1, 0),
    ("symfony__deferred.json", 1, 0, 0),
    ("symfony__delivered.json", 1, 0, 0),
    ("symfony__dropped.json", 1, 0, 0),
    ("symfony__group_unsubscribe.json", 1, 1, 0),
    ("symfony__open.json", 1, 1, 0),
    ("symfony__processed.json", 1, 1, 0),
    ("symfony__spamreport.json", 1, 0, 0),
    ("symfony__unsubscribe.json", 1, 1, 0),
    ("symfony__webhook.json", 1, 0, 0),
]


@pytest.mark.parametrize(("name", "read", "skipped", "malformed"), COUNTS)
def test_corpus_counts(name: str, read: int, skipped: int, malformed: int) -> None:
    out = parse_file(name)
    assert (out.read, out.skipped, out.malformed_count) == (read, skipped, malformed)


def test_every_corpus_file_is_listed() -> None:
    assert sorted(p.name for p in DATA.glob("*.json")) == sorted(row[0] for row in COUNTS)


# -- the events each corpus payload gives, field by field -----------------------------------
SYMFONY_COMMON: dict[str, Any] = {
    "timestamp": SYMFONY_TIME,
    "source": "sendgrid",
    "message_ref": "sg_message_id",
    "message_id": SYMFONY_SMTP_ID,
    "sender": None,
    "sender_domain": None,
    "recipient": "example@test.com",
    "recipient_domain": "test.com",
    "original_recipient": None,
    "relay_host": None,
    "relay_ip": None,
    "delay_s": None,
}
NODE_COMMON: dict[str, Any] = {
    "timestamp": datetime(2020, 9, 14, 19, 41, 32, tzinfo=UTC),
    "source": "sendgrid",
    "host": None,
    "event": "dropped",
    "message_ref": NODE_ID,
    "message_id": NODE_SMTP_ID,
    "recipient": "hello@world.com",
    "recipient_domain": "world.com",
    "smtp_code": None,
    "enhanced_code": None,
    "diagnostic": "Bounced Address",
    "attempt": None,
    "esp_classification": None,
    "event_id": sg_id("dropped", "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA"),
}
EVENTS = [
    (
        "symfony__bounce.json",
        0,
        {
            **SYMFONY_COMMON,
            "event_id": sg_id("bounce", "sg_event_id"),
            "host": "168.1.1.1",
            "event": "bounced",
            "smtp_code": 500,
            "enhanced_code": "5.0.0",
            "diagnostic": "500 unknown recipient",
            "attempt": None,
            "esp_classification": "bounce/invalid",
            "origin": "symfony__bounce.json:1#0",
        },
    ),
    (
        "symfony__deferred.json",
        0,
        {
            **SYMFONY_COMMON,
            "event_id": sg_id("deferred", "sg_event_id"),
            "host": "168.1.1.1",
            "event": "deferred",
            "smtp_code": 400,
            "enhanced_code": None,
            "diagnostic": "400 try again later",
            "attempt": 5,
            "esp_classification": None,
            "origin": "symfony__deferred.json:1#0",
        },
    ),
    (
        "symfony__delivered.json",
        0,
        {
            **SYMFONY_COMMON,
            "event_id": sg_id("delivered", "sg_event_id"),
            "host": "168.1.1.1",
            "event": "delivered",
            "smtp_code": 250,
            "enhanced_code": None,
            "diagnostic": "250 OK",
            "attempt": None,
            "esp_classification": None,
            "origin": "symfony__delivered.json:1#0",
        },
    ),
    (
        "symfony__dropped.json",
        0,
        {
            **SYMFONY_COMMON,
            "event_id": sg_id("dropped", "sg_event_id"),
            "host": None,
            "event": "dropped",
            "smtp_code": None,
            "enhanced_code": "5.0.0",
            "diagnostic": "Bounced Address",
            "attempt": None,
            "esp_classification": None,
            "origin": "symfony__dropped.json:1#0",
        },
    ),
    (
        "symfony__spamreport.json",
        0,
        {
            **SYMFONY_COMMON,
            "event_id": sg_id("spamreport", "sg_event_id"),
            "host": None,
            "event": "complained",
            "smtp_code": None,
            "enhanced_code": None,
            "diagnostic": None,
            "attempt": None,
            "esp_classification": None,
            "origin": "symfony__spamreport.json:1#0",
        },
    ),
    (
        "sendgrid-nodejs__eventwebhook_signed_multi.json",
        0,
        {
            "event_id": sg_id("bounce", "Ym91bmNlLTAtMTk5NDIxMTItcU53QkxnUFFRalc2REp2S1F3U0Fidy0w"),
            "timestamp": datetime(2021, 4, 28, 23, 5, 47, tzinfo=UTC),
            "host": "167.89.101.76",
            "event": "bounced",
            "message_ref": (
                "qNwBLgPQQjW6DJvKQwSAbw.filterdrecv-canary-547b64655b-cw6zx-1-6089EA4A-56.0"
            ),
            "message_id": "qNwBLgPQQjW6DJvKQwSAbw@ismtpd0178p1mdw1.sendgrid.net",
            "recipient": "invalid@gmail.com",
            "recipient_domain": "gmail.com",
            "smtp_code": 552,
            "enhanced_code": "5.2.2",
            "diagnostic": GMAIL_OVER_QUOTA,
            "attempt": None,
            "esp_classification": "blocked",
            "origin": "sendgrid-nodejs__eventwebhook_signed_multi.json:1#1",
        },
    ),
    (
        "sendgrid-nodejs__eventwebhook_signed_single.json",
        0,
        {**NODE_COMMON, "origin": "sendgrid-nodejs__eventwebhook_signed_single.json:1#0"},
    ),
    ("symfony__webhook.json", 0, {**NODE_COMMON, "origin": "symfony__webhook.json:1#0"}),
    ("symfony__batch.json", 0, {**NODE_COMMON, "origin": "symfony__batch.json:1#0"}),
]


@pytest.mark.parametrize(("name", "index", "expected"), EVENTS)
def test_corpus_events(name: str, index: int, expected: dict[str, Any]) -> None:
    row = parse_file(name).events.row(index, named=True)
    assert {key: row[key] for key in expected} == expected


def test_origin_names_the_line_where_the_document_starts() -> None:
    # The node SDK's two-event body spans two CRLF lines: the bounce is event 1 of line 1's array.
    out = parse_file("sendgrid-nodejs__eventwebhook_signed_multi.json")
    assert out.events["origin"].to_list() == ["sendgrid-nodejs__eventwebhook_signed_multi.json:1#1"]


# -- framings --------------------------------------------------------------------------------
def event(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"email": "Bob@Example.COM", "timestamp": 1700000000}
    return {**base, **fields}


BOUNCE = event(
    event="bounce",
    sg_event_id="b1",
    sg_message_id="m1.filter",
    type="blocked",
    bounce_classification="Reputation",
    reason="550 5.7.1 [1.2.3.4] Our system has detected an unusual rate",
    status="5.7.1",
    category=["newsletter", "weekly"],
    attempt=2,
)
DEFERRED = event(
    event="deferred",
    sg_event_id="d1",
    response="451 4.7.650 The mail server [1.2.3.4] has been temporarily rate limited",
    attempt="3",
    timestamp=1700000000.25,
    category="newsletter",
)
OPEN = event(event="open", sg_event_id="o1", sg_machine_open=True, useragent="x")
RESUBSCRIBE = event(event="group_resubscribe", sg_event_id="g1", asm_group_id=4)


def ndjson(*events: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in events)


def test_ndjson_one_event_per_line() -> None:
    out = parse_bytes(ndjson(BOUNCE, OPEN, DEFERRED, RESUBSCRIBE), path="e.ndjson")
    assert (out.read, out.skipped, out.malformed_count) == (4, 2, 0)
    rows = out.events.select(
        "event",
        "timestamp",
        "recipient",
        "recipient_domain",
        "smtp_code",
        "enhanced_code",
        "attempt",
        "esp_classification",
        "origin",
    ).rows()
    assert rows == [
        (
            "bounced",
            datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC),
            "bob@example.com",
            "example.com",
            550,
            "5.7.1",
            2,
            "blocked/Reputation",
            "e.ndjson:1",
        ),
        (
            "deferred",
            datetime(2023, 11, 14, 22, 13, 20, 250000, tzinfo=UTC),
            "bob@example.com",
            "example.com",
            451,
            "4.7.650",
            3,
            None,
            "e.ndjson:3",
        ),
    ]


def test_pretty_array_across_batches_matches_one_batch() -> None:
    body = json.dumps([BOUNCE, OPEN, DEFERRED], indent=2).encode() + b"\n"
    lines = body.splitlines(keepends=True)
    cut = len(lines) // 2
    split = merge(run(b"".join(lines[:cut]), b"".join(lines[cut:])))
    whole = parse_bytes(body)
    assert split.read == whole.read == 3
    assert split.events.equals(whole.events)
    assert whole.events["origin"].to_list() == ["events.json:1#0", "events.json:1#2"]


def test_open_document_is_not_counted_until_complete() -> None:
    first, second = run(b'[{"event": "bounce",\n', b'"email": "a@b.example", "timestamp": 1}]\n')
    assert (first.read, first.events.height) == (0, 0)
    assert (second.read, second.events["origin"].to_list()) == (1, ["events.json:1#0"])


def test_one_array_per_line_and_concatenated_arrays() -> None:
    one = json.dumps([BOUNCE, OPEN])
    two = json.dumps([DEFERRED])
    pretty = f"[\n  {two[1:-1]}\n][{two[1:-1]}]\n"  # two arrays, the second after the first's "]"
    out = parse_bytes(f"{one}\n{two}{two}\n{two}\n{pretty}".encode())
    assert (out.read, out.skipped, out.malformed_count) == (7, 1, 0)
    assert out.events["origin"].to_list() == [
        "events.json:1#0",
        "events.json:2#0",
        "events.json:2#1",
        "events.json:3#0",
        "events.json:4#0",
        "events.json:4#1",
    ]


def test_truncated_line_swallows_no_following_line() -> None:
    good = json.dumps(BOUNCE)
    out = parse_bytes(f"{good}\n{good[:40]}\n{good}\n{good}\n".encode())
    assert out.events["origin"].to_list() == ["events.json:1", "events.json:3", "events.json:4"]
    assert out.malformed["origin"].to_list() == ["events.json:2"]


def test_event_id_is_the_same_however_framed() -> None:
    no_id = {k: v for k, v in BOUNCE.items() if k != "sg_event_id"}
    lone = parse_bytes(ndjson(no_id, BOUNCE))
    array = parse_bytes(json.dumps([no_id, BOUNCE], indent=1).encode())
    assert lone.events["event_id"].to_list() == array.events["event_id"].to_list()
    assert lone.events["event_id"][1] == sg_id("bounce", "b1")
    assert lone.events["event_id"].n_unique() == 2


def test_timestamp_forms() -> None:
    times = [1700000000, 1700000000.123456, "1700000000", 1.7e9, "soon", None, -5]
    out = parse_bytes(ndjson(*(event(event="delivered", timestamp=t) for t in times)))
    assert out.events["timestamp"].to_list() == [
        datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC),
        datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC),
        datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC),
        datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC),
    ]
    assert out.malformed["reason"].to_list() == ['delivered event without a valid "timestamp"'] * 3


# -- malformed records -----------------------------------------------------------------------
MALFORMED = [
    ('{"event": "bounce", "email": "a@b.example",', "invalid JSON: Expecting property name"),
    ("[3]", "the event is not a JSON object"),
    ('{"event": {"name": "bounce"}, "email": "a@b.example"}', '"event" is an object or array'),
    ('{"email": "a@b.example", "timestamp": 1}', 'no "event" field'),
    ('{"event": "bounce", "timestamp": 1}', 'bounce event without "email"'),
    ("Apr  1 10:00:00 mx postfix/smtp[1]: not an event", "not JSON"),
]


@pytest.mark.parametrize(("line", "reason"), MALFORMED)
def test_malformed_is_counted_with_origin(line: str, reason: str) -> None:
    good = json.dumps(BOUNCE)
    out = parse_bytes(f"{good}\n{line}\n{good}\n".encode(), path="in.json")
    assert out.events["origin"].to_list() == ["in.json:1", "in.json:3"]
    assert out.malformed_count == 1
    bad = out.malformed.row(0, named=True)
    assert bad["origin"] in ("in.json:2", "in.json:2#0")
    assert bad["reason"].startswith(reason)
    assert bad["raw"]


def test_bad_element_spares_the_rest_of_its_array() -> None:
    out = parse_bytes(json.dumps([BOUNCE, {"event": ["x"]}, DEFERRED]).encode())
    assert out.events["origin"].to_list() == ["events.json:1#0", "events.json:1#2"]
    assert out.malformed.rows() == [
        (
            "events.json:1#1",
            '"event" is an object or array where a plain value is expected',
            '{"event": ["x"]}',
        )
    ]


def test_unterminated_document_at_end_of_input() -> None:
    out = merge(run(b"[\n" + json.dumps(BOUNCE).encode() + b",\n", b"\n"))
    assert out.read == out.malformed_count == 1
    assert out.malformed["origin"].to_list() == ["events.json:1"]
    assert out.malformed["reason"][0].startswith("invalid JSON")


def test_malformed_frame_has_the_contract_schema() -> None:
    out = parse_bytes(b"nonsense\n")
    assert out.malformed.schema == pl.Schema(MALFORMED_SCHEMA)
    assert out.malformed.rows() == [("events.json:1", "not JSON", "nonsense")]


def test_blank_input() -> None:
    out = parse_bytes(b"\n\n  \n")
    assert (out.read, out.events.height, out.malformed_count) == (0, 0, 0)


# -- sniffing and registry -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("head", "expected"),
    [
        ((DATA / "symfony__bounce.json").read_bytes(), True),
        ((DATA / "symfony__batch.json").read_bytes()[:300], True),
        (b'{"email":"a@b.c","event":"open","timestamp":1}', True),
        (b'{"event-data": {"event": "failed", "recipient": "a@b.c"}}', False),
        (b'{"event": "delivered", "recipient": "a@b.c", "timestamp": 1}', False),
        (b"Apr  1 10:00:00 mx postfix/smtp[1]: 4F: to=<a@b.c>, status=sent", False),
        (b"", False),
    ],
)
def test_sniff(head: bytes, expected: bool) -> None:
    assert SendGrid().sniff(head) is expected


def test_registry() -> None:
    assert isinstance(get_source("sendgrid"), SendGrid)
    assert detect((DATA / "symfony__deferred.json").read_bytes()) == "sendgrid"


# -- properties (and tests/sources/test_common.py) ----------------------------------------------
JSONISH = json_values(["event", "email", "timestamp", "reason", "attempt", "x"])


@settings(max_examples=60, deadline=None)
@given(st.lists(JSONISH, max_size=5), st.booleans())
def test_json_values_never_raise(values: list[Any], pretty: bool) -> None:
    text = "\n".join(json.dumps(v, indent=1 if pretty else None) for v in values)
    out = parse_bytes(text.encode())
    assert out.read == out.events.height + out.skipped + out.malformed_count


def test_a_record_cut_at_a_batch_end_is_set_aside_not_lost() -> None:
    """Found by tools/fuzz.py: an open document followed by a whole one in the next batch."""
    first = Batch(
        data=b'{"email":"a@example.com","timestamp":1795651448,"event":"bou\n',
        path="cut.ndjson",
        first_line=1,
        final=False,
    )
    second = Batch(
        data=b'{"email":"b@example.com","timestamp":1795651448,"event":"bounce",'
        b'"reason":"550 5.1.1 no such user","sg_event_id":"e2"}\n',
        path="cut.ndjson",
        first_line=2,
        final=True,
    )
    outputs = list(SendGrid().parse([first, second]))
    assert sum(o.read for o in outputs) == 2
    assert sum(o.events.height for o in outputs) == 1
    malformed = pl.concat([o.malformed for o in outputs])
    assert malformed.select("origin", "reason").rows() == [("cut.ndjson:1", "unterminated JSON")]


def test_json_nested_too_deeply_is_malformed_not_a_crash() -> None:
    """Found by tools/fuzz.py: 1000 nested arrays made Python's json raise RecursionError."""
    batch = Batch(data=b"[" * 1000 + b"]" * 1000 + b"\n", path="deep.json")
    (output,) = SendGrid().parse([batch])
    assert (output.read, output.events.height, output.malformed_count) == (1, 0, 1)
    assert output.malformed["reason"].to_list() == ["invalid JSON: nested too deeply"]
