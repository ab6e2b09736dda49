"""Codes found in free text: a table of real shapes, and properties over any text."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bounce_analyzer.extract import (
    code_class,
    extract_codes,
    extract_hex_code,
    extract_smtp_code,
    with_codes,
)


def _codes(texts: list[str | None]) -> list[tuple[int | None, str | None]]:
    smtp, enhanced = extract_codes(pl.col("text"))
    frame = pl.DataFrame({"text": texts}, schema={"text": pl.String}).select(
        smtp.alias("smtp"), enhanced.alias("enhanced")
    )
    return list(frame.iter_rows())


# text, reply code, enhanced code
CASES = [
    # Gmail through Postfix
    (
        "host gmail-smtp-in.l.google.com[142.250.102.27] said: 550-5.1.1 The email account "
        "that you tried to reach does not exist. (in reply to RCPT TO command)",
        550,
        "5.1.1",
    ),
    ("550-5.1.1 The email account that you tried to reach does not exist.", 550, "5.1.1"),
    ("550 5.1.1 <a@b.example>: Recipient address rejected: User unknown", 550, "5.1.1"),
    # Exim
    (
        "SMTP error from remote mail server after RCPT TO:<a@b.example>: 550 5.1.1 Unknown user",
        550,
        "5.1.1",
    ),
    (
        "SMTP error from remote mail server after end of data: 552 5.3.4 Message too big",
        552,
        "5.3.4",
    ),
    ("Remote server returned '554 5.7.1 Access denied'", 554, "5.7.1"),
    ("#5.1.1 smtp;550 user unknown", None, "5.1.1"),
    ("Mailbox does not exist (5.1.1)", None, "5.1.1"),
    (
        "dsn=4.4.1, status=deferred (connect to mx.b.example[192.0.2.1]:25: timed out)",
        None,
        "4.4.1",
    ),
    ("5.7.26", None, "5.7.26"),
    ("5.2.2.", None, "5.2.2"),
    ("421", 421, None),
    ("421 4.7.0 [TSS04] Messages temporarily deferred", 421, "4.7.0"),
    ("452-4.2.2 The email account that you tried to reach is over quota", 452, "4.2.2"),
    # class disagreement: the enhanced code follows the reply code
    ("550 4.7.1 odd server", 550, None),
    ("550 4.7.1 then 5.7.1", 550, "5.7.1"),
    # no false codes
    ("connect to 192.168.5.1.1 port 25", None, None),
    ("connect to 10.4.4.5[10.4.4.5]:25: Connection refused", None, None),
    ("4.4.4.4", None, None),
    ("2026-11-28 10:45:12 delivery temporarily suspended", None, None),
    ("Nov 28 10:25:01 mx postfix/smtp[4242]: 4F3A21B5C: lost connection", None, None),
    ("software v2.4.1 and version 5.1.1", None, None),
    ("Postfix 2.11.3 rejected it", None, None),
    ("error 5501 happened", None, None),
    ("", None, None),
    (None, None, None),
]


@pytest.mark.parametrize(("text", "smtp", "enhanced"), CASES)
def test_extract_codes(text: str | None, smtp: int | None, enhanced: str | None) -> None:
    assert _codes([text]) == [(smtp, enhanced)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0x800CCC0F", "0x800CCC0F"),
        ("Outlook error 0x800ccc0e: cannot connect", "0x800CCC0E"),
        ("0x800CCC0F1", None),
        ("x0x800CCC0F", None),
        ("no code", None),
    ],
)
def test_extract_hex_code(text: str, expected: str | None) -> None:
    frame = pl.DataFrame({"text": [text]}).select(extract_hex_code(pl.col("text")))
    assert frame.item() == expected


def test_with_codes_keeps_explicit_values() -> None:
    frame = pl.DataFrame(
        {
            "diagnostic": ["550 5.1.1 unknown", "550 5.1.1 unknown", "said: 550 5.7.1 x", None],
            "smtp_code": [None, 451, None, 421],
            "enhanced_code": [None, None, "4.7.1", None],
        },
        schema_overrides={"smtp_code": pl.Int16},
    )
    result = with_codes(frame).select("smtp_code", "enhanced_code", "hex_code").rows()
    assert result == [
        (550, "5.1.1", None),
        (451, None, None),  # the found 5.1.1 disagrees with the explicit 451
        (None, "4.7.1", None),  # the found 550 disagrees with the explicit 4.7.1
        (421, None, None),
    ]


def test_with_codes_keeps_rows_and_other_columns() -> None:
    # with_codes works in a column of its own: a frame that has one by that name keeps it
    frame = pl.DataFrame(
        {
            "_versionless": ["mine", "mine too"],
            "text": ["software v2.4.1 said: 550 5.1.1 unknown", "0x800CCC0F"],
        }
    )
    result = with_codes(frame, text="text")
    assert result.columns == ["_versionless", "text", "smtp_code", "enhanced_code", "hex_code"]
    assert result.rows() == [
        ("mine", "software v2.4.1 said: 550 5.1.1 unknown", 550, "5.1.1", None),
        ("mine too", "0x800CCC0F", None, None, "0x800CCC0F"),
    ]
    assert with_codes(frame.lazy(), text="text").collect().equals(result)


def test_code_class() -> None:
    frame = pl.DataFrame(
        {"smtp": [550, None, 421, None], "enhanced": ["4.1.1", "4.2.2", None, None]},
        schema_overrides={"smtp": pl.Int16},
    )
    assert frame.select(code_class(pl.col("smtp"), pl.col("enhanced"))).to_series().to_list() == [
        5,
        4,
        4,
        None,
    ]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(), min_size=1, max_size=20))
def test_never_raises(texts: list[str]) -> None:
    assert len(_codes(list(texts))) == len(texts)


_WORDS = st.text(alphabet="abcdefghij klmnop", max_size=30)


@settings(max_examples=200, deadline=None)
@given(
    _WORDS,
    _WORDS,
    st.sampled_from([4, 5]),
    st.integers(0, 5),
    st.integers(0, 9),
    st.integers(0, 7),
    st.integers(0, 999),
)
def test_an_inserted_code_is_found(
    before: str, after: str, cls: int, second: int, third: int, subject: int, detail: int
) -> None:
    reply, enhanced = f"{cls}{second}{third}", f"{cls}.{subject}.{detail}"
    text = f"host mx.b.example said: {reply} {enhanced} {after}"
    assert _codes([before + " " + text]) == [(int(reply), enhanced)]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 255), min_size=4, max_size=4),
    st.dates(),
    st.times(),
    st.sampled_from(["connect to {} failed", "{}", "client [{}] rejected", "{}:25"]),
)
def test_addresses_and_dates_give_no_code(octets: list[int], date, time, shape: str) -> None:  # type: ignore[no-untyped-def]
    ip = ".".join(map(str, octets))
    for value in (ip, date.isoformat(), time.isoformat(), f"{date.isoformat()} {time}"):
        assert _codes([shape.format(value)]) == [(None, None)]


def test_extract_smtp_code_alone() -> None:
    frame = pl.DataFrame({"t": ["said: 450 try later", "250 ok", "650 nope"]})
    assert frame.select(extract_smtp_code(pl.col("t"))).to_series().to_list() == [450, 250, None]
