"""Exports on small, hand-made event tables: suppressions, daily aggregates, CSV, partitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from bounce_analyzer.errors import UsageError
from bounce_analyzer.export import (
    ExportFormat,
    daily_aggregates,
    rule_text,
    suppressions,
    with_rule_text,
    write_export,
)
from bounce_analyzer.report import summarize
from bounce_analyzer.rules import load_rules, user_rules_dir
from bounce_analyzer.schema import EVENT_SCHEMA, conform

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)

_HARD = {"event": "bounced", "bounce_type": "hard", "category": "user_unknown",
         "smtp_code": 550, "enhanced_code": "5.1.1"}  # fmt: skip
_SOFT = {"event": "bounced", "bounce_type": "soft", "category": "mailbox_full",
         "smtp_code": 552, "enhanced_code": "5.2.2"}  # fmt: skip


def _events(*rows: dict[str, Any]) -> pl.DataFrame:
    full = [
        {"event_id": f"e{i:03d}", "source": "postfix", "provider": "google",
         "category": "delivered", "direction": "outbound", **row}
        for i, row in enumerate(rows)
    ]  # fmt: skip
    frame = pl.DataFrame(full, schema_overrides={"timestamp": pl.Datetime("us", "UTC")})
    return conform(frame, EVENT_SCHEMA)


def _at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def test_suppressions_are_hard_bounces_not_delivered_to_afterwards() -> None:
    events = _events(
        # two hard bounces: the last reason and date are kept
        {"timestamp": _at(0), "recipient": "a@gmail.com", **_HARD, "diagnostic": "first"},
        {"timestamp": _at(5), "recipient": "a@gmail.com", **_HARD, "diagnostic": "second"},
        # delivered before the hard bounce: still suppressed
        {"timestamp": _at(1), "recipient": "b@gmail.com", "event": "delivered"},
        {"timestamp": _at(2), "recipient": "b@gmail.com", **_HARD, "diagnostic": "gone"},
        # delivered after the hard bounce: works again
        {"timestamp": _at(1), "recipient": "c@gmail.com", **_HARD, "diagnostic": "gone"},
        {"timestamp": _at(3), "recipient": "c@gmail.com", "event": "delivered"},
        # soft bounces and deferrals never suppress
        {"timestamp": _at(1), "recipient": "d@gmail.com", **_SOFT, "diagnostic": "full"},
        {"timestamp": _at(1), "recipient": "e@gmail.com", **_HARD, "event": "deferred"},
        # a hard failure without a recipient cannot be suppressed
        {"timestamp": _at(1), **_HARD},
        # our own server refusing mail to an address of ours, or to one it never had: not
        # our mail, so nobody's suppression (issue 13: 720 addresses of our own domain)
        {"timestamp": _at(1), "recipient": "old.user@example.com", **_HARD,
         "event": "rejected", "direction": "inbound"},
        # a hop between our own programs is not our mail to a recipient either
        {"timestamp": _at(1), "recipient": "f@gmail.com", **_HARD, "direction": "internal"},
        # a delivery into our own mailbox does not bring back an address we mailed
        {"timestamp": _at(6), "recipient": "a@gmail.com", "event": "delivered",
         "direction": "inbound"},
    )  # fmt: skip
    got = suppressions(events.lazy()).collect()
    assert got.select("recipient", "hard_bounces", "last_reason", "last_bounce").rows() == [
        ("a@gmail.com", 2, "second", _at(5)),
        ("b@gmail.com", 1, "gone", _at(2)),
    ]
    assert got.schema["last_bounce"] == pl.Datetime("us", "UTC")
    assert got.row(0, named=True)["category"] == "user_unknown"


def test_daily_aggregates_sum_to_the_events() -> None:
    events = _events(
        {"timestamp": _at(0), "recipient": "a@gmail.com", **_HARD},
        {"timestamp": _at(1), "recipient": "b@gmail.com", **_SOFT},
        {"timestamp": _at(2), "recipient": "c@gmail.com", "event": "delivered"},
        {"timestamp": _at(30), "recipient": "c@gmail.com", "event": "delivered"},
        {"timestamp": _at(31), "recipient": "c@gmail.com", "event": "complained",
         "category": "feedback"},
    )  # fmt: skip
    daily = daily_aggregates(events.lazy()).collect()
    assert daily.select("date", "category", "events", "delivered", "bounced", "hard", "soft").rows(
    ) == [
        (T0.date(), "delivered", 1, 1, 0, 0, 0),
        (T0.date(), "mailbox_full", 1, 0, 1, 0, 1),
        (T0.date(), "user_unknown", 1, 0, 1, 1, 0),
        ((T0 + timedelta(days=1)).date(), "delivered", 1, 1, 0, 0, 0),
        ((T0 + timedelta(days=1)).date(), "feedback", 1, 0, 0, 0, 0),
    ]  # fmt: skip
    assert int(daily["events"].sum()) == events.height
    assert int(daily["complained"].sum()) == 1


def test_daily_aggregates_split_failures_as_the_report_does_issue_13() -> None:
    # a failure the rules left without a bounce_type is soft, as in every report view
    # (docs/REPORTS.md, Hard and soft): hard + soft = failed, and the report agrees
    events = _events(
        {"timestamp": _at(0), "recipient": "a@gmail.com", **_HARD},
        {"timestamp": _at(1), "recipient": "b@gmail.com", **_SOFT},
        {"timestamp": _at(2), "recipient": "c@gmail.com", **_SOFT, "bounce_type": None,
         "category": "unknown", "smtp_code": 554, "enhanced_code": None},
        {"timestamp": _at(3), "recipient": "d@gmail.com", "event": "deferred",
         "bounce_type": None, "category": "unknown"},
    )  # fmt: skip
    daily = daily_aggregates(events.lazy()).collect()
    assert daily.select("category", "bounced", "deferred", "hard", "soft").rows() == [
        ("mailbox_full", 1, 0, 0, 1),
        ("unknown", 1, 1, 0, 1),
        ("user_unknown", 1, 0, 1, 0),
    ]
    totals = summarize(events.lazy()).totals.row(0, named=True)
    assert (totals["failed"], totals["hard"], totals["soft"]) == (
        int(daily["bounced"].sum()),
        int(daily["hard"].sum()),
        int(daily["soft"].sum()),
    )


def test_csv_export_neutralizes_formulas(tmp_path: Path) -> None:
    texts = ['=HYPERLINK("http://evil.example")', "+1 555 0100", "-2+3", "@SUM(A1)", "ok = fine"]
    events = _events(
        *[
            {"timestamp": _at(i), "recipient": f"r{i}@gmail.com", **_HARD, "diagnostic": text}
            for i, text in enumerate(texts)
        ]
    )
    output = tmp_path / "events.csv"
    assert write_export(events.lazy(), output, fmt=ExportFormat.csv) == len(texts)
    back = pl.read_csv(output)
    assert back["diagnostic"].to_list() == [
        "'=HYPERLINK(\"http://evil.example\")", "'+1 555 0100", "'-2+3", "'@SUM(A1)", "ok = fine",
    ]  # fmt: skip
    assert back["recipient"].to_list() == [f"r{i}@gmail.com" for i in range(len(texts))]


def test_partition_by_date_needs_parquet(tmp_path: Path) -> None:
    events = _events({"timestamp": _at(0), "recipient": "a@gmail.com", "event": "delivered"})
    with pytest.raises(UsageError, match=r"^--partition-by date needs --format parquet$"):
        write_export(events.lazy(), tmp_path / "x", fmt=ExportFormat.csv, partition_by_date=True)


def test_partitioned_export_reads_back_with_hive_dates(tmp_path: Path) -> None:
    events = _events(
        {"timestamp": _at(0), "recipient": "a@gmail.com", "event": "delivered"},
        {"timestamp": _at(1), "recipient": "b@gmail.com", **_HARD},
        {"timestamp": _at(26), "recipient": "c@gmail.com", "event": "delivered"},
    )
    output = tmp_path / "out"
    assert write_export(events.lazy(), output, partition_by_date=True) == 3
    assert sorted(p.name for p in output.iterdir()) == ["date=2026-11-26", "date=2026-11-27"]
    rows = duckdb.sql(
        f"SELECT CAST(date AS VARCHAR), count(*), count(*) FILTER (WHERE bounce_type = 'hard') "
        f"FROM read_parquet('{output}/**/*.parquet', hive_partitioning = true) "
        "GROUP BY date ORDER BY date"
    ).fetchall()
    assert rows == [("2026-11-26", 2, 1), ("2026-11-27", 1, 0)]


def test_rule_text_falls_back_to_the_category() -> None:
    rules = load_rules(user_rules_dir(None))
    events = _events(
        {"timestamp": _at(0), "recipient": "a@gmail.com", "event": "delivered",
         "rule_id": "event:delivered", "category": "delivered"},
        {"timestamp": _at(0), "recipient": "b@gmail.com", **_HARD,
         "rule_id": "no-such-rule", "category": "user_unknown"},
    )  # fmt: skip
    joined = with_rule_text(events.lazy(), rule_text(rules), rules.categories).collect()
    text = dict(rules.categories.select("category", pl.struct("description", "advice")).iter_rows())
    assert joined.select("meaning", "solution").rows() == [
        (text["delivered"]["description"], text["delivered"]["advice"]),
        (text["user_unknown"]["description"], text["user_unknown"]["advice"]),
    ]
    assert joined.columns == [*EVENT_SCHEMA, "meaning", "solution"]


def test_rule_text_of_inbound_events_is_the_inbound_advice() -> None:
    """A table row's solution is written for the sender (Gmail's 5.1.1: check the address);
    an inbound event, our server refusing a client, gets the category's inbound advice."""
    rules = load_rules(user_rules_dir(None))
    row = rules.codes.filter(pl.col("rule_id") == "gmail:gmail-035").row(0, named=True)
    events = _events(
        {"timestamp": _at(0), "recipient": "a@gmail.com", **_HARD, "rule_id": "gmail:gmail-035"},
        {"timestamp": _at(0), "recipient": "b@example.com", **_HARD, "rule_id": "gmail:gmail-035",
         "event": "rejected", "direction": "inbound"},
    )  # fmt: skip
    joined = with_rule_text(events.lazy(), rule_text(rules), rules.categories).collect()
    advice = rules.categories.filter(category="user_unknown").row(0, named=True)
    meaning = row["meaning"] or row["message"]  # the row's meaning is the text Gmail sends
    assert joined.select("meaning", "solution").rows() == [
        (meaning, row["solution"]),
        (meaning, advice["advice_inbound"]),
    ]


def test_a_partitioned_export_replaces_the_dates_it_writes(tmp_path: Path) -> None:
    """Like pyarrow's `delete_matching`: a date written again is replaced whole, others stay."""
    first = _events(
        {"timestamp": _at(0), "recipient": "a@gmail.com", "event": "delivered"},
        {"timestamp": _at(26), "recipient": "b@gmail.com", "event": "delivered"},
    )
    output = tmp_path / "out"
    assert write_export(first.lazy(), output, partition_by_date=True) == 2
    again = _events({"timestamp": _at(27), "recipient": "c@gmail.com", **_HARD})
    assert write_export(again.lazy(), output, partition_by_date=True) == 1
    back = pl.read_parquet(output / "**" / "*.parquet", hive_partitioning=True)
    assert sorted(back.select(pl.col("date").cast(pl.String), "recipient").rows()) == [
        ("2026-11-26", "a@gmail.com"),
        ("2026-11-27", "c@gmail.com"),
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing left beside


@pytest.mark.parametrize("fmt", [ExportFormat.csv, ExportFormat.parquet])
def test_an_export_of_no_rows_has_the_columns(fmt: ExportFormat, tmp_path: Path) -> None:
    output = tmp_path / f"events.{fmt}"
    assert write_export(_events().lazy(), output, fmt=fmt) == 0
    back = pl.read_csv(output) if fmt is ExportFormat.csv else pl.read_parquet(output)
    assert back.height == 0
    assert back.columns == list(EVENT_SCHEMA)
    assert sorted(p.name for p in tmp_path.iterdir()) == [output.name]


def test_an_export_makes_the_folders_it_is_written_in(tmp_path: Path) -> None:
    events = _events({"timestamp": _at(0), "recipient": "a@gmail.com", "event": "delivered"})
    assert write_export(events.lazy(), tmp_path / "a" / "b" / "events.csv", fmt=ExportFormat.csv)
    assert write_export(events.lazy(), tmp_path / "c" / "d", partition_by_date=True) == 1
    assert [p.name for p in (tmp_path / "c" / "d").iterdir()] == ["date=2026-11-26"]
