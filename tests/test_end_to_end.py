"""The nightly job against known truth: generated logs in, report and exports out, counts exact.

Four generated inputs (Postfix, Exim, SendGrid, Mailgun; fixed seeds, 3-4 November 2026) are
ingested once into a store; the report (JSON) and the exports must agree with the generators'
`Truth` exactly, and with each other.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from _stores import export_store, report_store
from bounce_analyzer.cli import app
from bounce_analyzer.export import ExportKind
from bounce_analyzer.generate import (
    Truth,
    generate_exim,
    generate_mailgun,
    generate_postfix,
    generate_sendgrid,
)
from bounce_analyzer.ingest import IngestResult, ingest_paths
from bounce_analyzer.render import ReportFormat, render_report
from bounce_analyzer.rules import load_rules, user_rules_dir
from bounce_analyzer.schema import EVENTS, FAILURES
from bounce_analyzer.store import open_store

START = datetime(2026, 11, 3, tzinfo=UTC)
NOW = datetime(2026, 11, 10, 6, 0, tzinfo=UTC)
SINCE = datetime(2026, 11, 1, tzinfo=UTC)
DAYS = [date(2026, 11, 3), date(2026, 11, 4)]

runner = CliRunner()


@dataclass
class Nightly:
    folder: Path
    store: Path
    inputs: dict[str, Path]
    truths: dict[str, Truth]
    ingested: IngestResult


def _generate(folder: Path) -> tuple[dict[str, Path], dict[str, Truth]]:
    inputs = {
        "postfix": folder / "mail.log",
        "exim": folder / "mainlog",
        "sendgrid": folder / "sendgrid.ndjson",
        "mailgun": folder / "mailgun.ndjson",
    }
    truths = {
        "postfix": generate_postfix(inputs["postfix"], lines=4_000, seed=1, start=START, days=2),
        "exim": generate_exim(inputs["exim"], lines=4_000, seed=2, start=START, days=2),
        "sendgrid": generate_sendgrid(
            inputs["sendgrid"], events=3_000, seed=3, start=START, days=2
        ),
        "mailgun": generate_mailgun(inputs["mailgun"], events=3_000, seed=4, start=START, days=2),
    }
    # Classic syslog stamps take their year from the file's date: make it the night after.
    for path in inputs.values():
        os.utime(path, (NOW.timestamp(), NOW.timestamp()))
    return inputs, truths


@pytest.fixture(scope="module")
def nightly(tmp_path_factory: pytest.TempPathFactory) -> Nightly:
    folder = tmp_path_factory.mktemp("nightly")
    inputs, truths = _generate(folder)
    store = open_store(folder / "store", create=True)
    ingested = ingest_paths(store, [str(p) for p in inputs.values()], tz="UTC", now=NOW)
    return Nightly(folder, store.path, inputs, truths, ingested)


def _report(nightly: Nightly, by: list[str], direction: str = "all") -> dict[str, Any]:
    """The report of every direction by default: the truths count every event."""
    report = report_store(
        str(nightly.store), since=SINCE, until=NOW, by=by, top=100_000, direction=direction
    )
    document: dict[str, Any] = json.loads(render_report(report, ReportFormat.json))
    return document


def _groups(document: dict[str, Any]) -> dict[tuple[Any, ...], dict[str, Any]]:
    by = document["by"]
    return {tuple(row[k] for k in by): row for row in document["groups"]}


def _failures(truth: Truth) -> int:
    return sum(truth.events[event] for event in FAILURES)


def _total(truths: dict[str, Truth], event: str) -> int:
    return sum(truth.events[event] for truth in truths.values())


# --- ingest ------------------------------------------------------------------------------------


def test_ingest_reads_every_record_and_stores_every_event_once(nightly: Nightly) -> None:
    summaries = {summary.source: summary for summary in nightly.ingested.files}
    assert set(summaries) == set(nightly.truths)
    for source, truth in nightly.truths.items():
        summary = summaries[source]
        assert (summary.read, summary.events, summary.skipped, summary.malformed) == (
            truth.records,
            truth.event_records,
            truth.skipped,
            0,
        ), source
    expected = {e: _total(nightly.truths, e) for e in EVENTS if _total(nightly.truths, e)}
    assert nightly.ingested.events_by_type == expected
    assert nightly.ingested.duplicates == 0
    assert nightly.ingested.malformed == 0


# --- report --------------------------------------------------------------------------------------


def test_report_counts_each_source_and_event_type_as_the_truth(nightly: Nightly) -> None:
    groups = _groups(_report(nightly, ["source", "event"]))
    expected = {
        (source, event): count
        for source, truth in nightly.truths.items()
        for event, count in truth.events.items()
        if count
    }
    assert {key: row["attempts"] for key, row in groups.items()} == expected


def test_report_totals_match_the_truth(nightly: Nightly) -> None:
    document = _report(nightly, ["provider"])
    totals = {row["view"]: row for row in document["totals"]}
    attempts = totals["attempts"]
    failed = sum(_failures(truth) for truth in nightly.truths.values())
    assert attempts["total"] == sum(t.event_records for t in nightly.truths.values())
    assert attempts["delivered"] == _total(nightly.truths, "delivered")
    assert attempts["deferred"] == _total(nightly.truths, "deferred")
    assert attempts["failed"] == failed
    assert attempts["complained"] == _total(nightly.truths, "complained")
    final = totals["final outcomes"]
    assert final["delivered"] == _total(nightly.truths, "delivered")
    assert final["failed"] == failed
    assert (final["hard"], final["soft"]) == (attempts["hard"], attempts["soft"])
    assert document["malformed"] == 0
    assert [row["date"] for row in document["daily"]] == [d.isoformat() for d in DAYS]


@pytest.mark.parametrize("direction", ["outbound", "inbound"])
def test_each_direction_counts_the_truths_events_of_that_direction(
    nightly: Nightly, direction: str
) -> None:
    """The generator knows which way each event's mail went (issue 13): a report of one
    direction counts those events, and says how many of the others it left out."""
    document = _report(nightly, ["provider"], direction)
    expected = {
        event: sum(truth.by_direction[direction][event] for truth in nightly.truths.values())
        for event in EVENTS
    }
    attempts = document["totals"][0]
    assert attempts["delivered"] == expected["delivered"]
    assert attempts["deferred"] == expected["deferred"]
    assert attempts["failed"] == sum(expected[event] for event in FAILURES)
    assert attempts["complained"] == expected["complained"]
    held = {
        name: sum(sum(truth.by_direction[name].values()) for truth in nightly.truths.values())
        for name in ("outbound", "inbound", "internal")
    }
    assert document["directions"] == {name: n for name, n in held.items() if n}
    assert (document["inbound"] is None) == (direction == "outbound")


def _still_deferred_sendgrid(path: Path) -> int:
    """Recipients of SendGrid messages whose last delivery event is a deferral (plain counting)."""
    outcome = {"delivered", "deferred", "bounce", "dropped"}
    last: dict[tuple[str, str], tuple[int, str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        event = json.loads(line)
        if event["event"] not in outcome:
            continue
        key = (event["sg_message_id"], event["email"])
        seen = last.get(key)
        # at the same second the deferral comes first: a final event ends the message
        rank = (event["timestamp"], event["event"] != "deferred")
        if seen is None or rank >= (seen[0], seen[1] != "deferred"):
            last[key] = (event["timestamp"], event["event"])
    return sum(1 for _, kind in last.values() if kind == "deferred")


def test_final_outcomes_count_each_message_and_recipient_once(nightly: Nightly) -> None:
    groups = _groups(_report(nightly, ["source"]))
    pending = {
        "postfix": 0,
        "exim": 0,
        "sendgrid": _still_deferred_sendgrid(nightly.inputs["sendgrid"]),
        "mailgun": 0,
    }
    assert pending["sendgrid"] == 12  # the generator stops some retries without an outcome
    for source, truth in nightly.truths.items():
        row = groups[(source,)]
        assert row["delivered"] == truth.events["delivered"], source
        assert row["failed"] == _failures(truth), source
        assert row["deferred"] == pending[source], source
        assert row["messages"] == truth.events["delivered"] + _failures(truth) + pending[source]
        assert row["attempts"] == truth.event_records, source
        assert row["deferrals"] == truth.events["deferred"], source


def test_postfix_expiry_ends_its_recipient_in_final_outcomes(nightly: Nightly) -> None:
    """qmgr's `status=expired` names no recipient; the recipient's last deferral is replaced."""
    groups = _groups(_report(nightly, ["source", "recipient_domain", "event"]))
    truth = nightly.truths["postfix"]
    expired = {d: per["expired"] for d, per in truth.by_domain.items() if per["expired"]}
    assert sum(expired.values()) == truth.events["expired"] == 4
    final = {
        key[1]: row["messages"]
        for key, row in groups.items()
        if key[0] == "postfix" and key[2] == "expired" and row["messages"]
    }
    assert final == expired
    # as attempts too, the expiry is counted for each recipient it ends: no row without a
    # recipient holds attempts without messages (issue 13)
    attempts = {
        key[1]: row["attempts"]
        for key, row in groups.items()
        if key[0] == "postfix" and key[2] == "expired"
    }
    assert attempts == expired


def test_report_per_recipient_domain_matches_the_truth(nightly: Nightly) -> None:
    groups = _groups(_report(nightly, ["recipient_domain", "event"]))
    expected: Counter[tuple[str, str]] = Counter()
    for truth in nightly.truths.values():
        for domain, per in truth.by_domain.items():
            expected.update({(domain, event): n for event, n in per.items() if n})
        # the rejects of a whole message (Exim's rejected after DATA) name no recipient
        by_recipient = sum(per["rejected"] for per in truth.by_domain.values())
        expected[(None, "rejected")] += truth.events["rejected"] - by_recipient  # type: ignore[index]
    final = {key: row["messages"] for key, row in groups.items() if row["messages"]}
    # final outcomes: every delivery, failure and expiry is its recipient's outcome
    # (complaints are counted apart, as attempts only)
    assert {k: v for k, v in final.items() if k[1] != "deferred"} == {
        k: v for k, v in expected.items() if k[1] not in ("deferred", "complained")
    }
    # attempts: the same, the expiries Postfix logs without a recipient given to theirs
    attempts = {key: row["attempts"] for key, row in groups.items() if row["attempts"]}
    assert attempts == {k: v for k, v in expected.items() if v}


def _hard_categories() -> tuple[set[str], set[str]]:
    rules = load_rules(user_rules_dir(None))
    policy = dict(rules.categories.select("category", "hard").iter_rows())
    always = {c for c, p in policy.items() if p == "always"}
    if_permanent = {c for c, p in policy.items() if p == "if_permanent"}
    return always, if_permanent


def test_hard_and_soft_follow_the_obvious_categories(nightly: Nightly) -> None:
    always, if_permanent = _hard_categories()
    groups = _groups(_report(nightly, ["source"]))
    for source, truth in nightly.truths.items():
        failed = [t for t in truth.templates.values() if t["event"] in FAILURES]
        assert all(t["category"] is not None for t in failed), source  # else not exact
        hard = sum(
            int(str(t["count"]))
            for t in failed
            if t["category"] in always
            or (t["category"] in if_permanent and str(t["enhanced_code"]).startswith("5"))
        )
        row = groups[(source,)]
        assert (row["hard"], row["soft"]) == (hard, _failures(truth) - hard), source


def test_per_message_tokens_are_masked_so_one_reason_is_one_line(nightly: Nightly) -> None:
    document = _report(nightly, ["provider"])
    messages = [
        (category["category"], top["message"], top["count"])
        for category in document["categories"]
        for top in category["top_messages"] or []
    ]

    def lines(start: str) -> list[tuple[str, str, int]]:
        return [m for m in messages if m[1].startswith(start)]

    gmail = lines("[550 5.1.1] the email account that you tried to reach does not exist.")
    truth_gmail = sum(
        int(str(t.templates["google.user_unknown"]["count"])) for t in nightly.truths.values()
    )
    assert truth_gmail == 68  # distinct texts: every one carries its own message id
    assert len(gmail) == 1
    assert gmail[0][0] == "user_unknown"
    assert gmail[0][2] == truth_gmail
    assert gmail[0][1].endswith("go to https://support.google.com/mail/?p=nosuchuser <id> - gsmtp")
    # GMX says when to retry: one line whatever the delay
    bomb = lines("[450 4.3.2] too many mails (mail bomb), try again in # hour(s) # minute(s)")
    assert [count for _, _, count in bomb] == [
        sum(int(str(t.templates["gmx.mail_bomb"]["count"])) for t in nightly.truths.values())
    ]


# --- exports -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def events_export(nightly: Nightly) -> Path:
    output = nightly.folder / "export" / "events.parquet"
    rows = export_store(str(nightly.store), output, since=SINCE, until=NOW)
    assert rows == sum(t.event_records for t in nightly.truths.values())
    return output


def _failures_by(frame: pl.DataFrame, key: str) -> dict[str, tuple[int, int, int]]:
    counts = (
        frame.filter(pl.col("event").is_in(FAILURES))
        .group_by(key)
        .agg(
            pl.len().alias("failed"),
            (pl.col("bounce_type") == "hard").sum().alias("hard"),
            (pl.col("bounce_type") == "soft").sum().alias("soft"),
        )
    )
    return {name: (failed, hard, soft) for name, failed, hard, soft in counts.iter_rows()}


def test_events_export_agrees_with_the_report_in_pyarrow(
    nightly: Nightly, events_export: Path
) -> None:
    table = ds.dataset(events_export, format="parquet").to_table()
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    # every failure is a final outcome: the failed attempts exported are the report's failures
    by_source = _groups(_report(nightly, ["source"]))
    assert _failures_by(frame, "source") == {
        key[0]: (row["failed"], row["hard"], row["soft"]) for key, row in by_source.items()
    }
    by_provider = _groups(_report(nightly, ["provider"]))
    exported = _failures_by(frame, "provider")
    assert {p: hard for p, (_, hard, _) in exported.items()} == {
        key[0]: row["hard"] for key, row in by_provider.items() if row["failed"]
    }
    # ... except that Postfix's expiries, without a recipient, have no provider of their own
    # until the report gives each to its recipient
    moved = {
        key[0]: exported.get(key[0], (0, 0, 0))[0] - row["failed"]
        for key, row in by_provider.items()
    }
    assert moved["other"] == nightly.truths["postfix"].events["expired"] == 4
    assert sum(moved.values()) == 0
    assert {"meaning", "solution"} <= set(frame.columns)
    assert frame.filter(pl.col("category").is_not_null())["solution"].null_count() == 0


def test_events_export_agrees_with_the_report_in_duckdb(
    nightly: Nightly, events_export: Path
) -> None:
    rows = duckdb.sql(
        f"""
        SELECT CAST(timezone('UTC', "timestamp") AS DATE) AS day,
               count(*) FILTER (WHERE event = 'delivered') AS delivered,
               count(*) FILTER (WHERE event = 'deferred') AS deferred,
               count(*) FILTER (WHERE event IN ('bounced', 'expired', 'rejected', 'dropped'))
                   AS failed,
               count(*) FILTER (WHERE event = 'complained') AS complained
        FROM read_parquet('{events_export}')
        GROUP BY day ORDER BY day
        """
    ).fetchall()
    daily = _report(nightly, ["provider"])["daily"]
    assert [(r[0].isoformat(), *r[1:]) for r in rows] == [
        (d["date"], d["delivered"], d["deferred"], d["failed"], d["complained"]) for d in daily
    ]
    by_source = dict(
        duckdb.sql(
            f"SELECT source, count(*) FROM read_parquet('{events_export}') GROUP BY source"
        ).fetchall()
    )
    assert by_source == {s: t.event_records for s, t in nightly.truths.items()}


def test_events_export_parquet_types_and_layout(events_export: Path) -> None:
    parquet = pq.ParquetFile(events_export)
    schema = parquet.schema_arrow
    assert schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert schema.field("smtp_code").type == pa.int16()
    assert schema.field("permanent").type == pa.bool_()
    metadata = parquet.metadata
    assert metadata.num_rows == pq.read_metadata(events_export).num_rows
    names = [metadata.schema.column(i).name for i in range(metadata.num_columns)]
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        assert row_group.num_rows <= 128 * 1024
        for column in ("source", "event", "provider", "category", "bounce_type"):
            chunk = row_group.column(names.index(column))
            assert "RLE_DICTIONARY" in chunk.encodings or "PLAIN_DICTIONARY" in chunk.encodings
            assert chunk.compression == "ZSTD"
        stamp = row_group.column(names.index("timestamp"))
        assert stamp.is_stats_set and stamp.statistics.has_min_max
    stamps = [
        metadata.row_group(i).column(names.index("timestamp")).statistics
        for i in range(metadata.num_row_groups)
    ]
    assert START <= min(s.min for s in stamps) < max(s.max for s in stamps) < NOW


def test_events_export_is_cut_into_row_groups(
    nightly: Nightly, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bounce_analyzer import export

    monkeypatch.setattr(export, "ROW_GROUP_SIZE", 1_000)
    output = tmp_path / "events.parquet"
    rows = export_store(str(nightly.store), output, since=SINCE, until=NOW)
    metadata = pq.read_metadata(output)
    assert metadata.num_row_groups == -(-rows // 1_000)
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [1_000] * (
        rows // 1_000
    ) + ([rows % 1_000] if rows % 1_000 else [])


def test_partitioned_export_gives_hive_folders_duckdb_reads(
    nightly: Nightly, tmp_path: Path
) -> None:
    output = tmp_path / "by-date"
    export_store(str(nightly.store), output, since=SINCE, until=NOW, partition_by_date=True)
    assert sorted(p.name for p in output.iterdir()) == [f"date={d.isoformat()}" for d in DAYS]
    rows = duckdb.sql(
        f"""
        SELECT CAST(date AS VARCHAR), count(*) FROM
        read_parquet('{output}/**/*.parquet', hive_partitioning = true)
        GROUP BY date ORDER BY date
        """
    ).fetchall()
    daily = _report(nightly, ["provider"])["daily"]
    assert rows == [
        (d["date"], d["delivered"] + d["deferred"] + d["failed"] + d["complained"]) for d in daily
    ]
    assert sum(n for _, n in rows) == sum(t.event_records for t in nightly.truths.values())


def test_daily_aggregates_sum_to_the_event_counts(nightly: Nightly, tmp_path: Path) -> None:
    output = tmp_path / "daily.parquet"
    export_store(str(nightly.store), output, since=SINCE, until=NOW, what=ExportKind.daily)
    daily = pl.read_parquet(output)
    sums = daily.select(pl.exclude("date", "source", "provider", "category", "category_group"))
    totals = sums.sum().row(0, named=True)
    assert totals["events"] == sum(t.event_records for t in nightly.truths.values())
    for event in EVENTS:
        assert totals[event] == _total(nightly.truths, event), event
    assert totals["hard"] + totals["soft"] == sum(_failures(t) for t in nightly.truths.values())
    per_source = dict(daily.group_by("source").agg(pl.col("events").sum()).iter_rows())
    assert per_source == {s: t.event_records for s, t in nightly.truths.items()}


def test_suppressions_are_the_hard_bounced_recipients_not_delivered_to_since(
    nightly: Nightly, events_export: Path, tmp_path: Path
) -> None:
    output = tmp_path / "suppressions.parquet"
    export_store(str(nightly.store), output, since=SINCE, until=NOW, what=ExportKind.suppressions)
    got = pl.read_parquet(output)
    expected = duckdb.sql(
        f"""
        WITH events AS (SELECT * FROM read_parquet('{events_export}')),
        hard AS (
            SELECT recipient, count(*) AS hard_bounces,
                   arg_max(diagnostic, ("timestamp", event_id)) AS last_reason,
                   max("timestamp") AS last_bounce
            FROM events
            WHERE bounce_type = 'hard'
              AND event IN ('bounced', 'expired', 'rejected', 'dropped')
              AND recipient IS NOT NULL
              AND direction = 'outbound'
            GROUP BY recipient),
        delivered AS (
            SELECT recipient, max("timestamp") AS at FROM events
            WHERE event = 'delivered' AND direction = 'outbound' GROUP BY recipient)
        SELECT hard.recipient, hard_bounces, last_reason, last_bounce
        FROM hard LEFT JOIN delivered USING (recipient)
        WHERE delivered.at IS NULL OR delivered.at < hard.last_bounce
        ORDER BY hard.recipient
        """
    ).pl()
    assert got.height == expected.height > 100
    assert got["recipient"].to_list() == expected["recipient"].to_list()
    # issue 13: only our outbound mail: never an address of our own domains, whose hard
    # failures are our server refusing other people's mail (inbound rejects)
    ours = pl.col("recipient").str.contains(r"@(.+\.)?example\.com$")
    assert got.filter(ours).height == 0
    events = pl.read_parquet(events_export)
    refused = events.filter(ours & (pl.col("bounce_type") == "hard"))
    assert set(refused["direction"]) == {"inbound"} and refused.height > 10
    assert got["hard_bounces"].cast(pl.Int64).to_list() == expected["hard_bounces"].to_list()
    assert got["last_reason"].to_list() == expected["last_reason"].to_list()
    assert (
        got["last_bounce"].to_list()
        == expected["last_bounce"].dt.convert_time_zone("UTC").to_list()
    )
    assert got.schema["last_bounce"] == pl.Datetime("us", "UTC")


# --- the command line ----------------------------------------------------------------------------


def _ingest_line(truths: dict[str, Truth]) -> str:
    kinds = ", ".join(f"{_total(truths, e):,} {e}" for e in EVENTS if _total(truths, e))
    events = sum(t.event_records for t in truths.values())
    return (
        f"ingested 4 files: {events:,} new events ({kinds}), 0 malformed set aside, "
        "0 duplicates dropped\n"
    )


def test_cli_nightly_job(nightly: Nightly, tmp_path: Path) -> None:
    inputs = tmp_path / "logs"
    inputs.mkdir()
    for path in nightly.inputs.values():
        shutil.copy2(path, inputs / path.name)
    store = tmp_path / "store"
    paths = [str(inputs / p.name) for p in nightly.inputs.values()]

    first = runner.invoke(app, ["ingest", "--tz", "UTC", "--store", str(store), *paths])
    assert first.exit_code == 0, first.output
    assert first.stdout == ""
    assert first.stderr == _ingest_line(nightly.truths)
    assert first.stderr.startswith("ingested 4 files: 4,939 new events (")

    again = runner.invoke(app, ["ingest", "--tz", "UTC", "--store", str(store), *paths])
    assert again.exit_code == 0, again.output
    assert again.stderr == (
        "ingested 4 files: 0 new events, 0 malformed set aside, 0 duplicates dropped\n"
    )
    # As cron runs it: quiet, so silent when nothing is wrong (issue 12).
    quiet = runner.invoke(app, ["ingest", "--quiet", "--tz", "UTC", "--store", str(store), *paths])
    assert (quiet.exit_code, quiet.stdout, quiet.stderr) == (0, "", "")

    report = runner.invoke(
        app,
        ["report", "--store", str(store), "--since", "2026-11-01", "--until", "2026-11-10",
         "--by", "source", "--format", "json", "--direction", "all"],
    )  # fmt: skip
    assert report.exit_code == 0, report.output
    cli_groups = _groups(json.loads(report.stdout))
    assert cli_groups == _groups(_report(nightly, ["source"]))

    output = tmp_path / "events.parquet"
    export = runner.invoke(
        app,
        ["export", "--store", str(store), "--since", "2026-11-01", "--until", "2026-11-10",
         "-o", str(output)],
    )  # fmt: skip
    assert export.exit_code == 0, export.output
    events = sum(t.event_records for t in nightly.truths.values())
    assert export.stderr == f"exported {events:,} rows to {output}\n"
    assert pq.read_metadata(output).num_rows == events


def test_cli_report_outside_the_window_is_empty(nightly: Nightly) -> None:
    result = runner.invoke(
        app,
        ["report", "--store", str(nightly.store), "--since", "2026-11-05", "--format", "csv"],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "provider,messages,delivered,deferred,failed,hard,soft,complained,attempts,deferrals,"
        "failure_rate\n"
    )


def test_cli_report_on_a_missing_store(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    result = runner.invoke(app, ["report", "--store", str(missing), "--since", "2026-11-01"])
    assert result.exit_code == 1
    assert result.output == f"Error: no store at {missing}: run `bounce-analyzer ingest` first\n"
    assert not missing.exists()


def test_cli_report_with_a_bad_since(nightly: Nightly) -> None:
    result = runner.invoke(app, ["report", "--store", str(nightly.store), "--since", "lastweek"])
    assert result.exit_code == 2
    assert result.output == (
        "Error: invalid --since value 'lastweek': use 7d, 24h, 2w or a date like 2026-11-01\n"
    )


def test_cli_report_by_an_unknown_column(nightly: Nightly) -> None:
    result = runner.invoke(
        app, ["report", "--store", str(nightly.store), "--since", "2026-11-01", "--by", "mood"]
    )
    assert result.exit_code == 2
    assert result.output == (
        "Error: cannot group by mood: choose from provider, category, category_group, source, "
        "recipient_domain, sender_domain, smtp_code, enhanced_code, date, event, bounce_type, "
        "host, direction, blocklist, transport, client_host, client_ip, reject_reason\n"
    )
