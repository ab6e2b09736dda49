"""The SMTP vocabulary: reply codes, enhanced codes, the domain of an address, the local zone."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from bounce_analyzer import smtp

#: The careful reading of an address's domain, as a capture group says it (the slower engine).
CAREFUL_DOMAIN = r"@([^@\s>]+)\s*>?\s*$"


def _domains(addresses: list[str | None]) -> list[str | None]:
    frame = pl.DataFrame({"address": addresses}, schema={"address": pl.String()})
    return frame.select(smtp.domain_of(pl.col("address"))).to_series().to_list()


def _whole_matches(pattern: str, texts: list[str]) -> list[bool]:
    return pl.Series(texts).str.contains(f"^(?:{pattern})$").to_list()


# --- reply codes and enhanced codes -------------------------------------------------------------

# text, a reply code, a completion reply code
REPLIES = [
    ("250", True, True),
    ("354", True, False),  # intermediate: asks for the message, ends nothing
    ("421", True, True),
    ("550", True, True),
    ("559", True, True),
    ("560", False, False),  # second digit 6: no reply code (Postfix and Exim read one before)
    ("599", False, False),
    ("199", False, False),
    ("650", False, False),
    ("55", False, False),
    ("55٥", False, False),  # an Arabic-Indic digit: never a code
]


@pytest.mark.parametrize(("text", "reply", "completion"), REPLIES)
def test_reply_codes(text: str, reply: bool, completion: bool) -> None:
    assert _whole_matches(smtp.REPLY_CODE, [text]) == [reply]
    assert _whole_matches(smtp.COMPLETION_REPLY_CODE, [text]) == [completion]


# text, an enhanced code, one of a subject RFC 3463 defines
ENHANCED = [
    ("5.1.1", True, True),
    ("4.7.26", True, True),
    ("2.0.0", True, True),
    ("5.12.345", True, False),
    ("3.1.1", False, False),  # class 3: no enhanced code (Postfix read one before)
    ("5.1.1234", False, False),
    ("5.1.٥", False, False),
]


@pytest.mark.parametrize(("text", "enhanced", "known"), ENHANCED)
def test_enhanced_codes(text: str, enhanced: bool, known: bool) -> None:
    assert _whole_matches(smtp.ENHANCED_CODE, [text]) == [enhanced]
    assert _whole_matches(smtp.ENHANCED_CODE_KNOWN, [text]) == [known]


# --- the domain of an address ------------------------------------------------------------------

# address, domain
DOMAINS = [
    ("a@example.com", "example.com"),
    ("A.B@Mail.Example.COM", "mail.example.com"),
    ("a@b@c.example", "c.example"),  # the last @
    ("Jane <j@B.example>", "b.example"),
    ("j@b.example>", "b.example"),  # Postfix and Exim kept the `>` before
    ("j@b.example >", "b.example"),
    ("j@b.example \t", "b.example"),  # Postfix kept the white space before
    ("j@b.example\u3000", "b.example"),
    ("j@b example", None),  # Postfix read "b example" before
    ("j@b>example", None),
    ("j@b.example>>", None),
    ("j@ b.example", None),
    ("j@", None),
    ("j@ ", None),
    ("j@>", None),
    ("no at sign", None),
    ("", None),
    (None, None),
]


@pytest.mark.parametrize(("address", "domain"), DOMAINS)
def test_domain_of(address: str | None, domain: str | None) -> None:
    assert _domains([address]) == [domain]


def test_domain_of_strips_every_white_space_the_pattern_knows() -> None:
    """`\\s` is Unicode's White_Space: each such character ends a domain, as the pattern says."""
    code_points = pl.Series(
        [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF], dtype=pl.String()
    )
    spaces = code_points.filter(code_points.str.contains(r"^\s$")).to_list()
    assert len(spaces) == 25
    addresses = [f"a@B.example{space}" for space in spaces]
    addresses += [f"a@b.example{space}>{space}" for space in spaces]
    assert _domains(addresses) == ["b.example"] * len(addresses)
    assert _domains([f"a@b{space}example" for space in spaces]) == [None] * len(spaces)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet="aB@. >\t\u00a0\u3000é", max_size=10), max_size=50))
@example(["a@b", "a@b ", "a@b>", "a@b> ", "a@ b", "a@b>c", "a@B.é >", "@", "@>", "a@b@c"])
def test_domain_of_reads_as_the_pattern_reads(addresses: list[str]) -> None:
    """The whole match less its `@` and tail is the careful pattern's group, lower-cased."""
    frame = pl.DataFrame({"address": addresses}, schema={"address": pl.String()})
    assert_frame_equal(
        frame.select(smtp.domain_of(pl.col("address"))),
        frame.select(pl.col("address").str.extract(CAREFUL_DOMAIN, 1).str.to_lowercase()),
    )


# --- the local zone -----------------------------------------------------------------------------


def test_local_zone_takes_tz_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", ":Asia/Tokyo")
    assert smtp.local_zone() == "Asia/Tokyo"


@pytest.mark.parametrize(
    ("offset", "zone"),
    [(5 * 3600, "Etc/GMT-5"), (-3 * 3600, "Etc/GMT+3"), (0, "UTC"), (1800, "UTC")],
)
def test_local_zone_without_a_name_is_the_offset(
    unnamed_zone: Callable[[int], None], offset: int, zone: str
) -> None:
    unnamed_zone(offset)
    assert smtp.local_zone() == zone


def test_known_zone() -> None:
    assert smtp.known_zone("Europe/Paris")
    assert not smtp.known_zone("Mars/Olympus")
    assert not smtp.known_zone("../etc/passwd")
