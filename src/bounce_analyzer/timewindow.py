"""Time windows from the command line: `--since 7d`, `--until 2026-11-01`, `--older-than 90d`.

Every result is a timezone-aware datetime in UTC. The rules, stated once:

- A relative value counts back from `now`: `30s`, `90m`, `24h`, `7d`, `2w` (seconds, minutes,
  hours, days, weeks; upper or lower case). `--since 7d` is "from seven days ago"; `--until 1d`
  is "up to a day ago".
- A date means midnight UTC at its start: `2026-11-01` is `2026-11-01T00:00:00+00:00`, for
  `--since` and `--until` alike. The window is half-open, `since <= timestamp < until`, so
  `--since 2026-11-01 --until 2026-11-02` is exactly 1 November (UTC).
- A date and time without an offset is UTC (`2026-11-01T10:00`); with an offset it is
  converted (`2026-11-01T10:00:00+01:00` is 09:00 UTC). `Z` is accepted for UTC.
- `today` and `yesterday` are midnight UTC of that day.

The library never reads the clock: callers pass `now` (the CLI passes the current time).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from bounce_analyzer.errors import UsageError

__all__ = ["parse_duration", "parse_since", "parse_until", "previous_start"]

#: `7d`, `24h`, `2w`, `90m`, `30s`: a whole number and a unit.
_DURATION = re.compile(r"(?P<count>\d{1,7})(?P<unit>[smhdw])")

#: `2026-11-01`, `2026-11-01T10:00`, `2026-11-01 10:00:00`, `2026-11-01T10:00:00+01:00`, `...Z`.
_DATE = re.compile(
    r"\d{4}-\d{2}-\d{2}"
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
)

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

_HINT = "use 7d, 24h, 2w or a date like 2026-11-01"


def _utc_now(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("`now` must be timezone-aware")
    return now.astimezone(UTC)


def _midnight(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _duration(text: str) -> timedelta | None:
    match = _DURATION.fullmatch(text)
    if match is None:
        return None
    try:
        return timedelta(**{_UNITS[match["unit"]]: int(match["count"])})
    except OverflowError:
        return None


def _moment(text: str, now: datetime) -> datetime | None:
    """The instant `text` names, or None when it is not a valid value."""
    word = text.strip().lower()
    if word == "today":
        return _midnight(now)
    if word == "yesterday":
        return _midnight(now) - timedelta(days=1)
    duration = _duration(word)
    if duration is not None:
        try:
            return now - duration
        except OverflowError:
            return None
    if _DATE.fullmatch(text.strip()) is None:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:  # 2026-02-30, 25:00 ...
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return None


def parse_since(text: str, *, now: datetime) -> datetime:
    """The start of a window (inclusive), in UTC: `7d`, `24h`, `2026-11-01`, `yesterday` ...

    Raises `UsageError` naming `--since` when `text` is not a valid value.
    """
    moment = _moment(text, _utc_now(now))
    if moment is None:
        raise UsageError(f"invalid --since value {text!r}: {_HINT}")
    return moment


def parse_until(text: str, *, now: datetime) -> datetime:
    """The end of a window (exclusive), in UTC; the same values as `parse_since`.

    Raises `UsageError` naming `--until` when `text` is not a valid value.
    """
    moment = _moment(text, _utc_now(now))
    if moment is None:
        raise UsageError(f"invalid --until value {text!r}: {_HINT}")
    return moment


def parse_duration(
    text: str,
    *,
    option: str = "--older-than",
    examples: str = "90d, 12w, 24h or 90m",
    now: datetime | None = None,
) -> timedelta:
    """A length of time: `90d`, `12w`, `24h`, `90m`, `30s` (for `prune --older-than`, and
    the intervals of `serve`).

    Raises `UsageError` naming `option` (and suggesting `examples`) when `text` is not a valid
    duration, or (given `now`) when it reaches back from `now` to before the year 1.
    """
    duration = _duration(text.strip().lower())
    if duration is None:
        raise UsageError(f"invalid {option} value {text!r}: use {examples}")
    if now is not None:
        try:
            _utc_now(now) - duration
        except OverflowError:
            raise UsageError(
                f"invalid {option} value {text!r}: it reaches back before the year 1"
            ) from None
    return duration


def previous_start(since: datetime, until: datetime) -> datetime:
    """The start of the window of equal length just before [since, until): the previous
    period that `report --compare` shows beside this one and `check` measures a rise against.
    It ends where this one starts, `since`."""
    return since - (until - since)
