"""`--since`, `--until` and `--older-than` values: every form, in UTC, and the exact errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bounce_analyzer.errors import UsageError
from bounce_analyzer.timewindow import parse_duration, parse_since, parse_until

NOW = datetime(2026, 11, 28, 12, 30, 15, tzinfo=UTC)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


# value, expected (for `now` = 2026-11-28 12:30:15 UTC)
WINDOW_CASES = [
    ("7d", utc(2026, 11, 21, 12, 30, 15)),
    ("24h", utc(2026, 11, 27, 12, 30, 15)),
    ("2w", utc(2026, 11, 14, 12, 30, 15)),
    ("90m", utc(2026, 11, 28, 11, 0, 15)),
    ("30s", utc(2026, 11, 28, 12, 29, 45)),
    ("90S", utc(2026, 11, 28, 12, 28, 45)),
    ("30d", utc(2026, 10, 29, 12, 30, 15)),
    ("0d", NOW),
    ("7D", utc(2026, 11, 21, 12, 30, 15)),
    (" 7d ", utc(2026, 11, 21, 12, 30, 15)),
    ("2026-11-01", utc(2026, 11, 1)),
    ("2026-11-01T10:00", utc(2026, 11, 1, 10, 0)),
    ("2026-11-01 10:00", utc(2026, 11, 1, 10, 0)),
    ("2026-11-01T10:00:30", utc(2026, 11, 1, 10, 0, 30)),
    ("2026-11-01T10:00:00+01:00", utc(2026, 11, 1, 9, 0)),
    ("2026-11-01T10:00:00-05:30", utc(2026, 11, 1, 15, 30)),
    ("2026-11-01T10:00:00Z", utc(2026, 11, 1, 10, 0)),
    ("today", utc(2026, 11, 28)),
    ("Today", utc(2026, 11, 28)),
    ("yesterday", utc(2026, 11, 27)),
]


@pytest.mark.parametrize(("text", "expected"), WINDOW_CASES)
def test_parse_since(text: str, expected: datetime) -> None:
    result = parse_since(text, now=NOW)
    assert result == expected
    assert result.tzinfo is UTC


@pytest.mark.parametrize(("text", "expected"), WINDOW_CASES)
def test_parse_until_takes_the_same_values(text: str, expected: datetime) -> None:
    assert parse_until(text, now=NOW) == expected


def test_now_in_another_zone_is_converted_first() -> None:
    # 2026-11-29 01:00 in UTC+2 is still 28 November in UTC: `today` is UTC midnight.
    now = datetime(2026, 11, 29, 1, 0, tzinfo=timezone(timedelta(hours=2)))
    assert parse_since("today", now=now) == utc(2026, 11, 28)
    assert parse_since("1h", now=now) == utc(2026, 11, 28, 22, 0)


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="`now` must be timezone-aware"):
        parse_since("7d", now=datetime(2026, 11, 28))


BAD_VALUES = [
    "x",
    "",
    "7",
    "d",
    "7 d",
    "-7d",
    "7y",
    "7days",
    "2026-13-01",
    "2026-02-30",
    "2026-11-01T25:00",
    "20261101",
    "2026-W44",
    "tomorrow",
    "9999999w",
]


@pytest.mark.parametrize("text", BAD_VALUES)
def test_bad_since_value(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_since(text, now=NOW)
    assert str(caught.value) == (
        f"invalid --since value {text!r}: use 7d, 24h, 2w or a date like 2026-11-01"
    )
    assert caught.value.exit_code == 2


def test_bad_since_value_exact_message() -> None:
    with pytest.raises(UsageError) as caught:
        parse_since("x", now=NOW)
    assert str(caught.value) == (
        "invalid --since value 'x': use 7d, 24h, 2w or a date like 2026-11-01"
    )


def test_bad_until_value_exact_message() -> None:
    with pytest.raises(UsageError) as caught:
        parse_until("soon", now=NOW)
    assert str(caught.value) == (
        "invalid --until value 'soon': use 7d, 24h, 2w or a date like 2026-11-01"
    )


def test_error_is_one_line_even_for_a_newline() -> None:
    with pytest.raises(UsageError) as caught:
        parse_since("7d\nrm -rf", now=NOW)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90d", timedelta(days=90)),
        ("12w", timedelta(weeks=12)),
        ("24h", timedelta(hours=24)),
        ("90m", timedelta(minutes=90)),
        ("30s", timedelta(seconds=30)),
        ("0d", timedelta(0)),
        ("90D", timedelta(days=90)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "90", "d", "2026-11-01", "today", "-1d", "1.5d"])
def test_bad_duration(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_duration(text)
    assert str(caught.value) == f"invalid --older-than value {text!r}: use 90d, 12w, 24h or 90m"


@given(st.text(max_size=40))
def test_any_text_gives_utc_or_usage_error(text: str) -> None:
    for parse in (parse_since, parse_until):
        try:
            result = parse(text, now=NOW)
        except UsageError as error:
            assert "\n" not in str(error)
        else:
            assert result.tzinfo is UTC


@given(st.integers(0, 5000), st.sampled_from("mhdw"))
def test_relative_values_count_back_from_now(count: int, unit: str) -> None:
    step = {
        "m": timedelta(minutes=1),
        "h": timedelta(hours=1),
        "d": timedelta(days=1),
        "w": timedelta(weeks=1),
    }[unit]
    assert parse_since(f"{count}{unit}", now=NOW) == NOW - count * step
    assert parse_duration(f"{count}{unit}") == count * step


@given(
    st.datetimes(
        min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    )
)
def test_iso_datetimes_round_trip(moment: datetime) -> None:
    moment = moment.replace(microsecond=0)
    assert parse_since(moment.isoformat(), now=NOW) == moment
    assert parse_until(moment.date().isoformat(), now=NOW) == utc(
        moment.year, moment.month, moment.day
    )
