"""Thresholds over a window of events, for cron and monitoring (`bounce-analyzer check`).

A pure function of an events LazyFrame, as the report is: the figures are the report's own
(`report.summarize`, final outcomes: failure rate = failed / messages of the direction), so
that `check` and `report --format json` agree on the same input. The verdict follows the
Nagios plugin convention: OK, WARNING, CRITICAL, and UNKNOWN when there is nothing to judge.
docs/MONITORING.md describes the thresholds file and the decisions.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import IntEnum
from pathlib import Path
from typing import Any

import polars as pl

from bounce_analyzer.errors import UsageError
from bounce_analyzer.report import Report, summarize
from bounce_analyzer.timewindow import previous_start


class Status(IntEnum):
    """A check's verdict, as its exit code (the Nagios plugin convention)."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


@dataclass(frozen=True)
class Limit:
    """A warning and a critical level (either may be missing); a breach is `value >= level`.
    `min_messages` overrides the thresholds' own where it is given."""

    warn: float | None = None
    crit: float | None = None
    min_messages: int | None = None

    def status(self, value: float) -> Status:
        """The status `value` earns against this limit."""
        if self.crit is not None and value >= self.crit:
            return Status.CRITICAL
        if self.warn is not None and value >= self.warn:
            return Status.WARNING
        return Status.OK


#: Under this many messages in the window, a failure rate is not judged (1 failure of 2
#: messages pages no one); `min_messages` in the thresholds file or `--min-messages` change it.
MIN_MESSAGES = 20

#: The key of a provider or category table that applies to every provider or category, and
#: the key of the blocklist table that counts the events naming any list.
EVERY = "*"
ANY_LIST = "any"


@dataclass(frozen=True)
class Thresholds:
    """What `check` judges: rates are fractions (0.05), blocklist levels counts of events,
    the rise a difference of rates (0.02 is 2 points)."""

    overall: Limit = field(default_factory=Limit)
    providers: dict[str, Limit] = field(default_factory=dict)
    categories: dict[str, Limit] = field(default_factory=dict)
    blocklists: dict[str, Limit] = field(default_factory=dict)
    rise: Limit | None = None
    min_messages: int = MIN_MESSAGES

    def with_overall(
        self, *, warn: float | None, crit: float | None, min_messages: int | None
    ) -> Thresholds:
        """These thresholds with the command line's levels for the overall rate (those given
        win over the file's)."""
        overall = Limit(
            warn=self.overall.warn if warn is None else warn,
            crit=self.overall.crit if crit is None else crit,
            min_messages=self.overall.min_messages,
        )
        return Thresholds(
            overall=overall,
            providers=self.providers,
            categories=self.categories,
            blocklists=self.blocklists,
            rise=self.rise,
            min_messages=self.min_messages if min_messages is None else min_messages,
        )

    def least(self, limit: Limit) -> int:
        """The fewest messages `limit` judges a rate of: its own minimum, else the thresholds'."""
        return self.min_messages if limit.min_messages is None else limit.min_messages

    def unknown_names(
        self, *, providers: set[str], categories: set[str], blocklists: set[str]
    ) -> list[str]:
        """The provider, category and blocklist tables that name none the rules know (a
        typing error would never fire), as `provider.gogle`."""
        tables = [
            ("provider", self.providers, providers | {EVERY, "other"}),
            ("category", self.categories, categories | {EVERY}),
            ("blocklist", self.blocklists, blocklists | {ANY_LIST}),
        ]
        return [
            f"{kind}.{name}" for kind, names, known in tables for name in names if name not in known
        ]

    def is_empty(self) -> bool:
        """True when nothing would be judged."""
        limits = [
            self.overall,
            *self.providers.values(),
            *self.categories.values(),
            *self.blocklists.values(),
            *([self.rise] if self.rise else []),
        ]
        return all(limit.warn is None and limit.crit is None for limit in limits)


def parse_rate(value: object, *, name: str) -> float:
    """A rate given as `5%`, `0.05` or 0.05 -> 0.05; `name` says where it came from."""
    text = str(value).strip()
    try:
        rate = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        rate = math.nan
    if isinstance(value, bool) or not 0 <= rate <= 1:
        raise UsageError(
            f"{name}: {value!r} is not a rate: give a percentage (5%) or 0 to 1 (0.05)"
        )
    return rate


def _count(value: object, *, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UsageError(f"{name}: {value!r} is not a count of events (0, 1, 2 ...)")
    return value


_LIMIT_KEYS = {"warn", "crit", "min_messages"}


def _limit(table: object, *, name: str, counts: bool = False) -> Limit:
    if not isinstance(table, dict):
        raise UsageError(f"{name}: expected a table with warn and/or crit")
    unknown = sorted(set(table) - _LIMIT_KEYS)
    if unknown:
        raise UsageError(f"{name}: unknown key {unknown[0]!r}: use warn, crit, min_messages")
    levels: dict[str, float | None] = {}
    for key in ("warn", "crit"):
        value = table.get(key)
        if value is None:
            levels[key] = None
        elif counts:
            levels[key] = _count(value, name=f"{name}.{key}")
        else:
            levels[key] = parse_rate(value, name=f"{name}.{key}")
    least = table.get("min_messages")
    return Limit(
        warn=levels["warn"],
        crit=levels["crit"],
        min_messages=None if least is None else _count(least, name=f"{name}.min_messages"),
    )


_FILE_KEYS = {"min_messages", "overall", "provider", "category", "blocklist", "rise"}


def load_thresholds(path: Path) -> Thresholds:
    """The thresholds of a TOML file (docs/MONITORING.md). A file that cannot be read or says
    something we do not understand raises `UsageError` naming the file (and line)."""
    try:
        document: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise UsageError(f"{path}: cannot read the thresholds: {error.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: the thresholds file is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"{path}: not valid TOML: {error}") from None
    try:
        unknown = sorted(set(document) - _FILE_KEYS)
        if unknown:
            raise UsageError(f"unknown key {unknown[0]!r}: use {', '.join(sorted(_FILE_KEYS))}")

        def named(key: str, *, counts: bool = False) -> dict[str, Limit]:
            table = document.get(key, {})
            if not isinstance(table, dict):
                raise UsageError(f"{key}: expected a table of names")
            return {
                str(name): _limit(limit, name=f"{key}.{name}", counts=counts)
                for name, limit in table.items()
            }

        return Thresholds(
            overall=_limit(document.get("overall", {}), name="overall"),
            providers=named("provider"),
            categories=named("category"),
            blocklists=named("blocklist", counts=True),
            rise=_limit(document["rise"], name="rise") if "rise" in document else None,
            min_messages=_count(document.get("min_messages", MIN_MESSAGES), name="min_messages"),
        )
    except UsageError as error:
        raise UsageError(f"{path}: {error}") from None


@dataclass(frozen=True)
class Finding:
    """One judged figure: its status and the line that says it."""

    status: Status
    line: str


@dataclass
class CheckResult:
    """A check's verdict: the status, its first line (with performance data), and one line
    per breach (or note)."""

    status: Status
    summary: str
    findings: list[Finding]
    perfdata: list[str]

    def text(self) -> str:
        """The plugin output: `BOUNCE <STATUS> - <summary> | <perfdata>`, then a line per
        finding."""
        head = f"BOUNCE {self.status.name} - {self.summary}"
        if self.perfdata:
            head += " | " + " ".join(self.perfdata)
        return "".join(f"{line}\n" for line in [head, *(f.line for f in self.findings)])


def first_instant(thresholds: Thresholds, since: datetime, until: datetime) -> datetime:
    """The earliest instant `check` reads: the previous window's start when a rise is judged."""
    return previous_start(since, until) if thresholds.rise is not None else since


def _percent(rate: float) -> str:
    return f"{rate * 100:.1f}%"


def _level(limit: Limit, status: Status, *, counts: bool = False) -> str:
    level = limit.crit if status is Status.CRITICAL else limit.warn
    assert level is not None
    return f"{int(level):,}" if counts else _percent(level)


def _window_text(since: datetime, until: datetime) -> str:
    def stamp(moment: datetime) -> str:
        if moment.hour == moment.minute == moment.second == 0:
            return moment.strftime("%Y-%m-%d")
        return moment.strftime("%Y-%m-%d %H:%M")

    return f"{stamp(since)} to {stamp(until)} UTC"


def _perf(label: str, value: float | int, limit: Limit | None = None) -> str:
    shown = f"{value:.4f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)
    if limit is None:
        return f"{label}={shown}"
    levels = ["" if level is None else f"{level:g}" for level in (limit.warn, limit.crit)]
    return f"{label}={shown};{levels[0]};{levels[1]}"


def _figures(report: Report) -> tuple[int, int]:
    final = report.totals.filter(pl.col("view") == "final outcomes")
    return int(final["total"].sum()), int(final["failed"].sum())


def _summarize(
    events: pl.LazyFrame,
    since: datetime,
    until: datetime,
    direction: str,
    held: Sequence[date] | None = None,
    holder: str = "the input",
) -> Report:
    return summarize(
        events,
        since=since,
        until=until,
        by=["provider", "category"],
        top=2**31,  # every row: the thresholds name any provider or category
        direction=direction,
        held=held,
        holder=holder,
    )


def _named(limits: dict[str, Limit], names: list[str]) -> list[tuple[str, Limit]]:
    """Each of `names` with its own limit, else the limit for every name (`EVERY`)."""
    every = limits.get(EVERY)
    return [(name, limit) for name in names if (limit := limits.get(name, every)) is not None]


def check(
    events: pl.LazyFrame,
    thresholds: Thresholds,
    *,
    since: datetime,
    until: datetime,
    direction: str = "outbound",
    held: Sequence[date] | None = None,
    holder: str = "the input",
) -> CheckResult:
    """Judge the events of [since, until) of `direction` against `thresholds`.

    `events` must hold the previous window too (from `first_instant`) when a rise is judged.
    `held` and `holder` are as for `report.summarize`: what an empty window's line says is
    there (a store's days).
    """
    report = _summarize(events, since, until, direction, held, holder)
    messages, failures = _figures(report)
    window = _window_text(since, until)
    least = thresholds.least(thresholds.overall)
    rate = failures / messages if messages else 0.0
    perfdata = [
        _perf("failure_rate", round(rate, 4), thresholds.overall),
        _perf("messages", messages),
        _perf("failed", failures),
    ]
    of_messages = f"{failures:,} of {messages:,} messages, {window}"
    described = f"{direction} failure rate {_percent(rate)} ({of_messages})"
    if messages == 0:
        note = report.notes[0] if report.notes else f"no events between {window}"
        # no rate to report: a failure rate of 0 would draw a false point on a graph
        return CheckResult(
            Status.UNKNOWN, f"no {direction} messages to judge: {note}", [], perfdata[1:]
        )
    findings: list[Finding] = []

    def judge(limit: Limit, value: float, what: str, detail: str, *, counts: bool = False) -> None:
        status = limit.status(value)
        if status is not Status.OK:
            shown = f"{int(value):,}" if counts else _percent(value)
            level = _level(limit, status, counts=counts)
            findings.append(Finding(status, f"{status.name}: {what} {shown} >= {level} ({detail})"))

    if messages >= least:
        judge(thresholds.overall, rate, f"{direction} failure rate", of_messages)
    groups = report.groups.with_columns(pl.col("provider", "category").fill_null("other"))
    by_provider = (
        groups.group_by("provider").agg(pl.col("messages", "failed").sum()).sort("provider")
    )
    counted = dict(
        zip(by_provider["provider"], by_provider.select("messages", "failed").rows(), strict=True)
    )
    for name, limit in _named(thresholds.providers, list(counted)):
        sent, lost = counted.get(name, (0, 0))
        if sent >= thresholds.least(limit):
            judge(
                limit,
                lost / sent,
                f"{direction} failure rate at {name}",
                f"{lost:,} of {sent:,} messages, {window}",
            )
    by_category = (
        groups.filter(pl.col("failed") > 0)
        .group_by("category")
        .agg(pl.col("failed").sum())
        .sort("category")
    )
    failed_as = dict(zip(by_category["category"], by_category["failed"], strict=True))
    for name, limit in _named(
        thresholds.categories, sorted(set(failed_as) | set(thresholds.categories) - {EVERY})
    ):
        lost = int(failed_as.get(name, 0))
        if messages >= thresholds.least(limit):
            judge(
                limit,
                lost / messages,
                f"{direction} messages failed as {name}",
                f"{lost:,} of {messages:,} messages, {window}",
            )
    lists = report.blocklists
    named_lists = dict(zip(lists["blocklist"], lists["attempts"], strict=True))
    for name, limit in thresholds.blocklists.items():
        count = int(lists["attempts"].sum()) if name == ANY_LIST else int(named_lists.get(name, 0))
        what = "refusals naming a blocklist" if name == ANY_LIST else f"refusals naming {name}"
        judge(limit, count, f"{direction} {what}", f"failures and deferrals, {window}", counts=True)
    if thresholds.rise is not None:
        before = previous_start(since, until)
        earlier = _summarize(events, before, since, direction)
        sent, lost = _figures(earlier)
        rise_least = thresholds.least(thresholds.rise)
        if sent >= rise_least and messages >= rise_least:
            rise = rate - lost / sent
            perfdata.append(_perf("failure_rate_rise", round(rise, 4), thresholds.rise))
            status = thresholds.rise.status(rise)
            if status is not Status.OK:
                findings.append(
                    Finding(
                        status,
                        f"{status.name}: {direction} failure rate rose {rise * 100:.1f} points "
                        f">= {_level(thresholds.rise, status)[:-1]} points ({_percent(rate)} "
                        f"against {_percent(lost / sent)}: {lost:,} of {sent:,} messages, "
                        f"{_window_text(before, since)})",
                    )
                )
    findings.sort(key=lambda finding: -finding.status)
    status = max((finding.status for finding in findings), default=Status.OK)
    if status is Status.OK:
        summary = described
        if messages < least:
            summary += f"; too few messages to judge (fewer than {least:,})"
    else:
        summary = f"{len(findings)} breach{'es' if len(findings) != 1 else ''}"
    return CheckResult(status, summary, findings, perfdata)


__all__ = [
    "ANY_LIST",
    "EVERY",
    "MIN_MESSAGES",
    "CheckResult",
    "Finding",
    "Limit",
    "Status",
    "Thresholds",
    "check",
    "first_instant",
    "load_thresholds",
    "parse_rate",
]
